"""The one gate every write into an environment tree goes through.

Packages ship symlinks, and a symlink placed by one package (or by an earlier file of
the same package) changes where a later path leads: P1 ships ``a -> sub`` and
``lnk -> a/../../x`` (inside while ``a`` goes down), P2 replaces ``a`` with ``a -> .``
(now ``lnk`` leads out), P3 ships ``lnk/victim``.  Checking each package's paths as text,
or its links after the fact, cannot see this.  So `PrefixGuard` resolves the real parent
directory of every entry before creating it, the way the kernel would, but inside the
tree: starting from the root, each component is looked at without following it
(``lstat``); a directory is entered, a symlink is replaced by its target (relative
targets only) and resolution continues, and a ``..`` that would leave the root, an
absolute link, or a loop is refused.  The entry is then created in that real directory
through a path made only of real directories, with ``O_EXCL`` / ``O_NOFOLLOW`` semantics
for its last component: an existing file or link there is unlinked first, never
written through (it may be a hardlink into the shared cache).  `finish` checks, once
every package is in place, that each symlink created still resolves inside the tree.

Real directories seen are remembered for the whole sync (the guard never removes a
directory nor lets anything replace one), and lexical parents are memoised until a
symlink is created or replaced, so a wheel of thousands of files costs a dictionary
lookup per file.

Some paths are lockenv's own and never a package's: the state file and ``conda-meta/``
(`RESERVED`), and, once `protect_interpreter` was called (after the venv skeleton or the
conda packages are in place, before the wheels), the environment's interpreter:
``bin/python*``, ``pyvenv.cfg``, ``Scripts/python*.exe``.

Standard library only: this runs on every sync that links anything.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import operator
import os
import re
import stat
from collections.abc import Iterable, Sequence

from lockenv.errors import InstallError, UnsafePathError
from lockenv.sync.link import NEW_INODE_WORK, Linker, copy_file, each_in_threads, link_all

__all__ = ["RESERVED_TOP", "PrefixGuard"]

# The state file, and the record of the tree a later refresh reads (`lockenv.sync.reuse`).
STATE_NAMES = (".lockenv-state.json", ".lockenv-state.json.tmp", ".lockenv-tree.json")
# Top-level names no package may write: lockenv's record of the environment.
RESERVED_TOP = frozenset({*STATE_NAMES, "conda-meta"})
_INTERPRETER = re.compile(
    r"^(?:pyvenv\.cfg|pythonw?\.exe|(?:bin|Scripts)/python[^/]*)$", re.IGNORECASE
)
_MAX_LINK_HOPS = 40  # what Linux allows when resolving one path
_NOT_NAMES = frozenset({"", ".", ".."})
# Real directories where a path `_check_target` refuses can be (conda-meta/ is prefixed).
_GUARDED_DIRS = frozenset({"", "bin", "Scripts", "conda-meta"})
_GUARDED_PREFIXES = tuple(f"{d}/" for d in sorted(_GUARDED_DIRS) if d)
_DRIVE = re.compile(r"^[A-Za-z]:")


def _guarded(real_dir: str) -> bool:
    """Whether a path `PrefixGuard._check_target` may refuse can be in ``real_dir``."""
    return real_dir in _GUARDED_DIRS or real_dir.startswith("conda-meta/")


_split_name = operator.methodcaller("rpartition", "/")  # -> (directory, "/", name)
_name_of = operator.itemgetter(2)


def _make_dirs(paths: list[str]) -> None:
    for path in paths:
        os.mkdir(path)


def _create(path: str, chunks: Iterable[bytes], executable: bool) -> tuple[str, int]:
    """Make the new file ``path`` (never through a link) holding ``chunks``, 0755 or 0644;
    the sha256 (hex) and size of what was written."""
    mode = 0o755 if executable else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0), mode)
    digest, size = hashlib.sha256(), 0
    try:
        for data in chunks:
            digest.update(data)
            size += len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)  # the mode given to open is masked by the umask
    finally:
        os.close(fd)
    return digest.hexdigest(), size


def _create_job(job: tuple[str, Iterable[bytes], bool]) -> None:
    _create(*job)


def _is_absolute(target: str) -> bool:
    # Empty counts too: a link to nothing is refused, as conda's checks do.
    return not target or target.startswith(("/", "\\")) or bool(_DRIVE.match(target))


class PrefixGuard:
    """Creates files, directories and symlinks under ``root``, never anywhere else.

    ``linker`` places files from the cache (hardlink, copy or symlink).  Paths given to
    every method are relative to ``root``, POSIX style, as packages spell them; ``what``
    names the package for error messages.  Not thread-safe: one guard per sync, used by
    one thread.
    """

    def __init__(self, root: str | os.PathLike[str], linker: Linker) -> None:
        self.root = os.path.realpath(root)
        self.linker = linker
        self._dirs: set[str] = {""}  # real directories, relative to root
        self._parents: dict[str, str] = {}  # lexical directory -> real directory
        self._links: dict[str, str] = {}  # real path of a symlink we made -> package
        self._protect_interpreter = False

    # -- what may be written ----------------------------------------------------------

    def protect_interpreter(self) -> None:
        """From now on, refuse writes that would replace the environment's interpreter."""
        self._protect_interpreter = True

    def _check_target(self, real: str, what: str, internal: bool) -> None:
        top = real.partition("/")[0]
        if not internal and top in RESERVED_TOP:
            raise UnsafePathError(
                f"{what}: would write {real!r}, which holds lockenv's record of the "
                "environment; refusing to install it (it is broken or malicious)"
            )
        if self._protect_interpreter and _INTERPRETER.match(real):
            raise UnsafePathError(
                f"{what}: would replace the environment's interpreter ({real!r}); "
                "refusing to install it (it is broken or malicious)"
            )

    def adopt_dirs(self, dirs: Iterable[str]) -> None:
        """Take ``dirs`` (root-relative) as real directories of the tree without looking:
        a walk that follows no symlink (`lockenv.sync.reuse`) just found them so."""
        self._dirs.update(dirs)

    def check_kept(self, rels: Iterable[str], *, what: str) -> None:
        """Hold the files ``rels`` left in place from an earlier tree (`lockenv.sync.reuse`,
        which found them through real directories only) to the rules of files placed now:
        never lockenv's own record, nor the interpreter once protected."""
        # A prefilter in C (thousands of kept files, nearly all deep in site-packages):
        # every file of a guarded directory is at the top or under one of its prefixes.
        for rel in sorted(r for r in rels if "/" not in r or r.startswith(_GUARDED_PREFIXES)):
            if _guarded(rel.rpartition("/")[0]):
                self._check_target(rel, what, False)

    # -- resolution -------------------------------------------------------------------

    def _escape(self, rel: str, what: str, why: str) -> UnsafePathError:
        # ``rel``: a path, or already a description ("the symlink 'a' -> 'b'").
        subject = rel if rel.startswith("the symlink ") else repr(rel)
        return UnsafePathError(
            f"{what}: {subject} {why}; refusing to install it (it is broken or malicious)"
        )

    def _walk(
        self,
        parts: list[str],
        rel: str,
        what: str,
        *,
        create: bool,
        planned: dict[str, str] | None = None,
    ) -> list[str]:
        """The real components of directory ``parts`` (made when missing and ``create``;
        with ``planned``, a missing one is added to it instead, with the ``what`` that
        needs it, and taken as a directory from then on: `makedirs_all` makes them)."""
        real: list[str] = []
        pending = parts[::-1]
        hops = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not real:
                    raise self._escape(rel, what, "leads outside the environment")
                real.pop()
                continue
            if "\0" in name:
                raise self._escape(rel, what, "contains a NUL byte")
            real.append(name)
            key = "/".join(real)
            if key in self._dirs:
                continue
            if planned is not None:
                if key in planned:
                    continue
                if len(real) > 1 and key.rpartition("/")[0] in planned:
                    planned[key] = what  # in a directory still to be made: nothing there
                    continue
            path = f"{self.root}/{key}"
            if create:
                try:
                    os.mkdir(path)  # most directories are new: one syscall, not two
                    self._dirs.add(key)
                    continue
                except FileExistsError:
                    pass
            try:
                st = os.lstat(path)  # FileNotFoundError when not ``create``
            except FileNotFoundError:
                if planned is None:
                    raise
                planned[key] = what
                continue
            if stat.S_ISDIR(st.st_mode):
                self._dirs.add(key)
                continue
            if not stat.S_ISLNK(st.st_mode):
                raise InstallError(
                    f"{what}: {rel!r} needs {key!r} as a directory, but another package "
                    "placed a file there; the packages conflict"
                )
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise self._escape(rel, what, "goes through a loop of symlinks")
            target = os.readlink(path)
            real.pop()
            if _is_absolute(target):
                raise self._escape(
                    rel, what, f"goes through the symlink {key!r} -> {target!r}, out of the tree"
                )
            pending.extend(reversed(target.split("/")))
        return real

    def _parent(self, rel: str, what: str) -> tuple[str, str]:
        """``(absolute path to create, real relative path)`` of the entry ``rel``."""
        lexical, _, name = rel.rpartition("/")
        if name in _NOT_NAMES or "\0" in name or rel.startswith("/"):
            raise self._escape(rel, what, "is not a path inside the environment")
        real_dir = self._parents.get(lexical)
        if real_dir is None:
            real_dir = "/".join(self._walk(lexical.split("/"), rel, what, create=True))
            self._parents[lexical] = real_dir
        real = f"{real_dir}/{name}" if real_dir else name
        return f"{self.root}/{real}", real

    def _clear(self, path: str, real: str, rel: str, what: str) -> None:
        """Make room at ``path`` for a new entry: unlink a file or link, never a directory."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise InstallError(
                f"{what}: {rel!r} is a directory in the environment (made by another "
                "package); the packages conflict"
            )
        if stat.S_ISLNK(st.st_mode):
            self._links.pop(real, None)
            self._parents.clear()  # lexical paths through it now lead elsewhere
        os.unlink(path)

    # -- writing ----------------------------------------------------------------------

    def makedirs(self, rel: str, *, what: str) -> None:
        """Make the directory ``rel`` (and its parents), following symlinks inside only."""
        if rel in self._parents:
            return
        real = "/".join(self._walk(rel.split("/"), rel, what, create=True))
        self._parents[rel] = real

    def makedirs_all(self, dirs: Sequence[tuple[str, str]]) -> None:
        """`makedirs` of each ``(rel, what)`` of ``dirs``, the missing directories made
        together: every path is resolved first, as `makedirs` resolves it (the missing
        directories taken as directories from then on), then the new ones are made by a
        few threads when they are many (`lockenv.sync.link.each_in_threads`), a subtree
        each: each directory whose parent exists, then what is to be made under it,
        parents first.  Making a directory is the filesystem allocating an inode with its
        parent directory locked, so threads making siblings wait on each other, while
        threads making different subtrees overlap (measured on ext4: 1325 directories of
        a large environment in 82 ms instead of 201 on two CPUs).  Nothing else writes
        the tree meanwhile (the guard is used by one thread)."""
        planned: dict[str, str] = {}
        resolved: list[tuple[str, str]] = []
        for rel, what in dirs:
            if rel not in self._parents:
                walked = self._walk(rel.split("/"), rel, what, create=False, planned=planned)
                resolved.append((rel, "/".join(walked)))
        # Parents sort before their children ("a" < "a-b" < "a/b"), so each directory's
        # subtree is known by the time it is reached.
        subtree_of: dict[str, list[str]] = {}
        subtrees: list[list[str]] = []
        for key in sorted(planned):
            parent = key.rpartition("/")[0]
            tree = subtree_of.get(parent) if parent in planned else None
            if tree is None:
                tree = []
                subtrees.append(tree)
            tree.append(key)
            subtree_of[key] = tree
        subtrees.sort(key=len, reverse=True)  # the largest first: the threads end together
        jobs = [[f"{self.root}/{key}" for key in tree] for tree in subtrees]
        work = len(planned) * NEW_INODE_WORK
        for i in each_in_threads(_make_dirs, jobs, work=work, batch=1):
            for key in subtrees[i]:  # what stopped the thread is raised here
                self._make_dir(key, planned[key])
        self._dirs.update(planned)
        for rel, real in resolved:
            self._parents[rel] = real

    def _make_dir(self, key: str, what: str) -> None:
        """Make the directory ``key`` (its parent is one), or find one there."""
        path = f"{self.root}/{key}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise InstallError(
                f"{what}: {key!r} must be a directory, but something else appeared there "
                "while the environment was being built; sync again"
            )

    def _target(self, rel: str, what: str) -> tuple[str, str]:
        """``(absolute path, real relative path)`` where a package's file ``rel`` goes,
        checked (`_check_target`).  The hot path of a sync (once per file): a memoised
        parent, and the checks only where lockenv's own paths can be (top level, ``bin``,
        ``Scripts``, ``conda-meta``)."""
        lexical, _, name = rel.rpartition("/")
        real_dir = self._parents.get(lexical)
        if real_dir is None or name in _NOT_NAMES:
            path, real = self._parent(rel, what)
            self._check_target(real, what, False)
            return path, real
        real = f"{real_dir}/{name}" if real_dir else name
        if _guarded(real_dir):
            self._check_target(real, what, False)
        return f"{self.root}/{real}", real

    def place(self, src: str, rel: str, *, executable: bool, what: str) -> None:
        """Put the cache file ``src`` at ``rel`` with the linker (hardlink/copy/symlink)."""
        path, real = self._target(rel, what)
        if self.linker.mode == "hardlink":
            try:
                os.link(src, path)
                return
            except OSError:
                pass  # exists, or cannot be hardlinked: the linker decides
        try:
            self.linker.place_new(src, path, executable=executable)
        except FileExistsError:
            self._clear(path, real, rel, what)
            self.linker.place_new(src, path, executable=executable)

    def place_files(
        self,
        items: Sequence[tuple[str, str, bool]],
        *,
        what: str,
        owners: Sequence[str] | None = None,
    ) -> None:
        """`place` each ``(cache file, rel, executable)`` of ``items``, which name no path
        twice (the caller leaves out what a later entry replaces); ``owners``, if given,
        names each item's package (else ``what`` names them all).

        Hardlinks are made together (`lockenv.sync.link.link_all`: ``link`` waits on the
        filesystem without the GIL): every path is resolved and checked here first, as
        `place` does (`_targets`), so the threads only link, into directories that exist;
        a file that could not be linked so (something already there, another
        filesystem, a link count at its limit...) is then placed by `place`, in order.
        """
        names = owners if owners is not None else [what] * len(items)
        if self.linker.mode != "hardlink":
            for (src, rel, executable), owner in zip(items, names, strict=True):
                self.place(src, rel, executable=executable, what=owner)
            return
        sources = [src for src, _rel, _executable in items]
        targets = self._targets([rel for _src, rel, _executable in items], names)
        for i in link_all(sources, targets):
            src, rel, executable = items[i]
            self.place(src, rel, executable=executable, what=names[i])

    def _targets(self, rels: list[str], owners: Sequence[str]) -> list[str]:
        """`_target` of each of ``rels`` (absolute paths), each path checked as it checks
        it.  Most files are in a directory already resolved to itself (no symlink on the
        way) where no path `_check_target` refuses can be: their paths are the root's
        joined to them, made in C; the others go through `_target` one by one."""
        split = list(map(_split_name, rels))
        lexicals = {lexical for lexical, _sep, _name in split}
        parents = self._parents
        plain = {d for d in lexicals if parents.get(d) == d and not _guarded(d)}
        head = self.root + "/"
        if len(plain) == len(lexicals) and _NOT_NAMES.isdisjoint(map(_name_of, split)):
            return list(map(head.__add__, rels))
        target = self._target
        return [
            head + rel if lexical in plain and name not in _NOT_NAMES else target(rel, owner)[0]
            for rel, (lexical, _sep, name), owner in zip(rels, split, owners, strict=True)
        ]

    def copy(self, src: str, rel: str, *, executable: bool, what: str) -> None:
        """Put a private copy of ``src`` at ``rel`` (files that must never be shared)."""
        path, real = self._parent(rel, what)
        self._check_target(real, what, False)
        self._clear(path, real, rel, what)
        copy_file(src, path, executable=executable)

    def write(
        self, rel: str, data: bytes, *, executable: bool, what: str, internal: bool = False
    ) -> None:
        """Create the file ``rel`` holding ``data`` (0755 or 0644, as pip and conda do).

        ``internal``: lockenv's own record (state file, ``conda-meta/``), not a package's.
        """
        self.write_chunks(rel, (data,), executable=executable, what=what, internal=internal)

    def write_chunks(
        self,
        rel: str,
        chunks: Iterable[bytes],
        *,
        executable: bool,
        what: str,
        internal: bool = False,
    ) -> tuple[str, int]:
        """Like `write`, with the content given in pieces (a file rewritten as it is read);
        returns the sha256 (hex) and size of what was written."""
        path, real = self._parent(rel, what)
        self._check_target(real, what, internal)
        self._clear(path, real, rel, what)
        return _create(path, chunks, executable)

    def write_files(self, items: Sequence[tuple[str, bytes, bool, str]]) -> None:
        """`write` each ``(rel, data, executable, what)`` of ``items``, which name no path
        twice: every path is resolved, checked and cleared here first, as `write` does,
        then the files are made by a few threads when they are many
        (`lockenv.sync.link.each_in_threads`: making a file is the filesystem allocating
        an inode, as making a directory is, and threads writing into different
        directories overlap); one that could not be made so is made by `write`, in order."""
        jobs: list[tuple[str, Iterable[bytes], bool]] = []
        for rel, data, executable, what in items:
            path, real = self._parent(rel, what)
            self._check_target(real, what, False)
            self._clear(path, real, rel, what)
            jobs.append((path, (data,), executable))
        for i in each_in_threads(_create_job, jobs, work=len(jobs) * NEW_INODE_WORK):
            rel, data, executable, what = items[i]
            self.write(rel, data, executable=executable, what=what)

    def symlink(self, target: str, rel: str, *, what: str) -> None:
        """Create the symlink ``rel -> target``; the target must resolve inside the tree
        now (`finish` checks again once everything is in place)."""
        path, real = self._parent(rel, what)
        self._check_target(real, what, False)
        if "\0" in target or _is_absolute(target):
            raise self._escape(rel, what, f"is a symlink to {target!r}, outside the environment")
        self._check_link(real, target, what)
        self._clear(path, real, rel, what)
        os.symlink(target, path)
        self._links[real] = what
        self._parents.clear()

    def move(self, rel_src: str, rel_dst: str, *, what: str) -> None:
        """Rename the entry ``rel_src`` to ``rel_dst`` (both inside the tree)."""
        src, src_real = self._parent(rel_src, what)
        dst, dst_real = self._parent(rel_dst, what)
        self._check_target(dst_real, what, False)
        self._clear(dst, dst_real, rel_dst, what)
        os.rename(src, dst)
        if src_real in self._links:
            self._links[dst_real] = self._links.pop(src_real)
            self._parents.clear()

    def exists(self, rel: str) -> bool:
        """True when an entry (of any kind) is at ``rel``, resolved inside the tree."""
        try:
            path, _real = self._parent(rel, "")
        except (InstallError, OSError):
            return False
        return os.path.lexists(path)

    # -- the end ----------------------------------------------------------------------

    def _check_link(self, real: str, target: str, what: str) -> None:
        """``real -> target`` resolves inside the tree, as the tree is now."""
        parent = real.rpartition("/")[0]
        parts = [*parent.split("/"), *target.split("/")] if parent else target.split("/")
        link = f"the symlink {real!r} -> {target!r}"  # what an error names
        try:
            self._walk(parts, link, what, create=False)
        except (FileNotFoundError, NotADirectoryError, InstallError):
            # Dangling for now, or through a regular file (which the kernel cannot
            # resolve either): harmless; `finish` looks again once the tree is complete.
            return

    def finish(self) -> None:
        """Check every symlink made still resolves inside the tree (later packages may
        have changed what its target goes through); UnsafePathError naming it if not."""
        for real, what in sorted(self._links.items()):
            path = f"{self.root}/{real}"
            try:
                if not stat.S_ISLNK(os.lstat(path).st_mode):
                    continue
                target = os.readlink(path)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue
                raise
            self._check_link(real, target, what)
