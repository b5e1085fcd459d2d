"""The CDCL engine (lockenv.lock.conda.sat) against brute force on small random problems.

Problems mix every kind of clause the conda solver uses: plain clauses, at-most-one
groups, clauses added lazily when a variable becomes true, and "within" clauses (a head
literal or members of a group, as a requirement on a package name is).  Satisfiable
answers are checked against every clause; unsatisfiable ones by brute force, and their
`core` must be unsatisfiable on its own.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.lock.conda.sat import DONE, Engine


@dataclass
class Problem:
    """Decides variables in order, with a given polarity; adds clauses lazily."""

    polarity: list[bool]
    lazy: dict[int, list[tuple[list[int], tuple[int, int, int] | None]]]
    engine: Engine = field(init=False)
    added: dict[int, list[int]] = field(default_factory=dict)  # clause id -> literals

    def on_true(self, var: int) -> None:
        for lits, within in self.lazy.pop(var, []):
            self.added[self.engine.add_clause(list(lits), within=within)] = lits

    def on_unassigned(self, vars_: list[int]) -> None:
        pass

    def on_conflict(self, vars_: list[int], bump: float) -> None:
        pass

    def decide(self) -> int:
        values = self.engine.values
        for var, positive in enumerate(self.polarity):
            if values[2 * var] == 0:
                return 2 * var + (0 if positive else 1)
        return DONE


@st.composite
def problems(draw: st.DrawFn) -> dict[str, object]:
    n = draw(st.integers(1, 8))
    order = draw(st.permutations(list(range(n))))
    groups: list[list[int]] = []
    rest = list(order)
    while len(rest) >= 2 and draw(st.booleans()):
        size = draw(st.integers(2, min(4, len(rest))))
        groups.append(sorted(rest[:size]))
        rest = rest[size:]
    literal = st.integers(0, 2 * n - 1)
    clauses = draw(st.lists(st.lists(literal, min_size=0, max_size=4, unique=True), max_size=12))
    within: list[tuple[int, list[int], list[int]]] = []  # (head literal, group, members)
    for group in groups:
        for _ in range(draw(st.integers(0, 2))):
            members = draw(st.lists(st.sampled_from(group), unique=True, max_size=len(group)))
            head = draw(st.integers(-1, 2 * n - 1))
            within.append((head, group, sorted(members)))
    lazy_share = draw(st.floats(0, 1))
    polarity = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return {
        "n": n,
        "groups": groups,
        "clauses": clauses,
        "within": within,
        "lazy_share": lazy_share,
        "polarity": polarity,
    }


def satisfied(bits: tuple[int, ...], clauses: list[list[int]], groups: list[list[int]]) -> bool:
    if any(sum(bits[v] for v in group) > 1 for group in groups):
        return False
    return all(any(bits[lit >> 1] != lit & 1 for lit in clause) for clause in clauses)


def brute_force(n: int, clauses: list[list[int]], groups: list[list[int]]) -> bool:
    return any(satisfied(bits, clauses, groups) for bits in itertools.product((0, 1), repeat=n))


@settings(max_examples=400, deadline=None)
@given(problems())
def test_engine_agrees_with_brute_force(spec: dict[str, object]) -> None:
    n: int = spec["n"]  # type: ignore[assignment]
    groups: list[list[int]] = spec["groups"]  # type: ignore[assignment]
    problem = Problem(polarity=spec["polarity"], lazy={})  # type: ignore[arg-type]
    engine = Engine(problem)
    problem.engine = engine
    group_of: dict[int, int] = {}
    for group in groups:
        g = engine.new_group()
        for var in group:
            group_of[var] = g
    for var in range(n):
        engine.new_var(group_of.get(var, -1))
    everything: list[list[int]] = []
    share: float = spec["lazy_share"]  # type: ignore[assignment]
    items: list[tuple[list[int], tuple[int, int, int] | None]] = [
        (c, None)
        for c in spec["clauses"]  # type: ignore[attr-defined]
    ]
    for head, group, members in spec["within"]:  # type: ignore[attr-defined]
        ranks = sorted(group)  # engine ranks follow creation order within the group
        mask = sum(1 << ranks.index(m) for m in members)
        lits = ([head] if head >= 0 else []) + [2 * m for m in members]
        items.append((list(dict.fromkeys(lits)), (group_of[group[0]], mask, head)))
    for index, (lits, within) in enumerate(items):
        everything.append(lits)
        negative = [lit for lit in lits if lit & 1]
        if negative and (index * 0.618 % 1) < share:
            # Added only once the variable it is about becomes true, as package
            # dependencies are.
            problem.lazy.setdefault(negative[0] >> 1, []).append((lits, within))
        else:
            problem.added[engine.add_clause(list(lits), within=within)] = lits
    answer = engine.solve()
    assert answer == brute_force(n, everything, groups)
    if answer:
        bits = tuple(1 if engine.values[2 * v] == 1 else 0 for v in range(n))
        assert satisfied(bits, everything, groups)
    else:
        core, _pairs = engine.core()
        assert core <= set(problem.added)
        assert not brute_force(n, [problem.added[c] for c in core], groups)


def test_conflict_budget() -> None:
    # Pigeonhole 5 into 4: unsatisfiable, and no quick proof for a CDCL solver.
    holes, pigeons = 4, 5
    problem = Problem(polarity=[True] * (holes * pigeons), lazy={})
    engine = Engine(problem)
    problem.engine = engine
    for _ in range(holes * pigeons):
        engine.new_var()
    var = [[p * holes + h for h in range(holes)] for p in range(pigeons)]
    for p in range(pigeons):
        engine.add_clause([2 * v for v in var[p]])
    for h in range(holes):
        for a, b in itertools.combinations(range(pigeons), 2):
            engine.add_clause([2 * var[a][h] + 1, 2 * var[b][h] + 1])
    assert engine.solve(max_conflicts=3) is None
    assert engine.solve() is False


def _engine_with_group(size: int, extra: int) -> tuple[Engine, Problem, list[int], list[int]]:
    """An engine with one at-most-one group of ``size`` members (created first, so
    ranks are positions) and ``extra`` plain variables; decisions: every variable true,
    in order."""
    problem = Problem(polarity=[True] * (size + extra), lazy={})
    engine = Engine(problem)
    problem.engine = engine
    group = engine.new_group()
    members = [engine.new_var(group) for _ in range(size)]
    others = [engine.new_var() for _ in range(extra)]
    return engine, problem, members, others


def test_a_requirement_rules_out_the_other_members_at_its_heads_level() -> None:
    # b needs one of members 2-3 ("python 3.12.*"); b is a fact: members 0-1 are out at
    # level 0, before any decision, while 2-3 stay open.
    engine, _, members, (b,) = _engine_with_group(4, 1)
    engine.add_clause([2 * b])
    engine.add_clause([2 * b + 1, 2 * members[2], 2 * members[3]], within=(0, 0b1100, 2 * b + 1))
    assert engine.propagate() == -1
    assert [engine.value_of_var(m) for m in members] == [-1, -1, 0, 0]
    assert all(engine.level[m] == 0 for m in members[:2])


def test_a_conflict_caused_by_a_choice_rules_out_the_like_choices_at_once() -> None:
    # a needs z; every build of z needs one of members 10-19 (a newer "python"), but the
    # decisions try members 0-9 first.  One conflict, learned for the whole name,
    # rules out all ten, not one per member tried.
    engine, _, members, (a, z0, z1) = _engine_with_group(20, 3)
    newer = [2 * m for m in members[10:]]
    engine.add_clause([2 * a])
    engine.add_clause([2 * a + 1, 2 * z0, 2 * z1])
    for z in (z0, z1):
        engine.add_clause([2 * z + 1, *newer])
    assert engine.solve() is True
    assert engine.conflicts == 1
    assert engine.value_of_var(members[10]) == 1


def test_a_conflict_through_what_a_decision_implies_rules_out_every_like_decision() -> None:
    # Ten builds each imply n1 and n2 ("needs numpy from this set, python from that
    # one") by two-literal clauses, and n1 and n2 exclude each other through x.  The
    # first build decided fails; the conflict is learned over n1 and n2, not over that
    # build, and the other nine are ruled out before being decided: one conflict, not ten.
    engine, _, builds, (n1, n2, x, other) = _engine_with_group(10, 4)
    for build in builds:
        engine.add_clause([2 * build + 1, 2 * n1])
        engine.add_clause([2 * build + 1, 2 * n2])
    engine.add_clause([2 * n1 + 1, 2 * x])
    engine.add_clause([2 * n2 + 1, 2 * x + 1])
    engine.add_clause([*(2 * b for b in builds), 2 * other])
    assert engine.solve() is True
    assert engine.conflicts == 1
    learned = [engine.clauses[nid] for cuts in engine.cuts.values() for nid, _ in cuts]
    assert [sorted(lits) for lits in learned] == [[2 * n1 + 1, 2 * n2 + 1]]
    assert [engine.value_of_var(b) for b in builds] == [-1] * 10
    assert engine.value_of_var(other) == 1
