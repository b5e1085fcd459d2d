"""The content-addressed artifact cache shared by every environment on a machine.

Layout under the cache root::

    archives/<sha256[:2]>/<sha256>/<filename>   downloaded artifacts, keyed by content
    unpacked/<sha256[:2]>/<sha256>/             each archive unpacked once: a wheel as files/,
                                                a conda package as pkg/ (conda's extracted
                                                package dir: info/ + payload), each with a
                                                manifest.json and a seal.json beside it
    unpacked/<sha256[:2]>/<sha256>-u<uid>/      the same, private to user <uid>, when the
                                                shared entry was made by another user
    tmp/                                        work directories, renamed into place when complete

Every entry appears through one ``os.rename`` (archives through ``os.replace`` in the HTTP
client), so processes sharing a cache (cluster jobs on one filesystem) never see a partial
entry: the loser of a race discards its own copy.  That alone is correct but wasteful (64
jobs of an array would each download every wheel), so the work on one artifact is also
single-flight across processes (`Cache.artifact_lock`): a POSIX byte-range lock
(``fcntl.lockf``) on one file, ``<root>/artifacts.lock``, at an offset derived from the
artifact's sha256.  Byte-range locks are what NFS (NLM, or NFSv4 itself), Lustre (mounted
with ``flock``), GPFS and BeeGFS carry between nodes, the kernel drops them when a process
dies (no stale lock files to clean, no owner or staleness to guess), and one file serves
every artifact (no inode per artifact).  Where the filesystem has no locks, syncs go on
without them (correct, just not single-flight).

The cache is only trusted through hashes, never through where a file is.  Archives are
re-hashed against the lock before every use.  An unpacked tree is made from such a
checked archive and sealed before it is published (`seal_entry`): ``seal.json`` lists
every file with its sha256, size, mode, inode and mtime.  Before a sync links from a tree,
`check_entry` compares each file's ``lstat`` with the seal (no reading, no hashing: cheap
on warm syncs) and re-hashes only a file whose inode, size or mtime changed; a changed
mode or content, a file swapped for a link, or a file another user owns makes the entry
damaged (the sync unpacks it again).  The seal itself is trusted only when the current
user (or root) owns it and nobody else can write it: an entry made by another user of a
shared cache is "foreign", and the sync makes (and seals) a private copy instead.

Use is recorded in the entry directories' mtimes (`Cache.mark_used`, by a sync that fetches,
never by the no-op sync); `prune` removes entries unused for a number of days.

Standard library only: imported on the sync path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "LOCK_FILE",
    "SEAL",
    "Cache",
    "EntryState",
    "PruneReport",
    "check_entry",
    "default_cache_dir",
    "hash_file",
    "prune",
    "remove_tree",
    "seal_entry",
]

SEAL = "seal.json"
LOCK_FILE = "artifacts.lock"
_SEAL_FORMAT = 1
_STALE_TEMP_SECONDS = 24 * 3600
# Whatever was used more recently than this may be in use by a running sync: never pruned,
# whatever --older-than says.
_IN_USE_SECONDS = 3600


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


def copy_hashing(source: Path, dest: Path) -> tuple[str, int]:
    """Copy ``source`` to the new file ``dest``, returning ``(sha256 hex, size)`` of what
    was written: the bytes are read once, hashed and written in the same pass."""
    hasher = hashlib.sha256()
    size = 0
    with source.open("rb") as src, dest.open("xb") as out:
        while chunk := src.read(1 << 20):
            hasher.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


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


# -- sealed entries ---------------------------------------------------------------------

EntryState = Literal["ok", "missing", "damaged", "foreign"]


def _trusted_owner(uid: int) -> bool:
    # Only the current user or root could have written a file they own.
    geteuid = getattr(os, "geteuid", None)
    return geteuid is None or uid in (geteuid(), 0)


def seal_entry(work: Path) -> None:
    """Write ``work/seal.json``: every regular file and symlink under ``work`` (a completed
    cache entry, before it is published) with what `check_entry` compares.

    Files are hashed (they were just written: read from the page cache); the seal is
    made read-only.
    """
    files: list[list[object]] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(work / rel_dir if rel_dir else work) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}{entry.name}"
            if rel == SEAL:
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append(rel + "/")
            elif stat.S_ISLNK(st.st_mode):
                files.append([rel, "l", 0, 0, 0, 0, os.readlink(entry.path)])
            elif stat.S_ISREG(st.st_mode):
                digest, _ = hash_file(Path(entry.path))
                # The whole st_mode (type and permission bits): compared in one go.
                files.append([rel, "f", st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, digest])
            else:
                raise OSError(f"{entry.path!r} is neither a file, a directory nor a link")
    data = {"format": _SEAL_FORMAT, "files": files}
    path = work / SEAL
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())


def check_entry(entry: Path) -> EntryState:
    """Whether the unpacked tree ``entry`` is still what its seal says.

    "ok": every sealed file is there with its mode and content (a file whose inode, size
    or mtime moved is re-hashed); "missing": no entry, or no seal (made by a lockenv
    without seals: remake it); "damaged": a file differs; "foreign": the seal was written
    by another user (or is writable by others), so it proves nothing.

    One ``lstat`` per file and nothing read: the cost of a warm sync's check.
    """
    seal = entry / SEAL
    try:
        st = os.lstat(seal)
    except OSError:
        return "missing"
    if not stat.S_ISREG(st.st_mode) or not _trusted_owner(st.st_uid) or st.st_mode & 0o022:
        return "foreign"
    geteuid = getattr(os, "geteuid", None)
    owners = {geteuid(), 0} if geteuid is not None else None
    base = f"{entry}{os.sep}"
    lstat = os.lstat
    try:
        with open(seal, "rb") as fh:
            data = json.loads(fh.read())
        if data.get("format") != _SEAL_FORMAT:
            return "missing"
        for rel, kind, size, mtime, ino, mode, value in data["files"]:
            path = base + rel
            st = lstat(path)
            if kind == "l":
                if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != value:
                    return "damaged"
                continue
            if st.st_mode != mode or st.st_size != size:
                return "damaged"  # a chmod, a link or directory swapped in, a new length
            if owners is not None and st.st_uid not in owners:
                return "damaged"  # another user's file could change under our links
            if (st.st_ino != ino or st.st_mtime_ns != mtime) and hash_file(Path(path))[0] != value:
                return "damaged"  # touched, or copied back: what counts is the content
    except (OSError, ValueError, KeyError, TypeError):
        return "damaged"
    return "ok"


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

    def private_unpacked_dir(self, sha256: str) -> Path:
        """This user's own copy of the unpacked tree, for when the shared one is foreign."""
        uid = getattr(os, "geteuid", lambda: 0)()
        return self.root / "unpacked" / sha256[:2] / f"{sha256}-u{uid}"

    def mark_used(self, sha256: str) -> None:
        """Record that a sync is about to use this artifact (before it looks at it).

        Sets the mtime of its archive and unpacked entry directories to now, which is what
        `prune` reads; missing entries and read-only shared caches are ignored.
        """
        for entry in (self.root / "archives" / sha256[:2] / sha256, self.unpacked_dir(sha256)):
            with contextlib.suppress(OSError):
                os.utime(entry)

    @contextlib.contextmanager
    def artifact_lock(self, sha256: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the cache-wide lock on the artifact ``sha256`` (see the module doc).

        Yields True once this thread holds it, or False at once when ``wait`` is False
        and another process (or thread) holds it.  Reentrant within a thread.  Holders
        never wait for a second artifact, so syncs cannot deadlock on each other.
        """
        locks = _artifact_locks(self.root)
        with locks.holding(sha256, wait=wait) as held:
            yield held

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

    def clean_stale_temp(self, max_age: float = _STALE_TEMP_SECONDS) -> tuple[int, int]:
        """Delete work directories left by killed processes (older than ``max_age``);
        return how many and the bytes freed."""
        tmp = self.root / "tmp"
        now = time.time()
        count = freed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(tmp):
                with contextlib.suppress(OSError):
                    if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                        size = _freed_bytes(Path(entry.path))
                        remove_tree(Path(entry.path))
                        count, freed = count + 1, freed + size
        return count, freed


# -- single flight ------------------------------------------------------------------------

_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF)
_DEADLOCK_RETRY_SECONDS = 0.05


class _ArtifactLocks:
    """This process's side of ``<root>/artifacts.lock``.

    POSIX locks belong to a process, not to a thread or a descriptor: two threads of one
    process never exclude each other through them, and closing any descriptor of the
    file drops all of the process's locks on it.  So the file is opened once per process
    and kept open, and threads take a per-artifact in-process lock first.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._guard = threading.Lock()
        self._threads: dict[str, threading.RLock] = {}
        self._depth: dict[str, int] = {}
        self._fd: int | None = None
        self._usable = sys.platform != "win32"

    def _descriptor(self) -> int | None:
        with self._guard:
            if self._fd is None and self._usable:
                try:
                    self._root.mkdir(parents=True, exist_ok=True)
                    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                    self._fd = os.open(self._root / LOCK_FILE, flags, 0o666)
                except OSError:
                    self._usable = False  # a read-only shared cache: no single flight
            return self._fd

    @contextlib.contextmanager
    def holding(self, sha256: str, *, wait: bool) -> Iterator[bool]:
        with self._guard:
            thread_lock = self._threads.setdefault(sha256, threading.RLock())
        if not thread_lock.acquire(blocking=wait):
            yield False
            return
        try:
            with self._guard:
                depth = self._depth[sha256] = self._depth.get(sha256, 0) + 1
            try:
                locked = depth > 1 or self._lock(sha256, wait=wait)
            except BaseException:
                locked = False
                raise
            finally:
                if not locked:
                    with self._guard:
                        self._depth[sha256] -= 1
            if not locked:
                yield False
                return
            try:
                yield True
            finally:
                with self._guard:
                    depth = self._depth[sha256] = self._depth[sha256] - 1
                if depth == 0:
                    self._unlock(sha256)
        finally:
            thread_lock.release()

    def _lock(self, sha256: str, *, wait: bool) -> bool:
        fd = self._descriptor()
        if fd is None:
            return True
        import fcntl

        offset = _lock_offset(sha256)
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB), 1, offset)
                return True
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES) and not wait:
                    return False
                if exc.errno == errno.EDEADLK:
                    # The kernel sees processes, not threads: another thread of ours
                    # holds an artifact that the holder of this one waits for.  Not a
                    # real cycle (no holder waits while holding): try again shortly.
                    time.sleep(_DEADLOCK_RETRY_SECONDS)
                    continue
                if exc.errno in _NO_LOCKS:
                    self._usable = False
                    return True
                raise

    def _unlock(self, sha256: str) -> None:
        fd = self._fd
        if fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, _lock_offset(sha256))


def _lock_offset(sha256: str) -> int:
    # 31 bits: within what every NFS lock protocol version carries.  Two artifacts
    # sharing an offset only wait for each other; nothing goes wrong.
    return int(sha256[:8], 16) & 0x7FFFFFFF


_LOCK_TABLES: dict[str, _ArtifactLocks] = {}
_LOCK_TABLES_GUARD = threading.Lock()


def _artifact_locks(root: Path) -> _ArtifactLocks:
    key = os.path.abspath(root)
    with _LOCK_TABLES_GUARD:
        table = _LOCK_TABLES.get(key)
        if table is None:
            table = _LOCK_TABLES[key] = _ArtifactLocks(Path(key))
        return table


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    """What `prune` removed: cache entries (archives and unpacked trees), leftovers of
    killed processes (partial downloads, work directories), and the bytes freed (files
    whose last link went: a tree still hardlinked into an environment frees nothing)."""

    entries: int
    leftovers: int
    freed_bytes: int


def prune(cache: Cache, *, older_than_days: float = 30.0, now: float | None = None) -> PruneReport:
    """Remove from ``cache`` what no sync needs any more; safe while other processes sync.

    Removed: archive and unpacked entries no sync used for ``older_than_days`` days (never
    one used in the last hour: a running sync may be linking from it), unpacked trees
    whose archive is gone, conda repodata stores and shards no lock used for that long,
    and partial downloads and work directories of killed processes.  An entry is renamed
    away first (readers see it whole or not at all), and put back if a sync marked it
    used between the scan and the rename.
    """
    from lockenv.errors import UsageError

    if not older_than_days >= 0:  # also refuses NaN
        raise UsageError(f"--older-than {older_than_days!r}: give a number of days (>= 0)")
    now = time.time() if now is None else now
    in_use = now - _IN_USE_SECONDS
    unused = min(in_use, now - older_than_days * 86400)
    entries = leftovers = freed = 0
    live: set[str] = set()
    for entry in _entries(cache.root / "archives"):
        modified = _mtime(entry)  # before anything below changes it
        items = _scandir(Path(entry.path))
        # A download in progress keeps writing its .part file: an old one was abandoned.
        parts = [i for i in items if i.name.startswith(".") and i.name.endswith(".part")]
        dead = [i for i in parts if _mtime(i) < in_use]
        has_archive = len(items) > len(parts)
        limit = unused if has_archive else in_use
        if modified < limit:
            removed = _remove_unless_used(cache, Path(entry.path), limit)
            if removed is not None:
                freed += removed
                entries += int(has_archive)
                leftovers += len(dead) or int(not has_archive)
                continue
        for item in dead:
            size = _freed_bytes(Path(item.path))
            with contextlib.suppress(OSError):
                os.unlink(item.path)
                freed, leftovers = freed + size, leftovers + 1
        if has_archive:
            live.add(entry.name)
    for entry in _entries(cache.root / "unpacked"):
        # Without its archive an unpacked tree is never used (the archive is verified first).
        limit = unused if entry.name.partition("-")[0] in live else in_use
        if _mtime(entry) < limit:
            removed = _remove_unless_used(cache, Path(entry.path), limit)
            if removed is not None:
                freed += removed
                entries += 1
    # What locks keep: conda repodata split by name, and CEP 16 shards (both made again
    # from the channel when needed; a lock touches what it uses).
    for path in _lock_side_files(cache.root):
        if _mtime(path) < unused:
            size = _freed_bytes(path)
            with contextlib.suppress(OSError):
                path.unlink()
                freed, entries = freed + size, entries + 1
    count, size = cache.clean_stale_temp()
    return PruneReport(entries=entries, leftovers=leftovers + count, freed_bytes=freed + size)


def _lock_side_files(root: Path) -> list[Path]:
    stores = [Path(e.path) for e in _scandir(root / "conda-repodata") if e.name.endswith(".byname")]
    shards = [
        Path(e.path)
        for shard in _scandir(root / "conda-shards")
        if shard.is_dir(follow_symlinks=False)
        for e in _scandir(Path(shard.path))
        if e.name.endswith(".msgpack.zst")
    ]
    return stores + shards


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []


def _entries(top: Path) -> list[os.DirEntry[str]]:
    """The ``<top>/<sha256[:2]>/<sha256>`` entry directories (shard dirs are kept: a
    concurrent sync may be creating an entry in one)."""
    return [
        entry
        for shard in _scandir(top)
        if shard.is_dir(follow_symlinks=False)
        for entry in _scandir(Path(shard.path))
        if entry.is_dir(follow_symlinks=False)
    ]


def _mtime(entry: os.DirEntry[str] | Path) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return time.time()  # vanished or unreadable: treat as in use, leave it alone


def _freed_bytes(path: Path) -> int:
    """Bytes that removing ``path`` frees: its regular files that have no other hardlink."""

    def own_size(file: str) -> int:
        try:
            st = os.lstat(file)
        except OSError:
            return 0
        return st.st_size if st.st_nlink == 1 and stat.S_ISREG(st.st_mode) else 0

    if not path.is_dir() or path.is_symlink():
        return own_size(str(path))
    return sum(own_size(os.path.join(root, n)) for root, _, files in os.walk(path) for n in files)


def _remove_unless_used(cache: Cache, path: Path, limit: float) -> int | None:
    """Remove the entry ``path`` unless it was marked used at or after ``limit``; return
    the bytes freed, or None when it was kept."""
    try:
        tomb = cache.make_temp_dir("prune") / "entry"
        os.rename(path, tomb)
    except OSError:
        return None  # gone already, or not ours to remove
    if _mtime(tomb) >= limit:
        # A sync marked it between the scan and the rename: give it back.
        with contextlib.suppress(OSError):
            # Fails only when a sync re-created it meanwhile: content-addressed, so either
            # copy will do.
            os.rename(tomb, path)
        remove_tree(tomb.parent)
        return None
    freed = _freed_bytes(tomb)
    remove_tree(tomb.parent)
    return freed
