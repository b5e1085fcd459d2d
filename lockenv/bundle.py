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
artifacts missing from the cache from the bundle (`lockenv.fetch`), verifying sha256 and
size again and importing them into the cache.  Reading a bundle is standard library only
(it runs on the sync path); writing one imports the fetch machinery when called.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from lockenv.errors import LockfileError, UnsafePathError, UsageError

if TYPE_CHECKING:
    from lockenv.cache import Cache
    from lockenv.lockfile import Artifact, Lockfile

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MANIFEST_NAME",
    "Bundle",
    "BundleReport",
    "BundledArtifact",
    "bundle_for_lock",
    "read_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "lockenv-bundle"
BUNDLE_VERSION = 1
MANIFEST_NAME = "bundle.json"
LOCK_IN_BUNDLE = "lockenv.lock"
Progress = Callable[[str], None]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TAR_MTIME = 315532800  # 1980-01-01: fixed, so a tar of the same bundle has the same bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BundledArtifact:
    """One artifact file of a bundle; ``path`` is relative to the bundle, POSIX style."""

    filename: str
    sha256: str
    size: int
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A complete bundle directory, as its ``bundle.json`` describes it."""

    root: Path
    lockenv_version: str
    environments: tuple[str, ...]
    platforms: tuple[str, ...]
    artifacts: Mapping[str, BundledArtifact]  # sha256 -> artifact

    def path_of(self, sha256: str) -> Path | None:
        """The file of the artifact with this content, or None when the bundle lacks it
        (not listed, or the file is missing: then the sync reports it as missing)."""
        entry = self.artifacts.get(sha256)
        if entry is None:
            return None
        path = self.root.joinpath(*PurePosixPath(entry.path).parts)
        return path if path.is_file() else None


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleReport:
    """What `write_bundle` wrote."""

    path: Path
    environments: tuple[str, ...]
    platforms: tuple[str, ...]
    artifacts: int
    size: int  # bytes of artifacts
    downloaded: int  # artifacts that were not in the cache


# -- reading -----------------------------------------------------------------------------


def bundle_for_lock(lock_path: Path, explicit: Path | None = None) -> Path | None:
    """The bundle a sync of ``lock_path`` takes artifacts from: ``explicit`` (checked to
    be a complete bundle directory), else the lock's directory when it holds a
    ``bundle.json``, else None.  Only stats files: it runs on the no-op sync path."""
    if explicit is not None:
        if explicit.is_file() and explicit.name.endswith(".tar"):
            raise UsageError(
                f"--bundle {str(explicit)!r} is a tar file: extract it first "
                f"(`tar -xf {explicit.name}`) and pass the directory"
            )
        if not (explicit / MANIFEST_NAME).is_file():
            raise UsageError(
                f"--bundle {str(explicit)!r} is not a complete lockenv bundle (it has no "
                f"{MANIFEST_NAME}); write one with `lockenv bundle OUT`"
            )
        return Path(os.path.abspath(explicit))
    directory = Path(os.path.abspath(lock_path)).parent
    return directory if (directory / MANIFEST_NAME).is_file() else None


def read_bundle(root: Path) -> Bundle:
    """Read ``root/bundle.json``; raises LockfileError naming every problem in it."""
    source = root / MANIFEST_NAME
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LockfileError(
            f"{str(source)!r} does not exist: {str(root)!r} is not a complete bundle; "
            "write it again with `lockenv bundle`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LockfileError(
            f"{str(source)!r} is not readable JSON ({exc}); write the bundle again with "
            "`lockenv bundle`"
        ) from None
    problems: list[str] = []
    if not isinstance(data, dict):
        data = {}
        problems.append("the top level is not an object")
    if data.get("format") != BUNDLE_FORMAT and not problems:
        problems.append(f"format: expected {BUNDLE_FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != BUNDLE_VERSION and not problems:
        raise LockfileError(
            f"{str(source)!r} has bundle format version {data.get('version')!r}, this "
            f"lockenv reads version {BUNDLE_VERSION}; write the bundle with this lockenv"
        )
    artifacts: dict[str, BundledArtifact] = {}
    items = data.get("artifacts", [])
    if not isinstance(items, list):
        problems.append("artifacts: not a list")
        items = []
    for i, item in enumerate(items):
        entry = _artifact_from_dict(item, f"artifacts[{i}]", problems)
        if entry is not None:
            artifacts[entry.sha256] = entry
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise LockfileError(
            f"{str(source)!r} is not a valid bundle manifest: {shown}; write the bundle "
            "again with `lockenv bundle`"
        )
    return Bundle(
        root=Path(os.path.abspath(root)),
        lockenv_version=str(data.get("lockenv-version", "")),
        environments=tuple(str(e) for e in data.get("environments", [])),
        platforms=tuple(str(p) for p in data.get("platforms", [])),
        artifacts=artifacts,
    )


def _artifact_from_dict(item: Any, where: str, problems: list[str]) -> BundledArtifact | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: not an object")
        return None
    filename, sha256, size, path = (item.get(k) for k in ("filename", "sha256", "size", "path"))
    before = len(problems)
    if not isinstance(filename, str) or not _is_plain_name(filename):
        problems.append(f"{where}.filename: {filename!r} is not a file name")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        problems.append(f"{where}.sha256: {sha256!r} is not a sha256 hex digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append(f"{where}.size: {size!r} is not a size in bytes")
    if not isinstance(path, str) or not _is_inside(path):
        # Taken from a file someone handed us: it must stay inside the bundle.
        problems.append(f"{where}.path: {path!r} is not a relative path inside the bundle")
    if len(problems) > before:
        return None
    assert isinstance(filename, str) and isinstance(sha256, str)
    assert isinstance(size, int) and isinstance(path, str)
    return BundledArtifact(filename=filename, sha256=sha256, size=size, path=path)


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _is_inside(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        bool(parts)
        and not path.startswith("/")
        and "\\" not in path
        and ":" not in path
        and "\0" not in path
        and all(part not in ("..", ".") for part in parts)
    )


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

    from lockenv.cache import Cache, default_cache_dir, remove_tree
    from lockenv.fetch import fetch_artifacts
    from lockenv.lockfile import loads

    try:
        lock_bytes = lock_path.read_bytes()
    except FileNotFoundError:
        raise LockfileError(
            f"no lockfile at {str(lock_path)!r}: run `lockenv lock` first"
        ) from None
    lock = loads(lock_bytes.decode("utf-8"), source=str(lock_path))
    as_tar = out.name.endswith(".tar")
    _check_destination(out, as_tar)
    envs, plats, artifacts = _select(lock, environments, platforms)
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
        os.chmod(work, 0o755)
        (work / LOCK_IN_BUNDLE).write_bytes(lock_bytes)
        entries = []
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
        # Last: a directory with a bundle.json is a complete bundle.
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        (work / MANIFEST_NAME).write_text(text, encoding="utf-8")
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
    )


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
) -> tuple[tuple[str, ...], tuple[str, ...], list[Artifact]]:
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
    chosen: dict[str, Artifact] = {}
    for name in envs:
        for platform in plats:
            if platform not in lock.environment(name).packages and not platforms:
                continue  # by default, only what is locked
            for artifact in lock.packages_for(name, platform):
                chosen.setdefault(artifact.sha256, artifact)
    artifacts = sorted(chosen.values(), key=lambda a: (a.filename, a.sha256))
    for artifact in artifacts:
        if not _is_plain_name(artifact.filename):
            raise UnsafePathError(
                f"the lock's artifact file name {artifact.filename!r} is not a plain file "
                "name; run `lockenv lock` to write the lock again"
            )
    return envs, plats, artifacts


def _artifact_path(artifact: Artifact) -> str:
    sha = artifact.sha256
    return f"artifacts/{sha[:2]}/{sha}/{artifact.filename}"


def _add_file(cache: Cache, artifact: Artifact, source: Path, dest: Path, *, cached: bool) -> None:
    """Copy the cache archive ``source`` to ``dest``, hashing what is written.

    A copy, not a hardlink: a bundle leaves the machine or is shared with other users, so
    it gets files of its own, with this user's umask (cache archives may be private).
    A cached archive found corrupt is removed from the cache, as a sync would.
    """
    from lockenv.cache import copy_hashing
    from lockenv.errors import IntegrityError

    dest.parent.mkdir(parents=True, exist_ok=True)
    digest, size = copy_hashing(source, dest)
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
    import tempfile

    top = out.name[: -len(".tar")] or "bundle"
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with (
            os.fdopen(fd, "wb") as fh,
            tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
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
        os.replace(name, out)
    finally:
        if os.path.exists(name):
            os.unlink(name)


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
