"""The environment state file and the lock-versus-environment comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockenv.sync.plan import (
    EnvState,
    InstalledPackage,
    WantedPackage,
    dist_info_names,
    plan_sync,
    read_state,
    write_state,
)


def _pkg(name: str, version: str, sha: str) -> InstalledPackage:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    return InstalledPackage(
        name=name, version=version, sha256=sha, filename=f"{name}.whl", dist_info=dist
    )


def _state(*packages: InstalledPackage) -> EnvState:
    return EnvState(
        lock_sha256="l" * 64,
        environment="default",
        platform="linux-64",
        prefix="/p",
        lockenv_version="0.1.0",
        python_executable="/usr/bin/python3.11",
        python_version="3.11.2",
        site_packages="lib/python3.11/site-packages",
        link_mode="hardlink",
        bytecode=False,
        packages=packages,
    )


A1, A2, B1 = _pkg("alpha", "1.0", "a1"), _pkg("alpha", "2.0", "a2"), _pkg("beta", "1.0", "b1")


def _want(p: InstalledPackage) -> WantedPackage:
    return WantedPackage(name=p.name, version=p.version, sha256=p.sha256)


@pytest.mark.parametrize(
    ("wanted", "state", "on_disk", "installed", "removed", "unchanged"),
    [
        ([A1, B1], None, [], ("alpha==1.0", "beta==1.0"), (), ()),
        ([A1, B1], (A1, B1), [A1.dist_info, B1.dist_info], (), (), ("alpha==1.0", "beta==1.0")),
        (
            [A2, B1],
            (A1, B1),
            [A1.dist_info, B1.dist_info],
            ("alpha==2.0",),
            ("alpha==1.0",),
            ("beta==1.0",),
        ),
        ([A1], (A1, B1), [A1.dist_info, B1.dist_info], (), ("beta==1.0",), ("alpha==1.0",)),
        # beta deleted by hand: installed again
        ([A1, B1], (A1, B1), [A1.dist_info], ("beta==1.0",), (), ("alpha==1.0",)),
        # gamma installed by hand: removed
        ([A1], (A1,), [A1.dist_info, "gamma-3.0.dist-info"], (), ("gamma==3.0",), ("alpha==1.0",)),
        # an environment lockenv did not make: everything found is foreign
        ([A1], None, ["alpha-1.0.dist-info"], ("alpha==1.0",), ("alpha==1.0",), ()),
    ],
)
def test_plan_sync(
    wanted: list[InstalledPackage],
    state: tuple[InstalledPackage, ...] | None,
    on_disk: list[str],
    installed: tuple[str, ...],
    removed: tuple[str, ...],
    unchanged: tuple[str, ...],
) -> None:
    plan = plan_sync([_want(w) for w in wanted], None if state is None else _state(*state), on_disk)
    assert (plan.installed, plan.removed, plan.unchanged) == (installed, removed, unchanged)
    assert plan.changes == bool(installed or removed)


def test_state_round_trip(tmp_path: Path) -> None:
    state = _state(A1, B1)
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert state.dist_infos == sorted([A1.dist_info, B1.dist_info])


@pytest.mark.parametrize("text", ["", "{}", "[]", '{"format": 99}', "not json", '{"format": 1}'])
def test_unreadable_state_is_none(tmp_path: Path, text: str) -> None:
    (tmp_path / ".lockenv-state.json").write_text(text)
    assert read_state(tmp_path) is None


def test_dist_info_names(tmp_path: Path) -> None:
    for name in ("b-1.dist-info", "a-1.dist-info", "a", "x.egg-info"):
        (tmp_path / name).mkdir()
    assert dist_info_names(tmp_path) == ["a-1.dist-info", "b-1.dist-info"]
    assert dist_info_names(tmp_path / "missing") == []


@given(st.lists(st.sampled_from([A1, A2, B1]), unique_by=lambda p: p.name))
def test_every_wanted_package_is_installed_or_unchanged(wanted: list[InstalledPackage]) -> None:
    plan = plan_sync([_want(w) for w in wanted], _state(A1, B1), [A1.dist_info, B1.dist_info])
    assert sorted(plan.installed + plan.unchanged) == sorted(
        f"{w.name}=={w.version}" for w in wanted
    )
    assert not set(plan.installed) & set(plan.unchanged)
