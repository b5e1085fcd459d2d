"""Conda and mixed conda + PyPI resolver cases from fixtures/resolver_cases/conda_cases.toml."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from lockenv.errors import LockenvError
from lockenv.lock.manifest import Manifest, parse_manifest
from lockenv.lock.resolve import LockOptions, lock_manifest
from lockenv.lockfile import CondaArtifact, Lockfile

CASES_FILE = Path(__file__).parents[2] / "fixtures" / "resolver_cases" / "conda_cases.toml"
CASES: dict[str, dict[str, Any]] = tomllib.loads(CASES_FILE.read_text())


def conda_manifest(root: Path, channel: str, index: str, case: dict[str, Any]) -> Manifest:
    platforms = case.get("platforms", ["linux-64", "osx-arm64", "win-64"])
    lines = [
        "[project]",
        'name = "case"',
        f"platforms = {json.dumps(platforms)}",
        f"channels = {json.dumps([channel])}",
        f"indexes = {json.dumps([index])}",
    ]
    if "exclude-newer" in case:
        lines.append(f'exclude-newer = "{case["exclude-newer"]}"')
    lines.append("[dependencies]")
    lines += [f"{name} = {json.dumps(spec)}" for name, spec in case["conda"].items()]
    if case.get("pypi"):
        lines.append("[pypi-dependencies]")
        for requirement in case["pypi"]:
            name, _, extras = requirement.partition("[")
            if extras:
                lines.append(f'{name} = {{ version = "*", extras = ["{extras.rstrip("]")}"] }}')
            else:
                lines.append(f'{name} = "*"')
    if case.get("map"):
        lines.append("[conda-pypi-map]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in case["map"].items()]
    if case.get("system"):
        lines.append("[system-requirements]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in case["system"].items()]
    return parse_manifest("\n".join(lines) + "\n", path=root / "lockenv.toml")


def pins(lock: Lockfile, platform: str) -> dict[str, Any]:
    return {a.name: a for a in lock.packages_for("default", platform)}


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_conda_case(
    case_name: str, fixture_channel_dir: Path, fixture_index_dir: Path, tmp_path: Path
) -> None:
    case = CASES[case_name]
    manifest = conda_manifest(
        tmp_path, fixture_channel_dir.as_uri(), (fixture_index_dir / "simple").as_uri(), case
    )
    options = LockOptions(cache_dir=tmp_path / "cache")
    if "error" in case:
        with pytest.raises(LockenvError) as info:
            lock_manifest(manifest, previous=None, options=options)
        message = str(info.value)
        assert "\n" not in message
        for words in case["error"]:
            assert words in message, message
        return
    lock = lock_manifest(manifest, previous=None, options=options)
    for platform in manifest.platforms:
        pinned = pins(lock, platform)
        assert {name: a.version for name, a in pinned.items()} == case["resolved"], platform
        for name, build in case.get("builds", {}).items():
            assert pinned[name].build == build
        for name, kind in case.get("kinds", {}).items():
            assert pinned[name].kind == kind
        for artifact in pinned.values():
            if isinstance(artifact, CondaArtifact):
                assert artifact.subdir in (platform, "noarch")
                assert artifact.filename.endswith(".conda")  # preferred over .tar.bz2


def test_conda_pins_are_preferences(
    fixture_channel_dir: Path, fixture_index_dir: Path, tmp_path: Path
) -> None:
    index = (fixture_index_dir / "simple").as_uri()
    channel = fixture_channel_dir.as_uri()
    old = lock_manifest(
        conda_manifest(tmp_path, channel, index, {"conda": {"libzlib": "<1.3"}}),
        previous=None,
        options=LockOptions(cache_dir=tmp_path / "c"),
    )
    assert pins(old, "linux-64")["libzlib"].version == "1.2.13"
    relaxed = conda_manifest(tmp_path, channel, index, {"conda": {"libzlib": "*", "blas": "*"}})
    new = lock_manifest(relaxed, previous=old, options=LockOptions(cache_dir=tmp_path / "c"))
    assert pins(new, "linux-64")["libzlib"].version == "1.2.13"
    updated = lock_manifest(
        relaxed,
        previous=new,
        options=LockOptions(cache_dir=tmp_path / "c", update=frozenset({"libzlib"})),
    )  # type: ignore[arg-type]
    assert pins(updated, "linux-64")["libzlib"].version == "1.3.1"


def test_conda_lock_is_fresh_and_detects_staleness(
    fixture_channel_dir: Path, fixture_index_dir: Path, tmp_path: Path
) -> None:
    from lockenv.lock.satisfy import stale_reasons

    index = (fixture_index_dir / "simple").as_uri()
    channel = fixture_channel_dir.as_uri()
    case = {
        "conda": {"python": "3.11.*", "numpy-lite": "*", "constrained": "*"},
        "pypi": ["gamma[all]"],
    }
    manifest = conda_manifest(tmp_path, channel, index, case)
    lock = lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    assert stale_reasons(manifest, lock) == []
    changed = conda_manifest(
        tmp_path, channel, index, {**case, "conda": {**case["conda"], "numpy-lite": ">=2"}}
    )
    reasons = stale_reasons(changed, lock)
    assert reasons and all("numpy-lite" in r for r in reasons)
