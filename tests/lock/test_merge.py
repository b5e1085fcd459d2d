"""Merging locks: conflict markers cut into sides, and the three-way merge of pins."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockenv.errors import LockfileError
from lockenv.lock.merge import conflict_sides, merge_locks, read_conflicted, read_side
from lockenv.lockfile import (
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
    dumps,
    sequence_of_urls,
)

Pins = dict[str, str]  # name -> version ("c:name" for a conda package)


def _artifact(name: str, version: str) -> Artifact:
    sha = hashlib.sha256(f"{name}=={version}".encode()).hexdigest()
    if name.startswith("c:"):
        bare = name[2:]
        build = "h0_1" if version.endswith("+1") else "h0_0"
        version = version.removesuffix("+1")
        filename = f"{bare}-{version}-{build}.conda"
        return CondaArtifact(
            name=bare,
            version=version,
            build=build,
            build_number=int(build[-1]),
            subdir="linux-64",
            filename=filename,
            url=f"https://conda.example.invalid/c/linux-64/{filename}",
            sha256=sha,
            size=1,
        )
    filename = f"{name}-{version}-py3-none-any.whl"
    return PypiArtifact(
        name=name,
        version=version,
        filename=filename,
        url=f"https://files.example.invalid/{filename}",
        sha256=sha,
        size=1,
    )


def make_lock(
    envs: dict[str, dict[str, Pins]],
    *,
    requirements: tuple[str, ...] = (),
    platforms: tuple[str, ...] = ("linux-64",),
    exclude_newer: str | None = None,
) -> Lockfile:
    artifacts: dict[str, Artifact] = {}
    environments = {}
    for env, by_platform in envs.items():
        packages = {}
        for platform, pins in by_platform.items():
            chosen = [_artifact(n, v) for n, v in pins.items()]
            artifacts.update((a.url, a) for a in chosen)
            packages[platform] = sequence_of_urls(chosen)
        environments[env] = LockedEnvironment(
            name=env, pypi_requirements=requirements, packages=packages
        )
    return Lockfile(
        inputs=LockInputs(platforms=platforms, exclude_newer=exclude_newer),
        environments=environments,
        artifacts=artifacts,
    )


def pins_of(lock: Lockfile, env: str = "default", platform: str = "linux-64") -> Pins:
    out = {}
    for a in lock.packages_for(env, platform):
        key = f"c:{a.name}" if a.kind == "conda" else a.name
        version = a.version
        if isinstance(a, CondaArtifact) and a.build_number:
            version += "+1"
        out[key] = version
    return out


# ------------------------------------------------------------------ three-way, table-driven

BASE: Pins = {"alpha": "1.0", "beta": "1.0", "gamma": "1.0", "c:zlib": "1.2"}


@pytest.mark.parametrize(
    ("ours", "theirs", "merged", "noted"),
    [
        pytest.param(BASE, BASE, BASE, 0, id="nothing-moved"),
        pytest.param(
            {**BASE, "alpha": "2.0"}, BASE, {**BASE, "alpha": "2.0"}, 0, id="ours-upgraded"
        ),
        pytest.param(
            BASE, {**BASE, "alpha": "2.0"}, {**BASE, "alpha": "2.0"}, 0, id="theirs-upgraded"
        ),
        pytest.param(
            {**BASE, "alpha": "2.0"},
            {**BASE, "beta": "3.0"},
            {**BASE, "alpha": "2.0", "beta": "3.0"},
            0,
            id="each-side-one-package",
        ),
        pytest.param(
            {**BASE, "alpha": "2.0"},
            {**BASE, "alpha": "1.5"},
            {**BASE, "alpha": "2.0"},
            1,
            id="both-moved-newer-wins",
        ),
        pytest.param(
            {**BASE, "alpha": "0.9"},
            {**BASE, "alpha": "1.5"},
            {**BASE, "alpha": "1.5"},
            1,
            id="both-moved-newer-wins-theirs",
        ),
        pytest.param(
            {**BASE, "delta": "1.0"},
            {**BASE, "epsilon": "2.0"},
            {**BASE, "delta": "1.0", "epsilon": "2.0"},
            0,
            id="each-side-added",
        ),
        pytest.param(
            {k: v for k, v in BASE.items() if k != "gamma"},
            BASE,
            {k: v for k, v in BASE.items() if k != "gamma"},
            0,
            id="ours-removed",
        ),
        pytest.param(
            {k: v for k, v in BASE.items() if k != "gamma"},
            {**BASE, "gamma": "2.0"},
            {**BASE, "gamma": "2.0"},
            1,
            id="removed-vs-upgraded-keeps-upgrade",
        ),
        pytest.param(
            {**BASE, "c:zlib": "1.3"},
            {**BASE, "c:zlib": "1.2+1"},
            {**BASE, "c:zlib": "1.3"},
            1,
            id="conda-version-order",
        ),
        pytest.param(
            {**BASE, "c:zlib": "1.2+1"},
            {**BASE, "c:zlib": "1.2"},
            {**BASE, "c:zlib": "1.2+1"},
            0,
            id="conda-new-build-one-side",
        ),
    ],
)
def test_three_way(ours: Pins, theirs: Pins, merged: Pins, noted: int) -> None:
    base = make_lock({"default": {"linux-64": BASE}})
    outcome = merge_locks(
        base,
        make_lock({"default": {"linux-64": ours}}),
        make_lock({"default": {"linux-64": theirs}}),
    )
    assert pins_of(outcome.lock) == merged
    assert len(outcome.notes) == noted
    # Every artifact an environment names is described, and nothing else is.
    named = {u for e in outcome.lock.environments.values() for p in e.packages.values() for u in p}
    assert named == set(outcome.lock.artifacts)


def test_without_a_base_the_newer_pin_wins_quietly() -> None:
    outcome = merge_locks(
        None,
        make_lock({"default": {"linux-64": {"alpha": "2.0", "beta": "1.0"}}}),
        make_lock({"default": {"linux-64": {"alpha": "1.0", "gamma": "1.0"}}}),
    )
    assert pins_of(outcome.lock) == {"alpha": "2.0", "beta": "1.0", "gamma": "1.0"}
    assert outcome.notes == ()


def test_environments_platforms_requirements_and_inputs() -> None:
    base = make_lock(
        {"default": {"linux-64": BASE}, "old": {"linux-64": BASE}},
        requirements=("alpha<2", "beta"),
    )
    ours = make_lock(
        {"default": {"linux-64": BASE, "win-64": BASE}},  # dropped `old`, added a platform
        requirements=("alpha", "beta"),
        exclude_newer="2025-01-01T00:00:00Z",
    )
    theirs = make_lock(
        {"default": {"linux-64": BASE}, "old": {"linux-64": BASE}, "new": {"linux-64": BASE}},
        requirements=("alpha<2", "beta", "gamma"),
    )
    # Their `old` is the base's: removed by ours, untouched by theirs.
    theirs = replace(theirs, environments={**theirs.environments, "old": base.environments["old"]})
    outcome = merge_locks(base, ours, theirs)
    lock = outcome.lock
    assert sorted(lock.environments) == ["default", "new"]
    assert sorted(lock.environments["default"].packages) == ["linux-64", "win-64"]
    assert lock.environments["default"].pypi_requirements == ("alpha", "beta", "gamma")
    assert lock.inputs.exclude_newer == "2025-01-01T00:00:00Z"
    assert outcome.notes == ()


def test_both_sides_changing_an_input_keeps_ours_and_says_so() -> None:
    base = make_lock({"default": {"linux-64": BASE}})
    ours = replace(base, inputs=replace(base.inputs, exclude_newer="2025-01-01T00:00:00Z"))
    theirs = replace(base, inputs=replace(base.inputs, exclude_newer="2024-01-01T00:00:00Z"))
    outcome = merge_locks(base, ours, theirs)
    assert outcome.lock.inputs.exclude_newer == "2025-01-01T00:00:00Z"
    assert outcome.notes == (
        "inputs.exclude-newer: both sides changed it; kept ours "
        "('2025-01-01T00:00:00Z', not '2024-01-01T00:00:00Z')",
    )


_PINS = st.dictionaries(
    st.sampled_from(["alpha", "beta", "gamma", "c:zlib"]),
    st.sampled_from(["1.0", "1.5", "2.0"]),
)


@given(_PINS, _PINS)
def test_merge_laws(base_pins: Pins, other_pins: Pins) -> None:
    base = make_lock({"default": {"linux-64": base_pins}})
    other = make_lock({"default": {"linux-64": other_pins}})
    # A side that did nothing takes the other side's work, whichever side it is.
    assert dumps(merge_locks(base, base, other).lock) == dumps(other)
    assert dumps(merge_locks(base, other, base).lock) == dumps(other)
    assert dumps(merge_locks(base, other, other).lock) == dumps(other)
    # Without a base: the same result whichever side is ours.
    a = merge_locks(None, base, other).lock
    b = merge_locks(None, other, base).lock
    assert dumps(a) == dumps(b)


# ------------------------------------------------------------------ conflict markers


@pytest.mark.parametrize(
    ("text", "ours", "theirs", "base"),
    [
        ("a\nb\n", None, None, None),
        ("a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> other\nd\n", "a\nb\nd\n", "a\nc\nd\n", None),
        (
            "<<<<<<< ours\nb\n||||||| base\nx\n=======\nc\n>>>>>>> theirs\n",
            "b\n",
            "c\n",
            "x\n",
        ),
        (
            "a\n<<<<<<<\n=======\nc\n>>>>>>>\n<<<<<<< HEAD\nq\n=======\n>>>>>>> b\n",
            "a\nq\n",
            "a\nc\n",
            None,
        ),
        (
            "a\r\n<<<<<<< HEAD\r\nb\r\n=======\r\nc\r\n>>>>>>> x\r\n",
            "a\r\nb\r\n",
            "a\r\nc\r\n",
            None,
        ),
    ],
)
def test_conflict_sides(text: str, ours: str | None, theirs: str | None, base: str | None) -> None:
    sides = conflict_sides(text, source="lockenv.lock")
    if ours is None:
        assert sides is None
        return
    assert sides is not None
    assert (sides.ours, sides.theirs, sides.base) == (ours, theirs, base)


@pytest.mark.parametrize(
    "text",
    [
        "<<<<<<< HEAD\nb\n=======\nc\n",
        "<<<<<<< HEAD\nb\n<<<<<<< HEAD\n=======\nc\n>>>>>>> x\n",
    ],
)
def test_broken_markers(text: str) -> None:
    with pytest.raises(LockfileError, match=r"lockenv\.lock: .*git checkout --ours"):
        conflict_sides(text, source="lockenv.lock")


def _conflicted(ours: Lockfile, theirs: Lockfile) -> str:
    """A whole-file conflict of two locks, as git writes one."""
    return f"<<<<<<< HEAD\n{dumps(ours)}=======\n{dumps(theirs)}>>>>>>> branch\n"


def test_read_conflicted_prefers_newer_pins_of_both_sides() -> None:
    ours = make_lock({"default": {"linux-64": {"alpha": "2.0", "beta": "1.0"}}})
    theirs = make_lock({"default": {"linux-64": {"alpha": "1.0", "gamma": "1.0"}}})
    outcome = read_conflicted(_conflicted(ours, theirs), source="lockenv.lock")
    assert outcome is not None
    assert pins_of(outcome.lock) == {"alpha": "2.0", "beta": "1.0", "gamma": "1.0"}


def test_a_side_naming_what_only_the_other_describes_is_still_read() -> None:
    lock = make_lock({"default": {"linux-64": {"alpha": "1.0", "beta": "1.0"}}})
    lines = dumps(lock).splitlines(keepends=True)
    # Drop beta's description (git took that hunk from the other side): its reference goes.
    begin = lines.index("  name: beta\n") - 1
    end = next((i for i in range(begin + 1, len(lines)) if lines[i].startswith("- ")), len(lines))
    broken = "".join(lines[:begin] + lines[end:])
    side = read_side(broken, source="x")
    assert side is not None
    assert pins_of(side) == {"alpha": "1.0"}
    assert read_side("not: [a lock", source="x") is None


def test_unreadable_sides() -> None:
    lock = make_lock({"default": {"linux-64": {"alpha": "1.0"}}})
    text = f"<<<<<<< HEAD\n{dumps(lock)}=======\n: : :\n>>>>>>> b\n"
    outcome = read_conflicted(text, source="lockenv.lock")
    assert outcome is not None
    assert pins_of(outcome.lock) == {"alpha": "1.0"}
    assert outcome.notes == ("only our side of the conflict was readable",)
    with pytest.raises(LockfileError, match="neither side"):
        read_conflicted("<<<<<<< HEAD\n: :\n=======\n: : :\n>>>>>>> b\n", source="lockenv.lock")
