"""Named moments of a sync at which a test can freeze the process.

Interruption tests must kill a sync at a known moment, not after a guessed sleep: a
sleep lands before, inside or after the sync depending on how busy the machine is.
With ``LOCKENV_TEST_STOP_AT=STAGE`` (or ``STAGE#N``) the process sends itself SIGSTOP
the N-th time (default: the first) it reaches `checkpoint` (STAGE); the test waits for
the stop (``waitpid`` with ``WUNTRACED``) and then kills it with SIGKILL, so every trial
is guaranteed to die mid-sync at that point.  With ``LOCKENV_TEST_RECORD=FILE`` every
checkpoint reached appends a line ``STAGE DETAIL`` to FILE (one ``write`` in append
mode, so the lines of many processes do not mix): how tests count that 16 concurrent
syncs downloaded and unpacked each artifact once.  Unset, a checkpoint costs two
environment lookups.  The stages, in the order a sync reaches them, are in `STAGES`.
"""

from __future__ import annotations

import os
import threading

__all__ = ["RECORD_ENV", "STAGES", "STOP_AT_ENV", "checkpoint"]

STOP_AT_ENV = "LOCKENV_TEST_STOP_AT"
RECORD_ENV = "LOCKENV_TEST_RECORD"

STAGES = (
    "fetch:downloaded",  # one archive is downloaded and verified (each download)
    "unpack:working",  # an archive is unpacked in a work directory, not yet published
    "unpack:published",  # an unpacked tree was published in the cache (each artifact)
    "prepare:done",  # every artifact is unpacked in the cache, from a verified archive
    "staging:created",  # the staging directory beside the prefix exists (empty, or the spare)
    "staging:refreshed",  # the spare tree holds only what the new environment keeps of it
    "staging:built",  # one sdist or source tree is built into a wheel (each source)
    "staging:linked",  # one package is linked into the staging tree (each package)
    "staging:complete",  # the staging tree and its state file are complete
    "swap:halfway",  # the non-atomic swap moved the old prefix away, not the new one in
    "swap:done",  # the new environment is in place; the old tree is not yet removed
)

_counts: dict[str, int] = {}
_counts_lock = threading.Lock()


def checkpoint(stage: str, detail: str = "") -> None:
    """Stop this process here when ``LOCKENV_TEST_STOP_AT`` names ``stage``; record
    ``stage`` and ``detail`` (a file name) when ``LOCKENV_TEST_RECORD`` is set."""
    record = os.environ.get(RECORD_ENV)
    if record:
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{stage} {detail}\n".encode())
        finally:
            os.close(fd)
    wanted = os.environ.get(STOP_AT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("#")
    if name != stage:
        return
    with _counts_lock:
        count = _counts[stage] = _counts.get(stage, 0) + 1
    if count == int(nth or 1) and hasattr(os, "kill"):
        import signal

        stop = getattr(signal, "SIGSTOP", None)
        if stop is not None:
            # Sent to this very thread, so it stops before its next instruction (sent to
            # the process, a worker thread could run on, publishing what it made, before
            # the stop reached it); the stop still freezes every thread.
            if hasattr(signal, "pthread_kill"):
                signal.pthread_kill(threading.get_ident(), stop)
            else:
                os.kill(os.getpid(), stop)
