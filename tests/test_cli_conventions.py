"""The command line as uv and pixi users expect it: add, lock output, -q, hints, small items.

Every run is the real `lockenv` command on a fixture project against the fixture index.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lockenv.cli import build_parser
from lockenv.lock.manifest import load_manifest

from cli_support import lockenv, write_manifest


def _manifest_deps(root: Path) -> dict[str, str]:
    manifest = load_manifest(root / "lockenv.toml")
    return {str(d.name): str(d.requirement) for d in manifest.default_feature.pypi_dependencies}


# --------------------------------------------------------------------------- add


def test_add_writes_a_lower_bound_and_locks_without_a_lock(
    tmp_path: Path, index_server: Any
) -> None:
    write_manifest(tmp_path, index_server.url, "")
    assert not (tmp_path / "lockenv.lock").exists()
    result = lockenv(tmp_path, "add", "--pypi", "alpha", "delta==1.0")
    # uv and pixi write what was locked as a lower bound; a given version stays as given.
    assert _manifest_deps(tmp_path) == {"alpha": "alpha>=2.0", "delta": "delta==1.0"}
    assert (tmp_path / "lockenv.lock").exists()
    assert lockenv(tmp_path, "lock", "--check").returncode == 0
    assert "+ alpha 2.0" in result.stdout and "+ beta 1.5" in result.stdout


def test_add_no_lock_edits_only(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, "")
    lockenv(tmp_path, "add", "--pypi", "--no-lock", "alpha")
    assert _manifest_deps(tmp_path) == {"alpha": "alpha"}
    assert not (tmp_path / "lockenv.lock").exists()


def test_add_to_a_feature_no_environment_uses(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    result = lockenv(tmp_path, "add", "--pypi", "--feature", "test", "gamma")
    assert "warning: no environment includes feature 'test'" in result.stderr
    assert "hint: `lockenv add --feature test --environment test ...`" in result.stderr
    # `lock` says so as well, naming how to fix it.
    assert "no environment includes feature 'test'" in lockenv(tmp_path, "lock").stderr
    # pixi's auto-create: --environment adds the feature to (a new) environment.
    lockenv(tmp_path, "add", "--pypi", "--feature", "test", "--environment", "test", "delta")
    manifest = load_manifest(tmp_path / "lockenv.toml")
    assert manifest.environments["test"].features == ("test",)
    assert manifest.warnings == ()
    listed = lockenv(tmp_path, "list", "-e", "test", "--platform", "linux-64").stdout
    assert "gamma" in listed and "delta" in listed
    text = (tmp_path / "lockenv.toml").read_text()
    # gamma was added while nothing locked it: no bound to write; delta got one.
    assert 'gamma = "*"' in text and 'delta = ">=1.1"' in text and 'test = ["test"]' in text


def test_conda_add_in_a_pypi_only_project_hints_at_pypi(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, "")
    before = (tmp_path / "lockenv.toml").read_text()
    result = lockenv(tmp_path, "add", "numpy", check=False)
    assert result.returncode == 2
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: numpy: `lockenv add` takes conda packages by default")
    assert hint.startswith("hint: for PyPI packages run `lockenv add --pypi numpy`")
    assert (tmp_path / "lockenv.toml").read_text() == before


def test_a_failed_lock_undoes_the_add(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    before = (tmp_path / "lockenv.toml").read_text()
    result = lockenv(tmp_path, "add", "--pypi", "no-such-package-here", check=False)
    assert result.returncode != 0
    assert (tmp_path / "lockenv.toml").read_text() == before


# --------------------------------------------------------------------------- lock output


def test_update_all_prints_one_line_per_package_change(tmp_path: Path, index_server: Any) -> None:
    write_manifest(
        tmp_path,
        index_server.url,
        'alpha = "<2"\ndelta = "==1.0"\n',
        platforms='["linux-64", "linux-aarch64", "osx-arm64", "win-64"]',
    )
    lockenv(tmp_path, "lock")
    write_manifest(
        tmp_path,
        index_server.url,
        'alpha = "*"\ndelta = "*"\n',
        platforms='["linux-64", "linux-aarch64", "osx-arm64", "win-64"]',
    )
    result = lockenv(tmp_path, "lock", "--update-all")
    # One line per package, not one per package x platform (uv prints it so).
    assert result.stdout.splitlines() == [
        "~ alpha 1.1 -> 2.0",
        "+ beta 1.5",
        "~ delta 1.0 -> 1.1",
    ]


def test_quiet_silences_all_but_errors(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "<2"\n')
    quiet = lockenv(tmp_path, "-q", "lock")
    assert (quiet.stdout, quiet.stderr) == ("", "")
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    quiet = lockenv(tmp_path, "lock", "-q")
    assert (quiet.stdout, quiet.stderr) == ("", "")
    stale = lockenv(tmp_path, "add", "-q", "--pypi", "nope-not-there", check=False)
    assert stale.stdout == "" and stale.stderr.startswith("error: ")


def test_verbose_logs_requests_and_decisions(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n', platforms='["linux-64"]')
    result = lockenv(tmp_path, "-v", "lock")
    assert "[http] GET " in result.stderr and " -> 200 " in result.stderr
    assert "[resolve] default/linux-64 pypi: 2 pinned (0 kept from the lock)" in result.stderr
    again = lockenv(tmp_path, "-v", "lock", "--refresh")
    assert "2 pinned (2 kept from the lock)" in again.stderr


def test_stale_check_names_the_next_step(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "<2"\n')
    lockenv(tmp_path, "lock")
    write_manifest(tmp_path, index_server.url, 'alpha = ">=2"\n')
    result = lockenv(tmp_path, "lock", "--check", check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-2:] == [
        "error: lockenv.lock is out of date",
        "hint: run `lockenv lock` and commit the result",
    ]


def test_no_none_in_stale_messages(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    text = (tmp_path / "lockenv.toml").read_text().replace('requires-python = "==3.11.*"\n', "")
    (tmp_path / "lockenv.toml").write_text(text)
    result = lockenv(tmp_path, "lock", "--check", check=False)
    assert "requires-python changed: the manifest has none, the lock '==3.11.*'" in result.stderr
    assert "None" not in result.stderr


# --------------------------------------------------------------------------- the index is an input


def test_changing_pips_index_makes_the_lock_stale(
    tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lockenv.toml").write_text(
        '[project]\nname = "demo"\nplatforms = ["linux-64"]\nrequires-python = "==3.11.*"\n'
        '[pypi-dependencies]\nalpha = "*"\n'
    )
    monkeypatch.setenv("PIP_INDEX_URL", index_server.url)
    locked = lockenv(tmp_path, "lock")
    assert f"index: {index_server.url} (from PIP_INDEX_URL)" in locked.stderr
    assert lockenv(tmp_path, "lock", "--check").returncode == 0
    info = lockenv(tmp_path, "info").stdout
    assert f"indexes:\n  {index_server.url}\nindexes-from: PIP_INDEX_URL" in info
    assert f"locked-indexes:\n  {index_server.url}" in info
    monkeypatch.setenv("PIP_INDEX_URL", index_server.url.replace("127.0.0.1", "localhost"))
    stale = lockenv(tmp_path, "lock", "--check", check=False)
    assert stale.returncode == 1
    assert "stale: indexes changed: the lock was made against" in stale.stderr
    assert "pip's index here (PIP_INDEX_URL)" in stale.stderr
    # sync --locked, which trusts a remembered check, notices too.
    synced = lockenv(tmp_path, "sync", "--locked", check=False)
    assert synced.returncode == 1 and "indexes changed" in synced.stderr


def test_a_no_op_sync_notices_pips_index_change(
    tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The no-op stamp (lockenv/fastpath.py) watches pip's index as the full check does."""
    python = f"=={sys.version_info.major}.{sys.version_info.minor}.*"
    (tmp_path / "lockenv.toml").write_text(
        f'[project]\nname = "demo"\nplatforms = ["linux-64"]\nrequires-python = "{python}"\n'
        '[pypi-dependencies]\nalpha = "*"\n'
    )
    monkeypatch.setenv("PIP_INDEX_URL", index_server.url)
    lockenv(tmp_path, "lock")
    time.sleep(2.1)  # the stamp trusts only files changed 2 s before it (fastpath._RACY_NS)
    lockenv(tmp_path, "sync")  # leaves the stamp
    assert "up to date" in lockenv(tmp_path, "sync").stderr
    monkeypatch.setenv("PIP_INDEX_URL", index_server.url.replace("127.0.0.1", "localhost"))
    synced = lockenv(tmp_path, "sync")
    assert "lock is out of date (indexes changed" in synced.stderr, synced.stderr


# --------------------------------------------------------------------------- small items


def test_list_with_a_misspelt_platform_suggests_the_name(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n')
    lockenv(tmp_path, "lock")
    result = lockenv(tmp_path, "list", "--platform", "linux64", check=False)
    assert result.returncode == 2
    assert "unknown platform 'linux64': did you mean 'linux-64'?" in result.stderr
    assert "add it to" not in result.stderr


def _git(cwd: Path, *words: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *words],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_diff_before_the_first_commit_and_with_one_file(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "<2"\n', platforms='["linux-64"]')
    lockenv(tmp_path, "lock")
    _git(tmp_path, "init", "-q")
    first = lockenv(tmp_path, "diff")
    assert "no commit yet: all of lockenv.lock is new" in first.stderr
    assert "+ alpha 1.1 (default/linux-64)" in first.stdout
    (tmp_path / "old.lock").write_bytes((tmp_path / "lockenv.lock").read_bytes())
    write_manifest(tmp_path, index_server.url, 'alpha = ">=2"\n', platforms='["linux-64"]')
    lockenv(tmp_path, "lock")
    one = lockenv(tmp_path, "diff", "old.lock")
    assert "~ alpha 1.1 -> 2.0 (default/linux-64)" in one.stdout
    outside = lockenv(tmp_path.parent, "diff", "--manifest", str(tmp_path), check=False)
    assert outside.returncode == 0


def test_state_directory_is_git_ignored(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n', platforms='["linux-64"]')
    lockenv(tmp_path, "lock")
    assert (tmp_path / ".lockenv" / ".gitignore").read_text().splitlines()[-1] == "*"
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert ".lockenv" not in status
    assert "lockenv.lock" in status


def _actions(parser: argparse.ArgumentParser, where: str = "lockenv") -> list[tuple[str, Any]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _actions(sub, f"{where} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((where, action))
    return found


def test_every_option_has_help_text_and_names_its_variable() -> None:
    actions = _actions(build_parser())
    missing = [f"{where} {a.option_strings or a.dest}" for where, a in actions if not a.help]
    assert missing == []
    helps = {opt: a.help for _, a in actions for opt in a.option_strings}
    for option, variable in (
        ("--offline", "LOCKENV_OFFLINE"),
        ("--locked", "LOCKENV_LOCKED"),
        ("--frozen", "LOCKENV_FROZEN"),
        ("--manifest", "LOCKENV_MANIFEST"),
        ("--color", "LOCKENV_COLOR"),
        ("--link-mode", "LOCKENV_LINK_MODE"),
        ("--no-lock", "LOCKENV_NO_LOCK"),
    ):
        assert f"[env: {variable}]" in str(helps[option]), option


def test_environment_variables_set_the_flags(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, "")
    env = {**os.environ, "LOCKENV_NO_LOCK": "1"}
    subprocess.run(
        [sys.executable, "-m", "lockenv", "add", "--pypi", "alpha"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert not (tmp_path / "lockenv.lock").exists()


def test_color_on_request_and_never_in_pipes(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, "")
    plain = lockenv(tmp_path, "add", "numpy", check=False)
    assert "\x1b[" not in plain.stderr  # not a terminal: no colour
    forced = lockenv(tmp_path, "--color", "always", "add", "numpy", check=False)
    assert forced.stderr.startswith("\x1b[1;31merror\x1b[0m: ")
    assert "\x1b[1;36mhint\x1b[0m: " in forced.stderr


def _run_with_umask(cwd: Path, umask: int, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "lockenv", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        preexec_fn=lambda: os.umask(umask),
        timeout=300,
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o002, 0o664, 0o775), (0o077, 0o600, 0o700)]
)
def test_files_lockenv_writes_follow_the_umask(
    tmp_path: Path, index_server: Any, umask: int, file_mode: int, dir_mode: int
) -> None:
    import stat

    project = tmp_path / "project"
    project.mkdir()
    _run_with_umask(
        project, umask, "init", "--platform", "linux-64", "--index", index_server.url,
        "--requires-python", f"=={sys.version_info.major}.{sys.version_info.minor}.*",
    )  # fmt: skip
    _run_with_umask(project, umask, "add", "--pypi", "alpha")
    _run_with_umask(project, umask, "sync")
    _run_with_umask(project, umask, "export", "--format", "requirements.txt", "-o", "req.txt")
    _run_with_umask(project, umask, "bundle", str(tmp_path / "bundle"))

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    for written in ("lockenv.toml", "lockenv.lock", "req.txt", ".lockenv/fresh.json"):
        assert mode(project / written) == file_mode, written
    for made in (".lockenv", ".lockenv/envs/default"):
        assert mode(project / made) == dir_mode, made
    assert mode(tmp_path / "bundle") == dir_mode


def _other_filesystem(path: Path) -> Path | None:
    for candidate in (Path("/dev/shm"), Path("/run/user") / str(os.getuid())):
        try:
            writable = candidate.is_dir() and os.access(candidate, os.W_OK)
            if writable and candidate.stat().st_dev != path.stat().st_dev:
                return candidate
        except OSError:
            continue
    return None


def test_hardlinks_across_filesystems_are_reported_or_refused(
    tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second writable filesystem to put the cache on")
    import tempfile

    with tempfile.TemporaryDirectory(dir=other) as cache:
        monkeypatch.setenv("LOCKENV_CACHE_DIR", cache)
        python = f"=={sys.version_info.major}.{sys.version_info.minor}.*"
        write_manifest(tmp_path, index_server.url, 'alpha = "*"\n', platforms='["linux-64"]')
        text = (tmp_path / "lockenv.toml").read_text().replace("==3.11.*", python)
        (tmp_path / "lockenv.toml").write_text(text)
        strict = lockenv(tmp_path, "sync", "--link-mode", "hardlink", check=False)
        assert strict.returncode == 3
        assert "different filesystems, so files cannot be hardlinked" in strict.stderr
        assert not (tmp_path / ".lockenv" / "envs" / "default").exists()
        copied = lockenv(tmp_path, "sync")
        assert "warning: the cache is on another filesystem" in copied.stderr
        assert "hint: set LOCKENV_CACHE_DIR" in copied.stderr


def test_sync_progress_in_ci_is_a_line_per_download_and_a_total(
    tmp_path: Path, index_server: Any
) -> None:
    python = f"=={sys.version_info.major}.{sys.version_info.minor}.*"
    write_manifest(tmp_path, index_server.url, 'alpha = ">=2"\n', platforms='["linux-64"]')
    text = (tmp_path / "lockenv.toml").read_text().replace("==3.11.*", python)
    (tmp_path / "lockenv.toml").write_text(text)
    result = lockenv(tmp_path, "sync")
    lines = result.stderr.splitlines()
    downloads = [line for line in lines if line.startswith("download ")]
    assert sorted(d.split(" (")[0] for d in downloads) == [
        "download alpha-2.0-py3-none-any.whl",
        "download beta-1.5-py3-none-any.whl",
    ]
    assert all(d.endswith(" KiB)") or d.endswith(" B)") for d in downloads)
    (total,) = [line for line in lines if line.startswith("download: ")]
    assert total.startswith("download: 2 of 2 done (")
    assert "\r" not in result.stderr  # not a terminal: no status line to redraw
    quiet = lockenv(tmp_path, "sync", "-q")
    assert quiet.stderr == ""
    # -v: a second environment from the same lock says where each artifact came from.
    verbose = lockenv(tmp_path, "-v", "sync", "--prefix", str(tmp_path / "other"))
    assert "[fetch] alpha-2.0-py3-none-any.whl: in the cache" in verbose.stderr
