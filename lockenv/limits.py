"""How much of each kind of document lockenv reads into memory, and the one reader that
stops there.

A document is parsed whole, and parsing costs a multiple of its size (measured on
synthetic documents, peak resident memory over the input: YAML of a lock 28x, tomlkit 41x
and tomllib 5.5x for a manifest, JSON 3.4-3.7x, an HTML index page 3.8x).  Each cap is
far above the largest real document of its kind and keeps the parse within a few hundred
MB; past it a file is broken or hostile, and reading stops there with `TooLargeError`.
Conda repodata is larger and has its own cap (`lockenv.http.MAX_DOCUMENT`).

Standard library only: imported on the sync path.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

__all__ = [
    "MAX_LOCK",
    "MAX_MANIFEST",
    "MAX_METADATA",
    "MAX_PAGE",
    "TooLargeError",
    "open_regular",
    "read_capped",
    "size_text",
]

#: ``lockenv.lock`` (YAML): the largest real ones are a few MB; 16 MiB parse in ~450 MB.
MAX_LOCK = 16 << 20
#: ``lockenv.toml`` / ``pyproject.toml``: real ones are KBs; 4 MiB edit (tomlkit) in ~170 MB.
MAX_MANIFEST = 4 << 20
#: A PyPI simple page (JSON or HTML) or a core-metadata file: the largest real pages are
#: about 2 MB; 64 MiB parse in ~240 MB.
MAX_PAGE = 64 << 20
#: A package's or an environment's metadata read whole: ``info/paths.json`` and the other
#: ``info/`` files, RECORD, WHEEL, METADATA, entry_points.txt, a cache entry's
#: manifest.json, a ``conda-meta`` record, the state file, a bundle's index.  Real ones
#: are at most a few MB (the largest RECORD seen: 1 MiB); 64 MiB parse in ~220 MB.
MAX_METADATA = 64 << 20

_STEP = 1 << 16


class TooLargeError(OSError):
    """A file holds more than a reader's cap.  An OSError (``EFBIG``), so that a
    caller's handling of an unreadable file reports it, in its own words, in one line."""

    def __init__(self, kind: str, limit: int) -> None:
        super().__init__(
            errno.EFBIG,
            f"it is larger than {size_text(limit)}, more than any real {kind} (broken or hostile)",
        )

    def __str__(self) -> str:
        return str(self.strerror)


def size_text(size: int) -> str:
    """``size`` bytes for a message: ``64 MiB``, ``512 KiB``, ``17 bytes``."""
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} bytes"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (following symlinks), else
    OSError (``EINVAL``) saying so: never blocks on a FIFO nor reads a device."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(
    path: str | os.PathLike[str], limit: int, kind: str, *, regular_only: bool = False
) -> bytes:
    """The bytes of the file at ``path``; TooLargeError (naming it a ``kind``) when it
    holds more than ``limit`` (from its size, or while it is read: a file that grows, a
    pipe, a device).  ``regular_only``: anything but a regular file is refused
    (`open_regular`), for paths taken from hostile input."""
    with open_regular(path) if regular_only else open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        regular = stat.S_ISREG(st.st_mode)
        if regular and st.st_size > limit:
            raise TooLargeError(kind, limit)
        # One read of the whole file when its size is known (and it did not grow).
        step = st.st_size + 1 if regular else _STEP
        parts: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = fh.read(min(max(step, _STEP), limit + 1 - total))
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
    if total > limit:
        raise TooLargeError(kind, limit)
    return b"".join(parts)
