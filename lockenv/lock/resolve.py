"""Resolve a manifest into a Lockfile: one resolvelib run per environment and platform.

Every platform is resolved from this machine: the target's marker values and wheel tags
come from ``lockenv.platforms``, never from an interpreter.  The index client and the
metadata fetcher are shared by all runs, so a project page or a wheel's metadata is
fetched once however many platforms need it, and the runs go on side by side in threads
while the network is the bottleneck.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from lockenv.errors import LockenvError, LockfileError, ResolutionError
from lockenv.lock.base_env import BaseReader
from lockenv.lock.conflicts import who_asked
from lockenv.lock.pypi.provider import (
    PYTHON,
    Candidate,
    PypiProvider,
    PypiTarget,
    Req,
    requirement_to_reqs,
)
from lockenv.lockfile import (
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
    PypiSource,
    sequence_of_urls,
)
from lockenv.platforms import (
    get_platform,
    marker_environment,
    python_target,
    virtual_packages,
    wheel_tags,
)

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from lockenv.base_environment import BaseEnvironment
    from lockenv.http import HttpClient
    from lockenv.lock.conda.matchspec import MatchSpec
    from lockenv.lock.conda.repodata import ChannelClient, RepoRecord
    from lockenv.lock.manifest import CondaDependency, EnvironmentSpec, Manifest, PypiOptions
    from lockenv.lock.manifest import PypiSource as ManifestSource
    from lockenv.lock.pypi.index import DistFile, PackageIndex
    from lockenv.lock.pypi.metadata import MetadataBuilder, MetadataFetcher
    from lockenv.lock.pypi.sources import PreparedSource

Progress = Callable[[str], None]
_log = logging.getLogger("lockenv.resolve")  # -v: decisions; -vv: every step


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
    """One environment to lock for one platform."""

    env: EnvironmentSpec
    platform: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pins:
    """What one job locked: conda records first, then PyPI files on top of them."""

    artifacts: list[Artifact]
    python: Version | None  # the Python a PyPI-only environment was resolved for
    base: BaseEnvironment | None = None  # the base environment it was resolved on
    builds: list[SourceBuild] = field(default_factory=list)  # the sdists locked, and why


def manifest_inputs(manifest: Manifest, index_urls: Sequence[str]) -> LockInputs:
    """The inputs a lock of ``manifest`` records (credentials removed)."""
    from lockenv.lock.exclude_newer import format_span
    from lockenv.urls import redact_url

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
        exclude_newer_span=(
            format_span(manifest.exclude_newer_span) if manifest.exclude_newer_span else None
        ),
        pypi_options={
            key: value if isinstance(value, bool) else tuple(value)
            for key, value in manifest.pypi_options.as_inputs().items()
        },
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
    builder: MetadataBuilder | None = None,
    on_build: Callable[[SourceBuild], None] | None = None,
) -> Lockfile:
    """Resolve every environment of ``manifest`` for every platform into a new Lockfile.

    Pins of ``previous`` are preferences: a package keeps its locked version unless the
    manifest no longer allows it or ``options`` frees it.  ``builder`` learns the
    metadata of sdists that only a build can tell (none: such an sdist is an error);
    ``on_build`` hears of every sdist locked, per environment and platform, and why.
    """
    from lockenv.cache import default_cache_dir
    from lockenv.http import HttpClient
    from lockenv.lock.pypi.index import PackageIndex
    from lockenv.lock.pypi.metadata import MetadataFetcher
    from lockenv.mirrors import site_mirrors

    index_urls = index_urls_for(manifest)
    cache_dir = options.cache_dir or default_cache_dir()
    mirrors = site_mirrors().then(manifest.mirrors)
    jobs = [
        _Job(env=spec, platform=platform)
        for spec in map(manifest.environment, manifest.environment_names())
        for platform in spec.platforms
    ]
    with (
        HttpClient(
            cache_dir, offline=options.offline, refresh=options.refresh, mirrors=mirrors
        ) as http,
        PackageIndex(
            http, index_urls, manifest.find_links, exclude_newer=manifest.exclude_newer
        ) as index,
        MetadataFetcher(http, cache_dir, builder=builder) as metadata,
    ):
        # Every direct requirement's page is needed by every run: ask for all at once.
        index.prefetch(
            {
                canonicalize_name(d.name)
                for job in jobs
                for d in job.env.pypi_dependencies
                if d.source is None
            }
        )
        from lockenv.lock.pypi.sources import prepare_sources

        # Path, git and URL dependencies: prepared once, whatever platforms need them.
        sources = prepare_sources(
            [d for job in jobs for d in job.env.pypi_dependencies],
            root=manifest.root,
            http=http,
            fetcher=metadata,
            builder=builder,
            cache_dir=cache_dir,
            previous=previous,
            update=options.update,
            update_all=options.update_all,
        )
        resolver = _Resolver(
            index=index,
            metadata=metadata,
            http=http,
            previous=previous,
            options=options,
            progress=progress,
            root=manifest.root,
            exclude_newer=manifest.exclude_newer,
            pypi_name_of=manifest.pypi_name_of,
            pypi_options=manifest.pypi_options,
            sources=sources,
        )
        with ThreadPoolExecutor(max_workers=max(1, min(options.jobs, len(jobs)))) as pool:
            results = list(pool.map(resolver.resolve_job, jobs))

    artifacts: dict[str, Artifact] = {}
    environments: dict[str, dict[str, tuple[str, ...]]] = {}
    pythons: dict[str, Version | None] = {}
    bases: dict[str, BaseEnvironment | None] = {}
    for job, pins in zip(jobs, results, strict=True):
        if on_build is not None:
            for build in pins.builds:
                on_build(build)
        for artifact in pins.artifacts:
            artifacts.setdefault(artifact.key, artifact)
        environments.setdefault(job.env.name, {})[job.platform] = sequence_of_urls(pins.artifacts)
        pythons[job.env.name] = pins.python
        bases[job.env.name] = pins.base

    locked_envs: dict[str, LockedEnvironment] = {}
    for env_name, platforms in environments.items():
        spec = manifest.environment(env_name)
        python = pythons[env_name]
        locked_envs[env_name] = LockedEnvironment(
            name=env_name,
            python=str(python) if python is not None else None,
            conda_requirements=conda_requirements(spec),
            pypi_requirements=pypi_requirements(spec),
            packages=platforms,
            base=bases[env_name],
        )
    return Lockfile(
        inputs=manifest_inputs(manifest, index_urls),
        environments=locked_envs,
        artifacts=dict(artifacts),
    )


def conda_requirements(spec: EnvironmentSpec) -> tuple[str, ...]:
    """What an environment asks of conda, as the lock records it."""
    return tuple(sorted(str(conda_spec(d)) for d in spec.dependencies))


def pypi_requirements(spec: EnvironmentSpec) -> tuple[str, ...]:
    """What an environment asks of PyPI, as the lock records it."""
    return tuple(sorted(str(d.requirement) for d in spec.pypi_dependencies))


def conda_spec(dependency: CondaDependency) -> MatchSpec:
    """The MatchSpec a manifest ``[dependencies]`` entry stands for."""
    from lockenv.lock.conda.matchspec import parse_manifest_spec

    return parse_manifest_spec(dependency.name, dependency.spec, channel=dependency.channel)


class _Resolver:
    """Runs the resolutions of one job (conda, then PyPI); shared state is thread-safe."""

    def __init__(
        self,
        *,
        index: PackageIndex,
        metadata: MetadataFetcher,
        http: HttpClient,
        previous: Lockfile | None,
        options: LockOptions,
        progress: Progress | None,
        root: Path,
        exclude_newer: datetime | None,
        pypi_name_of: Callable[[str], NormalizedName],
        pypi_options: PypiOptions,
        sources: Mapping[tuple[NormalizedName, ManifestSource], PreparedSource],
    ) -> None:
        self.index = index
        self.metadata = metadata
        self.http = http
        self.previous = previous
        self.options = options
        self.progress = progress
        self.root = root
        self.exclude_newer = exclude_newer
        self.pypi_name_of = pypi_name_of
        self.pypi_options = pypi_options
        self.sources = sources
        self._channel_client: ChannelClient | None = None
        self._client_lock = threading.Lock()
        self._bases = BaseReader()

    def _locked(self, env: str, platform: str, kind: str) -> list[Artifact]:
        if self.previous is None or self.options.update_all:
            return []
        locked = self.previous.environments.get(env)
        if locked is None or platform not in locked.packages:
            return []
        return [
            a
            for a in (self.previous.artifacts[url] for url in locked.packages[platform])
            if a.kind == kind and canonicalize_name(a.name) not in self.options.update
        ]

    def pypi_preferences(self, env: str, platform: str) -> dict[NormalizedName, Version]:
        prefs: dict[NormalizedName, Version] = {}
        for artifact in self._locked(env, platform, "pypi"):
            try:
                prefs[canonicalize_name(artifact.name)] = Version(artifact.version)
            except ValueError:
                continue
        return prefs

    def resolve_job(self, job: _Job) -> _Pins:
        if job.env.base_environment is not None:
            return self.resolve_on_base(job, job.env.base_environment)
        conda: list[CondaArtifact] = []
        provided: dict[NormalizedName, Version] = {}
        if job.env.dependencies:
            conda = self.resolve_conda(job)
            python_record = next((a for a in conda if a.name == "python"), None)
            if python_record is None:
                if job.env.pypi_dependencies:
                    raise ResolutionError(
                        f"environment {job.env.name!r} mixes conda and PyPI packages but "
                        "locks no conda `python` to install the PyPI packages into: add "
                        "python to [dependencies]"
                    )
                return _Pins(artifacts=list(conda), python=None, builds=[])
            python = Version(python_record.version)
            # A PyPI package whose name a conda package has is not installed again: the
            # conda one satisfies it (conda wins, as in pixi).
            for artifact in conda:
                try:
                    provided[self.pypi_name_of(artifact.name)] = Version(artifact.version)
                except ValueError:
                    continue
        else:
            python = python_target(job.env.requires_python)
        pypi: list[PypiArtifact | PypiSource] = []
        builds: list[SourceBuild] = []
        if job.env.pypi_dependencies:
            pypi, builds = self.resolve_pypi(job, python, provided)
        return _Pins(
            artifacts=[*conda, *pypi],
            python=None if job.env.dependencies else python,
            builds=builds,
        )

    def resolve_on_base(self, job: _Job, path: Path) -> _Pins:
        """PyPI packages on top of a base environment (`lockenv.lock.base_env`)."""
        from lockenv.lock.base_env import base_problems, provided_by_base, raise_if

        base = self._bases.read(path)
        raise_if(base_problems(job.env, job.platform, base), job.env.name)
        python = Version(base.python)
        pypi: list[PypiArtifact | PypiSource] = []
        builds: list[SourceBuild] = []
        if job.env.pypi_dependencies:
            pypi, builds = self.resolve_pypi(
                job, python, provided_by_base(base), provided_by="the base environment"
            )
        return _Pins(artifacts=list(pypi), python=Version(base.python_xy), base=base, builds=builds)

    # -- conda -----------------------------------------------------------------------

    def channel_client(self) -> ChannelClient:
        from lockenv.lock.conda.repodata import ChannelClient

        with self._client_lock:
            if self._channel_client is None:
                self._channel_client = ChannelClient(self.http)
            return self._channel_client

    def resolve_conda(self, job: _Job) -> list[CondaArtifact]:
        from lockenv.lock.conda.repodata import Channel
        from lockenv.lock.conda.solver import CondaSolver, Unsatisfiable

        if not job.env.channels:
            raise ResolutionError(
                f"environment {job.env.name!r} has conda dependencies but no channels: add "
                "[project] channels = [...]"
            )
        channels = [Channel.parse(c, root=self.root) for c in job.env.channels]
        records = self.channel_client().records_by_name(channels, [job.platform])
        direct = [conda_spec(d) for d in job.env.dependencies]
        # Sharded channels: fetch every shard the request can reach, concurrently.
        records.prefetch(spec.name for spec in direct)
        system = job.env.system_requirements
        solver = CondaSolver(
            records=records,
            virtual_packages=virtual_packages(
                get_platform(job.platform),
                glibc=system.glibc,
                macos=system.macos,
                cuda=system.cuda,
                archspec=system.archspec,
            ),
            direct=direct,
            preferences={
                a.name: a.filename for a in self._locked(job.env.name, job.platform, "conda")
            },
            exclude_newer_ms=(
                int(self.exclude_newer.timestamp() * 1000) if self.exclude_newer else None
            ),
            platform=job.platform,
        )
        if self.progress:
            self.progress(f"solving conda packages of {job.env.name} for {job.platform}")
        where = f"{job.env.name}/{job.platform} conda"
        try:
            solution = solver.solve()
        except Unsatisfiable as exc:
            raise ResolutionError(
                f"cannot lock environment {job.env.name!r} for {job.platform}: {exc.explanation}"
            ) from None
        _log_decisions(
            where,
            {r.name: f"{r.version} {r.build}" for r in solution},
            {
                a.name: f"{a.version} {a.build}"
                for a in self._locked(job.env.name, job.platform, "conda")
                if isinstance(a, CondaArtifact)
            },
        )
        return [self.conda_artifact(record) for record in solution]

    def conda_artifact(self, record: RepoRecord) -> CondaArtifact:
        from lockenv.lock.pypi.metadata import artifact_info
        from lockenv.urls import redact_url

        sha256, size = record.sha256, record.size
        if sha256 is None or size is None:
            sha256, size = artifact_info(self.http, record.url, sha256=sha256, size=size)
        return CondaArtifact(
            name=record.name,
            version=record.version,
            build=record.build,
            build_number=record.build_number,
            subdir=record.subdir,
            filename=record.filename,
            url=redact_url(self.http.origin_of(record.url)),
            sha256=sha256,
            size=size,
            md5=record.md5,
            depends=record.depends,
            constrains=record.constrains,
            timestamp=record.timestamp,
            channel=record.channel,
            noarch=record.noarch,
            license=record.license,
            track_features=record.track_features,
        )

    # -- PyPI ------------------------------------------------------------------------

    def resolve_pypi(
        self,
        job: _Job,
        python: Version,
        provided: Mapping[NormalizedName, Version],
        *,
        provided_by: str = "conda",
    ) -> tuple[list[PypiArtifact | PypiSource], list[SourceBuild]]:
        from lockenv.lock.pypi.sources import sources_of

        if self.progress:
            self.progress(f"resolving {job.env.name} for {job.platform} (Python {python})")
        system = job.env.system_requirements
        artifacts, builds = resolve_pypi(
            [d.requirement for d in job.env.pypi_dependencies],
            index=self.index,
            metadata=self.metadata,
            http=self.http,
            platform=job.platform,
            python=python,
            glibc=system.glibc,
            macos=system.macos,
            options=self.pypi_options,
            preferences=self.pypi_preferences(job.env.name, job.platform),
            provided=provided,
            provided_by=provided_by,
            what=f"environment {job.env.name!r}",
            sources=sources_of(self.sources, job.env.pypi_dependencies),
            log_as=f"{job.env.name}/{job.platform} pypi",
        )
        return artifacts, [
            SourceBuild(
                environment=job.env.name,
                platform=job.platform,
                name=name,
                version=version,
                reason=reason,
            )
            for name, version, reason in builds
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceBuild:
    """An sdist a lock chose: it is built from source when the environment is synced
    on that platform (package code runs then, in an isolated build environment)."""

    environment: str
    platform: str
    name: str
    version: str
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.name} {self.version} will be built from source on {self.platform} "
            f"({self.environment}): {self.reason}"
        )


def resolve_pypi(
    direct: Sequence[Requirement],
    *,
    index: PackageIndex,
    metadata: MetadataFetcher,
    http: HttpClient,
    platform: str,
    python: Version,
    glibc: str | None,
    macos: str | None,
    options: PypiOptions,
    preferences: Mapping[NormalizedName, Version] | None = None,
    provided: Mapping[NormalizedName, Version] | None = None,
    provided_by: str = "conda",
    what: str,
    sources: Mapping[NormalizedName, PreparedSource] | None = None,
    log_as: str = "",
) -> tuple[list[PypiArtifact | PypiSource], list[tuple[str, str, str]]]:
    """Pin ``direct`` (and what it needs) for CPython ``python`` on ``platform``.

    ``sources`` are the path, git and URL dependencies among them, prepared.  ``log_as``
    names the resolution in the log (``-v``, ``-vv``; default: ``what``).

    Returns the artifacts, sorted by name, and ``(name, version, why)`` for each sdist
    among them.  ``what`` names the requirements in errors ("environment 'default'").
    ResolutionError (exit 2) when no set of versions satisfies them.
    """
    from resolvelib import Resolver
    from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

    target_platform = get_platform(platform)
    tags = wheel_tags(target_platform, python, glibc=glibc, macos=macos)
    target = PypiTarget(
        platform=platform,
        python=python,
        markers=marker_environment(target_platform, python),
        tag_rank={tag: rank for rank, tag in reversed(list(enumerate(tags)))},
    )
    applicable = [r for r in direct if target.evaluate(r)]
    provider = PypiProvider(
        index=index,
        metadata=metadata,
        target=target,
        direct=applicable,
        preferences=preferences,
        provided=provided,
        options=options,
        sources=sources,
    )
    requirements: list[Req] = []
    for requirement in applicable:
        requirements.extend(requirement_to_reqs(requirement, None))
    where = log_as or f"{what} {platform} pypi"
    resolver: Resolver[Req, Candidate, str] = Resolver(provider, _reporter(where))
    try:
        result = resolver.resolve(requirements, max_rounds=20_000)
    except ResolutionImpossible as exc:
        raise ResolutionError(
            f"cannot lock {what} for {platform} (Python {python}): "
            f"{explain_conflict(exc.causes, provider, index, provided_by=provided_by)}"
        ) from None
    except ResolutionTooDeep:
        raise ResolutionError(
            f"cannot lock {what} for {platform}: the resolver gave up after too many "
            "backtracking rounds; pin some packages more tightly"
        ) from None
    files = sorted(
        (
            candidate.file
            for identifier, candidate in result.mapping.items()
            if identifier != PYTHON and candidate.extra is None and candidate.file is not None
        ),
        key=lambda f: f.name,
    )
    _log_decisions(
        where,
        {f.name: str(f.version) for f in files},
        {str(n): str(v) for n, v in (preferences or {}).items()},
    )
    artifacts: list[PypiArtifact | PypiSource] = [
        _pypi_artifact(file, provider, http) for file in files
    ]
    artifacts += sorted(
        (
            candidate.source.artifact
            for identifier, candidate in result.mapping.items()
            if candidate.extra is None and candidate.source is not None
        ),
        key=lambda a: a.name,
    )
    builds = [
        (str(f.name), str(f.version), _build_reason(f, provider, glibc=glibc, macos=macos))
        for f in files
        if not f.is_wheel
    ]
    for artifact in artifacts:
        # A path dependency is the user's own tree: building it goes without saying.
        if isinstance(artifact, PypiSource) and artifact.git is not None:
            builds.append((artifact.name, artifact.version, "a git dependency"))
        elif (
            isinstance(artifact, PypiArtifact) and artifact.index is None and not artifact.is_wheel
        ):
            builds.append((artifact.name, artifact.version, "a URL dependency that is an sdist"))
    return artifacts, builds


def _pypi_artifact(file: DistFile, provider: PypiProvider, http: HttpClient) -> PypiArtifact:
    from lockenv.lock.pypi.metadata import fetch_artifact_info
    from lockenv.urls import redact_url

    sha256, size = file.sha256, file.size
    if sha256 is None or size is None:
        sha256, size = fetch_artifact_info(http, file)
    meta = provider.metadata_of(file)
    requires_python = (
        str(meta.requires_python) if meta.requires_python is not None else file.requires_python
    )
    return PypiArtifact(
        name=file.name,
        version=str(file.version),
        filename=file.filename,
        # Read through a mirror, a file is still locked under its origin's URL.
        url=redact_url(http.origin_of(file.url)),
        sha256=sha256,
        size=size,
        requires_dist=tuple(str(r) for r in meta.requires_dist),
        requires_python=requires_python or None,
        upload_time=format_time(file.upload_time) if file.upload_time else None,
        index=file.index_url,
    )


# Floors tried when telling a user which system requirement would admit a wheel.
_MACOS_FLOORS = [f"10.{minor}" for minor in range(9, 16)] + [f"{v}.0" for v in range(11, 27)]
_GLIBC_FLOORS = [f"2.{minor}" for minor in range(17, 45)]


def _build_reason(
    sdist: DistFile, provider: PypiProvider, *, glibc: str | None, macos: str | None
) -> str:
    """Why the lock chose an sdist of ``sdist.name`` on the provider's target, and what
    would give it a wheel instead."""
    from lockenv.platforms import DEFAULT_GLIBC, DEFAULT_MACOS

    name, version, target = sdist.name, sdist.version, provider.target
    if not provider.options.may_use_wheel(name):
        return "[pypi-options] no-binary asks for it"
    every = provider.index.files(name)
    if not any(f.is_wheel for f in every):
        return f"{name} publishes no wheels"
    platform = get_platform(target.platform)
    where = target.platform
    if platform.os == "osx":
        where += f" at macOS {macos or DEFAULT_MACOS}"
    elif platform.os == "linux":
        where += f" with glibc {glibc or DEFAULT_GLIBC}"
    wheels = [f for f in every if f.is_wheel and f.version == version]
    if not wheels:
        reason = f"{name} {version} publishes no wheels"
    else:
        reason = f"{name} {version} has no wheel for {where} (Python {target.python})"
        hint = _floor_hint(wheels, target, platform.os, glibc=glibc, macos=macos)
        if hint:
            reason += f"; {hint}"
    with_wheel = sorted(
        v
        for v, files in provider._usable_files(name, pinned_versions=set()).items()
        if any(f.is_wheel for f in files)
    )
    if with_wheel:
        newest = with_wheel[-1]
        if provider.options.wheels_first(name):
            reason += f"; newest with a wheel: {newest}, which the requirements exclude"
        else:
            reason += f"; newest with a wheel: {newest} ([pypi-options] prefer-newest)"
    else:
        reason += f"; no version has a wheel for {where}"
    return reason


def _floor_hint(
    wheels: Sequence[DistFile],
    target: PypiTarget,
    os_name: str,
    *,
    glibc: str | None,
    macos: str | None,
) -> str:
    """ "its wheels need macOS 12.0: raise [system-requirements] macos to 12.0", or ""."""
    from lockenv.platforms import DEFAULT_GLIBC, DEFAULT_MACOS

    if os_name == "osx":
        key, current, floors, label = "macos", macos or DEFAULT_MACOS, _MACOS_FLOORS, "macOS"
    elif os_name == "linux":
        key, current, floors, label = "glibc", glibc or DEFAULT_GLIBC, _GLIBC_FLOORS, "glibc"
    else:
        return ""
    platform = get_platform(target.platform)
    tags = {t for f in wheels for t in f.tags}
    for floor in floors:
        if Version(floor) <= Version(current):
            continue
        kwargs = {"glibc": glibc, "macos": macos, key: floor}
        if tags & set(wheel_tags(platform, target.python, **kwargs)):
            return (
                f"its wheels need {label} {floor}: raise [system-requirements] {key} to "
                f"{floor} if the target machines have it"
            )
    return ""


def _reporter(where: str) -> Any:
    """A resolvelib reporter that logs each step at DEBUG (``-vv``)."""
    from resolvelib import BaseReporter

    class LoggingReporter(BaseReporter):  # type: ignore[type-arg]
        def pinning(self, candidate: Any) -> None:
            _log.debug("%s: try %s", where, candidate)

        def rejecting_candidate(self, criterion: Any, candidate: Any) -> None:
            _log.debug("%s: %s conflicts; backtracking", where, candidate)

    return LoggingReporter()


def _log_decisions(where: str, chosen: Mapping[str, str], locked: Mapping[str, str]) -> None:
    """At INFO (``-v``): what the resolution kept from the lock and what it chose anew."""
    if not _log.isEnabledFor(logging.INFO):
        return
    kept = sorted(n for n, v in chosen.items() if locked.get(n) == v)
    moved = [
        f"{n} {locked[n]} -> {v}"
        for n, v in sorted(chosen.items())
        if n in locked and locked[n] != v
    ]
    new = [f"{n} {v}" for n, v in sorted(chosen.items()) if n not in locked]
    _log.info(
        "%s: %d pinned (%d kept from the lock)%s%s",
        where,
        len(chosen),
        len(kept),
        f"; moved: {', '.join(moved)}" if moved else "",
        f"; newest allowed: {', '.join(new)}" if new else "",
    )


def explain_conflict(
    causes: Collection[Any],
    provider: PypiProvider,
    index: PackageIndex,
    *,
    provided_by: str = "conda",
) -> str:
    """One line naming every requirement in the conflict and who asked for it;
    ``provided_by`` names what installed the packages the provider takes as given."""
    by_name: dict[str, list[str]] = {}
    # Many versions of one package asking the same thing are one ask ("pandas 2.2.0 to
    # 3.1.1 (16 versions) require ..."), not a line each.
    by_parent: dict[tuple[str, str], list[tuple[Candidate, Req]]] = {}
    for cause in causes:
        req: Req = cause.requirement
        parent: Candidate | None = cause.parent
        if parent is not None and req.identifier != PYTHON:
            by_parent.setdefault((req.name, parent.identifier), []).append((parent, req))
            continue
        who = who_asked(parent, provider.chain_to(parent) if parent else [])
        what = f"Python {req.specifier}" if req.identifier == PYTHON else repr(str(req))
        by_name.setdefault(req.name, []).append(f"{who} {what}")
    for (name, _), pairs in by_parent.items():
        pairs.sort(key=lambda pair: pair[0].version)
        first = pairs[0][0]
        if len(pairs) <= 2:
            for parent, req in pairs:
                who = who_asked(parent, provider.chain_to(parent))
                by_name.setdefault(name, []).append(f"{who} {str(req)!r}")
            continue
        lead = " -> ".join(provider.chain_to(first))
        versions = f"{pairs[0][0].version} to {pairs[-1][0].version} ({len(pairs)} versions)"
        wanted = list(dict.fromkeys(str(req) for _, req in pairs))
        shown = " or ".join(repr(w) for w in wanted[:3]) + (" or ..." if len(wanted) > 3 else "")
        by_name.setdefault(name, []).append(
            (f"{lead} -> " if lead else "") + f"{first.identifier} {versions} require {shown}"
        )
    parts: list[str] = []
    for name, asks in by_name.items():
        if name == PYTHON:
            parts.append(f"{'; '.join(asks)}, but the target is Python {provider.target.python}")
            continue
        reason = _why_no_candidate(NormalizedName(name), provider, index, provided_by)
        parts.append(f"{'; '.join(asks)}" + (f" ({reason})" if reason else ""))
    if len(by_name) == 1 and len(causes) == 1:
        return parts[0]
    return "these requirements conflict: " + "; ".join(parts)


def _why_no_candidate(
    name: NormalizedName, provider: PypiProvider, index: PackageIndex, provided_by: str
) -> str:
    if name in provider.provided:
        return f"{provided_by} provides {name} {provider.provided[name]}"
    evaluation = provider.evaluations.get(name)
    if evaluation is None:
        return ""
    if not evaluation.versions_seen:
        from lockenv.urls import redact_url

        urls = getattr(index, "index_urls", None)
        where = ", ".join(map(redact_url, urls)) if urls else "the index"
        return f"no package named {name!r} on {where}; check the spelling"
    available = sorted(set(evaluation.versions_seen))
    usable = sorted(provider._files_by_version.get(name, {}))
    refused = ""
    only_sdists = sorted(evaluation.build_only - set(usable))
    if only_sdists:
        refused = (
            f"; {_summarize(only_sdists)} only as sdists, which [pypi-options] no-build "
            "forbids building"
        )
    only_wheels = sorted(evaluation.wheel_only - set(usable))
    if only_wheels:
        refused += (
            f"; {_summarize(only_wheels)} only as wheels, which [pypi-options] no-binary refuses"
        )
    if not usable:
        return (
            f"{name} has files for versions {_summarize(available)} but none installs on "
            f"{provider.target.platform} with Python {provider.target.python}{refused}"
        )
    return f"available versions: {_summarize(usable)}{refused}"


def _summarize(versions: Sequence[Version], limit: int = 6) -> str:
    shown = [str(v) for v in versions[-limit:]]
    return ("…, " if len(versions) > limit else "") + ", ".join(shown)


def load_previous(path: Path, warn: Progress | None = None) -> Lockfile | None:
    """The existing lock as preferences; a broken one is ignored with a warning.

    A lock left with git conflict markers stands for both sides merged
    (`lockenv.lock.merge.read_conflicted`): the pins either side had are preferred.
    """
    from lockenv.lockfile import has_conflict_markers, loads

    if not path.exists():
        return None
    try:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LockfileError(f"cannot read {str(path)!r}: {exc}") from None
        if not has_conflict_markers(text):
            return loads(text, source=str(path))
        from lockenv.lock.merge import read_conflicted

        outcome = read_conflicted(text, source=str(path))
        assert outcome is not None
        if warn:
            warn(
                f"{path.name} has git conflict markers: solving again, preferring both sides' pins"
            )
            for note in outcome.notes:
                warn(f"merge: {note}")
        return outcome.lock
    except LockenvError as exc:
        if warn:
            warn(f"warning: ignoring the existing lock's pins: {exc}")
        return None
