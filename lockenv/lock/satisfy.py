"""Is a lock stale?  A satisfiability check, not a comparison of manifest bytes.

The lock is fresh when it was made from the same inputs (platforms, indexes, channels,
Python, system requirements, exclude-newer), has the same environments, and on every
platform its pins satisfy every requirement of the manifest and every requirement of
the pinned packages themselves, with nothing pinned that nothing needs.  Whitespace,
comments and key order in the manifest never make a lock stale.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from lockenv.lockfile import CondaArtifact, Lockfile, LockInputs, PypiArtifact, PypiSource
from lockenv.platforms import get_platform, marker_environment, python_target

if TYPE_CHECKING:
    from lockenv.lock.manifest import EnvironmentSpec, Manifest, PypiDependency


def stale_reasons(manifest: Manifest, lock: Lockfile) -> list[str]:
    """Why ``lock`` no longer satisfies ``manifest``; empty when it does."""
    from lockenv.lock.resolve import manifest_inputs

    reasons: list[str] = []
    expected = manifest_inputs(manifest, _index_urls(manifest, lock))
    actual = lock.inputs
    if list(expected.indexes) != list(actual.indexes):
        # The index is an input: other servers may hold other files under the same names.
        where = "the manifest's indexes" if manifest.indexes else _pip_index_source()
        reasons.append(
            f"indexes changed: the lock was made against {_show(list(actual.indexes))}, "
            f"{where} {_show(list(expected.indexes))}"
            + ("" if manifest.indexes else "; set [project] indexes to choose one")
        )
    for label, want, have in (
        ("platforms", sorted(expected.platforms), sorted(actual.platforms)),
        ("channels", list(expected.channels), list(actual.channels)),
        ("find-links", list(expected.find_links), list(actual.find_links)),
        ("requires-python", expected.requires_python, actual.requires_python),
        (
            "system-requirements",
            dict(expected.system_requirements),
            dict(actual.system_requirements),
        ),
        *_exclude_newer_inputs(expected, actual),
        ("pypi-options", dict(expected.pypi_options), dict(actual.pypi_options)),
    ):
        if want != have:
            reasons.append(
                f"{label} changed: the manifest has {_show(want)}, the lock {_show(have)}"
            )
    wanted_envs = set(manifest.environment_names())
    for name in sorted(wanted_envs - set(lock.environments)):
        reasons.append(f"environment {name!r} is not locked")
    for name in sorted(set(lock.environments) - wanted_envs):
        reasons.append(f"environment {name!r} is locked but no longer in the manifest")
    for name in sorted(wanted_envs & set(lock.environments)):
        reasons.extend(_environment_reasons(manifest.environment(name), lock, manifest))
    return reasons


def _exclude_newer_inputs(
    expected: LockInputs, actual: LockInputs
) -> list[tuple[str, object, object]]:
    """What exclude-newer compares: the span when the manifest gives a duration (the
    moment it yields moves with the clock and must not make a lock stale), else the
    moment itself."""
    if expected.exclude_newer_span is not None:
        return [("exclude-newer", expected.exclude_newer_span, actual.exclude_newer_span)]
    return [
        ("exclude-newer", expected.exclude_newer, actual.exclude_newer),
        ("exclude-newer-span", None, actual.exclude_newer_span),
    ]


def _index_urls(manifest: Manifest, lock: Lockfile) -> tuple[str, ...]:
    """The indexes a lock of ``manifest`` made here and now would record."""
    if manifest.indexes:
        return manifest.indexes
    uses_pypi = any(
        manifest.environment(name).pypi_dependencies for name in manifest.environment_names()
    )
    if not uses_pypi:
        return lock.inputs.indexes  # no PyPI package: the index cannot matter
    from lockenv.lock.resolve import index_urls_for

    return index_urls_for(manifest)


def _pip_index_source() -> str:
    from lockenv.pipconfig import default_index_source

    return f"pip's index here ({default_index_source()})"


def _show(value: object) -> str:
    """A setting as a message shows it: ``none`` rather than ``None`` or ``[]``."""
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, list):
        return ", ".join(repr(v) for v in value)
    return repr(value)


def _environment_reasons(spec: EnvironmentSpec, lock: Lockfile, manifest: Manifest) -> list[str]:
    locked = lock.environments[spec.name]
    if spec.base_environment is not None or locked.base is not None:
        return _on_base_reasons(spec, lock, manifest.root)
    reasons: list[str] = []
    python: Version | None = None
    if not spec.dependencies:
        python = python_target(spec.requires_python)
        if locked.python != str(python):
            reasons.append(
                f"{spec.name}: locked for Python {locked.python}, the manifest asks for "
                f"Python {python}"
            )
            return reasons
    for platform in spec.platforms:
        if platform not in locked.packages:
            reasons.append(f"{spec.name}: platform {platform} is not locked")
            continue
        pinned = [lock.artifacts[url] for url in locked.packages[platform]]
        conda = {a.name: a for a in pinned if isinstance(a, CondaArtifact)}
        problems = _conda_problems(spec, platform, conda) if spec.dependencies else []
        if spec.dependencies:
            python = Version(conda["python"].version) if "python" in conda else None
        pypi: dict[str, PypiArtifact | PypiSource] = {
            canonicalize_name(a.name): a for a in pinned if isinstance(a, PypiArtifact | PypiSource)
        }
        direct = [d.requirement for d in spec.pypi_dependencies]
        problems += _source_problems(spec.pypi_dependencies, pypi, manifest.root)
        if python is not None:
            provided: dict[str, Version] = {
                manifest.pypi_name_of(name): Version(a.version)
                for name, a in conda.items()
                if _is_version(a.version)
            }
            problems += _closure_problems(
                direct,
                pypi,
                marker_environment(get_platform(platform), python),
                python,
                provided,
            )
        elif direct:
            problems.append("PyPI packages need a conda `python` in the environment")
        reasons.extend(f"{spec.name} on {platform}: {p}" for p in problems)
    for platform in sorted(set(locked.packages) - set(spec.platforms)):
        reasons.append(f"{spec.name}: platform {platform} is locked but no longer a target")
    return reasons


def _on_base_reasons(spec: EnvironmentSpec, lock: Lockfile, root: Path) -> list[str]:
    """An environment on a base: the base as locked, the pins on top of it.

    The base as it is now counts too, where it exists (a lock made on the cluster and
    checked elsewhere cannot see it): a base changed since the lock makes it stale.
    """
    from lockenv.base_environment import base_drift, read_base_environment
    from lockenv.errors import LockenvError
    from lockenv.lock.base_env import base_problems, provided_by_base

    locked = lock.environments[spec.name]
    base = locked.base
    wanted = str(spec.base_environment) if spec.base_environment is not None else None
    if base is None or wanted is None or base.prefix != wanted:
        have = base.prefix if base is not None else None
        return [
            f"{spec.name}: base-environment changed: the manifest has {wanted!r}, the lock {have!r}"
        ]
    reasons: list[str] = []
    if os.path.isdir(base.prefix):
        try:
            current = read_base_environment(Path(base.prefix))
        except LockenvError as exc:
            reasons.append(f"{spec.name}: {exc}")
        else:
            if current.digest != base.digest:
                reasons.append(
                    f"{spec.name}: base environment {base.prefix!r} changed since the lock "
                    f"({base_drift(base, current)})"
                )
    python = Version(base.python)
    direct = [d.requirement for d in spec.pypi_dependencies]
    for platform in spec.platforms:
        if platform not in locked.packages:
            reasons.append(f"{spec.name}: platform {platform} is not locked")
            continue
        problems = base_problems(spec, None, base)
        pinned = [lock.artifacts[url] for url in locked.packages[platform]]
        pypi: dict[str, PypiArtifact | PypiSource] = {
            canonicalize_name(a.name): a for a in pinned if isinstance(a, PypiArtifact | PypiSource)
        }
        problems += _source_problems(spec.pypi_dependencies, pypi, root)
        provided: dict[str, Version] = {str(k): v for k, v in provided_by_base(base).items()}
        problems += _closure_problems(
            direct, pypi, marker_environment(get_platform(platform), python), python, provided
        )
        problems += [
            f"{a.name} {a.version} is a conda package" for a in pinned if a.kind == "conda"
        ]
        reasons.extend(f"{spec.name} on {platform}: {p}" for p in problems)
    for platform in sorted(set(locked.packages) - set(spec.platforms)):
        reasons.append(f"{spec.name}: platform {platform} is locked but no longer a target")
    return reasons


def _is_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def _conda_problems(
    spec: EnvironmentSpec, platform: str, pinned: dict[str, CondaArtifact]
) -> list[str]:
    """The conda side: manifest specs and every record's depends met, constrains kept."""
    from lockenv.lock.conda.solver import parse_spec
    from lockenv.lock.resolve import conda_spec
    from lockenv.platforms import virtual_packages

    system = spec.system_requirements
    virtual = {
        v.name: v
        for v in virtual_packages(
            get_platform(platform),
            glibc=system.glibc,
            macos=system.macos,
            cuda=system.cuda,
            archspec=system.archspec,
        )
    }
    problems: list[str] = []
    queue: deque[tuple[str, str]] = deque(
        (str(conda_spec(d)), "the manifest") for d in spec.dependencies
    )
    reached: set[str] = set()
    while queue:
        text, asker = queue.popleft()
        match = parse_spec(text)
        record: Any = pinned.get(match.name) or virtual.get(match.name)
        if record is None:
            problems.append(f"{asker} requires {text!r}, which is not locked")
            continue
        if not match.matches(_AsRecord(record)):
            problems.append(
                f"{asker} requires {text!r}, but {match.name} {record.version} {record.build} "
                "is locked"
            )
        if match.name in pinned and match.name not in reached:
            reached.add(match.name)
            who = f"{record.name} {record.version}"
            queue.extend((dep, who) for dep in record.depends)
    for artifact in pinned.values():
        for text in artifact.constrains:
            match = parse_spec(text)
            other = pinned.get(match.name)
            if other is not None and not match.matches(_AsRecord(other)):
                problems.append(
                    f"{artifact.name} {artifact.version} constrains {text!r}, but "
                    f"{other.name} {other.version} is locked"
                )
    for name in sorted(set(pinned) - reached):
        problems.append(f"{name} {pinned[name].version} is locked but nothing requires it")
    return problems


class _AsRecord:
    """A locked conda artifact or a virtual package, as MatchSpec.matches reads records."""

    def __init__(self, source: Any) -> None:
        self.name: str = source.name
        self.version: str = source.version
        self.build: str = source.build
        self.build_number: int = getattr(source, "build_number", 0)
        self.subdir: str | None = getattr(source, "subdir", None)
        self.md5: str | None = getattr(source, "md5", None)
        self.sha256: str | None = getattr(source, "sha256", None)
        self.channel: str | None = getattr(source, "channel", None)


def _closure_problems(
    direct: list[Requirement],
    pinned: dict[str, PypiArtifact | PypiSource],
    markers: dict[str, str],
    python: Version,
    provided: dict[str, Version] | None = None,
) -> list[str]:
    """Walk requirements from the manifest through the pins; report what does not hold."""
    problems: list[str] = []
    queue: deque[tuple[Requirement, str]] = deque(
        (r, "the manifest") for r in direct if applies(r, markers, "")
    )
    reached: set[str] = set()
    extras_done: set[tuple[str, str]] = set()
    while queue:
        requirement, asker = queue.popleft()
        name: str = canonicalize_name(requirement.name)
        artifact = pinned.get(name)
        if artifact is None and provided and name in provided:
            # Installed by conda: only its version can be checked.
            if not requirement.specifier.contains(provided[name], prereleases=True):
                problems.append(
                    f"{asker} requires {str(requirement)!r}, but conda provides "
                    f"{name} {provided[name]}"
                )
            continue
        if artifact is None:
            problems.append(f"{asker} requires {str(requirement)!r}, which is not locked")
            continue
        try:
            version = Version(artifact.version)
        except InvalidVersion:
            problems.append(f"{name} is locked at an invalid version {artifact.version!r}")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(
                f"{asker} requires {str(requirement)!r}, but {name} {version} is locked"
            )
        who = f"{name} {version}"
        if name not in reached:
            reached.add(name)
            if artifact.requires_python and not _python_ok(artifact.requires_python, python):
                problems.append(f"{who} requires Python {artifact.requires_python}")
            for dep in parse_requirements(artifact.requires_dist):
                if applies(dep, markers, ""):
                    queue.append((dep, who))
        for extra in sorted(canonicalize_name(e) for e in requirement.extras):
            if (name, extra) in extras_done:
                continue
            extras_done.add((name, extra))
            for dep in parse_requirements(artifact.requires_dist):
                if applies(dep, markers, extra) and not applies(dep, markers, ""):
                    queue.append((dep, f"{who} [{extra}]"))
    for name in sorted(set(pinned) - reached):
        problems.append(f"{name} {pinned[name].version} is locked but nothing requires it")
    return problems


def _source_problems(
    dependencies: tuple[PypiDependency, ...],
    pinned: dict[str, PypiArtifact | PypiSource],
    root: Path,
) -> list[str]:
    """Path, git and URL dependencies: locked from the source the manifest names, and a
    path's own dependency lists (its static ``[project]``) as they were locked."""
    from lockenv.urls import redact_url

    problems: list[str] = []
    for dependency in dependencies:
        source = dependency.source
        locked = pinned.get(dependency.name)
        if source is None or locked is None:
            continue
        wanted = source.reference
        if source.path is not None:
            same = (
                isinstance(locked, PypiSource)
                and locked.path == source.path
                and locked.editable == source.editable
            )
        elif source.git is not None:
            same = (
                isinstance(locked, PypiSource)
                and locked.git == redact_url(source.git)
                and (locked.rev, locked.tag, locked.branch, locked.subdirectory)
                == (source.rev, source.tag, source.branch, source.subdirectory)
            )
        else:
            same = (
                isinstance(locked, PypiArtifact)
                and locked.index is None
                and locked.url == redact_url(source.url or "")
            )
        if not same:
            problems.append(
                f"the manifest takes {dependency.name} from {wanted!r}, the lock from "
                f"{locked.filename!r}"
            )
        elif isinstance(locked, PypiSource) and locked.path is not None:
            problems += _path_metadata_problems(locked, root)
    return problems


def _path_metadata_problems(locked: PypiSource, root: Path) -> list[str]:
    """What changed in a path dependency's static ``[project]`` since it was locked."""
    import os
    from pathlib import Path

    from lockenv.lock.pypi.sources import static_project_metadata

    meta = static_project_metadata(Path(os.path.normpath(root / str(locked.path))))
    if meta is None:
        return []  # dynamic: only a build could tell; `lock` re-reads it
    problems = []
    if str(meta.version) != locked.version:
        problems.append(
            f"{locked.name} at {locked.path!r} is version {meta.version} now, locked "
            f"{locked.version}"
        )
    now = {str(r) for r in meta.requires_dist}
    then = {str(r) for r in parse_requirements(locked.requires_dist)}
    if now != then:
        added = ", ".join(sorted(now - then)) or "nothing"
        dropped = ", ".join(sorted(then - now)) or "nothing"
        problems.append(
            f"the dependencies of {locked.name} at {locked.path!r} changed since it was "
            f"locked (added {added}; removed {dropped})"
        )
    python = str(meta.requires_python) if meta.requires_python else None
    if python != locked.requires_python:
        problems.append(
            f"{locked.name} at {locked.path!r} requires Python {python} now, locked "
            f"{locked.requires_python}"
        )
    return problems


def applies(requirement: Requirement, markers: dict[str, str], extra: str) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({**markers, "extra": extra})


def _python_ok(requires_python: str, python: Version) -> bool:
    try:
        return SpecifierSet(requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        return True


def parse_requirements(texts: tuple[str, ...]) -> list[Requirement]:
    parsed: list[Requirement] = []
    for text in texts:
        try:
            parsed.append(Requirement(text))
        except InvalidRequirement:
            continue
    return parsed
