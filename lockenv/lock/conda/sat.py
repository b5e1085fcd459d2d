"""A conflict-driven clause-learning (CDCL) engine for package solving.

The engine knows nothing about packages: it decides boolean variables against clauses,
and asks its `Problem` (the conda side, `lockenv.lock.conda.solver`) what to decide next
and for more clauses as variables become true.  The design follows the family of
libsolv and resolvo — watched literals, first-UIP learning, backjumping, clauses added
lazily — written for Python's costs:

- Literals are ints, ``2 * var`` for "var is true" and ``2 * var + 1`` for "var is
  false", so negation is ``lit ^ 1`` and ``values[lit]`` (1 true, -1 false, 0 unset) is
  one list index.  Clauses of two literals live in per-literal implication lists; longer
  ones are watched on two literals (``clause[0]`` and ``clause[1]``).
- **At-most-one groups** (every build of one package name) are native: when a member
  becomes true every other member becomes false, with the pair ``(not chosen or not other)`` as
  the reason.  Written out as clauses that would be n² binary clauses per name.
- **Requirements exclude.**  A clause "``head`` or one of these members of a group" (a
  requirement on a package name, ``within``) is also read as "``head`` or none of the
  group's *other* members": once ``head`` is false, every member outside the
  requirement is made false at once, at ``head``'s level.  So a build that needs
  ``python 3.11.*`` rules out every other Python where it is installed, and whatever
  needs another Python goes with them, at that level: a conflict is then learned as
  "not that build", not as one clause per Python build tried in turn.
- **Lazy clauses.**  `Problem.on_true` may call `add_clause` while the search runs (a
  package's dependencies are only encoded once one of its builds is chosen or tried);
  a new clause is attached at the next propagation, where it may imply literals or
  conflict like any other.
- **Implications at their own level.**  A clause that becomes unit implies its literal
  at the highest level among its other literals, which can be below the current
  decision level (a lazily added clause, or a learned one under chronological
  backtracking).  The trail is then not sorted by level: backtracking keeps every
  literal at or below the target level, and conflict analysis works at the conflict's
  own level.  Without this, every dependency found impossible deep in the search would
  undo all decisions made since the level that made it impossible.
- **Learning.**  A conflict is analysed to its first unique implication point; the
  learned clause is kept, with the clauses it was derived from, so that an
  unsatisfiable problem yields the original clauses that prove it (`core`), which the
  conda side turns into an explanation.  When that point is a decided build and the
  conflict follows only from the other builds of its name being out, the clause is
  learned for the name instead (`Engine._analyze_by_name`): every build like it is
  ruled out at once.  When it follows only from what the decision implied by its
  two-literal clauses (a build's requirements, each a variable of its own), it is also
  learned over those (`Engine._learn_cut`): every build implying them all is ruled out
  before it is decided (`Engine._refuted`).  Backjumping is non-chronological unless the
  jump would undo more than `CHRONO_LIMIT` levels.

Nothing is ever removed: problems are a few thousand variables and conflicts few.
(Besides the problem's variables, the engine makes one of its own for each clause
learned by name; `Problem` callbacks receive them too, as variables with no record.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["DECISION", "DONE", "RETRY", "Engine", "Problem"]

#: ``reason`` of a decided variable.  Others: a clause id >= 0; ``-2 - 2 * chosen`` for a
#: member made false by the at-most-one group in which ``chosen`` is true; ``-3 - 2 * cid``
#: for a member made false by the requirement ``cid`` on its group (see `Engine._exclude`).
DECISION = -1
#: `Problem.decide` results besides a literal.
DONE = -1
RETRY = -2
#: Backjumps longer than this many levels go back one level only (chronological
#: backtracking); the asserted literal still gets its own, lower level.
CHRONO_LIMIT = 100
_NO_REASON = 1 << 62  # no clause has this id: `Engine._walk` without a decision
_NOT_FALSE = 1 << 30  # `_attach`'s rank of a literal not false (above any level)
_ACTIVITY_GROWTH = 1 / 0.95  # the bump grows instead of every activity decaying


class Problem(Protocol):
    """What the engine asks of the problem it solves."""

    def on_true(self, var: int) -> None:
        """``var`` became true (again): encode its clauses the first time."""

    def on_unassigned(self, vars_: list[int]) -> None:
        """These variables, true before, were unassigned by a backtrack."""

    def decide(self) -> int:
        """A literal to decide, `DONE` when every requirement is met, or `RETRY` after
        adding clauses that must be propagated before deciding."""

    def on_conflict(self, vars_: list[int], bump: float) -> None:
        """The variables of a learned clause: raise their activity by ``bump``."""


class Engine:
    """The CDCL search over the clauses and at-most-one groups of one `Problem`."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.values: list[int] = []  # by literal
        self.level: list[int] = []  # by variable
        self.reason: list[int] = []  # by variable
        self.group: list[int] = []  # by variable: its at-most-one group, or -1
        self.rank: list[int] = []  # by variable: its position in its group
        self.members: list[list[int]] = []  # by group
        self.chosen: list[int] = []  # by group: the true member, or -1
        self.clauses: list[list[int]] = []
        # By clause: (group, bitmask of members by rank, head) when the clause is
        # "head or one of those members" (head -1: none), as a requirement on a package
        # name is: the group's chosen member decides it without a look at its literals.
        self.within: list[tuple[int, int, int] | None] = []
        self.resume: list[int] = []  # by clause: where the search for a new watch resumes
        self.shortcuts: dict[tuple[int, int], int] = {}  # see `_shortcut`
        self.watches: list[list[int]] = []  # by literal: clauses watching it
        # By literal: the "within" clauses whose head is its negation (they exclude
        # their group's other members once it is true), and by such clause those members.
        self.excluding: list[list[int]] = []
        self.outside: dict[int, list[int]] = {}
        # By literal: [other, clause, other, clause...] of the two-literal clauses that
        # hold it: when it becomes false, ``other`` must be true.
        self.binaries: list[list[int]] = []
        self.derived: dict[int, list[int | tuple[int, int]]] = {}  # learned -> antecedents
        # Learned "not all of these" clauses over what decisions imply (`_learn_cut`): by
        # the literal whose truth makes the cut's first literal false, [(clause id, the
        # cut's literals), ...].
        self.cuts: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
        self.trail: list[int] = []
        self.trail_lim: list[int] = []  # trail index where each decision level starts
        self.qhead = 0
        self.pending: list[int] = []  # clauses added but not yet attached
        self.conflicts = 0
        self.decisions = 0
        self.bump = 1.0
        self.final: int = -1  # the clause found false at level 0, when unsatisfiable

    # -- building ------------------------------------------------------------------------

    def new_var(self, group: int = -1) -> int:
        """A new unassigned variable (member of at-most-one ``group``, if not -1)."""
        return self.new_vars(1, group)[0]

    def new_vars(self, count: int, group: int = -1) -> range:
        """``count`` new unassigned variables at once (members of at-most-one ``group``,
        if not -1)."""
        first = len(self.level)
        created = range(first, first + count)
        self.values += [0] * (2 * count)
        self.level += [0] * count
        self.reason += [DECISION] * count
        self.group += [group] * count
        self.watches += [[] for _ in range(2 * count)]
        self.binaries += [[] for _ in range(2 * count)]
        self.excluding += [[] for _ in range(2 * count)]
        if group >= 0:
            members = self.members[group]
            self.rank += range(len(members), len(members) + count)
            members += created
        else:
            self.rank += [-1] * count
        return created

    def new_group(self) -> int:
        """A new, empty at-most-one group."""
        self.members.append([])
        self.chosen.append(-1)
        return len(self.members) - 1

    def add_clause(
        self,
        lits: list[int],
        derived_from: Sequence[int | tuple[int, int]] | None = None,
        within: tuple[int, int, int] | None = None,
    ) -> int:
        """Add a clause (distinct literals, at least one true); returns its id.

        May be called at any time, also during the search: the clause is attached (and
        propagated, or found in conflict) by the next `propagate`.  ``derived_from``:
        the clauses it follows from, when it is not one of the problem's own (`core`
        then explains it by them).  ``within``: (group, mask, head) when the clause is
        ``head`` (a literal, or -1 for none) plus the members of that group whose rank
        bits the mask sets (a requirement on a package name).
        """
        cid = len(self.clauses)
        self.clauses.append(lits)
        self.within.append(within)
        self.resume.append(2)
        self.pending.append(cid)
        if derived_from is not None:
            self.derived[cid] = list(derived_from)
        if within is not None and within[2] >= 0:
            self.excluding[within[2] ^ 1].append(cid)
        return cid

    # -- search --------------------------------------------------------------------------

    def solve(self, max_conflicts: int | None = None) -> bool | None:
        """Search until every requirement is met (True) or none can be (False); None
        when ``max_conflicts`` conflicts came first."""
        problem = self.problem
        limit = self.conflicts + max_conflicts if max_conflicts is not None else -1
        while True:
            conflict = self.propagate()
            if conflict >= 0:
                if self.conflicts == limit:
                    return None
                if not self._resolve(conflict):
                    return False
                continue
            lit = problem.decide()
            if lit == RETRY:
                continue
            if lit == DONE:
                return True
            if self.cuts and self._refuted(lit):
                continue
            self.decisions += 1
            self.trail_lim.append(len(self.trail))
            self._assign(lit, len(self.trail_lim), DECISION)

    def value_of_var(self, var: int) -> int:
        """1 true, -1 false, 0 unassigned."""
        return self.values[2 * var]

    def _assign(self, lit: int, level: int, reason: int) -> None:
        values = self.values
        values[lit] = 1
        values[lit ^ 1] = -1
        var = lit >> 1
        self.level[var] = level
        self.reason[var] = reason
        self.trail.append(lit)

    def propagate(self) -> int:
        """Unit propagation to a fixed point; a false clause's id, or -1."""
        values = self.values
        level = self.level
        trail = self.trail
        clauses = self.clauses
        watches = self.watches
        binaries = self.binaries
        group = self.group
        within = self.within
        resume = self.resume
        chosen = self.chosen
        rank = self.rank
        problem = self.problem
        while True:
            if self.pending:
                pending, self.pending = self.pending, []
                for index, cid in enumerate(pending):
                    conflict = cid if self._attach(cid) else self._exclude_on_attach(cid)
                    if conflict >= 0:
                        self.pending = pending[index + 1 :] + self.pending
                        return conflict
                continue
            if self.qhead >= len(trail):
                return -1
            lit = trail[self.qhead]
            self.qhead += 1
            var = lit >> 1
            if not lit & 1:
                g = group[var]
                if g >= 0:
                    conflict = self._choose(g, var)
                    if conflict >= 0:
                        return conflict
                problem.on_true(var)
            false = lit ^ 1
            implied_level = level[var]
            pairs = binaries[false]
            for i in range(0, len(pairs), 2):
                other = pairs[i]
                value = values[other]
                if value == 1:
                    continue
                if value == -1:
                    return pairs[i + 1]
                self._assign(other, implied_level, pairs[i + 1])
            watching = watches[false]
            i = j = 0
            end = len(watching)
            while i < end:
                cid = watching[i]
                i += 1
                clause = clauses[cid]
                if clause[0] == false:
                    clause[0] = clause[1]
                    clause[1] = false
                first = clause[0]
                if values[first] == 1:
                    watching[j] = cid
                    j += 1
                    continue
                members = within[cid]
                if members is not None:
                    member = chosen[members[0]]
                    if member >= 0:
                        if members[1] >> rank[member] & 1:
                            if level[member] <= implied_level:
                                # The chosen member, assigned no later than this
                                # literal's falsity, meets the clause: keep the watch
                                # (valid until that member is undone), skip the scan.
                                watching[j] = cid
                                j += 1
                                continue
                        else:
                            # Every member the clause names is out: it says no more
                            # than "not both ``head`` false and the chosen member".
                            head = members[2]
                            if head < 0 or values[head] != 1:
                                reason = self._shortcut(cid, head, member)
                                if head < 0 or values[head] == -1:
                                    watching[j:] = watching[i - 1 : end]
                                    return reason
                                self._assign(head, level[member], reason)
                            watching[j] = cid
                            j += 1
                            continue
                # Look for a new watch where the last search ended: long clauses
                # (a requirement's builds, learned clauses) are not rescanned from
                # the start each time.
                size = len(clause)
                start = resume[cid]
                found = 0
                if start < size:
                    for k in range(start, size):
                        if values[clause[k]] != -1:
                            found = k
                            break
                if not found:
                    for k in range(2, min(start, size)):
                        if values[clause[k]] != -1:
                            found = k
                            break
                if found:
                    candidate = clause[found]
                    clause[1] = candidate
                    clause[found] = false
                    watches[candidate].append(cid)
                    resume[cid] = found
                else:
                    watching[j] = cid
                    j += 1
                    if values[first] == -1:
                        watching[j:] = watching[i:end]
                        return cid
                    top = 0
                    for other in clause[1:]:
                        other_level = level[other >> 1]
                        if other_level > top:
                            top = other_level
                    self._assign(first, top, cid)
            del watching[j:]
            for cid in self.excluding[lit]:
                conflict = self._exclude(cid, implied_level)
                if conflict >= 0:
                    return conflict

    def _choose(self, g: int, var: int) -> int:
        """``var`` of group ``g`` is true: every other member false; a conflict or -1."""
        current = self.chosen[g]
        if current >= 0 and current != var:
            return self._pair_conflict(current, var)
        self.chosen[g] = var
        values = self.values
        implied_level = self.level[var]
        reason = -2 - 2 * var
        for other in self.members[g]:
            if other == var:
                continue
            value = values[2 * other]
            if value == 0:
                self._assign(2 * other + 1, implied_level, reason)
            elif value == 1:
                return self._pair_conflict(var, other)
        return -1

    def _exclude_on_attach(self, cid: int) -> int:
        """A requirement attached when its head is false already (or it has none):
        exclude the members outside it now; a conflict or -1."""
        within = self.within[cid]
        if within is None:
            return -1
        head = within[2]
        if head < 0:
            return self._exclude(cid, 0)
        if self.values[head] == -1:
            return self._exclude(cid, self.level[head >> 1])
        return -1

    def _exclude(self, cid: int, at_level: int) -> int:
        """The head of requirement ``cid`` is false (since ``at_level``): every member of
        its group outside it is false from that level; a conflict or -1."""
        within = self.within[cid]
        assert within is not None
        g, mask, head = within
        level = self.level
        chosen = self.chosen[g]
        if chosen >= 0 and mask >> self.rank[chosen] & 1 and level[chosen] <= at_level:
            return -1  # the at-most-one group has excluded them as early
        outside = self.outside.get(cid)
        if outside is None:
            members = self.members[g]
            outside = [members[i] for i in range(len(members)) if not mask >> i & 1]
            self.outside[cid] = outside
        values = self.values
        reason = -3 - 2 * cid
        for other in outside:
            value = values[2 * other]
            if value == 0:
                self._assign(2 * other + 1, at_level, reason)
            elif value == 1:
                return self._shortcut(cid, head, other)
        return -1

    def _shortcut(self, cid: int, head: int, member: int) -> int:
        """The clause "``head`` or not ``member``", implied by clause ``cid`` (a
        requirement whose members all lie outside ``member``'s choice) and the group's
        at-most-one; made once per pair, then propagated like any two-literal clause."""
        key = (cid, member)
        found = self.shortcuts.get(key)
        if found is not None:
            return found
        lits = [2 * member + 1] if head < 0 else [head, 2 * member + 1]
        found = len(self.clauses)
        self.clauses.append(lits)
        self.within.append(None)
        self.resume.append(2)
        self.derived[found] = [cid]
        if head >= 0:
            self.binaries[head].extend((2 * member + 1, found))
            self.binaries[2 * member + 1].extend((head, found))
        # (A one-literal clause is only ever a conflict: it is then asserted at level 0.)
        self.shortcuts[key] = found
        return found

    def _pair_conflict(self, a: int, b: int) -> int:
        """Two members of one group are true: the clause (not a or not b), as a conflict."""
        cid = len(self.clauses)
        self.clauses.append([2 * a + 1, 2 * b + 1])
        self.within.append(None)
        self.resume.append(2)
        self.binaries[2 * a + 1].extend((2 * b + 1, cid))
        self.binaries[2 * b + 1].extend((2 * a + 1, cid))
        self.derived[cid] = [(a, b)]
        return cid

    def _attach(self, cid: int) -> bool:
        """Watch a new clause; assign what it implies.  True when it is false."""
        clause = self.clauses[cid]
        values = self.values
        level = self.level
        if not clause:
            return True
        if len(clause) == 2:
            # Most clauses (a build's requirements and constraints): the scan below,
            # without the loop.  The literal not false, or false at the higher level,
            # goes first.
            first, second = clause
            first_value = values[first]
            second_value = values[second]
            if first_value == -1 and (second_value != -1 or level[second >> 1] > level[first >> 1]):
                clause[0], clause[1] = first, second = second, first
                first_value, second_value = second_value, first_value
            self.binaries[first].extend((second, cid))
            self.binaries[second].extend((first, cid))
            if first_value == -1:
                return True
            if first_value == 0 and second_value == -1:
                self._assign(first, level[second >> 1], cid)
            return False
        if len(clause) == 1:
            lit = clause[0]
            value = values[lit]
            if value == -1:
                return True
            if value == 0:
                self._assign(lit, 0, cid)
            elif level[lit >> 1] > 0:
                # True already, but by later decisions: make it a fact.
                level[lit >> 1] = 0
                self.reason[lit >> 1] = cid
            return False
        # Watch the first two non-false literals, or else the false ones of the highest
        # levels (a scan that mostly stops after two: no sort of a long requirement).
        best = runner_up = -1
        best_key = runner_up_key = -1
        for index, lit in enumerate(clause):
            key = _NOT_FALSE if values[lit] != -1 else level[lit >> 1]
            if key > best_key:
                runner_up, runner_up_key = best, best_key
                best, best_key = index, key
            elif key > runner_up_key:
                runner_up, runner_up_key = index, key
                if key == _NOT_FALSE:
                    break
        clause[0], clause[best] = clause[best], clause[0]
        if runner_up == 0:
            runner_up = best  # moved there by the swap
        clause[1], clause[runner_up] = clause[runner_up], clause[1]
        first, second = clause[0], clause[1]
        if len(clause) == 2:
            self.binaries[first].extend((second, cid))
            self.binaries[second].extend((first, cid))
        else:
            self.watches[first].append(cid)
            self.watches[second].append(cid)
        if values[first] == -1:
            return True
        if values[first] == 0 and values[second] == -1:
            self._assign(first, level[second >> 1], cid)
        return False

    # -- conflicts -----------------------------------------------------------------------

    def reason_literals(self, var: int) -> list[int]:
        """The clause that implied ``var``'s value (its own literal included)."""
        reason = self.reason[var]
        if reason >= 0:
            return self.clauses[reason]
        if reason & 1:
            within = self.within[(-3 - reason) >> 1]
            assert within is not None
            return [2 * var + 1] if within[2] < 0 else [2 * var + 1, within[2]]
        return [2 * var + 1, 2 * ((-2 - reason) >> 1) + 1]

    def _antecedent(self, var: int) -> int | tuple[int, int]:
        """What implied ``var``, for `core`: a clause id, an at-most-one pair (chosen,
        var), or (-1 - requirement, var) for an exclusion by a requirement."""
        reason = self.reason[var]
        if reason >= 0:
            return reason
        if reason & 1:
            return (-1 - ((-3 - reason) >> 1), var)
        return ((-2 - reason) >> 1, var)

    def _resolve(self, cid: int) -> bool:
        """Learn from the false clause ``cid`` and backjump; False when unsatisfiable."""
        self.conflicts += 1
        level = self.level
        clause = self.clauses[cid]
        top = max((level[lit >> 1] for lit in clause), default=0)
        if top == 0:
            self.final = cid
            return False
        at_top = [lit for lit in clause if level[lit >> 1] == top]
        if len(at_top) == 1:
            # Only one literal at the conflict's level: the clause was unit one level
            # down and its implication was missed there; make it now.
            lower = max((level[lit >> 1] for lit in clause if level[lit >> 1] < top), default=0)
            self.backtrack(top - 1)
            self._assign(at_top[0], lower, cid)
            return True
        self.backtrack(top)
        learned, antecedents = self._analyze(cid, top)
        uip = learned[0] >> 1
        if learned[0] & 1 and self.reason[uip] == DECISION and self.group[uip] >= 0:
            # "Not this build": try "not any build of the name like this one" instead.
            general = self._analyze_by_name(cid, top, uip)
            if general is not None:
                learned, antecedents = general
        cut = None
        if learned[0] & 1 and self.reason[uip] == DECISION:
            cut = self._walk(cid, top, uip, by_implication=True)
        assert_level = max((level[lit >> 1] for lit in learned[1:]), default=0)
        self.backtrack(assert_level if top - assert_level <= CHRONO_LIMIT else top - 1)
        new = len(self.clauses)
        self.clauses.append(learned)
        self.within.append(None)
        self.resume.append(2)
        self.derived[new] = antecedents
        if len(learned) >= 2:
            # Watch the asserted literal and the false one of the highest level.
            best = max(range(1, len(learned)), key=lambda i: level[learned[i] >> 1])
            learned[1], learned[best] = learned[best], learned[1]
            if len(learned) == 2:
                self.binaries[learned[0]].extend((learned[1], new))
                self.binaries[learned[1]].extend((learned[0], new))
            else:
                self.watches[learned[0]].append(new)
                self.watches[learned[1]].append(new)
        self._assign(learned[0], assert_level, new)
        if cut is not None and cut[1]:
            self._learn_cut(cut)
        self.problem.on_conflict([lit >> 1 for lit in learned], self.bump)
        self.bump *= _ACTIVITY_GROWTH
        return True

    def _analyze(self, cid: int, top: int) -> tuple[list[int], list[int | tuple[int, int]]]:
        """First-UIP analysis at level ``top``: the learned clause (asserted literal
        first) and the clauses (or at-most-one pairs) it was derived from."""
        walked = self._walk(cid, top, -1)
        assert walked is not None
        learned, _members, _mask, antecedents, seen = walked
        return self._minimize(learned, seen, antecedents), antecedents

    def _analyze_by_name(
        self, cid: int, top: int, decision: int
    ) -> tuple[list[int], list[int | tuple[int, int]]] | None:
        """The conflict learned for the whole name of ``decision`` (the top level's
        decision, a member of an at-most-one group), or None when it cannot be.

        First-UIP analysis learns "not ``decision``" when the conflict follows from the
        group's other members being false because ``decision`` is chosen: ``python
        3.11.2`` leaves no usable build of some package that exists for other Pythons.
        Then ``python 3.11.1`` is tried, and fails the same way, one build at a time.
        Resolving every literal of the level except those members gives instead
        "``rest`` or one of these members": once ``rest`` is false, the name must be one
        of the members, so every other build of it is out at once.  Written as
        ``(aux or rest)`` and the requirement ``(not aux or members)`` on a new variable
        ``aux``, whose exclusion (`_exclude`) rules the others out.  The learned clause
        returned is ``(aux or rest)``, asserting ``aux``.
        """
        walked = self._walk(cid, top, decision)
        if walked is None:
            return None
        rest, members, mask, antecedents, _seen = walked
        if not members:
            return None
        aux = self.new_var()
        self.add_clause(
            [2 * aux + 1, *members],
            derived_from=[],
            within=(self.group[decision], mask, 2 * aux + 1),
        )
        rest[0] = 2 * aux
        return rest, antecedents

    def _walk(
        self, cid: int, top: int, decision: int, *, by_implication: bool = False
    ) -> tuple[list[int], list[int], int, list[int | tuple[int, int]], set[int]] | None:
        """Resolve the false clause ``cid`` back along the trail at level ``top``.

        With ``decision`` -1: to the first unique implication point, whose negation is
        the returned clause's first literal.  Otherwise every literal of the level is
        resolved except those ``decision`` (the level's decision) implied directly, which
        are returned apart: the members its at-most-one group made false (with their
        rank mask), or with ``by_implication`` the literals its two-literal clauses
        implied; None when the conflict needs ``decision`` in another way.  Also
        returned: the antecedents and the variables seen.
        """
        level = self.level
        reason = self.reason
        rank = self.rank
        trail = self.trail
        clauses = self.clauses
        by_choice = -2 - 2 * decision if decision >= 0 and not by_implication else _NO_REASON
        negated = 2 * decision + 1 if by_implication else -1
        seen: set[int] = set()
        apart: set[int] = set()
        learned: list[int] = [0]  # the first literal is filled in last
        members: list[int] = []
        mask = 0
        antecedents: list[int | tuple[int, int]] = [cid]
        at_top = 0
        clause = clauses[cid]
        skip = -1
        index = len(trail) - 1
        while True:
            for lit in clause:
                var = lit >> 1
                if var == skip or var in seen:
                    continue
                seen.add(var)
                var_level = level[var]
                if var_level == top:
                    why = reason[var]
                    if why == by_choice:
                        members.append(lit)
                        apart.add(var)
                        mask |= 1 << rank[var]
                    elif why >= 0 and len(clauses[why]) == 2 and negated in clauses[why]:
                        members.append(lit)
                        apart.add(var)
                    elif var == decision:
                        return None  # the conflict needs the decision itself
                    else:
                        at_top += 1
                elif var_level > 0:
                    learned.append(lit)
            if at_top == 0:  # (only when resolving all but what the decision implied)
                break
            while True:
                lit = trail[index]
                index -= 1
                var = lit >> 1
                if var in seen and level[var] == top and var not in apart:
                    break
            at_top -= 1
            if at_top == 0 and decision < 0:
                learned[0] = lit ^ 1
                break
            antecedents.append(self._antecedent(var))
            clause = self.reason_literals(var)
            skip = var
        return learned, members, mask, antecedents, seen

    def _learn_cut(
        self, walked: tuple[list[int], list[int], int, list[int | tuple[int, int]], set[int]]
    ) -> None:
        """Learn the conflict over what the decision implied, not the decision.

        A build conflicts through its requirements: ``numpy`` from this set of builds
        and ``python`` from that one leave nothing for some third name.  First-UIP
        learning says "not this build", and the next build that requires the same two
        sets (its other Python variants, its neighbour versions) is decided and fails the
        same way.  Stopping the resolution at the literals the decision implied by its
        two-literal clauses (the requirements' ``need`` variables) gives "not all of
        these, or ``rest``", true for every build that implies them all.  It propagates
        as any clause once all but one hold, and `_refuted` applies it to a decision
        before it is made."""
        rest, cut, _mask, antecedents, seen = walked
        rest[0] = cut[0]
        lits = cut + self._minimize(rest, seen, antecedents)[1:]
        nid = self.add_clause(lits, derived_from=antecedents)
        self.cuts.setdefault(cut[0] ^ 1, []).append((nid, tuple(cut)))

    def _refuted(self, lit: int) -> bool:
        """Whether a learned cut (`_learn_cut`) rules out deciding ``lit``: its two-literal
        clauses imply all of the cut, and the rest of that clause is false.  Then the
        clause "not ``lit`` or the rest" is added instead of the decision."""
        implied = self.binaries[lit ^ 1]
        found = None
        for i in range(0, len(implied), 2):
            candidates = self.cuts.get(implied[i])
            if candidates is None:
                continue
            if found is None:
                found = {implied[k] ^ 1: implied[k + 1] for k in range(0, len(implied), 2)}
            values = self.values
            for nid, cut in candidates:
                if not all(c in found for c in cut):
                    continue
                rest = [other for other in self.clauses[nid] if other not in cut]
                if all(values[other] == -1 for other in rest):
                    self.add_clause([lit ^ 1, *rest], derived_from=[nid, *(found[c] for c in cut)])
                    return True
        return False

    def _minimize(
        self, learned: list[int], seen: set[int], antecedents: list[int | tuple[int, int]]
    ) -> list[int]:
        """Drop literals whose reason lies entirely within the clause (or at level 0)."""
        level = self.level
        reason = self.reason
        kept = [learned[0]]
        for lit in learned[1:]:
            var = lit >> 1
            why = reason[var]
            if why == DECISION:
                kept.append(lit)
                continue
            others = [o >> 1 for o in self.reason_literals(var) if o >> 1 != var]
            if all(o in seen or level[o] == 0 for o in others):
                antecedents.append(self._antecedent(var))
            else:
                kept.append(lit)
        return kept

    def backtrack(self, target: int) -> None:
        """Undo every assignment above level ``target``; keep the lower ones."""
        if len(self.trail_lim) <= target:
            return
        start = self.trail_lim[target]
        values = self.values
        level = self.level
        group = self.group
        chosen = self.chosen
        trail = self.trail
        kept: list[int] = []
        undone: list[int] = []
        for lit in trail[start:]:
            var = lit >> 1
            if level[var] <= target:
                kept.append(lit)
                continue
            values[lit] = 0
            values[lit ^ 1] = 0
            if not lit & 1:
                undone.append(var)
                g = group[var]
                if g >= 0 and chosen[g] == var:
                    chosen[g] = -1
        del trail[start:]
        trail.extend(kept)
        del self.trail_lim[target:]
        # Kept literals are propagated again: what they implied above the target is gone.
        self.qhead = min(self.qhead, start)
        if undone:
            self.problem.on_unassigned(undone)

    def core(self) -> tuple[set[int], set[tuple[int, int]]]:
        """After `solve` returned False: the original clauses (ids) and at-most-one pairs
        (chosen, other) that together admit no solution."""
        clauses: set[int] = set()
        pairs: set[tuple[int, int]] = set()
        excluded: set[tuple[int, int]] = set()
        visited_vars: set[int] = set()
        done: set[int] = set()
        stack: list[int | tuple[int, int]] = [self.final]
        while stack:
            item = stack.pop()
            if isinstance(item, tuple) and item[0] < 0:
                # Excluded by a requirement: the requirement and the at-most-one group
                # (its literals' reasons are not needed: only the head's is).
                if item in excluded:
                    continue
                excluded.add(item)
                cid = -1 - item[0]
                if cid in self.derived:
                    stack.append(cid)
                else:
                    clauses.add(cid)
                within = self.within[cid]
                assert within is not None
                lits = [within[2]] if within[2] >= 0 else []
            elif isinstance(item, tuple):
                if item in pairs:
                    continue
                pairs.add(item)
                lits = [2 * item[0] + 1, 2 * item[1] + 1]
            else:
                if item in done:
                    continue
                done.add(item)
                derived = self.derived.get(item)
                if derived is not None:
                    stack.extend(derived)
                    lits = self.clauses[item]
                else:
                    clauses.add(item)
                    lits = self.clauses[item]
            for lit in lits:
                var = lit >> 1
                if var in visited_vars or self.values[lit] != -1 or self.level[var] != 0:
                    continue
                visited_vars.add(var)
                if self.reason[var] != DECISION:
                    stack.append(self._antecedent(var))
        return clauses, pairs
