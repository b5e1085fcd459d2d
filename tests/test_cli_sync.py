"""End to end: `lockenv sync`, `run` and `verify`, as a user runs them, on fixture projects."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_support import fast_path, lockenv, write_manifest


@pytest.fixture
def project(tmp_path: Path, index_server: Any) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(
        root,
        index_server.url,
        'clicky = "*"\nnumfast = "*"\ngamma = { version = "*", extras = ["all"] }\n',
        platforms='["linux-64", "osx-arm64", "win-64"]',
    )
    lockenv(root, "lock")
    return root


def test_sync_run_verify(project: Path) -> None:
    result = lockenv(project, "sync")
    assert "installed" in result.stderr
    prefix = project / ".lockenv" / "envs" / "default"
    assert (prefix / "bin" / "clicky").exists()
    assert lockenv(project, "run", "--", "clicky").stdout.strip() == "clicky ok"
    out = lockenv(
        project,
        "run",
        "--",
        "python",
        "-c",
        "import numfast, gamma, sys; print(numfast.__version__, sys.prefix)",
    ).stdout
    assert out.split() == ["1.0", str(prefix)]
    # The exit status of the command is passed through.
    status = lockenv(project, "run", "--", "python", "-c", "raise SystemExit(7)", check=False)
    assert status.returncode == 7
    assert lockenv(project, "verify").returncode == 0
    # A second sync is a no-op.
    assert "up to date" in lockenv(project, "sync").stderr
    # The first sync of the project already remembered the lock's parse beside the
    # environment (its directory made before the parse).
    memo = json.loads((prefix.parent / ".default.parsed-lock.json").read_text())
    assert len(memo["locks"]) == 1


def test_verify_reports_drift(project: Path) -> None:
    lockenv(project, "sync")
    prefix = project / ".lockenv" / "envs" / "default"
    init = next(prefix.glob("lib/python*/site-packages/gamma/__init__.py"))
    init.unlink()
    init.write_text("tampered = True\n")
    result = lockenv(project, "verify", "--json", check=False)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert any(path.endswith("gamma/__init__.py") for path in report["modified"])
    # sync repairs nothing by itself when the lock did not change, but --digest refuses.
    lockenv(project, "cache", "dir")


def test_locked_fails_on_stale_lock_and_frozen_ignores_manifest(project: Path) -> None:
    lock_before = (project / "lockenv.lock").read_bytes()
    manifest = project / "lockenv.toml"
    manifest.write_text(manifest.read_text() + 'alpha = "*"\n')
    result = lockenv(project, "sync", "--locked", check=False)
    assert result.returncode == 1
    assert "out of date" in result.stderr
    assert (project / "lockenv.lock").read_bytes() == lock_before
    # --frozen does not even read the manifest: a broken one is no obstacle.
    manifest.write_text(manifest.read_text() + "this is not toml [[[\n")
    lockenv(project, "sync", "--frozen")
    assert (project / "lockenv.lock").read_bytes() == lock_before
    assert lockenv(project, "verify").returncode == 0


def test_sync_relocks_a_stale_lock_by_default(project: Path) -> None:
    manifest = project / "lockenv.toml"
    manifest.write_text(manifest.read_text() + 'alpha = "*"\n')
    lockenv(project, "sync")
    assert "alpha-2.0" in (project / "lockenv.lock").read_text()
    lockenv(project, "run", "--", "python", "-c", "import alpha")


def test_any_lock_into_any_prefix(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "node"
    elsewhere.mkdir()
    shutil.copy(project / "lockenv.lock", elsewhere / "cluster.lock")
    prefix = elsewhere / "env"
    lockenv(elsewhere, "sync", "--lock", "cluster.lock", "--prefix", str(prefix))
    result = subprocess.run([str(prefix / "bin" / "clicky")], capture_output=True, text=True)
    assert result.stdout.strip() == "clicky ok"
    assert (
        lockenv(elsewhere, "verify", "--lock", "cluster.lock", "--prefix", str(prefix)).returncode
        == 0
    )
    # `run` takes a lock alone too (a job on a node): no manifest anywhere.
    ran = lockenv(
        elsewhere, "run", "--lock", "cluster.lock", "--prefix", str(prefix), "--", "clicky"
    )
    assert ran.stdout.strip() == "clicky ok"
    alone = lockenv(elsewhere, "run", "--lock", "cluster.lock", "--", "clicky", check=False)
    assert alone.returncode == 2 and "--lock FILE needs --prefix DIR" in alone.stderr


def test_digest_same_in_two_prefixes_and_after_cache_loss(project: Path, tmp_path: Path) -> None:
    lockenv(project, "sync")
    first = lockenv(project, "verify", "--digest").stdout.strip().splitlines()[-1]
    other = tmp_path / "other-prefix"
    lockenv(project, "sync", "--prefix", str(other))
    second = (
        lockenv(project, "verify", "--digest", "--prefix", str(other))
        .stdout.strip()
        .splitlines()[-1]
    )
    assert first == second and len(first) == 64
    shutil.rmtree(os.environ["LOCKENV_CACHE_DIR"])
    shutil.rmtree(other)
    lockenv(project, "sync", "--prefix", str(other))
    third = (
        lockenv(project, "verify", "--digest", "--prefix", str(other))
        .stdout.strip()
        .splitlines()[-1]
    )
    assert third == first


def test_offline(project: Path, tmp_path: Path) -> None:
    result = lockenv(project, "sync", "--offline", "--frozen", check=False)
    assert result.returncode != 0
    assert "offline" in result.stderr.lower() and "clicky" in result.stderr
    assert "Traceback" not in result.stderr
    lockenv(project, "sync")
    other = tmp_path / "offline-prefix"
    lockenv(project, "sync", "--offline", "--frozen", "--prefix", str(other))
    assert lockenv(project, "verify", "--prefix", str(other)).returncode == 0


def test_lock_only_for_other_platforms_is_a_clear_error(tmp_path: Path, index_server: Any) -> None:
    write_manifest(tmp_path, index_server.url, 'alpha = "*"\n', platforms='["win-64"]')
    lockenv(tmp_path, "lock")
    result = lockenv(tmp_path, "sync", check=False)
    assert result.returncode != 0
    assert "linux-64" in result.stderr and "Traceback" not in result.stderr


def _imported_by_sync(project: Path, modules: tuple[str, ...]) -> str:
    """Which of ``modules`` `lockenv sync -q` imported, run as the command runs (comma
    separated)."""
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['lockenv', 'sync', '-q']\n"
        "try:\n    runpy.run_module('lockenv', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"print(','.join(m for m in {modules!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_no_op_sync_imports_nothing_heavy(project: Path) -> None:
    lockenv(project, "sync")
    heavy = ("httpx", "yaml", "tomlkit", "resolvelib", "lockenv.lock.resolve")
    assert _imported_by_sync(project, heavy) == ""


def test_a_sync_that_installs_does_not_load_inspect(project: Path) -> None:
    # Nothing on the sync path needs it (`lockenv.__main__._dataclasses_without_inspect`).
    assert _imported_by_sync(project, ("inspect",)) == ""
    assert (project / ".lockenv" / "envs" / "default" / "bin" / "clicky").exists()


def test_fast_path_after_a_full_check_and_back_on_any_change(project: Path) -> None:
    lockenv(project, "sync")
    time.sleep(2.1)  # a signature is trusted once its file is 2 s older than the stamp
    lockenv(project, "sync")  # (the full check, if the stamp was too young) leaves a stamp
    assert fast_path(project, "sync") == (
        True,
        f"environment 'default' is up to date ({project / '.lockenv/envs/default'})\n",
    )
    assert fast_path(project, "run", "--", "python", "-c", "import clicky")[0]
    site = next((project / ".lockenv/envs/default/lib").glob("python*/site-packages"))
    shutil.rmtree(next(site.glob("clicky-*.dist-info")))  # removed by hand
    fast, said = fast_path(project, "sync")
    assert not fast and "1 installed" in said
    manifest = project / "lockenv.toml"
    manifest.write_text(manifest.read_text() + 'alpha = "*"\n')
    lockenv(project, "run", "--", "python", "-c", "import alpha")  # locked and synced again


def test_many_jobs_on_one_empty_cache_fetch_and_unpack_each_artifact_once(
    tmp_path: Path, make_index_server: Callable[..., Any]
) -> None:
    # A job array: 10 `sync --lock --prefix` and 2 `run` at once on one empty cache.  The
    # server answers slowly, so the jobs overlap; it counts the requests for each file.
    from lockenv.lockfile import read_lockfile
    from lockenv.platforms import current_platform

    server = make_index_server()
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, server.url, 'clicky = "*"\nnumfast = "*"\ngamma = "*"\nalpha = "*"\n')
    lockenv(root, "lock")
    server.reset()
    server.file_delay = 0.3
    record = tmp_path / "record"
    env = {**os.environ, "LOCKENV_TEST_RECORD": str(record)}
    command = [sys.executable, "-m", "lockenv"]
    jobs = [
        [*command, "sync", "--lock", "lockenv.lock", "--prefix", str(tmp_path / f"e{i}")]
        for i in range(10)
    ]
    jobs += [[*command, "run", "--", "python", "-c", "import clicky, numfast"]] * 2
    procs = [
        subprocess.Popen(job, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for job in jobs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    lock = read_lockfile(root / "lockenv.lock")
    wanted = sorted(a.filename for a in lock.packages_for("default", current_platform()))
    assert server.counts() == {f"/files/{name}": 1 for name in wanted}
    lines = record.read_text().splitlines()
    assert (
        sorted(line.split()[1] for line in lines if line.startswith("fetch:downloaded")) == wanted
    )
    published = sorted(line.split()[1] for line in lines if line.startswith("unpack:published"))
    assert published == wanted
    for i in range(10):
        verify = ["verify", "--lock", "lockenv.lock", "--prefix", str(tmp_path / f"e{i}")]
        assert lockenv(root, *verify).returncode == 0
