"""End to end: a pyproject.toml project locked and installed as itself (editable), its
extras and dependency groups as environments; path, git and URL dependencies added from
the command line; exports of source trees.  Built with the fixture index's tinybackend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cli_support import lockenv

PYPROJECT = """\
# The project's own file: lockenv adds [tool.lockenv] at its end, nothing else changes.
[build-system]
requires = ["tinybackend"]
build-backend = "tinybackend"

[project]
name = "MyCLI"
version = "0.1.0"
dependencies = ["alpha<2"]
requires-python = ">=3.10"

[project.optional-dependencies]
fast = ["delta"]

[project.scripts]
mycli = "mycli:main"

[dependency-groups]
test = ["gamma[all]", {include-group = "lint"}]
lint = ["epsilon"]

[tool.black]
line-length = 100
"""

TESTS = """\
import unittest

import alpha
import gamma
import mycli


class ProjectTest(unittest.TestCase):
    def test_greeting(self):
        self.assertEqual(mycli.greeting(), "hello from the working tree")

    def test_dependencies_are_installed(self):
        self.assertTrue(alpha.__version__ and gamma.__version__)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "mycli-project"
    (root / "mycli").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "mycli" / "__init__.py").write_text(
        "def greeting():\n    return 'hello from the working tree'\n\n\n"
        "def main():\n    print(greeting())\n"
    )
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_mycli.py").write_text(TESTS)
    return root


def test_init_lock_sync_run_the_project_itself(project: Path, index_server: Any) -> None:
    before = (project / "pyproject.toml").read_text()
    lockenv(project, "init", "--platform", "linux-64", "--index", index_server.url)
    after = (project / "pyproject.toml").read_text()
    assert after.startswith(before)  # the user's file is kept byte for byte
    added = after[len(before) :]
    assert 'mycli = { path = ".", editable = true }' in added
    assert 'test = ["test"]' in added and 'fast = ["fast"]' in added
    assert not (project / "lockenv.toml").exists()

    lockenv(project, "lock")
    assert lockenv(project, "run", "--", "mycli").stdout == "hello from the working tree\n"
    # Editable (PEP 660): the environment runs the working tree as it is now.
    init = project / "mycli" / "__init__.py"
    init.write_text(init.read_text().replace("working tree'", "working tree, edited'"))
    assert lockenv(project, "run", "--", "mycli").stdout == "hello from the working tree, edited\n"
    init.write_text(init.read_text().replace(", edited'", "'"))
    assert lockenv(project, "verify").returncode == 0
    # PEP 610: installed from a directory, editable.
    (direct_url,) = (project / ".lockenv" / "envs" / "default").glob(
        "lib/python*/site-packages/mycli-0.1.0.dist-info/direct_url.json"
    )
    assert json.loads(direct_url.read_text()) == {
        "dir_info": {"editable": True},
        "url": project.as_uri(),
    }
    # The project's tests run in its test environment (group test includes group lint).
    tested = lockenv(project, "run", "-e", "test", "--", "python", "-m", "unittest", "-q")
    assert "Ran 2 tests" in tested.stderr and "OK" in tested.stderr
    listed = lockenv(project, "list", "-e", "test").stdout
    assert {line.split()[0] for line in listed.splitlines()} == {
        "alpha",
        "delta",
        "epsilon",
        "gamma",
        "mycli",
    }
    # An extra is the project with that extra.
    fast = lockenv(project, "list", "-e", "fast").stdout
    assert "delta" in fast and "gamma" not in fast


def test_lock_check_sees_the_projects_own_dependency_lists(
    project: Path, index_server: Any
) -> None:
    lockenv(project, "init", "--platform", "linux-64", "--index", index_server.url)
    lockenv(project, "lock")
    assert lockenv(project, "lock", "--check").returncode == 0
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace('dependencies = ["alpha<2"]', 'dependencies = ["alpha<2", "trans"]')
    )
    stale = lockenv(project, "lock", "--check", check=False)
    assert stale.returncode == 1
    assert "the dependencies of mycli at '.' changed since it was locked (added trans" in (
        stale.stderr
    )
    pyproject.write_text(text.replace('lint = ["epsilon"]', 'lint = ["epsilon", "trans"]'))
    assert lockenv(project, "lock", "--check", check=False).returncode == 1
    # A plain sync re-locks first, then installs what the project now asks for.
    lockenv(project, "sync", "-e", "lint")
    assert "trans" in lockenv(project, "list", "-e", "lint").stdout


def test_new_console_script_is_installed_without_a_relock(project: Path, index_server: Any) -> None:
    lockenv(project, "init", "--platform", "linux-64", "--index", index_server.url)
    lockenv(project, "sync")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'mycli = "mycli:main"', 'mycli = "mycli:main"\nmycli-again = "mycli:main"'
        )
    )
    # The lock still holds (the dependency lists did not change), but the project's
    # build files did: the sync installs the project again.
    assert lockenv(project, "lock", "--check").returncode == 0
    synced = lockenv(project, "sync")
    assert "building mycli" in synced.stderr
    assert lockenv(project, "run", "--", "mycli-again").stdout.startswith("hello")
    assert "up to date" in lockenv(project, "sync").stderr


def test_the_no_op_stamp_watches_a_path_dependencys_build_files(
    tmp_path: Path, project: Path, index_server: Any
) -> None:
    from lockenv.fastpath import STAMP_FILE

    app = tmp_path / "app"
    app.mkdir()
    lockenv(app, "init", "--platform", "linux-64", "--index", index_server.url)
    lockenv(app, "add", "--pypi", "--editable", "../mycli-project")
    lockenv(app, "sync")
    assert "up to date" in lockenv(app, "sync").stderr  # the no-op leaves the stamp
    stamp = app / ".lockenv" / "envs" / "default" / STAMP_FILE
    later = time.time() + 60
    os.utime(stamp, (later, later))  # as if written a minute later: nothing is racy
    assert lockenv(app, "run", "--", "mycli").stdout.startswith("hello")
    (project / "mycli" / "shout.py").write_text("def main():\n    print('HELLO')\n")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('mycli = "mycli:main"', 'mycli = "mycli.shout:main"')
    )
    # The stamp vouches for the lock and the manifest, not for the edited pyproject.toml:
    # the script now points elsewhere.
    ran = lockenv(app, "run", "--", "mycli")
    assert ran.stdout == "HELLO\n" and "building mycli" in ran.stderr


def test_init_from_a_pyproject(project: Path, index_server: Any, tmp_path: Path) -> None:
    # From elsewhere, a project's pyproject.toml is imported: its dependencies, extras
    # and groups copied into a lockenv.toml there; the project itself is left alone.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    original = (project / "pyproject.toml").read_text()
    args = ("--platform", "linux-64", "--index", index_server.url)
    lockenv(elsewhere, "init", "--from", str(project / "pyproject.toml"), *args)
    assert (project / "pyproject.toml").read_text() == original
    imported = (elsewhere / "lockenv.toml").read_text()
    assert 'alpha = "<2"' in imported and "mycli" not in imported
    # From the project's own directory, `--from pyproject.toml` is plain `init`: lockenv
    # goes into that file and the project is locked as itself.
    lockenv(project, "init", "--from", "pyproject.toml", *args)
    assert "[tool.lockenv.project]" in (project / "pyproject.toml").read_text()
    assert not (project / "lockenv.toml").exists()
    again = lockenv(project, "init", check=False)
    assert again.returncode == 2 and "already has a [tool.lockenv] table" in again.stderr


def test_add_path_git_and_url_dependencies(
    tmp_path: Path, project: Path, index_server: Any
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    lockenv(app, "init", "--platform", "linux-64", "--index", index_server.url)
    lockenv(app, "add", "--pypi", "--editable", "../mycli-project", "--no-lock")
    manifest = (app / "lockenv.toml").read_text()
    assert 'mycli = { path = "../mycli-project", editable = true }' in manifest
    wheel = f"{index_server.url.removesuffix('/simple/')}/files/tinysdist-1.0.tar.gz"
    lockenv(app, "add", "--pypi", f"tinysdist @ {wheel}", "--no-lock")
    assert f'tinysdist = {{ url = "{wheel}" }}' in (app / "lockenv.toml").read_text()
    if shutil.which("git"):
        repo = tmp_path / "repo"
        shutil.copytree(project, repo)
        (repo / "pyproject.toml").write_text(
            PYPROJECT.replace('name = "MyCLI"', 'name = "gitcli"')
            .replace("mycli:main", "gitcli:main")
            .replace("[project.scripts]\nmycli", "[project.scripts]\ngitcli")
        )
        (repo / "mycli").rename(repo / "gitcli")
        for args in (("init", "-q"), ("add", "-A"), ("commit", "-qm", "x"), ("tag", "v1")):
            subprocess.run(
                ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                cwd=repo,
                check=True,
            )
        lockenv(app, "add", "--pypi", f"gitcli @ git+{repo.as_uri()}@v1", "--no-lock")
        assert (
            f'gitcli = {{ git = "{repo.as_uri()}", rev = "v1" }}'
            in (app / "lockenv.toml").read_text()
        )
    lockenv(app, "lock")
    lockenv(app, "sync")
    assert lockenv(app, "run", "--", "mycli").stdout.startswith("hello")
    assert lockenv(app, "run", "--", "tinysdist").stdout == "tinysdist 1.0 built from source\n"
    if shutil.which("git"):
        assert lockenv(app, "run", "--", "gitcli").stdout.startswith("hello")
    assert lockenv(app, "verify").returncode == 0
    exported = lockenv(app, "export", "--format", "requirements.txt").stdout
    assert f"tinysdist @ {wheel} \\\n    --hash=sha256:" in exported
    assert "# -e ../mycli-project" in exported
    pylock = lockenv(app, "export", "--format", "pylock.toml").stdout
    assert 'directory = {path = "../mycli-project", editable = true}' in pylock
    if shutil.which("git"):
        assert 'vcs = {type = "git"' in pylock and 'requested-revision = "v1"' in pylock
    bundled = lockenv(app, "bundle", str(tmp_path / "bundle"))
    assert "not bundled (source trees, not archives): " in bundled.stderr


def test_add_a_directory_that_is_no_project(tmp_path: Path, index_server: Any) -> None:
    lockenv(tmp_path, "init", "--platform", "linux-64", "--index", index_server.url)
    (tmp_path / "empty").mkdir()
    result = lockenv(tmp_path, "add", "--pypi", "./empty", check=False)
    assert result.returncode == 2 and "no pyproject.toml with a [project] name" in result.stderr
