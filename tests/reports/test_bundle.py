"""`lockenv bundle` and syncing from a bundle with an empty cache and no network.

The servers of these tests are started and stopped by the tests themselves: after the
bundle is written they are shut down, so any request a sync made would fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.server import serve_index, serve_static
from lockenv import __version__
from lockenv.cache import Cache
from lockenv.errors import IntegrityError, LockfileError, OfflineError, UsageError
from lockenv.lockfile import dumps
from lockenv.platforms import current_platform
from lockenv.reports.bundle import write_bundle
from lockenv.sync.bundle_source import _is_inside, bundle_for_lock, read_bundle
from lockenv.sync.fetch import fetch_artifacts

from cli_support import lockenv, write_manifest
from materializer_support import BASIC, fixture_lock

PLATFORM = current_platform()
DEPS = 'clicky = "*"\nnumfast = "*"\ngamma = { version = "*", extras = ["all"] }\n'


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def _fresh_cache(monkeypatch: pytest.MonkeyPatch, path: Path) -> Path:
    """Point LOCKENV_CACHE_DIR (inherited by the `lockenv` subprocesses) at an empty dir."""
    path.mkdir()
    monkeypatch.setenv("LOCKENV_CACHE_DIR", str(path))
    return path


# -- the PyPI end-to-end path ------------------------------------------------------------


def test_bundle_then_sync_with_empty_cache_and_no_network(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    with serve_index(fixture_index_dir) as server:
        write_manifest(root, server.url, DEPS)
        lockenv(root, "lock")
        lockenv(root, "sync")
        expected = _last_line(lockenv(root, "verify", "--digest").stdout)
        result = lockenv(root, "bundle", str(tmp_path / "out"))
        assert "bundled" in result.stderr
    # The index server is shut down: the node below has no network and an empty cache.
    cache = _fresh_cache(monkeypatch, tmp_path / "node-cache")
    node = tmp_path / "node"
    node.mkdir()
    bundle = tmp_path / "out"
    prefix = node / "env"
    lockenv(
        node, "sync", "--lock", str(bundle / "lockenv.lock"), "--prefix", str(prefix), "--offline"
    )
    digest = lockenv(
        node, "verify", "--digest", "--lock", str(bundle / "lockenv.lock"), "--prefix", str(prefix)
    ).stdout
    assert _last_line(digest) == expected
    # Imported into the cache, as sealed trees (the default keep policy drops the
    # archives): later syncs need the bundle no more.
    assert any((cache / "unpacked").glob("*/*/files/clicky-*.dist-info"))
    assert not any((cache / "archives").rglob("clicky-*.whl"))
    shutil.move(bundle, tmp_path / "moved")
    shutil.copy(tmp_path / "moved" / "lockenv.lock", node / "plain.lock")
    lockenv(node, "sync", "--lock", "plain.lock", "--prefix", str(node / "env2"), "--offline")
    # Without --offline too: nothing is downloaded when the cache has everything.
    lockenv(node, "sync", "--lock", "plain.lock", "--prefix", str(node / "env3"))


def test_bundled_lock_is_byte_identical_and_no_op_state_matches(
    tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, DEPS)
    lockenv(root, "lock")
    lockenv(root, "bundle", str(tmp_path / "out"))
    lock_bytes = (root / "lockenv.lock").read_bytes()
    assert (tmp_path / "out" / "lockenv.lock").read_bytes() == lock_bytes
    _fresh_cache(monkeypatch, tmp_path / "c")
    prefix = tmp_path / "env"
    lock = tmp_path / "out" / "lockenv.lock"
    lockenv(tmp_path, "sync", "--lock", str(lock), "--prefix", str(prefix), "--offline")
    state = json.loads((prefix / ".lockenv-state.json").read_text())
    assert state["lock_sha256"] == hashlib.sha256(lock_bytes).hexdigest()
    again = lockenv(tmp_path, "sync", "--lock", str(lock), "--prefix", str(prefix), "--offline")
    assert "up to date" in again.stderr


def test_bundle_json_contents(tmp_path: Path, index_server: Any) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, DEPS)
    lockenv(root, "lock")
    out = tmp_path / "out"
    lockenv(root, "bundle", str(out))
    data = json.loads((out / "bundle.json").read_text())
    assert data["format"] == "lockenv-bundle"
    assert data["version"] == 1
    assert data["lockenv-version"] == __version__
    assert data["environments"] == ["default"]
    assert data["platforms"] == ["linux-64", "osx-arm64", "win-64"]
    lock_bytes = (root / "lockenv.lock").read_bytes()
    assert data["lock"] == {
        "path": "lockenv.lock",
        "sha256": hashlib.sha256(lock_bytes).hexdigest(),
    }
    every = {
        row["sha256"]: row
        for platform in data["platforms"]
        for row in json.loads(lockenv(root, "list", "--platform", platform, "--json").stdout)
    }
    assert {a["sha256"] for a in data["artifacts"]} == set(every)
    for entry in data["artifacts"]:
        assert set(entry) == {"filename", "sha256", "size", "path"}
        sha = entry["sha256"]
        assert entry["path"] == f"artifacts/{sha[:2]}/{sha}/{entry['filename']}"
        file = out.joinpath(*PurePosixPath(entry["path"]).parts)
        assert hashlib.sha256(file.read_bytes()).hexdigest() == sha
        assert file.stat().st_size == entry["size"] == every[sha]["size"]
    assert data["artifacts"] == sorted(
        data["artifacts"], key=lambda e: (e["filename"], e["sha256"])
    )
    # Built beside OUT and renamed: nothing else is left there.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "proj"]
    # Deterministic: the same lock and choices give the same bundle.json.
    lockenv(root, "bundle", str(out))
    assert json.loads((out / "bundle.json").read_text()) == data


def test_platform_option_restricts_the_artifacts(tmp_path: Path, index_server: Any) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, DEPS)
    lockenv(root, "lock")
    out = tmp_path / "win"
    lockenv(root, "bundle", str(out), "--platform", "win-64", "-e", "default")
    data = json.loads((out / "bundle.json").read_text())
    assert data["platforms"] == ["win-64"]
    win = json.loads(lockenv(root, "list", "--platform", "win-64", "--json").stdout)
    assert sorted(a["filename"] for a in data["artifacts"]) == sorted(r["filename"] for r in win)
    assert not any("manylinux" in a["filename"] for a in data["artifacts"])
    assert any("win_amd64" in a["filename"] for a in data["artifacts"])
    files = [p.name for p in (out / "artifacts").rglob("*") if p.is_file()]
    assert sorted(files) == sorted(r["filename"] for r in win)
    # A platform the lock does not have, an unknown platform, an unknown environment.
    for args, word in (
        (["--platform", "linux-aarch64"], "linux-aarch64"),
        (["--platform", "amiga-68k"], "amiga-68k"),
        (["-e", "nope"], "nope"),
    ):
        result = lockenv(root, "bundle", str(tmp_path / "bad"), *args, check=False)
        assert result.returncode == 2, result.stderr
        assert word in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "bad").exists()


def test_tampered_bundle_artifact_is_refused_with_both_hashes(
    tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, DEPS)
    lockenv(root, "lock")
    out = tmp_path / "out"
    lockenv(root, "bundle", str(out), "--platform", PLATFORM)
    entry = next(
        a
        for a in json.loads((out / "bundle.json").read_text())["artifacts"]
        if a["filename"].startswith("clicky-")
    )
    victim = out / entry["path"]
    victim.unlink()  # a new file: the bundle's files may be hardlinks into the cache
    victim.write_bytes(b"not a wheel")
    cache = _fresh_cache(monkeypatch, tmp_path / "c")
    prefix = tmp_path / "env"
    result = lockenv(
        tmp_path,
        "sync",
        "--lock",
        str(out / "lockenv.lock"),
        "--prefix",
        str(prefix),
        "--offline",
        check=False,
    )
    assert result.returncode == 3
    message = result.stderr
    assert entry["filename"] in message and "corrupt" in message
    assert entry["sha256"] in message and hashlib.sha256(b"not a wheel").hexdigest() in message
    assert "Traceback" not in message
    assert next(line for line in message.splitlines() if "sha256" in line).startswith("error: ")
    assert not prefix.exists()
    assert not any((cache / "archives").rglob(entry["filename"]))
    # A missing one: offline, the error lists it.
    victim.unlink()
    result = lockenv(
        tmp_path,
        "sync",
        "--lock",
        str(out / "lockenv.lock"),
        "--prefix",
        str(prefix),
        "--offline",
        check=False,
    )
    assert result.returncode == 3
    assert "offline" in result.stderr and entry["filename"] in result.stderr
    assert "bundle" in result.stderr and "Traceback" not in result.stderr


def test_explicit_bundle_option_for_a_project(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    with serve_index(fixture_index_dir) as server:
        write_manifest(root, server.url, DEPS)
        lockenv(root, "lock")
        lockenv(root, "bundle", str(tmp_path / "transfer" / "b"))
    _fresh_cache(monkeypatch, tmp_path / "c")
    result = lockenv(root, "sync", "--frozen", "--offline", check=False)
    assert result.returncode == 3 and "offline" in result.stderr
    lockenv(root, "sync", "--frozen", "--offline", "--bundle", str(tmp_path / "transfer" / "b"))
    assert lockenv(root, "run", "--frozen", "--offline", "--", "clicky").stdout.strip() == (
        "clicky ok"
    )
    bad = lockenv(root, "sync", "--frozen", "--bundle", str(tmp_path), check=False)
    assert bad.returncode == 2 and "not a complete lockenv bundle" in bad.stderr


def test_tar_bundle(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    with serve_index(fixture_index_dir) as server:
        write_manifest(root, server.url, DEPS)
        lockenv(root, "lock")
        lockenv(root, "bundle", str(tmp_path / "b.tar"), "--platform", PLATFORM)
    first = (tmp_path / "b.tar").read_bytes()
    lockenv(root, "bundle", str(tmp_path / "b.tar"), "--platform", PLATFORM, "--offline")
    assert (tmp_path / "b.tar").read_bytes() == first  # same bundle, same bytes
    with tarfile.open(tmp_path / "b.tar") as tar:
        names = tar.getnames()
        assert names[0] == "b" and names[-1] == "b/bundle.json"
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "proj", "unpacked"]
    _fresh_cache(monkeypatch, tmp_path / "c")
    lock = tmp_path / "unpacked" / "b" / "lockenv.lock"
    lockenv(tmp_path, "sync", "--lock", str(lock), "--prefix", str(tmp_path / "env"), "--offline")
    refused = lockenv(root, "sync", "--frozen", "--bundle", str(tmp_path / "b.tar"), check=False)
    assert refused.returncode == 2 and "tar -xf" in refused.stderr


def test_destination_that_is_not_a_bundle_is_left_alone(tmp_path: Path, index_server: Any) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, 'alpha = "*"\n')
    lockenv(root, "lock")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = lockenv(root, "bundle", str(precious), check=False)
    assert result.returncode == 2 and "not a lockenv bundle" in result.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "proj"]
    empty = tmp_path / "empty"
    empty.mkdir()
    lockenv(root, "bundle", str(empty))
    assert (empty / "bundle.json").is_file()


def test_bundle_offline_with_an_empty_cache(tmp_path: Path, index_server: Any) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, 'alpha = "*"\n')
    lockenv(root, "lock")
    result = lockenv(root, "bundle", str(tmp_path / "out"), "--offline", check=False)
    assert result.returncode == 3 and "alpha" in result.stderr and "offline" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bundle_offline_after_a_sync_needs_the_archives_kept(
    tmp_path: Path, index_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    write_manifest(root, index_server.url, 'alpha = "*"\n', platforms=f'["{PLATFORM}"]')
    lockenv(root, "lock")
    # The default keep policy ("trees") drops each archive once its tree is sealed: the
    # sync leaves nothing to bundle offline, and the hint says how to keep archives.
    _fresh_cache(monkeypatch, tmp_path / "trees")
    lockenv(root, "sync")
    result = lockenv(root, "bundle", str(tmp_path / "out"), "--offline", check=False)
    assert result.returncode == 3 and "alpha" in result.stderr
    assert "LOCKENV_CACHE_KEEP=both" in result.stderr and "Traceback" not in result.stderr
    # With "both", the same sync leaves the archives and the offline bundle is made.
    _fresh_cache(monkeypatch, tmp_path / "both")
    monkeypatch.setenv("LOCKENV_CACHE_KEEP", "both")
    lockenv(root, "sync", "--prefix", str(tmp_path / "env"))
    lockenv(root, "bundle", str(tmp_path / "out"), "--offline")
    artifacts = json.loads((tmp_path / "out" / "bundle.json").read_text())["artifacts"]
    assert any(a["filename"].startswith("alpha-") for a in artifacts)


# -- the conda / mixed end-to-end path ---------------------------------------------------


@pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="the fixture python package exists for unix platforms",
)
def test_mixed_conda_bundle_then_sync_with_no_network(
    tmp_path: Path,
    fixture_index_dir: Path,
    fixture_channel_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)
    root = tmp_path / "mixed"
    root.mkdir()
    with serve_index(fixture_index_dir) as index, serve_static(fixture_channel_dir) as channel:
        (root / "lockenv.toml").write_text(
            "[project]\n"
            'name = "demo"\n'
            f'platforms = ["{PLATFORM}"]\n'
            f'channels = ["{channel.url.rstrip("/")}"]\n'
            f'indexes = ["{index.url}"]\n'
            '\n[dependencies]\npython = "3.11.*"\ntool-py = "*"\nlibzlib = "*"\n'
            '\n[pypi-dependencies]\nalpha = "*"\n'
        )
        lockenv(root, "lock")
        lockenv(root, "sync")
        expected = _last_line(lockenv(root, "verify", "--digest").stdout)
        lockenv(root, "bundle", str(tmp_path / "out"))
    data = json.loads((tmp_path / "out" / "bundle.json").read_text())
    filenames = {a["filename"] for a in data["artifacts"]}
    assert any(f.endswith((".conda", ".tar.bz2")) for f in filenames)
    assert any(f.endswith(".whl") for f in filenames)
    _fresh_cache(monkeypatch, tmp_path / "node-cache")
    prefix = tmp_path / "node" / "env"
    lock = str(tmp_path / "out" / "lockenv.lock")
    # No --offline: the servers are gone, so any download would fail.
    lockenv(tmp_path, "sync", "--lock", lock, "--prefix", str(prefix))
    digest = lockenv(tmp_path, "verify", "--digest", "--lock", lock, "--prefix", str(prefix))
    assert _last_line(digest.stdout) == expected
    tool = prefix / "bin" / "tool-py"
    assert tool.exists()


# -- fetch from a bundle, as a library -----------------------------------------------------


@pytest.fixture
def small_bundle(tmp_path: Path, fixture_index_dir: Path) -> tuple[Path, Any]:
    """A bundle of the BASIC fixture lock (file:// URLs), written by `write_bundle`."""
    lock = fixture_lock(fixture_index_dir, BASIC, base_url="http://127.0.0.1:9")
    lock_path = tmp_path / "src" / "lockenv.lock"
    lock_path.parent.mkdir()
    lock_path.write_text(dumps(lock))
    # Fill a cache from the fixture files so nothing is downloaded.
    seed = Cache(tmp_path / "seed")
    file_lock = fixture_lock(fixture_index_dir, BASIC)
    fetch_artifacts(list(file_lock.artifacts.values()), seed)
    report = write_bundle(lock_path, tmp_path / "b", cache_dir=seed.root, offline=True)
    assert report.artifacts == len(BASIC) and report.downloaded == 0
    return tmp_path / "b", lock


@pytest.mark.parametrize("link", [True, False], ids=["hardlink", "copy"])
def test_fetch_imports_from_the_bundle(
    tmp_path: Path, small_bundle: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch, link: bool
) -> None:
    bundle, lock = small_bundle
    if not link:

        def no_link(src: Any, dst: Any, **kwargs: Any) -> None:
            raise OSError(18, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", no_link)
    cache = Cache(tmp_path / "cache")
    artifacts = list(lock.artifacts.values())
    result = fetch_artifacts(artifacts, cache, offline=True, bundle=bundle)
    assert sorted(result.bundled) == sorted(BASIC) and result.downloaded == ()
    for a in artifacts:
        path = result.paths[a.sha256]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == a.sha256
        source = bundle / "artifacts" / a.sha256[:2] / a.sha256 / a.filename
        assert os.path.samefile(path, source) is link
    assert not list((cache.root / "archives").rglob("*.part"))
    again = fetch_artifacts(artifacts, cache, offline=True, bundle=bundle)
    assert again.bundled == ()  # warm now


def test_fetch_refuses_a_corrupt_bundle_artifact(
    tmp_path: Path, small_bundle: tuple[Path, Any]
) -> None:
    bundle, lock = small_bundle
    victim = next(a for a in lock.artifacts.values() if a.filename.startswith("beta-"))
    path = bundle / "artifacts" / victim.sha256[:2] / victim.sha256 / victim.filename
    path.unlink()
    path.write_bytes(b"x" * victim.size)  # right size, wrong bytes
    cache = Cache(tmp_path / "cache")
    with pytest.raises(IntegrityError) as info:
        fetch_artifacts(list(lock.artifacts.values()), cache, offline=True, bundle=bundle)
    message = str(info.value)
    assert victim.filename in message and victim.sha256 in message
    assert hashlib.sha256(b"x" * victim.size).hexdigest() in message
    assert not cache.archive_path(victim.sha256, victim.filename).exists()
    assert not list((cache.root / "archives").rglob("*.part"))


def test_fetch_offline_lists_what_neither_cache_nor_bundle_has(
    tmp_path: Path, small_bundle: tuple[Path, Any]
) -> None:
    bundle, lock = small_bundle
    victim = next(a for a in lock.artifacts.values() if a.filename.startswith("alpha-"))
    (bundle / "artifacts" / victim.sha256[:2] / victim.sha256 / victim.filename).unlink()
    with pytest.raises(OfflineError) as info:
        fetch_artifacts(
            list(lock.artifacts.values()), Cache(tmp_path / "c"), offline=True, bundle=bundle
        )
    message = str(info.value)
    assert "1 artifact is (" in message and victim.filename in message and str(bundle) in message


# -- bundle.json parsing -----------------------------------------------------------------

_SHA = "ab" * 32
_GOOD = {"filename": "a-1.0-py3-none-any.whl", "sha256": _SHA, "size": 3, "path": "x/a.whl"}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not json", "not readable JSON"),
        ([], "top level is not an object"),
        ({"format": "zip", "version": 1}, "format: expected 'lockenv-bundle'"),
        ({"format": "lockenv-bundle", "version": 2}, "bundle format version 2"),
        ({"format": "lockenv-bundle", "version": 1, "artifacts": {}}, "artifacts: not a list"),
        ({"format": "lockenv-bundle", "version": 1, "artifacts": [1]}, "artifacts[0]: not an"),
        (
            {"format": "lockenv-bundle", "version": 1, "artifacts": [{**_GOOD, "path": "../x"}]},
            "artifacts[0].path: '../x'",
        ),
        (
            {"format": "lockenv-bundle", "version": 1, "artifacts": [{**_GOOD, "path": "/etc"}]},
            "artifacts[0].path: '/etc'",
        ),
        (
            {"format": "lockenv-bundle", "version": 1, "artifacts": [{**_GOOD, "sha256": "z"}]},
            "artifacts[0].sha256: 'z'",
        ),
        (
            {"format": "lockenv-bundle", "version": 1, "artifacts": [{**_GOOD, "size": -1}]},
            "artifacts[0].size: -1",
        ),
        (
            {"format": "lockenv-bundle", "version": 1, "artifacts": [{**_GOOD, "filename": "a/b"}]},
            "artifacts[0].filename: 'a/b'",
        ),
    ],
)
def test_read_bundle_rejects(tmp_path: Path, data: Any, problem: str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    (tmp_path / "bundle.json").write_text(text)
    with pytest.raises(LockfileError) as info:
        read_bundle(tmp_path)
    assert problem in str(info.value) and "bundle.json" in str(info.value)


def test_read_bundle_and_path_of(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_text(
        json.dumps({"format": "lockenv-bundle", "version": 1, "artifacts": [_GOOD]})
    )
    bundle = read_bundle(tmp_path)
    assert bundle.path_of(_SHA) is None  # listed, but the file is missing
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.whl").write_bytes(b"abc")
    assert bundle.path_of(_SHA) == tmp_path / "x" / "a.whl"
    assert bundle.path_of("cd" * 32) is None
    with pytest.raises(LockfileError, match="not a complete bundle"):
        read_bundle(tmp_path / "x")


def test_bundle_for_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lockenv.lock"
    assert bundle_for_lock(lock) is None
    (tmp_path / "bundle.json").write_text("{}")
    assert bundle_for_lock(lock) == tmp_path
    assert bundle_for_lock(tmp_path / "elsewhere" / "x.lock", tmp_path) == tmp_path
    with pytest.raises(UsageError, match="not a complete lockenv bundle"):
        bundle_for_lock(lock, tmp_path / "nope")


@given(st.text(alphabet="ab./\\:-", min_size=1, max_size=12))
def test_accepted_paths_stay_inside_the_bundle(path: str) -> None:
    if _is_inside(path):
        root = Path("/bundle")
        joined = os.path.normpath(root.joinpath(*PurePosixPath(path).parts))
        assert joined.startswith("/bundle/")


def test_corrupt_cache_entry_is_not_bundled(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(fixture_index_dir, BASIC)
    lock_path = tmp_path / "lockenv.lock"
    lock_path.write_text(dumps(lock))
    cache = Cache(tmp_path / "cache")
    fetch_artifacts(list(lock.artifacts.values()), cache)
    victim = next(a for a in lock.artifacts.values() if a.filename.startswith("clicky-"))
    cached = cache.archive_path(victim.sha256, victim.filename)
    cached.write_bytes(b"bit rot")
    with pytest.raises(IntegrityError) as info:
        write_bundle(lock_path, tmp_path / "out", cache_dir=cache.root, offline=True)
    message = str(info.value)
    assert victim.filename in message and victim.sha256 in message
    assert hashlib.sha256(b"bit rot").hexdigest() in message
    assert not cached.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "lockenv.lock"]
    # file:// URLs are read even offline: the next run fetches it again and succeeds.
    report = write_bundle(lock_path, tmp_path / "out", cache_dir=cache.root, offline=True)
    assert report.artifacts == len(BASIC) and report.downloaded == 1
