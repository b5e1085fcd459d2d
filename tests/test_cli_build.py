"""End to end: sdists locked, reported, built at sync, and refused when they must be.

Real builds of fixture sdists with the fixture index's own build backends (tinybackend,
flit_core), over a loopback HTTP index.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from lockenv.platforms import current_platform

from cli_support import lockenv, write_manifest


@pytest.fixture
def project(tmp_path: Path, index_server: Any) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(
        root,
        index_server.url,
        'tinysdist = "*"\ntinydyn = "*"\nclicky = "*"\n',
        platforms='["linux-64", "osx-arm64"]',
    )
    return root


def test_lock_reports_builds_then_sync_builds_and_runs(project: Path) -> None:
    locked = lockenv(project, "lock")
    notes = [line for line in locked.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: tinydyn 1.0 is built from source when synced on linux-64, osx-arm64: "
        "tinydyn publishes no wheels",
        "note: tinysdist 1.0 is built from source when synced on linux-64, osx-arm64: "
        "tinysdist publishes no wheels",
    ]
    lock = (project / "lockenv.lock").read_text()
    assert "filename: tinydyn-1.0.tar.gz" in lock and "- epsilon" in lock
    synced = lockenv(project, "sync")
    assert "building tinysdist 1.0 (tinysdist-1.0.tar.gz) from source" in synced.stderr
    assert lockenv(project, "run", "--", "tinysdist").stdout == "tinysdist 1.0 built from source\n"
    assert lockenv(project, "verify").returncode == 0
    assert "up to date" in lockenv(project, "sync").stderr
    # Another environment from the same lock reuses the built wheels: nothing is built.
    again = lockenv(project, "sync", "--prefix", str(project / "second"))
    assert "building" not in again.stderr


def test_sync_no_build_refuses(project: Path) -> None:
    lockenv(project, "lock")
    result = lockenv(project, "sync", "--no-build", check=False)
    assert result.returncode == 3
    assert "locks source distributions" in result.stderr and "--no-build" in result.stderr
    assert "tinysdist 1.0 (tinysdist-1.0.tar.gz)" in result.stderr
    assert not (project / ".lockenv" / "envs" / "default").exists()


def test_no_build_in_the_manifest_is_a_conflict(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'tinysdist = "*"\n')
    manifest = tmp_path / "lockenv.toml"
    manifest.write_text(manifest.read_text() + "\n[pypi-options]\nno-build = true\n")
    result = lockenv(tmp_path, "lock", check=False)
    assert result.returncode == 2
    assert "tinysdist" in result.stderr and "no-build forbids building" in result.stderr


def _env_with(project: Path, deps: str, index_url: str) -> Path:
    write_manifest(project, index_url, deps, platforms='["linux-64"]')
    lockenv(project, "lock")
    return project / ".lockenv" / "envs" / "default"


def _snapshot(prefix: Path) -> dict[str, bytes]:
    return {str(p.relative_to(prefix)): p.read_bytes() for p in prefix.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("package", "error"),
    [
        ("brokensdist", r"brokensdist 1\.0 .*failed in build_wheel .*the whole log is"),
        ("nobackend", r"build backend 'no_such_backend' cannot be imported"),
        ("liarsdist", r"the build adds beta; drops nothing\); refusing to install it"),
    ],
)
def test_failed_builds_leave_the_environment_intact(
    tmp_path: Path, index_server: Any, package: str, error: str
) -> None:
    prefix = _env_with(tmp_path, 'alpha = "*"\n', index_server.url)
    lockenv(tmp_path, "sync")
    before = _snapshot(prefix)
    write_manifest(
        tmp_path, index_server.url, f'alpha = "*"\n{package} = "*"\n', platforms='["linux-64"]'
    )
    lockenv(tmp_path, "lock")
    result = lockenv(tmp_path, "sync", check=False)
    assert result.returncode == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and re.search(error, last), result.stderr
    if package == "brokensdist":
        tail = [line for line in result.stderr.splitlines() if line.startswith("  | ")]
        assert any("deliberate test failure" in line for line in tail)
    assert _snapshot(prefix) == before


def test_wrong_sdist_hash_is_refused_before_building(project: Path) -> None:
    lockenv(project, "lock")
    lock_path = project / "lockenv.lock"
    text = lock_path.read_text()
    real = re.search(r"filename: tinysdist-1.0.tar.gz\n.*\n  sha256: (\w+)", text)
    assert real is not None
    fake = hashlib.sha256(b"something else").hexdigest()
    lock_path.write_text(text.replace(real.group(1), fake))
    result = lockenv(project, "sync", "--frozen", check=False)
    assert result.returncode == 3
    assert "tinysdist-1.0.tar.gz" in result.stderr and fake in result.stderr
    assert "building" not in result.stderr


@pytest.mark.skipif(
    current_platform() not in ("linux-64", "osx-arm64"), reason="the project locks these two"
)
def test_bundle_carries_built_wheels_to_a_node_without_a_compiler(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = current_platform()
    lockenv(project, "lock")
    out = tmp_path / "bundle"
    bundled = lockenv(project, "bundle", str(out), "--platform", here, "--built-wheels")
    assert f"with 2 wheels built here for {here}" in bundled.stderr
    # The node: an empty cache, no index, no network; nothing is built there.
    monkeypatch.setenv("LOCKENV_CACHE_DIR", str(tmp_path / "node-cache"))
    prefix = tmp_path / "node-env"
    synced = lockenv(
        tmp_path, "sync", "--lock", str(out / "lockenv.lock"), "--prefix", str(prefix), "--offline"
    )
    assert "building" not in synced.stderr
    tinysdist = prefix / "bin" / "tinysdist"
    import subprocess

    ran = subprocess.run([str(tinysdist)], capture_output=True, text=True, check=True)
    assert ran.stdout == "tinysdist 1.0 built from source\n"
