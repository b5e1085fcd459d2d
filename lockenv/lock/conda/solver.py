"""The resolvelib provider for conda packages, for one target platform.

Candidates are repodata records of the target's subdir and ``noarch``, ordered as conda
orders them: records without ``track_features`` first, then the highest version, the
highest build number and the newest timestamp.  Channels are strict: a name is taken
from the first channel (in manifest order) that has it, so a mirror or a second channel
cannot shadow the first one's packages (conda's and pixi's strict channel priority).

``constrains`` restrict a package without requiring it: a constrained name that nothing
depends on resolves to an *absent* candidate, which satisfies constraints only; a real
dependency on it later makes the absent candidate fail and resolvelib backtracks to a
real record.  Virtual packages (``__glibc``...) are single candidates made from the
target's declared system requirements.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from resolvelib import AbstractProvider

from lockenv.errors import ResolutionError
from lockenv.lock.conda.matchspec import MatchSpec
from lockenv.lock.conda.version import VersionOrder
from lockenv.lock.conflicts import requirement_chain, who_asked

if TYPE_CHECKING:
    from lockenv.lock.conda.repodata import RepoRecord
    from lockenv.platforms import VirtualPackage


@lru_cache(maxsize=65536)
def parse_spec(text: str) -> MatchSpec:
    return MatchSpec.parse(text)


@lru_cache(maxsize=65536)
def parse_version(text: str) -> VersionOrder:
    return VersionOrder.parse(text)


@dataclass(frozen=True, slots=True)
class CondaReq:
    """A MatchSpec on one package, with the candidate that asked for it."""

    spec: MatchSpec
    parent: CondaCandidate | None = None
    optional: bool = False  # from ``constrains``: limits the package, never requires it

    @property
    def name(self) -> str:
        return self.spec.name

    def __str__(self) -> str:
        return str(self.spec)


@dataclass(frozen=True, slots=True, eq=False)
class CondaCandidate:
    """A repodata record, a virtual package, or the absence of a constrained package."""

    name: str
    version: str
    build: str
    build_number: int
    record: RepoRecord | None = None
    virtual: bool = False
    absent: bool = False
    # Position in the provider's sorted pool of ``name`` (-1: in no pool): the bit of this
    # candidate in the provider's per-spec match masks.
    rank: int = -1

    # What MatchSpec.matches reads besides the fields above.
    @property
    def subdir(self) -> str | None:
        return self.record.subdir if self.record else None

    @property
    def md5(self) -> str | None:
        return self.record.md5 if self.record else None

    @property
    def sha256(self) -> str | None:
        return self.record.sha256 if self.record else None

    @property
    def channel(self) -> str | None:
        return self.record.channel if self.record else None

    @property
    def fn(self) -> str | None:
        return self.record.filename if self.record else None

    @property
    def url(self) -> str | None:
        return self.record.url if self.record else None

    @property
    def key(self) -> tuple[str, str, str, str]:
        url = self.record.url if self.record else ("absent" if self.absent else "virtual")
        return (self.name, self.version, self.build, url)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CondaCandidate) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        if self.absent:
            return f"{self.name} (not installed)"
        return f"{self.name} {self.version} {self.build}"


def candidate_from_record(record: RepoRecord, rank: int = -1) -> CondaCandidate:
    return CondaCandidate(
        name=record.name,
        version=record.version,
        build=record.build,
        build_number=record.build_number,
        record=record,
        rank=rank,
    )


def _valid_version(text: str) -> bool:
    """Records with versions conda cannot order are left out (broken repodata)."""
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def _sort_key(record: RepoRecord) -> tuple[bool, VersionOrder, int, int]:
    return (
        not record.track_features,
        parse_version(record.version),
        record.build_number,
        record.timestamp or 0,
    )


class CondaProvider(AbstractProvider[CondaReq, CondaCandidate, str]):
    """resolvelib provider over the records of one platform's subdir and noarch."""

    def __init__(
        self,
        *,
        records: Mapping[str, Sequence[RepoRecord]],
        virtual_packages: Sequence[VirtualPackage],
        direct: Sequence[MatchSpec],  # the root requirements given to resolvelib
        preferences: Mapping[str, str] | None = None,  # name -> locked record's filename
        exclude_newer_ms: int | None = None,
    ) -> None:
        super().__init__()
        self.records = records
        self.virtual = {
            v.name: CondaCandidate(
                name=v.name, version=v.version, build=v.build, build_number=0, virtual=True, rank=0
            )
            for v in virtual_packages
        }
        self.direct_names = frozenset(s.name for s in direct)
        self.direct_order = {s.name: i for i, s in enumerate(direct)}
        self.direct_text = {s.name: str(s) for s in direct}
        # The first requirement seen on each name: how a failure is traced to the manifest.
        self.requested_by: dict[str, CondaReq] = {}
        self.preferences = dict(preferences or {})
        self.exclude_newer_ms = exclude_newer_ms
        self._sorted: dict[str, list[CondaCandidate]] = {}
        self._deps: dict[CondaCandidate, list[CondaReq]] = {}
        # id(spec) -> (spec, bitmask over the sorted pool of spec.name: bit i set when
        # candidate i matches).  resolvelib re-checks every requirement of every pinned
        # name each round, and most requirements share a few specs (hundreds of packages
        # ask for ``python >=3.12,<3.13.0a0``): each spec is matched against its pool once.
        # The spec is kept in the value so that its id cannot be reused.
        self._masks: dict[int, tuple[MatchSpec, int]] = {}
        self._lock = threading.Lock()

    # -- resolvelib contract ---------------------------------------------------------

    def identify(self, requirement_or_candidate: CondaReq | CondaCandidate) -> str:
        return requirement_or_candidate.name

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, CondaCandidate],
        candidates: Mapping[str, Iterator[CondaCandidate]],
        information: Mapping[str, Iterator[Any]],
        backtrack_causes: Sequence[Any],
    ) -> tuple[bool, bool, bool, bool, int, str]:
        # Called for every open name in every round: no copies, and every scan stops at
        # its first hit.  ``direct`` are the root requirements, so a name is asked for by
        # the user exactly when it is one of theirs.
        direct = identifier in self.direct_names
        only_optional = all(info.requirement.optional for info in information[identifier])
        caused = any(cause.requirement.name == identifier for cause in backtrack_causes)
        return (
            identifier not in self.virtual,
            # What the user asked for is decided first and kept newest (pip's rule).
            not direct,
            not caused,
            only_optional,
            self.direct_order.get(identifier, len(self.direct_order)),
            identifier,
        )

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[CondaReq]],
        incompatibilities: Mapping[str, Iterator[CondaCandidate]],
    ) -> list[CondaCandidate]:
        reqs = list(requirements[identifier])
        bad = list(incompatibilities[identifier])
        pool = self._pool(identifier)
        mask = (1 << len(pool)) - 1
        for req in reqs:
            mask &= self._mask(req.spec, pool)
        for candidate in bad:
            rank = candidate.rank
            if 0 <= rank < len(pool) and pool[rank] == candidate:
                mask &= ~(1 << rank)
        matches = [c for i, c in enumerate(pool) if mask >> i & 1]
        preferred = self.preferences.get(identifier)
        if preferred is not None:
            for i, candidate in enumerate(matches):
                if candidate.record is not None and candidate.record.filename == preferred:
                    matches.insert(0, matches.pop(i))
                    break
        if all(r.optional for r in reqs):
            absent = CondaCandidate(
                name=identifier, version="", build="", build_number=0, absent=True
            )
            if absent not in bad:
                matches.insert(0, absent)
        return matches

    def is_satisfied_by(self, requirement: CondaReq, candidate: CondaCandidate) -> bool:
        if candidate.absent:
            return requirement.optional
        spec = requirement.spec
        rank = candidate.rank
        if rank >= 0 and spec.name == candidate.name:
            known = self._masks.get(id(spec))
            mask = known[1] if known is not None else self._mask(spec, self._pool(candidate.name))
            return bool(mask >> rank & 1)
        return bool(spec.matches(candidate))

    def get_dependencies(self, candidate: CondaCandidate) -> list[CondaReq]:
        if candidate.record is None:
            return []
        cached = self._deps.get(candidate)
        if cached is not None:
            return cached
        deps: list[CondaReq] = []
        record = candidate.record
        for text, optional in [
            *((d, False) for d in record.depends),
            *((c, True) for c in record.constrains),
        ]:
            try:
                spec = parse_spec(text)
            except ValueError as exc:
                raise ResolutionError(
                    f"{record.filename} in {record.channel} has an invalid dependency "
                    f"{text!r} ({exc}); the channel's repodata is broken"
                ) from None
            deps.append(CondaReq(spec, candidate, optional))
        self._deps[candidate] = deps
        for dep in deps:
            if not dep.optional:
                self.requested_by.setdefault(dep.name, dep)
        return deps

    def chain_to(self, candidate: CondaCandidate) -> list[str]:
        """How ``candidate``'s package came to be needed, from the manifest down."""
        return requirement_chain(candidate.name, self.requested_by, self.direct_text)

    # -- helpers ---------------------------------------------------------------------

    def _pool(self, name: str) -> list[CondaCandidate]:
        """Every candidate of ``name``, best first; each one's ``rank`` is its position."""
        virtual = self.virtual.get(name)
        return [virtual] if virtual is not None else self._candidates(name)

    def _mask(self, spec: MatchSpec, pool: list[CondaCandidate]) -> int:
        """Bitmask of the candidates of ``pool`` (the pool of ``spec.name``) that match."""
        known = self._masks.get(id(spec))
        if known is not None:
            return known[1]
        mask = 0
        for i, candidate in enumerate(pool):
            if spec.matches(candidate):
                mask |= 1 << i
        self._masks[id(spec)] = (spec, mask)
        return mask

    def _candidates(self, name: str) -> list[CondaCandidate]:
        with self._lock:
            cached = self._sorted.get(name)
            if cached is not None:
                return cached
            records = [r for r in self.records.get(name, ()) if _valid_version(r.version)]
            if self.exclude_newer_ms is not None:
                cutoff = self.exclude_newer_ms
                records = [r for r in records if r.timestamp is None or r.timestamp <= cutoff]
            records.sort(key=_sort_key, reverse=True)
            candidates = [candidate_from_record(r, rank) for rank, r in enumerate(records)]
            self._sorted[name] = candidates
            return candidates

    def known(self, name: str) -> bool:
        return name in self.virtual or bool(self.records.get(name))


def explain_conda_conflict(causes: Collection[Any], provider: CondaProvider, platform: str) -> str:
    """One line: every MatchSpec in the conflict, who asked for it, and why it failed."""
    parts: list[str] = []
    seen: set[str] = set()
    for cause in causes:
        req: CondaReq = cause.requirement
        parent: CondaCandidate | None = cause.parent
        who = who_asked(parent, provider.chain_to(parent) if parent else [])
        text = f"{who} {str(req.spec)!r}"
        if text in seen:
            continue
        seen.add(text)
        if req.name.startswith("__") and req.name not in provider.virtual:
            text += (
                f" (the {platform} target has no {req.name}: declare it under "
                "[system-requirements])"
            )
        elif not provider.known(req.name):
            text += f" (no package named {req.name!r} in the channels)"
        elif len(causes) == 1:
            versions = sorted(
                {c.version for c in provider._candidates(req.name)}, key=parse_version
            )
            text += f" (available versions: {', '.join(versions[-6:])})"
        parts.append(text)
    if len(parts) == 1:
        return parts[0]
    return "these requirements conflict: " + "; ".join(parts)
