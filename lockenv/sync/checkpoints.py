"""Named moments of a sync at which a test can freeze the process.

Interruption tests must kill a sync at a known moment, not after a guessed sleep: a
sleep lands before, inside or after the sync depending on how busy the machine is.
With ``LOCKENV_TEST_STOP_AT=STAGE`` (or ``STAGE#N``) the process sends itself SIGSTOP
the N-th time (default: the first) it reaches `checkpoint` (STAGE); the test waits for
the stop (``waitpid`` with ``WUNTRACED``) and then kills it with SIGKILL, so every trial
is guaranteed to die mid-sync at that point.  Unset, a checkpoint costs one environment
lookup.  The stages, in the order a sync reaches them, are listed in `STAGES`.
"""

from __future__ import annotations

import os
import threading

__all__ = ["STAGES", "STOP_AT_ENV", "checkpoint"]

STOP_AT_ENV = "LOCKENV_TEST_STOP_AT"

STAGES = (
    "fetch:downloaded",  # one archive is complete in the cache (each download)
    "fetch:done",  # every archive is in the cache and verified
    "unpack:working",  # an archive is unpacked in a work directory, not yet published
    "unpack:published",  # an unpacked tree was published in the cache (each artifact)
    "staging:created",  # the empty staging directory beside the prefix exists
    "staging:built",  # one sdist or source tree is built into a wheel (each source)
    "staging:linked",  # one package is linked into the staging tree (each package)
    "staging:complete",  # the staging tree and its state file are complete
    "swap:halfway",  # the non-atomic swap moved the old prefix away, not the new one in
    "swap:done",  # the new environment is in place; the old tree is not yet removed
)

_counts: dict[str, int] = {}
_counts_lock = threading.Lock()


def checkpoint(stage: str) -> None:
    """Stop this process here when ``LOCKENV_TEST_STOP_AT`` names ``stage``."""
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
            os.kill(os.getpid(), stop)
