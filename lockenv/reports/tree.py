"""``lockenv tree``: the locked packages of one environment and platform as a dependency tree.

The edges come from the lock alone: PyPI ``requires-dist`` evaluated with the target
platform's marker environment (and the extras each edge asks for), conda ``depends``.
A PyPI requirement met by a conda package (a mixed environment) points at that conda
package.  Roots are the environment's direct requirements, as the manifest asked them.

A subtree is printed in full the first time it appears; later appearances are marked
``(*)``, as ``uv tree`` and ``pixi tree`` do, so shared dependencies (and cycles) do not
repeat.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from lockenv.errors import LockfileError, UsageError
from lockenv.lock.satisfy import applies, parse_requirements
from lockenv.lockfile import CondaArtifact, Lockfile, PypiArtifact
from lockenv.platforms import get_platform, marker_environment

__all__ = ["NodeKind", "TreeNode", "conda_spec_name", "dependency_tree", "render_tree"]

NodeKind = Literal["pypi", "conda", "virtual", "missing"]
_Key = tuple[NodeKind, str]

_CONDA_NAME_END = re.compile(r"[\s=<>!~\[]")


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeNode:
    """One package in the tree.

    ``kind`` is "virtual" for conda virtual packages (``__glibc``...) and "missing" for a
    requirement nothing in the lock meets; both have no version.  ``extras`` are the
    extras the edge into this node asks for (shown ``name[extra]``); ``requested`` is the
    requirement as the parent (or the manifest) wrote it.  ``repeated`` marks a subtree
    already shown above: its children are left out.  In an inverted tree ``children``
    are the packages that depend on this one.
    """

    name: str
    version: str | None
    kind: NodeKind
    extras: tuple[str, ...] = ()
    requested: str | None = None
    repeated: bool = False
    children: tuple[TreeNode, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "extras": list(self.extras),
            "requested": self.requested,
            "repeated": self.repeated,
            "children": [child.to_json() for child in self.children],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Edge:
    """One requirement of a package in the tree: whom it leads to, and why."""

    target: _Key
    requested: str
    extras: tuple[str, ...] = ()  # the extras asked of the target
    via: str | None = None  # the parent's extra that brings this edge (None: always)


def conda_spec_name(spec: str) -> str:
    """The package name a conda MatchSpec string (``conda-forge::numpy >=1.26``) names."""
    from lockenv.lock.conda.matchspec import InvalidMatchSpec, MatchSpec

    try:
        return MatchSpec.parse(spec).name
    except InvalidMatchSpec:
        # A spec this lockenv cannot parse still names its package first.
        tail = spec.strip().split("::")[-1]
        return _CONDA_NAME_END.split(tail, maxsplit=1)[0].lower()


def _requested_text(requirement: Requirement) -> str:
    """The requirement without its marker: markers were evaluated for this platform."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    url = f" @ {requirement.url}" if requirement.url else ""
    return f"{requirement.name}{extras}{requirement.specifier}{url}"


class _Graph:
    """The locked packages of one environment and platform, with their edges."""

    def __init__(self, lock: Lockfile, env: str, platform: str) -> None:
        self.env = lock.environment(env)
        self.platform = platform
        artifacts = lock.packages_for(env, platform)
        self.pypi: dict[str, PypiArtifact] = {
            canonicalize_name(a.name): a for a in artifacts if isinstance(a, PypiArtifact)
        }
        self.conda = {a.name: a for a in artifacts if isinstance(a, CondaArtifact)}
        # Without the manifest's conda-pypi-map, a conda package is taken to provide the
        # PyPI distribution of its own (normalized) name.
        self.conda_by_pypi = {canonicalize_name(name): name for name in self.conda}
        self._markers: dict[str, str] | None = None
        self._edges: dict[tuple[_Key, tuple[str, ...]], list[_Edge]] = {}

    # -- facts ------------------------------------------------------------------------

    @property
    def markers(self) -> dict[str, str]:
        if self._markers is None:
            text = self.env.python
            if text is None and "python" in self.conda:
                text = self.conda["python"].version
            try:
                python = Version(text) if text is not None else None
            except InvalidVersion:
                python = None
            if python is None:
                raise LockfileError(
                    f"environment {self.env.name!r} pins PyPI packages on {self.platform} but "
                    "locks no Python version to evaluate their markers with; run `lockenv lock`"
                )
            self._markers = marker_environment(get_platform(self.platform), python)
        return self._markers

    def version(self, key: _Key) -> str | None:
        kind, name = key
        if kind == "pypi":
            return self.pypi[name].version
        if kind == "conda":
            return self.conda[name].version
        return None

    def locked_keys(self) -> list[_Key]:
        keys: list[_Key] = [("conda", n) for n in self.conda]
        keys += [("pypi", n) for n in self.pypi]
        return sorted(keys, key=_key_order)

    def find(self, name: str) -> list[_Key]:
        """The locked packages called ``name`` (conda and PyPI spellings both tried)."""
        found: list[_Key] = []
        if name.lower() in self.conda:
            found.append(("conda", name.lower()))
        normalized = canonicalize_name(name)
        if normalized in self.pypi:
            found.append(("pypi", normalized))
        return found

    # -- edges ------------------------------------------------------------------------

    def _pypi_target(self, name: str) -> _Key:
        normalized = canonicalize_name(name)
        if normalized in self.pypi:
            return ("pypi", normalized)
        if normalized in self.conda_by_pypi:
            return ("conda", self.conda_by_pypi[normalized])
        return ("missing", normalized)

    def _conda_target(self, spec: str) -> _Key:
        name = conda_spec_name(spec)
        if name in self.conda:
            return ("conda", name)
        return ("virtual" if name.startswith("__") else "missing", name)

    def _pypi_edge(self, requirement: Requirement, via: str | None) -> _Edge:
        target = self._pypi_target(requirement.name)
        extras = tuple(sorted({canonicalize_name(e) for e in requirement.extras}))
        return _Edge(
            target=target,
            requested=_requested_text(requirement),
            # Extras mean nothing to a conda package.
            extras=extras if target[0] == "pypi" else (),
            via=via,
        )

    def roots(self) -> list[_Edge]:
        """The environment's direct requirements that apply on this platform."""
        edges = [
            _Edge(target=self._conda_target(text), requested=text)
            for text in self.env.conda_requirements
        ]
        requirements = parse_requirements(self.env.pypi_requirements)
        if requirements:
            markers = self.markers
            edges += [self._pypi_edge(r, None) for r in requirements if applies(r, markers, "")]
        return _sorted_edges(edges)

    def edges(self, key: _Key, extras: tuple[str, ...] = ()) -> list[_Edge]:
        """What ``key`` (asked with ``extras``) depends on, sorted by name."""
        cached = self._edges.get((key, extras))
        if cached is not None:
            return cached
        kind, name = key
        edges: list[_Edge] = []
        if kind == "conda":
            edges = [
                _Edge(target=self._conda_target(d), requested=d) for d in self.conda[name].depends
            ]
        elif kind == "pypi":
            requirements = parse_requirements(self.pypi[name].requires_dist)
            if requirements:
                markers = self.markers
                edges = [self._pypi_edge(r, None) for r in requirements if applies(r, markers, "")]
                for extra in extras:
                    edges += [
                        self._pypi_edge(r, extra)
                        for r in requirements
                        if applies(r, markers, extra) and not applies(r, markers, "")
                    ]
        result = _sorted_edges(edges)
        self._edges[(key, extras)] = result
        return result

    def reachable(self) -> tuple[dict[_Key, set[str]], dict[_Key, list[tuple[_Key, _Edge]]]]:
        """From the roots: the extras each package is asked for, and who depends on whom."""
        asked: dict[_Key, set[str]] = {}
        dependents: dict[_Key, list[tuple[_Key, _Edge]]] = {}
        queue: deque[tuple[_Key, tuple[str, ...]]] = deque()
        done: set[tuple[_Key, tuple[str, ...]]] = set()

        def visit(edge: _Edge) -> None:
            asked.setdefault(edge.target, set()).update(edge.extras)
            state = (edge.target, edge.extras)
            if state not in done:
                done.add(state)
                queue.append(state)

        for edge in self.roots():
            visit(edge)
        while queue:
            key, extras = queue.popleft()
            for edge in self.edges(key, extras):
                dependents.setdefault(edge.target, [])
                if (key, edge) not in dependents[edge.target]:
                    dependents[edge.target].append((key, edge))
                visit(edge)
        return asked, dependents


def _key_order(key: _Key) -> tuple[str, str]:
    return (key[1], key[0])


def _sorted_edges(edges: list[_Edge]) -> list[_Edge]:
    """Sorted by target name; edges to the same target (several markers) are merged."""
    merged: dict[_Key, _Edge] = {}
    for edge in edges:
        seen = merged.get(edge.target)
        if seen is None:
            merged[edge.target] = edge
        else:
            # One child per package: an edge that holds without the extra wins the label.
            vias = [v for v in (seen.via, edge.via) if v is not None]
            merged[edge.target] = _Edge(
                target=edge.target,
                requested=", ".join(dict.fromkeys((seen.requested, edge.requested))),
                extras=tuple(sorted(set(seen.extras) | set(edge.extras))),
                via=min(vias) if seen.via is not None and edge.via is not None else None,
            )
    return sorted(merged.values(), key=lambda e: _key_order(e.target))


# ---------------------------------------------------------------------------- building


def dependency_tree(
    lock: Lockfile,
    env: str,
    platform: str,
    *,
    root: str | None = None,
    invert: bool = False,
) -> list[TreeNode]:
    """The dependency tree of ``env`` on ``platform``.

    Without ``root`` the roots are the environment's direct requirements; with it, the
    locked package(s) called ``root``.  ``invert`` turns the edges round: children are
    the packages that depend on their parent (without ``root``: every package that
    depends on nothing is a root).  UsageError when ``root`` is not locked.
    """
    graph = _Graph(lock, env, platform)
    if root is not None:
        keys = graph.find(root)
        if not keys:
            raise UsageError(
                f"no package {root!r} is locked in environment {env!r} for {platform}: "
                f"see `lockenv list -e {env} --platform {platform}`"
            )
    if invert:
        asked, dependents = graph.reachable()
        if root is None:
            keys = [
                k
                for k in graph.locked_keys()
                if not graph.edges(k, tuple(sorted(asked.get(k, ()))))
            ]
        seen_up: set[_Key] = set()
        return [_inverted(graph, key, None, None, dependents, seen_up, ()) for key in keys]
    seen: set[tuple[_Key, tuple[str, ...]]] = set()
    if root is None:
        edges = graph.roots()
    else:
        asked, _ = graph.reachable()
        edges = [
            _Edge(target=key, requested=root, extras=tuple(sorted(asked.get(key, ()))))
            for key in keys
        ]
    return [_forward(graph, edge, seen, ()) for edge in edges]


def _forward(
    graph: _Graph,
    edge: _Edge,
    seen: set[tuple[_Key, tuple[str, ...]]],
    path: tuple[_Key, ...],
) -> TreeNode:
    key = edge.target
    kind, name = key
    below = graph.edges(key, edge.extras) if kind in ("pypi", "conda") else []
    state = (key, edge.extras)
    repeated = bool(below) and (state in seen or key in path)
    if not repeated:
        seen.add(state)
    children = (
        () if repeated else tuple(_forward(graph, child, seen, (*path, key)) for child in below)
    )
    return TreeNode(
        name=name,
        version=graph.version(key),
        kind=kind,
        extras=edge.extras,
        requested=edge.requested,
        repeated=repeated,
        children=children,
    )


def _inverted(
    graph: _Graph,
    key: _Key,
    via: str | None,
    requested: str | None,
    dependents: dict[_Key, list[tuple[_Key, _Edge]]],
    seen: set[_Key],
    path: tuple[_Key, ...],
) -> TreeNode:
    kind, name = key
    above = sorted(dependents.get(key, []), key=lambda d: (*_key_order(d[0]), d[1].via or ""))
    repeated = bool(above) and (key in seen or key in path)
    if not repeated:
        seen.add(key)
    children = (
        ()
        if repeated
        else tuple(
            _inverted(graph, parent, edge.via, edge.requested, dependents, seen, (*path, key))
            for parent, edge in above
        )
    )
    return TreeNode(
        name=name,
        version=graph.version(key),
        kind=kind,
        # In an inverted tree, the parent's extra that pulls the child in.
        extras=(via,) if via else (),
        requested=requested,
        repeated=repeated,
        children=children,
    )


# ---------------------------------------------------------------------------- rendering


def _walk(nodes: tuple[TreeNode, ...] | list[TreeNode]) -> Iterator[TreeNode]:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _label(node: TreeNode, mixed: bool) -> str:
    if node.kind == "virtual":
        return f"{node.requested or node.name} (virtual)"
    if node.kind == "missing":
        return f"{node.requested or node.name} (not locked)"
    extras = f"[{','.join(node.extras)}]" if node.extras else ""
    label = f"{node.name}{extras} {node.version}"
    if mixed and node.kind == "pypi":
        label += " (pypi)"
    if node.repeated:
        label += " (*)"
    return label


def render_tree(nodes: list[TreeNode]) -> str:
    """The tree as text, ``uv tree`` style; PyPI packages marked in mixed environments."""
    kinds = {node.kind for node in _walk(nodes)}
    mixed = "pypi" in kinds and "conda" in kinds
    lines: list[str] = []

    def emit(node: TreeNode, prefix: str, last: bool, top: bool) -> None:
        if top:
            lines.append(_label(node, mixed))
            inner = ""
        else:
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_label(node, mixed)}")
            inner = prefix + ("    " if last else "│   ")
        for i, child in enumerate(node.children):
            emit(child, inner, i == len(node.children) - 1, False)

    for node in nodes:
        emit(node, "", True, True)
    if any(node.repeated for node in _walk(nodes)):
        lines.append("(*) Package tree already displayed")
    return "\n".join(lines) + ("\n" if lines else "")
