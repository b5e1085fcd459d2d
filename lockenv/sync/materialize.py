"""The sync: lock → fetch (verified) → unpack once → build a staging env → swap it in.

Two kinds of environment come out of it.  A PyPI-only lock makes a virtual environment on
a host interpreter, or on a base environment's (`lockenv.base_environment`): its
site-packages visible after the environment's own, and a sync that refuses (DriftError)
when the base no longer holds what it held when the lock was made.  A lock with conda
packages makes a conda prefix: the packages linked in dependency order
(`lockenv.sync.conda.install`), ``conda-meta/`` written as conda writes it, and the PyPI
wheels, if any, installed into the conda Python's site-packages with launchers for
``<prefix>/bin/python``.  Package scripts (post-link...) are never run.

Source distributions (and source trees) are built after the staging tree has its
interpreter, with that interpreter, by the `WheelBuilder` the caller hands over in
`SyncOptions` (`lockenv.sync.pypi.sources`); the wheel is checked against the lock and
installed like any other.  A failed build leaves the previous environment as it was.

One orchestration function, `sync_environment`.  The environment is rebuilt completely in
a staging directory beside the prefix (same filesystem; every absolute path written
already names the final prefix), then exchanged with the prefix in one atomic step
(``renameat2(RENAME_EXCHANGE)`` on Linux, ``renamex_np(RENAME_SWAP)`` on macOS; elsewhere
two renames, recovered by the next sync).  So a sync is exact (whatever the lock does not
list is gone, including packages installed by hand), and a failed or killed sync leaves
the previous environment as it was.  Leftovers of a killed sync are removed by the next.
Syncs of one prefix are serialised by ``flock`` on ``.<name>.lock`` beside it; the cache
needs no lock.

`is_up_to_date` is the no-op fast path: standard library only, nothing hashed.

This module (and everything it imports) never reaches the resolver, the index clients or
tomlkit; httpx is imported only when something must be downloaded.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lockenv import __version__
from lockenv.errors import InstallError
from lockenv.sync.checkpoints import checkpoint
from lockenv.sync.plan import (
    STATE_FILE,
    EnvState,
    InstalledPackage,
    WantedPackage,
    conda_meta_names,
    dist_info_names,
    plan_sync,
    read_state,
    write_state,
)

if TYPE_CHECKING:
    from lockenv.base_environment import BaseEnvironment
    from lockenv.cache import Cache
    from lockenv.lockfile import (
        Archive,
        CondaArtifact,
        LockedEnvironment,
        Lockfile,
        PypiArtifact,
        PypiSource,
    )
    from lockenv.sync.conda.install import InstalledConda, UnpackedConda
    from lockenv.sync.guard import PrefixGuard
    from lockenv.sync.pypi.sources import BuildRequest, WheelBuilder
    from lockenv.sync.pypi.wheel import InstalledDist, UnpackedWheel
    from lockenv.sync.venv import EnvLayout

    Unpacked = UnpackedWheel | UnpackedConda

__all__ = [
    "SyncOptions",
    "SyncReport",
    "activation_env",
    "default_cache_dir",
    "is_up_to_date",
    "sync_environment",
]

Progress = Callable[[str], None]
_IS_WINDOWS = sys.platform == "win32"
_PROCESS_UNPACK_BYTES = 4 << 20  # archives to unpack above this: a process pool pays off


def default_cache_dir() -> Path:
    """The cache root: ``LOCKENV_CACHE_DIR``, else the platform's user cache directory."""
    from lockenv.cache import default_cache_dir as _default

    return _default()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncOptions:
    """How to sync.

    ``link_mode``: "hardlink" (default; copies automatically across filesystems), "copy"
    or "symlink".  ``offline``: use the cache (and file:// URLs) only.  ``python``: the
    host interpreter to use (else one matching the lock's Python is searched for).
    ``compile_bytecode``: write deterministic .pyc files (unchecked-hash).  ``cache_dir``:
    else `default_cache_dir`.  ``jobs``: parallel downloads/unpacks.  ``bundle``: a bundle
    directory (`lockenv.sync.bundle_source`) that artifacts missing from the cache are taken from.
    ``manifest``: the project's manifest, whose ``[mirrors]`` apply to downloads (with the
    machine's, `lockenv.mirrors`); read only when something must be downloaded.
    ``allow_base_drift``: build on a base environment that changed since the lock (with a
    warning) instead of refusing.
    ``builder``: builds the lock's sdists and source trees into wheels (none: a lock with
    them is refused); ``no_build``: refuse to build even with a builder (``sync
    --no-build``); ``project_root``: where the lock's relative ``path`` sources are (the
    lock's directory).
    """

    link_mode: str = "hardlink"
    offline: bool = False
    python: Path | None = None
    compile_bytecode: bool = False
    cache_dir: Path | None = None
    jobs: int = 8
    bundle: Path | None = None
    manifest: Path | None = None
    allow_base_drift: bool = False
    builder: WheelBuilder | None = None
    no_build: bool = False
    project_root: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncReport:
    """What a sync did; package entries are ``name==version``, sorted."""

    prefix: Path
    installed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    no_op: bool
    seconds: float


# -- the fast path -------------------------------------------------------------------------


def _interpreter_present(prefix: Path, state: EnvState) -> bool:
    if state.kind == "conda":
        if not state.python_version:
            return True  # a conda environment without Python
        python = prefix / ("python.exe" if _IS_WINDOWS else "bin/python")
    else:
        python = prefix / ("Scripts/python.exe" if _IS_WINDOWS else "bin/python")
    return os.path.exists(python)  # follows the symlink: a removed base Python is noticed


def _site_dist_infos(prefix: Path, site_packages: str) -> list[str]:
    return dist_info_names(prefix / site_packages) if site_packages else []


def _state_is_current(state: EnvState, prefix: Path, platform: str) -> bool:
    """The environment is intact: same machine layout, nothing added or removed by hand."""
    return (
        state.lockenv_version == __version__
        and state.platform == platform
        and state.prefix == str(prefix)
        and _site_dist_infos(prefix, state.site_packages) == state.dist_infos
        and (state.kind != "conda" or conda_meta_names(prefix) == state.conda_records)
        and _interpreter_present(prefix, state)
        # Link mode "symlink": the files live in the cache, which may have been cleaned.
        and all(os.path.isdir(entry) for entry in state.cache_entries)
        and _base_unchanged(state)
        and _sources_unchanged(state)
    )


def _base_unchanged(state: EnvState) -> bool:
    """The base environment, if any, holds what it held when this one was built."""
    if not state.base_prefix:
        return True
    from lockenv.base_environment import read_base_environment
    from lockenv.errors import LockenvError

    try:
        return read_base_environment(Path(state.base_prefix)).digest == state.base_digest
    except LockenvError:
        return False


def _current_base(
    environment: LockedEnvironment, allow_drift: bool, note: Callable[[str], None]
) -> BaseEnvironment | None:
    """The base environment as it is now; DriftError when it changed since the lock."""
    if environment.base is None:
        return None
    from lockenv.base_environment import base_drift, read_base_environment
    from lockenv.errors import DriftError

    locked = environment.base
    current = read_base_environment(Path(locked.prefix))
    if current.digest != locked.digest:
        message = (
            f"base environment {locked.prefix!r} changed since the lock "
            f"({base_drift(locked, current)})"
        )
        if not allow_drift:
            raise DriftError(
                f"{message}: run `lockenv lock` to lock against it as it is now (or "
                "`lockenv sync --allow-base-drift` to build on it anyway)"
            )
        note(f"warning: {message}; building on it anyway (--allow-base-drift)")
    return current


def _sources_unchanged(state: EnvState) -> bool:
    """The build files of every path dependency are as they were when it was built."""
    if not state.sources:
        return True
    from lockenv.sync.pypi.sources import tree_fingerprint

    return all(tree_fingerprint(Path(tree)) == fp for tree, fp in state.sources.items())


def is_up_to_date(prefix: Path, lock_sha256: str, env_name: str) -> bool:
    """True when the environment at ``prefix`` was synced from exactly this lock and env.

    Standard library only and nothing is hashed (one small JSON file, one directory
    listing): packages added or removed by hand make it False; files edited in place are
    found by `lockenv.sync.verify.verify_environment`.
    """
    from lockenv.platforms import current_platform

    prefix = Path(os.path.abspath(prefix))
    state = read_state(prefix)
    if state is None or state.lock_sha256 != lock_sha256 or state.environment != env_name:
        return False
    try:
        platform = current_platform()
    except Exception:
        return False
    return _state_is_current(state, prefix, platform)


def activation_env(prefix: Path, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the environment at ``prefix`` activated (for ``lockenv run``).

    Puts its scripts directory first on PATH and removes PYTHONHOME (which would point the
    interpreter at another standard library).  A virtual environment gets VIRTUAL_ENV; a
    conda prefix (it has ``conda-meta/``) gets CONDA_PREFIX and loses a VIRTUAL_ENV
    inherited from the caller (tools such as pip and uv prefer VIRTUAL_ENV).  Packages'
    own activation scripts (``etc/conda/activate.d``) are package code and are not run.
    """
    prefix = Path(os.path.abspath(prefix))
    env = dict(base)
    conda = (prefix / "conda-meta").is_dir()
    if conda and _IS_WINDOWS:
        dirs = [
            prefix,
            prefix / "Library" / "mingw-w64" / "bin",
            prefix / "Library" / "usr" / "bin",
            prefix / "Library" / "bin",
            prefix / "Scripts",
            prefix / "bin",
        ]
    else:
        dirs = [prefix / ("Scripts" if _IS_WINDOWS else "bin")]
    path = env.get("PATH", "")
    env["PATH"] = os.pathsep.join(str(d) for d in dirs) + (os.pathsep + path if path else "")
    if conda:
        env["CONDA_PREFIX"] = str(prefix)
        env.pop("VIRTUAL_ENV", None)
    else:
        env["VIRTUAL_ENV"] = str(prefix)
    env.pop("PYTHONHOME", None)
    return env


# -- locking and swapping --------------------------------------------------------------------


@contextlib.contextmanager
def _prefix_lock(prefix: Path, progress: Progress | None) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.lock`` beside the prefix."""
    lock_path = prefix.parent / f".{prefix.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _IS_WINDOWS:
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if progress is not None:
                    progress(f"waiting for another sync of {str(prefix)!r} to finish")
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _leftovers(prefix: Path) -> list[Path]:
    stem = f".{prefix.name}."
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(prefix.parent):
            if entry.name.startswith((stem + "staging-", stem + "old-")):
                found.append(Path(entry.path))
    return sorted(found)


def _recover(prefix: Path) -> None:
    """Finish what a killed sync left: restore a moved-away env, delete partial trees."""
    from lockenv.cache import remove_tree

    leftovers = _leftovers(prefix)
    if not os.path.lexists(prefix):
        # Killed between the two renames of the non-atomic swap: either tree is complete
        # (the state file is written last); prefer the old one, it was the live one.
        complete = [p for p in leftovers if (p / STATE_FILE).is_file()]
        complete.sort(key=lambda p: (".old-" not in p.name, p.name))
        if complete:
            os.rename(complete[0], prefix)
            leftovers.remove(complete[0])
    for path in leftovers:
        remove_tree(path)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two directory entries; False where the OS cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return False
    src, dst = os.fsencode(a), os.fsencode(b)
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2
        result = libc.renameat2(at_fdcwd, src, at_fdcwd, dst, rename_exchange)
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2
        result = libc.renamex_np(src, dst, rename_swap)
    else:
        return False
    return bool(result == 0)


def _swap_into_place(staging: Path, prefix: Path) -> Path | None:
    """Put the complete tree ``staging`` at ``prefix``; return the old tree to delete."""
    if not os.path.lexists(prefix):
        os.rename(staging, prefix)
        return None
    if _exchange(staging, prefix):
        return staging
    import tempfile

    backup = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.old-", dir=prefix.parent))
    os.rmdir(backup)
    os.rename(prefix, backup)
    checkpoint("swap:halfway")
    os.rename(staging, prefix)
    return backup


def _check_not_a_symlink(prefix: Path) -> None:
    """Refuse a prefix that is a symlink: a sync replaces the whole tree at the prefix,
    and a link (committed to a repository as ``.lockenv/envs/default``, say) would make
    it build, and delete, whatever the link points at."""
    if os.path.islink(prefix):
        raise InstallError(
            f"{str(prefix)!r} is a symlink (to {os.readlink(prefix)!r}); lockenv does not "
            "build an environment through a symlink: remove the link, or pass the real "
            "directory with --prefix"
        )


def _check_prefix_is_ours(prefix: Path) -> None:
    if not os.path.lexists(prefix):
        return
    if not prefix.is_dir():
        raise InstallError(f"{str(prefix)!r} exists and is not a directory; choose another prefix")
    if (prefix / STATE_FILE).exists() or (prefix / "pyvenv.cfg").exists():
        return
    if any(True for _ in os.scandir(prefix)):
        raise InstallError(
            f"{str(prefix)!r} exists, is not empty and is not an environment; a sync replaces "
            "the whole prefix, so remove it or choose another prefix"
        )


# -- the sync --------------------------------------------------------------------------------


def _split_artifacts(
    lock: Lockfile, env_name: str, platform: str
) -> tuple[list[CondaArtifact], list[PypiArtifact], list[PypiSource]]:
    """Conda packages, PyPI archives (wheels and sdists), PyPI source trees."""
    from lockenv.lockfile import CondaArtifact, PypiArtifact, PypiSource

    artifacts = lock.packages_for(env_name, platform)
    conda = [a for a in artifacts if isinstance(a, CondaArtifact)]
    pypi = [a for a in artifacts if isinstance(a, PypiArtifact)]
    trees = [a for a in artifacts if isinstance(a, PypiSource)]
    if conda and (pypi or trees) and not any(a.name == "python" for a in conda):
        raise InstallError(
            f"environment {env_name!r} has conda packages and PyPI packages but no conda "
            "`python` to install the PyPI packages into; add python to [dependencies] and "
            "run `lockenv lock`"
        )
    return conda, pypi, trees


def _check_buildable(
    sources: list[PypiArtifact | PypiSource], env_name: str, platform: str, options: SyncOptions
) -> None:
    """Refuse, before anything is done, sources that this sync may not build."""
    if not sources:
        return
    listed = ", ".join(sorted(f"{a.name} {a.version} ({a.filename})" for a in sources))
    if options.no_build:
        raise InstallError(
            f"environment {env_name!r} locks source distributions for {platform}: {listed}; "
            "--no-build forbids building them: sync without --no-build, or lock wheels only "
            "([pypi-options] no-build = true)"
        )
    paths = [a for a in sources if getattr(a, "path", None) is not None]
    if paths and options.project_root is None:
        raise InstallError(
            f"environment {env_name!r} has path dependencies ({listed}) but the sync was "
            "not told where the lock's directory is"
        )
    if options.builder is None:
        raise InstallError(
            f"environment {env_name!r} locks source distributions for {platform}: {listed}; "
            "this sync cannot build them"
        )


_SPEC_NAME = re.compile(r"[\s=<>!~\[]")


def _spec_name(spec: str) -> str:
    return _SPEC_NAME.split(spec.split("::")[-1].strip(), maxsplit=1)[0].lower()


def _link_order(conda: list[CondaArtifact]) -> list[CondaArtifact]:
    """Dependencies before dependents (as conda links them), ties by name: deterministic,
    and a file two packages ship ends as the dependent's."""
    import heapq

    by_name = {a.name: a for a in conda}
    needs = {
        a.name: {n for n in map(_spec_name, a.depends) if n in by_name and n != a.name}
        for a in conda
    }
    users: dict[str, list[str]] = {name: [] for name in by_name}
    for name, deps in needs.items():
        for dep in deps:
            users[dep].append(name)
    ready = [name for name, deps in needs.items() if not deps]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            needs[user].discard(name)
            if not needs[user]:
                heapq.heappush(ready, user)
    order += sorted(set(by_name) - set(order))  # a dependency cycle: by name
    return [by_name[name] for name in order]


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def _requested_names(environment: LockedEnvironment) -> frozenset[str]:
    """Normalized names of the PyPI requirements the manifest asked for directly.

    `lockenv.lockfile.env_requested_names` without ``packaging``: only the name, which
    PEP 508 puts first, is needed here, and the import would cost a warm sync 15 ms.
    """
    names = set()
    for text in environment.pypi_requirements:
        match = _REQUIREMENT_NAME.match(text)
        if match:
            names.add(re.sub(r"[-_.]+", "-", match[1]).lower())
    return frozenset(names)


def _direct_url(
    lock: Lockfile, artifact: PypiArtifact | PypiSource, root: Path | None
) -> dict[str, object] | None:
    """PEP 610 ``direct_url.json`` of a package that came from no index, else None."""
    from lockenv.lockfile import PypiSource

    if isinstance(artifact, PypiSource):
        if artifact.path is not None:
            assert root is not None
            tree = Path(os.path.normpath(root / artifact.path))
            return {
                "url": tree.as_uri(),
                "dir_info": {"editable": True} if artifact.editable else {},
            }
        vcs: dict[str, object] = {"vcs": "git", "commit_id": artifact.commit}
        asked = artifact.tag or artifact.branch or artifact.rev
        if asked:
            vcs["requested_revision"] = asked
        info: dict[str, object] = {"url": artifact.git, "vcs_info": vcs}
        if artifact.subdirectory:
            info["subdirectory"] = artifact.subdirectory
        return info
    if artifact.index is not None:
        return None
    sources = (*lock.inputs.indexes, *lock.inputs.find_links)
    if any(artifact.url.startswith(s.rstrip("/") + "/") for s in sources if s):
        return None
    hashes = {"hash": f"sha256={artifact.sha256}", "hashes": {"sha256": artifact.sha256}}
    return {"url": artifact.url, "archive_info": hashes}


def _load_unpacked(entry: Path, artifact: Archive) -> Unpacked | None:
    """The artifact unpacked in the cache entry ``entry``, or None when it is unusable."""
    if artifact.kind == "conda":
        from lockenv.sync.conda.install import load_unpacked_conda

        return load_unpacked_conda(entry)
    from lockenv.sync.pypi.wheel import load_unpacked

    return load_unpacked(entry)


def _trusted_entry(cache: Cache, artifact: Archive) -> tuple[Path, str]:
    """The cache entry this sync should use for ``artifact`` and its state: the shared
    one unless another user made it, then this user's private one (`lockenv.cache`)."""
    from lockenv.cache import check_entry

    shared = cache.unpacked_dir(artifact.sha256)
    state = check_entry(shared)
    if state != "foreign":
        return shared, state
    private = cache.private_unpacked_dir(artifact.sha256)
    return private, check_entry(private)


def _ensure_unpacked(cache: Cache, artifact: Archive, archive: Path, final: Path) -> None:
    """Unpack the (verified) archive into the entry ``final``, replacing what is there:
    in a temporary directory, sealed, then published by one rename, so concurrent syncs
    never see half an entry."""
    from lockenv.cache import check_entry, remove_tree, seal_entry
    from lockenv.lockfile import CondaArtifact

    if os.path.lexists(final):
        # Another sync may have published it since we looked (publishing is one rename of
        # a complete, sealed tree): look again before calling it damaged (or made by a
        # lockenv without seals) and removing it from under that sync.
        if check_entry(final) == "ok":
            return
        cache.discard(final)
    work = cache.make_temp_dir("unpack")
    try:
        if isinstance(artifact, CondaArtifact):
            from lockenv.sync.conda.install import unpack_conda

            unpack_conda(archive, work, filename=artifact.filename, artifact=artifact)
        else:
            from lockenv.sync.pypi.wheel import unpack_wheel

            unpack_wheel(archive, work, filename=artifact.filename, project=artifact.name)
        seal_entry(work)
    except BaseException:
        remove_tree(work)
        raise
    checkpoint("unpack:working")
    cache.publish_dir(work, final)
    checkpoint("unpack:published")


def _build_all(
    sources: list[PypiArtifact | PypiSource],
    archives: Mapping[str, Path],
    options: SyncOptions,
    cache: Cache,
    *,
    python: Path,
    python_version: str,
) -> list[tuple[PypiArtifact | PypiSource, UnpackedWheel]]:
    """Each locked sdist or source tree built into a wheel for ``python``, checked
    against the lock and unpacked in the cache (by the built wheel's own sha256)."""
    from lockenv.cache import hash_file
    from lockenv.lockfile import PypiArtifact
    from lockenv.sync.pypi.sources import check_built_wheel
    from lockenv.sync.pypi.wheel import UnpackedWheel

    assert options.builder is not None
    built: list[tuple[PypiArtifact | PypiSource, UnpackedWheel]] = []
    for artifact in sources:
        request = _build_request(artifact, archives, options, cache, python, python_version)
        wheel = options.builder.build_wheel(request)
        check_built_wheel(
            wheel,
            name=artifact.name,
            version=artifact.version,
            requires_dist=artifact.requires_dist,
            requires_python=artifact.requires_python,
            label=request.label,
        )
        digest, size = hash_file(wheel)
        as_wheel = PypiArtifact(
            name=artifact.name,
            version=artifact.version,
            filename=wheel.name,
            url=wheel.as_uri(),
            sha256=digest,
            size=size,
        )
        entry, state = _trusted_entry(cache, as_wheel)
        unpacked = _load_unpacked(entry, as_wheel) if state == "ok" else None
        if unpacked is None:
            _ensure_unpacked(cache, as_wheel, wheel, entry)
            unpacked = _load_unpacked(entry, as_wheel)
        if not isinstance(unpacked, UnpackedWheel):
            raise InstallError(
                f"{wheel.name}: the unpacked cache entry {str(entry)!r} is unusable; run "
                "`lockenv cache clean` and sync again"
            )
        built.append((artifact, unpacked))
        checkpoint("staging:built")
    return built


def _build_request(
    artifact: PypiArtifact | PypiSource,
    archives: Mapping[str, Path],
    options: SyncOptions,
    cache: Cache,
    python: Path,
    python_version: str,
) -> BuildRequest:
    """What to build: a fetched sdist, a path in the project, or a git checkout."""
    from dataclasses import replace

    from lockenv.lockfile import PypiArtifact
    from lockenv.sync.pypi.sources import BuildRequest

    request = BuildRequest(
        name=artifact.name, version=artifact.version, python=python, python_version=python_version
    )
    if isinstance(artifact, PypiArtifact):
        return replace(request, archive=archives[artifact.sha256], archive_sha256=artifact.sha256)
    if artifact.path is not None:
        assert options.project_root is not None
        tree = Path(os.path.normpath(options.project_root / artifact.path))
        if not tree.is_dir():
            raise InstallError(
                f"{artifact.name}: the path dependency {artifact.path!r} is not a directory "
                f"(looked in {str(tree)!r}); restore it or remove it from the manifest"
            )
        return replace(request, tree=tree, editable=artifact.editable, in_place=True)
    from lockenv.git import checkout

    assert artifact.git is not None and artifact.commit is not None
    tree = checkout(artifact.git, artifact.commit, cache.root)
    if artifact.subdirectory:
        tree = tree / artifact.subdirectory
    # The built wheel is cached by commit (and subdirectory): the same tree everywhere.
    source_id = artifact.commit + (f"-{artifact.subdirectory}" if artifact.subdirectory else "")
    return replace(request, tree=tree, source_id=source_id.replace("/", "_"))


def _install_all(
    wheels: list[tuple[PypiArtifact | PypiSource, UnpackedWheel]],
    layout: EnvLayout,
    guard: PrefixGuard,
    requested: frozenset[str],
    lock: Lockfile,
    root: Path | None,
) -> list[InstalledDist]:
    from lockenv.sync.pypi.wheel import install_wheel

    def install(item: tuple[PypiArtifact | PypiSource, UnpackedWheel]) -> InstalledDist:
        artifact, wheel = item
        try:
            installed = install_wheel(
                wheel,
                layout,
                guard,
                requested=artifact.name in requested,
                direct_url=_direct_url(lock, artifact, root),
            )
        except FileNotFoundError as exc:
            raise InstallError(
                f"{artifact.filename}: the unpacked cache entry is damaged ({exc}); run "
                "`lockenv cache clean` and sync again"
            ) from None
        checkpoint("staging:linked")
        return installed

    # One thread: measured faster than a pool (directory creation serialises in the
    # filesystem), and a path shipped by two wheels deterministically ends as the last's.
    return [install(item) for item in wheels]


def _python_site_packages_path(conda: list[CondaArtifact], unpacked: Mapping[str, Unpacked]) -> str:
    """CEP 17: the site-packages the conda ``python`` package names, "" when it names none."""
    from lockenv.sync.conda.install import UnpackedConda

    for artifact in conda:
        if artifact.name == "python":
            pkg = unpacked.get(artifact.sha256)
            if isinstance(pkg, UnpackedConda):
                return pkg.python_site_packages_path
    return ""


def _link_conda_all(
    conda: list[CondaArtifact],
    unpacked: Mapping[str, Unpacked],
    tarballs: Mapping[str, Path],
    layout: EnvLayout,
    guard: PrefixGuard,
    environment: LockedEnvironment,
) -> list[tuple[CondaArtifact, InstalledConda]]:
    """Link every conda package into the staging prefix, then write conda-meta/history."""
    from lockenv.sync.conda.install import ClobberRegistry, UnpackedConda, install_conda_package
    from lockenv.sync.conda.prefix_record import HISTORY, history_text, requested_specs

    specs = requested_specs(environment.conda_requirements)
    clobbers = ClobberRegistry()
    done = []
    for artifact in _link_order(conda):
        pkg = unpacked[artifact.sha256]
        assert isinstance(pkg, UnpackedConda)
        installed = install_conda_package(
            pkg,
            artifact,
            layout,
            guard,
            requested_spec=specs.get(artifact.name, ""),
            tarball=tarballs[artifact.sha256],
            clobbers=clobbers,
        )
        done.append((artifact, installed))
        checkpoint("staging:linked")
    clobbers.write_changed(guard)
    text = history_text(conda, specs.values()).encode("utf-8")
    guard.write(HISTORY, text, executable=False, what="conda-meta", internal=True)
    return done


def _compile_bytecode(layout: EnvLayout, python: Path) -> None:
    """Compile site-packages with the env's Python: deterministic unchecked-hash .pyc,
    with the final prefix (not the staging dir) as the source path in tracebacks."""
    import subprocess

    script = (
        "import compileall, sys, py_compile\n"
        "ok = compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=2, workers=0,\n"
        "    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
    )
    final_sp = os.path.join(str(layout.prefix), layout.site_packages_rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["SOURCE_DATE_EPOCH"] = "315532800"
    subprocess.run(
        [str(python), "-I", "-c", script, str(layout.site_packages), final_sp],
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def sync_environment(
    lock: Lockfile,
    lock_sha256: str,
    env_name: str,
    prefix: Path,
    options: SyncOptions,
    *,
    progress: Progress | None = None,
) -> SyncReport:
    """Make the environment at ``prefix`` exactly what ``lock`` pins for ``env_name`` here.

    ``lock_sha256`` is the sha256 of the lock file's bytes (recorded for `is_up_to_date`).
    Every artifact is checked (sha256 and size) before anything is installed; on any
    error the environment at ``prefix`` is left as it was.  Raises InstallError,
    IntegrityError, OfflineError, UnsafePathError (all LockenvError).
    """
    from lockenv.cache import Cache, remove_tree
    from lockenv.cache import default_cache_dir as _default_cache
    from lockenv.platforms import current_platform
    from lockenv.sync.fetch import fetch_artifacts
    from lockenv.sync.guard import PrefixGuard
    from lockenv.sync.link import Linker, check_link_mode
    from lockenv.sync.venv import base_interpreter, create_venv, find_interpreter, layout_for

    started = time.monotonic()
    link_mode = check_link_mode(options.link_mode)
    platform = current_platform()
    prefix = Path(os.path.abspath(prefix))
    _check_not_a_symlink(prefix)
    environment = lock.environment(env_name)
    conda, pypi, trees = _split_artifacts(lock, env_name, platform)
    sources: list[PypiArtifact | PypiSource] = [*(a for a in pypi if not a.is_wheel), *trees]
    _check_buildable(sources, env_name, platform, options)
    artifacts: list[Archive] = [*conda, *pypi]
    kind = "conda" if conda else "venv"
    # A conda environment's Python is its `python` package ("" when it has none).
    conda_python = next((a.version for a in conda if a.name == "python"), "")
    conda_xy = ".".join(conda_python.split(".")[:2])
    wanted = [
        WantedPackage(name=a.name, version=a.version, sha256=a.sha256, kind=a.kind)
        for a in artifacts
    ] + [WantedPackage(name=t.name, version=t.version, sha256=t.identity) for t in trees]
    fingerprints = _fingerprints(trees, options.project_root)
    cache = Cache(options.cache_dir or _default_cache())
    python_version = environment.python or ".".join(map(str, sys.version_info[:2]))

    def note(message: str) -> None:
        if progress is not None:
            progress(message)

    base = _current_base(environment, options.allow_base_drift, note)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with _prefix_lock(prefix, progress):
        _recover(prefix)
        _check_prefix_is_ours(prefix)
        state = read_state(prefix)
        if state is not None:
            site_packages = state.site_packages
        elif kind == "venv":
            site_packages = layout_for(prefix, python_version).site_packages_rel
        else:
            site_packages = layout_for(prefix, conda_xy, conda=True).site_packages_rel
        on_disk = _site_dist_infos(prefix, site_packages) + conda_meta_names(prefix)
        plan = plan_sync(wanted, state, on_disk)
        interpreter = None
        if base is not None:
            interpreter = base_interpreter(Path(base.prefix), cache_dir=cache.root)
            if options.python is not None:
                note(f"--python ignored: environment {env_name!r} uses its base's Python")
        elif options.python is not None and kind == "venv":
            interpreter = find_interpreter(
                python_version, python=options.python, cache_dir=cache.root
            )
        if (
            state is not None
            and state.environment == env_name
            and state.kind == kind
            and not plan.changes
            and {p.sha256 for p in state.packages} == {w.sha256 for w in wanted}
            and dict(state.sources) == fingerprints
            and _state_is_current(state, prefix, platform)
            and state.link_mode == link_mode
            and (state.bytecode or not options.compile_bytecode)
            and (interpreter is None or state.python_executable == str(interpreter.executable))
            and state.base_digest == (base.digest if base is not None else "")
        ):
            if state.lock_sha256 != lock_sha256:
                write_state(prefix, replace(state, lock_sha256=lock_sha256))
            return SyncReport(
                prefix=prefix,
                installed=(),
                removed=(),
                unchanged=plan.unchanged,
                no_op=True,
                seconds=time.monotonic() - started,
            )

        if kind == "venv":
            if interpreter is None:
                interpreter = find_interpreter(python_version, cache_dir=cache.root)
            note(f"using Python {interpreter.version} ({interpreter.executable})")
        elif options.python is not None:
            note(f"--python ignored: environment {env_name!r} brings its own conda python")

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(4, options.jobs, len(artifacts)))) as pool:
            # Unpacked entries are checked against their seals while the archives are
            # hashed: both mostly wait on the kernel, so they overlap.
            checking = {a.sha256: pool.submit(_trusted_entry, cache, a) for a in artifacts}
            fetched = fetch_artifacts(
                artifacts,
                cache,
                offline=options.offline,
                jobs=options.jobs,
                progress=progress,
                bundle=options.bundle,
                manifest=options.manifest,
            )
            entries = {sha: future.result() for sha, future in checking.items()}
        checkpoint("fetch:done")
        cache.clean_stale_temp()
        ready: list[Archive] = [*conda, *(a for a in pypi if a.is_wheel)]
        unpacked = _unpack_all(cache, ready, fetched.paths, options.jobs, note, entries)
        by_sha = {a.sha256: u for a, u in unpacked}
        from lockenv.lockfile import PypiArtifact
        from lockenv.sync.pypi.wheel import UnpackedWheel

        wheels: list[tuple[PypiArtifact | PypiSource, UnpackedWheel]] = [
            (a, u)
            for a, u in unpacked
            if isinstance(a, PypiArtifact) and isinstance(u, UnpackedWheel)
        ]

        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.staging-", dir=prefix.parent))
        swapped = False
        try:
            os.chmod(staging, 0o755)
            checkpoint("staging:created")
            guard = PrefixGuard(staging, Linker(link_mode))
            linked: list[tuple[CondaArtifact, InstalledConda]] = []
            if interpreter is not None:
                layout = layout_for(prefix, interpreter.major_minor, root=staging)
                create_venv(
                    layout,
                    interpreter,
                    prompt=env_name,
                    base_site_packages=(
                        Path(base.prefix, base.site_packages) if base is not None else None
                    ),
                )
                python_executable, python_full = str(interpreter.executable), interpreter.version
                bytecode_python: Path | None = interpreter.executable
            else:
                layout = layout_for(
                    prefix,
                    conda_xy,
                    root=staging,
                    conda=True,
                    python_site_packages_path=_python_site_packages_path(conda, by_sha),
                )
                linked = _link_conda_all(conda, by_sha, fetched.paths, layout, guard, environment)
                _report_package_scripts(linked, note)
                python_full = conda_python
                python_executable = layout.prefix_python if conda_python else ""
                staged_python = staging / os.path.relpath(layout.prefix_python, prefix)
                bytecode_python = staged_python if conda_python else None
            if sources:
                # The environment's own interpreter (in a conda env, the staged one).
                build_python = (
                    interpreter.executable
                    if interpreter is not None
                    else staging / os.path.relpath(layout.prefix_python, prefix)
                )
                built = _build_all(
                    sources,
                    fetched.paths,
                    options,
                    cache,
                    python=build_python,
                    python_version=python_full,
                )
                locked: list[PypiArtifact | PypiSource] = [*pypi, *trees]
                order = {a.key: i for i, a in enumerate(locked)}
                wheels = sorted([*wheels, *built], key=lambda item: order[item[0].key])
            requested = _requested_names(environment)
            guard.protect_interpreter()  # no wheel may replace it
            installed = _install_all(wheels, layout, guard, requested, lock, options.project_root)
            guard.finish()  # every symlink still resolves inside, now that all is placed
            if options.compile_bytecode and bytecode_python is not None:
                note("compiling bytecode")
                _compile_bytecode(layout, bytecode_python)
            by_name = {d.dist_info: d for d in installed}
            packages = []
            for artifact, wheel in wheels:
                packages.append(
                    InstalledPackage(
                        name=artifact.name,
                        version=by_name[wheel.dist_info].version,
                        sha256=_identity(artifact),
                        filename=artifact.filename,
                        dist_info=wheel.dist_info,
                    )
                )
            conda_dist_infos: set[str] = set()
            for record, result in linked:
                packages.append(
                    InstalledPackage(
                        name=record.name,
                        version=record.version,
                        sha256=record.sha256,
                        filename=record.filename,
                        dist_info=result.record,
                        kind="conda",
                    )
                )
                if python_full:
                    from lockenv.sync.conda.install import conda_dist_infos as shipped

                    conda_dist_infos |= shipped(result.files, layout.site_packages_rel)
            has_site_packages = kind == "venv" or bool(python_full)
            write_state(
                staging,
                EnvState(
                    lock_sha256=lock_sha256,
                    environment=env_name,
                    platform=platform,
                    prefix=str(prefix),
                    lockenv_version=__version__,
                    python_executable=python_executable,
                    python_version=python_full,
                    site_packages=layout.site_packages_rel if has_site_packages else "",
                    link_mode=link_mode,
                    bytecode=options.compile_bytecode,
                    packages=tuple(packages),
                    kind=kind,
                    conda_dist_infos=tuple(sorted(conda_dist_infos)),
                    cache_entries=(
                        _entries_linked([*unpacked, *wheels]) if link_mode == "symlink" else ()
                    ),
                    base_prefix=base.prefix if base is not None else "",
                    base_digest=base.digest if base is not None else "",
                    sources=fingerprints,
                ),
            )
            checkpoint("staging:complete")
            old = _swap_into_place(staging, prefix)
            swapped = True
            checkpoint("swap:done")
        finally:
            if not swapped:
                remove_tree(staging)
        if old is not None:
            remove_tree(old)
    return SyncReport(
        prefix=prefix,
        installed=plan.installed,
        removed=plan.removed,
        unchanged=plan.unchanged,
        no_op=False,
        seconds=time.monotonic() - started,
    )


def _entries_linked(unpacked: Sequence[tuple[object, Unpacked]]) -> tuple[str, ...]:
    """The cache entry directories an environment in link mode "symlink" points into."""
    from lockenv.sync.pypi.wheel import UnpackedWheel

    return tuple(
        sorted(
            {
                str((u.files_dir if isinstance(u, UnpackedWheel) else u.directory).parent)
                for _a, u in unpacked
            }
        )
    )


def _identity(artifact: PypiArtifact | PypiSource) -> str:
    from lockenv.lockfile import PypiSource

    return artifact.identity if isinstance(artifact, PypiSource) else artifact.sha256


def _fingerprints(trees: list[PypiSource], root: Path | None) -> dict[str, str]:
    """Path dependency directory -> the fingerprint of its build files, now."""
    from lockenv.sync.pypi.sources import tree_fingerprint

    out = {}
    for tree in trees:
        if tree.path is not None and root is not None:
            directory = os.path.normpath(root / tree.path)
            out[directory] = tree_fingerprint(Path(directory))
    return out


def _report_package_scripts(
    linked: list[tuple[CondaArtifact, InstalledConda]], note: Progress
) -> None:
    with_scripts = [
        f"{a.name} ({', '.join(r.package_scripts)})" for a, r in linked if r.package_scripts
    ]
    if with_scripts:
        note(
            "skipped package scripts (lockenv never runs package code): "
            + ", ".join(sorted(with_scripts))
        )


def _unpack_all(
    cache: Cache,
    artifacts: list[Archive],
    paths: Mapping[str, Path],
    jobs: int,
    note: Progress,
    entries: Mapping[str, tuple[Path, str]],
) -> list[tuple[Archive, Unpacked]]:
    """Every artifact unpacked in the cache.  ``entries``: each artifact's entry and
    its state (`_trusted_entry`); missing or damaged ones are unpacked (again) from the
    verified archive."""
    found: dict[str, Unpacked] = {}
    todo: list[tuple[Archive, Path]] = []
    for artifact in artifacts:
        entry, state = entries[artifact.sha256]
        loaded = _load_unpacked(entry, artifact) if state == "ok" else None
        if loaded is not None:
            found[artifact.sha256] = loaded
            continue
        if state == "damaged" or (state == "ok" and loaded is None):
            note(f"{artifact.filename}: its unpacked cache entry was changed; unpacking it again")
        todo.append((artifact, entry))
    if todo:
        _unpack_in_pool(cache, todo, paths, jobs)
    result = []
    for artifact in artifacts:
        unpacked = found.get(artifact.sha256)
        if unpacked is None:
            entry, state = _trusted_entry(cache, artifact)
            if state != "ok":
                # Another user's process published a shared entry first: make our own.
                _ensure_unpacked(cache, artifact, paths[artifact.sha256], entry)
                entry, state = _trusted_entry(cache, artifact)
            unpacked = _load_unpacked(entry, artifact) if state == "ok" else None
        if unpacked is None:
            raise InstallError(
                f"{artifact.filename}: the unpacked cache entry is unusable; run "
                "`lockenv cache clean` and sync again"
            )
        result.append((artifact, unpacked))
    return result


def _unpack_in_pool(
    cache: Cache, todo: list[tuple[Archive, Path]], paths: Mapping[str, Path], jobs: int
) -> None:
    todo.sort(key=lambda item: -item[0].size)  # biggest first: the pool finishes together
    workers = max(1, min(jobs, len(todo)))
    cpus = min(workers, os.cpu_count() or 1)
    if cpus > 1 and sum(a.size for a, _ in todo) > _PROCESS_UNPACK_BYTES and _can_fork():
        # Unpacking thousands of small files is Python-bound: processes use every CPU
        # (measured 2x on two cores), threads do not.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        jobs_args = [(str(cache.root), a, str(paths[a.sha256]), str(e)) for a, e in todo]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=cpus, mp_context=context) as pool:
            list(pool.map(_unpack_in_worker, jobs_args))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda item: _ensure_unpacked(cache, *item), _with_paths(todo, paths)))


def _with_paths(
    todo: list[tuple[Archive, Path]], paths: Mapping[str, Path]
) -> list[tuple[Archive, Path, Path]]:
    return [(a, paths[a.sha256], entry) for a, entry in todo]


def _can_fork() -> bool:
    # fork() copies only the calling thread: safe while lockenv is the only thread (its
    # download pool has been shut down); never on macOS, where system libraries forbid it.
    import threading

    return sys.platform.startswith("linux") and threading.active_count() == 1


def _unpack_in_worker(args: tuple[str, Archive, str, str]) -> None:
    from lockenv.cache import Cache

    root, artifact, archive, entry = args
    _ensure_unpacked(Cache(Path(root)), artifact, Path(archive), Path(entry))
