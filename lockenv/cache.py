"""The content-addressed artifact cache shared by every environment on a machine.

Layout under the cache root::

    archives/<sha256[:2]>/<sha256>/<filename>   downloaded artifacts, keyed by content
    unpacked/<sha256[:2]>/<sha256>/             each archive unpacked once: a wheel as files/,
                                                a conda package as pkg/ (conda's extracted
                                                package dir: info/ + payload), each with a
                                                manifest.json beside it
    tmp/                                        work directories, renamed into place when complete

Every entry appears through one ``os.rename`` (archives through ``os.replace`` in the HTTP
client), so processes sharing a cache (cluster jobs on one filesystem) never see a partial
entry and need no lock: the loser of a race discards its own copy.  The cache is only
trusted through hashes: archives are re-hashed against the lock before every use.

Standard library only: imported on the sync path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cache", "default_cache_dir", "hash_file", "remove_tree"]

_STALE_TEMP_SECONDS = 24 * 3600


def default_cache_dir() -> Path:
    """Return the cache root: ``LOCKENV_CACHE_DIR``, else the platform's user cache dir."""
    configured = os.environ.get("LOCKENV_CACHE_DIR")
    if configured:
        return Path(configured).expanduser().absolute()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "lockenv" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "lockenv"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lockenv"
    return home / ".cache" / "lockenv"


def hash_file(path: Path) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of the file at ``path``, read once."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return digest, size


def remove_tree(path: Path) -> None:
    """Delete ``path`` (a directory, file or symlink) if it exists; errors are ignored."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return
    except FileNotFoundError:
        return
    except OSError:
        pass
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Cache:
    """A cache root and the paths of its entries."""

    root: Path

    def archive_path(self, sha256: str, filename: str) -> Path:
        """Where the archive with this content lives (the name keeps its file name)."""
        return self.root / "archives" / sha256[:2] / sha256 / filename

    def unpacked_dir(self, sha256: str) -> Path:
        """Where the wheel or conda package with this content is unpacked."""
        return self.root / "unpacked" / sha256[:2] / sha256

    def make_temp_dir(self, purpose: str) -> Path:
        """A fresh directory under ``tmp/`` on the cache's filesystem, for `publish_dir`."""
        import tempfile

        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{purpose}-", dir=tmp))

    def publish_dir(self, work: Path, final: Path) -> bool:
        """Move the completed directory ``work`` to ``final`` in one rename.

        Returns False (and deletes ``work``) when another process published ``final``
        first: entries are keyed by content, so its copy is as good as ours.
        """
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(work, final)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise
        remove_tree(work)
        return False

    def discard(self, path: Path) -> None:
        """Remove a cache entry so no reader sees it half-deleted (rename first)."""
        if not path.exists() and not path.is_symlink():
            return
        try:
            tomb = self.make_temp_dir("discard") / "entry"
            os.rename(path, tomb)
            remove_tree(tomb.parent)
        except OSError:
            remove_tree(path)

    def clean_stale_temp(self, max_age: float = _STALE_TEMP_SECONDS) -> None:
        """Delete work directories left by killed processes (older than ``max_age``)."""
        tmp = self.root / "tmp"
        now = time.time()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(tmp):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                        remove_tree(Path(entry.path))
