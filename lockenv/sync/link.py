"""Put a cached file into an environment: hardlink, copy or symlink.

Hardlinks are the default (no bytes copied, no extra disk).  When the cache and the
environment are on different filesystems the first ``EXDEV`` switches the linker to
copying for good; a file that cannot be hardlinked for another reason (``EPERM`` under
``fs.protected_hardlinks`` for a cache owned by someone else, ``EMLINK``) is copied alone.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Literal, get_args

from lockenv.errors import UsageError

__all__ = ["LinkMode", "Linker", "check_link_mode"]

LinkMode = Literal["hardlink", "copy", "symlink"]
LINK_MODES: tuple[str, ...] = get_args(LinkMode)

_COPY_INSTEAD = (errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP)


def check_link_mode(mode: str) -> LinkMode:
    """``mode`` as a LinkMode; UsageError listing the valid ones otherwise."""
    if mode not in LINK_MODES:
        raise UsageError(f"unknown link mode {mode!r}: use one of {', '.join(LINK_MODES)}")
    return mode  # type: ignore[return-value]


class Linker:
    """Places files from the cache; thread-safe; remembers a cross-filesystem fallback."""

    def __init__(self, mode: LinkMode) -> None:
        self.mode: LinkMode = mode
        self.copied_across_filesystems = False
        self._lock = threading.Lock()

    def place(self, src: str, dst: str, *, executable: bool) -> None:
        """Make ``dst`` a file with the content of ``src`` (replacing an existing ``dst``)."""
        mode = self.mode
        if mode == "hardlink":
            try:
                _replace_existing(os.link, src, dst)
                return
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    with self._lock:
                        self.mode = "copy"
                        self.copied_across_filesystems = True
                elif exc.errno not in _COPY_INSTEAD:
                    raise
            mode = "copy"
        if mode == "symlink":
            _replace_existing(os.symlink, src, dst)
            return
        copy_file(src, dst, executable=executable)


def copy_file(src: str, dst: str, *, executable: bool) -> None:
    """Copy ``src`` to ``dst`` as a private, writable file."""
    import shutil

    if os.path.lexists(dst):
        os.unlink(dst)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755 if executable else 0o644)


def _replace_existing(op: Callable[[str, str], None], src: str, dst: str) -> None:
    try:
        op(src, dst)
    except FileExistsError:
        # Two wheels shipping one path: the later one wins, as with pip.
        os.unlink(dst)
        op(src, dst)
