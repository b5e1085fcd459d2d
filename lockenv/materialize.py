"""The sync: lock → fetch (verified) → unpack once → build a staging env → swap it in.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lockenv import __version__
from lockenv.errors import InstallError
from lockenv.plan import (
    STATE_FILE,
    EnvState,
    InstalledPackage,
    WantedPackage,
    dist_info_names,
    plan_sync,
    read_state,
    write_state,
)

if TYPE_CHECKING:
    from lockenv.cache import Cache
    from lockenv.install.wheel import InstalledDist, UnpackedWheel
    from lockenv.link import Linker
    from lockenv.lockfile import LockedEnvironment, Lockfile, PypiArtifact
    from lockenv.venv import EnvLayout, Interpreter

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
    else `default_cache_dir`.  ``jobs``: parallel downloads/unpacks.
    """

    link_mode: str = "hardlink"
    offline: bool = False
    python: Path | None = None
    compile_bytecode: bool = False
    cache_dir: Path | None = None
    jobs: int = 8


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


def _interpreter_present(prefix: Path) -> bool:
    python = prefix / ("Scripts/python.exe" if _IS_WINDOWS else "bin/python")
    return os.path.exists(python)  # follows the symlink: a removed base Python is noticed


def _state_is_current(state: EnvState, prefix: Path, platform: str) -> bool:
    """The environment is intact: same machine layout, nothing added or removed by hand."""
    return (
        state.lockenv_version == __version__
        and state.platform == platform
        and state.prefix == str(prefix)
        and dist_info_names(prefix / state.site_packages) == state.dist_infos
        and _interpreter_present(prefix)
    )


def is_up_to_date(prefix: Path, lock_sha256: str, env_name: str) -> bool:
    """True when the environment at ``prefix`` was synced from exactly this lock and env.

    Standard library only and nothing is hashed (one small JSON file, one directory
    listing): packages added or removed by hand make it False; files edited in place are
    found by `lockenv.verify.verify_environment`.
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

    Puts its scripts directory first on PATH, sets VIRTUAL_ENV and removes PYTHONHOME
    (which would point the interpreter at another standard library).
    """
    prefix = Path(os.path.abspath(prefix))
    env = dict(base)
    scripts = str(prefix / ("Scripts" if _IS_WINDOWS else "bin"))
    path = env.get("PATH", "")
    env["PATH"] = scripts + (os.pathsep + path if path else "")
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
    os.rename(staging, prefix)
    return backup


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


def _pypi_artifacts(lock: Lockfile, env_name: str, platform: str) -> list[PypiArtifact]:
    from lockenv.lockfile import PypiArtifact

    artifacts = lock.packages_for(env_name, platform)
    conda = sorted(a.name for a in artifacts if not isinstance(a, PypiArtifact))
    if conda:
        raise InstallError(
            f"environment {env_name!r} has conda packages ({', '.join(conda[:5])}); this sync "
            "installs PyPI wheels into a virtual environment only"
        )
    pypi = [a for a in artifacts if isinstance(a, PypiArtifact)]
    sdists = sorted(f"{a.name} ({a.filename})" for a in pypi if not a.is_wheel)
    if sdists:
        raise InstallError(
            f"environment {env_name!r} locks source distributions: {', '.join(sdists)}; "
            "lockenv installs wheels only (building would run package code): lock a version "
            "that has a wheel for this platform"
        )
    return pypi


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


def _direct_url(lock: Lockfile, artifact: PypiArtifact) -> tuple[str, str] | None:
    if artifact.index is not None:
        return None
    sources = (*lock.inputs.indexes, *lock.inputs.find_links)
    if any(artifact.url.startswith(s.rstrip("/") + "/") for s in sources if s):
        return None
    return (artifact.url, artifact.sha256)


def _ensure_unpacked(cache: Cache, artifact: PypiArtifact, archive: Path) -> UnpackedWheel:
    from lockenv.install.wheel import load_unpacked, unpack_wheel

    final = cache.unpacked_dir(artifact.sha256)
    wheel = load_unpacked(final)
    if wheel is not None:
        return wheel
    if final.exists():
        cache.discard(final)  # written by another lockenv version, or damaged
    work = cache.make_temp_dir("unpack")
    try:
        unpack_wheel(archive, work, filename=artifact.filename, project=artifact.name)
    except BaseException:
        from lockenv.cache import remove_tree

        remove_tree(work)
        raise
    cache.publish_dir(work, final)
    wheel = load_unpacked(final)
    if wheel is None:
        raise InstallError(
            f"{artifact.filename}: the unpacked cache entry {str(final)!r} is unusable; "
            "run `lockenv cache clean` and sync again"
        )
    return wheel


def _install_all(
    wheels: list[tuple[PypiArtifact, UnpackedWheel]],
    layout: EnvLayout,
    linker: Linker,
    requested: frozenset[str],
    lock: Lockfile,
) -> list[InstalledDist]:
    from lockenv.install.wheel import install_wheel

    def install(item: tuple[PypiArtifact, UnpackedWheel]) -> InstalledDist:
        artifact, wheel = item
        try:
            return install_wheel(
                wheel,
                layout,
                linker,
                requested=artifact.name in requested,
                direct_url=_direct_url(lock, artifact),
            )
        except FileNotFoundError as exc:
            raise InstallError(
                f"{artifact.filename}: the unpacked cache entry is damaged ({exc}); run "
                "`lockenv cache clean` and sync again"
            ) from None

    # One thread: measured faster than a pool (directory creation serialises in the
    # filesystem), and a path shipped by two wheels deterministically ends as the last's.
    return [install(item) for item in wheels]


def _compile_bytecode(layout: EnvLayout, interpreter: Interpreter) -> None:
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
        [str(interpreter.executable), "-I", "-c", script, str(layout.site_packages), final_sp],
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
    from lockenv.fetch import fetch_artifacts
    from lockenv.link import Linker, check_link_mode
    from lockenv.platforms import current_platform
    from lockenv.venv import create_venv, find_interpreter, layout_for

    started = time.monotonic()
    link_mode = check_link_mode(options.link_mode)
    platform = current_platform()
    prefix = Path(os.path.abspath(prefix))
    if prefix.is_symlink():
        prefix = Path(os.path.realpath(prefix))
    environment = lock.environment(env_name)
    artifacts = _pypi_artifacts(lock, env_name, platform)
    wanted = [WantedPackage(name=a.name, version=a.version, sha256=a.sha256) for a in artifacts]
    cache = Cache(options.cache_dir or _default_cache())
    python_version = environment.python or ".".join(map(str, sys.version_info[:2]))

    def note(message: str) -> None:
        if progress is not None:
            progress(message)

    prefix.parent.mkdir(parents=True, exist_ok=True)
    with _prefix_lock(prefix, progress):
        _recover(prefix)
        _check_prefix_is_ours(prefix)
        state = read_state(prefix)
        on_disk = (
            dist_info_names(prefix / state.site_packages)
            if state is not None
            else dist_info_names(layout_for(prefix, python_version).site_packages)
        )
        plan = plan_sync(wanted, state, on_disk)
        interpreter: Interpreter | None = None
        if options.python is not None:
            interpreter = find_interpreter(
                python_version, python=options.python, cache_dir=cache.root
            )
        if (
            state is not None
            and state.environment == env_name
            and not plan.changes
            and {p.sha256 for p in state.packages} == {w.sha256 for w in wanted}
            and _state_is_current(state, prefix, platform)
            and state.link_mode == link_mode
            and (state.bytecode or not options.compile_bytecode)
            and (interpreter is None or state.python_executable == str(interpreter.executable))
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

        if interpreter is None:
            interpreter = find_interpreter(python_version, cache_dir=cache.root)
        note(f"using Python {interpreter.version} ({interpreter.executable})")

        fetched = fetch_artifacts(
            artifacts, cache, offline=options.offline, jobs=options.jobs, progress=progress
        )
        cache.clean_stale_temp()
        wheels = _unpack_all(cache, artifacts, fetched.paths, options.jobs)

        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.staging-", dir=prefix.parent))
        swapped = False
        try:
            os.chmod(staging, 0o755)
            layout = layout_for(prefix, interpreter.major_minor, root=staging)
            create_venv(layout, interpreter, prompt=env_name)
            linker = Linker(link_mode)
            requested = _requested_names(environment)
            installed = _install_all(wheels, layout, linker, requested, lock)
            if options.compile_bytecode:
                note("compiling bytecode")
                _compile_bytecode(layout, interpreter)
            by_name = {d.dist_info: d for d in installed}
            packages = []
            for artifact, wheel in wheels:
                packages.append(
                    InstalledPackage(
                        name=artifact.name,
                        version=by_name[wheel.dist_info].version,
                        sha256=artifact.sha256,
                        filename=artifact.filename,
                        dist_info=wheel.dist_info,
                    )
                )
            write_state(
                staging,
                EnvState(
                    lock_sha256=lock_sha256,
                    environment=env_name,
                    platform=platform,
                    prefix=str(prefix),
                    lockenv_version=__version__,
                    python_executable=str(interpreter.executable),
                    python_version=interpreter.version,
                    site_packages=layout.site_packages_rel,
                    link_mode=link_mode,
                    bytecode=options.compile_bytecode,
                    packages=tuple(packages),
                ),
            )
            old = _swap_into_place(staging, prefix)
            swapped = True
        finally:
            if not swapped:
                remove_tree(staging)
        if old is not None:
            remove_tree(old)
    note(f"synced {len(artifacts)} packages into {prefix}")
    return SyncReport(
        prefix=prefix,
        installed=plan.installed,
        removed=plan.removed,
        unchanged=plan.unchanged,
        no_op=False,
        seconds=time.monotonic() - started,
    )


def _unpack_all(
    cache: Cache, artifacts: list[PypiArtifact], paths: Mapping[str, Path], jobs: int
) -> list[tuple[PypiArtifact, UnpackedWheel]]:
    """Every wheel unpacked in the cache (unpacking those that are not yet)."""
    from lockenv.install.wheel import load_unpacked

    ready = [load_unpacked(cache.unpacked_dir(a.sha256)) for a in artifacts]
    todo = [a for a, w in zip(artifacts, ready, strict=True) if w is None]
    if not todo:
        return [(a, w) for a, w in zip(artifacts, ready, strict=True) if w is not None]
    todo.sort(key=lambda a: -a.size)  # biggest first: the pool finishes together
    workers = max(1, min(jobs, len(todo)))
    cpus = min(workers, os.cpu_count() or 1)
    if cpus > 1 and sum(a.size for a in todo) > _PROCESS_UNPACK_BYTES and _can_fork():
        # Unpacking thousands of small files is Python-bound: processes use every CPU
        # (measured 2x on two cores), threads do not.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        jobs_args = [(str(cache.root), a, str(paths[a.sha256])) for a in todo]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=cpus, mp_context=context) as pool:
            list(pool.map(_unpack_in_worker, jobs_args))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda a: _ensure_unpacked(cache, a, paths[a.sha256]), todo))
    result = []
    for artifact in artifacts:
        wheel = load_unpacked(cache.unpacked_dir(artifact.sha256))
        if wheel is None:
            raise InstallError(
                f"{artifact.filename}: the unpacked cache entry is unusable; run "
                "`lockenv cache clean` and sync again"
            )
        result.append((artifact, wheel))
    return result


def _can_fork() -> bool:
    # fork() copies only the calling thread: safe while lockenv is the only thread (its
    # download pool has been shut down); never on macOS, where system libraries forbid it.
    import threading

    return sys.platform.startswith("linux") and threading.active_count() == 1


def _unpack_in_worker(args: tuple[str, PypiArtifact, str]) -> None:
    from lockenv.cache import Cache

    root, artifact, archive = args
    _ensure_unpacked(Cache(Path(root)), artifact, Path(archive))
