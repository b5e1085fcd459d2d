"""Bundles: a lock and every artifact it needs, in one directory, for air-gapped syncs.

Layout of a bundle directory (``lockenv bundle OUT``)::

    OUT/lockenv.lock                                  the lock, byte for byte as the project's
    OUT/artifacts/<sha256[:2]>/<sha256>/<filename>    each artifact, as the cache stores it
    OUT/bundle.json                                   what is inside; written last

``bundle.json``: ``{"format": "lockenv-bundle", "version": 1, "lockenv-version",
"lock": {"path", "sha256"}, "environments": [...], "platforms": [...], "artifacts":
[{"filename", "sha256", "size", "path"}, ...]}`` (keys and lists sorted, so the same
lock and choices give the same bytes).  Artifacts are keyed by content, like the cache:
two artifacts of one name from two channels cannot collide.

The directory is built as ``OUT.tmp-*`` beside ``OUT`` and renamed into place when
complete, so a bundle with a ``bundle.json`` is a whole bundle.  ``OUT.tar`` writes the
same tree as one uncompressed tar (the archives inside are compressed already) whose top
directory is ``OUT``; extract it before syncing.

A sync whose lock has a ``bundle.json`` beside it (or given ``--bundle DIR``) takes
artifacts missing from the cache from the bundle (`lockenv.sync.fetch`), verifying sha256
and size again and importing them into the cache.  Reading a bundle is the sync side's
job (`lockenv.sync.bundle_source`, standard library only); this module writes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lockenv.atomic import new_dir_mode
from lockenv.errors import LockfileError, UnsafePathError, UsageError
from lockenv.sync.bundle_source import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    LOCK_IN_BUNDLE,
    MANIFEST_NAME,
    bundle_for_lock,
    is_plain_name,
)

if TYPE_CHECKING:
    from lockenv.cache import Cache
    from lockenv.lockfile import Archive, Lockfile, PypiArtifact

__all__ = ["BundleReport", "write_bundle"]

_TAR_MTIME = 315532800  # 1980-01-01: fixed, so a tar of the same bundle has the same bytes
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleReport:
    """What `write_bundle` wrote."""

    path: Path
    environments: tuple[str, ...]
    platforms: tuple[str, ...]
    artifacts: int
    size: int  # bytes of artifacts
    downloaded: int  # artifacts that were not in the cache
    sources: tuple[str, ...] = ()  # path and git sources, not bundled: "name (where)"
    built: int = 0  # wheels built here from sdists and git sources, bundled beside them


# -- writing -----------------------------------------------------------------------------


def write_bundle(
    lock_path: Path,
    out: Path,
    *,
    environments: Sequence[str] = (),
    platforms: Sequence[str] = (),
    cache_dir: Path | None = None,
    offline: bool = False,
    jobs: int = 8,
    progress: Progress | None = None,
    built_wheels: bool = False,
) -> BundleReport:
    """Write a bundle at ``out`` (a directory, or one ``.tar`` file) for ``lock_path``.

    ``environments`` and ``platforms`` default to every environment and every locked
    platform of the lock.  Artifacts come from the cache when there, else from a bundle
    beside the lock, else are downloaded (``offline``: never); each is verified (sha256
    and size) as it is added.  ``out`` is replaced only when the new bundle is complete.
    Raises LockfileError, PlatformError, UsageError, IntegrityError, OfflineError,
    IndexAccessError.
    """
    import hashlib
    import tempfile

    from lockenv.atomic import write_atomic
    from lockenv.cache import Cache, default_cache_dir, remove_tree
    from lockenv.lockfile import loads_bytes, read_lock_bytes
    from lockenv.sync.fetch import fetch_artifacts

    lock_bytes = read_lock_bytes(lock_path)
    lock = loads_bytes(lock_bytes, source=str(lock_path))
    as_tar = out.name.endswith(".tar")
    _check_destination(out, as_tar)
    envs, plats, artifacts, trees = _select(lock, environments, platforms)
    cache = Cache(cache_dir or default_cache_dir())
    paths = {a.sha256: cache.archive_path(a.sha256, a.filename) for a in artifacts}
    for artifact in artifacts:
        cache.mark_used(artifact.sha256)
    # Cached archives are verified while they are copied into the bundle (read once).
    cached = {a.sha256 for a in artifacts if paths[a.sha256].is_file()}
    fetched = fetch_artifacts(
        [a for a in artifacts if a.sha256 not in cached],
        cache,
        offline=offline,
        jobs=jobs,
        progress=progress,
        bundle=bundle_for_lock(lock_path),
    )
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(work, new_dir_mode())  # mkdtemp's 0700 would hide it from the group
        (work / LOCK_IN_BUNDLE).write_bytes(lock_bytes)
        entries = []
        built: list[dict[str, str]] = []
        if built_wheels:
            built_here = _built_wheels(lock, envs, plats, cache, offline, progress)
            for source, target, wheel, wheel_path in built_here:
                artifacts.append(wheel)
                paths[wheel.sha256] = wheel_path
                cached.add(wheel.sha256)
                built.append({"source": source, "target": target, "sha256": wheel.sha256})
        for artifact in artifacts:
            rel = _artifact_path(artifact)
            dest = work.joinpath(*rel.split("/"))
            _add_file(
                cache, artifact, paths[artifact.sha256], dest, cached=artifact.sha256 in cached
            )
            entries.append(
                {
                    "filename": artifact.filename,
                    "sha256": artifact.sha256,
                    "size": artifact.size,
                    "path": rel,
                }
            )
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "lockenv-version": _lockenv_version(),
            "lock": {"path": LOCK_IN_BUNDLE, "sha256": hashlib.sha256(lock_bytes).hexdigest()},
            "environments": list(envs),
            "platforms": list(plats),
            "artifacts": sorted(entries, key=lambda e: (e["filename"], e["sha256"])),
        }
        if built:
            manifest["built"] = sorted(built, key=lambda e: (e["source"], e["target"]))
        # Last: a directory with a bundle.json is a complete bundle.
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        write_atomic(work / MANIFEST_NAME, text)
        if as_tar:
            _publish_tar(work, out)
        else:
            _publish_dir(work, out)
    finally:
        remove_tree(work)
    return BundleReport(
        path=out,
        environments=envs,
        platforms=plats,
        artifacts=len(artifacts),
        size=sum(a.size for a in artifacts),
        downloaded=len(fetched.downloaded),
        sources=tuple(trees),
        built=len(built),
    )


def _built_wheels(
    lock: Lockfile,
    envs: Sequence[str],
    platforms: Sequence[str],
    cache: Cache,
    offline: bool,
    progress: Progress | None,
) -> Iterator[tuple[str, str, PypiArtifact, Path]]:
    """``(source, target, wheel)`` for each sdist and git source the environments lock
    for this machine's platform, built for the environment's Python (PyPI-only
    environments: a conda environment's Python is its own package)."""
    from dataclasses import replace

    from lockenv.build.builder import SourceBuilder, cache_key
    from lockenv.lockfile import PypiArtifact, PypiSource
    from lockenv.platforms import current_platform
    from lockenv.sync.pypi.sources import (
        BuildRequest,
        built_wheel_artifact,
        git_checkout_request,
    )
    from lockenv.sync.venv import find_interpreter

    platform = current_platform()
    if platform not in platforms:
        return
    seen: set[tuple[str, str]] = set()
    with SourceBuilder(
        cache_dir=cache.root,
        index_urls=lock.inputs.indexes,
        find_links=lock.inputs.find_links,
        offline=offline,
        progress=progress,
    ) as builder:
        for name in envs:
            environment = lock.environment(name)
            if platform not in environment.packages or environment.python is None:
                continue
            interpreter = find_interpreter(environment.python, cache_dir=cache.root)
            for artifact in lock.packages_for(name, platform):
                request = BuildRequest(
                    name=artifact.name,
                    version=artifact.version,
                    python=interpreter.executable,
                    python_version=interpreter.version,
                )
                if isinstance(artifact, PypiArtifact) and not artifact.is_wheel:
                    archive = cache.archive_path(artifact.sha256, artifact.filename)
                    request = replace(request, archive=archive, archive_sha256=artifact.sha256)
                elif isinstance(artifact, PypiSource) and artifact.git is not None:
                    request = git_checkout_request(request, artifact, cache.root)
                else:
                    continue
                key = cache_key(request, interpreter)
                if key is None or key in seen:
                    continue
                seen.add(key)
                wheel = builder.build_wheel(request)
                as_artifact = built_wheel_artifact(artifact.name, artifact.version, wheel)
                yield key[0], key[1], as_artifact, wheel


def _lockenv_version() -> str:
    from lockenv import __version__

    return __version__


def _check_destination(out: Path, as_tar: bool) -> None:
    """Refuse to replace anything but an earlier bundle (or an empty directory)."""
    if not os.path.lexists(out):
        return
    if as_tar:
        if out.is_file() and not out.is_symlink():
            return
        raise UsageError(f"{str(out)!r} exists and is not a file; choose another name")
    is_dir = out.is_dir() and not out.is_symlink()
    if is_dir and ((out / MANIFEST_NAME).is_file() or not any(True for _ in os.scandir(out))):
        return
    raise UsageError(
        f"{str(out)!r} exists and is not a lockenv bundle; remove it or choose another name"
    )


def _select(
    lock: Lockfile, environments: Sequence[str], platforms: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], list[Archive], list[str]]:
    """The environments, platforms and distinct artifacts (by content) to bundle."""
    from lockenv.platforms import get_platform

    envs = tuple(sorted(set(environments))) or tuple(sorted(lock.environments))
    for name in envs:
        lock.environment(name)  # unknown: LockfileError naming the known ones
    for platform in platforms:
        get_platform(platform)  # unknown: PlatformError
        if platform not in lock.inputs.platforms:
            known = ", ".join(lock.inputs.platforms) or "none"
            raise LockfileError(
                f"--platform {platform!r}: the lock is not locked for it (locked for: "
                f"{known}); add it to [project] platforms and run `lockenv lock`"
            )
    plats = tuple(sorted(set(platforms))) or tuple(sorted(lock.inputs.platforms))
    from lockenv.lockfile import PypiSource

    chosen: dict[str, Archive] = {}
    trees: dict[str, str] = {}
    for name in envs:
        for platform in plats:
            if platform not in lock.environment(name).packages and not platforms:
                continue  # by default, only what is locked
            for artifact in lock.packages_for(name, platform):
                if isinstance(artifact, PypiSource):
                    # A directory or a git tree is not an archive: not bundled.
                    trees.setdefault(artifact.key, f"{artifact.name} ({artifact.filename})")
                else:
                    chosen.setdefault(artifact.sha256, artifact)
    artifacts = sorted(chosen.values(), key=lambda a: (a.filename, a.sha256))
    for artifact in artifacts:
        if not is_plain_name(artifact.filename):
            raise UnsafePathError(
                f"the lock's artifact file name {artifact.filename!r} is not a plain file "
                "name; run `lockenv lock` to write the lock again"
            )
    return envs, plats, artifacts, sorted(trees.values())


def _artifact_path(artifact: Archive) -> str:
    sha = artifact.sha256
    return f"artifacts/{sha[:2]}/{sha}/{artifact.filename}"


def _add_file(cache: Cache, artifact: Archive, source: Path, dest: Path, *, cached: bool) -> None:
    """Copy the cache archive ``source`` to ``dest``, hashing what is written.

    A copy, not a hardlink: a bundle leaves the machine or is shared with other users, so
    it gets files of its own, with this user's umask (cache archives may be private).
    A cached archive found corrupt is removed from the cache, as a sync would.
    """
    from lockenv.cache import copy_hashing
    from lockenv.errors import IntegrityError

    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = copy_hashing(source, dest, limit=artifact.size)
    if size == artifact.size and digest == artifact.sha256:
        return
    if cached:
        cache.discard(source.parent)
        cache.discard(cache.unpacked_dir(artifact.sha256))
    raise IntegrityError(
        f"{artifact.filename}: the cached archive is corrupt: expected sha256 "
        f"{artifact.sha256} ({artifact.size} bytes), got sha256 {digest} ({size} bytes); the "
        f"cache entry {str(source)!r} was removed, so `lockenv bundle` downloads it again"
    )


def _publish_dir(work: Path, out: Path) -> None:
    """Put the complete tree ``work`` at ``out``, replacing an earlier bundle there."""
    import tempfile

    from lockenv.cache import remove_tree

    if not os.path.lexists(out):
        os.rename(work, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    os.rename(work, out)
    remove_tree(old)


def _publish_tar(work: Path, out: Path) -> None:
    """Write ``work`` as ``out`` (a tar whose top directory is ``out`` minus ``.tar``):
    sorted members, fixed owner and times, so the same bundle gives the same bytes."""
    import tarfile

    from lockenv.atomic import temp_file_beside

    top = out.name[: -len(".tar")] or "bundle"
    # A new file renamed over ``out`` when complete (umask modes, not mkstemp's 0600).
    with temp_file_beside(out, suffix=".part") as (tmp, fh):
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel, is_dir in _walk_sorted(work):
                info = tarfile.TarInfo(f"{top}/{rel}" if rel else top)
                info.mtime = _TAR_MTIME
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if is_dir:
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
                    continue
                path = work / rel
                info.size = path.stat().st_size
                info.mode = 0o644
                with path.open("rb") as src:
                    tar.addfile(info, src)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, out)


def _walk_sorted(root: Path) -> list[tuple[str, bool]]:
    """Every directory and file under ``root`` as (POSIX relative path, is_dir), sorted,
    directories before what they hold; ``bundle.json`` last, as in the directory form."""
    found: list[tuple[str, bool]] = [("", True)]
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        found += [(prefix + d, True) for d in dirs]
        found += [(prefix + f, False) for f in sorted(files)]
    found.sort(key=lambda item: (item[0] == MANIFEST_NAME, item[0]))
    return found
