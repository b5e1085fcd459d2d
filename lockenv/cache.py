"""The content-addressed artifact cache shared by every environment on a machine.

Layout under the cache root::

    archives/<sha256[:2]>/<sha256>/<filename>   downloaded artifacts, keyed by content
    unpacked/<sha256[:2]>/<sha256>/             each archive unpacked once: a wheel as files/,
                                                a conda package as pkg/ (conda's extracted
                                                package dir: info/ + payload), each with a
                                                manifest.json and a seal.json beside it
    unpacked/<sha256[:2]>/<sha256>-u<uid>/      the same, private to user <uid>, when the
                                                shared entry was made by another user
    environments/<hash of prefix>               one small file per environment built from
                                                the cache, holding its path
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
never by the no-op sync), and each environment a sync builds is registered
(`Cache.register_environment`).  `prune` keeps what the registered environments that
still exist were built from and whatever was used in its period (environments on other
nodes' scratch are invisible here: their syncs' marks protect them), and removes the rest.

Footprint.  Clusters' quotas count bytes and files (inodes).  An artifact may be kept as
its archive, its unpacked tree, or both: the *keep policy* (`keep_policy`:
``$LOCKENV_CACHE_KEEP`` or ``cache prune --keep``).  "trees" (the default, what uv keeps)
keeps only sealed trees: a sync drops an archive as soon as its tree is sealed (a large
wheel is unpacked while it downloads and its archive never written) and never needs it
again while the seal holds; a damaged tree is downloaded again, and `lockenv bundle`
downloads the archives it packs.  "both" also keeps each archive (its bytes again, and a
file more): what a site wants that repairs damaged trees offline or bundles without the
network.  "archives" keeps only archives, a file each (prune drops trees, which a sync
unpacks again).  Hard links into environments on the cache's filesystem share the
tree's inodes and bytes: a tree costs nothing more while an environment links it, and
pruning it frees nothing until the environment goes.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockenv.errors import CacheBusyError

if TYPE_CHECKING:
    from lockenv.cache_upkeep import DiskUsage, EnvironmentUse, PrunedItem, PruneReport

__all__ = [
    "KEEP_ENV",
    "KEEP_POLICIES",
    "LOCK_FILE",
    "LOCK_TIMEOUT_ENV",
    "SEAL",
    "Cache",
    "EntryState",
    "KeepPolicy",
    "cache_usage",
    "check_entry",
    "default_cache_dir",
    "hash_file",
    "keep_policy",
    "lock_wait_override",
    "prune",
    "remove_tree",
    "seal_entry",
    "tree_usage",
]

SEAL = "seal.json"
LOCK_FILE = "artifacts.lock"
_ENVIRONMENTS = "environments"
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


def copy_hashing(source: Path, dest: Path, *, limit: int | None = None) -> tuple[str, int]:
    """Copy ``source`` to the new file ``dest``, returning ``(sha256 hex, size)`` of what
    was written: the bytes are read once, hashed and written in the same pass.  With
    ``limit``, the copy stops one byte past it (the size then says it is wrong), so a
    source that never ends (a device, a growing file) cannot fill the disk."""
    hasher = hashlib.sha256()
    size = 0
    end = None if limit is None else limit + 1
    with source.open("rb") as src, dest.open("xb") as out:
        while chunk := src.read(1 << 20 if end is None else min(1 << 20, end - size)):
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


def seal_entry(work: Path, digests: Mapping[str, str] | None = None) -> None:
    """Write ``work/seal.json``: every regular file and symlink under ``work`` (a completed
    cache entry, before it is published) with what `check_entry` compares.

    Files are hashed (they were just written: read from the page cache), except those in
    ``digests`` (path relative to ``work`` -> sha256 hex): the unpacker hashed them while
    writing them into this private work directory.  The seal is made read-only.
    """
    known = digests or {}
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
                digest = known.get(rel) or hash_file(Path(entry.path))[0]
                # The whole st_mode (type and permission bits): compared in one go.
                files.append([rel, "f", st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, digest])
            else:
                raise OSError(f"{entry.path!r} is neither a file, a directory nor a link")
    data = {"format": _SEAL_FORMAT, "files": files}
    path = work / SEAL
    # Not fsynced: that would make the seal durable, not the files it lists (nor would
    # fsyncing them all be worth it: measured ~1 s per large wheel on ext4 under load,
    # the journal commit waiting for the tree's data).  After a crash `check_entry` finds
    # a torn or lost seal, or a file cut short, and the tree is made again.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))


def check_entry(entry: Path, inodes: dict[str, tuple[int, int]] | None = None) -> EntryState:
    """Whether the unpacked tree ``entry`` is still what its seal says.

    "ok": every sealed file is there with its mode and content (a file whose inode, size
    or mtime moved is re-hashed); "missing": no entry, or no seal (made by a lockenv
    without seals: remake it); "damaged": a file differs; "foreign": the seal was written
    by another user (or is writable by others), so it proves nothing.

    One ``lstat`` per file and nothing read: the cost of a warm sync's check.  ``inodes``,
    if given, receives each regular file's ``(st_dev, st_ino)`` by path as the check saw
    it (meaningful when the answer is "ok"): what a tree linking the entry must share.
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
    try:
        with open(seal, "rb") as fh:
            data = json.loads(fh.read())
        if data.get("format") != _SEAL_FORMAT:
            return "missing"
        return _check_files(data["files"], base, owners, inodes)
    except (OSError, ValueError, KeyError, TypeError):
        return "damaged"


# `_check_files` looks at each file through a descriptor of its directory, where it can.
# (``os.supports_dir_fd`` names ``stat``, which ``lstat`` is, without following.)
_AT_DIRECTORY = os.stat in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")
_DIRECTORY_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def _check_files(
    rows: list[list[Any]],
    base: str,
    owners: set[int] | None,
    inodes: dict[str, tuple[int, int]] | None,
) -> EntryState:
    """`check_entry` of the seal's ``rows`` in the tree ``base`` (with a trailing
    separator); OSError when a file or a directory cannot be looked at.

    Each file is looked at through a descriptor of its directory, so the kernel walks
    one name per ``lstat``, not the whole path from ``/`` (a cache entry's files lie ten
    or more names deep; measured on a warm sync's 12k files: ~5% of the check's CPU).  A
    seal lists the files of each directory together (`seal_entry`): one directory is
    open at a time.  A directory is opened without following a symlink in its last name:
    a sealed tree's directories are real ones (its symlinks are listed as links, and
    what lies behind them is not part of it).
    """
    lstat = os.lstat
    at = _AT_DIRECTORY
    here: str | None = None
    fd: int | None = None
    try:
        for rel, kind, size, mtime, ino, mode, value in rows:
            if at:
                head, _, name = rel.rpartition("/")
                if head != here:
                    if fd is not None:
                        os.close(fd)
                        fd = None
                    fd = os.open(base + head, _DIRECTORY_FLAGS)
                    here = head
                st = lstat(name, dir_fd=fd)
            else:
                name = base + rel
                st = lstat(name)
            if kind == "l":
                if not stat.S_ISLNK(st.st_mode) or os.readlink(name, dir_fd=fd) != value:
                    return "damaged"
                continue
            if st.st_mode != mode or st.st_size != size:
                return "damaged"  # a chmod, a link or directory swapped in, a new length
            if owners is not None and st.st_uid not in owners:
                return "damaged"  # another user's file could change under our links
            if (st.st_ino != ino or st.st_mtime_ns != mtime) and (
                hash_file(Path(base + rel))[0] != value
            ):
                return "damaged"  # touched, or copied back: what counts is the content
            if inodes is not None:
                inodes[base + rel] = (st.st_dev, st.st_ino)
    finally:
        if fd is not None:
            os.close(fd)
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

    def trusted_entry(self, sha256: str) -> tuple[Path, EntryState]:
        """The unpacked entry to use for this artifact and its `check_entry` state: the
        shared one unless another user made it, then this user's private one."""
        shared = self.unpacked_dir(sha256)
        state = check_entry(shared)
        if state != "foreign":
            return shared, state
        private = self.private_unpacked_dir(sha256)
        return private, check_entry(private)

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
    def artifact_lock(
        self,
        sha256: str,
        *,
        wait: bool = True,
        deadline: float | None = None,
        what: str = "",
    ) -> Iterator[bool]:
        """Hold the cache-wide lock on the artifact ``sha256`` (see the module doc).

        Yields True once this thread holds it, or False at once when ``wait`` is False
        and another process (or thread) holds it.  Reentrant within a thread.  Holders
        never wait for a second artifact, so syncs cannot deadlock on each other, but a
        holder can be stopped (``SIGSTOP``, a suspended job) or hung: a waiter gives up
        after ``deadline`` seconds (``$LOCKENV_CACHE_LOCK_TIMEOUT`` when set; None: no
        deadline) with CacheBusyError naming ``what`` (the artifact) and the holder's pid.
        """
        if wait:
            deadline = lock_wait_override(deadline)
        locks = _artifact_locks(self.root)
        with locks.holding(sha256, wait=wait, deadline=deadline, what=what or sha256) as held:
            yield held

    def make_temp_dir(self, purpose: str) -> Path:
        """A fresh directory under ``tmp/`` on the cache's filesystem, for `publish_dir`.

        It is held (an ``flock`` on ``<dir>.lock`` beside it) until `publish_dir` or
        `remove_temp_dir`: `clean_stale_temp` removes at once a directory whose holder
        died (a killed sync), and leaves a live one alone whatever its age.
        """
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        with _held_lock:
            first = str(tmp) not in _tidied
            _tidied.add(str(tmp))
        if first:  # once per process: the work directories of killed syncs
            with contextlib.suppress(OSError):
                self.clean_stale_temp()
        for _ in range(100):
            path = tmp / f"{purpose}-{os.urandom(6).hex()}"
            # The hold first, then the directory: a cleaner never sees the directory of a
            # live process unheld.
            if not _hold(path):
                continue
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                _release(path)
                continue
            except BaseException:
                _release(path)
                raise
            return path
        raise FileExistsError(f"no free name for a work directory in {str(tmp)!r}")

    def remove_temp_dir(self, work: Path) -> None:
        """Delete the work directory ``work`` (made by `make_temp_dir`) and release it."""
        remove_tree(work)
        _release(work)

    def publish_dir(self, work: Path, final: Path) -> bool:
        """Move the completed directory ``work`` to ``final`` in one rename.

        Returns False (and deletes ``work``) when another process published ``final``
        first: entries are keyed by content, so its copy is as good as ours.
        """
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(work, final)
            _release(work)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise
        self.remove_temp_dir(work)
        return False

    def discard(self, path: Path) -> None:
        """Remove a cache entry so no reader sees it half-deleted (rename first)."""
        if not path.exists() and not path.is_symlink():
            return
        try:
            work = self.make_temp_dir("discard")
        except OSError:
            remove_tree(path)
            return
        try:
            os.rename(path, work / "entry")
        except OSError:
            remove_tree(path)
        self.remove_temp_dir(work)

    def stale_temp(self, max_age: float = _STALE_TEMP_SECONDS) -> list[Path]:
        """Work directories left by killed processes, under ``tmp/``: one whose holder's
        lock (`make_temp_dir`) is free, at once; one without a lock (made by an older
        lockenv, or where ``flock`` does not exist) once it is older than ``max_age``; a
        held one never.  Costs one directory listing when there are none."""
        entries = _scandir(self.root / "tmp")
        names = {entry.name for entry in entries}
        now = time.time()
        found = []
        for entry in entries:
            if entry.name.endswith(_HOLD_SUFFIX):
                continue
            if entry.name + _HOLD_SUFFIX in names:
                if not _is_held(Path(entry.path + _HOLD_SUFFIX)):
                    found.append(Path(entry.path))
            elif now - _mtime(entry) > max_age:
                found.append(Path(entry.path))
        return found

    def clean_stale_temp(self, max_age: float = _STALE_TEMP_SECONDS) -> tuple[int, int]:
        """Delete the `stale_temp` work directories (and the locks of dead holders);
        return how many and the bytes freed."""
        count = freed = 0
        for path in self.stale_temp(max_age):
            size = _freed_bytes(path)
            remove_tree(path)
            count, freed = count + 1, freed + size
        self.drop_dead_holds()
        return count, freed

    def drop_dead_holds(self) -> None:
        """Remove the ``tmp/*.lock`` files of work directories that are gone, unless held."""
        entries = _scandir(self.root / "tmp")
        names = {entry.name for entry in entries}
        for entry in entries:
            if entry.name.endswith(_HOLD_SUFFIX) and entry.name[: -len(_HOLD_SUFFIX)] not in names:
                _remove_abandoned(None, Path(entry.path))

    def register_environment(self, prefix: Path) -> None:
        """Record that the environment at ``prefix`` was built from this cache, so that
        `prune` keeps what it uses while it exists (see `EnvironmentUse`).

        One small file per environment under ``environments/``, named after the prefix,
        holding its path; touched by every sync that builds it.  Errors (a read-only
        shared cache) are ignored: age alone then protects its entries.
        """
        text = f"{os.path.abspath(prefix)}\n"
        name = hashlib.sha256(text.encode()).hexdigest()[:32]
        path = self.root / _ENVIRONMENTS / name
        with contextlib.suppress(OSError):
            try:
                if path.read_text(encoding="utf-8") == text:
                    os.utime(path)
                    return
            except (OSError, UnicodeDecodeError):
                pass
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)

    def registered_environments(self) -> list[tuple[Path, Path]]:
        """``(registration file, environment prefix)`` of every environment recorded by
        `register_environment` (unreadable registrations are skipped)."""
        found = []
        for entry in _scandir(self.root / _ENVIRONMENTS):
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = Path(entry.path).read_text(encoding="utf-8").strip()
                if text and os.path.isabs(text):
                    found.append((Path(entry.path), Path(text)))
        return found


# -- single flight ------------------------------------------------------------------------

_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF)
_DEADLOCK_RETRY_SECONDS = 0.05
#: Overrides how long a sync waits for another process's hold of an artifact (seconds).
LOCK_TIMEOUT_ENV = "LOCKENV_CACHE_LOCK_TIMEOUT"
# A waiter polls (a blocking lock has no timeout): at first often, for the common short
# wait, then every _POLL_MAX seconds at most.
_POLL_FIRST = 0.005
_POLL_MAX = 0.1


def lock_wait_override(default: float | None) -> float | None:
    """``$LOCKENV_CACHE_LOCK_TIMEOUT`` as seconds when set, else ``default``; UsageError-like
    CacheBusyError when it is not a number."""
    value = os.environ.get(LOCK_TIMEOUT_ENV)
    if not value:
        return default
    try:
        seconds = float(value)
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(value)
    except ValueError:
        raise CacheBusyError(
            f"{LOCK_TIMEOUT_ENV}={value!r} is not a number of seconds; fix or unset it"
        ) from None
    return seconds


def _lock_holder(fd: int, offset: int) -> int | None:
    """The pid of the process holding the byte at ``offset`` of ``fd`` (``F_GETLK``), if
    the platform says."""
    import fcntl
    import struct

    if sys.platform.startswith("linux"):
        layout = "hhqqi"  # l_type, l_whence, l_start, l_len, l_pid
    elif sys.platform == "darwin" or "bsd" in sys.platform:
        layout = "qqihh"  # l_start, l_len, l_pid, l_type, l_whence
    else:
        return None
    fields = {"l_type": fcntl.F_WRLCK, "l_whence": os.SEEK_SET, "l_start": offset}
    fields.update(l_len=1, l_pid=0)
    order = (
        ("l_type", "l_whence", "l_start", "l_len", "l_pid")
        if layout == "hhqqi"
        else ("l_start", "l_len", "l_pid", "l_type", "l_whence")
    )
    try:
        packed = struct.pack(layout, *(fields[name] for name in order))
        raw = fcntl.fcntl(fd, fcntl.F_GETLK, packed)
        answer = dict(zip(order, struct.unpack(layout, raw), strict=True))
    except (OSError, struct.error):
        return None
    if answer["l_type"] == fcntl.F_UNLCK or answer["l_pid"] <= 0:
        return None
    return int(answer["l_pid"])


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
    def holding(
        self, sha256: str, *, wait: bool, deadline: float | None, what: str
    ) -> Iterator[bool]:
        with self._guard:
            thread_lock = self._threads.setdefault(sha256, threading.RLock())
        started = time.monotonic()
        timeout = -1.0 if deadline is None or not wait else deadline
        if not thread_lock.acquire(blocking=wait, timeout=timeout):
            if wait:
                raise self._busy(what, deadline or 0.0, None, who="another thread of this sync")
            yield False
            return
        try:
            with self._guard:
                depth = self._depth[sha256] = self._depth.get(sha256, 0) + 1
            try:
                left = None if deadline is None else deadline - (time.monotonic() - started)
                locked = depth > 1 or self._lock(sha256, wait=wait, deadline=left, what=what)
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

    def _busy(
        self, what: str, waited: float, holder: int | None, *, who: str = ""
    ) -> CacheBusyError:
        who = who or (f"another lockenv process (pid {holder})" if holder else "another process")
        end = f"end it (kill {holder})" if holder else "end it"
        return CacheBusyError(
            f"{what}: waited {waited:.0f} s for {who}, which holds it in the cache "
            f"{str(self._root)!r} and seems stopped or hung; {end} or let it finish, then "
            f"sync again (set {LOCK_TIMEOUT_ENV}, in seconds, to wait longer)"
        )

    def _lock(self, sha256: str, *, wait: bool, deadline: float | None, what: str) -> bool:
        fd = self._descriptor()
        if fd is None:
            return True
        import fcntl

        offset = _lock_offset(sha256)
        blocking = wait and deadline is None
        started = time.monotonic()
        pause = _POLL_FIRST
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB), 1, offset)
                return True
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    if not wait:
                        return False
                    if deadline is not None:
                        waited = time.monotonic() - started
                        if waited >= deadline:
                            raise self._busy(what, waited, _lock_holder(fd, offset)) from None
                        time.sleep(min(pause, max(deadline - waited, 0.0)))
                        pause = min(pause * 2, _POLL_MAX)
                        continue
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


KeepPolicy = Literal["both", "trees", "archives"]
KEEP_POLICIES: tuple[KeepPolicy, ...] = ("trees", "both", "archives")
KEEP_ENV = "LOCKENV_CACHE_KEEP"


def keep_policy(value: str | None = None) -> KeepPolicy:
    """What the cache keeps of an artifact (see the module doc): ``value``, else
    ``$LOCKENV_CACHE_KEEP``, else "trees".  Raises UsageError for anything else."""
    configured = value if value is not None else os.environ.get(KEEP_ENV) or "trees"
    for policy in KEEP_POLICIES:
        if configured == policy:
            return policy
    from lockenv.errors import UsageError

    source = "--keep" if value is not None else f"${KEEP_ENV}"
    raise UsageError(f"{source} {configured!r}: give one of {', '.join(KEEP_POLICIES)}")


class _Pruner:
    """One pass of `prune`: decides, removes (unless dry) and records."""

    def __init__(self, cache: Cache, *, dry_run: bool) -> None:
        self.cache = cache
        self.dry_run = dry_run
        self.items: list[PrunedItem] = []
        self.entries = self.leftovers = 0

    def remove_entry(
        self, path: Path, limit: float, reason: str, *, leftover: bool = False
    ) -> bool:
        """Remove the entry directory ``path`` unless marked used at or after ``limit``."""
        if self.dry_run:
            freed: int | None = _freed_bytes(path)
        else:
            freed = _remove_unless_used(self.cache, path, limit)
        if freed is None:
            return False
        self._record(path, reason, freed, leftover=leftover)
        return True

    def remove_path(self, path: Path, reason: str, *, leftover: bool = False) -> None:
        """Remove the file or directory ``path`` (nobody uses it: no rename first)."""
        size = _freed_bytes(path)
        if not self.dry_run:
            remove_tree(path)
            if os.path.lexists(path):
                return
        self._record(path, reason, size, leftover=leftover)

    def _record(self, path: Path, reason: str, freed: int, *, leftover: bool) -> None:
        if leftover:
            self.leftovers += 1
        else:
            self.entries += 1
        from lockenv.cache_upkeep import PrunedItem

        rel = os.path.relpath(path, self.cache.root)
        self.items.append(PrunedItem(path=rel, reason=reason, freed_bytes=freed))


def prune(
    cache: Cache,
    *,
    older_than_days: float = 30.0,
    keep: KeepPolicy = "both",
    environments: Sequence[EnvironmentUse] = (),
    dry_run: bool = False,
    now: float | None = None,
) -> PruneReport:
    """Remove from ``cache`` what no sync needs any more; safe while other processes sync.

    Kept: whatever an environment of ``environments`` (those this cache knows about,
    found on this machine) was built from, and whatever a sync used in the last
    ``older_than_days`` days (environments elsewhere, on other nodes' scratch, are known
    only that way); never anything used in the last hour (a running sync may be linking
    from it).  Removed: the other archive and unpacked entries; unsealed trees without an
    archive; conda repodata stores and shards no lock used for that long; registrations
    of environments gone for that long; partial downloads and work directories of killed
    processes.  ``keep`` trims what is kept: "trees" drops an archive once its unpacked
    tree is sealed (checked first, under the artifact's lock, so no sync is reading it),
    "archives" drops an unpacked tree whose archive is there (unless an environment's
    symlinks point into it; it is unpacked again when needed).  An entry is renamed away
    first (readers see it whole or not at all), and put back if a sync marked it used
    between the scan and the rename.  ``dry_run``: remove nothing, report what would go.
    """
    from lockenv.cache_upkeep import PruneReport
    from lockenv.errors import UsageError

    if not older_than_days >= 0:  # also refuses NaN
        raise UsageError(f"--older-than {older_than_days!r}: give a number of days (>= 0)")
    now = time.time() if now is None else now
    in_use = now - _IN_USE_SECONDS
    unused = min(in_use, now - older_than_days * 86400)
    days = f"{older_than_days:g} days"
    pruner = _Pruner(cache, dry_run=dry_run)
    used: set[str] = set()
    linked: set[str] = set()
    for env in environments:
        if env.present:
            used |= env.artifacts
            if env.needs_trees:
                linked |= env.artifacts
        elif _mtime(env.registration) < unused:
            pruner.remove_path(env.registration, f"environment gone for {days}", leftover=True)
    kept_for_environments = 0
    archives: set[str] = set()
    for entry in _entries(cache.root / "archives"):
        sha = entry.name
        path = Path(entry.path)
        modified = _mtime(entry)  # before anything below changes it
        items = _scandir(path)
        # A download in progress keeps writing its .part file: an old one was abandoned.
        parts = [i for i in items if i.name.startswith(".") and i.name.endswith(".part")]
        dead = [i for i in parts if _mtime(i) < in_use]
        has_archive = len(items) > len(parts)
        if not has_archive:
            if modified < in_use and pruner.remove_entry(
                path, in_use, "partial download left by a killed process", leftover=True
            ):
                continue
        elif sha not in used and modified < unused:
            if pruner.remove_entry(path, unused, f"unused for {days}"):
                continue
        elif keep == "trees" and _tree_sealed(cache, sha):
            with cache.artifact_lock(sha, wait=False) as held:
                # Held: no sync is fetching or unpacking it, and none needs the archive
                # of a sealed tree.
                if held and _tree_sealed(cache, sha):
                    reason = "its unpacked tree is sealed (keep: trees)"
                    if pruner.remove_entry(path, float("inf"), reason):
                        continue
        if sha in used and modified < unused:
            kept_for_environments += 1
        for item in dead:
            pruner.remove_path(
                Path(item.path), "partial download left by a killed process", leftover=True
            )
        if has_archive:
            archives.add(sha)
    for entry in _entries(cache.root / "unpacked"):
        sha = entry.name.partition("-")[0]
        path = Path(entry.path)
        modified = _mtime(entry)
        if sha in used:
            if keep == "archives" and sha in archives and sha not in linked and modified < in_use:
                pruner.remove_entry(path, in_use, "its archive is kept (keep: archives)")
            elif modified < unused:
                kept_for_environments += 1
        elif modified < unused:
            pruner.remove_entry(path, unused, f"unused for {days}")
        elif modified < in_use and sha not in archives and not (path / SEAL).exists():
            # Neither usable (no seal) nor remade without its archive.
            pruner.remove_entry(path, in_use, "unsealed, and its archive is gone")
        elif keep == "archives" and sha in archives and modified < in_use:
            pruner.remove_entry(path, in_use, "its archive is kept (keep: archives)")
    # What locks keep: conda repodata split by name, and CEP 16 shards (both made again
    # from the channel when needed; a lock touches what it uses).
    for path in _lock_side_files(cache.root):
        if _mtime(path) < unused:
            pruner.remove_path(path, f"conda repodata unused for {days}")
    for path in cache.stale_temp():
        pruner.remove_path(path, "work directory left by a killed process", leftover=True)
    if not dry_run:
        cache.drop_dead_holds()
    return PruneReport(
        entries=pruner.entries,
        leftovers=pruner.leftovers,
        freed_bytes=sum(i.freed_bytes for i in pruner.items),
        items=tuple(pruner.items),
        kept_for_environments=kept_for_environments,
        dry_run=dry_run,
    )


def cache_usage(cache: Cache) -> dict[str, DiskUsage]:
    """Disk use of each top-level part of ``cache`` (``archives``, ``unpacked``, ...; the
    files at the top count as "other").  Each inode counts once, in the first part that
    reaches it (hard links are free)."""
    from lockenv.cache_upkeep import DiskUsage

    seen: set[tuple[int, int]] = set()
    usage: dict[str, DiskUsage] = {}
    for top in sorted(_scandir(cache.root), key=lambda e: e.name):
        part = top.name if top.is_dir(follow_symlinks=False) else "other"
        used, inodes = _disk_usage(Path(top.path), seen)
        before = usage.get(part, DiskUsage(bytes=0, inodes=0))
        usage[part] = DiskUsage(bytes=before.bytes + used, inodes=before.inodes + inodes)
    return usage


def tree_usage(path: Path) -> DiskUsage:
    """Disk use of the tree at ``path`` (each inode once, hard links or not): what it
    keeps on disk while it exists."""
    from lockenv.cache_upkeep import DiskUsage

    used, inodes = _disk_usage(path, set())
    return DiskUsage(bytes=used, inodes=inodes)


def _disk_usage(path: Path, seen: set[tuple[int, int]]) -> tuple[int, int]:
    used = inodes = 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            used += getattr(st, "st_blocks", 0) * 512 or st.st_size
            inodes += 1
        if stat.S_ISDIR(st.st_mode):
            stack.extend(e.path for e in _scandir(Path(current)))
    return used, inodes


def _tree_sealed(cache: Cache, sha256: str) -> bool:
    """Whether a sync by this user can use the artifact's unpacked tree as it is."""
    state = check_entry(cache.unpacked_dir(sha256))
    if state == "foreign":
        state = check_entry(cache.private_unpacked_dir(sha256))
    return state == "ok"


# -- work directories held while in use ----------------------------------------------------

_HOLD_SUFFIX = ".lock"
_held: dict[str, int] = {}  # work directory -> descriptor of its held lock (this process)
_held_lock = threading.Lock()
_tidied: set[str] = set()  # tmp/ directories this process cleaned once (`make_temp_dir`)


def _hold(path: Path) -> bool:
    """Hold ``<path>.lock`` (exclusive flock, on a file this call creates) for as long as
    this process uses ``path``: the kernel releases it when the process dies, however it
    dies.  False when that lock file exists already (the name is taken)."""
    try:
        import fcntl
    except ImportError:  # Windows: work directories are only cleaned by age
        return True
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(f"{path}{_HOLD_SUFFIX}", flags, 0o644)
    except FileExistsError:
        return False
    fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: never waits
    with _held_lock:
        _held[str(path)] = fd
    return True


def _release(path: Path) -> None:
    with _held_lock:
        fd = _held.pop(str(path), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(f"{path}{_HOLD_SUFFIX}")
        os.close(fd)


def _is_held(lock: Path) -> bool:
    """True while a live process holds ``lock`` (see `_hold`)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False  # released meanwhile: its holder is done with it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases our own flock
    return False


def _remove_abandoned(path: Path | None, lock: Path) -> bool:
    """Remove ``path`` and its ``lock`` if no live process holds the lock; True if so."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: a running sync's
        if path is not None:
            remove_tree(path)
        with contextlib.suppress(OSError):
            os.unlink(lock)
        return True
    finally:
        os.close(fd)


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
        work = cache.make_temp_dir("prune")
    except OSError:
        return None
    tomb = work / "entry"
    try:
        os.rename(path, tomb)
    except OSError:
        cache.remove_temp_dir(work)
        return None  # gone already, or not ours to remove
    if _mtime(tomb) >= limit:
        # A sync marked it between the scan and the rename: give it back.
        with contextlib.suppress(OSError):
            # Fails only when a sync re-created it meanwhile: content-addressed, so either
            # copy will do.
            os.rename(tomb, path)
        cache.remove_temp_dir(work)
        return None
    freed = _freed_bytes(tomb)
    cache.remove_temp_dir(work)
    return freed
