"""Against the real default index (pip's configured index-url, else pip's default).

Opt-in: LOCKENV_NETWORK_TESTS=1. A fixed exclude-newer keeps the expected pins stable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_support import lockenv

pytestmark = pytest.mark.network

EXCLUDE_NEWER = "2025-06-01T00:00:00Z"
UV_PLATFORMS = {
    "linux-64": "x86_64-manylinux_2_28",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
}


@pytest.fixture
def real_project(tmp_path: Path) -> Path:
    lockenv(
        tmp_path,
        "init",
        "--platform",
        "linux-64",
        "--platform",
        "osx-arm64",
        "--platform",
        "win-64",
        "--requires-python",
        "==3.11.*",
    )
    manifest = tmp_path / "lockenv.toml"
    manifest.write_text(
        manifest.read_text().replace(
            'requires-python = "==3.11.*"',
            f'requires-python = "==3.11.*"\nexclude-newer = "{EXCLUDE_NEWER}"',
        )
    )
    lockenv(tmp_path, "add", "--pypi", "requests", "numpy", "click")
    lockenv(tmp_path, "lock")
    return tmp_path


def listed(root: Path, platform: str) -> dict[str, str]:
    rows = json.loads(lockenv(root, "list", "--platform", platform, "--json").stdout)
    return {row["name"]: row["filename"] for row in rows}


def test_each_platform_gets_its_own_wheels(real_project: Path) -> None:
    linux, mac, win = (listed(real_project, p) for p in ("linux-64", "osx-arm64", "win-64"))
    assert "manylinux" in linux["numpy"] and "x86_64" in linux["numpy"]
    assert "macosx" in mac["numpy"] and mac["numpy"].endswith("arm64.whl")
    assert win["numpy"].endswith("win_amd64.whl")
    assert "colorama" in win
    assert "colorama" not in linux and "colorama" not in mac
    lock = (real_project / "lockenv.lock").read_text()
    lockenv(real_project, "lock", "--update-all")
    assert (real_project / "lockenv.lock").read_text() == lock


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_pins_equal_uv_pip_compile(real_project: Path) -> None:
    from lockenv.pipconfig import default_index_url

    (real_project / "req.in").write_text("requests\nnumpy\nclick\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")} | {"UV_NO_CONFIG": "1"}
    for platform, uv_platform in UV_PLATFORMS.items():
        out = subprocess.run(
            [
                "uv",
                "pip",
                "compile",
                "-q",
                "--no-header",
                "--no-annotate",
                "--index-url",
                default_index_url(),
                "--exclude-newer",
                EXCLUDE_NEWER,
                "--python-version",
                "3.11",
                "--python-platform",
                uv_platform,
                "req.in",
            ],
            cwd=real_project,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        theirs = {tuple(line.strip().split("==")) for line in out.splitlines() if "==" in line}
        rows = json.loads(lockenv(real_project, "list", "--platform", platform, "--json").stdout)
        ours = {(row["name"], row["version"]) for row in rows}
        assert ours == theirs, platform


def test_sync_and_import(real_project: Path) -> None:
    lockenv(real_project, "sync")
    out = lockenv(
        real_project,
        "run",
        "--",
        "python",
        "-c",
        "import requests, numpy, click; print(numpy.__version__)",
    ).stdout
    assert out.strip() == "2.2.6"
    assert lockenv(real_project, "verify").returncode == 0
