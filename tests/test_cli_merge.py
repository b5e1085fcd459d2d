"""End to end: a lock merged by git, in a real repository with two branches.

Branch ``a`` relaxes ``delta`` and moves it to 1.1; branch ``b`` relaxes ``alpha`` (2.0,
which brings ``beta``) and adds ``epsilon``.  The manifest merges cleanly; the lock
conflicts (``delta`` and ``epsilon`` sit side by side in it).  Either way the merged lock
must hold both sides' moves and keep ``shared`` at 1.0: a pin neither side touched,
although a newer version would satisfy the manifest.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli_support import lockenv, write_manifest

EXPECTED = {
    "alpha": "2.0",
    "beta": "1.5",
    "clicky": "8.0",
    "colorish": "1.0",
    "delta": "1.1",
    "epsilon": "0.9",
    "shared": "1.0",
}


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=check, timeout=60
    )


@pytest.fixture
def repo(tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    root.mkdir()
    deps = 'alpha = "<2"\nclicky = "*"\ncolorish = "*"\ndelta = "==1.0"\nshared = "<1.5"\n'
    manifest = write_manifest(root, index_server.url, deps)
    (root / ".gitignore").write_text(".lockenv/\n")
    git(root, "init", "-q", "-b", "main")
    lockenv(root, "lock")
    # Relaxed later: the lock keeps shared 1.0 although 2.0 would do.
    manifest.write_text(manifest.read_text().replace('shared = "<1.5"', 'shared = "*"'))
    lockenv(root, "lock")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")

    git(root, "checkout", "-qb", "a")
    manifest.write_text(manifest.read_text().replace('delta = "==1.0"', 'delta = "*"'))
    lockenv(root, "lock", "--update", "delta")
    git(root, "commit", "-qam", "a: delta 1.1")

    git(root, "checkout", "-q", "main")
    git(root, "checkout", "-qb", "b")
    text = manifest.read_text().replace('alpha = "<2"', 'alpha = "*"') + 'epsilon = "*"\n'
    manifest.write_text(text)
    lockenv(root, "lock", "--update", "alpha")
    git(root, "commit", "-qam", "b: alpha 2.0, epsilon")
    git(root, "checkout", "-q", "a")
    return root


def pins(root: Path) -> dict[str, str]:
    import json

    rows = json.loads(lockenv(root, "list", "--platform", "linux-64", "--json").stdout)
    return {row["name"]: row["version"] for row in rows}


def test_merge_driver(repo: Path) -> None:
    (repo / ".gitattributes").write_text("lockenv.lock merge=lockenv\n")
    driver = f"{shlex.quote(sys.executable)} -m lockenv merge-driver %O %A %B %P"
    git(repo, "config", "merge.lockenv.driver", driver)
    merged = git(repo, "merge", "b", "-m", "merge b")
    assert "Merge made" in merged.stdout, merged.stdout + merged.stderr
    assert "<<<<<<<" not in (repo / "lockenv.lock").read_text()
    assert pins(repo) == EXPECTED
    # The merged pins satisfy the merged manifest: nothing to solve.
    assert lockenv(repo, "lock", "--check").returncode == 0
    assert "up to date" in lockenv(repo, "lock").stderr
    assert git(repo, "status", "--porcelain").stdout == "?? .gitattributes\n"


def test_conflict_markers_are_solved_with_both_sides_pins(repo: Path) -> None:
    merged = git(repo, "merge", "b", "-m", "merge b", check=False)
    assert merged.returncode == 1
    assert "CONFLICT (content): Merge conflict in lockenv.lock" in merged.stdout
    assert "<<<<<<<" in (repo / "lockenv.lock").read_text()
    check = lockenv(repo, "lock", "--check", check=False)
    assert check.returncode == 1
    assert "stale: lockenv.lock has git conflict markers" in check.stderr
    locked_sync = lockenv(repo, "sync", "--locked", check=False)
    assert locked_sync.returncode == 1
    assert "git conflict markers" in locked_sync.stderr
    result = lockenv(repo, "lock")
    assert "solving again, preferring both sides' pins" in result.stderr
    assert pins(repo) == EXPECTED
    assert lockenv(repo, "lock", "--check").returncode == 0


def test_driver_on_something_that_is_not_a_lock(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    good = (tmp_path / "lockenv.lock").read_text()
    base, ours, theirs = (tmp_path / n for n in ("O", "A", "B"))
    base.write_text(good)
    ours.write_text(good.replace("# This file", "# this file"))
    theirs.write_text("not: [a lock\n")
    result = lockenv(tmp_path, "merge-driver", str(base), str(ours), str(theirs), check=False)
    assert result.returncode == 1
    assert "left git's conflict markers" in result.stderr
    assert "<<<<<<< ours" in ours.read_text()
