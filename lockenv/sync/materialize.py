"""The sync: lock → prepare (fetch, verify, unpack once) → build a staging env → swap it in.

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
Syncs of one prefix are serialised by ``flock`` on ``.<name>.lock`` beside it; in the
shared cache, each artifact is prepared by one sync at a time (`lockenv.sync.prepare`).

`is_up_to_date` is the no-op check: standard library only, nothing hashed.  Once it (or
a sync) has passed, `stamp_environment` leaves the stamp that lets the next ``run`` or
no-op ``sync`` skip even that (`lockenv.fastpath`).

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
from lockenv.gcpause import gc_paused
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
    from lockenv.fastpath import Signed
    from lockenv.lockfile import (
        Archive,
        Artifact,
        CondaArtifact,
        LockedEnvironment,
        Lockfile,
        PypiArtifact,
        PypiSource,
    )
    from lockenv.sync.conda.install import InstalledConda, UnpackedConda
    from lockenv.sync.fetch import Fetcher
    from lockenv.sync.guard import PrefixGuard
    from lockenv.sync.pypi.sources import BuildRequest, WheelBuilder
    from lockenv.sync.pypi.wheel import UnpackedWheel, WheelInstall
    from lockenv.sync.reuse import TreePackage
    from lockenv.sync.venv import EnvLayout

    Unpacked = UnpackedWheel | UnpackedConda

__all__ = [
    "SyncOptions",
    "SyncReport",
    "activation_env",
    "default_cache_dir",
    "is_up_to_date",
    "parsed_lock_memo",
    "remove_spare",
    "stamp_environment",
    "stamp_inputs",
    "sync_environment",
]

Progress = Callable[[str], None]
_IS_WINDOWS = sys.platform == "win32"


def default_cache_dir() -> Path:
    """The cache root: ``LOCKENV_CACHE_DIR``, else the platform's user cache directory."""
    from lockenv.cache import default_cache_dir as _default

    return _default()


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class SyncOptions:
    """How to sync.

    ``link_mode``: "hardlink" (default; copies automatically across filesystems, unless
    ``link_mode_strict``), "copy" or "symlink".  ``offline``: use the cache (and file://
    URLs) only.  ``python``: the host interpreter to use (else one matching the lock's
    Python is searched for).
    ``compile_bytecode``: write deterministic .pyc files (unchecked-hash).  ``cache_dir``:
    else `default_cache_dir`.  ``jobs``: parallel downloads/unpacks.  ``bundle``: a bundle
    directory (`lockenv.sync.bundle_source`) that artifacts missing from the cache are taken from.
    ``manifest``: the project's manifest, whose ``[mirrors]`` apply to downloads (with the
    machine's, `lockenv.mirrors`); read only when something must be downloaded.
    ``allow_base_drift``: build on a base environment that changed since the lock (with a
    warning) instead of refusing.  ``cache_keep``: what the cache keeps of an artifact
    (`lockenv.cache.keep_policy`; None: ``$LOCKENV_CACHE_KEEP``, else trees).
    ``builder``: builds the lock's sdists and source trees into wheels (none: a lock with
    them is refused); ``no_build``: refuse to build even with a builder (``sync
    --no-build``); ``project_root``: where the lock's relative ``path`` sources are (the
    lock's directory).
    """

    link_mode: str = "hardlink"
    link_mode_strict: bool = False  # asked for explicitly: never fall back to copying
    offline: bool = False
    python: Path | None = None
    compile_bytecode: bool = False
    cache_dir: Path | None = None
    jobs: int = 8
    bundle: Path | None = None
    manifest: Path | None = None
    allow_base_drift: bool = False
    cache_keep: str | None = None
    builder: WheelBuilder | None = None
    no_build: bool = False
    project_root: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class SyncReport:
    """What a sync did; package entries are ``name==version``, sorted."""

    prefix: Path
    installed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    no_op: bool
    seconds: float
    copied_across_filesystems: bool = False  # hardlinks were asked for, copies were made


# -- the fast path -------------------------------------------------------------------------


def _interpreter(prefix: Path, state: EnvState) -> str:
    """The environment's interpreter ("" for a conda environment without Python)."""
    if state.kind == "conda":
        if not state.python_version:
            return ""
        return str(prefix / ("python.exe" if _IS_WINDOWS else "bin/python"))
    return str(prefix / ("Scripts/python.exe" if _IS_WINDOWS else "bin/python"))


def _interpreter_present(prefix: Path, state: EnvState) -> bool:
    python = _interpreter(prefix, state)
    return not python or os.path.exists(python)  # follows links: a removed base is noticed


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


def tidy(prefix: Path, cache_dir: Path | None = None) -> None:
    """After a no-op sync: remove what killed syncs left, if anything — staging trees
    beside the prefix (unless a sync of it is running) and abandoned work directories in
    the cache.  Two directory listings when there is nothing to remove."""
    prefix = Path(os.path.abspath(prefix))
    if _leftovers(prefix):
        with _prefix_lock_if_free(prefix) as free:
            if free:  # else a sync of it is running: its staging tree is not left over
                _recover(prefix)
    from lockenv.cache import Cache, default_cache_dir

    with contextlib.suppress(OSError):
        Cache(cache_dir or default_cache_dir()).clean_stale_temp()


def remove_spare(prefix: Path) -> bool:
    """Remove the spare tree a sync kept beside ``prefix`` (`lockenv.sync.reuse`), unless
    a sync of ``prefix`` is running (it may be taking it); True when one was removed.
    Its hard links keep cache files on disk after `lockenv.cache.prune` drops them."""
    prefix = Path(os.path.abspath(prefix))
    with _prefix_lock_if_free(prefix) as free:
        # Under a staging name, without its state file: a removal cut short is finished
        # by the next sync, which never takes it for a complete tree.
        staging = _spare_staging(prefix) if free else None
        if staging is None:
            return False
        from lockenv.cache import remove_tree

        remove_tree(staging)
        return True


def parsed_lock_memo(prefix: Path) -> Path:
    """Where the parse of the locks synced into ``prefix`` is remembered, beside it
    (`lockenv.lockfile.loads_remembered`)."""
    prefix = Path(os.path.abspath(prefix))
    return prefix.parent / f".{prefix.name}.parsed-lock.json"


@contextlib.contextmanager
def _prefix_lock_if_free(prefix: Path) -> Iterator[bool]:
    """Hold the prefix's sync lock (`_prefix_lock`) if no sync holds it: True, else False
    at once (never waits)."""
    lock_path = prefix.parent / f".{prefix.name}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False
        return
    try:
        yield _IS_WINDOWS or _try_flock(fd)
    finally:
        os.close(fd)  # closing releases the flock


def _try_flock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def stamp_inputs(prefix: Path) -> tuple[str, list[Signed]]:
    """What the no-op check of the environment at ``prefix`` reads besides the lock and
    its own files — its base environment's directories, its path dependencies' build
    files — `lockenv.fastpath.signed_input` before the check reads them; with the base's
    path ("" for none)."""
    state = read_state(Path(os.path.abspath(prefix)))
    if state is None:
        return "", []
    from lockenv.fastpath import signed_input

    watched = _source_build_files(state)
    if not state.base_prefix:
        return "", [signed_input(path) for path in watched]
    from lockenv.base_environment import BaseEnvironmentError, read_base_environment

    base = Path(state.base_prefix)
    try:
        site_packages = read_base_environment(base).site_packages
    except BaseEnvironmentError:
        site_packages = "lib"
    watched += [str(base / rel) for rel in ("lib", "conda-meta", "pyvenv.cfg", site_packages)]
    return state.base_prefix, [signed_input(path) for path in watched]


def _source_build_files(state: EnvState) -> list[str]:
    """The build files of the environment's path dependencies: an edited pyproject.toml
    (a new console script...) is installed again, so the stamp watches them."""
    if not state.sources:
        return []
    from lockenv.sync.pypi.sources import BUILD_FILES

    return [os.path.join(tree, name) for tree in state.sources for name in BUILD_FILES]


def stamp_environment(
    prefix: Path,
    *,
    lock: Signed,
    manifest: Signed | None,
    inputs: tuple[str, list[Signed]] = ("", []),
    watched: Sequence[Signed] = (),
    variables: Sequence[tuple[str, str]] = (),
) -> None:
    """Leave the no-op stamp (`lockenv.fastpath`) in the environment at ``prefix``, which
    the full check just found in sync with ``lock`` (fresh for ``manifest``, if given);
    ``inputs``: `stamp_inputs`, taken before the check; ``watched`` and ``variables``:
    other files and environment variables the check depended on (pip's configuration)."""
    from lockenv.fastpath import write_stamp

    prefix = Path(os.path.abspath(prefix))
    state = read_state(prefix)
    if state is None or state.base_prefix != inputs[0]:
        return  # built on another base than the one watched: the next check stamps it
    if not set(_source_build_files(state)) <= {path for path, _, _ in inputs[1]}:
        return  # path dependencies not watched yet (a first sync): the next check stamps it
    listings: list[tuple[str, str, list[str]]] = []
    if state.site_packages:
        listings.append((str(prefix / state.site_packages), ".dist-info", state.dist_infos))
    if state.kind == "conda":
        listings.append((str(prefix / "conda-meta"), ".json", state.conda_records))
    write_stamp(
        str(prefix),
        environment=state.environment,
        python=_interpreter(prefix, state),
        listings=listings,
        entries=state.cache_entries,
        lock=lock,
        manifest=manifest,
        inputs=[*inputs[1], *watched],
        variables=variables,
    )


def activation_env(prefix: Path, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the environment at ``prefix`` activated (for ``lockenv run``):
    `lockenv.fastpath.activation_env`."""
    from lockenv.fastpath import activation_env as activated

    return activated(os.path.abspath(prefix), base)


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

    try:
        # The C library is already loaded: its symbols are found through the program's
        # own handle (`ctypes.util.find_library` would run ``ldconfig -p`` every sync).
        libc = ctypes.CDLL(None, use_errno=True)
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
    _refuse_two_versions(env_name, artifacts)
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


def _refuse_two_versions(env_name: str, artifacts: list[Artifact]) -> None:
    """An environment holds one version of a package: a lock listing two (hand-edited,
    or badly merged) would install both, the later one's files over the earlier's."""
    seen: dict[tuple[str, str], Artifact] = {}
    for artifact in artifacts:
        key = (artifact.kind, re.sub(r"[-_.]+", "-", artifact.name).lower())
        other = seen.setdefault(key, artifact)
        if other is not artifact and _identity(other) != _identity(artifact):
            raise InstallError(
                f"environment {env_name!r} locks {artifact.name} twice: {other.version} "
                f"({other.filename}) and {artifact.version} ({artifact.filename}); an "
                "environment holds one version of a package: run `lockenv lock` to write "
                "the lock again"
            )


def _check_wheel_versions(
    wheels: Sequence[tuple[PypiArtifact | PypiSource, UnpackedWheel]],
) -> None:
    """Each wheel is the version the lock pins (its .dist-info says which it is)."""
    for artifact, wheel in wheels:
        if wheel.version == artifact.version:
            continue
        from packaging.version import InvalidVersion, Version

        try:
            same = Version(wheel.version) == Version(artifact.version)
        except InvalidVersion:
            same = False
        if not same:
            raise InstallError(
                f"{artifact.filename}: holds {wheel.name} {wheel.version}, but the lock pins "
                f"{artifact.name} {artifact.version}; the artifact does not match the lock "
                "(run `lockenv lock` again, or check the index or mirror)"
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


def _fetch_sdists(sdists: list[PypiArtifact], fetcher: Fetcher) -> dict[str, Path]:
    """Each locked sdist's archive in the cache, checked against the lock's sha256 and
    size (before anything is built from it), by sha256."""
    fetcher.check_available(sdists)
    fetcher.expect(sdists)
    paths = {}
    for sdist in sdists:
        fetcher.cache.mark_used(sdist.sha256)
        paths[sdist.sha256] = fetcher.archive(sdist)
    return paths


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
    from lockenv.sync.prepare import unpack_built
    from lockenv.sync.pypi.sources import built_wheel_artifact, check_built_wheel
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
        as_wheel = built_wheel_artifact(artifact.name, artifact.version, wheel)
        unpacked = unpack_built(cache, as_wheel, wheel)
        if not isinstance(unpacked, UnpackedWheel):
            raise InstallError(
                f"{wheel.name}: the built wheel unpacked as something else; run "
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
    from lockenv.sync.pypi.sources import BuildRequest, git_checkout_request

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
    return git_checkout_request(request, artifact, cache.root)


class _Planner:
    """Each wheel's plan (`lockenv.sync.pypi.wheel.plan_wheel_install`), made when first
    asked for (a spare tree's record stands for the plans of packages it holds), and
    each one's `lockenv.sync.pypi.wheel.plan_key`."""

    def __init__(
        self,
        wheels: Sequence[tuple[PypiArtifact | PypiSource, UnpackedWheel]],
        layout: EnvLayout,
        environment: LockedEnvironment,
        lock: Lockfile,
        root: Path | None,
    ) -> None:
        requested = _requested_names(environment)
        self._wheels = wheels
        self._layout = layout
        self._inputs = [
            (artifact.name in requested, _direct_url(lock, artifact, root))
            for artifact, _wheel in wheels
        ]
        self.plans: list[WheelInstall | None] = [None] * len(wheels)

    def __call__(self, index: int) -> WheelInstall:
        """The plan of wheel ``index``."""
        plan = self.plans[index]
        if plan is None:
            from lockenv.sync.pypi.wheel import plan_wheel_install

            artifact, wheel = self._wheels[index]
            requested, direct_url = self._inputs[index]
            try:
                plan = plan_wheel_install(
                    wheel, self._layout, requested=requested, direct_url=direct_url
                )
            except FileNotFoundError as exc:
                raise _damaged_entry(artifact, exc) from None
            self.plans[index] = plan
        return plan

    def all(self) -> list[WheelInstall]:
        """Every wheel's plan."""
        return [self(index) for index in range(len(self.plans))]

    def keys(self, entries: Mapping[str, bytes]) -> list[str | None]:
        """Each wheel's plan key; ``entries``: the identities of the cache entries this
        sync checked, by sha256 (`lockenv.sync.prepare.Prepared.entries`); None for the
        others."""
        from lockenv.sync.pypi.wheel import plan_key

        keys: list[str | None] = []
        for (artifact, wheel), (requested, direct_url) in zip(
            self._wheels, self._inputs, strict=True
        ):
            entry = entries.get(getattr(artifact, "sha256", ""))
            keys.append(
                None
                if entry is None
                else plan_key(
                    wheel, self._layout, requested=requested, direct_url=direct_url, entry=entry
                )
            )
        return keys


def _damaged_entry(artifact: Artifact, exc: OSError) -> InstallError:
    return InstallError(
        f"{artifact.filename}: the unpacked cache entry is damaged ({exc}); run "
        "`lockenv cache clean` and sync again"
    )


def _install_all(
    wheels: list[tuple[PypiArtifact | PypiSource, UnpackedWheel]],
    plans: Sequence[WheelInstall | None],
    guard: PrefixGuard,
    kept: frozenset[str],
    whole: frozenset[int] = frozenset(),
) -> None:
    """Apply each wheel's plan through ``guard``; ``kept``: paths already in place (a
    refreshed spare tree), checked by the guard but not placed again; ``whole``: the
    plans (by index) all of whose entries are in place (`lockenv.sync.reuse.Refreshed`),
    their paths checked by the guard likewise, and nothing else done with them.  A plan
    that is None is of a package taken whole as a spare tree's record gave it
    (`lockenv.sync.reuse.Refreshed.taken`): its paths were checked by the sync that
    placed them (the record holds it under a key that names lockenv's version)."""
    from itertools import chain
    from operator import itemgetter

    from lockenv.sync.pypi.wheel import apply_wheel_installs

    path_of = itemgetter(0)
    in_place = chain(
        kept, *(map(path_of, plan.entries) for i in sorted(whole) if (plan := plans[i]) is not None)
    )
    guard.check_kept(in_place, what="the refreshed environment")
    # In wheel order, so that a path shipped by two wheels deterministically ends as the
    # last's; the files of all the wheels linked together by threads (`apply_wheel_installs`).
    # No entry of a plan kept whole is placed: a path it shares with another plan is in
    # a directory of both, which is kept as it was or listed (then neither plan is whole).
    try:
        apply_wheel_installs(
            [
                (plan, wheel.filename)
                for i, ((_a, wheel), plan) in enumerate(zip(wheels, plans, strict=True))
                if i not in whole and plan is not None
            ],
            guard,
            skip=kept,
        )
    except FileNotFoundError as exc:
        raise _damaged_entry(_owner(wheels, exc), exc) from None
    for _plan in plans:
        checkpoint("staging:linked")


def _owner(
    wheels: Sequence[tuple[PypiArtifact | PypiSource, UnpackedWheel]], exc: OSError
) -> Artifact:
    """The wheel whose cache file ``exc`` names (else the first): whose entry is damaged."""
    missing = str(exc.filename or "")
    for artifact, wheel in wheels:
        if missing.startswith(f"{wheel.files_dir}{os.sep}"):
            return artifact
    return wheels[0][0]


def _same_filesystem(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _spare_staging(prefix: Path) -> Path | None:
    """The spare tree of ``prefix`` (`lockenv.sync.reuse`) under a staging name, with its
    state file removed (an incomplete tree is never taken for a complete one)."""
    from lockenv.sync.reuse import take_spare

    staging = take_spare(prefix)
    if staging is None:
        return None
    try:
        os.unlink(staging / STATE_FILE)
    except FileNotFoundError:
        pass
    except OSError:
        from lockenv.cache import remove_tree

        remove_tree(staging)
        return None
    return staging


def _skeleton_dirs(layout: EnvLayout) -> list[str]:
    """The directories a venv's skeleton has even when no package puts a file in them."""
    return [layout.scripts_rel, layout.site_packages_rel, "include"]


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


def _bytecode_interpreter(python_xy: str, own: Path) -> Path:
    """Who compiles an environment's bytecode: the Python running lockenv when it is the
    environment's X.Y (then nothing from the lock runs at all), else the environment's
    own interpreter ``own`` (for a conda environment, its locked ``python`` package)."""
    if sys.implementation.name == "cpython" and python_xy == "{}.{}".format(*sys.version_info):
        return Path(sys.executable)
    return own


def _compile_bytecode(layout: EnvLayout, python: Path) -> None:
    """Compile site-packages with ``python``: deterministic unchecked-hash .pyc, with the
    final prefix (not the staging dir) as the source path in tracebacks.  Isolated
    (``-I -S``): no ``site``, so no ``.pth`` file or ``sitecustomize`` of a package runs."""
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
        [str(python), "-I", "-S", "-c", script, str(layout.site_packages), final_sp],
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Tuples by the ten thousand (a few per file of the environment), none in a cycle.
@gc_paused()
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
    from lockenv.atomic import private_dir
    from lockenv.cache import Cache, keep_policy, remove_tree
    from lockenv.cache import default_cache_dir as _default_cache
    from lockenv.platforms import current_platform
    from lockenv.sync.fetch import Fetcher
    from lockenv.sync.guard import PrefixGuard
    from lockenv.sync.link import Linker, check_link_mode
    from lockenv.sync.prepare import prepare_artifacts
    from lockenv.sync.reuse import keep_as_spare, spare_path, write_tree_record
    from lockenv.sync.venv import base_interpreter, create_venv, find_interpreter, layout_for

    started = time.monotonic()
    link_mode = check_link_mode(options.link_mode)
    keep = keep_policy(options.cache_keep)
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
            cache.clean_stale_temp()  # work directories of killed syncs, if any
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

        fetcher = Fetcher(
            cache,
            offline=options.offline,
            bundle=options.bundle,
            manifest=options.manifest,
            progress=progress,
            connections=options.jobs,
        )
        ready: list[Archive] = [*conda, *(a for a in pypi if a.is_wheel)]
        with contextlib.closing(fetcher):
            prepared = prepare_artifacts(
                ready,
                fetcher,
                jobs=options.jobs,
                progress=progress,
                keep_archives=keep != "trees",
                # What the seal check saw is of use to a spare tree's refresh only.
                want_inodes=os.path.lexists(spare_path(prefix)),
            )
            # Sdists are built later, from their archives (checked against the lock here).
            sdists = _fetch_sdists([a for a in pypi if not a.is_wheel], fetcher)
        unpacked = [(a, prepared.unpacked[a.sha256]) for a in ready]
        tarballs = {a.sha256: cache.archive_path(a.sha256, a.filename) for a in conda}
        by_sha = {a.sha256: u for a, u in unpacked}
        from lockenv.lockfile import PypiArtifact
        from lockenv.sync.pypi.wheel import UnpackedWheel

        wheels: list[tuple[PypiArtifact | PypiSource, UnpackedWheel]] = [
            (a, u)
            for a, u in unpacked
            if isinstance(a, PypiArtifact) and isinstance(u, UnpackedWheel)
        ]
        _check_wheel_versions(wheels)

        # A hardlinked venv keeps the tree it replaces, and the next sync refreshes that
        # tree instead of building one from nothing (`lockenv.sync.reuse`).
        spare_ok = (
            interpreter is not None
            and not sources
            and not options.compile_bytecode
            and link_mode == "hardlink"
            and not _IS_WINDOWS
            and _same_filesystem(cache.root, prefix.parent)
        )
        staging = _spare_staging(prefix) if spare_ok else None
        reused = staging is not None
        if staging is None:
            staging = private_dir(prefix.parent, f".{prefix.name}.staging-")
        swapped = False
        try:
            from lockenv.atomic import new_dir_mode

            os.chmod(staging, new_dir_mode())  # the environment's root: as the umask says
            checkpoint("staging:created")
            linker = Linker(link_mode, strict=options.link_mode_strict)
            guard = PrefixGuard(staging, linker)
            linked: list[tuple[CondaArtifact, InstalledConda]] = []
            plans: Sequence[WheelInstall | None] | None = None
            keys: list[str | None] | None = None  # `plan_key`s, for the tree's record
            kept: set[str] = set()
            whole: frozenset[int] = frozenset()  # plans all of whose files are in place
            taken: dict[int, TreePackage] = {}  # packages in place, as the record gave them
            unchanged: dict[str, tuple[int, int, int]] = {}  # directories, by the record
            tree: set[str] | None = None  # the tree's directories
            skeleton: list[str] = []
            if interpreter is not None:
                layout = layout_for(prefix, interpreter.major_minor, root=staging)
                if reused:
                    from lockenv.sync.reuse import refresh_tree

                    planner = _Planner(wheels, layout, environment, lock, options.project_root)
                    keys = planner.keys(prepared.entries)
                    # Everything compared but what the tree's record vouches for.
                    refreshed = refresh_tree(
                        staging, keys, planner, _skeleton_dirs(layout), prepared.inodes
                    )
                    if refreshed is None:  # not usable after all: build afresh
                        remove_tree(staging)
                        staging.mkdir()
                        os.chmod(staging, new_dir_mode())
                        plans = planner.all()
                    else:
                        kept, unchanged = refreshed.files, refreshed.times
                        whole, taken, tree = refreshed.whole, refreshed.taken, refreshed.tree
                        guard.adopt_dirs(refreshed.dirs)
                        plans = planner.plans  # None for the packages taken
                    checkpoint("staging:refreshed")
                skeleton = create_venv(
                    layout,
                    interpreter,
                    prompt=env_name,
                    base_site_packages=(
                        Path(base.prefix, base.site_packages) if base is not None else None
                    ),
                )
                kept.difference_update(skeleton)  # replaced by the skeleton: placed again
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
                linked = _link_conda_all(conda, by_sha, tarballs, layout, guard, environment)
                _report_package_scripts(linked, note)
                python_full = conda_python
                python_executable = layout.prefix_python if conda_python else ""
                staged_python = staging / os.path.relpath(layout.prefix_python, prefix)
                own = staged_python if conda_python else None
                bytecode_python = _bytecode_interpreter(conda_xy, own) if own else None
            if sources:
                # The environment's own interpreter (in a conda env, the staged one).
                build_python = (
                    interpreter.executable
                    if interpreter is not None
                    else staging / os.path.relpath(layout.prefix_python, prefix)
                )
                built = _build_all(
                    sources,
                    sdists,
                    options,
                    cache,
                    python=build_python,
                    python_version=python_full,
                )
                locked: list[PypiArtifact | PypiSource] = [*pypi, *trees]
                order = {a.key: i for i, a in enumerate(locked)}
                wheels = sorted([*wheels, *built], key=lambda item: order[item[0].key])
            guard.protect_interpreter()  # no wheel may replace it
            if plans is None:
                plans = _Planner(wheels, layout, environment, lock, options.project_root).all()
            _install_all(wheels, plans, guard, frozenset(kept), whole)
            guard.finish()  # every symlink still resolves inside, now that all is placed
            if options.compile_bytecode and bytecode_python is not None:
                note("compiling bytecode")
                _compile_bytecode(layout, bytecode_python)
            packages = []
            for index, (artifact, wheel) in enumerate(wheels):
                # A package taken as the tree's record gave it: its RECORD is as written.
                record_sha256 = (
                    taken[index].record_sha256
                    if index in taken
                    else _file_sha256(
                        staging / layout.site_packages_rel / wheel.dist_info / "RECORD"
                    )
                )
                packages.append(
                    InstalledPackage(
                        name=artifact.name,
                        version=wheel.version,
                        sha256=_identity(artifact),
                        filename=artifact.filename,
                        dist_info=wheel.dist_info,
                        record_sha256=record_sha256,
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
                        record_sha256=_file_sha256(staging / "conda-meta" / result.record),
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
            if keys is not None and plans is not None and not linker.copied_instead:
                # Last: what it says of the tree is vouched for by its own mtime.  Made
                # by a refresh only, which has the cache entries' identities it needs (a
                # tree built afresh is refreshed by listing all of it, once); not when a
                # file was copied where the record would say "the cache's inode".
                from lockenv.sync.reuse import tree_dirs

                placed = [p if p is not None else taken[i] for i, p in enumerate(plans)]
                if tree is None:
                    tree = tree_dirs((p.dirs for p in placed), _skeleton_dirs(layout))
                records = [p.record_sha256 for p in packages[: len(placed)]]
                write_tree_record(staging, keys, placed, records, tree, skeleton, unchanged)
            checkpoint("staging:complete")
            old = _swap_into_place(staging, prefix)
            swapped = True
            checkpoint("swap:done")
            cache.register_environment(prefix)  # `lockenv cache prune` keeps what it uses
        finally:
            if not swapped:
                remove_tree(staging)
        if old is not None and not keep_as_spare(old, prefix, reusable=spare_ok):
            remove_tree(old)
    return SyncReport(
        prefix=prefix,
        installed=plan.installed,
        removed=plan.removed,
        unchanged=plan.unchanged,
        no_op=False,
        seconds=time.monotonic() - started,
        copied_across_filesystems=linker.copied_across_filesystems,
    )


def _file_sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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


def _identity(artifact: Artifact) -> str:
    """What an environment records it was installed from: an archive's sha256, or a
    source tree's `PypiSource.identity`."""
    from lockenv.lockfile import PypiSource

    return artifact.identity if isinstance(artifact, PypiSource) else artifact.sha256


def _fingerprints(trees: list[PypiSource], root: Path | None) -> dict[str, str]:
    """Path dependency directory -> the fingerprint of its build files, now."""
    if not trees:
        return {}  # most environments: the source-build module is not even imported
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
