"""Resolver cases from fixtures/resolver_cases/cases.toml, over the fixture index."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from lockenv.errors import LockenvError
from lockenv.lock.exclude_newer import format_span
from lockenv.lock.manifest import Manifest, parse_manifest
from lockenv.lock.resolve import LockOptions, format_time, lock_manifest
from lockenv.lockfile import Lockfile

CASES_FILE = Path(__file__).parents[2] / "fixtures" / "resolver_cases" / "cases.toml"
CASES: dict[str, dict[str, Any]] = tomllib.loads(CASES_FILE.read_text())


def make_manifest(
    root: Path,
    index_url: str,
    requested: list[str],
    *,
    platforms: list[str] | None = None,
    python: str = "3.11",
    extra: str = "",
) -> Manifest:
    lines = []
    for requirement in requested:
        req = Requirement(requirement)
        spec = str(req.specifier) or "*"
        if req.extras:
            extras = ", ".join(f'"{e}"' for e in sorted(req.extras))
            lines.append(f'{req.name} = {{ version = "{spec}", extras = [{extras}] }}')
        else:
            lines.append(f'{req.name} = "{spec}"')
    text = (
        "[project]\n"
        'name = "case"\n'
        f"platforms = {platforms or ['linux-64', 'osx-arm64', 'win-64']!r}\n".replace("'", '"')
        + f'indexes = ["{index_url}"]\n'
        + f'requires-python = "=={python}.*"\n'
        + extra
        + "\n[pypi-dependencies]\n"
        + "\n".join(lines)
        + "\n"
    )
    return parse_manifest(text, path=root / "lockenv.toml")


def pins(lock: Lockfile, platform: str, env: str = "default") -> dict[str, str]:
    return {a.name: a.version for a in lock.packages_for(env, platform)}


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_resolver_case(case_name: str, fixture_index_dir: Path, tmp_path: Path) -> None:
    case = CASES[case_name]
    manifest = make_manifest(
        tmp_path,
        (fixture_index_dir / "simple").as_uri(),
        case["requested"],
        platforms=case.get("platforms"),
        python=case.get("python", "3.11"),
        extra=case.get("manifest", ""),
    )
    if "error" in case:
        with pytest.raises(LockenvError) as info:
            lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
        message = str(info.value)
        assert "\n" not in message
        for words in case["error"]:
            assert words in message
        return
    lock = lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    for platform in manifest.platforms:
        assert pins(lock, platform) == case["resolved"], platform


def test_platform_specific_wheels(fixture_index_dir: Path, tmp_path: Path) -> None:
    manifest = make_manifest(
        tmp_path,
        (fixture_index_dir / "simple").as_uri(),
        ["numfast"],
        platforms=["linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64"],
    )
    lock = lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    files = {p: lock.packages_for("default", p)[0].filename for p in manifest.platforms}
    assert files == {
        "linux-64": "numfast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "linux-aarch64": "numfast-1.0-cp311-cp311-manylinux_2_28_aarch64.whl",
        "osx-64": "numfast-1.0-cp311-cp311-macosx_10_9_x86_64.whl",
        "osx-arm64": "numfast-1.0-cp311-cp311-macosx_11_0_arm64.whl",
        "win-64": "numfast-1.0-cp311-cp311-win_amd64.whl",
    }
    # One artifact per distinct file: pure wheels are shared, platform wheels are not.
    assert len(lock.artifacts) == 5


def test_glibc_floor_excludes_newer_manylinux(fixture_index_dir: Path, tmp_path: Path) -> None:
    manifest = make_manifest(
        tmp_path,
        (fixture_index_dir / "simple").as_uri(),
        ["numfast"],
        platforms=["linux-aarch64"],
        extra='\n[system-requirements]\nglibc = "2.17"\n',
    )
    with pytest.raises(LockenvError, match="none installs on linux-aarch64"):
        lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))


def test_locked_versions_are_preferences(fixture_index_dir: Path, tmp_path: Path) -> None:
    index = (fixture_index_dir / "simple").as_uri()
    old = lock_manifest(
        make_manifest(tmp_path, index, ["alpha<2", "delta==1.0"]),
        previous=None,
        options=LockOptions(cache_dir=tmp_path / "c"),
    )
    assert pins(old, "linux-64") == {"alpha": "1.1", "delta": "1.0"}
    # Loosening the manifest moves nothing; adding a package moves nothing else.
    relaxed = make_manifest(tmp_path, index, ["alpha", "delta", "epsilon"])
    new = lock_manifest(relaxed, previous=old, options=LockOptions(cache_dir=tmp_path / "c"))
    assert pins(new, "linux-64") == {"alpha": "1.1", "delta": "1.0", "epsilon": "0.9"}
    # --update NAME frees exactly that name.
    updated = lock_manifest(
        relaxed,
        previous=new,
        options=LockOptions(cache_dir=tmp_path / "c", update=frozenset({"alpha"})),
    )  # type: ignore[arg-type]
    assert pins(updated, "linux-64") == {
        "alpha": "2.0",
        "beta": "1.5",
        "delta": "1.0",
        "epsilon": "0.9",
    }
    everything = lock_manifest(
        relaxed, previous=new, options=LockOptions(cache_dir=tmp_path / "c", update_all=True)
    )
    assert pins(everything, "linux-64")["delta"] == "1.1"


def test_exclude_newer(fixture_index_dir: Path, tmp_path: Path) -> None:
    index = (fixture_index_dir / "simple").as_uri()
    manifest = make_manifest(
        tmp_path, index, ["alpha"], platforms=["linux-64"], extra='exclude-newer = "2025-01-01"\n'
    )
    lock = lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    assert pins(lock, "linux-64") == {"alpha": "1.1"}
    assert lock.inputs.exclude_newer == "2025-01-01T00:00:00Z"


def test_exclude_newer_duration(fixture_index_dir: Path, tmp_path: Path) -> None:
    # A span that puts the cutoff on 2025-01-01 today: between alpha 1.1 and 2.0.
    days = (datetime.now(UTC) - datetime(2025, 1, 1, tzinfo=UTC)).days
    index = (fixture_index_dir / "simple").as_uri()
    manifest = make_manifest(
        tmp_path, index, ["alpha"], platforms=["linux-64"], extra=f'exclude-newer = "{days}d"\n'
    )
    lock = lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    assert pins(lock, "linux-64") == {"alpha": "1.1"}
    assert lock.inputs.exclude_newer_span == format_span(timedelta(days=days))
    assert lock.inputs.exclude_newer == format_time(manifest.exclude_newer or datetime.now())
    assert lock.inputs.exclude_newer.startswith("2025-01-0")


def test_lock_over_http_matches_file_index(
    fixture_index_dir: Path, index_server: Any, tmp_path: Path
) -> None:
    requested = ["gamma[all]", "clicky", "numfast", "conflict-a", "conflict-b"]
    by_file = lock_manifest(
        make_manifest(tmp_path, (fixture_index_dir / "simple").as_uri(), requested),
        previous=None,
        options=LockOptions(cache_dir=tmp_path / "c1"),
    )
    by_http = lock_manifest(
        make_manifest(tmp_path, index_server.url, requested),
        previous=None,
        options=LockOptions(cache_dir=tmp_path / "c2"),
    )
    for platform in ("linux-64", "osx-arm64", "win-64"):
        assert pins(by_file, platform) == pins(by_http, platform)
    assert {a.sha256 for a in by_file.artifacts.values()} == {
        a.sha256 for a in by_http.artifacts.values()
    }


def test_sdists_locked_are_reported_with_why(fixture_index_dir: Path, tmp_path: Path) -> None:
    manifest = make_manifest(
        tmp_path,
        (fixture_index_dir / "simple").as_uri(),
        ["macnew>=2"],
        platforms=["linux-64", "osx-arm64"],
        extra='\n[system-requirements]\nmacos = "11.0"\n',
    )
    builds: list[Any] = []
    lock = lock_manifest(
        manifest,
        previous=None,
        options=LockOptions(cache_dir=tmp_path / "c"),
        on_build=builds.append,
    )
    assert [(b.environment, b.platform, b.name, b.version) for b in builds] == [
        ("default", "osx-arm64", "macnew", "2.0")
    ]
    reason = builds[0].reason
    assert "macnew 2.0 has no wheel for osx-arm64 at macOS 11.0" in reason
    assert "raise [system-requirements] macos to 14.0" in reason
    assert "newest with a wheel: 1.0, which the requirements exclude" in reason
    assert str(builds[0]).startswith("macnew 2.0 will be built from source on osx-arm64")
    sdist = next(a for a in lock.packages_for("default", "osx-arm64") if a.name == "macnew")
    assert sdist.filename == "macnew-2.0.tar.gz"
    # Its dependencies came from the linux wheel of 2.0 (the sdist's PKG-INFO is dynamic).
    assert getattr(sdist, "requires_dist", None) == ("alpha",)


def test_prefer_newest_is_named_as_the_reason(fixture_index_dir: Path, tmp_path: Path) -> None:
    manifest = make_manifest(
        tmp_path,
        (fixture_index_dir / "simple").as_uri(),
        ["sourcy"],
        platforms=["win-64"],
        extra="\n[pypi-options]\nprefer-newest = true\n",
    )
    builds: list[Any] = []
    lock = lock_manifest(
        manifest,
        previous=None,
        options=LockOptions(cache_dir=tmp_path / "c"),
        on_build=builds.append,
    )
    assert [b.reason for b in builds] == [
        "sourcy 2.0 publishes no wheels; newest with a wheel: 1.0 ([pypi-options] prefer-newest)"
    ]
    assert dict(lock.inputs.pypi_options) == {"prefer-newest": True}


def test_wheels_first_moves_off_a_locked_sdist(fixture_index_dir: Path, tmp_path: Path) -> None:
    index = (fixture_index_dir / "simple").as_uri()
    newest = make_manifest(
        tmp_path, index, ["sourcy"], extra="\n[pypi-options]\nprefer-newest = true\n"
    )
    old = lock_manifest(newest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    assert pins(old, "linux-64") == {"sourcy": "2.0", "delta": "1.1"}
    # Back to the default: the locked sdist is a preference only among sdist-only versions.
    lock = lock_manifest(
        make_manifest(tmp_path, index, ["sourcy"]),
        previous=old,
        options=LockOptions(cache_dir=tmp_path / "c"),
    )
    assert pins(lock, "linux-64") == {"sourcy": "1.0"}


def test_a_conflict_is_found_without_walking_every_version(
    fixture_index_dir: Path, tmp_path: Path
) -> None:
    # conflict-b needs shared>=2; shared<2 leaves it nothing, whatever the order written.
    manifest = make_manifest(
        tmp_path, (fixture_index_dir / "simple").as_uri(), ["shared<2", "conflict-b"]
    )
    with pytest.raises(LockenvError) as info:
        lock_manifest(manifest, previous=None, options=LockOptions(cache_dir=tmp_path / "c"))
    assert info.value.exit_code == 2
    assert "'shared<2'" in str(info.value) and "'shared>=2'" in str(info.value)
