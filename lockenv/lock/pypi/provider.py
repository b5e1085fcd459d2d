"""The resolvelib provider for PyPI packages, for one target platform.

The provider stays thin: what a requirement is, what a candidate is and which files
of the index a target can install live in small classes here; the provider only wires
them to resolvelib's contract.

Identifiers are normalized names; a requirement with extras adds one identifier per
extra (``name[extra]``) whose candidates depend on the base package at exactly the same
version, so extras never need a separate copy of the package.  The target Python is the
identifier ``<python>`` with a single candidate, so a distribution whose metadata asks
for another Python is backtracked away like any other conflict.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider

from lockenv.lock.conflicts import requirement_chain

if TYPE_CHECKING:
    from packaging.tags import Tag

    from lockenv.lock.pypi.index import DistFile, PackageIndex
    from lockenv.lock.pypi.metadata import CoreMetadata, MetadataFetcher
    from lockenv.lock.pypi.sources import PreparedSource
    from lockenv.lock.pypi.wanted import PypiOptions

PYTHON = "<python>"


@dataclass(frozen=True, slots=True, kw_only=True)
class PypiTarget:
    """What one target platform accepts: marker values and ranked wheel tags."""

    platform: str
    python: Version
    markers: Mapping[str, str]
    tag_rank: Mapping[Tag, int]  # lower is better

    def evaluate(self, requirement: Requirement, extra: str = "") -> bool:
        if requirement.marker is None:
            return True
        return requirement.marker.evaluate({**self.markers, "extra": extra})


@dataclass(frozen=True, slots=True)
class Req:
    """A requirement on one identifier, with the candidate that asked for it."""

    identifier: str
    name: NormalizedName
    specifier: SpecifierSet
    extra: NormalizedName | None = None
    parent: Candidate | None = None
    source: str = ""  # the PEP 508 text as written, for messages
    exact: Version | None = None  # pins an extra's candidate to its base's version

    def __str__(self) -> str:
        return self.source or f"{self.identifier}{self.specifier}"

    @property
    def allows_prereleases(self) -> bool:
        return bool(self.specifier.prereleases)

    @property
    def is_pinned(self) -> bool:
        return self.exact is not None or any(
            s.operator in ("==", "===") and "*" not in s.version for s in self.specifier
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One version of a package (or of one of its extras) and the file a target gets."""

    name: NormalizedName
    version: Version
    file: DistFile | None  # None for <python>, a conda-provided package and a source
    extra: NormalizedName | None = None
    source: PreparedSource | None = None  # a path, git or URL dependency

    @property
    def identifier(self) -> str:
        if self.name == PYTHON:
            return PYTHON
        return f"{self.name}[{self.extra}]" if self.extra else self.name

    def __str__(self) -> str:
        return f"{self.identifier} {self.version}"


@dataclass(slots=True)
class _Evaluation:
    """Why a name had no usable file, kept for failure messages."""

    versions_seen: list[Version] = field(default_factory=list)
    platform_rejected: int = 0
    python_rejected: int = 0
    yanked_skipped: int = 0
    build_only: set[Version] = field(default_factory=set)  # sdists refused by no-build
    wheel_only: set[Version] = field(default_factory=set)  # wheels refused by no-binary


def requirement_to_reqs(requirement: Requirement, parent: Candidate | None) -> list[Req]:
    """One Req for the package and one per extra it asks for."""
    name = canonicalize_name(requirement.name)
    specifier = requirement.specifier
    source = str(requirement)
    reqs = [Req(name, name, specifier, parent=parent, source=source)]
    for extra in sorted(canonicalize_name(e) for e in requirement.extras):
        reqs.append(
            Req(f"{name}[{extra}]", name, specifier, extra=extra, parent=parent, source=source)
        )
    return reqs


def _split_identifier(identifier: str) -> tuple[NormalizedName, NormalizedName | None]:
    if identifier.endswith("]"):
        base, _, extra = identifier[:-1].partition("[")
        return NormalizedName(base), NormalizedName(extra)
    return NormalizedName(identifier), None


class PypiProvider(AbstractProvider[Req, Candidate, str]):
    """resolvelib provider: finds candidates, orders them, reads their dependencies."""

    def __init__(
        self,
        *,
        index: PackageIndex,
        metadata: MetadataFetcher,
        target: PypiTarget,
        direct: Sequence[Requirement],
        preferences: Mapping[NormalizedName, Version] | None = None,
        allow_prereleases: Iterable[NormalizedName] = (),
        provided: Mapping[NormalizedName, Version] | None = None,
        options: PypiOptions | None = None,
        sources: Mapping[NormalizedName, PreparedSource] | None = None,
    ) -> None:
        from lockenv.lock.pypi.wanted import PypiOptions

        super().__init__()
        self.index = index
        self.metadata = metadata
        self.target = target
        self.direct_names = frozenset(canonicalize_name(r.name) for r in direct)
        self.direct_order = {canonicalize_name(r.name): i for i, r in enumerate(direct)}
        self.direct_text: dict[str, str] = {canonicalize_name(r.name): str(r) for r in direct}
        # The first requirement seen on each name: how a failure is traced to the manifest.
        self.requested_by: dict[str, Req] = {}
        self.preferences = dict(preferences or {})
        self.allow_prereleases = frozenset(allow_prereleases)
        # Names another installer (conda) already provides, at the version it provides.
        self.provided = dict(provided or {})
        self.options = options or PypiOptions()
        # Path, git and URL dependencies: the only candidate their name has.
        self.sources = dict(sources or {})
        self.evaluations: dict[NormalizedName, _Evaluation] = {}
        self._files_by_version: dict[NormalizedName, dict[Version, list[DistFile]]] = {}
        self._dependencies: dict[Candidate, list[Req]] = {}
        self._lock = threading.Lock()
        self._requires_python: dict[str, bool] = {}
        self.python_candidate = Candidate(NormalizedName(PYTHON), target.python, None)

    # -- resolvelib contract ---------------------------------------------------------

    def identify(self, requirement_or_candidate: Req | Candidate) -> str:
        return requirement_or_candidate.identifier

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> tuple[bool, bool, bool, bool, int, int, str]:
        infos = list(information[identifier])
        name, _ = _split_identifier(identifier)
        # What the user asked for is pinned first, so that when something must give way
        # it is a transitive dependency, not the requirement the user wrote (pip's
        # behaviour; uv may instead walk a direct requirement down to an old release).
        direct = any(info.parent is None for info in infos)
        pinned = any(info.requirement.is_pinned for info in infos)
        causes = {cause.requirement.identifier for cause in backtrack_causes}
        # Fewer candidates first: a conflict between a narrow requirement (pandas>=2.2)
        # and a wide one (numpy<1.20) is then found by trying the few, not by walking
        # down every version of the many (each of which may need its metadata).
        count = sum(1 for _ in candidates[identifier])
        return (
            identifier != PYTHON,
            not pinned,
            not direct,
            identifier not in causes,
            count,
            self.direct_order.get(name, len(self.direct_order)),
            identifier,
        )

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[Req]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> list[Candidate]:
        if identifier == PYTHON:
            reqs = list(requirements[identifier])
            if all(self.is_satisfied_by(r, self.python_candidate) for r in reqs):
                return [self.python_candidate]
            return []
        name, extra = _split_identifier(identifier)
        reqs = list(requirements[identifier])
        if name in self.provided:
            version = self.provided[name]
            if all(r.specifier.contains(version, prereleases=True) for r in reqs):
                return [Candidate(name, version, None, extra)]
            return []
        source = self.sources.get(name)
        if source is not None:
            installs = source.tags is None or any(t in self.target.tag_rank for t in source.tags)
            if installs and all(
                r.specifier.contains(source.version, prereleases=True) for r in reqs
            ):
                return [Candidate(name, source.version, None, extra, source)]
            return []
        bad = {c.version for c in incompatibilities[identifier]}
        exact = {r.exact for r in reqs if r.exact is not None}
        by_version = self._usable_files(name, pinned_versions=self._pinned_versions(reqs))
        versions = [v for v in by_version if v not in bad and (not exact or v in exact)]
        allow_pre = name in self.allow_prereleases or any(r.allows_prereleases for r in reqs)

        def matching(prereleases: bool) -> list[Version]:
            return [
                v
                for v in versions
                if (prereleases or not v.is_prerelease)
                and all(r.specifier.contains(v, prereleases=True) for r in reqs)
            ]

        chosen = matching(allow_pre)
        if not chosen and not allow_pre:
            # Pre-releases only when nothing else satisfies (PEP 440's rule).
            chosen = matching(True)
        preferred = self.preferences.get(name)
        if self.options.wheels_first(name):
            # pip's --prefer-binary: versions with a wheel for this target before newer
            # sdist-only ones; a locked version keeps its place within its group.
            with_wheel = {v for v in chosen if any(f.is_wheel for f in by_version[v])}
            chosen.sort(key=lambda v: (v in with_wheel, v == preferred, v), reverse=True)
        else:
            chosen.sort(key=lambda v: (v == preferred, v), reverse=True)
        result = [Candidate(name, v, self._best_file(by_version[v]), extra) for v in chosen]
        if result and result[0].file is not None:
            first = self.metadata_file(result[0].file)
            if first.is_wheel:  # an sdist's metadata may need a download or a build
                self.metadata.prefetch([first])
        return result

    def is_satisfied_by(self, requirement: Req, candidate: Candidate) -> bool:
        if requirement.exact is not None:
            return candidate.version == requirement.exact
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Req]:
        cached = self._dependencies.get(candidate)
        if cached is not None:
            return cached
        deps = self._compute_dependencies(candidate)
        self._dependencies[candidate] = deps
        for dep in deps:
            self.requested_by.setdefault(dep.name, dep)
        self.index.prefetch({d.name for d in deps if d.identifier != PYTHON})
        return deps

    def metadata_of(self, file: DistFile) -> CoreMetadata:
        """The core metadata of ``file``; an sdist's from a wheel of its version if any."""
        return self.metadata.get(self.metadata_file(file))

    def metadata_file(self, file: DistFile) -> DistFile:
        """The file whose metadata stands for ``file``'s.

        For an sdist, a wheel of the same version on any platform when there is one (its
        PEP 658 metadata is a few kilobytes, the sdist may be megabytes and may need a
        build to say anything; uv does the same).  The sync checks the wheel it builds
        from the sdist against these requirements and refuses a disagreement.
        """
        if file.is_wheel:
            return file
        wheels = [
            f
            for f in self.index.files(file.name)
            if f.is_wheel and f.version == file.version and f.yanked is None
        ]
        if not wheels:
            return file
        # Deterministic: an advertised .metadata file first, then by file name.
        return min(wheels, key=lambda f: (not f.core_metadata, f.filename))

    def chain_to(self, candidate: Candidate) -> list[str]:
        """How ``candidate``'s package came to be needed, from the manifest down."""
        return requirement_chain(candidate.name, self.requested_by, self.direct_text)

    # -- helpers ---------------------------------------------------------------------

    def _compute_dependencies(self, candidate: Candidate) -> list[Req]:
        deps: list[Req] = []
        if candidate.extra is not None:
            deps.append(
                Req(
                    candidate.name,
                    candidate.name,
                    SpecifierSet(),
                    parent=candidate,
                    source=f"{candidate.name}=={candidate.version}",
                    exact=candidate.version,
                )
            )
            if candidate.source is not None:
                meta = candidate.source.metadata
            elif candidate.file is None:  # provided by conda: its extras are its business
                return deps
            else:
                meta = self.metadata_of(candidate.file)
            if candidate.extra not in meta.provides_extra:
                # pip warns and installs the base package alone; so do we.
                return deps
            for requirement in meta.requires_dist:
                if self.target.evaluate(requirement, candidate.extra) and not self.target.evaluate(
                    requirement
                ):
                    deps.extend(self._requirement_reqs(requirement, candidate))
            return deps
        if candidate.source is not None:
            meta = candidate.source.metadata
        elif candidate.file is None:
            return deps
        else:
            meta = self.metadata_of(candidate.file)
        if meta.requires_python is not None:
            deps.append(
                Req(
                    PYTHON,
                    NormalizedName(PYTHON),
                    meta.requires_python,
                    parent=candidate,
                    source=f"Requires-Python {meta.requires_python}",
                )
            )
        for requirement in meta.requires_dist:
            if self.target.evaluate(requirement):
                deps.extend(self._requirement_reqs(requirement, candidate))
        return deps

    def _requirement_reqs(self, requirement: Requirement, parent: Candidate) -> list[Req]:
        """``requirement_to_reqs``, refusing a direct URL the manifest does not declare."""
        if requirement.url and canonicalize_name(requirement.name) not in self.sources:
            from lockenv.errors import ResolutionError

            raise ResolutionError(
                f"{parent} requires {str(requirement)!r}, a direct reference: declare "
                f"{requirement.name} in [pypi-dependencies] with its source (path, git or "
                "url) to lock it"
            )
        return requirement_to_reqs(requirement, parent)

    @staticmethod
    def _pinned_versions(reqs: Sequence[Req]) -> set[Version]:
        pinned: set[Version] = set()
        for req in reqs:
            for spec in req.specifier:
                if spec.operator in ("==", "===") and "*" not in spec.version:
                    try:
                        pinned.add(Version(spec.version))
                    except ValueError:
                        continue
        return pinned

    def _usable_files(
        self, name: NormalizedName, *, pinned_versions: set[Version]
    ) -> dict[Version, list[DistFile]]:
        """Files of ``name`` this target can use, by version (yanked ones only if pinned)."""
        with self._lock:
            by_version = self._files_by_version.get(name)
            if by_version is None:
                by_version = self._collect_files(name)
                self._files_by_version[name] = by_version
        if not pinned_versions:
            return {v: fs for v, fs in by_version.items() if any(f.yanked is None for f in fs)}
        # PEP 592: a yanked file is chosen only by a requirement pinning its version.
        return {
            v: fs
            for v, fs in by_version.items()
            if v in pinned_versions or any(f.yanked is None for f in fs)
        }

    def _collect_files(self, name: NormalizedName) -> dict[Version, list[DistFile]]:
        evaluation = _Evaluation()
        self.evaluations[name] = evaluation
        by_version: dict[Version, list[DistFile]] = {}
        may_use_wheel = self.options.may_use_wheel(name)
        may_build = self.options.may_build(name)
        for file in self.index.files(name):
            evaluation.versions_seen.append(file.version)
            if file.is_wheel and not may_use_wheel:
                evaluation.wheel_only.add(file.version)
                continue
            if not file.is_wheel and not may_build:
                evaluation.build_only.add(file.version)
                continue
            if file.is_wheel and not any(t in self.target.tag_rank for t in file.tags):
                evaluation.platform_rejected += 1
                continue
            if file.requires_python and not self._python_allowed(file.requires_python):
                evaluation.python_rejected += 1
                continue
            by_version.setdefault(file.version, []).append(file)
        # A version refused one kind of file is still offered by the other.
        evaluation.build_only -= set(by_version)
        evaluation.wheel_only -= set(by_version)
        # Within a version, yanked files are a last resort.
        for files in by_version.values():
            if any(f.yanked is None for f in files):
                evaluation.yanked_skipped += sum(1 for f in files if f.yanked is not None)
                files[:] = [f for f in files if f.yanked is None]
        return by_version

    def _python_allowed(self, requires_python: str) -> bool:
        """Whether the target Python meets a file's Requires-Python (memoised by text)."""
        allowed = self._requires_python.get(requires_python)
        if allowed is None:
            try:
                allowed = SpecifierSet(requires_python).contains(
                    self.target.python, prereleases=True
                )
            except ValueError:
                allowed = True  # an unparsable Requires-Python is ignored, as pip does
            self._requires_python[requires_python] = allowed
        return allowed

    def _best_file(self, files: Sequence[DistFile]) -> DistFile:
        """The most specific compatible wheel; an sdist only when there is no wheel."""

        def rank(file: DistFile) -> tuple[int, int, tuple[Any, ...], str]:
            if not file.is_wheel:
                return (1, 0, (), file.filename)
            best = min(self.target.tag_rank[t] for t in file.tags if t in self.target.tag_rank)
            build = tuple(file.build_tag)
            return (0, best, tuple(-x if isinstance(x, int) else x for x in build), file.filename)

        return min(files, key=rank)
