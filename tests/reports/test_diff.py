"""Tests for lockenv.reports.diff: table-driven package and setting changes, JSON, and a property:
for version changes, ``render(settings=False)`` gives exactly the lines
a plain version comparison gives (``lock`` prints these lines).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.lockfile import (
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
)
from lockenv.reports.diff import LockDiff, PackageChange, SettingChange, diff_locks

FILES = "https://files.example.invalid"


def _wheel(name: str, version: str, tag: str = "py3-none-any", seed: str = "") -> PypiArtifact:
    filename = f"{name}-{version}-{tag}.whl"
    return PypiArtifact(
        name=name,
        version=version,
        filename=filename,
        url=f"{FILES}/{filename}",
        sha256=hashlib.sha256((filename + seed).encode()).hexdigest(),
        size=1,
    )


def _conda(name: str, version: str, build: str = "0") -> CondaArtifact:
    filename = f"{name}-{version}-{build}.conda"
    return CondaArtifact(
        name=name,
        version=version,
        build=build,
        build_number=0,
        subdir="linux-64",
        filename=filename,
        url=f"{FILES}/conda/{filename}",
        sha256=hashlib.sha256(filename.encode()).hexdigest(),
        size=1,
    )


def _lock(
    envs: Mapping[str, Mapping[str, list[Artifact]]],
    *,
    inputs: LockInputs | None = None,
    requirements: Mapping[str, tuple[str, ...]] | None = None,
) -> Lockfile:
    artifacts: dict[str, Artifact] = {}
    environments: dict[str, LockedEnvironment] = {}
    for env, platforms in envs.items():
        for pins in platforms.values():
            artifacts.update({a.url: a for a in pins})
        environments[env] = LockedEnvironment(
            name=env,
            python="3.11",
            pypi_requirements=(requirements or {}).get(env, ()),
            packages={p: tuple(a.url for a in pins) for p, pins in platforms.items()},
        )
    return Lockfile(
        inputs=inputs or LockInputs(platforms=("linux-64",)),
        environments=environments,
        artifacts=artifacts,
    )


def _one(*pins: Artifact, env: str = "default", platform: str = "linux-64") -> Lockfile:
    return _lock({env: {platform: list(pins)}})


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        (_one(), _one(_wheel("a", "1.0")), ["+ a 1.0 (default/linux-64)"]),
        (_one(_wheel("a", "1.0")), _one(), ["- a 1.0 (default/linux-64)"]),
        (
            _one(_wheel("a", "1.0")),
            _one(_wheel("a", "2.0")),
            ["~ a 1.0 -> 2.0 (default/linux-64)"],
        ),
        (_one(_wheel("a", "1.0")), _one(_wheel("a", "1.0")), []),
        (
            _one(_wheel("a", "1.0")),
            _one(_wheel("a", "1.0", "cp311-cp311-manylinux_2_28_x86_64")),
            [
                "~ a 1.0 (a-1.0-py3-none-any.whl -> a-1.0-cp311-cp311-manylinux_2_28_x86_64.whl)"
                " (default/linux-64)"
            ],
        ),
        (
            _one(_wheel("a", "1.0")),
            _one(_wheel("a", "1.0", seed="re-uploaded")),
            ["~ a 1.0 (sha256 changed) (default/linux-64)"],
        ),
        (
            _one(_conda("numpy", "1.26.4", "py311_0")),
            _one(_conda("numpy", "1.26.4", "py311_1")),
            [
                "~ numpy 1.26.4 (numpy-1.26.4-py311_0.conda -> numpy-1.26.4-py311_1.conda) "
                "(default/linux-64)"
            ],
        ),
        (
            _one(_conda("idna", "3.6")),
            _one(_wheel("idna", "3.6")),
            ["- idna 3.6 (default/linux-64)", "+ idna 3.6 (default/linux-64)"],
        ),
        (
            _lock({"default": {"linux-64": [_wheel("a", "1")], "osx-arm64": [_wheel("a", "1")]}}),
            _lock({"default": {"linux-64": [_wheel("a", "2")]}, "test": {"linux-64": []}}),
            [
                "+ environments.test.python: 3.11",
                "~ a 1 -> 2 (default/linux-64)",
                "- a 1 (default/osx-arm64)",
            ],
        ),
    ],
)
def test_package_lines(old: Lockfile, new: Lockfile, lines: list[str]) -> None:
    assert diff_locks(old, new).render() == lines


def test_kinds_and_partitions() -> None:
    old = _one(_wheel("a", "1"), _wheel("b", "1"))
    new = _one(_wheel("b", "2"), _wheel("c", "1"))
    diff = diff_locks(old, new)
    assert [(p.name, p.change) for p in diff.packages] == [
        ("a", "removed"),
        ("b", "changed"),
        ("c", "added"),
    ]
    assert [p.name for p in diff.added] == ["c"]
    assert [p.name for p in diff.removed] == ["a"]
    assert [p.name for p in diff.changed] == ["b"]
    assert not diff.empty
    assert diff_locks(old, old).empty


def test_no_old_lock_adds_everything() -> None:
    new = _one(_wheel("a", "1"), _conda("python", "3.12"))
    assert diff_locks(None, new).render() == [
        "+ a 1 (default/linux-64)",
        "+ python 3.12 (default/linux-64)",
    ]


@pytest.mark.parametrize(
    ("old_inputs", "new_inputs", "lines"),
    [
        (
            LockInputs(platforms=("linux-64",), channels=("conda-forge",)),
            LockInputs(platforms=("linux-64",), channels=("conda-forge", "bioconda")),
            ["~ inputs.channels: +bioconda"],
        ),
        (
            LockInputs(platforms=("linux-64",), channels=("a", "b")),
            LockInputs(platforms=("linux-64",), channels=("b", "a")),
            ["~ inputs.channels: a, b -> b, a"],
        ),
        (
            LockInputs(platforms=("linux-64",)),
            LockInputs(platforms=("linux-64",), exclude_newer="2025-01-01T00:00:00Z"),
            ["+ inputs.exclude-newer: 2025-01-01T00:00:00Z"],
        ),
        (
            LockInputs(platforms=("linux-64",), system_requirements={"glibc": "2.17"}),
            LockInputs(platforms=("linux-64",), system_requirements={"glibc": "2.28"}),
            ["~ inputs.system-requirements: glibc=2.17 -> glibc=2.28"],
        ),
        (
            LockInputs(platforms=("linux-64", "osx-arm64"), requires_python="==3.11.*"),
            LockInputs(platforms=("linux-64",), requires_python=None),
            ["~ inputs.platforms: -osx-arm64", "- inputs.requires-python: ==3.11.*"],
        ),
    ],
)
def test_input_lines(old_inputs: LockInputs, new_inputs: LockInputs, lines: list[str]) -> None:
    old = _lock({"default": {}}, inputs=old_inputs)
    new = _lock({"default": {}}, inputs=new_inputs)
    diff = diff_locks(old, new)
    assert diff.render() == lines
    assert diff.render(settings=False) == []


def test_environment_settings() -> None:
    old = _lock({"default": {}}, requirements={"default": ("rich>=13",)})
    new = _lock(
        {"default": {}, "test": {}},
        requirements={"default": ("requests>=2",), "test": ("pytest>=8",)},
    )
    assert diff_locks(old, new).render() == [
        "~ environments.default.requirements.pypi: -rich>=13, +requests>=2",
        "+ environments.test.python: 3.11",
        "+ environments.test.requirements.pypi: pytest>=8",
    ]


def test_json_form() -> None:
    old = _lock({"default": {"linux-64": [_wheel("a", "1")]}}, inputs=LockInputs(platforms=()))
    new = _lock({"default": {"linux-64": [_wheel("a", "2")]}})
    data = json.loads(json.dumps(diff_locks(old, new).to_json()))
    assert data == {
        "settings": [{"key": "inputs.platforms", "old": [], "new": ["linux-64"]}],
        "packages": [
            {
                "environment": "default",
                "platform": "linux-64",
                "kind": "pypi",
                "name": "a",
                "change": "changed",
                "old_version": "1",
                "new_version": "2",
                "old_filename": "a-1-py3-none-any.whl",
                "new_filename": "a-2-py3-none-any.whl",
                "old_sha256": _wheel("a", "1").sha256,
                "new_sha256": _wheel("a", "2").sha256,
            }
        ],
    }


def test_objects_are_plain_data() -> None:
    change = PackageChange(
        environment="e",
        platform="linux-64",
        kind="pypi",
        name="a",
        old_version=None,
        new_version="1",
    )
    assert change.change == "added"
    assert SettingChange(key="k", old=None, new="v").render() == "+ k: v"
    assert LockDiff().empty


_NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta"])
_VERSIONS = st.sampled_from(["1.0", "1.1", "2.0"])
_PINS = st.dictionaries(_NAMES, _VERSIONS, max_size=4)
_PLATFORM_PINS = st.dictionaries(st.sampled_from(["linux-64", "win-64"]), _PINS, max_size=2)
_LOCKS = st.dictionaries(st.sampled_from(["default", "test"]), _PLATFORM_PINS, min_size=1)


def _from_pins(pins: dict[str, dict[str, dict[str, str]]]) -> Lockfile:
    return _lock(
        {
            env: {p: [_wheel(n, v) for n, v in names.items()] for p, names in platforms.items()}
            for env, platforms in pins.items()
        }
    )


def _reference_lines(old: Lockfile | None, new: Lockfile) -> list[str]:
    """The package lines, computed the plain way: compare name -> version per platform."""
    lines: list[str] = []
    envs = sorted(set(new.environments) | set(old.environments if old else {}))
    for env in envs:
        new_env = new.environments.get(env)
        old_env = old.environments.get(env) if old else None
        platforms = set(new_env.packages if new_env else {})
        platforms |= set(old_env.packages if old_env else {})
        for platform in sorted(platforms):
            before = {
                old.artifacts[u].name: old.artifacts[u].version
                for u in (old_env.packages.get(platform, ()) if old and old_env else ())
            }
            after = {
                new.artifacts[u].name: new.artifacts[u].version
                for u in (new_env.packages.get(platform, ()) if new_env else ())
            }
            for name in sorted(set(before) | set(after)):
                b, a = before.get(name), after.get(name)
                where = f"{env}/{platform}"
                if b == a:
                    continue
                if b is None:
                    lines.append(f"+ {name} {a} ({where})")
                elif a is None:
                    lines.append(f"- {name} {b} ({where})")
                else:
                    lines.append(f"~ {name} {b} -> {a} ({where})")
    return lines


@settings(max_examples=200)
@given(_LOCKS, _LOCKS, st.booleans())
def test_package_lines_match_a_plain_comparison(
    old: dict[str, dict[str, dict[str, str]]],
    new: dict[str, dict[str, dict[str, str]]],
    first: bool,
) -> None:
    old_lock = None if first else _from_pins(old)
    new_lock = _from_pins(new)
    diff = diff_locks(old_lock, new_lock)
    assert diff.render(settings=False) == _reference_lines(old_lock, new_lock)
    assert diff_locks(new_lock, new_lock).empty
