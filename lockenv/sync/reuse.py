"""The tree a sync replaced, kept as the next sync's staging tree and refreshed in place.

A sync builds a complete staging tree and exchanges it with the live environment, so a
reader sees the old environment or the new one, never a mix.  Built from nothing, that
tree costs a link per file and a ``mkdir`` per directory, and removing the replaced tree
as much again: when one package of a large environment changes, thousands of system
calls where a few hundred would do.  So the replaced tree is not removed but kept beside
the prefix as ``.<name>.spare`` (`keep_as_spare`) — for hardlinked virtual environments
on the cache's filesystem only, where it costs directory entries, not bytes — and the
next sync of the prefix takes it as its staging tree (`take_spare`) and makes it what a
fresh build would be (`refresh_tree`):

- it is renamed to a staging name first, and its state file removed, so a sync killed
  while refreshing it leaves an incomplete staging tree that the next sync deletes, as it
  deletes any (the live environment is not touched until the exchange);
- every entry is looked at, one directory listing and one ``lstat`` per directory (and
  per file the installer writes): a file stays only where the new environment has
  exactly it — a hardlink to the very cache file the new one links (same inode, as the
  directory entry says: the cache entry was checked against its seal by this sync), or
  a file the installer writes, with the same bytes and mode and no other link to it;
  everything else goes (the old versions of changed packages, ``__pycache__`` written
  while the tree was live, anything installed by hand, every symlink and the venv
  skeleton, which is written again), the files together once the walk is done, by a
  few threads when they are many (`lockenv.sync.link.each_in_threads`);
- what is missing is then created through the `PrefixGuard` like any sync's files.

Most of a one-package change's tree is as it was, and listing all of it costs more than
the change itself.  So a sync that refreshes a spare leaves a record in the tree it
swaps in, ``.lockenv-tree.json`` (`write_tree_record`): each directory's inode, mtime
and ctime as the sync left it, and each package's directories with a digest of its plan
— the paths it places, the inode of every cache file it links (as the seal check saw
them), the bytes of every file it writes.  When that tree is refreshed in turn, only
the directories the record cannot vouch for are listed; the others are taken as they
were (`_vouched_dirs`), and a package all of whose directories are is kept whole, its
files not even walked by the installer (`Refreshed.whole`):

- a directory whose inode, mtime and ctime are the recorded ones has the entries it had
  (adding, removing or renaming an entry moves both times; ``ctime`` cannot be set by
  hand) — trusted only when its ctime is older than the record file's own mtime, the
  filesystem's clock read after the directory was looked at: a change within the same
  clock tick could leave the times as they were (git's "racily clean" rule);
- its files are those of packages whose plan digest is unchanged, in the same order:
  their paths are the same and each link is the very inode this sync's seal check just
  proved, so their content is right; the files the installer writes (RECORD, launchers)
  are not cache files, so each is still compared, byte for byte;
- every other directory is listed and compared entry by entry as above: those of
  packages added, removed or changed, those holding the venv skeleton (written again),
  those whose subdirectories are not to be the same, and any that moved or is "racy".

So the tree swapped in is the one a fresh build makes, at the cost of the difference.
Standard library only: on the path of every sync that changes an environment.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lockenv.sync.link import each_in_threads
from lockenv.sync.plan import STATE_FILE, read_state

if TYPE_CHECKING:
    from lockenv.sync.pypi.wheel import WheelInstall

__all__ = [
    "SPARE_SUFFIX",
    "TREE_RECORD",
    "Refreshed",
    "is_spare",
    "keep_as_spare",
    "plan_digests",
    "refresh_tree",
    "spare_path",
    "take_spare",
    "tree_dirs",
    "write_tree_record",
]

SPARE_SUFFIX = ".spare"
# At the root of a tree a sync built (see the module doc); no package may write it
# (`lockenv.sync.guard.STATE_NAMES`).
TREE_RECORD = ".lockenv-tree.json"
_RECORD_FORMAT = 1
_MAX_RECORD = 64 << 20  # bytes; a record is about 100 bytes per directory


def spare_path(prefix: Path) -> Path:
    """Where the tree the last sync of ``prefix`` replaced is kept."""
    return prefix.parent / f".{prefix.name}{SPARE_SUFFIX}"


def take_spare(prefix: Path) -> Path | None:
    """The spare tree of ``prefix`` moved to a new staging name beside it (which the next
    sync removes if this one is killed), or None when there is none.  Call with the
    prefix's sync lock held."""
    from lockenv.atomic import private_dir

    spare = spare_path(prefix)
    if not is_spare(spare):
        return None
    staging = private_dir(prefix.parent, f".{prefix.name}.staging-")
    try:
        os.rename(spare, staging)  # replaces the empty directory just made
    except OSError:
        os.rmdir(staging)
        return None
    return staging


def is_spare(path: Path) -> bool:
    """Whether ``path`` is a tree a sync kept as a spare: a directory with its state file
    (never a directory of the user's that happens to have the name)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and stat.S_ISREG(
            os.lstat(path / STATE_FILE).st_mode
        )
    except OSError:
        return False


def keep_as_spare(old: Path, prefix: Path, *, reusable: bool) -> bool:
    """Keep the replaced tree ``old`` as the spare of ``prefix`` when ``reusable`` (the
    new environment is a hardlinked virtual environment on the cache's filesystem) and
    ``old`` was one too (a copied or conda tree would cost its bytes); False when it was
    not kept (the caller removes it).  Whatever is already at the spare's name (not a
    tree a sync kept, or the sync would have taken it) is left alone."""
    if not reusable:
        return False
    state = read_state(old)
    if state is None or state.kind != "venv" or state.link_mode != "hardlink":
        return False
    spare = spare_path(prefix)
    if os.path.lexists(spare):
        return False
    try:
        os.rename(old, spare)
    except OSError:
        return False
    return True


class Refreshed(NamedTuple):
    """What `refresh_tree` left in place (root-relative paths)."""

    files: set[str]
    dirs: set[str]  # real directories (none was reached through a symlink)
    # Directories taken as the tree's record said and left untouched, with the times
    # it gave them (`write_tree_record` need not look at them again).
    times: dict[str, tuple[int, int, int]]
    # Plans (by index) every entry of which is in place, in directories the record
    # vouched for: not in ``files``; nothing of them is to be placed.
    whole: frozenset[int] = frozenset()


def refresh_tree(
    root: Path,
    plans: Sequence[WheelInstall],
    keep_dirs: Iterable[str],
    inodes: Mapping[str, tuple[int, int]] | None = None,
    digests: Sequence[str | None] | None = None,
) -> Refreshed | None:
    """Remove from the tree at ``root`` every entry that is not exactly what installing
    ``plans`` (in order) would put there; return what was left in place, or None when
    something could not be removed, or a directory of the tree is another filesystem's
    (then the tree is of no use: build afresh).  ``keep_dirs``: directories of the
    skeleton, kept (with their ancestors) even when no package puts a file in them.
    ``inodes``: ``(st_dev, st_ino)`` of cache files by path, as this sync's seal check
    just saw them (`lockenv.sync.prepare.Prepared.inodes`); the others are looked at.
    ``digests``: `plan_digests` of ``plans`` with ``inodes``; with them, the directories
    the tree's record vouches for are not listed (see the module doc).

    A file that should be a link to a cache file is recognised by the inode number its
    directory entry holds, without an ``lstat``: every directory walked is on the tree's
    filesystem (checked), so that number names one inode of that filesystem, and an inode
    that is the cache file's has its content, mode and owner, which the seal check just
    verified (nor can a directory or a symlink of that filesystem have the number of a
    regular file there, so the entry's type need not be asked first).  Only the files
    the installer writes are looked at and read."""
    known = inodes or {}
    from lockenv.cache import remove_tree

    # Path -> the entry that makes it (a later package's replaces an earlier one's).
    expected: dict[str, tuple[str, str | bytes, bool]] = {}
    for plan in plans:
        expected.update(zip(map(_first, plan.entries), plan.entries, strict=True))
    dirs = tree_dirs(plans, keep_dirs)

    try:
        device = os.lstat(root).st_dev
    except OSError:
        return None
    vouched: dict[str, tuple[int, int, int]] = {}
    stale: set[str] = set()
    if digests is not None:
        vouched, stale = _vouched_dirs(root, plans, digests, dirs)
    children: dict[str, list[str]] = {}
    if vouched:
        for rel in dirs:
            parent, _, name = rel.rpartition("/")
            children.setdefault(parent, []).append(name)
    kept: set[str] = set()
    kept_dirs: set[str] = set()
    unlisted: dict[str, tuple[int, int, int]] = {}  # taken as the record says, not listed
    doomed: list[str] = []  # files to remove, together at the end
    pending = [("", str(root), False)]
    while pending:
        rel_dir, path, as_recorded = pending.pop()
        head = f"{rel_dir}/" if rel_dir else ""
        if as_recorded:
            # Its entries are those the record's sync left: only its subdirectories are
            # looked at (each has its own times to be vouched for).
            unlisted[rel_dir] = vouched[rel_dir]
            for name in children.get(rel_dir, ()):
                rel, sub = head + name, f"{path}/{name}"
                try:
                    st = os.lstat(sub)
                except OSError:
                    return None
                if not stat.S_ISDIR(st.st_mode) or st.st_dev != device:
                    return None  # not what the record says after all: build afresh
                pending.append((rel, sub, vouched.get(rel) == _times(st)))
                kept_dirs.add(rel)
            continue
        with os.scandir(path) as it:
            entries = list(it)
        # Nothing in a directory only changed packages had files in can stay: its files
        # are not even compared.
        compare = rel_dir not in stale
        for entry in entries:
            rel = head + entry.name
            want = expected.get(rel) if compare else None
            if want is not None:
                source = want[1]
                if isinstance(source, str):
                    # Most entries: one dictionary lookup and the inode number the
                    # directory entry holds; no system call (see the docstring).
                    identity = known.get(source) or _cache_identity(source)
                    if identity is not None and identity == (device, entry.inode()):
                        kept.add(rel)
                        continue
                elif not entry.is_symlink() and _holds(entry.path, source, want[2]):
                    kept.add(rel)
                    continue
            if entry.is_dir(follow_symlinks=False):
                if rel not in dirs:
                    remove_tree(Path(entry.path))
                    if os.path.lexists(entry.path):
                        return None
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    return None
                if st.st_dev != device:
                    return None  # a mount point: inode numbers there mean nothing here
                pending.append((rel, entry.path, vouched.get(rel) == _times(st)))
                kept_dirs.add(rel)
                continue
            doomed.append(entry.path)
    whole = frozenset[int]()
    if unlisted:
        whole = _keep_unlisted(root, plans, expected, unlisted, kept, doomed)
    if each_in_threads(os.unlink, doomed):
        return None
    return Refreshed(files=kept, dirs=kept_dirs, times=unlisted, whole=whole)


def _first(entry: tuple[str, str | bytes, bool]) -> str:
    return entry[0]


def tree_dirs(plans: Sequence[WheelInstall], keep_dirs: Iterable[str]) -> set[str]:
    """The directories of the tree ``plans`` make (with the skeleton's ``keep_dirs``),
    every ancestor included (not the root)."""
    dirs: set[str] = set(keep_dirs)
    for plan in plans:
        dirs.update(plan.dirs)
    dirs.discard("")
    for rel in list(dirs):
        parent = rel.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return dirs


def _plain(rel: str) -> bool:
    """``rel`` names a directory one way only: no empty, ``.`` or ``..`` component."""
    padded = f"/{rel}/"
    return "//" not in padded and "/./" not in padded and "/../" not in padded


def _times(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns


def _keep_unlisted(
    root: Path,
    plans: Sequence[WheelInstall],
    expected: Mapping[str, tuple[str, str | bytes, bool]],
    unlisted: dict[str, tuple[int, int, int]],
    kept: set[str],
    doomed: list[str],
) -> frozenset[int]:
    """The entries of ``plans`` in the ``unlisted`` directories (all of them from packages
    the record vouches for, see `_vouched_dirs`) kept: the links as they are, the files
    the installer writes when they still hold their bytes (else into ``doomed``, to be
    written again, and their directory out of ``unlisted``).  Returns the indices of the
    plans kept whole (every entry in place: not added to ``kept`` one by one); the other
    plans' entries kept are added to ``kept``."""
    base = f"{root}/"
    whole: set[int] = set()
    for index, plan in enumerate(plans):
        entire = unlisted.keys() >= set(plan.dirs)
        if entire:
            mine = [e for e in plan.entries if e[1].__class__ is bytes]
        else:
            mine = []
            for entry in plan.entries:
                if entry[0].rpartition("/")[0] in unlisted:
                    kept.add(entry[0])
                    if entry[1].__class__ is bytes:
                        mine.append(entry)
        failed: list[str] = []
        for entry in mine:
            dest, content, executable = entry
            if expected[dest] is not entry:
                continue  # a later package's entry replaces this one: decided there
            assert isinstance(content, bytes)
            if not _holds(base + dest, content, executable):
                failed.append(dest)
                if os.path.lexists(base + dest):
                    doomed.append(base + dest)
                    unlisted.pop(dest.rpartition("/")[0], None)  # it changes
        if entire and not failed:
            whole.add(index)
            continue
        if entire:
            kept.update(map(_first, plan.entries))
        kept.difference_update(failed)
    return frozenset(whole)


def plan_digests(
    plans: Sequence[WheelInstall], inodes: Mapping[str, tuple[int, int]]
) -> list[str | None]:
    """For each plan, a digest of what it puts in a tree: its paths, the bytes and modes
    of the files it writes, and the ``(st_dev, st_ino)`` of each cache file it links, from
    ``inodes`` (`lockenv.sync.prepare.Prepared.inodes`); None for a plan linking a file
    not in ``inodes`` (its entry was not checked, but unpacked, by this sync).  A link's
    mode is its inode's, which the seal check proves."""
    import hashlib
    from itertools import repeat
    from operator import itemgetter

    source_of = itemgetter(1)
    get = inodes.get
    digests: list[str | None] = []
    for plan in plans:
        # Column by column, in C where it can: this runs over every file of the tree.
        # 0 for the files written (bytes are not keys), and for a file not checked.
        ids = tuple(map(get, map(source_of, plan.entries), repeat(0)))
        written = [e for e in plan.entries if e[1].__class__ is bytes]
        if ids.count(0) != len(written):
            digests.append(None)
            continue
        h = hashlib.blake2b(digest_size=16)
        h.update("\0".join(map(_first, plan.entries)).encode("utf-8", "surrogateescape"))
        # The hash of a tuple of ints is the same in every process (a str's is not, nor
        # None's before Python 3.12).
        h.update(hash(ids).to_bytes(8, "little", signed=True))
        for _dest, content, executable in written:
            assert isinstance(content, bytes)
            h.update(b"\1" if executable else b"\0")
            h.update(len(content).to_bytes(8, "little"))
            h.update(content)
        digests.append(h.hexdigest())
    return digests


def write_tree_record(
    root: Path,
    plans: Sequence[WheelInstall],
    digests: Sequence[str | None],
    keep_dirs: Iterable[str],
    skeleton: Iterable[str],
    times: Mapping[str, tuple[int, int, int]] | None = None,
) -> None:
    """Leave at ``root``, a complete tree that ``plans`` and a venv skeleton (the files
    ``skeleton``) made, the record a later refresh of it reads (see the module doc).
    ``times``: directories known to be as their record said and untouched since
    (`Refreshed.times`), not looked at again.

    Call last, once nothing in the tree is to change: what the record says of each
    directory is vouched for by the record file's own mtime, read after it.  Best effort:
    a tree without a record is refreshed by listing all of it."""
    import json

    known = times or {}
    listed = {path.rpartition("/")[0] for path in skeleton}  # written again: always listed
    dirs: list[list[object]] = []
    base = f"{root}/"
    for rel in sorted(tree_dirs(plans, keep_dirs)):
        if rel in listed or not _plain(rel):
            continue
        seen = known.get(rel)
        if seen is None:
            try:
                seen = _times(os.lstat(base + rel))
            except OSError:
                continue
        dirs.append([rel, *seen])
    packages = [[digest, list(plan.dirs)] for plan, digest in zip(plans, digests, strict=True)]
    data = json.dumps(
        {"format": _RECORD_FORMAT, "dirs": dirs, "packages": packages}, separators=(",", ":")
    )
    try:
        fd = os.open(root / TREE_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except OSError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)


def _read_record(root: Path) -> tuple[Any, int] | None:
    """The record at ``root`` (parsed) and its mtime, or None."""
    import json

    try:
        with open(root / TREE_RECORD, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_RECORD:
                return None
            data = json.loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _RECORD_FORMAT:
        return None
    return data, st.st_mtime_ns


def _vouched_dirs(
    root: Path,
    plans: Sequence[WheelInstall],
    digests: Sequence[str | None],
    dirs: set[str],
) -> tuple[dict[str, tuple[int, int, int]], set[str]]:
    """The directories of the new tree (``dirs``) that the record at ``root`` can vouch
    for, with the ``(st_ino, st_mtime_ns, st_ctime_ns)`` each must still have; and the
    "stale" directories of the record's tree: those only packages not kept had files in
    (whatever they hold now is theirs or was added since: nothing there can stay).

    A directory qualifies when the record's sync left it with a ctime older than the
    record, every package with files in it is one of the record's with the same digest
    (the packages common to both in the same order), none of the new packages has files
    in it, it holds nothing of the skeleton, and its subdirectories are to be the same."""
    nothing: tuple[dict[str, tuple[int, int, int]], set[str]] = ({}, set())
    found = _read_record(root)
    if found is None:
        return nothing
    data, stamp = found
    try:
        recorded = {
            str(rel): (int(ino), int(mtime), int(ctime)) for rel, ino, mtime, ctime in data["dirs"]
        }
        # A package whose entry this sync did not check has no digest (null): never kept.
        old = [(digest or "", set(map(str, pdirs))) for digest, pdirs in data["packages"]]
    except (KeyError, TypeError, ValueError):
        return nothing
    new_set = {d for d in digests if d is not None}
    old_set = {d for d, _ in old if d}
    if [d for d, _ in old if d in new_set] != [d for d in digests if d in old_set]:
        return nothing  # the common packages in another order: a shared path may differ
    if not all(map(_plain, dirs)) or not all(_plain(d) for _, pdirs in old for d in pdirs):
        return nothing  # a path that names a directory two ways: compare entry by entry
    dirty: set[str] = set()
    live: set[str] = set()  # with files of a package kept
    for digest, pdirs in old:
        if digest in new_set:
            live |= pdirs
        else:
            dirty |= pdirs
    stale = dirty - live
    for plan, digest in zip(plans, digests, strict=True):
        if digest not in old_set:
            dirty.update(plan.dirs)
    # A directory that gains or loses a subdirectory is the parent of one in one tree
    # and not the other.
    dirty.update(rel.rpartition("/")[0] for rel in recorded.keys() ^ dirs)
    vouched = {
        rel: times
        for rel, times in recorded.items()
        if times[2] < stamp and rel not in dirty and rel in dirs
    }
    return vouched, stale


def _cache_identity(source: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the cache file ``source`` when it is a regular file (a
    file of an entry this sync did not check: unpacked by it)."""
    try:
        cached = os.lstat(source)
    except OSError:
        return None
    if not stat.S_ISREG(cached.st_mode):
        return None
    return cached.st_dev, cached.st_ino


def _holds(path: str, source: bytes, executable: bool) -> bool:
    """The regular file at ``path`` is a private file holding ``source`` (a file the
    installer writes: RECORD, INSTALLER, a launcher), with the mode it would get."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    mode = 0o755 if executable else 0o644
    if st.st_nlink != 1 or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(source):
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read() == source
    except OSError:
        return False
