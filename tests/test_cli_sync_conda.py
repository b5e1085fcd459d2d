"""End to end: `lockenv lock`, `sync`, `run` and `verify` on conda and mixed projects.

The channel and the index are served over loopback HTTP; the fixture ``python`` package
runs the host interpreter (``LOCKENV_HOST_PYTHON``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lockenv.platforms import current_platform

from cli_support import lockenv

PLATFORM = current_platform()
pytestmark = pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="the fixture python package exists for unix platforms",
)


@pytest.fixture(autouse=True)
def _host_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)


def _project(root: Path, channel: str, conda: str, pypi: str = "", index: str = "") -> Path:
    root.mkdir()
    text = (
        "[project]\n"
        'name = "demo"\n'
        f'platforms = ["{PLATFORM}"]\n'
        f'channels = ["{channel}"]\n'
        + (f'indexes = ["{index}"]\n' if index else "")
        + "\n[dependencies]\n"
        + conda
        + ("\n[pypi-dependencies]\n" + pypi if pypi else "")
    )
    (root / "lockenv.toml").write_text(text)
    return root


@pytest.fixture
def mixed(tmp_path: Path, channel_server: Any, index_server: Any) -> Path:
    root = _project(
        tmp_path / "mixed",
        channel_server.url.rstrip("/"),
        'python = "3.11.*"\ntool-py = "*"\nlibzlib = "*"\n',
        'alpha = "*"\n',
        index_server.url,
    )
    lockenv(root, "lock")
    return root


def test_mixed_project_sync_run_verify(mixed: Path) -> None:
    result = lockenv(mixed, "sync")
    assert "installed" in result.stderr
    prefix = mixed / ".lockenv" / "envs" / "default"
    assert (prefix / "conda-meta" / "tool-py-2.1.0-pyh_lockenv_0.json").is_file()
    assert (prefix / "lib" / "python3.11" / "site-packages" / "alpha-2.0.dist-info").is_dir()
    assert lockenv(mixed, "run", "--", "tool-py").stdout.strip() == "tool-py 2.1.0"
    out = lockenv(
        mixed,
        "run",
        "--",
        "python",
        "-c",
        "import alpha, tool_py, os; print(alpha.__file__); print(os.environ['CONDA_PREFIX'])",
    ).stdout.split()
    assert out == [str(prefix / "lib/python3.11/site-packages/alpha/__init__.py"), str(prefix)]
    assert lockenv(mixed, "verify").returncode == 0
    digest = lockenv(mixed, "verify", "--digest").stdout.strip()
    assert len(digest) == 64
    assert "up to date" in lockenv(mixed, "sync").stderr

    # The same lock into another prefix, with no manifest: the same digest.
    other = mixed.parent / "elsewhere" / "env"
    lock_file = str(mixed / "lockenv.lock")
    lockenv(mixed.parent, "sync", "--lock", lock_file, "--prefix", str(other))
    again = lockenv(mixed.parent, "verify", "--lock", lock_file, "--prefix", str(other), "--digest")
    assert again.stdout.strip() == digest


def test_verify_reports_a_changed_placeholder_file(mixed: Path) -> None:
    lockenv(mixed, "sync")
    prefix = mixed / ".lockenv" / "envs" / "default"
    conf = prefix / "etc" / "libzlib.conf"
    text = conf.read_text()
    assert str(prefix) in text
    conf.unlink()
    conf.write_text(text + "# edited\n")
    result = lockenv(mixed, "verify", "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["modified"] == ["etc/libzlib.conf"]
    # A sync with the same lock is a no-op: nothing is hashed on that path.
    assert "up to date" in lockenv(mixed, "sync").stderr


def test_conda_only_project(tmp_path: Path, fixture_channel_dir: Path) -> None:
    root = _project(tmp_path / "conly", fixture_channel_dir.as_uri(), 'zlib = "*"\n')
    lockenv(root, "lock")
    lockenv(root, "sync")
    prefix = root / ".lockenv" / "envs" / "default"
    assert (prefix / "include" / "zlib.h").is_file()
    assert (prefix / "conda-meta" / "libzlib-1.3.1-h_lockenv_0.json").is_file()
    assert not (prefix / "bin" / "python").exists()
    assert lockenv(root, "verify").returncode == 0
    history = (prefix / "conda-meta" / "history").read_text()
    assert "# update specs: ['zlib'" in history
    # Dropping a dependency removes exactly its files.
    manifest = root / "lockenv.toml"
    manifest.write_text(manifest.read_text().replace('zlib = "*"', 'libzlib = "*"'))
    lockenv(root, "sync")
    assert not (prefix / "include" / "zlib.h").exists()
    assert (prefix / "lib" / "libzlib.so.1").is_file()
    assert lockenv(root, "verify").returncode == 0
