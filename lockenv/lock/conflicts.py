"""Explaining a failed resolution: who asked for each conflicting requirement.

Shared by the PyPI and the conda providers: both record, per package name, the first
requirement that asked for it, so a conflict deep in the tree is traced back to what
the manifest asked for (``the manifest asks for 'a' -> a 1.0 requires 'b>=2'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class _Pinned(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> Any: ...


def requirement_chain(
    name: str, requested_by: Mapping[str, Any], direct_text: Mapping[str, str]
) -> list[str]:
    """The steps from the manifest down to package ``name``, first step first.

    ``requested_by`` maps a name to the first requirement on it (with ``.parent``, the
    candidate that asked, or None for the manifest); ``direct_text`` maps the names the
    manifest asks for to the requirement as written.
    """
    steps: list[str] = []
    seen: set[str] = set()
    while name not in seen:
        seen.add(name)
        requirement = requested_by.get(name)
        if requirement is None or requirement.parent is None:
            if name in direct_text:
                steps.append(f"the manifest asks for {direct_text[name]!r}")
            break
        parent = requirement.parent
        steps.append(f"{parent.name} {parent.version} requires {str(requirement)!r}")
        name = parent.name
    return steps[::-1]


def who_asked(parent: _Pinned | None, chain: list[str]) -> str:
    """``the manifest asks for``, or the chain that led to ``parent`` and its words."""
    if parent is None:
        return "the manifest asks for"
    lead = " -> ".join(chain)
    return (f"{lead} -> " if lead else "") + f"{parent.name} {parent.version} requires"
