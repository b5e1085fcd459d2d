"""End to end: `lockenv tree`, `diff`, `export` and `shell-hook` on a fixture project."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cli_support import lockenv, write_manifest


@pytest.fixture
def project(tmp_path: Path, index_server: Any) -> Path:
    write_manifest(tmp_path, index_server.url, 'alpha = "<2"\nclicky = "*"\n')
    lockenv(tmp_path, "lock")
    return tmp_path


def test_tree(project: Path) -> None:
    text = lockenv(project, "tree", "--platform", "win-64").stdout
    assert "clicky 8.0" in text and "└── colorish 1.0" in text
    nodes = json.loads(lockenv(project, "tree", "--platform", "linux-64", "--json").stdout)
    assert sorted(node["name"] for node in nodes) == ["alpha", "clicky"]
    inverted = lockenv(project, "tree", "colorish", "--invert", "--platform", "win-64").stdout
    assert inverted.splitlines()[:2] == ["colorish 1.0", "└── clicky 8.0"]


def test_diff_between_files_and_against_git_head(project: Path) -> None:
    old = project / "old.lock"
    old.write_bytes((project / "lockenv.lock").read_bytes())
    manifest = project / "lockenv.toml"
    manifest.write_text(manifest.read_text().replace('alpha = "<2"', 'alpha = "*"'))
    lockenv(project, "lock", "--update", "alpha")
    lines = lockenv(project, "diff", str(old), "lockenv.lock").stdout.splitlines()
    assert "~ alpha 1.1 -> 2.0 (default/linux-64)" in lines
    assert "+ beta 1.5 (default/win-64)" in lines
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "lockenv.lock").rename(project / "new.lock")
    old.rename(project / "lockenv.lock")
    subprocess.run([*git, "add", "lockenv.lock"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "lock"], cwd=project, check=True)
    (project / "new.lock").replace(project / "lockenv.lock")
    report = json.loads(lockenv(project, "diff", "--json").stdout)
    assert report != {} and "alpha" in json.dumps(report)


def test_export_formats(project: Path, tmp_path: Path) -> None:
    text = lockenv(project, "export", "--format", "requirements.txt").stdout
    assert "alpha==1.1" in text and "--hash=sha256:" in text
    out = tmp_path / "pylock.toml"
    lockenv(project, "export", "--format", "pylock.toml", "-o", str(out))
    import tomllib

    from packaging.pylock import Pylock

    lock = Pylock.from_dict(tomllib.loads(out.read_text()))
    assert {p.name for p in lock.packages} == {"alpha", "clicky"}
    refused = lockenv(project, "export", "--format", "conda-explicit", check=False)
    assert refused.returncode == 2 and "requirements.txt" in refused.stderr


def test_shell_hook_activates_in_bash(project: Path) -> None:
    hook = lockenv(project, "shell-hook", "--shell", "bash").stdout
    prefix = project / ".lockenv" / "envs" / "default"
    result = subprocess.run(
        ["bash", "-c", hook + '\necho "$VIRTUAL_ENV"; command -v clicky'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.splitlines() == [str(prefix), str(prefix / "bin" / "clicky")]
