"""End to end: environments built on a base environment (a site's Python stack).

The bases are made by lockenv itself: a venv holding alpha 1.1 and delta (the "site"
project synced to a prefix), and a conda environment from the fixture channel (python,
tool-py, libzlib) with alpha 1.0 from the index on top.  A project on a base locks only
what the base does not have, runs with both on ``sys.path``, and notices when the site
changes the base under it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockenv.platforms import current_platform

from cli_support import fast_path, lockenv

PLATFORM = current_platform()
SCHEMAS = Path(__file__).parent.parent / "schemas"
pytestmark = pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="the fixture bases use the unix prefix layout",
)


def _project(root: Path, body: str) -> Path:
    root.mkdir(parents=True)
    (root / "lockenv.toml").write_text(f'[project]\nname = "{root.name}"\n{body}')
    return root


def _site_base(tmp_path: Path, index: str, delta: str) -> Path:
    """The site's stack, synced (again) into tmp_path/base."""
    site = tmp_path / "site"
    if not site.exists():
        site.mkdir()
    (site / "lockenv.toml").write_text(
        f'[project]\nname = "site"\nplatforms = ["{PLATFORM}"]\nindexes = ["{index}"]\n'
        f'requires-python = "==3.11.*"\n[pypi-dependencies]\nalpha = "==1.1"\ndelta = "{delta}"\n'
    )
    lockenv(site, "lock")
    lockenv(site, "sync", "--prefix", str(tmp_path / "base"))
    return tmp_path / "base"


@pytest.fixture
def on_venv_base(tmp_path: Path, index_server: Any) -> Path:
    base = _site_base(tmp_path, index_server.url, "==1.1")
    return _project(
        tmp_path / "analysis",
        f'platforms = ["{PLATFORM}"]\nindexes = ["{index_server.url}"]\n'
        f'requires-python = "==3.11.*"\nbase-environment = "{base}"\n'
        '[pypi-dependencies]\nalpha = ">=1"\nclicky = "*"\n',
    )


def _lock_data(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((root / "lockenv.lock").read_text())
    return data


def test_lock_sync_run_verify_on_a_base(on_venv_base: Path, tmp_path: Path) -> None:
    root = on_venv_base
    lockenv(root, "lock")
    data = _lock_data(root)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, json.loads((SCHEMAS / "lockfile.schema.json").read_text()))
    base = data["environments"]["default"]["base-environment"]
    assert base["path"] == str(tmp_path / "base")
    assert base["pypi"] == ["alpha==1.1", "delta==1.1"]
    assert base["python"].startswith("3.11")
    # alpha is the base's: not locked again.
    rows = json.loads(lockenv(root, "list", "--json").stdout)
    assert [r["name"] for r in rows] == ["clicky"]

    lockenv(root, "sync")
    code = "import alpha, clicky; print(alpha.__file__); print(clicky.__file__)"
    out = lockenv(root, "run", "--", "python", "-c", code).stdout.split()
    assert out[0].startswith(str(tmp_path / "base"))
    assert out[1].startswith(str(root / ".lockenv" / "envs" / "default"))
    assert lockenv(root, "verify").returncode == 0
    assert lockenv(root, "lock", "--check").returncode == 0
    # The file that shows the base is the environment's own: tampering shows.
    pth = root / ".lockenv/envs/default/lib/python3.11/site-packages/_lockenv_base.pth"
    pth.write_text("/elsewhere\n")
    tampered = lockenv(root, "verify", check=False)
    assert tampered.returncode == 1
    assert "modified: lib/python3.11/site-packages/_lockenv_base.pth" in tampered.stdout


def test_a_conflict_with_the_base_is_explained(on_venv_base: Path) -> None:
    manifest = on_venv_base / "lockenv.toml"
    manifest.write_text(manifest.read_text().replace('alpha = ">=1"', 'alpha = ">=2"'))
    result = lockenv(on_venv_base, "lock", check=False)
    assert result.returncode == 2
    assert "'alpha>=2' (the base environment provides alpha 1.1)" in result.stderr


def test_drift_of_the_base(on_venv_base: Path, tmp_path: Path, index_server: Any) -> None:
    root = on_venv_base
    lockenv(root, "lock")
    lockenv(root, "sync")
    time.sleep(2.1)  # the stamp trusts what is 2 s older than itself
    lockenv(root, "sync")
    assert fast_path(root, "run", "--", "true")[0]  # the stamp watches the base too
    # The site updates its stack under the project.
    _site_base(tmp_path, index_server.url, "==1.0")
    change = "delta 1.1 -> 1.0"
    verify = lockenv(root, "verify", check=False)
    assert verify.returncode == 1
    assert f"changed since the lock ({change})" in verify.stdout
    for command in (["sync"], ["run", "--", "true"], ["sync", "--frozen"]):
        refused = lockenv(root, *command, check=False)
        assert refused.returncode == 1, command
        assert f"changed since the lock ({change}): run `lockenv lock`" in refused.stderr
    check = lockenv(root, "lock", "--check", check=False)
    assert check.returncode == 1 and change in check.stderr
    # Building on it anyway is a choice, said out loud; the environment then runs.
    allowed = lockenv(root, "sync", "--allow-base-drift")
    assert "warning: base environment" in allowed.stderr
    lockenv(root, "run", "--", "python", "-c", "import alpha, delta, clicky")
    assert lockenv(root, "verify", check=False).returncode == 1
    # Locking again records the base as it is now.
    old = tmp_path / "old.lock"
    old.write_bytes((root / "lockenv.lock").read_bytes())
    lockenv(root, "lock")
    assert _lock_data(root)["environments"]["default"]["base-environment"]["pypi"] == [
        "alpha==1.1",
        "delta==1.0",
    ]
    lockenv(root, "sync")
    assert lockenv(root, "verify").returncode == 0
    diff = lockenv(root, "diff", str(old), "lockenv.lock").stdout
    assert "~ environments.default.base-environment: -pypi delta==1.1, +pypi delta==1.0" in diff


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ('platforms = ["{p}", "win-64"]', ["can be locked for {p} only, not win-64"]),
        ('requires-python = "==3.12.*"', ["Python 3.11", "requires-python '==3.12.*' excludes"]),
        ('base-environment = "/nonexistent/base"', ["does not exist on this machine"]),
    ],
)
def test_what_cannot_be_locked_on_a_base(on_venv_base: Path, edit: str, words: list[str]) -> None:
    manifest = on_venv_base / "lockenv.toml"
    key = edit.split(" =", 1)[0]
    lines = [
        edit.format(p=PLATFORM) if line.startswith(key + " =") else line
        for line in manifest.read_text().splitlines()
    ]
    manifest.write_text("\n".join(lines) + "\n")
    result = lockenv(on_venv_base, "lock", check=False)
    assert result.returncode == 2
    for word in words:
        assert word.format(p=PLATFORM) in result.stderr


def test_on_a_conda_base(
    tmp_path: Path, channel_server: Any, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)
    site = _project(
        tmp_path / "csite",
        f'platforms = ["{PLATFORM}"]\nchannels = ["{channel_server.url.rstrip("/")}"]\n'
        f'indexes = ["{index_server.url}"]\n'
        '[dependencies]\npython = "3.11.*"\ntool-py = "*"\nlibzlib = "*"\n'
        '[pypi-dependencies]\nalpha = "==1.0"\n',
    )
    lockenv(site, "lock")
    base = tmp_path / "cbase"
    lockenv(site, "sync", "--prefix", str(base))
    root = _project(
        tmp_path / "analysis",
        f'platforms = ["{PLATFORM}"]\nindexes = ["{index_server.url}"]\n'
        f'base-environment = "{base}"\n'
        '[dependencies]\nlibzlib = ">=1"\n'
        '[pypi-dependencies]\ntool-py = "*"\nbeta = "*"\n',
    )
    lockenv(root, "lock")
    recorded = _lock_data(root)["environments"]["default"]["base-environment"]
    assert [c.split("=")[0] for c in recorded["conda"]] == ["libzlib", "python", "tool-py"]
    assert "tool-py==2.1.0" in recorded["pypi"]
    assert [r["name"] for r in json.loads(lockenv(root, "list", "--json").stdout)] == ["beta"]
    lockenv(root, "sync")
    code = "import tool_py, alpha, beta; print(tool_py.__file__, alpha.__file__, beta.__file__)"
    out = lockenv(root, "run", "--", "python", "-c", code).stdout.split()
    assert [p.startswith(str(base)) for p in out] == [True, True, False]
    assert lockenv(root, "verify").returncode == 0
    # Conda requirements are the base's to meet: nothing conda is installed on top.
    manifest = root / "lockenv.toml"
    manifest.write_text(manifest.read_text().replace('libzlib = ">=1"', 'numpy-lite = "*"'))
    result = lockenv(root, "lock", check=False)
    assert result.returncode == 2
    assert "has no conda package numpy-lite" in result.stderr
