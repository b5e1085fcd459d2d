"""The conda solver: one environment's conda packages for one platform.

Every build of every package name the solve reaches is a boolean variable of the
CDCL engine in `lockenv.lock.conda.sat`, and the builds of one name form an at-most-one
group.  The clauses say what conda's rules say:

- the manifest's MatchSpecs: one of the builds each admits (a clause per spec);
- a build's ``depends``: if it is installed, so is one of the builds each dependency
  admits.  Each set of builds a dependency admits has a variable of its own, ``need``
  (``not need or dep1 or dep2 ...``; no build admitted makes ``not need`` a fact), and
  the build implies it (``not build or need``): every build requiring the same set
  shares that clause, and a conflict learned about the set (`CondaSolver._need`), or
  about several sets a build requires together ("not both ``numpy`` from these and
  ``python`` from those", `lockenv.lock.conda.sat.Engine._learn_cut`);
- a build's ``constrains``: if it is installed, no build of the constrained name that
  the spec rejects is (``not build or not other``); a constrained name nothing requires stays
  out of the environment.

Clauses are made lazily.  A name's records are read and ordered the first time a
requirement names it (so a solve touches the names it can reach, not the channel), and a
build's ``depends`` and ``constrains`` are encoded the first time the build is installed,
is about to be tried, or is among the first few open builds of a requirement that an
installed build has (`CondaSolver._encode_ahead`).  Trying a build only after encoding it
means a build whose dependency has become impossible (a ``py313`` build once ``python
3.12`` is chosen) is ruled out by propagation, without a conflict.

**Decisions** follow conda's optimization order (`lockenv.lock.conda.order`): the
solver takes the first open requirement — the manifest's, in the manifest's order, before
any package's, then packages' requirements in the order they were found (the names
conflicts involve most, first, once there are conflicts) — and installs the best build
that requirement admits that every other open requirement on the name admits too.  A
locked pin (``preferences``) is tried first.  Conflicts are learned and backjumped over
(`sat`), so every request is either solved or proven impossible; an impossible one is
explained by the requirements that prove it (`Unsatisfiable`), traced back to the
manifest through `lockenv.lock.conflicts`.

Channels are strict: the records given are those of the first channel that has each
name (`lockenv.lock.conda.repodata.ChannelRecords`).  Virtual packages (``__glibc``...)
are single builds made from the target's declared system requirements; a ``__`` name
the target does not declare has no build.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

from lockenv.errors import ResolutionError
from lockenv.lock.conda.matchspec import MatchSpec
from lockenv.lock.conda.order import Newest, by_key, order_group
from lockenv.lock.conda.sat import DONE, RETRY, Engine
from lockenv.lock.conda.version import VersionOrder
from lockenv.lock.conflicts import requirement_chain, who_asked

if TYPE_CHECKING:
    from lockenv.lock.conda.repodata import RepoRecord
    from lockenv.platforms import VirtualPackage

__all__ = ["CondaSolver", "Unsatisfiable", "VirtualRecord", "parse_spec", "parse_version"]

# How many requirements an explanation names before it says "and N more".
_EXPLAIN_LIMIT = 8
# Proofs larger than this are explained as they are, without looking for a smaller one.
_MINIMIZE_UNITS = 60
_MINIMIZE_CLAUSES = 5000
_MINIMIZE_CONFLICTS = 2000  # in all: a smaller explanation is not worth more time
_MINIMIZE_TRIALS = 12  # sub-problems solved, in all
# How many of the open builds a requirement admits are encoded as soon as a build with
# that requirement is installed, once the search has met this many conflicts (see
# `CondaSolver._encode_ahead`).
_ENCODE_AHEAD = 8
_AHEAD_AFTER = 1


@lru_cache(maxsize=65536)
def parse_spec(text: str) -> MatchSpec:
    """A MatchSpec from repodata or a lock (cached: the same texts recur everywhere)."""
    return MatchSpec.parse(text)


@lru_cache(maxsize=65536)
def parse_version(text: str) -> VersionOrder:
    return VersionOrder.parse(text)


class Unsatisfiable(ResolutionError):
    """No set of builds meets the requirements; ``explanation`` says which conflict."""

    def __init__(self, explanation: str) -> None:
        self.explanation = explanation
        super().__init__(explanation)


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualRecord:
    """A virtual package (``__glibc 2.28``) as a build the solver can pick."""

    name: str
    version: str
    build: str
    build_number: int = 0
    track_features: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    timestamp: int | None = None


_Record: TypeAlias = "RepoRecord | VirtualRecord"
# What a group of clauses says: (package name or "" for the manifest, verb, target name).
_Key = tuple[str, str, str]


class _Pool:
    """The builds of one package name, best first; ``vars[i]`` is ``records[i]``'s.

    "Best first" by conda's order steps 1-3 (`lockenv.lock.conda.order.by_key`); builds
    equal in those form a span (``spans``, and ``span_of`` by position) whose own order
    (steps 4-5, `order_group`) is worked out the first time the solver picks from it
    (``best_in_span``): most spans are never reached.
    """

    __slots__ = (
        "_by_version",
        "active",
        "best_in_span",
        "group",
        "index",
        "masks",
        "name",
        "needs",
        "records",
        "requirements",
        "span_of",
        "spans",
        "vars",
    )

    def __init__(
        self,
        name: str,
        index: int,
        group: int,
        records: list[_Record],
        spans: list[tuple[int, int]],
    ):
        self.name = name
        self.index = index
        self.group = group
        self.records = records
        self.spans = spans
        self.span_of = [i for i, (start, end) in enumerate(spans) for _ in range(start, end)]
        self.best_in_span: dict[int, list[int]] = {}  # span -> its positions, best first
        self.vars: list[int] = []
        # id(spec) -> (spec, bitmask of the builds it admits by position, their positions)
        self.masks: dict[int, tuple[MatchSpec, int, list[int]]] = {}
        self.requirements: list[int] = []  # requirements on this name
        # Bitmask of builds -> (variable, clause) of "one of these builds is installed",
        # shared by every build that requires that set (see `CondaSolver._need`).
        self.needs: dict[int, tuple[int, int]] = {}
        # The requirements on this name in force (the manifest's, and those of builds
        # that are true), by the bitmask of builds they admit.
        self.active: dict[int, set[int]] = {}
        self._by_version: dict[str, int] | None = None

    def by_version(self) -> dict[str, int]:
        """Each version's text -> the bitmask of its builds by position."""
        found = self._by_version
        if found is None:
            found = self._by_version = {}
            for i, record in enumerate(self.records):
                found[record.version] = found.get(record.version, 0) | 1 << i
        return found


class _Requirement(NamedTuple):
    """A MatchSpec that the manifest (``parent`` -1) or an installed build must meet.

    (A named tuple: a solve makes one for each dependency of every build it encodes,
    thousands, and a frozen dataclass costs four times as much to make.)
    """

    parent: int  # the requiring build's variable, or -1 for the manifest
    spec: MatchSpec
    pool: _Pool
    mask: int
    # The manifest's: the clause "one of the builds ``mask`` admits".  A build's: the
    # clause "not ``parent`` or ``need``", and ``shared`` the clause "not ``need`` or
    # one of those builds", shared by every requirement that admits the same builds.
    clause: int
    need: int = -1
    shared: int = -1

    def clauses(self) -> list[int]:
        """The clauses that together say this requirement."""
        return [self.clause] if self.shared < 0 else [self.clause, self.shared]


@dataclass(frozen=True, slots=True)
class _Asked:
    """Who first asked for a name, as `lockenv.lock.conflicts.requirement_chain` reads it."""

    parent: _Record | None
    spec: MatchSpec

    def __str__(self) -> str:
        return str(self.spec)


# What a dependency's text resolves to: (spec, pool, mask of builds admitted, need, shared).
_Target: TypeAlias = "tuple[MatchSpec, _Pool, int, int, int]"

# The pool and record of a variable the engine made for itself.
_NO_POOL = _Pool("", -1, -1, [], [])
_NO_RECORD = VirtualRecord(name="", version="0", build="")


class CondaSolver:
    """One solve: construct, then call `solve` once."""

    def __init__(
        self,
        *,
        records: Mapping[str, Sequence[RepoRecord]],
        virtual_packages: Sequence[VirtualPackage],
        direct: Sequence[MatchSpec],
        preferences: Mapping[str, str] | None = None,  # name -> locked record's filename
        exclude_newer_ms: int | None = None,
        platform: str = "",
    ) -> None:
        self.records = records
        self.virtual = {
            v.name: VirtualRecord(name=v.name, version=v.version, build=v.build)
            for v in virtual_packages
        }
        self.direct = list(direct)
        self.direct_text = {s.name: str(s) for s in direct}
        self.preferences = dict(preferences or {})
        self.exclude_newer_ms = exclude_newer_ms
        self.platform = platform
        self.engine = Engine(self)
        self.pools: dict[str, _Pool] = {}
        self.pool_list: list[_Pool] = []
        self.activity: list[float] = []  # by pool index
        self.pool_of: list[_Pool] = []  # by variable
        self.record_of: list[_Record] = []  # by variable
        self.expanded: list[bool] = []  # by variable
        self.requires: list[list[int]] = []  # by variable: its requirements' ids
        self.requirements: list[_Requirement] = []
        self.requirement_of_clause: dict[int, int] = {}
        self.constraint_of_clause: dict[int, tuple[int, MatchSpec]] = {}
        self.pending_constraints: dict[str, list[tuple[int, MatchSpec]]] = {}
        self.requested_by: dict[str, _Asked] = {}
        self.heap: list[tuple[int, float, int]] = []
        self._raw: dict[str, list[_Record]] = {}
        self._newest: dict[int, tuple[MatchSpec, Newest]] = {}
        self._clashed: set[tuple[int, int]] = set()  # (build, requirement) pairs encoded
        self._need_of: dict[int, tuple[_Pool, list[int]]] = {}  # `_need`'s variables
        self._targets: dict[str, _Target] = {}  # see `_depend`

    # -- the answer --------------------------------------------------------------------

    def solve(self) -> list[RepoRecord]:
        """The records to install (no virtual packages), by name.

        Raises `Unsatisfiable` (a `ResolutionError`) with a one-line explanation when no
        set of builds meets the requirements, and `ResolutionError` for broken repodata.
        """
        from lockenv.gcpause import gc_paused

        with gc_paused():  # records and clauses by the ten thousand, none in a cycle
            for spec in self.direct:
                self._require(spec)
            solved = self.engine.solve()
        if solved is False:
            raise Unsatisfiable(self._explain())
        chosen = [
            self.record_of[var]
            for var in range(len(self.record_of))
            if self.engine.values[2 * var] == 1 and self.pool_of[var] is not _NO_POOL
        ]
        solution = sorted(
            (r for r in chosen if not isinstance(r, VirtualRecord)), key=lambda r: r.name
        )
        self._check(chosen)
        return solution

    @property
    def names_loaded(self) -> int:
        """How many package names the solve read (for benchmarks and tests)."""
        return len(self._raw)

    # -- records and their order -------------------------------------------------------

    def _candidates(self, name: str) -> list[_Record]:
        """Every usable record of ``name``, unordered (valid version, not too new)."""
        found = self._raw.get(name)
        if found is not None:
            return found
        virtual = self.virtual.get(name)
        if virtual is not None:
            found = [virtual]
        elif name.startswith("__"):
            found = []
        else:
            cutoff = self.exclude_newer_ms
            found = [
                r
                for r in self.records.get(name, ())
                if _valid_version(r.version)
                and (cutoff is None or r.timestamp is None or r.timestamp <= cutoff)
            ]
        self._raw[name] = found
        return found

    def _newest_admitted(self, spec: MatchSpec) -> Newest:
        known = self._newest.get(id(spec))
        if known is not None:
            return known[1]
        best: Newest = None
        for record in self._candidates(spec.name):
            if spec.matches(record):
                version = parse_version(record.version)
                tracked = bool(record.track_features)
                if best is None or version > best[1] or (version == best[1] and not tracked):
                    best = (tracked, version)
        self._newest[id(spec)] = (spec, best)
        return best

    def _pool(self, name: str) -> _Pool:
        pool = self.pools.get(name)
        if pool is not None:
            return pool
        candidates = self._candidates(name)
        preferred = self.preferences.get(name)
        first = [r for r in candidates if getattr(r, "filename", None) == preferred][:1]
        ordered, spans = by_key(
            [r for r in candidates if not first or r is not first[0]], version_of=parse_version
        )
        if first:  # a locked pin is tried before anything else
            ordered = first + ordered
            spans = [(0, 1)] + [(start + 1, end + 1) for start, end in spans]
        engine = self.engine
        pool = _Pool(name, len(self.pool_list), engine.new_group(), ordered, spans)
        self.pools[name] = pool
        self.pool_list.append(pool)
        self.activity.append(0.0)
        self._pad()
        pool.vars = list(engine.new_vars(len(ordered), pool.group))
        self.pool_of += [pool] * len(ordered)
        self.record_of += ordered
        self.expanded += [False] * len(ordered)
        self.requires += [[] for _ in ordered]
        for parent, spec in self.pending_constraints.pop(name, ()):
            self._constrain(parent, spec, pool)
        return pool

    def _match(self, pool: _Pool, spec: MatchSpec) -> tuple[int, list[int]]:
        known = pool.masks.get(id(spec))
        if known is not None:
            return known[1], known[2]
        if spec.version_only:
            # Only the version counts: each distinct version is looked at once.
            mask = 0
            for text, builds in pool.by_version().items():
                if spec.matches_version(text):
                    mask |= builds
            positions = list(_positions(mask))
        else:
            positions = [i for i, record in enumerate(pool.records) if spec.matches(record)]
            mask = sum(1 << i for i in positions)
        pool.masks[id(spec)] = (spec, mask, positions)
        return mask, positions

    # -- clauses -----------------------------------------------------------------------

    def _require(self, spec: MatchSpec) -> int:
        """Encode "the manifest needs a build ``spec`` admits"."""
        pool = self._pool(spec.name)
        mask, positions = self._match(pool, spec)
        clause = self.engine.add_clause(
            [2 * pool.vars[i] for i in positions], within=(pool.group, mask, -1)
        )
        rid = self._record_requirement(_Requirement(-1, spec, pool, mask, clause))
        heapq.heappush(self.heap, (0, 0.0, rid))
        pool.active.setdefault(mask, set()).add(rid)
        return rid

    def _depend(self, parent: int, text: str, record: _Record) -> int:
        """Encode "``parent`` (``record``) needs a build ``text`` admits".

        What a dependency's text resolves to (its pool, the builds it admits, their
        ``need`` variable) is worked out once per text: the builds of a package share
        most of their dependencies, and a solve encodes thousands of builds.
        """
        target = self._targets.get(text)
        if target is None:
            spec = self._spec(text, record)
            pool = self._pool(spec.name)
            mask, positions = self._match(pool, spec)
            target = (spec, pool, mask, *self._need(pool, mask, positions))
            self._targets[text] = target
        spec, pool, mask, need, shared = target
        clause = self.engine.add_clause([2 * parent + 1, 2 * need])
        return self._record_requirement(
            _Requirement(parent, spec, pool, mask, clause, need, shared)
        )

    def _record_requirement(self, requirement: _Requirement) -> int:
        rid = len(self.requirements)
        self.requirements.append(requirement)
        self.requirement_of_clause[requirement.clause] = rid
        requirement.pool.requirements.append(rid)
        name = requirement.spec.name
        if name not in self.requested_by:
            parent = requirement.parent
            self.requested_by[name] = _Asked(
                self.record_of[parent] if parent >= 0 else None, requirement.spec
            )
        return rid

    def _need(self, pool: _Pool, mask: int, positions: list[int]) -> tuple[int, int]:
        """The variable "one of the builds ``mask`` admits is installed", and its clause.

        Every build requiring that set of builds implies the one variable, so what the
        search learns about the set (``libffi 3.4.*`` is impossible next to what is
        installed) is learned once, for all of them: the variable is the conflict's
        unique implication point, and its negation rules out every such build at once,
        instead of one Python build after another.  Keyed by the builds admitted, not
        by the spec's text: specs written differently that admit the same builds share.
        """
        known = pool.needs.get(mask)
        if known is not None:
            return known
        engine = self.engine
        need = engine.new_var()
        self._pad()
        shared = engine.add_clause(
            [2 * need + 1, *(2 * pool.vars[i] for i in positions)],
            within=(pool.group, mask, 2 * need + 1),
        )
        pool.needs[mask] = (need, shared)
        self._need_of[need] = (pool, positions)
        return need, shared

    def _constrain(self, parent: int, spec: MatchSpec, pool: _Pool) -> None:
        """Encode "if ``parent`` is installed, no build of ``pool`` that ``spec`` rejects"."""
        mask, _ = self._match(pool, spec)
        negated = 2 * parent + 1
        for i, var in enumerate(pool.vars):
            if not mask >> i & 1 and var != parent:
                clause = self.engine.add_clause([negated, 2 * var + 1])
                self.constraint_of_clause[clause] = (parent, spec)

    def _expand(self, var: int) -> None:
        """Encode a build's ``depends`` and ``constrains`` (once)."""
        self.expanded[var] = True
        record = self.record_of[var]
        self.requires[var] = [self._depend(var, t, record) for t in record.depends]
        for text in record.constrains:
            spec = self._spec(text, record)
            pool = self.pools.get(spec.name)
            if pool is None:
                # Nothing needs that name yet, and maybe nothing will: encode it if it comes.
                self.pending_constraints.setdefault(spec.name, []).append((var, spec))
            else:
                self._constrain(var, spec, pool)

    @staticmethod
    def _spec(text: str, record: _Record) -> MatchSpec:
        try:
            return parse_spec(text)
        except ValueError as exc:
            where = getattr(record, "filename", record.name)
            channel = getattr(record, "channel", "")
            raise ResolutionError(
                f"{where} in {channel} has an invalid dependency {text!r} ({exc}); the "
                "channel's repodata is broken"
            ) from None

    # -- the engine's questions ----------------------------------------------------------

    def _pad(self) -> None:
        """Give variables that are no build (the engine's own, `Engine._analyze_by_name`,
        and requirements', `_need`) a place in the arrays by variable: no pool, no
        record, nothing to expand."""
        while len(self.pool_of) < len(self.engine.level):
            self.pool_of.append(_NO_POOL)
            self.record_of.append(_NO_RECORD)
            self.expanded.append(True)
            self.requires.append([])

    def on_true(self, var: int) -> None:
        self._pad()
        ahead = self._need_of.get(var)
        if ahead is not None:
            self._encode_ahead(*ahead)
            return
        if not self.expanded[var]:
            self._expand(var)
        heap = self.heap
        activity = self.activity
        requirements = self.requirements
        for rid in self.requires[var]:
            requirement = requirements[rid]
            pool = requirement.pool
            heapq.heappush(heap, (1, -activity[pool.index], rid))
            pool.active.setdefault(requirement.mask, set()).add(rid)
        self._clashes(var)

    def _encode_ahead(self, pool: _Pool, positions: list[int]) -> None:
        """A set of builds is needed: encode the best `_ENCODE_AHEAD` of them still open.

        What makes a build impossible is then found while the requirement is new, at
        its own decision level, rather than when the build comes to be tried many
        decisions later: there, a dependency found impossible since long ago is a
        conflict at that old level, and every decision made since is undone and made
        again.
        """
        if self.engine.conflicts < _AHEAD_AFTER:
            return
        values = self.engine.values
        expanded = self.expanded
        vars_ = pool.vars
        left = _ENCODE_AHEAD
        for position in positions:
            var = vars_[position]
            if values[2 * var] == 0:
                if not expanded[var]:
                    self._expand(var)
                left -= 1
                if not left:
                    return

    def on_unassigned(self, vars_: list[int]) -> None:
        self._pad()
        heap = self.heap
        activity = self.activity
        requirements = self.requirements
        for var in vars_:
            for rid in self.requires[var]:
                requirement = requirements[rid]
                active = requirement.pool.active.get(requirement.mask)
                if active is not None:
                    active.discard(rid)
        # A name whose build was undone is open again for the requirements in force.
        for var in vars_:
            pool = self.pool_of[var]
            for active in pool.active.values():
                for rid in active:
                    kind = 0 if requirements[rid].parent < 0 else 1
                    heapq.heappush(heap, (kind, -activity[pool.index] * kind, rid))

    def on_conflict(self, vars_: list[int], bump: float) -> None:
        activity = self.activity
        requirements = self.requirements
        bumped: set[int] = set()
        self._pad()
        for var in vars_:
            pool = self.pool_of[var]
            if pool is _NO_POOL:
                continue
            activity[pool.index] += bump
            bumped.add(pool.index)
        if bump > 1e100:  # rescale before floats run out
            self.activity = activity = [a * 1e-100 for a in activity]
            self.engine.bump *= 1e-100
        # Open requirements on those names move up: queue them again with the new
        # activity (the entries queued before stay, and are skipped once met).
        heap = self.heap
        for index in bumped:
            pool = self.pool_list[index]
            if self.engine.chosen[pool.group] >= 0:
                continue
            for active in pool.active.values():
                for rid in active:
                    if requirements[rid].parent >= 0:
                        heapq.heappush(heap, (1, -activity[index], rid))

    def decide(self) -> int:
        values = self.engine.values
        chosen = self.engine.chosen
        heap = self.heap
        requirements = self.requirements
        while heap:
            requirement = requirements[heap[0][2]]
            parent = requirement.parent
            if (parent >= 0 and values[2 * parent] != 1) or chosen[requirement.pool.group] >= 0:
                heapq.heappop(heap)
                continue
            var = self._pick(requirement)
            if var < 0:
                # Every build it admits is out, yet its parent is in: a conflict that
                # propagation did not see (an implication made at a level since undone).
                # Stating the requirement again lets the engine find it.
                heapq.heappop(heap)
                need = requirement.need
                lits = [
                    lit
                    for cid in requirement.clauses()
                    for lit in self.engine.clauses[cid]
                    if lit >> 1 != need
                ]
                self.engine.add_clause(lits, derived_from=requirement.clauses())
                return RETRY
            if not self.expanded[var]:
                # Encode it first: if a dependency is already impossible, propagation
                # rules the build out and the next one is tried, with no conflict.
                self._expand(var)
                return RETRY
            if self._clashes(var):
                return RETRY
            return 2 * var
        return DONE

    def _clashes(self, var: int) -> bool:
        """Rule out ``var`` next to what is installed, when one of its requirements
        and one in force (an installed build's, or the manifest's) on the same name
        admit no build in common: the clause "not both" follows from the two
        requirements.  Found by propagation, this saves trying every build of that name
        in turn."""
        requirements = self.requirements
        found = False
        for rid in self.requires[var]:
            mine = requirements[rid]
            if not mine.mask:
                continue  # the requirement's own clause already rules ``var`` out
            for mask, active in mine.pool.active.items():
                if mask & mine.mask:
                    continue
                for other_id in active:
                    other = requirements[other_id]
                    parent = other.parent
                    if parent == var or (var, other_id) in self._clashed:
                        continue
                    self._clashed.add((var, other_id))
                    lits = [2 * var + 1] if parent < 0 else [2 * var + 1, 2 * parent + 1]
                    self.engine.add_clause(lits, derived_from=mine.clauses() + other.clauses())
                    found = True
        return found

    def _pick(self, requirement: _Requirement) -> int:
        """The best unassigned build ``requirement`` admits, preferring one that every
        other open requirement on the name admits too; -1 if none is left."""
        values = self.engine.values
        pool = requirement.pool
        mask = requirement.mask
        for other, active in pool.active.items():
            narrowed = mask & other
            if narrowed and active:
                mask = narrowed
        for wanted in (mask, requirement.mask):
            for position in _positions(wanted):
                var = pool.vars[position]
                if values[2 * var] == 0:
                    span = pool.span_of[position]
                    start, end = pool.spans[span]
                    if end - start == 1:
                        return var
                    for best in self._best_in_span(pool, span):
                        var = pool.vars[best]
                        if wanted >> best & 1 and values[2 * var] == 0:
                            return var
        return -1

    def _best_in_span(self, pool: _Pool, span: int) -> list[int]:
        """The positions of a span of builds equal in order steps 1-3, best first."""
        known = pool.best_in_span.get(span)
        if known is None:
            start, end = pool.spans[span]
            ordered = order_group(
                pool.records[start:end], parse_spec=parse_spec, newest=self._newest_admitted
            )
            where = {id(record): start + i for i, record in enumerate(pool.records[start:end])}
            known = pool.best_in_span[span] = [where[id(record)] for record in ordered]
        return known

    # -- checks and explanations -------------------------------------------------------

    def _check(self, chosen: list[_Record]) -> None:
        """The solution meets every requirement (a bug in the solver must not become a
        broken lock)."""
        by_name = {r.name: r for r in chosen}
        problems = [str(s) for s in self.direct if not _met(s, by_name, required=True)]
        for record in chosen:
            problems += [
                f"{record.name} {record.version} requires {t!r}"
                for t in record.depends
                if not _met(parse_spec(t), by_name, required=True)
            ]
            problems += [
                f"{record.name} {record.version} constrains {t!r}"
                for t in record.constrains
                if not _met(parse_spec(t), by_name, required=False)
            ]
        if problems:
            raise ResolutionError(
                "internal error: the conda solver produced a solution that does not meet "
                f"{'; '.join(problems[:5])}; please report this"
            )

    def _explain(self) -> str:
        """One line: the requirements that together cannot be met, and who asked."""
        clauses, _pairs = self.engine.core()
        # The proof's clauses by what they say: each manifest requirement alone, and a
        # package's requirements (or constraints) on one other name together.
        units: dict[tuple[str, str, str], list[int]] = {}
        for clause in sorted(clauses):
            rid = self.requirement_of_clause.get(clause)
            if rid is not None:
                requirement = self.requirements[rid]
                if requirement.parent < 0:
                    key = ("", "asks", requirement.spec.name)
                else:
                    key = (
                        self.record_of[requirement.parent].name,
                        "requires",
                        requirement.spec.name,
                    )
            elif clause in self.constraint_of_clause:
                parent, spec = self.constraint_of_clause[clause]
                key = (self.record_of[parent].name, "constrains", spec.name)
            else:
                continue
            units.setdefault(key, []).append(clause)
        units = self._minimal(units)
        asked = dict(self.requested_by)
        for clause in sorted((c for cs in units.values() for c in cs), reverse=True):
            # How the proof's requirements brought a name in explains it best.
            rid = self.requirement_of_clause.get(clause)
            if rid is not None:
                requirement = self.requirements[rid]
                parent = requirement.parent
                record = self.record_of[parent] if parent >= 0 else None
                asked[requirement.spec.name] = _Asked(record, requirement.spec)
        direct = [
            self.requirements[self.requirement_of_clause[cs[0]]]
            for key, cs in units.items()
            if key[1] == "asks"
        ]
        groups = {key: cs for key, cs in units.items() if key[1] != "asks"}
        chained = {root for name, _, _ in groups for root in _roots(name, asked)}
        parts = [
            f"the manifest asks for {self.direct_text[r.spec.name]!r}{self._why_none(r)}"
            for r in sorted(direct, key=lambda r: self._direct_position(r.spec.name))
            # A requirement shown as the start of a chain below need not stand alone.
            if not (r.spec.name in chained and r.mask)
        ]
        parts += [self._describe_group(key, cs, asked) for key, cs in groups.items()]
        if not parts:  # cannot happen: a refutation uses at least one requirement
            return "the requirements conflict"
        if len(parts) > _EXPLAIN_LIMIT:
            parts = [*parts[:_EXPLAIN_LIMIT], f"and {len(parts) - _EXPLAIN_LIMIT} more"]
        if len(parts) == 1:
            return parts[0]
        return "these requirements conflict: " + "; ".join(parts)

    def _minimal(self, units: dict[_Key, list[int]]) -> dict[_Key, list[int]]:
        """Drop every unit the conflict does not need (a proof's clauses include detours).

        Each check solves the small problem made of the remaining units' clauses alone
        (one at-most-one group per package name), so it is cheap; large proofs are
        left as they are.  A check that finds the rest still impossible also drops every
        unit its own refutation did not use; at most `_MINIMIZE_TRIALS` checks are made
        (an explanation is not worth more time than the solve).
        """
        if len(units) > _MINIMIZE_UNITS or sum(map(len, units.values())) > _MINIMIZE_CLAUSES:
            return units
        kept = dict(units)
        budget = _MINIMIZE_CONFLICTS
        trials = 0
        # Packages' requirements first (last found first), the manifest's last.
        for key in sorted(kept, key=lambda k: (k[1] == "asks", -min(kept[k]))):
            trial = {k: v for k, v in kept.items() if k != key}
            if key not in kept or not trial or budget <= 0 or trials >= _MINIMIZE_TRIALS:
                continue
            trials += 1
            answer, spent, core = self._satisfiable(
                self._with_shared(c for cs in trial.values() for c in cs), budget
            )
            budget -= spent
            if answer is False:
                # Not needed; nor is any unit the refutation without it did not use.
                kept = {k: cs for k, cs in trial.items() if not core.isdisjoint(cs)}
        return kept

    def _with_shared(self, clause_ids: Iterable[int]) -> list[int]:
        """These clauses and the shared clauses of the requirements among them."""
        found = dict.fromkeys(clause_ids)
        for clause in list(found):
            rid = self.requirement_of_clause.get(clause)
            if rid is not None:
                found.update(dict.fromkeys(self.requirements[rid].clauses()))
        return list(found)

    def _satisfiable(self, clause_ids: list[int], budget: int) -> tuple[bool | None, int, set[int]]:
        """Whether these clauses alone admit a solution (None: not found out within
        ``budget`` conflicts), the conflicts spent, and when they admit none, the
        clauses (of ``clause_ids``) the refutation used."""
        clauses = [self.engine.clauses[c] for c in clause_ids]
        problem = _Plain()
        engine = Engine(problem)
        problem.engine = engine
        renamed: dict[int, int] = {}
        groups: dict[int, int] = {}
        for clause in clauses:
            for lit in clause:
                var = lit >> 1
                if var not in renamed:
                    pool = self.pool_of[var].index
                    if pool < 0:  # a requirement's variable (`_need`)
                        renamed[var] = engine.new_var()
                        continue
                    if pool not in groups:
                        groups[pool] = engine.new_group()
                    renamed[var] = engine.new_var(groups[pool])
        for clause in clauses:
            engine.add_clause([2 * renamed[lit >> 1] + (lit & 1) for lit in clause])
        problem.clauses = list(engine.clauses)
        answer = engine.solve(max_conflicts=budget)
        used = (
            {clause_ids[c] for c in engine.core()[0] if c < len(clause_ids)}
            if answer is False
            else set()
        )
        return answer, engine.conflicts, used

    def _describe_group(self, key: _Key, clauses: list[int], asked: Mapping[str, _Asked]) -> str:
        """``chain -> P 1.0 requires 'S'``, for the best build of P that asks, and how
        many other builds of P ask the same of that name."""
        name, verb, _target = key
        asks: list[tuple[_Record, str, _Requirement | None]] = []
        for clause in clauses:
            rid = self.requirement_of_clause.get(clause)
            if rid is not None:
                found = self.requirements[rid]
                asks.append((self.record_of[found.parent], str(found.spec), found))
            else:
                parent, spec = self.constraint_of_clause[clause]
                asks.append((self.record_of[parent], str(spec), None))
        rank = {id(r): i for i, r in enumerate(self.pools[name].records)}
        asks.sort(key=lambda item: rank.get(id(item[0]), 0))
        record, spec_text, requirement = asks[0]
        who = who_asked(record, requirement_chain(name, asked, self.direct_text))
        if verb == "constrains":
            who = who.removesuffix("requires") + "constrains"
        text = f"{who} {spec_text!r}"
        if requirement is not None:
            text += self._why_none(requirement)
        others = sorted({spec for _, spec, _ in asks[1:]} - {spec_text})
        builds = len({id(r) for r, _, _ in asks}) - 1
        if builds > 0:
            text += f" (as do {builds} more {name} builds"
            if others:
                text += ", with " + ", ".join(repr(s) for s in others[:3])
                text += ", ..." if len(others) > 3 else ""
            text += ")"
        return text

    def _why_none(self, requirement: _Requirement) -> str:
        """Why a requirement admits no build at all ("" when it admits some)."""
        if requirement.mask:
            return ""
        name = requirement.spec.name
        if name.startswith("__"):
            virtual = self.virtual.get(name)
            if virtual is None:
                return (
                    f" (the {self.platform or 'target'} target has no {name}: declare it "
                    "under [system-requirements])"
                )
            return f" (the target has {name} {virtual.version})"
        records = self._candidates(name)
        if not records:
            return f" (no package named {name!r} in the channels)"
        versions = sorted({r.version for r in records}, key=parse_version)
        shown = ", ".join(versions[-6:])
        return f" (available versions: {'..., ' if len(versions) > 6 else ''}{shown})"

    def _direct_position(self, name: str) -> int:
        for i, spec in enumerate(self.direct):
            if spec.name == name:
                return i
        return len(self.direct)


class _Plain:
    """Decides a small, fully encoded problem: a variable left undecided counts as
    false, so only a clause that this would leave unmet asks for a decision (one of its
    undecided positive literals, true); when none does, every clause is met."""

    engine: Engine

    def __init__(self) -> None:
        self.clauses: list[list[int]] = []  # the problem's own clauses

    def on_true(self, var: int) -> None:
        pass

    def on_unassigned(self, vars_: list[int]) -> None:
        pass

    def on_conflict(self, vars_: list[int], bump: float) -> None:
        pass

    def decide(self) -> int:
        values = self.engine.values
        for clause in self.clauses:
            choice = -1
            for lit in clause:
                value = values[lit]
                if value == 1 or (value == 0 and lit & 1):
                    break  # met, or met by leaving its variable false
                if value == 0 and choice < 0:
                    choice = lit
            else:
                if choice >= 0:
                    return choice
        return DONE


def _roots(name: str, asked: Mapping[str, _Asked]) -> Iterator[str]:
    """The manifest's name at the start of the chain that brought ``name`` in."""
    seen: set[str] = set()
    while name not in seen:
        seen.add(name)
        first = asked.get(name)
        if first is None or first.parent is None:
            yield name
            return
        name = first.parent.name


def _positions(mask: int) -> Iterator[int]:
    """The set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _valid_version(text: str) -> bool:
    """Records with versions conda cannot order are left out (broken repodata)."""
    try:
        parse_version(text)
    except ValueError:
        return False
    return True


def _met(spec: MatchSpec, by_name: Mapping[str, _Record], *, required: bool) -> bool:
    record = by_name.get(spec.name)
    if record is None:
        return not required
    return spec.matches(record)
