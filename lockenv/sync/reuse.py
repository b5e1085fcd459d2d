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

So the tree swapped in is the one a fresh build makes, at the cost of the difference.
Standard library only: on the path of every sync that changes an environment.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from lockenv.sync.link import each_in_threads
from lockenv.sync.plan import STATE_FILE, read_state
from lockenv.sync.pypi.wheel import WheelInstall

__all__ = [
    "SPARE_SUFFIX",
    "Refreshed",
    "is_spare",
    "keep_as_spare",
    "refresh_tree",
    "spare_path",
    "take_spare",
]

SPARE_SUFFIX = ".spare"


def spare_path(prefix: Path) -> Path:
    """Where the tree the last sync of ``prefix`` replaced is kept."""
    return prefix.parent / f".{prefix.name}{SPARE_SUFFIX}"


def take_spare(prefix: Path) -> Path | None:
    """The spare tree of ``prefix`` moved to a new staging name beside it (which the next
    sync removes if this one is killed), or None when there is none.  Call with the
    prefix's sync lock held."""
    import tempfile

    spare = spare_path(prefix)
    if not is_spare(spare):
        return None
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.staging-", dir=prefix.parent))
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


def _ancestors(path: str) -> Iterable[str]:
    while path:
        yield path
        path = path.rpartition("/")[0]


class Refreshed(NamedTuple):
    """What `refresh_tree` left in place (root-relative paths)."""

    files: set[str]
    dirs: set[str]  # real directories (none was reached through a symlink)


def refresh_tree(
    root: Path,
    plans: Sequence[WheelInstall],
    keep_dirs: Iterable[str],
    inodes: Mapping[str, tuple[int, int]] | None = None,
) -> Refreshed | None:
    """Remove from the tree at ``root`` every entry that is not exactly what installing
    ``plans`` (in order) would put there; return what was left in place, or None when
    something could not be removed, or a directory of the tree is another filesystem's
    (then the tree is of no use: build afresh).  ``keep_dirs``: directories of the
    skeleton, kept (with their ancestors) even when no package puts a file in them.
    ``inodes``: ``(st_dev, st_ino)`` of cache files by path, as this sync's seal check
    just saw them (`lockenv.sync.prepare.Prepared.inodes`); the others are looked at.

    A file that should be a link to a cache file is recognised by the inode number its
    directory entry holds, without an ``lstat``: every directory walked is on the tree's
    filesystem (checked), so that number names one inode of that filesystem, and an inode
    that is the cache file's has its content, mode and owner, which the seal check just
    verified (nor can a directory or a symlink of that filesystem have the number of a
    regular file there, so the entry's type need not be asked first).  Only the files
    the installer writes are looked at and read."""
    known = inodes or {}
    from lockenv.cache import remove_tree

    expected: dict[str, tuple[str | bytes, bool]] = {}
    dirs: set[str] = set()
    for plan in plans:
        for dest, source, executable in plan.entries:
            expected[dest] = (source, executable)  # a later package's file replaces
        for directory in plan.dirs:
            dirs.update(_ancestors(directory))
    for directory in keep_dirs:
        dirs.update(_ancestors(directory))

    try:
        device = os.lstat(root).st_dev
    except OSError:
        return None
    kept: set[str] = set()
    kept_dirs: set[str] = set()
    doomed: list[str] = []  # files to remove, together at the end
    pending = [("", str(root))]
    while pending:
        rel_dir, path = pending.pop()
        head = f"{rel_dir}/" if rel_dir else ""
        with os.scandir(path) as it:
            entries = list(it)
        for entry in entries:
            rel = head + entry.name
            want = expected.get(rel)
            if want is not None:
                source = want[0]
                if isinstance(source, str):
                    # Most entries: one dictionary lookup and the inode number the
                    # directory entry holds; no system call (see the docstring).
                    identity = known.get(source) or _cache_identity(source)
                    if identity is not None and identity == (device, entry.inode()):
                        kept.add(rel)
                        continue
                elif not entry.is_symlink() and _holds(entry, source, want[1]):
                    kept.add(rel)
                    continue
            if entry.is_dir(follow_symlinks=False):
                if rel not in dirs:
                    remove_tree(Path(entry.path))
                    if os.path.lexists(entry.path):
                        return None
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_dev != device:
                        return None  # a mount point: inode numbers there mean nothing here
                except OSError:
                    return None
                pending.append((rel, entry.path))
                kept_dirs.add(rel)
                continue
            doomed.append(entry.path)
    if each_in_threads(os.unlink, doomed):
        return None
    return Refreshed(files=kept, dirs=kept_dirs)


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


def _holds(entry: os.DirEntry[str], source: bytes, executable: bool) -> bool:
    """The regular file ``entry`` is a private file holding ``source`` (a file the
    installer writes: RECORD, INSTALLER, a launcher), with the mode it would get."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    mode = 0o755 if executable else 0o644
    if st.st_nlink != 1 or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(source):
        return False
    try:
        with open(entry.path, "rb") as fh:
            return fh.read() == source
    except OSError:
        return False
