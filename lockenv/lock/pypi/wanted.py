"""What a manifest asks of PyPI: its ``[pypi-dependencies]`` entries, their non-index
sources, and ``[pypi-options]``.

Parsed by `lockenv.lock.manifest` (which re-exports them); kept here, apart from the
manifest's conda side, so the PyPI resolver reads them without reaching conda.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.utils import NormalizedName

__all__ = ["NameSet", "PypiDependency", "PypiOptions", "PypiSource"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PypiSource:
    """Where a ``[pypi-dependencies]`` entry comes from when not from an index.

    One of ``path`` (a directory, POSIX, relative to the manifest's directory; ``"."`` is
    the project itself), ``git`` (a repository URL, at ``rev``, ``tag`` or ``branch``,
    default HEAD, optionally a ``subdirectory``) or ``url`` (a wheel or sdist).
    """

    path: str | None = None
    editable: bool = False
    git: str | None = None
    rev: str | None = None
    tag: str | None = None
    branch: str | None = None
    subdirectory: str | None = None
    url: str | None = None

    @property
    def reference(self) -> str:
        """The PEP 508 direct reference (``name @ <this>``) the requirement text shows."""
        if self.path is not None:
            if self.path == "." or self.path.startswith("../"):
                return self.path
            return f"./{self.path}"
        if self.git is not None:
            text = f"git+{self.git}"
            asked = self.rev or self.tag or self.branch
            if asked:
                text += f"@{asked}"
            if self.subdirectory:
                text += f"#subdirectory={self.subdirectory}"
            return text
        assert self.url is not None
        return self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class PypiDependency:
    """One ``[pypi-dependencies]`` entry; ``str(requirement)`` is its PEP 508 text
    (with ``@ reference`` for a path, git or URL source)."""

    name: NormalizedName
    requirement: Requirement
    source: PypiSource | None = None


NameSet = bool | frozenset[NormalizedName]
"""A ``[pypi-options]`` value: every package (True), none (False) or these names."""


def _applies(setting: NameSet, name: str) -> bool:
    return setting is True or (isinstance(setting, frozenset) and name in setting)


@dataclass(frozen=True, slots=True, kw_only=True)
class PypiOptions:
    """``[pypi-options]``: which files of a PyPI package a lock may choose.

    The default is wheels first: on each platform the newest version with a compatible
    wheel wins over newer releases that publish only an sdist (pip's ``--prefer-binary``),
    and an sdist is locked only where no allowed version has a wheel.  ``prefer_newest``
    takes the newest version even when it must be built (pip's and uv's default);
    ``no_build`` never locks an sdist (wheels only); ``no_binary`` never locks a wheel.
    Each is True (every package), False, or a set of normalized names.
    """

    prefer_newest: NameSet = False
    no_build: NameSet = False
    no_binary: NameSet = False

    def wheels_first(self, name: str) -> bool:
        """Whether a version with a wheel is tried before newer sdist-only versions."""
        return not _applies(self.prefer_newest, name)

    def may_build(self, name: str) -> bool:
        """Whether an sdist of ``name`` may be locked (and so built)."""
        return not _applies(self.no_build, name)

    def may_use_wheel(self, name: str) -> bool:
        """Whether a wheel of ``name`` may be locked."""
        return not _applies(self.no_binary, name)

    def as_inputs(self) -> dict[str, bool | list[str]]:
        """The settings that differ from the default, as the lock records them."""
        out: dict[str, bool | list[str]] = {}
        for key, value in (
            ("no-binary", self.no_binary),
            ("no-build", self.no_build),
            ("prefer-newest", self.prefer_newest),
        ):
            if value is True:
                out[key] = True
            elif value:
                out[key] = sorted(value)
        return out
