"""A project on disk: its manifest, its lock, its environments — and the operations
that tie the stages together (lock, check, list).  The CLI calls these; they hold the
decisions (what is stale, what to re-lock, where an environment lives).

Kept cheap to import: the heavy stages are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockenv.errors import LockfileError, StaleLockError, UsageError
from lockenv.limits import MAX_LOCK, read_capped
from lockenv.project import LOCK_NAME, STATE_DIR, ProjectPaths, locate

if TYPE_CHECKING:
    from lockenv.build.builder import SourceBuilder
    from lockenv.fastpath import Signed
    from lockenv.lock.manifest import Manifest
    from lockenv.lock.resolve import LockOptions, SourceBuild
    from lockenv.lockfile import Artifact, Lockfile
    from lockenv.reports.diff import SummaryLine

Say = Callable[[str], None]


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# -------------------------------------------------------------- freshness, remembered


def known_fresh(paths: ProjectPaths) -> bool:
    """True when this manifest and lock were already found consistent (by hashes)."""
    try:
        record = json.loads(paths.freshness_record.read_text())
    except (OSError, ValueError):
        return False
    return bool(
        record.get("manifest") == file_sha256(paths.manifest)
        and record.get("lock") == file_sha256(paths.lock)
        and record.get("pip") == _pip_fingerprint()
    )


def _pip_fingerprint() -> list[object]:
    # pip's index is an input when the manifest names none: a change is worth a new look.
    from lockenv.pipconfig import fingerprint

    return fingerprint()


def remember_fresh(paths: ProjectPaths) -> None:
    record = {
        "manifest": file_sha256(paths.manifest),
        "lock": file_sha256(paths.lock),
        "pip": _pip_fingerprint(),
    }
    from lockenv.atomic import write_atomic

    paths.ensure_state_dir()
    write_atomic(paths.freshness_record, json.dumps(record), durable=False)


# -------------------------------------------------------------- lock


def load(paths: ProjectPaths) -> Manifest:
    from lockenv.lock.manifest import load_manifest

    return load_manifest(paths.manifest)


def read_lock(paths: ProjectPaths) -> Lockfile:
    from lockenv.lockfile import read_lockfile

    return read_lockfile(paths.lock)


def check(paths: ProjectPaths, manifest: Manifest | None = None) -> list[str]:
    """Why the lock is stale (empty: fresh).  No network."""
    from lockenv.lock.satisfy import stale_reasons

    if not paths.lock.exists():
        return [f"there is no {LOCK_NAME} yet"]
    if _conflicted(paths.lock):
        return [f"{LOCK_NAME} has git conflict markers"]
    manifest = manifest or load(paths)
    reasons = stale_reasons(manifest, read_lock(paths))
    if not reasons:
        remember_fresh(paths)
    return reasons


def _conflicted(path: Path) -> bool:
    from lockenv.lockfile import has_conflict_markers

    try:
        return has_conflict_markers(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False  # reading it again reports the problem


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class LockOutcome:
    """What `lock` did: the lock, whether it was written, the changes to report."""

    lock: Lockfile
    written: bool
    changes: list[SummaryLine]  # one per package change (uv style)
    first: bool  # there was no usable lock before
    builds: tuple[SourceBuild, ...] = ()  # sdists locked: built at sync on their platform


def lock(
    paths: ProjectPaths,
    options: LockOptions,
    *,
    dry_run: bool = False,
    say: Say | None = None,
    manifest: Manifest | None = None,
) -> LockOutcome:
    """Re-lock with the existing pins as preferences; write unless ``dry_run``."""
    from lockenv.lock.resolve import load_previous, lock_manifest
    from lockenv.lockfile import write_lockfile
    from lockenv.reports.diff import diff_locks, lock_targets

    manifest = manifest or load(paths)
    previous = load_previous(paths.lock, warn=say)
    if previous is not None and options.update:
        from packaging.utils import canonicalize_name

        locked = {canonicalize_name(a.name) for a in previous.artifacts.values()}
        unknown = sorted(set(options.update) - locked)
        if unknown:
            raise UsageError(
                f"--update {', '.join(unknown)}: not in {LOCK_NAME}; check the spelling "
                "(names of locked packages are listed by `lockenv list`)"
            )
    builds: list[SourceBuild] = []
    with lock_builder(manifest, options, say) as builder:
        new = lock_manifest(
            manifest,
            previous=previous,
            options=options,
            progress=say,
            builder=builder,
            on_build=builds.append,
        )
    changes = diff_locks(previous, new).summary(lock_targets(new))
    written = False
    if not dry_run:
        written = write_lockfile(new, paths.lock)
        remember_fresh(paths)
    return LockOutcome(
        lock=new,
        written=written,
        changes=changes,
        first=previous is None,
        builds=tuple(sorted(builds, key=lambda b: (b.environment, b.platform, b.name))),
    )


def build_notes(builds: tuple[SourceBuild, ...]) -> list[str]:
    """One line per sdist a lock chose (its platforms together): what `lock` tells."""
    platforms: dict[tuple[str, str, str], set[str]] = {}
    for build in builds:
        platforms.setdefault((build.name, build.version, build.reason), set()).add(build.platform)
    return [
        f"{name} {version} is built from source when synced on {', '.join(sorted(where))}: {reason}"
        for (name, version, reason), where in sorted(platforms.items())
    ]


def lock_builder(manifest: Manifest, options: LockOptions, say: Say | None) -> SourceBuilder:
    """What asks sdists' build backends for metadata while locking ``manifest``."""
    from lockenv.build.builder import SourceBuilder
    from lockenv.cache import default_cache_dir
    from lockenv.lock.resolve import index_urls_for
    from lockenv.mirrors import site_mirrors

    return SourceBuilder(
        cache_dir=options.cache_dir or default_cache_dir(),
        index_urls=index_urls_for(manifest),
        find_links=manifest.find_links,
        offline=options.offline,
        progress=say,
        mirrors=site_mirrors().then(manifest.mirrors),
        manifest=manifest.path,
    )


def record_requirements(paths: ProjectPaths, manifest: Manifest | None = None) -> bool:
    """Bring the lock's record of what each environment asks for up to date, keeping
    every pin (for a lock that still satisfies the manifest); True if it was rewritten."""
    from dataclasses import replace

    from lockenv.lock.resolve import conda_requirements, pypi_requirements
    from lockenv.lockfile import write_lockfile

    manifest = manifest or load(paths)
    lock = read_lock(paths)
    environments = {}
    for name, env in lock.environments.items():
        spec = manifest.environment(name)
        environments[name] = replace(
            env,
            conda_requirements=conda_requirements(spec),
            pypi_requirements=pypi_requirements(spec),
        )
    written = write_lockfile(replace(lock, environments=environments), paths.lock)
    remember_fresh(paths)
    return written


def ensure_locked(
    paths: ProjectPaths, *, locked: bool, options: Callable[[], LockOptions], say: Say | None
) -> bool:
    """Make sure the lock satisfies the manifest: re-lock, or with ``locked`` fail.

    ``options`` is called only when a re-lock is needed (it imports the resolver).
    Returns True when it locked again.
    """
    if known_fresh(paths):
        return False
    manifest = load(paths)
    reasons = check(paths, manifest)
    if not reasons:
        return False
    if locked:
        raise StaleLockError(
            f"{LOCK_NAME} is out of date with the manifest ({reasons[0]}"
            + (f", and {len(reasons) - 1} more" if len(reasons) > 1 else "")
            + "); run `lockenv lock` and commit the result"
        )
    if say:
        say(f"lock is out of date ({reasons[0]}); locking")
    lock(paths, options(), say=say, manifest=manifest)
    return True


def environments_using(manifest: Manifest, feature: str | None) -> list[str]:
    """The environments that include ``feature`` (None: the default feature)."""
    return [
        env.name
        for env in manifest.environments.values()
        if (feature in env.features if feature is not None else env.include_default)
    ]


def lower_bounds(
    lock: Lockfile, names: Sequence[str], *, kind: str, environments: Sequence[str]
) -> dict[str, str]:
    """The lowest locked version of each of ``names`` over ``environments`` and their
    platforms: what ``add`` writes as ``>=version`` (as uv and pixi do)."""
    from packaging.utils import canonicalize_name

    wanted = {canonicalize_name(n) if kind == "pypi" else n.lower(): n for n in names}
    found: dict[str, list[str]] = {}
    for env in environments:
        locked = lock.environments.get(env)
        for urls in locked.packages.values() if locked else ():
            for url in urls:
                artifact = lock.artifacts[url]
                key = canonicalize_name(artifact.name) if kind == "pypi" else artifact.name
                if artifact.kind == kind and key in wanted:
                    found.setdefault(wanted[key], []).append(artifact.version)
    return {name: min(versions, key=_version_key(kind)) for name, versions in found.items()}


def _version_key(kind: str) -> Callable[[str], Any]:
    if kind == "pypi":
        from packaging.version import Version

        return Version
    from lockenv.lock.conda.version import VersionOrder

    return VersionOrder.parse


# -------------------------------------------------------------- merge


def merge_driver(base: Path, ours: Path, theirs: Path, *, say: Say | None = None) -> bool:
    """git's merge driver for a lock: merge ``base``, ``ours`` and ``theirs`` into ``ours``.

    Pins are merged three ways (`lockenv.lock.merge.merge_locks`); the result is a lock
    that ``lockenv lock`` then checks against the merged manifest.  Returns False when
    ``ours`` or ``theirs`` is not a readable lock: ``ours`` then holds git's own conflict
    markers (which ``lockenv lock`` also resolves).
    """
    from lockenv.lock.merge import merge_locks
    from lockenv.lockfile import write_lockfile

    sides = [_read_version(path, label) for path, label in ((ours, "ours"), (theirs, "theirs"))]
    if sides[0] is None or sides[1] is None:
        _merge_file_with_markers(base, ours, theirs)
        if say:
            say(f"{ours}: not a readable lock on both sides; left git's conflict markers")
        return False
    common = _read_version(base, "base")
    outcome = merge_locks(common, sides[0], sides[1])
    write_lockfile(outcome.lock, ours)
    if say:
        for note in outcome.notes:
            say(f"merge: {note}")
        say(f"merged {LOCK_NAME}; run `lockenv lock` to check it against the merged manifest")
    return True


def _read_version(path: Path, label: str) -> Lockfile | None:
    """One of the versions git hands a merge driver (empty: there is no common ancestor)."""
    from lockenv.lock.merge import read_conflicted
    from lockenv.lockfile import has_conflict_markers, loads

    try:
        text = read_capped(path, MAX_LOCK, "lockfile").decode("utf-8")
        if not text.strip():
            return None
        if has_conflict_markers(text):
            # git's recursive strategy can hand over a virtual ancestor with markers.
            outcome = read_conflicted(text, source=f"{LOCK_NAME} ({label})")
            return outcome.lock if outcome is not None else None
        return loads(text, source=f"{LOCK_NAME} ({label})")
    except (OSError, UnicodeDecodeError, LockfileError):
        return None


def _merge_file_with_markers(base: Path, ours: Path, theirs: Path) -> None:
    import subprocess

    labels = ["-L", "ours", "-L", "base", "-L", "theirs"]
    try:
        subprocess.run(
            ["git", "merge-file", *labels, str(ours), str(base), str(theirs)],
            check=False,
            capture_output=True,
        )
    except OSError:  # no git: the whole file as one conflict
        text = ours.read_text(encoding="utf-8", errors="replace")
        other = theirs.read_text(encoding="utf-8", errors="replace")
        from lockenv.atomic import write_atomic

        write_atomic(ours, f"<<<<<<< ours\n{text}=======\n{other}>>>>>>> theirs\n")


# -------------------------------------------------------------- list


def locked_packages(lock: Lockfile, env: str, platform: str) -> list[dict[str, Any]]:
    """The rows of ``lockenv list``: one per locked artifact."""
    rows = []
    for artifact in lock.packages_for(env, platform):
        rows.append(_row(artifact))
    return sorted(rows, key=lambda r: (r["name"], r["kind"]))


def _row(artifact: Artifact) -> dict[str, Any]:
    from lockenv.lockfile import PypiSource
    from lockenv.urls import redact_url

    row: dict[str, Any] = {
        "name": artifact.name,
        "version": artifact.version,
        "kind": artifact.kind,
        "filename": artifact.filename,
    }
    if isinstance(artifact, PypiSource):
        # A source tree: no archive, so no URL, sha256 or size.
        source = {"path": artifact.path, "editable": artifact.editable or None}
        source |= {"git": artifact.git, "commit": artifact.commit}
        row.update({k: v for k, v in source.items() if v is not None})
        return row
    row.update({"url": redact_url(artifact.url), "sha256": artifact.sha256, "size": artifact.size})
    if artifact.kind == "conda":
        row["build"] = getattr(artifact, "build", None)
    return row


def require_env(lock: Lockfile, env: str) -> None:
    if env not in lock.environments:
        known = ", ".join(sorted(lock.environments)) or "none"
        raise LockfileError(f"the lock has no environment {env!r} (it has: {known})")


# -------------------------------------------------------------- sync


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class SyncTarget:
    """Which lock to materialize, which environment of it, and where."""

    lock_path: Path
    env: str
    prefix: Path
    paths: ProjectPaths | None  # None: a lock given alone (--lock FILE), no manifest


def sync_target(
    *, manifest: Path | None, lock_file: Path | None, env: str, prefix: Path | None
) -> SyncTarget:
    """Resolve ``sync``'s options into a target, reading nothing but file names."""
    if lock_file is not None:
        if prefix is None:
            raise UsageError("--lock FILE needs --prefix DIR: where to build the environment")
        return SyncTarget(
            lock_path=Path(os.path.abspath(lock_file)),
            env=env,
            prefix=Path(os.path.abspath(prefix)),
            paths=None,
        )
    paths = locate(manifest)
    return SyncTarget(
        lock_path=paths.lock,
        env=env,
        prefix=Path(os.path.abspath(prefix or paths.env_prefix(env))),
        paths=paths,
    )


def sync(
    target: SyncTarget,
    *,
    locked: bool,
    frozen: bool,
    lock_options: Callable[[], LockOptions] | None,
    sync_options: Any,
    say: Say | None = None,
) -> Any:
    """Bring ``target.prefix`` in line with the lock (re-locking first unless told not to).

    Returns the materializer's SyncReport, or None when the environment already matched
    (decided from file hashes alone, without parsing the lock).
    """
    from lockenv.fastpath import signed
    from lockenv.lockfile import read_lock_bytes
    from lockenv.sync.materialize import is_up_to_date, stamp_environment, stamp_inputs, tidy

    # Signed before they are read: what the stamp vouches for is what was checked.
    checks_manifest = target.paths is not None and not frozen
    manifest = signed(str(target.paths.manifest)) if target.paths and checks_manifest else None
    lock_file = signed(str(target.lock_path))
    inputs = stamp_inputs(target.prefix)
    if target.paths is not None and not frozen:
        assert lock_options is not None
        if ensure_locked(target.paths, locked=locked, options=lock_options, say=say):
            lock_file = None  # just re-locked: the next run leaves the stamp
    if target.paths is not None and target.prefix.is_relative_to(target.paths.root / STATE_DIR):
        target.paths.ensure_state_dir()
        # The sync makes it anyway; made now, the very first parse is remembered beside it.
        target.prefix.parent.mkdir(parents=True, exist_ok=True)
    lock_bytes = read_lock_bytes(target.lock_path)
    lock_sha256 = hashlib.sha256(lock_bytes).hexdigest()
    report = None
    if is_up_to_date(target.prefix, lock_sha256, target.env):
        tidy(target.prefix, getattr(sync_options, "cache_dir", None))
    else:
        from dataclasses import replace

        from lockenv.lockfile import loads_remembered
        from lockenv.sync.materialize import parsed_lock_memo

        lock = loads_remembered(
            lock_bytes, parsed_lock_memo(target.prefix), source=str(target.lock_path)
        )
        require_env(lock, target.env)
        # Path dependencies are relative to the lock's directory.
        sync_options = replace(sync_options, project_root=target.lock_path.parent)
        report = _sync_environment(lock, lock_sha256, target, sync_options, say)
    if lock_file is not None and (manifest is not None or not checks_manifest):
        watched, variables = _pip_stamp_inputs() if checks_manifest else ([], [])
        stamp_environment(
            target.prefix,
            lock=lock_file,
            manifest=manifest,
            inputs=inputs,
            watched=watched,
            variables=variables,
        )
    return report


def _sync_environment(
    lock: Lockfile, lock_sha256: str, target: SyncTarget, sync_options: Any, say: Say | None
) -> Any:
    """`lockenv.sync.materialize.sync_environment`, with a builder when the environment
    has something to build here and none was given."""
    from dataclasses import replace

    from lockenv.sync.materialize import sync_environment

    if sync_options.builder is not None or sync_options.no_build or not _has_sources(lock, target):
        return sync_environment(
            lock, lock_sha256, target.env, target.prefix, sync_options, progress=say
        )
    with sync_builder(lock, sync_options, say) as builder:
        return sync_environment(
            lock,
            lock_sha256,
            target.env,
            target.prefix,
            replace(sync_options, builder=builder),
            progress=say,
        )


def _has_sources(lock: Lockfile, target: SyncTarget) -> bool:
    """Whether the environment pins sdists or source trees here (something to build)."""
    from lockenv.lockfile import CondaArtifact, PypiArtifact
    from lockenv.platforms import current_platform

    env = lock.environments[target.env]
    keys = env.packages.get(current_platform(), ())
    return any(
        not isinstance(a, CondaArtifact) and not (isinstance(a, PypiArtifact) and a.is_wheel)
        for a in map(lock.artifacts.__getitem__, keys)
    )


def sync_builder(lock: Lockfile, sync_options: Any, say: Say | None) -> SourceBuilder:
    """What builds a lock's sdists at sync: build environments come from the lock's
    indexes (its build requirements are resolved then, not locked)."""
    from lockenv.build.builder import SourceBuilder
    from lockenv.cache import default_cache_dir
    from lockenv.mirrors import load_mirrors

    return SourceBuilder(
        cache_dir=sync_options.cache_dir or default_cache_dir(),
        index_urls=lock.inputs.indexes,
        find_links=lock.inputs.find_links,
        offline=sync_options.offline,
        progress=say,
        mirrors=load_mirrors(sync_options.manifest),
        manifest=sync_options.manifest,
        bundle=sync_options.bundle,
    )


def _pip_stamp_inputs() -> tuple[list[Signed], list[tuple[str, str]]]:
    """pip's configuration as `_pip_fingerprint` sees it, for the no-op stamp: a lock is
    fresh for pip's index only while these stay as they are."""
    from lockenv.fastpath import signed_input
    from lockenv.pipconfig import config_files

    files = [signed_input(str(path)) for path in config_files()]
    variables = [(name, os.environ.get(name, "")) for name in ("PIP_INDEX_URL", "PIP_CONFIG_FILE")]
    return files, variables
