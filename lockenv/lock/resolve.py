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
from dataclasses import dataclass
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
    from lockenv.base_environment import BaseEnvironment
    from lockenv.http import HttpClient
    from lockenv.lock.conda.matchspec import MatchSpec
    from lockenv.lock.conda.repodata import ChannelClient, RepoRecord
    from lockenv.lock.manifest import CondaDependency, EnvironmentSpec, Manifest
    from lockenv.lock.pypi.index import DistFile, PackageIndex
    from lockenv.lock.pypi.metadata import MetadataFetcher

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
    env: EnvironmentSpec
    platform: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pins:
    """What one job locked: conda records first, then PyPI files on top of them."""

    artifacts: list[Artifact]
    python: Version | None  # the Python a PyPI-only environment was resolved for
    base: BaseEnvironment | None = None  # the base environment it was resolved on


def manifest_inputs(manifest: Manifest, index_urls: Sequence[str]) -> LockInputs:
    """The inputs a lock of ``manifest`` records (credentials removed)."""
    from lockenv.http import redact_url
    from lockenv.lock.exclude_newer import format_span

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
            root=manifest.root,
            exclude_newer=manifest.exclude_newer,
            pypi_name_of=manifest.pypi_name_of,
        )
        with ThreadPoolExecutor(max_workers=max(1, min(options.jobs, len(jobs)))) as pool:
            results = list(pool.map(resolver.resolve_job, jobs))

    artifacts: dict[str, Artifact] = {}
    environments: dict[str, dict[str, tuple[str, ...]]] = {}
    pythons: dict[str, Version | None] = {}
    bases: dict[str, BaseEnvironment | None] = {}
    for job, pins in zip(jobs, results, strict=True):
        for artifact in pins.artifacts:
            artifacts.setdefault(artifact.url, artifact)
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
                return _Pins(artifacts=list(conda), python=None)
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
        pypi = self.resolve_pypi(job, python, provided) if job.env.pypi_dependencies else []
        return _Pins(artifacts=[*conda, *pypi], python=None if job.env.dependencies else python)

    def resolve_on_base(self, job: _Job, path: Path) -> _Pins:
        """PyPI packages on top of a base environment (`lockenv.lock.base_env`)."""
        from lockenv.lock.base_env import base_problems, provided_by_base, raise_if

        base = self._bases.read(path)
        raise_if(base_problems(job.env, job.platform, base), job.env.name)
        python = Version(base.python)
        pypi = (
            self.resolve_pypi(
                job, python, provided_by_base(base), provided_by="the base environment"
            )
            if job.env.pypi_dependencies
            else []
        )
        return _Pins(artifacts=list(pypi), python=Version(base.python_xy), base=base)

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
        from lockenv.http import redact_url
        from lockenv.lock.pypi.metadata import artifact_info

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
    ) -> list[PypiArtifact]:
        from resolvelib import Resolver
        from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

        target_platform = get_platform(job.platform)
        system = job.env.system_requirements
        tags = wheel_tags(target_platform, python, glibc=system.glibc, macos=system.macos)
        target = PypiTarget(
            platform=job.platform,
            python=python,
            markers=marker_environment(target_platform, python),
            tag_rank={tag: rank for rank, tag in reversed(list(enumerate(tags)))},
        )
        direct = [d.requirement for d in job.env.pypi_dependencies]
        applicable = [r for r in direct if target.evaluate(r)]
        provider = PypiProvider(
            index=self.index,
            metadata=self.metadata,
            target=target,
            direct=applicable,
            preferences=self.pypi_preferences(job.env.name, job.platform),
            provided=provided,
        )
        requirements: list[Req] = []
        for requirement in applicable:
            requirements.extend(requirement_to_reqs(requirement, None))
        if self.progress:
            self.progress(f"resolving {job.env.name} for {job.platform} (Python {python})")
        where = f"{job.env.name}/{job.platform} pypi"
        resolver: Resolver[Req, Candidate, str] = Resolver(provider, _reporter(where))
        try:
            result = resolver.resolve(requirements, max_rounds=20_000)
        except ResolutionImpossible as exc:
            raise ResolutionError(
                f"cannot lock environment {job.env.name!r} for {job.platform} "
                f"(Python {python}): "
                f"{explain_conflict(exc.causes, provider, self.index, provided_by=provided_by)}"
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
        _log_decisions(
            where,
            {f.name: str(f.version) for f in files},
            {str(n): str(v) for n, v in self.pypi_preferences(job.env.name, job.platform).items()},
        )
        return [self.artifact(file) for file in sorted(files, key=lambda f: f.name)]

    def artifact(self, file: DistFile) -> PypiArtifact:
        from lockenv.http import redact_url
        from lockenv.lock.pypi.metadata import fetch_artifact_info

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
            # Read through a mirror, a file is still locked under its origin's URL.
            url=redact_url(self.http.origin_of(file.url)),
            sha256=sha256,
            size=size,
            requires_dist=tuple(str(r) for r in meta.requires_dist),
            requires_python=requires_python or None,
            upload_time=format_time(file.upload_time) if file.upload_time else None,
            index=file.index_url,
        )


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
    for cause in causes:
        req: Req = cause.requirement
        parent: Candidate | None = cause.parent
        who = who_asked(parent, provider.chain_to(parent) if parent else [])
        what = f"Python {req.specifier}" if req.identifier == PYTHON else repr(str(req))
        by_name.setdefault(req.name, []).append(f"{who} {what}")
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
        from lockenv.http import redact_url

        urls = getattr(index, "index_urls", None)
        where = ", ".join(map(redact_url, urls)) if urls else "the index"
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
