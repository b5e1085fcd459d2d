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
- every entry is looked at, one directory listing per directory and one ``lstat`` per
  file: a file stays only where the new environment has exactly it — a hardlink to the
  very cache file the new one links (same inode; the cache entry was checked against its
  seal by this sync), or a file the installer writes, with the same bytes and mode and
  no other link to it; everything else goes (the old versions of changed packages,
  ``__pycache__`` written while the tree was live, anything installed by hand, every
  symlink and the venv skeleton, which is written again);
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

from lockenv.sync.pypi.wheel import WheelInstall

__all__ = [
    "SPARE_SUFFIX",
    "Refreshed",
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
    try:
        if not stat.S_ISDIR(os.lstat(spare).st_mode):
            return None
    except OSError:
        return None
    staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.staging-", dir=prefix.parent))
    try:
        os.rename(spare, staging)  # replaces the empty directory just made
    except OSError:
        os.rmdir(staging)
        return None
    return staging


def keep_as_spare(old: Path, prefix: Path, *, reusable: bool) -> bool:
    """Keep the replaced tree ``old`` as the spare of ``prefix`` when ``reusable`` (a
    hardlinked virtual environment on the cache's filesystem); False when it was not kept
    (the caller removes it)."""
    if not reusable:
        return False
    from lockenv.cache import remove_tree

    spare = spare_path(prefix)
    if os.path.lexists(spare):
        remove_tree(spare)  # not reached: the sync took it as its staging tree
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
    something could not be removed (then the tree is of no use: build afresh).
    ``keep_dirs``: directories of the skeleton, kept (with their ancestors) even when no
    package puts a file in them.  ``inodes``: ``(st_dev, st_ino)`` of cache files by path,
    as this sync's seal check just saw them (`lockenv.sync.prepare.Prepared.inodes`);
    the others are looked at."""
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

    kept: set[str] = set()
    kept_dirs: set[str] = set()
    base = str(root)
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(f"{base}/{rel_dir}" if rel_dir else base) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if rel in dirs:
                    pending.append(rel)
                    kept_dirs.add(rel)
                else:
                    remove_tree(Path(entry.path))
                    if os.path.lexists(entry.path):
                        return None
                continue
            want = expected.get(rel)
            if want is not None and not entry.is_symlink() and _same(entry, *want, known):
                kept.add(rel)
                continue
            try:
                os.unlink(entry.path)
            except OSError:
                return None
    return Refreshed(files=kept, dirs=kept_dirs)


def _same(
    entry: os.DirEntry[str],
    source: str | bytes,
    executable: bool,
    inodes: Mapping[str, tuple[int, int]],
) -> bool:
    """The regular file ``entry`` is what the installer would place: the cache file
    ``source`` itself (hardlinked), or a private file holding ``source``."""
    st = entry.stat(follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        return False
    if isinstance(source, str):
        identity = inodes.get(source)
        if identity is None:
            try:
                cached = os.lstat(source)
            except OSError:
                return False
            identity = (cached.st_dev, cached.st_ino)
        return (st.st_dev, st.st_ino) == identity
    mode = 0o755 if executable else 0o644
    if st.st_nlink != 1 or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(source):
        return False
    try:
        with open(entry.path, "rb") as fh:
            return fh.read() == source
    except OSError:
        return False
