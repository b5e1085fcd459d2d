"""conda's order of preference among the builds of one package name.

The solver (`lockenv.lock.conda.solver`) always tries the first build that the
requirements still allow, in this order, best first:

1. fewer ``track_features`` (a build that tracks a feature, such as an ``mkl`` or
   ``pypy`` variant, is only taken when asked for);
2. the higher version;
3. the higher build number;
4. among builds equal in all of the above, the one whose dependencies allow the newer
   versions: for every package name that all of these builds depend on, in
   alphabetical order, compare the newest version each build's requirement on it
   admits (a build with a ``track_features`` newest version counts as older; when a
   build names a package twice, the stricter requirement counts).  So the ``py312``
   build of ``numpy 1.26.4`` comes before the ``py311`` one, and the build for the
   newest ``libblas`` before an older one;
5. the newer timestamp.

This is conda's order and rattler's (``rattler_solve``'s ``SolvableSorter``), so that
a lock picks what ``conda`` and ``pixi`` would.  The first three make one sort key
(`by_key`); step 4 needs the other names' records, so it runs only inside groups equal
in 1-3 (`order_group`), and the solver runs it only for the groups it picks from.
Builds whose dependencies cannot be parsed sort after the others of their group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cmp_to_key
from itertools import groupby
from typing import Protocol, TypeVar

from lockenv.lock.conda.matchspec import MatchSpec
from lockenv.lock.conda.version import VersionOrder

__all__ = ["Newest", "Orderable", "by_key", "order_builds", "order_group"]

#: The newest version a requirement admits, and whether that version tracks features.
Newest = tuple[bool, VersionOrder] | None


class Orderable(Protocol):
    """What ordering reads from a record."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def build_number(self) -> int: ...

    @property
    def track_features(self) -> tuple[str, ...]: ...

    @property
    def depends(self) -> tuple[str, ...]: ...

    @property
    def timestamp(self) -> int | None: ...


R = TypeVar("R", bound=Orderable)


def order_builds(
    records: Sequence[R],
    *,
    version_of: Callable[[str], VersionOrder],
    parse_spec: Callable[[str], MatchSpec],
    newest: Callable[[MatchSpec], Newest],
) -> list[R]:
    """``records`` (of one name, valid versions only) in conda's order, best first.

    ``newest(spec)`` is the newest (has track features, version) among the records
    ``spec`` matches, or None when it matches none.
    """
    ordered, groups = by_key(records, version_of=version_of)
    result: list[R] = []
    for start, end in groups:
        group = ordered[start:end]
        result += order_group(group, parse_spec=parse_spec, newest=newest)
    return result


def by_key(
    records: Sequence[R], *, version_of: Callable[[str], VersionOrder]
) -> tuple[list[R], list[tuple[int, int]]]:
    """Steps 1-3: ``records`` sorted by them, and the (start, end) spans of the groups
    of records equal in all three (which `order_group` puts in order)."""

    # Versions compared once each, as the distinct version texts (a name has far fewer
    # than builds), then every record by plain integers: equal versions ("1.0", "1.0.0")
    # share a rank.
    texts = sorted({r.version for r in records}, key=version_of)
    rank = {
        text: i
        for i, (_version, equal) in enumerate(groupby(texts, key=version_of))
        for text in equal
    }
    keyed = sorted(
        (((-len(r.track_features), rank[r.version], r.build_number), r) for r in records),
        key=lambda item: item[0],
        reverse=True,
    )
    groups: list[tuple[int, int]] = []
    start = 0
    while start < len(keyed):
        head = keyed[start][0]
        end = start + 1
        while end < len(keyed) and keyed[end][0] == head:
            end += 1
        groups.append((start, end))
        start = end
    return [r for _, r in keyed], groups


def order_group(
    group: Sequence[R],
    *,
    parse_spec: Callable[[str], MatchSpec],
    newest: Callable[[MatchSpec], Newest],
) -> list[R]:
    """Steps 4-5, for records equal in steps 1-3."""
    if len(group) < 2:
        return list(group)
    return _by_dependencies(list(group), parse_spec, newest)


def _by_dependencies(
    group: list[R],
    parse_spec: Callable[[str], MatchSpec],
    newest: Callable[[MatchSpec], Newest],
) -> list[R]:
    """Step 4 and 5 of the order, for builds equal in steps 1-3."""
    known: list[tuple[R, dict[str, list[MatchSpec]]]] = []
    unknown: list[R] = []
    for record in group:
        by_name: dict[str, list[MatchSpec]] = {}
        try:
            for text in record.depends:
                spec = parse_spec(text)
                by_name.setdefault(spec.name, []).append(spec)
        except ValueError:
            unknown.append(record)
            continue
        known.append((record, by_name))
    shared = sorted(set.intersection(*(set(deps) for _, deps in known))) if known else []
    scores: dict[int, list[Newest]] = {}
    for record, deps in known:
        scores[id(record)] = [_strictest([newest(s) for s in deps[name]]) for name in shared]

    def compare(a: R, b: R) -> int:
        for mine, theirs in zip(scores[id(a)], scores[id(b)], strict=True):
            if mine is None and theirs is None:
                continue
            if theirs is None:
                return -1
            if mine is None:
                return 1
            if mine != theirs:
                # Better: no track features, then the higher version.
                return -1 if (not mine[0], mine[1]) > (not theirs[0], theirs[1]) else 1
        return (b.timestamp or 0) - (a.timestamp or 0)

    ordered = sorted((record for record, _ in known), key=cmp_to_key(compare))
    return ordered + sorted(unknown, key=lambda r: -(r.timestamp or 0))


def _strictest(newest: list[Newest]) -> Newest:
    """Of a build's requirements on one name, the one admitting the oldest newest."""
    found = [n for n in newest if n is not None]
    if not found:
        return None
    return min(found, key=lambda n: (not n[0], n[1]))
