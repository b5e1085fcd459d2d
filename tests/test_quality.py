"""The code stays typed (mypy --strict on lockenv/) and ruff-clean, like every other test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("mypy", []),  # configured in pyproject.toml: strict, files = lockenv
        ("ruff", ["check", "lockenv", "tests", "fixtures", "benchmarks"]),
        ("ruff", ["format", "--check", "lockenv", "tests", "fixtures", "benchmarks"]),
    ],
)
def test_tool_is_clean(tool: str, args: list[str]) -> None:
    pytest.importorskip(tool)
    result = subprocess.run(
        [sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
