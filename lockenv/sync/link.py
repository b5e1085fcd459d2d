"""Put a cached file into an environment: hardlink, copy or symlink.

Hardlinks are the default (no bytes copied, no extra disk).  When the cache and the
environment are on different filesystems the first ``EXDEV`` switches the linker to
copying for good (the sync report says so; with ``--link-mode hardlink`` given
explicitly it is an error instead); a file that cannot be hardlinked for another reason
(``EPERM`` under ``fs.protected_hardlinks`` for a cache owned by someone else,
``EMLINK``) is copied alone.
"""

from __future__ import annotations

import collections
import errno
import itertools
import operator
import os
import threading
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar, get_args

from lockenv.errors import InstallError, UsageError

__all__ = [
    "NEW_INODE_WORK",
    "LinkMode",
    "Linker",
    "check_link_mode",
    "each_in_threads",
    "link_all",
]

_T = TypeVar("_T")
# `each_in_threads`: this many threads, taking batches of this many items, once there
# are at least so many items (a pool costs more than it saves on a few).
_THREADS = 4
_BATCH = 128
_PARALLEL_FROM = 256
# What making a new file or directory is worth in links, for `each_in_threads`' ``work``:
# the filesystem allocates an inode (measured on ext4: 50 us to over 1 ms, where a link
# takes 10-35 us), so a few dozen of them are worth threads.
NEW_INODE_WORK = 8

LinkMode = Literal["hardlink", "copy", "symlink"]
LINK_MODES: tuple[str, ...] = get_args(LinkMode)

_second = operator.itemgetter(1)

_COPY_INSTEAD = (errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP)


def check_link_mode(mode: str) -> LinkMode:
    """``mode`` as a LinkMode; UsageError listing the valid ones otherwise."""
    if mode not in LINK_MODES:
        raise UsageError(f"unknown link mode {mode!r}: use one of {', '.join(LINK_MODES)}")
    return mode  # type: ignore[return-value]


class Linker:
    """Places files from the cache; thread-safe; remembers a cross-filesystem fallback.

    ``strict``: hardlinks were asked for explicitly (``--link-mode hardlink``), so a
    cache on another filesystem is an error rather than a silent copy.
    """

    def __init__(self, mode: LinkMode, *, strict: bool = False) -> None:
        self.mode: LinkMode = mode
        self.strict = strict
        self.copied_across_filesystems = False
        # A file was copied where a hardlink was asked for: the tree then holds a private
        # file that a spare tree's record would take for the cache's (`lockenv.sync.reuse`).
        self.copied_instead = False
        self._lock = threading.Lock()

    def place_new(self, src: str, dst: str, *, executable: bool) -> None:
        """Create ``dst`` with the content of ``src``; FileExistsError if ``dst`` exists
        (the caller decides what may be replaced: `lockenv.sync.guard.PrefixGuard`)."""
        mode = self.mode
        if mode == "hardlink":
            try:
                os.link(src, dst)
                return
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno == errno.EXDEV and self.strict:
                    raise InstallError(
                        f"--link-mode hardlink: the cache ({os.path.dirname(src)!r}) and the "
                        f"environment ({os.path.dirname(dst)!r}) are on different filesystems, "
                        "so files cannot be hardlinked; put the cache on the environment's "
                        "filesystem (LOCKENV_CACHE_DIR), or leave out --link-mode to copy"
                    ) from None
                if exc.errno == errno.EXDEV:
                    with self._lock:
                        self.mode = "copy"
                        self.copied_across_filesystems = True
                elif exc.errno not in _COPY_INSTEAD:
                    raise
            self.copied_instead = True
            mode = "copy"
        if mode == "symlink":
            os.symlink(src, dst)
            return
        copy_file(src, dst, executable=executable)

    def place(self, src: str, dst: str, *, executable: bool) -> None:
        """Make ``dst`` a file with the content of ``src``, replacing (never writing
        through) a file or link already at ``dst``."""
        try:
            self.place_new(src, dst, executable=executable)
        except FileExistsError:
            # Two wheels shipping one path: the later one wins, as with pip.
            os.unlink(dst)
            self.place_new(src, dst, executable=executable)


def each_in_threads(
    call: Callable[[_T], object],
    items: Sequence[_T],
    *,
    work: int | None = None,
    batch: int | None = None,
) -> list[int]:
    """Call ``call`` on every item; the indices of the items whose call raised OSError,
    in order.  For calls that wait on the filesystem without the GIL (``link``,
    ``unlink``): when there are many items and several CPUs, a few threads make them,
    so that they overlap.  ``work``: how many such calls the items stand for, when an
    item is several (default: one each); ``batch``: how many items a thread takes at a
    time (default `_BATCH`)."""
    workers = min(_THREADS, os.cpu_count() or 1)
    if workers < 2 or (len(items) if work is None else work) < _PARALLEL_FROM:
        return _each(call, items, 0, len(items))
    size = batch or _BATCH
    # Plain threads taking batches in turn (`concurrent.futures` would cost a sync more
    # to import than its pool saves here).
    batches = iter(range(0, len(items), size))
    take = threading.Lock()
    failed: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while True:
                with take:
                    start = next(batches, None)
                if start is None:
                    return
                found = _each(call, items, start, min(start + size, len(items)))
                failed.extend(found)  # one call: atomic under the GIL
        except BaseException as exc:  # re-raised by the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, name="lockenv-fs") for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sorted(failed)


def link_all(sources: Sequence[str], targets: Sequence[str]) -> list[int]:
    """``os.link(sources[i], targets[i])`` for every ``i``, by a few threads when there are
    many (as `each_in_threads`); the indices of the links that raised OSError, in order.

    Each thread links a batch by one ``map`` in C rather than a Python call per file (a
    warm sync makes thousands of links); a link that fails ends that ``map``, and the
    batch goes on from the next pair.
    """
    failed: list[int] = []

    def link_batch(start: int) -> None:
        end = min(start + _BATCH, len(sources))
        while start < end:
            # How many pairs ``map`` took: the one that raised is the last of them.
            taken = itertools.count(start)
            pairs = zip(taken, sources[start:end], strict=False)
            try:
                collections.deque(map(os.link, map(_second, pairs), targets[start:end]), 0)
                return
            except OSError:
                start = next(taken)
                failed.append(start - 1)  # one call: atomic under the GIL

    batches = range(0, len(sources), _BATCH)
    lost = each_in_threads(link_batch, batches, work=len(sources), batch=1)
    assert not lost  # `link_batch` keeps its OSErrors
    return sorted(failed)


def _each(call: Callable[[_T], object], items: Sequence[_T], start: int, end: int) -> list[int]:
    failed = []
    for i in range(start, end):
        try:
            call(items[i])
        except OSError:
            failed.append(i)
    return failed


def copy_file(src: str, dst: str, *, executable: bool) -> None:
    """Copy the regular file ``src`` to the new file ``dst`` (0755 or 0644, private).

    Neither end is followed if it is a symlink: ``dst`` must not exist (FileExistsError),
    and a symlink at ``src`` is refused (an unpacked cache entry holds regular files).
    """
    import shutil

    nofollow = getattr(os, "O_NOFOLLOW", 0)
    binary = getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    mode = 0o755 if executable else 0o644
    src_fd = os.open(src, os.O_RDONLY | nofollow | binary)
    with os.fdopen(src_fd, "rb") as source:
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow | binary, mode)
        with os.fdopen(dst_fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), mode)  # open's mode is masked by the umask
