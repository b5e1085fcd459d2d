"""Writing files so that a crash, a kill or a full disk never leaves half of one.

Every file lockenv writes outside an environment's staging tree (the manifest after
``add``/``remove``, the lock, an environment's state file, bundles, caches) goes through
`write_atomic`: the bytes go to a new temporary file in the same directory (created
exclusively, so it never writes through an existing file or link), are flushed to disk,
and the temporary file is renamed over the target in one step.  A reader sees the old
file or the new one, never a truncated one; a failed write leaves the old file as it was
and no temporary file behind.

The new file gets the mode the old one had (a lock made group-readable on a shared
cluster stays so), or, for a new file, the mode any new file gets under the umask
(`tempfile.mkstemp` alone would make it private, 0600).

Standard library only, and not `tempfile`: used on the sync path, where tempfile (and the
shutil and random it imports) would be loaded for one name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "new_dir_mode",
    "new_file_mode",
    "private_dir",
    "temp_file_beside",
    "umask",
    "write_atomic",
]

_TRIES = 100  # random names tried before giving up (a clash is already one in 2**48)
# What `tempfile.mkstemp` opens with: never through an existing file or link.
_NEW_FILE_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


@functools.cache
def umask() -> int:
    """The process umask, read once (without changing it where the system allows)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    # Elsewhere os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_dir_mode() -> int:
    """The permission bits any new directory gets under the umask (``mkdtemp`` alone
    makes a directory private, 0700)."""
    return 0o777 & ~umask()


def new_file_mode(path: Path | None = None) -> int:
    """The permission bits for (re)writing ``path``: those of the file already there,
    else those of any new file under the umask."""
    if path is not None:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode):
                return stat.S_IMODE(st.st_mode)
    return 0o666 & ~umask()


def private_dir(parent: Path, prefix: str) -> Path:
    """A new, empty directory ``<parent>/<prefix><random>``, private (0700), made
    exclusively: what ``tempfile.mkdtemp(prefix=prefix, dir=parent)`` makes."""
    for _ in range(_TRIES):
        path = parent / f"{prefix}{os.urandom(6).hex()}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free name for a directory {prefix!r}... in {str(parent)!r}")


def _private_file(parent: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """A new file ``<parent>/<prefix><random><suffix>``, created exclusively and private
    (0600), open for reading and writing: what ``tempfile.mkstemp`` makes."""
    for _ in range(_TRIES):
        path = parent / f"{prefix}{os.urandom(6).hex()}{suffix}"
        try:
            return os.open(path, _NEW_FILE_FLAGS, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a file {prefix!r}... in {str(parent)!r}")


@contextlib.contextmanager
def temp_file_beside(
    dest: Path, *, suffix: str = ".tmp", mode: int | None = None
) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new, exclusively created temporary file in ``dest``'s directory, opened for
    writing; removed on the way out unless the caller renamed it away.

    ``mode``: its permission bits (default: `new_file_mode` of ``dest``).  The file is
    closed on the way out even when closing fails (a full disk reports the last buffered
    write there): the temporary file is removed all the same.
    """
    fd, tmp = _private_file(dest.parent, f".{dest.name}.", suffix)
    try:
        os.fchmod(fd, new_file_mode(dest) if mode is None else mode)
        fh = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    try:
        yield tmp, fh
    finally:
        try:
            fh.close()
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def write_atomic(
    path: Path, data: bytes | str, *, mode: int | None = None, durable: bool = True
) -> None:
    """Replace the file at ``path`` with ``data`` in one rename.

    ``mode``: permission bits of the new file (default: those of the file it replaces,
    or the umask's for a new one).  ``durable``: fsync the file before the rename and the
    directory after it, so the new content survives a crash (the user's files); a file
    inside a tree that is itself not synced to disk (an environment) skips it.  On any
    error the old file is untouched and no temporary file is left.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with temp_file_beside(path, mode=mode) as (tmp, fh):
        fh.write(payload)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)
    if durable:
        _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory is on disk too (POSIX; a no-op elsewhere).
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
