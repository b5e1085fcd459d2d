"""Resolve a manifest into a Lockfile: one resolvelib run per environment and platform.

Every platform is resolved from this machine: the target's marker values and wheel tags
come from ``lockenv.platforms``, never from an interpreter.  The index client and the
metadata fetcher are shared by all runs, so a project page or a wheel's metadata is
fetched once however many platforms need it, and the runs go on side by side in threads
while the network is the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from lockenv.errors import LockenvError, ResolutionError
from lockenv.lockfile import (
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
    sequence_of_urls,
)
from lockenv.platforms import get_platform, marker_environment, python_target, wheel_tags
from lockenv.pypi.provider import (
    PYTHON,
    Candidate,
    PypiProvider,
    PypiTarget,
    Req,
    requirement_to_reqs,
)

if TYPE_CHECKING:
    from lockenv.http import HttpClient
    from lockenv.manifest import EnvironmentSpec, Manifest
    from lockenv.pypi.index import DistFile, PackageIndex
    from lockenv.pypi.metadata import MetadataFetcher

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LockOptions:
    """How to lock: what may move, and how to reach the index."""

    update: frozenset[NormalizedName] = frozenset()  # names free to move
    update_all: bool = False  # ignore every previous pin
    refresh: bool = False  # bypass cached index pages
    offline: bool = False
    cache_dir: Path | None = None
    jobs: int = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    env: EnvironmentSpec
    platform: str
    python: Version


def manifest_inputs(manifest: Manifest, index_urls: Sequence[str]) -> LockInputs:
    """The inputs a lock of ``manifest`` records (credentials removed)."""
    from lockenv.http import redact_url

    system = manifest.default_feature.system_requirements
    system_map = {
        key: value
        for key, value in (
            ("glibc", system.glibc),
            ("macos", system.macos),
            ("cuda", system.cuda),
            ("archspec", system.archspec),
        )
        if value is not None
    }
    return LockInputs(
        platforms=tuple(sorted(manifest.platforms)),
        channels=tuple(redact_url(c) for c in manifest.channels),
        indexes=tuple(redact_url(u) for u in index_urls),
        find_links=tuple(redact_url(u) for u in manifest.find_links),
        requires_python=str(manifest.requires_python) if manifest.requires_python else None,
        system_requirements=system_map,
        exclude_newer=format_time(manifest.exclude_newer) if manifest.exclude_newer else None,
    )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, the form the lock stores."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def index_urls_for(manifest: Manifest) -> tuple[str, ...]:
    if manifest.indexes:
        return tuple(manifest.indexes)
    from lockenv.pipconfig import default_index_url

    return (default_index_url(),)


def lock_manifest(
    manifest: Manifest,
    *,
    previous: Lockfile | None,
    options: LockOptions,
    progress: Progress | None = None,
) -> Lockfile:
    """Resolve every environment of ``manifest`` for every platform into a new Lockfile.

    Pins of ``previous`` are preferences: a package keeps its locked version unless the
    manifest no longer allows it or ``options`` frees it.
    """
    from lockenv.cache import default_cache_dir
    from lockenv.http import HttpClient
    from lockenv.pypi.index import PackageIndex
    from lockenv.pypi.metadata import MetadataFetcher

    index_urls = index_urls_for(manifest)
    cache_dir = options.cache_dir or default_cache_dir()
    jobs: list[_Job] = []
    for env_name in manifest.environment_names():
        spec = manifest.environment(env_name)
        if spec.dependencies:
            names = ", ".join(d.name for d in spec.dependencies)
            raise ResolutionError(
                f"environment {env_name!r} has conda dependencies ({names}): conda channels "
                "are not supported by this lockenv yet; move them to [pypi-dependencies]"
            )
        python = python_target(spec.requires_python)
        jobs.extend(_Job(env=spec, platform=p, python=python) for p in spec.platforms)

    with (
        HttpClient(cache_dir, offline=options.offline, refresh=options.refresh) as http,
        PackageIndex(
            http, index_urls, manifest.find_links, exclude_newer=manifest.exclude_newer
        ) as index,
        MetadataFetcher(http, cache_dir) as metadata,
    ):
        # Every direct requirement's page is needed by every run: ask for all at once.
        index.prefetch(
            {canonicalize_name(d.name) for job in jobs for d in job.env.pypi_dependencies}
        )
        resolver = _Resolver(
            index=index,
            metadata=metadata,
            http=http,
            previous=previous,
            options=options,
            progress=progress,
        )
        with ThreadPoolExecutor(max_workers=max(1, min(options.jobs, len(jobs)))) as pool:
            results = list(pool.map(resolver.resolve_job, jobs))

    artifacts: dict[str, PypiArtifact] = {}
    environments: dict[str, dict[str, tuple[str, ...]]] = {}
    for job, pinned in zip(jobs, results, strict=True):
        for artifact in pinned:
            artifacts.setdefault(artifact.url, artifact)
        environments.setdefault(job.env.name, {})[job.platform] = sequence_of_urls(pinned)

    locked_envs: dict[str, LockedEnvironment] = {}
    for env_name, platforms in environments.items():
        spec = manifest.environment(env_name)
        locked_envs[env_name] = LockedEnvironment(
            name=env_name,
            python=str(python_target(spec.requires_python)),
            pypi_requirements=tuple(sorted(str(d.requirement) for d in spec.pypi_dependencies)),
            packages=platforms,
        )
    return Lockfile(
        inputs=manifest_inputs(manifest, index_urls),
        environments=locked_envs,
        artifacts=dict(artifacts),
    )


class _Resolver:
    """Runs one resolvelib resolution per job; shared state is thread-safe."""

    def __init__(
        self,
        *,
        index: PackageIndex,
        metadata: MetadataFetcher,
        http: HttpClient,
        previous: Lockfile | None,
        options: LockOptions,
        progress: Progress | None,
    ) -> None:
        self.index = index
        self.metadata = metadata
        self.http = http
        self.previous = previous
        self.options = options
        self.progress = progress

    def preferences(self, env: str, platform: str) -> dict[NormalizedName, Version]:
        if self.previous is None or self.options.update_all:
            return {}
        locked = self.previous.environments.get(env)
        if locked is None or platform not in locked.packages:
            return {}
        prefs: dict[NormalizedName, Version] = {}
        for url in locked.packages[platform]:
            artifact = self.previous.artifacts[url]
            name = canonicalize_name(artifact.name)
            if artifact.kind == "pypi" and name not in self.options.update:
                try:
                    prefs[name] = Version(artifact.version)
                except ValueError:
                    continue
        return prefs

    def resolve_job(self, job: _Job) -> list[PypiArtifact]:
        from resolvelib import BaseReporter, Resolver
        from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

        target_platform = get_platform(job.platform)
        system = job.env.system_requirements
        tags = wheel_tags(target_platform, job.python, glibc=system.glibc, macos=system.macos)
        target = PypiTarget(
            platform=job.platform,
            python=job.python,
            markers=marker_environment(target_platform, job.python),
            tag_rank={tag: rank for rank, tag in reversed(list(enumerate(tags)))},
        )
        direct = [d.requirement for d in job.env.pypi_dependencies]
        applicable = [r for r in direct if target.evaluate(r)]
        provider = PypiProvider(
            index=self.index,
            metadata=self.metadata,
            target=target,
            direct=applicable,
            preferences=self.preferences(job.env.name, job.platform),
        )
        requirements: list[Req] = []
        for requirement in applicable:
            requirements.extend(requirement_to_reqs(requirement, None))
        if self.progress:
            self.progress(f"resolving {job.env.name} for {job.platform} (Python {job.python})")
        resolver: Resolver[Req, Candidate, str] = Resolver(provider, BaseReporter())
        try:
            result = resolver.resolve(requirements, max_rounds=20_000)
        except ResolutionImpossible as exc:
            raise ResolutionError(
                f"cannot lock environment {job.env.name!r} for {job.platform} "
                f"(Python {job.python}): {explain_conflict(exc.causes, provider, self.index)}"
            ) from None
        except ResolutionTooDeep:
            raise ResolutionError(
                f"cannot lock environment {job.env.name!r} for {job.platform}: the resolver "
                "gave up after too many backtracking rounds; pin some packages more tightly"
            ) from None
        files = [
            candidate.file
            for identifier, candidate in result.mapping.items()
            if identifier != PYTHON and candidate.extra is None and candidate.file is not None
        ]
        return [self.artifact(file) for file in sorted(files, key=lambda f: f.name)]

    def artifact(self, file: DistFile) -> PypiArtifact:
        from lockenv.http import redact_url
        from lockenv.pypi.metadata import fetch_artifact_info

        sha256, size = file.sha256, file.size
        if sha256 is None or size is None:
            sha256, size = fetch_artifact_info(self.http, file)
        meta = self.metadata.get(file)
        requires_python = (
            str(meta.requires_python) if meta.requires_python is not None else file.requires_python
        )
        return PypiArtifact(
            name=file.name,
            version=str(file.version),
            filename=file.filename,
            url=redact_url(file.url),
            sha256=sha256,
            size=size,
            requires_dist=tuple(str(r) for r in meta.requires_dist),
            requires_python=requires_python or None,
            upload_time=format_time(file.upload_time) if file.upload_time else None,
            index=file.index_url,
        )


def explain_conflict(causes: Sequence[Any], provider: PypiProvider, index: PackageIndex) -> str:
    """One line naming every requirement in the conflict and who asked for it."""
    by_name: dict[str, list[str]] = {}
    for cause in causes:
        req: Req = cause.requirement
        parent: Candidate | None = cause.parent
        who = f"{parent.name} {parent.version} requires" if parent else "the manifest asks for"
        what = f"Python {req.specifier}" if req.identifier == PYTHON else repr(str(req))
        by_name.setdefault(req.name, []).append(f"{who} {what}")
    parts: list[str] = []
    for name, asks in by_name.items():
        if name == PYTHON:
            parts.append(f"{'; '.join(asks)}, but the target is Python {provider.target.python}")
            continue
        reason = _why_no_candidate(NormalizedName(name), provider, index)
        parts.append(f"{'; '.join(asks)}" + (f" ({reason})" if reason else ""))
    if len(by_name) == 1 and len(causes) == 1:
        return parts[0]
    return "these requirements conflict: " + "; ".join(parts)


def _why_no_candidate(name: NormalizedName, provider: PypiProvider, index: PackageIndex) -> str:
    evaluation = provider.evaluations.get(name)
    if evaluation is None:
        return ""
    if not evaluation.versions_seen:
        where = ", ".join(index.index_urls) if hasattr(index, "index_urls") else "the index"
        return f"no package named {name!r} on {where}; check the spelling"
    available = sorted(set(evaluation.versions_seen))
    usable = sorted(provider._files_by_version.get(name, {}))
    if not usable:
        return (
            f"{name} has files for versions {_summarize(available)} but none installs on "
            f"{provider.target.platform} with Python {provider.target.python}"
        )
    return f"available versions: {_summarize(usable)}"


def _summarize(versions: Sequence[Version], limit: int = 6) -> str:
    shown = [str(v) for v in versions[-limit:]]
    return ("…, " if len(versions) > limit else "") + ", ".join(shown)


def load_previous(path: Path, warn: Progress | None = None) -> Lockfile | None:
    """The existing lock as preferences; a broken one is ignored with a warning."""
    from lockenv.lockfile import read_lockfile

    if not path.exists():
        return None
    try:
        return read_lockfile(path)
    except LockenvError as exc:
        if warn:
            warn(f"warning: ignoring the existing lock's pins: {exc}")
        return None
