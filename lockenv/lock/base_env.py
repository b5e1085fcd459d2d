"""Locking an environment on a base environment (`lockenv.base_environment`).

The base is the site's: what it holds counts as installed and pinned.  Its Python is
the environment's Python; its distributions satisfy PyPI requirements they match (those
are not locked again, as conda packages are not in a mixed environment); the
environment's conda requirements must be met by the base's conda packages, since
nothing conda is installed on top of a base.  Anything else is explained: which
requirement, what the base has, and what to do.

One base path is read once per lock, and only on the platform it exists for: a base
environment is a directory on this machine, so an environment on it is locked for this
machine's platform.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from lockenv.base_environment import BaseEnvironment, read_base_environment
from lockenv.errors import ResolutionError

if TYPE_CHECKING:
    from lockenv.lock.manifest import EnvironmentSpec

__all__ = ["BaseReader", "base_problems", "provided_by_base"]


class BaseReader:
    """Reads each base environment once (thread-safe: jobs run side by side)."""

    def __init__(self) -> None:
        self._read: dict[Path, BaseEnvironment] = {}
        self._lock = threading.Lock()

    def read(self, path: Path) -> BaseEnvironment:
        with self._lock:
            if path not in self._read:
                self._read[path] = read_base_environment(path)
            return self._read[path]


def provided_by_base(base: BaseEnvironment) -> dict[NormalizedName, Version]:
    """The base's distributions, as the PyPI resolver takes installed packages."""
    provided: dict[NormalizedName, Version] = {}
    for name, version in base.pypi_versions().items():
        try:
            provided[canonicalize_name(name)] = Version(version)
        except InvalidVersion:
            continue  # a distribution with a non-PEP 440 version satisfies nothing
    return provided


def base_problems(spec: EnvironmentSpec, platform: str | None, base: BaseEnvironment) -> list[str]:
    """Why ``spec`` cannot be locked on ``base`` for ``platform`` (empty: it can);
    ``platform`` None leaves out whether that is this machine's platform."""
    from lockenv.platforms import current_platform

    problems: list[str] = []
    here = current_platform() if platform is not None else None
    if platform != here:
        problems.append(
            f"it is built on base environment {base.prefix!r}, a {here} directory, so it can "
            f"be locked for {here} only, not {platform}: give it a feature with "
            f'platforms = ["{here}"]'
        )
    python = Version(base.python)
    if spec.requires_python is not None and not spec.requires_python.contains(
        python, prereleases=True
    ):
        problems.append(
            f"its base environment has Python {base.python}, which requires-python "
            f"{str(spec.requires_python)!r} excludes"
        )
    problems += conda_problems(spec, base)
    return problems


def conda_problems(spec: EnvironmentSpec, base: BaseEnvironment) -> list[str]:
    """The environment's conda requirements the base's conda packages do not meet."""
    from lockenv.lock.conda.matchspec import parse_manifest_spec

    records = base.conda_records()
    problems: list[str] = []
    for dependency in spec.dependencies:
        match = parse_manifest_spec(dependency.name, dependency.spec)
        found = records.get(dependency.name)
        if found is None:
            problems.append(
                f"[dependencies] {dependency.name} {dependency.spec!r}: the base environment "
                f"{base.prefix!r} has no conda package {dependency.name} (conda packages of an "
                "environment on a base come from the base; use [pypi-dependencies] for what "
                "to install on top)"
            )
        elif not match.matches(_Record(dependency.name, *found)):
            problems.append(
                f"[dependencies] {dependency.name} {dependency.spec!r}: the base environment "
                f"has {dependency.name} {found[0]} ({found[1]})"
            )
    return problems


class _Record:
    """A base conda package as MatchSpec.matches reads records."""

    def __init__(self, name: str, version: str, build: str) -> None:
        self.name = name
        self.version = version
        self.build = build
        # conda-meta file names do not carry it; conda builds end with it ("py311h0_2").
        number = build.rpartition("_")[2]
        self.build_number = int(number) if number.isdigit() else 0


def raise_if(problems: list[str], env_name: str) -> None:
    """One error naming every problem of locking ``env_name`` on its base."""
    if problems:
        raise ResolutionError(f"cannot lock environment {env_name!r}: " + "; ".join(problems))
