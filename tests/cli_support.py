"""Helpers for the end-to-end tests: run the real `lockenv` command, write manifests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def lockenv(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "lockenv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lockenv {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def write_manifest(
    root: Path, index_url: str, deps: str, *, platforms: str = '["linux-64", "osx-arm64", "win-64"]'
) -> Path:
    path = root / "lockenv.toml"
    path.write_text(
        "[project]\n"
        'name = "demo"\n'
        f"platforms = {platforms}\n"
        f'indexes = ["{index_url}"]\n'
        'requires-python = "==3.11.*"\n'
        "\n[pypi-dependencies]\n" + deps
    )
    return path


def fast_path(cwd: Path, *args: str) -> tuple[bool, str]:
    """Run lockenv: whether it answered from the environment's stamp (`lockenv.fastpath`,
    without importing the command line module), and what it said on stderr."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lockenv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    said = "".join(line for line in result.stderr.splitlines(True) if "import time" not in line)
    return "lockenv.cli" not in result.stderr, said
