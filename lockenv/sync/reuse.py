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
and ctime as the sync left it, and each package's plan key, directories, and the inode,
size and times of each file its plan writes.  The key (`lockenv.sync.pypi.wheel.plan_key`)
digests all that the plan is made of — the cache entry's identity as this sync's seal
check saw it (its files' inodes and its seal's own), the environment's paths and
interpreter, whether the package was asked for, its ``direct_url.json``, lockenv's
version — so one key means one plan: the same paths, the same bytes written, links to
the same inodes.  When that tree is refreshed in turn, only the directories the record
cannot vouch for are listed; the others are taken as they were (`_vouched_dirs`), and a
package all of whose directories are is taken whole, as the record gives it: not even
planned (`Refreshed.taken`):

- a directory whose inode, mtime and ctime are the recorded ones has the entries it had
  (adding, removing or renaming an entry moves both times; ``ctime`` cannot be set by
  hand) — trusted only when its ctime is older than the record file's own mtime, the
  filesystem's clock read after the directory was looked at: a change within the same
  clock tick could leave the times as they were (git's "racily clean" rule);
- its files are those of packages whose key is unchanged, in the same order: their paths
  are the same and each link is the very inode this sync's seal check just proved, so
  their content is right (a tree where a file had to be copied for want of a hardlink
  gets no record: its copy is no cache inode); the files the installer writes (RECORD,
  INSTALLER...) are not cache files: each is still looked at, and taken only when its
  inode, size, mtime and ctime are the recorded ones (writing a file, a ``chmod``, a
  link or a ``utime`` all move its ctime), the ctime older than the record as above;
  else its package is planned and the file compared byte for byte;
- a package taken so shares no directory with one planned (else it is planned too):
  which of two packages' entries for a path is in place is the plans' to say; its
  paths were held to the guard's rules by the sync that placed them;
- every other directory is listed and compared entry by entry as above: those of
  packages added, removed or changed, those holding the venv skeleton (written again),
  those whose subdirectories are not to be the same, and any that moved or is "racy";
  a directory vouched for that the walk does not reach as one (an ancestor made a
  symlink) means the record is set aside and everything listed.

So the tree swapped in is the one a fresh build makes, at the cost of the difference.
Standard library only: on the path of every sync that changes an environment.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from lockenv.sync.link import each_in_threads
from lockenv.sync.plan import STATE_FILE, read_state

if TYPE_CHECKING:
    from lockenv.sync.pypi.wheel import WheelInstall

__all__ = [
    "SPARE_SUFFIX",
    "TREE_RECORD",
    "Refreshed",
    "TreePackage",
    "is_spare",
    "keep_as_spare",
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
_RECORD_FORMAT = 2
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


class TreePackage(NamedTuple):
    """A package as a tree's record gives it (see the module doc)."""

    key: str  # `lockenv.sync.pypi.wheel.plan_key` of the plan that placed it
    dirs: tuple[str, ...]  # the plan's directories (`WheelInstall.dirs`)
    # The files the plan writes (not links), each with its ``(st_ino, st_size,
    # st_mtime_ns, st_ctime_ns)`` as the record's sync left it.
    written: tuple[tuple[str, int, int, int, int], ...]
    record_sha256: str  # of its RECORD file (one of ``written``), for the state file


class Refreshed(NamedTuple):
    """What `refresh_tree` left in place (root-relative paths)."""

    files: set[str]
    dirs: set[str]  # real directories (none was reached through a symlink)
    # Directories taken as the tree's record said and left untouched, with the times
    # it gave them (`write_tree_record` need not look at them again).
    times: dict[str, tuple[int, int, int]]
    # Plans (by index) every entry of which is in place, in directories the record
    # vouched for: not in ``files``; nothing of them is to be placed.
    whole: frozenset[int]
    # Packages (by index) taken as the record gives them, never planned: all in place
    # like the ``whole`` ones, and sharing no directory with a package that was planned.
    taken: dict[int, TreePackage]
    tree: set[str]  # the directories of the new tree (`tree_dirs`)


def refresh_tree(
    root: Path,
    keys: Sequence[str | None],
    plan: Callable[[int], WheelInstall],
    keep_dirs: Iterable[str],
    inodes: Mapping[str, tuple[int, int]] | None = None,
    *,
    record: bool = True,
) -> Refreshed | None:
    """Remove from the tree at ``root`` every entry that is not exactly what installing
    the packages (in order) would put there; return what was left in place, or None when
    something could not be removed, or a directory of the tree is another filesystem's
    (then the tree is of no use: build afresh).  ``keys``: each package's `plan_key`
    (None: its cache entry was not checked by this sync); ``plan(i)``: the plan of
    package ``i``, asked for only when the tree's record cannot stand for it (``record``
    False: the record is not read, every package is planned).  ``keep_dirs``: directories
    of the skeleton, kept (with their ancestors) even when no package puts a file in
    them.  ``inodes``: ``(st_dev, st_ino)`` of cache files by path, as this sync's seal
    check just saw them (`lockenv.sync.prepare.Prepared.inodes`); the others are looked at.

    A file that should be a link to a cache file is recognised by the inode number its
    directory entry holds, without an ``lstat``: every directory walked is on the tree's
    filesystem (checked), so that number names one inode of that filesystem, and an inode
    that is the cache file's has its content, mode and owner, which the seal check just
    verified (nor can a directory or a symlink of that filesystem have the number of a
    regular file there, so the entry's type need not be asked first).  Only the files
    the installer writes are looked at and read."""
    known = inodes or {}
    from lockenv.cache import remove_tree

    keep_dirs = list(keep_dirs)
    try:
        device = os.lstat(root).st_dev
    except OSError:
        return None
    found = _read_record(root, keys) if record else None
    recorded = found.recorded if found is not None else {}
    plans = {i: plan(i) for i in range(len(keys)) if i not in recorded}
    # One key, one plan: a package's directories are those its record gives.
    dirs = tree_dirs(
        [plans[i].dirs if i in plans else recorded[i].dirs for i in range(len(keys))], keep_dirs
    )
    vouched: dict[str, tuple[int, int, int]] = {}
    stale: set[str] = set()
    taken: dict[int, TreePackage] = {}
    looked: dict[str, os.stat_result] = {}  # the directories vouched for, as they are
    if found is not None:
        vouched, stale = _vouched_dirs(found, keys, plans, dirs)
        base = f"{root}/"
        for rel in vouched:
            with suppress(OSError):
                looked[rel] = os.lstat(base + rel)
        same = {rel for rel, st in looked.items() if _times(st) == vouched[rel]}
        taken = _taken(root, recorded, same, found.stamp, plans, plan)
        if any(plans[i].dirs != recorded[i].dirs for i in recorded.keys() - taken.keys()):
            # Not the plan its key promised (lockenv changed, and not its version?): the
            # record stands for nothing.
            return refresh_tree(root, keys, plan, keep_dirs, inodes, record=False)
    # Path -> the entry that makes it (a later package's replaces an earlier one's).
    expected: dict[str, tuple[str, str | bytes, bool]] = {}
    for index in sorted(plans):
        made = plans[index].entries
        expected.update(zip(map(_first, made), made, strict=True))
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
                # Looked at above, through the very directories this walk went through.
                st = looked.get(rel)
                if st is None:
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
        if rel_dir in stale:
            # Nothing in a directory only changed packages had files in can stay: its
            # files are not even compared.
            subdirs = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry)
                else:
                    doomed.append(entry.path)
            entries = subdirs
        for entry in entries:
            rel = head + entry.name
            want = expected.get(rel)
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
    if not all(unlisted.keys() >= set(package.dirs) for package in taken.values()):
        # A directory the record vouched for was not reached as a directory (an ancestor
        # made a symlink?): the packages taken are not all in place; nothing but files
        # of no package was removed yet.
        return refresh_tree(root, keys, plan, keep_dirs, inodes, record=False)
    whole = frozenset[int]()
    if unlisted:
        whole = _keep_unlisted(root, plans, expected, unlisted, kept, doomed)
    if each_in_threads(os.unlink, doomed):
        return None
    return Refreshed(
        files=kept, dirs=kept_dirs, times=unlisted, whole=whole, taken=taken, tree=dirs
    )


def _first(entry: tuple[str, str | bytes, bool]) -> str:
    return entry[0]


def tree_dirs(package_dirs: Iterable[Iterable[str]], keep_dirs: Iterable[str]) -> set[str]:
    """The directories of the tree whose packages have the directories ``package_dirs``
    (`WheelInstall.dirs`), with the skeleton's ``keep_dirs``, every ancestor included
    (not the root)."""
    dirs: set[str] = set(keep_dirs)
    for each in package_dirs:
        dirs.update(each)
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


def _taken(
    root: Path,
    recorded: Mapping[int, TreePackage],
    vouched: Set[str],
    stamp: int,
    plans: dict[int, WheelInstall],
    plan: Callable[[int], WheelInstall],
) -> dict[int, TreePackage]:
    """The ``recorded`` packages (by index: same key as in the record) taken as the record
    gives them: all of their directories ``vouched`` for (and as recorded now), every
    file they write as the record's sync left it, and no directory shared with a package
    planned now (so no path either: which of two entries for a path is in place is then
    the plans' to say).  The others are planned, into ``plans``."""
    base = f"{root}/"
    taken = {
        index: package
        for index, package in recorded.items()
        if vouched >= set(package.dirs) and _as_written(base, package.written, stamp)
    }
    for index in recorded.keys() - taken.keys():
        plans[index] = plan(index)
    planned: set[str] = set()
    for each in plans.values():
        planned.update(each.dirs)
    shared = [index for index, package in taken.items() if not planned.isdisjoint(package.dirs)]
    while shared:
        for index in shared:
            del taken[index]
            plans[index] = plan(index)
            planned.update(plans[index].dirs)
        shared = [i for i, package in taken.items() if not planned.isdisjoint(package.dirs)]
    return taken


def _as_written(base: str, written: Iterable[tuple[str, int, int, int, int]], stamp: int) -> bool:
    """Every file of ``written`` is still the private regular file the record's sync left,
    by its inode, size and times: writing into a file moves its mtime and ctime, and a
    ``chmod``, a link or a ``utime`` its ctime, which cannot be set by hand; trusted
    only when that ctime is older than the record (the clock read after it was looked
    at), as for directories."""
    for rel, ino, size, mtime, ctime in written:
        try:
            st = os.lstat(base + rel)
        except OSError:
            return False
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_nlink != 1
            or (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) != (ino, size, mtime, ctime)
            or ctime >= stamp
        ):
            return False
    return True


def _keep_unlisted(
    root: Path,
    plans: Mapping[int, WheelInstall],
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
    for index in sorted(plans):
        plan = plans[index]
        if unlisted.keys().isdisjoint(plan.dirs):
            continue  # all of it in directories listed: compared there
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


def write_tree_record(
    root: Path,
    keys: Sequence[str | None],
    packages: Sequence[WheelInstall | TreePackage],
    record_sha256: Sequence[str],
    dirs: Iterable[str],
    skeleton: Iterable[str],
    times: Mapping[str, tuple[int, int, int]] | None = None,
) -> None:
    """Leave at ``root``, a complete tree made of ``packages`` (each a plan, or a package
    taken as the tree's record gave it: `Refreshed.taken`), whose `plan_key` are ``keys``
    and the sha256 of whose RECORD files are ``record_sha256``, its directories ``dirs``
    (`Refreshed.tree`) and a venv skeleton (the files ``skeleton``), the record a later
    refresh of it reads (see the module doc).
    ``times``: directories known to be as their record said and untouched since
    (`Refreshed.times`), not looked at again.

    Call last, once nothing in the tree is to change: what the record says of each
    directory and written file is vouched for by the record file's own mtime, read after
    it.  Best effort: a tree without a record is refreshed by listing all of it."""
    import json

    known = times or {}
    listed = {path.rpartition("/")[0] for path in skeleton}  # written again: always listed
    rows: list[list[object]] = []
    base = f"{root}/"
    for rel in sorted(dirs):
        if rel in listed or not _plain(rel):
            continue
        seen = known.get(rel)
        if seen is None:
            try:
                seen = _times(os.lstat(base + rel))
            except OSError:
                continue
        rows.append([rel, *seen])
    # Of the entries planned for a path, the last is in the tree (a package taken as
    # recorded shares no directory with a planned one).
    final: dict[str, tuple[str, str | bytes, bool]] = {}
    for package in packages:
        if not isinstance(package, TreePackage):
            final.update(zip(map(_first, package.entries), package.entries, strict=True))
    records: list[list[object]] = []
    for key, package, sha256 in zip(keys, packages, record_sha256, strict=True):
        if isinstance(package, TreePackage):
            records.append([key, list(package.dirs), [list(w) for w in package.written], sha256])
            continue
        written: list[list[object]] = []
        for entry in package.entries:
            dest = entry[0]
            if entry[1].__class__ is not bytes or final[dest] is not entry:
                continue
            if dest.rpartition("/")[0] in listed:
                continue  # never vouched for: compared byte for byte
            try:
                st = os.lstat(base + dest)
            except OSError:
                key = None
                break
            written.append([dest, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        records.append([key, list(package.dirs), written, sha256])
    data = json.dumps(
        {"format": _RECORD_FORMAT, "dirs": rows, "packages": records}, separators=(",", ":")
    )
    try:
        fd = os.open(root / TREE_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except OSError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)


class _Record(NamedTuple):
    dirs: dict[str, tuple[int, int, int]]  # each directory's times as the record gives them
    packages: list[tuple[str, set[str]]]  # each package's key ("" for none) and directories
    recorded: dict[int, TreePackage]  # the new packages (by index) with a key it holds
    stamp: int  # the record file's mtime


def _read_record(root: Path, keys: Sequence[str | None]) -> _Record | None:
    """The record at ``root``, with the packages of ``keys`` it holds, or None when there
    is none, it cannot be read, or the packages common to it and ``keys`` are not in the
    same order (a path both place may then hold another's entry: compare everything)."""
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
    try:
        dirs = {
            str(rel): (int(ino), int(mtime), int(ctime)) for rel, ino, mtime, ctime in data["dirs"]
        }
        packages: list[TreePackage | None] = []
        for key, pdirs, written, sha256 in data["packages"]:
            # A package whose entry its sync did not check has no key (null): never kept.
            if key is None:
                packages.append(None)
                continue
            package = TreePackage(
                key=str(key),
                dirs=tuple(map(str, pdirs)),
                written=tuple(
                    (str(rel), int(ino), int(size), int(mtime), int(ctime))
                    for rel, ino, size, mtime, ctime in written
                ),
                record_sha256=str(sha256),
            )
            if not all(map(_plain, package.dirs)) or not all(
                _plain(w[0]) and w[0].rpartition("/")[0] in package.dirs for w in package.written
            ):
                return None  # a path that names a place two ways: compare everything
            packages.append(package)
    except (KeyError, TypeError, ValueError):
        return None
    by_key = {p.key: p for p in packages if p is not None}
    if len(by_key) != sum(p is not None for p in packages):
        return None
    recorded = {i: by_key[k] for i, k in enumerate(keys) if k is not None and k in by_key}
    if [p.key for p in packages if p is not None and p.key in keys] != [
        keys[i] for i in sorted(recorded)
    ]:
        return None
    return _Record(
        dirs=dirs,
        packages=[(p.key, set(p.dirs)) if p else ("", set()) for p in packages],
        recorded=recorded,
        stamp=st.st_mtime_ns,
    )


def _vouched_dirs(
    record: _Record,
    keys: Sequence[str | None],
    plans: Mapping[int, WheelInstall],
    dirs: set[str],
) -> tuple[dict[str, tuple[int, int, int]], set[str]]:
    """The directories of the new tree (``dirs``) that ``record`` can vouch for, with the
    ``(st_ino, st_mtime_ns, st_ctime_ns)`` each must still have; and the "stale"
    directories of the record's tree: those only packages not kept had files in
    (whatever they hold now is theirs or was added since: nothing there can stay).
    ``plans``: those of the packages the record does not hold.

    A directory qualifies when the record's sync left it with a ctime older than the
    record, every package with files in it is one of the record's with the same key
    (the packages common to both in the same order: `_read_record`), none of the new
    packages has files in it, it holds nothing of the skeleton, and its subdirectories
    are to be the same."""
    if not all(map(_plain, dirs)):
        return {}, set()  # a path that names a directory two ways: compare entry by entry
    new_set = {k for k in keys if k is not None}
    dirty: set[str] = set()
    live: set[str] = set()  # with files of a package kept
    for key, pdirs in record.packages:
        if key in new_set:
            live |= pdirs
        else:
            dirty |= pdirs
    stale = dirty - live
    for index, each in plans.items():
        if index not in record.recorded:
            dirty.update(each.dirs)
    # A directory that gains or loses a subdirectory is the parent of one in one tree
    # and not the other.
    dirty.update(rel.rpartition("/")[0] for rel in record.dirs.keys() ^ dirs)
    vouched = {
        rel: times
        for rel, times in record.dirs.items()
        if times[2] < record.stamp and rel not in dirty and rel in dirs
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
