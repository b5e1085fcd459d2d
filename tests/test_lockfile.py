"""Tests for lockenv.lockfile: canonical writing, validating reading, atomic writes.

The lock is checked three ways: it survives ``loads(dumps(lock))`` unchanged (after
canonical ordering), the same lock built in any insertion order gives the same bytes,
and every ``dumps`` output validates against ``schemas/lockfile.schema.json``.
Hand-broken locks are table-driven mutations of a good lock: each must raise one
LockfileError naming the key path and the way out (`lockenv lock`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import random
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockenv.base_environment import BaseEnvironment
from lockenv.errors import LockenvError, LockfileError
from lockenv.limits import MAX_LOCK
from lockenv.lockfile import (
    LOCK_NAME,
    LOCK_VERSION,
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
    PypiSource,
    dumps,
    env_requested_names,
    from_dict,
    loads,
    loads_bytes,
    read_lockfile,
    sequence_of_urls,
    to_dict,
    write_lockfile,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "schemas" / "lockfile.schema.json"
PLATFORMS = ("linux-64", "linux-aarch64", "linux-ppc64le", "osx-64", "osx-arm64", "win-64")
FILES = "https://files.example.invalid"


def _sha256(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _md5(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()


def _wheel(name: str, version: str, tag: str = "py3-none-any", **extra: Any) -> PypiArtifact:
    filename = f"{name.replace('-', '_')}-{version}-{tag}.whl"
    return PypiArtifact(
        name=name,
        version=version,
        filename=filename,
        url=f"{FILES}/{name}/{filename}",
        sha256=_sha256(filename),
        size=len(filename) * 100,
        **extra,
    )


def _conda(name: str, version: str, subdir: str, **extra: Any) -> CondaArtifact:
    filename = f"{name}-{version}-h0_0.conda"
    return CondaArtifact(
        name=name,
        version=version,
        build="h0_0",
        build_number=0,
        subdir=subdir,
        filename=filename,
        url=f"https://conda.example.invalid/main/{subdir}/{filename}",
        sha256=_sha256(subdir + filename),
        size=len(filename) * 1000,
        **extra,
    )


def sample_lock() -> Lockfile:
    """Two environments, three platforms, every optional field, artifacts shared."""
    six = _wheel(
        "six",
        "1.16.0",
        requires_python=">=2.7, !=3.0.*",
        upload_time="2021-05-05T14:18:17.000000Z",
        index="https://index.example.invalid/simple/",
    )
    attrs = _wheel("attrs", "23.1.0", requires_dist=("importlib-metadata; python_version < '3.8'",))
    numpy_linux = _wheel("numpy", "1.26.4", "cp311-cp311-manylinux_2_17_x86_64")
    numpy_osx = _wheel("numpy", "1.26.4", "cp311-cp311-macosx_11_0_arm64")
    sdist = PypiArtifact(
        name="tomli",
        version="2.0.1",
        filename="tomli-2.0.1.tar.gz",
        url=f"{FILES}/tomli/tomli-2.0.1.tar.gz",
        sha256=_sha256("tomli"),
        size=0,
    )
    python_linux = _conda(
        "python",
        "3.11.8",
        "linux-64",
        md5=_md5("python"),
        depends=("libzlib >=1.2.13,<2.0a0", "openssl >=3.2.1,<4.0a0"),
        constrains=("python_abi 3.11.* *_cp311",),
        timestamp=1_708_000_000_000,
        channel="https://conda.example.invalid/main",
        license="Python-2.0",
        track_features=("feature-x",),
    )
    tzdata = _conda("tzdata", "2024a", "noarch", noarch="generic", license="LicenseRef-Public")
    project = PypiSource(
        name="mycli",
        version="0.1.0",
        path=".",
        editable=True,
        requires_dist=("six", 'tomli; extra == "toml"'),
        requires_python=">=3.10",
    )
    gitdep = PypiSource(
        name="gitdep",
        version="1.2",
        git="https://git.example.invalid/org/repo.git",
        commit="0123456789abcdef0123456789abcdef01234567",
        tag="v1.2",
        subdirectory="pkg",
    )
    artifacts: dict[str, Artifact] = {
        a.key: a
        for a in (six, attrs, numpy_linux, numpy_osx, sdist, python_linux, tzdata, project, gitdep)
    }
    default = LockedEnvironment(
        name="default",
        python="3.11",
        pypi_requirements=("six", "attrs>=23"),
        conda_requirements=("python 3.11.*",),
        packages={
            "linux-64": sequence_of_urls([six, attrs, numpy_linux, python_linux, tzdata]),
            "osx-arm64": sequence_of_urls([six, attrs, numpy_osx]),
        },
    )
    test = LockedEnvironment(
        name="test",
        pypi_requirements=(
            "six",
            "tomli",
            "mycli @ .",
            "gitdep @ git+https://git.example.invalid/org/repo.git@v1.2#subdirectory=pkg",
        ),
        packages={
            "linux-64": sequence_of_urls([six, sdist, project, gitdep]),
            "win-64": sequence_of_urls([six, sdist]),
        },
    )
    return Lockfile(
        inputs=LockInputs(
            platforms=("linux-64", "osx-arm64", "win-64"),
            channels=("https://conda.example.invalid/main", "https://conda.example.invalid/b"),
            indexes=("https://index.example.invalid/simple/",),
            find_links=("file:///srv/wheels",),
            requires_python=">=3.10",
            system_requirements={"glibc": "2.17", "cuda": "12.0", "macos": "11.0"},
            exclude_newer="2024-03-01T00:00:00Z",
            pypi_options={"no-build": ("numpy",), "prefer-newest": True},
        ),
        environments={"default": default, "test": test},
        artifacts=artifacts,
    )


def canonical(lock: Lockfile) -> Lockfile:
    """``lock`` with every order the writer sorts put in that order (what loads returns)."""
    environments = {
        name: dataclasses.replace(
            env,
            conda_requirements=tuple(sorted(env.conda_requirements)),
            pypi_requirements=tuple(sorted(env.pypi_requirements)),
            packages={
                platform: sequence_of_urls([lock.artifacts[url] for url in urls])
                for platform, urls in env.packages.items()
            },
        )
        for name, env in lock.environments.items()
    }
    inputs = dataclasses.replace(lock.inputs, platforms=tuple(sorted(lock.inputs.platforms)))
    return dataclasses.replace(lock, inputs=inputs, environments=environments)


def shuffled(lock: Lockfile, rng: random.Random) -> Lockfile:
    """The same lock with every order the writer must not depend on shuffled.

    Channels, indexes and find-links keep their order: it is their priority.
    """

    def shuffle_tuple(items: tuple[str, ...]) -> tuple[str, ...]:
        out = list(items)
        rng.shuffle(out)
        return tuple(out)

    def shuffle_dict(mapping: Any) -> dict[Any, Any]:
        items = list(mapping.items())
        rng.shuffle(items)
        return dict(items)

    environments = shuffle_dict(
        {
            name: dataclasses.replace(
                env,
                conda_requirements=shuffle_tuple(env.conda_requirements),
                pypi_requirements=shuffle_tuple(env.pypi_requirements),
                packages=shuffle_dict({p: shuffle_tuple(u) for p, u in env.packages.items()}),
            )
            for name, env in lock.environments.items()
        }
    )
    inputs = dataclasses.replace(
        lock.inputs,
        platforms=shuffle_tuple(lock.inputs.platforms),
        system_requirements=shuffle_dict(lock.inputs.system_requirements),
    )
    return dataclasses.replace(
        lock, inputs=inputs, environments=environments, artifacts=shuffle_dict(lock.artifacts)
    )


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    # date-time formats are also checked by pattern: the format checker needs extra packages.
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.fixture
def schema_validator() -> Any:
    return _validator()


def _schema_errors(validator: Any, data: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


# ---------------------------------------------------------------------------- round trip


def test_round_trip_is_exact() -> None:
    lock = sample_lock()
    text = dumps(lock)
    again = loads(text)
    assert again == canonical(lock)
    assert dumps(again) == text


def test_dumps_is_canonical_whatever_the_insertion_order() -> None:
    lock = sample_lock()
    expected = dumps(lock)
    for seed in range(20):
        assert dumps(shuffled(lock, random.Random(seed))) == expected


def test_channel_and_index_order_is_kept() -> None:
    # Their order is priority: sorting them would change what a re-lock picks.
    lock = sample_lock()
    swapped = dataclasses.replace(
        lock,
        inputs=dataclasses.replace(lock.inputs, channels=tuple(reversed(lock.inputs.channels))),
    )
    assert dumps(swapped) != dumps(lock)
    assert loads(dumps(swapped)).inputs.channels == tuple(reversed(lock.inputs.channels))


def test_dumps_layout() -> None:
    text = dumps(sample_lock())
    assert text.startswith("# This file is written by lockenv")
    assert text.endswith("\n")
    data = yaml.safe_load(text)
    assert list(data) == ["version", "lockenv-version", "inputs", "environments", "packages"]
    assert data["version"] == LOCK_VERSION
    assert list(data["environments"]) == ["default", "test"]
    assert data["inputs"]["platforms"] == ["linux-64", "osx-arm64", "win-64"]
    assert list(data["inputs"]["system-requirements"]) == ["cuda", "glibc", "macos"]
    # Each artifact is described once, however many environments and platforms use it.
    urls = [p["url"] for p in data["packages"] if "url" in p]
    assert len(urls) == len(set(urls)) == 7
    # Source trees have no archive: a path or a git commit instead.
    assert [p["name"] for p in data["packages"] if "url" not in p] == ["gitdep", "mycli"]
    keys = [(p["kind"], p["name"], p["version"]) for p in data["packages"]]
    assert keys == sorted(keys)
    linux = data["environments"]["default"]["packages"]["linux-64"]
    assert [next(iter(ref)) for ref in linux] == ["conda", "conda", "pypi", "pypi", "pypi"]
    # Versions that look like numbers stay strings.
    assert data["inputs"]["system-requirements"]["glibc"] == "2.17"


def test_optional_fields_are_left_out_when_empty() -> None:
    wheel = _wheel("six", "1.16.0")
    lock = Lockfile(
        inputs=LockInputs(platforms=("linux-64",)),
        environments={"default": LockedEnvironment(name="default", packages={"linux-64": ()})},
        artifacts={wheel.url: wheel},
    )
    data = to_dict(lock)
    assert data["inputs"] == {"platforms": ["linux-64"], "channels": [], "indexes": []}
    assert data["environments"]["default"] == {"requirements": {}, "packages": {"linux-64": []}}
    assert set(data["packages"][0]) == {
        "kind",
        "name",
        "version",
        "filename",
        "url",
        "sha256",
        "size",
    }
    assert loads(dumps(lock)) == lock


def test_every_dumps_output_validates_against_the_schema(schema_validator: Any) -> None:
    text = dumps(sample_lock())
    assert _schema_errors(schema_validator, yaml.safe_load(text)) == []


# ---------------------------------------------------------------------------- property test

_NAME = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
# Strings a YAML 1.1 reader would turn into numbers, booleans, null or dates if unquoted.
_TRICKY = st.sampled_from(
    [
        "1.0",
        "1e3",
        "0x1f",
        "0o17",
        "1_0",
        "yes",
        "no",
        "on",
        "off",
        "null",
        "~",
        "true",
        "2024-01-01",
        "12:30",
        ".inf",
        "-",
        "=",
        "<<",
        "#1",
        "'1'",
        '"1"',
        "a: b",
        "- a",
    ]
)
_VERSION = st.one_of(
    _TRICKY, st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}([a-z]+[0-9]?)?", fullmatch=True)
)
# Free text as it may come from package metadata: anything encodable as UTF-8.
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_HASH = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
_SIZE = st.integers(min_value=0, max_value=2**40)
_TIME = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)
_ENV_NAME = st.one_of(
    st.sampled_from(["default", "null", "yes", "1", "1_0", "0x1"]),
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True),
)


@st.composite
def _pypi_artifacts(draw: st.DrawFn, n: int) -> PypiArtifact:
    name = draw(_NAME)
    version = draw(_VERSION)
    filename = draw(st.sampled_from([f"{name}-{n}.whl", f"{name}-{n}.tar.gz", f"{name} {n}.whl"]))
    return PypiArtifact(
        name=name,
        version=version,
        filename=filename,
        url=f"{FILES}/{n}/{filename}",
        sha256=draw(_HASH),
        size=draw(_SIZE),
        requires_dist=tuple(draw(st.lists(_TEXT, max_size=3))),
        requires_python=draw(st.none() | _TEXT),
        upload_time=draw(st.none() | _TIME),
        index=draw(st.none() | st.just("https://index.example.invalid/simple/")),
    )


@st.composite
def _conda_artifacts(draw: st.DrawFn, n: int) -> CondaArtifact:
    name = draw(_NAME)
    subdir = draw(st.sampled_from((*PLATFORMS, "noarch")))
    filename = f"{name}-{n}-{draw(st.sampled_from(['h0_0.conda', 'py_0.tar.bz2']))}"
    return CondaArtifact(
        name=name,
        version=draw(_VERSION),
        build=draw(_TEXT),
        build_number=draw(st.integers(min_value=0, max_value=10_000)),
        subdir=subdir,
        filename=filename,
        url=f"https://conda.example.invalid/c/{subdir}/{n}/{filename}",
        sha256=draw(_HASH),
        size=draw(_SIZE),
        md5=draw(st.none() | _HASH.map(lambda h: h[:32])),
        depends=tuple(draw(st.lists(_TEXT, max_size=3))),
        constrains=tuple(draw(st.lists(_TEXT, max_size=2))),
        timestamp=draw(st.none() | st.integers(min_value=0, max_value=2**45)),
        channel=draw(st.none() | st.just("https://conda.example.invalid/c")),
        noarch=draw(st.none() | st.sampled_from(["python", "generic"])),
        license=draw(st.none() | _TEXT),
        track_features=tuple(draw(st.lists(_NAME, max_size=2))),
    )


@st.composite
def _bases(draw: st.DrawFn) -> BaseEnvironment:
    entries = st.lists(st.tuples(_NAME, _VERSION), max_size=3, unique_by=lambda e: e[0])
    return BaseEnvironment(
        prefix=draw(st.sampled_from(["/opt/site/envs/ml", "/sw/conda/envs/x y"])),
        python=draw(st.sampled_from(["3.11", "3.11.7", "3.12.1"])),
        site_packages="lib/python3.11/site-packages",
        conda=tuple(sorted(f"{n}={v}=h0_0" for n, v in draw(entries))),
        pypi=tuple(sorted(f"{n}=={v}" for n, v in draw(entries))),
    )


@st.composite
def locks(draw: st.DrawFn) -> Lockfile:
    """Random valid locks: any names, versions, text, hashes, sharing of artifacts."""
    count = draw(st.integers(min_value=0, max_value=8))
    artifacts: list[Artifact] = [
        draw(st.one_of(_pypi_artifacts(n), _conda_artifacts(n))) for n in range(count)
    ]
    platforms = draw(st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=6, unique=True))
    environments: dict[str, LockedEnvironment] = {}
    for env_name in draw(st.lists(_ENV_NAME, min_size=1, max_size=3, unique=True)):
        packages = {
            platform: tuple(a.url for a in draw(st.lists(st.sampled_from(artifacts), unique=True)))
            if artifacts
            else ()
            for platform in draw(st.lists(st.sampled_from(platforms), unique=True))
        }
        environments[env_name] = LockedEnvironment(
            name=env_name,
            python=draw(st.none() | st.sampled_from(["3.10", "3.11", "3.12"])),
            conda_requirements=tuple(draw(st.lists(_TEXT, max_size=3))),
            pypi_requirements=tuple(draw(st.lists(_TEXT, max_size=3))),
            packages=packages,
            base=draw(st.none() | _bases()),
        )
    channels = st.lists(
        st.from_regex(r"https://conda\.example\.invalid/[a-z]{1,5}", fullmatch=True), max_size=3
    )
    return Lockfile(
        inputs=LockInputs(
            platforms=tuple(platforms),
            channels=tuple(draw(channels)),
            indexes=tuple(
                draw(st.lists(st.just("https://index.example.invalid/simple/"), max_size=1))
            ),
            find_links=tuple(draw(st.lists(st.just("file:///srv/wheels"), max_size=1))),
            requires_python=draw(st.none() | _TEXT),
            system_requirements=draw(
                st.dictionaries(st.sampled_from(["glibc", "macos", "cuda", "archspec"]), _VERSION)
            ),
            exclude_newer=draw(st.none() | _TIME),
            exclude_newer_span=draw(
                st.none() | st.from_regex(r"[1-9][0-9]{0,3} (week|day|hour)s?", fullmatch=True)
            ),
        ),
        environments=environments,
        artifacts={a.url: a for a in artifacts},
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lock=locks(), seed=st.integers())
def test_property_round_trip_and_determinism(lock: Lockfile, seed: int) -> None:
    text = dumps(lock)
    again = loads(text)
    assert again == canonical(lock)
    assert dumps(again) == text
    assert dumps(shuffled(lock, random.Random(seed))) == text
    assert _schema_errors(_validator(), yaml.safe_load(text)) == []


# ---------------------------------------------------------------------------- hand-broken


def _good() -> dict[str, Any]:
    return to_dict(sample_lock())


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting ``path`` (``a.b[0].c``) to ``value``; `...` deletes it."""

    def mutate(data: dict[str, Any]) -> None:
        parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
        node: Any = data
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last: Any = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return mutate


def _pkg_index(data: dict[str, Any], name: str) -> int:
    return next(i for i, p in enumerate(data["packages"]) if p["name"] == name)


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing sha256", _set("packages[0].sha256", ...), "packages[0].sha256: missing"),
    ("uppercase sha256", _set("packages[0].sha256", "A" * 64), "packages[0].sha256: 'AAAA"),
    ("short sha256", _set("packages[0].sha256", "ab12"), "'ab12' is not a sha256"),
    ("sha256 not a string", _set("packages[0].sha256", 12), "packages[0].sha256: expected"),
    ("bad md5", _set("packages[0].md5", "xyz"), "packages[0].md5: 'xyz' is not a md5"),
    ("negative size", _set("packages[1].size", -1), "packages[1].size: -1 is negative"),
    ("size as bool", _set("packages[1].size", True), "packages[1].size: expected an integer"),
    ("size as string", _set("packages[1].size", "10"), "packages[1].size: expected an integer"),
    (
        "build-number as bool",
        _set("packages[0].build-number", False),
        "packages[0].build-number: expected an integer",
    ),
    ("missing build", _set("packages[0].build", ...), "packages[0].build: missing"),
    ("missing kind", _set("packages[2].kind", ...), "packages[2].kind: missing"),
    ("unknown kind", _set("packages[2].kind", "npm"), "packages[2].kind: 'npm' is neither"),
    (
        "unknown artifact key",
        _set("packages[2].password", "x"),
        "packages[2].password: unknown key",
    ),
    ("unknown top-level key", _set("extra", 1), "extra: unknown key"),
    ("unknown inputs key", _set("inputs.mirrors", []), "inputs.mirrors: unknown key"),
    (
        "unknown environment key",
        _set("environments.test.features", []),
        "environments.test.features: unknown key",
    ),
    (
        "unknown requirements key",
        _set("environments.test.requirements.npm", ["x"]),
        "environments.test.requirements.npm: unknown key",
    ),
    (
        "requirements not strings",
        _set("environments.test.requirements.pypi", [1]),
        "environments.test.requirements.pypi: expected a list of strings",
    ),
    ("platforms not a list", _set("inputs.platforms", "linux-64"), "inputs.platforms: expected"),
    ("inputs not a mapping", _set("inputs", []), "inputs: expected a mapping"),
    ("packages not a list", _set("packages", {}), "packages: expected a list"),
    ("artifact not a mapping", _set("packages[3]", "six"), "packages[3]: expected a mapping"),
    (
        "undescribed url",
        _set("environments.test.packages.win-64[0]", {"pypi": f"{FILES}/nowhere.whl"}),
        "environments.test.packages.win-64[0]: pypi: ",
    ),
    (
        "ref of the wrong kind",
        _set(
            "environments.default.packages.linux-64[2]",
            {"conda": f"{FILES}/attrs/attrs-23.1.0-py3-none-any.whl"},
        ),
        "is not described under packages",
    ),
    (
        "ref with two keys",
        _set("environments.test.packages.win-64[0]", {"pypi": "a", "conda": "b"}),
        "environments.test.packages.win-64[0]: expected {pypi: URL} or {conda: URL}",
    ),
    (
        "platform refs not a list",
        _set("environments.test.packages.win-64", "six"),
        "environments.test.packages.win-64: expected a list",
    ),
    ("environment not a mapping", _set("environments.test", []), "environments.test: expected"),
    ("missing lockenv-version", _set("lockenv-version", ...), "lockenv-version: missing"),
    ("version as string", _set("version", "1"), "version: expected an integer"),
    (
        "filename with a slash",
        _set("packages[2].filename", "../../etc/x.whl"),
        "packages[2].filename: '../../etc/x.whl' is not a plain file name",
    ),
    (
        "filename with a backslash",
        _set("packages[2].filename", "..\\x.whl"),
        "packages[2].filename: '..\\\\x.whl' is not a plain file name",
    ),
    ("filename '..'", _set("packages[2].filename", ".."), "packages[2].filename: '..' is not"),
    ("filename '.'", _set("packages[2].filename", "."), "packages[2].filename: '.' is not"),
    ("empty filename", _set("packages[2].filename", ""), "packages[2].filename: '' is not"),
    ("filename with NUL", _set("packages[2].filename", "a\0.whl"), "packages[2].filename:"),
]


# A JSON schema cannot follow a reference from an environment to `packages`.
_CROSS_REFERENCES = {"undescribed url", "ref of the wrong kind"}


@pytest.mark.parametrize(
    ("case", "mutate", "expected"), [pytest.param(i, m, e, id=i) for i, m, e in BROKEN]
)
def test_hand_broken_lock_is_refused(
    case: str, mutate: Callable[[dict[str, Any]], None], expected: str, schema_validator: Any
) -> None:
    data = _good()
    mutate(data)
    text = yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(LockfileError) as info:
        loads(text)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "lockenv lock" in message
    assert message.startswith(f"{LOCK_NAME} is not a valid lockfile: ")
    # The schema refuses what the reader refuses.
    assert (_schema_errors(schema_validator, data) == []) == (case in _CROSS_REFERENCES)


@pytest.mark.parametrize(
    ("name", "key", "value", "expected"),
    [
        ("gitdep", "commit", "abc123", "'abc123' is not a full git commit hash"),
        ("gitdep", "commit", ..., "commit: missing"),
        ("gitdep", "editable", True, "only a path source can be editable"),
        ("gitdep", "path", "x", "has both path and git"),
        ("gitdep", "subdirectory", "../up", "'../up' leaves the repository"),
        ("mycli", "path", "/abs/dir", "'/abs/dir' is not a relative POSIX path"),
        ("mycli", "editable", "yes", "editable: expected bool"),
        ("mycli", "sha256", "0" * 64, "sha256: unknown key"),
    ],
)
def test_hand_broken_source_is_refused(
    name: str, key: str, value: Any, expected: str, schema_validator: Any
) -> None:
    data = _good()
    entry = data["packages"][_pkg_index(data, name)]
    if value is ...:
        del entry[key]
    else:
        entry[key] = value
    with pytest.raises(LockfileError, match=re.escape(expected)):
        loads(yaml.safe_dump(data, sort_keys=False))
    assert _schema_errors(schema_validator, data) != []


def test_sources_are_keyed_by_path_and_commit() -> None:
    lock = loads(dumps(sample_lock()))
    refs = lock.environments["test"].packages["linux-64"]
    assert "." in refs
    git = "git+https://git.example.invalid/org/repo.git@0123456789abcdef0123456789abcdef01234567"
    assert f"{git}#subdirectory=pkg" in refs
    project = lock.artifacts["."]
    assert (
        isinstance(project, PypiSource) and project.editable and project.filename == ". (editable)"
    )
    assert dict(lock.inputs.pypi_options) == {"no-build": ("numpy",), "prefer-newest": True}


def test_sample_artifact_positions() -> None:
    # BROKEN names artifacts by position: keep the table honest if the sample changes.
    data = _good()
    assert [p["kind"] for p in data["packages"][:2]] == ["conda", "conda"]
    assert data["packages"][2]["kind"] == "pypi"
    assert _pkg_index(data, "python") == 0


def test_several_problems_are_reported_at_once() -> None:
    data = _good()
    data["packages"][0]["sha256"] = "nope"
    data["packages"][1]["size"] = -5
    data["environments"]["test"]["bogus"] = 1
    with pytest.raises(LockfileError) as info:
        from_dict(data)
    message = str(info.value)
    for part in ("packages[0].sha256", "packages[1].size", "environments.test.bogus: unknown key"):
        assert part in message


def test_many_problems_are_summarised() -> None:
    data = _good()
    for package in data["packages"]:
        if "url" in package:
            package["size"] = -1
    with pytest.raises(LockfileError, match=r"\(and 2 more\); run `lockenv lock`"):
        from_dict(data)


def test_described_twice() -> None:
    data = _good()
    data["packages"].append(copy.deepcopy(data["packages"][2]))
    with pytest.raises(LockfileError, match=r"packages\[9\]: .* is described twice"):
        from_dict(data)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\ninputs: [\n", "(line 3, column 1)"),
        ("version: 1\n  bad: indent\n", "(line 2, column 6)"),
        ("\tversion: 1\n", "(line 1, column 1)"),
        ("version: 1\npackages: {a: [1, 2}\n", "(line 2, column"),
    ],
)
def test_bad_yaml_names_line_and_column(text: str, where: str) -> None:
    with pytest.raises(LockfileError) as info:
        loads(text, source="demo/lockenv.lock")
    message = str(info.value)
    assert message.startswith("demo/lockenv.lock is not valid YAML ")
    assert where in message
    assert "lockenv lock" in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text\n", "1\n"])
def test_not_a_mapping(text: str) -> None:
    with pytest.raises(LockfileError, match=r"\(top\): expected a mapping.*lockenv lock"):
        loads(text)


@pytest.mark.parametrize("marker", ["<<<<<<< HEAD", "=======", ">>>>>>> feature"])
def test_merge_conflict_markers(marker: str) -> None:
    lines = dumps(sample_lock()).splitlines(keepends=True)
    lines.insert(9, marker + "\n")
    with pytest.raises(LockfileError) as info:
        loads("".join(lines))
    message = str(info.value)
    assert "merge conflict" in message
    assert "(line 10)" in message
    assert "lockenv lock" in message
    assert "\n" not in message


def test_indented_conflict_like_text_is_not_a_marker() -> None:
    lock = sample_lock()
    wheel = _wheel("odd", "1.0")
    odd = dataclasses.replace(wheel, requires_dist=("a\n=======\n<<<<<<< b",))
    lock = dataclasses.replace(lock, artifacts={**lock.artifacts, odd.url: odd})
    assert loads(dumps(lock)).artifacts[odd.url] == odd


@pytest.mark.parametrize("version", [0, 2, 99])
def test_wrong_lock_version(version: int, schema_validator: Any) -> None:
    data = _good()
    data["version"] = version
    with pytest.raises(LockfileError) as info:
        loads(yaml.safe_dump(data))
    message = str(info.value)
    assert f"version {version}" in message
    assert "lockenv lock" in message
    assert _schema_errors(schema_validator, data) != []


def test_lockfile_error_is_an_input_error() -> None:
    assert issubclass(LockfileError, LockenvError)
    assert LockfileError.exit_code == 2


# ---------------------------------------------------------------------------- schema itself


def _rename_env(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        data["environments"][new] = data["environments"].pop(old)

    return mutate


def _duplicate_ref(data: dict[str, Any]) -> None:
    refs = data["environments"]["test"]["packages"]["win-64"]
    refs.append(dict(refs[0]))


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (_set("inputs.platforms", ["plan9-64"]), "unknown platform"),
        (_set("environments.test.packages.plan9-64", []), "unknown platform key"),
        (_rename_env("test", "../x"), "environment name escapes .lockenv/envs"),
        (_rename_env("test", "Test"), "environment name the manifest refuses"),
        (_set("inputs.exclude-newer", "yesterday"), "not a date-time"),
        (_set("inputs.exclude-newer-span", "3 months"), "span in calendar units"),
        (
            _set("environments.test.base-environment", {"path": "/b", "python": "3.11"}),
            "base environment without its site-packages and digest",
        ),
        (_set("packages[2].upload-time", "2024-01-01"), "upload-time without a time"),
        (_set("packages[0].noarch", "java"), "unknown noarch"),
        (_set("packages[0].subdir", "plan9-64"), "unknown subdir"),
        (_set("packages[0].build-number", -1), "negative build number"),
        (_set("packages[0].timestamp", -1), "negative timestamp"),
        (_set("packages[2].requires-dist", []), "empty lists are left out by the writer"),
        (_set("inputs.system-requirements.glibc", 2.17), "system requirement not a string"),
        (_set("environments.test.requirements", ...), "requirements are always written"),
        (_set("inputs.channels", ...), "channels are always written"),
        (_duplicate_ref, "a platform names an artifact once"),
    ],
)
def test_schema_is_strict(
    mutate: Callable[[dict[str, Any]], None], why: str, schema_validator: Any
) -> None:
    data = _good()
    mutate(data)
    assert _schema_errors(schema_validator, data) != [], why


# ---------------------------------------------------------------------------- model helpers


def test_packages_for_and_environment() -> None:
    lock = loads(dumps(sample_lock()))
    names = [a.name for a in lock.packages_for("default", "osx-arm64")]
    assert names == ["attrs", "numpy", "six"]
    with pytest.raises(LockfileError, match=r"no environment 'nope' \(it has: default, test\)"):
        lock.environment("nope")
    with pytest.raises(LockfileError, match=r"not locked for platform 'osx-64'.*lockenv lock"):
        lock.packages_for("test", "osx-64")


def test_env_requested_names() -> None:
    env = LockedEnvironment(
        name="x",
        pypi_requirements=("Foo_Bar[extra]>=1", "not a requirement !!"),
        conda_requirements=("conda-forge::NumPy >=1.26", "python 3.11.*", "zlib"),
    )
    assert env_requested_names(env) == frozenset({"foo-bar", "numpy", "python", "zlib"})


def test_artifact_kinds() -> None:
    assert _wheel("six", "1.0").kind == "pypi"
    assert _wheel("six", "1.0").is_wheel
    assert _conda("zlib", "1.3", "linux-64").kind == "conda"


# ---------------------------------------------------------------------------- files


def _listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_write_lockfile(tmp_path: Path) -> None:
    path = tmp_path / LOCK_NAME
    lock = sample_lock()
    assert write_lockfile(lock, path) is True
    assert path.read_text(encoding="utf-8") == dumps(lock)
    stat = path.stat()
    # Unchanged: not rewritten at all (mtime and inode kept, so no needless diffs or syncs).
    assert write_lockfile(shuffled(lock, random.Random(1)), path) is False
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    changed = dataclasses.replace(lock, inputs=dataclasses.replace(lock.inputs, exclude_newer=None))
    assert write_lockfile(changed, path) is True
    assert read_lockfile(path) == canonical(changed)
    assert _listing(tmp_path) == [LOCK_NAME]


def test_write_lockfile_replaces_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / LOCK_NAME
    write_lockfile(sample_lock(), path)
    before = path.read_bytes()
    seen: list[bytes] = []
    original = os.replace

    def replace(source: Any, target: Any) -> None:
        # The new bytes are complete on disk before they take the lock's name.
        seen.append(Path(source).read_bytes())
        assert Path(target).read_bytes() == before
        original(source, target)

    monkeypatch.setattr("lockenv.atomic.os.replace", replace)
    changed = dataclasses.replace(sample_lock(), lockenv_version="9.9.9")
    assert write_lockfile(changed, path) is True
    assert seen == [dumps(changed).encode()]
    assert _listing(tmp_path) == [LOCK_NAME]


def test_write_lockfile_failure_leaves_old_lock_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / LOCK_NAME
    write_lockfile(sample_lock(), path)
    before = path.read_bytes()

    def replace(source: Any, target: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr("lockenv.atomic.os.replace", replace)
    with pytest.raises(OSError):
        write_lockfile(dataclasses.replace(sample_lock(), lockenv_version="9.9.9"), path)
    assert path.read_bytes() == before
    assert _listing(tmp_path) == [LOCK_NAME]


def test_read_lockfile_errors(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match=r"no lockfile at .*run `lockenv lock` first"):
        read_lockfile(tmp_path / LOCK_NAME)
    bad = tmp_path / LOCK_NAME
    bad.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(LockfileError, match=r"is not UTF-8 text \(byte 11\)"):
        read_lockfile(bad)
    big = tmp_path / "big.lock"
    big.write_bytes(b"#" * (MAX_LOCK + 1))
    with pytest.raises(LockfileError, match=r"cannot read .*larger than 16 MiB"):
        read_lockfile(big)
    with pytest.raises(LockfileError, match=r"big\.lock is larger than 16 MiB"):
        loads_bytes(big.read_bytes(), source="big.lock")
    bad.write_text("version: 1\ninputs: [\n", encoding="utf-8")
    with pytest.raises(LockfileError, match=re.escape(f"{bad!s} is not valid YAML (line 3")):
        read_lockfile(bad)


# ---------------------------------------------------------------------------- regressions
# Each of these once got through the reader or writer.


def test_environment_name_cannot_escape() -> None:
    data = _good()
    data["environments"]["../../outside"] = data["environments"].pop("test")
    with pytest.raises(LockfileError, match=r"environments\.\.\./\.\./outside"):
        from_dict(data)


def test_duplicate_keys_are_refused() -> None:
    text = dumps(sample_lock()).replace("size: 0\n", "size: 0\n  size: 1\n", 1)
    with pytest.raises(LockfileError, match="size"):
        loads(text)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
def test_bytes_do_not_depend_on_libyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = sample_lock()
    odd = dataclasses.replace(_wheel("odd", "1.0"), requires_dist=("caf\u00e9 \U0001f600",))
    lock = dataclasses.replace(lock, artifacts={**lock.artifacts, odd.url: odd})
    with_libyaml = dumps(lock)
    monkeypatch.delattr(yaml, "CSafeDumper", raising=False)
    assert dumps(lock) == with_libyaml


def test_a_base_environment_whose_digest_does_not_match_is_refused() -> None:
    base = BaseEnvironment(
        prefix="/opt/site",
        python="3.11.7",
        site_packages="lib/python3.11/site-packages",
        pypi=("alpha==1.0",),
    )
    lock = sample_lock()
    env = dataclasses.replace(lock.environments["default"], base=base)
    text = dumps(dataclasses.replace(lock, environments={**lock.environments, "default": env}))
    assert loads(text).environments["default"].base == base
    with pytest.raises(LockfileError, match=r"base-environment\.digest: does not match"):
        loads(text.replace("- alpha==1.0", "- alpha==2.0"))


# -- loads_remembered: the YAML parse kept beside the environment -------------------------


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each YAML parse `loads_remembered` makes (the text's first line)."""
    import lockenv.lockfile as lockfile

    parses: list[str] = []
    real = lockfile._yaml_data

    def counted(text: str, source: str) -> Any:
        parses.append(text)
        return real(text, source)

    monkeypatch.setattr(lockfile, "_yaml_data", counted)
    return parses


def test_loads_remembered_parses_each_lock_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.lockfile import loads_remembered

    parses = _counting_parses(monkeypatch)
    data = dumps(sample_lock()).encode()
    memo = tmp_path / ".default.parsed-lock.json"
    first = loads_remembered(data, memo)
    assert memo.is_file() and len(parses) == 1
    assert loads_remembered(data, memo) == first == loads_bytes(data)
    assert len(parses) == 2  # the last: loads_bytes, which never remembers
    assert json.loads(memo.read_text())["locks"][0]["sha256"] == hashlib.sha256(data).hexdigest()


def test_loads_remembered_keeps_the_last_few_locks_by_their_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.lockfile import loads_remembered

    parses = _counting_parses(monkeypatch)
    memo = tmp_path / "memo.json"
    base = sample_lock()
    locks = [dataclasses.replace(base, lockenv_version=f"0.{i}") for i in range(5)]
    datas = [dumps(lock).encode() for lock in locks]
    for data, lock in zip(datas, locks, strict=True):
        assert canonical(loads_remembered(data, memo)) == canonical(lock)
    assert len(parses) == 5
    for data, lock in zip(datas[1:], locks[1:], strict=True):  # the last four: remembered
        assert canonical(loads_remembered(data, memo)) == canonical(lock)
    assert len(parses) == 5
    assert canonical(loads_remembered(datas[0], memo)) == canonical(locks[0])
    assert len(parses) == 6  # forgotten: parsed again
    # Bytes that differ in a comment only are other bytes: parsed, never taken for the first.
    assert loads_remembered(datas[4] + b"# note\n", memo) == loads_remembered(datas[4], memo)
    assert len(parses) == 7


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and symlinks")
@pytest.mark.parametrize("how", ["group-writable", "symlink", "garbage", "other-format"])
def test_loads_remembered_ignores_a_memo_it_cannot_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    from lockenv.lockfile import loads_remembered

    real, other = sample_lock(), dataclasses.replace(sample_lock(), lockenv_version="9.9")
    data = dumps(real).encode()
    memo = tmp_path / "memo.json"
    # A memo claiming these bytes parse to another lock: believed only when it is a
    # regular file of this user's that nobody else may write.
    forged = {
        "format": 1,
        "locks": [{"sha256": hashlib.sha256(data).hexdigest(), "data": to_dict(other)}],
    }
    if how == "symlink":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(forged))
        os.chmod(target, 0o644)
        memo.symlink_to(target)
    else:
        if how == "garbage":
            memo.write_bytes(b"\x00{not json")
        else:
            forged["format"] = 1 if how == "group-writable" else 2
            memo.write_text(json.dumps(forged))
        os.chmod(memo, 0o664 if how == "group-writable" else 0o644)
    parses = _counting_parses(monkeypatch)
    assert canonical(loads_remembered(data, memo)) == canonical(real)
    assert len(parses) == 1


def test_loads_remembered_reports_a_bad_lock_and_survives_an_unwritable_memo(
    tmp_path: Path,
) -> None:
    from lockenv.lockfile import loads_remembered

    memo = tmp_path / "missing-dir" / "memo.json"
    data = dumps(sample_lock()).encode()
    assert loads_remembered(data, memo) == loads_bytes(data)
    assert not memo.parent.exists()
    with pytest.raises(LockfileError, match="not valid YAML"):
        loads_remembered(b"version: [1\n", tmp_path / "memo.json")
    with pytest.raises(LockfileError, match="conflict markers"):
        loads_remembered(data + b"<<<<<<< ours\n", tmp_path / "memo.json")


def test_remembered_parse_keeps_only_what_json_gives_back(tmp_path: Path) -> None:
    from lockenv.lockfile import _remember_parsed

    memo = tmp_path / "memo.json"
    _remember_parsed(memo, "a" * 64, {"when": datetime(2024, 1, 1)}, {})
    _remember_parsed(memo, "b" * 64, {1: "int key"}, {})
    assert not memo.exists()
    _remember_parsed(memo, "c" * 64, {"version": 1, "x": [1.0, True, None]}, {})
    assert json.loads(memo.read_text())["locks"] == [
        {"sha256": "c" * 64, "data": {"version": 1, "x": [1.0, True, None]}}
    ]


# -- _events_data: a lock's YAML read from libyaml's events ------------------------------
#
# `lockenv.lockfile._events_data` must give what the strict loader gives, or leave the text
# to it (`_UNSURE`): never other data, never data where the strict loader refuses.


def _strict_or_error(text: str) -> Any:
    from lockenv import lockfile

    try:
        return yaml.load(text, Loader=lockfile._strict_loader())
    except (yaml.YAMLError, RecursionError) as exc:
        return type(exc)


def _events_agree(text: str) -> bool:
    """Whether `_events_data` read ``text`` itself (False: it left it to the strict loader),
    checking that what it read is what the strict loader reads."""
    from lockenv import lockfile

    fast = lockfile._events_data(text)
    if fast is lockfile._UNSURE:
        return False
    assert fast == _strict_or_error(text), text
    return True


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lock=locks())
def test_every_lock_lockenv_writes_is_read_from_events(lock: Lockfile) -> None:
    assert _events_agree(dumps(lock))


_TRICKY = st.sampled_from(
    [
        *("yes", "No", "ON", "off", "~", "null", "Null", "true", "1.0", "1e3", "0x1F", "0o17"),
        *("1_000", "1:20", "-7", "+3", "2024-01-01", "2024-01-01 10:00:00Z", ".inf", "-.Inf"),
        *(".NaN", "=", "<<", "", " lead", "trail ", "a: b", "- x", "#c", "'q'", '"d"', "caf\u00e9"),
        *("\t", "line\nbreak", "[x]", "{y}", "*star", "&amp", "!bang", "%pct", "@at", "`tick"),
    ]
)
_SCALARS = st.one_of(
    _TRICKY, st.text(max_size=8), st.integers(), st.booleans(), st.none(), st.dates()
)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(_TRICKY, st.text(max_size=5), st.integers()), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
@settings(max_examples=300, deadline=None)
@given(data=_DATA, flow=st.sampled_from([False, True, None]), unicode=st.booleans())
def test_events_read_any_data_as_the_strict_loader_does(
    data: Any, flow: bool | None, unicode: bool
) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=unicode, sort_keys=False)
    _events_agree(text)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
@pytest.mark.parametrize(
    "text",
    [
        "a: &x [1]\nb: *x\n",  # an alias
        "a: !!str 1\n",  # explicit tags
        "a: !!binary aGk=\n",
        "a: !!python/name:os.system\n",
        "a: !custom x\n",
        "base: &b {x: 1}\nderived:\n  <<: *b\n",  # merge keys
        "a:\n  <<: {x: 1}\n",
        "a: 1\na: 2\n",  # duplicate keys
        "? [1, 2]\n: x\n",  # unhashable keys
        "? {a: 1}\n: x\n",
        "--- 1\n--- 2\n",  # two documents
        "",  # none
        "# only a comment\n",
        "a: =\n",  # a scalar no safe constructor takes
        "[" * 200 + "]" * 200,  # deeper than any lock
        "a: [1, 2\n",  # not YAML
        "a: b: c\n",
        "\tkey: tab\n",
    ],
)
def test_what_the_events_leave_to_the_strict_loader(text: str) -> None:
    assert not _events_agree(text)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: 2\n",  # an anchor nothing refers to
        "a: ! 12\nb: ! [1]\n",  # the non-specific tag
        "{a: [1, 2.5, yes, ~, 2024-01-02], 'b': \"c\\u00e9\", 3: x}\n",
        "%YAML 1.1\n---\na: 1\n...\n",
        "a: |\n  two\n  lines\nb: >\n  folded\n  text\n",
        "- 0o17\n- 0x1F\n- 1_000\n- 1:20\n- .inf\n- -.Inf\n- +3\n",
    ],
)
def test_what_the_events_read_themselves(text: str) -> None:
    assert _events_agree(text)


def test_a_lock_with_an_alias_is_still_refused_with_its_line() -> None:
    text = dumps(sample_lock()).replace("lockenv-version:", "x: &a 1\ny: *a\nlockenv-version:")
    with pytest.raises(LockfileError, match=r"not valid YAML \(line \d+, column \d+\): alias"):
        loads(text)
