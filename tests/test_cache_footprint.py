"""The cache's footprint: environments it knows about, keep policies, dry runs, disk usage."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from lockenv.cache import Cache, cache_usage, keep_policy, prune
from lockenv.errors import UsageError
from lockenv.lockfile import Artifact, Lockfile
from lockenv.sync.materialize import SyncOptions, sync_environment
from lockenv.sync.usage import environment_uses
from lockenv.sync.verify import verify_environment

from cli_support import lockenv
from materializer_support import BASIC, fixture_lock, lock_sha

DAY = 86400.0


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def _archive_dir(cache: Cache, artifact: Artifact) -> Path:
    return cache.archive_path(artifact.sha256, artifact.filename).parent


def _age_all(cache: Cache, lock: Lockfile, days: float) -> None:
    for a in lock.artifacts.values():
        for path in (_archive_dir(cache, a), cache.unpacked_dir(a.sha256)):
            if path.exists():
                _age(path, days)


def _sync(lock: Lockfile, prefix: Path, cache: Cache, **options: object) -> None:
    sync_environment(
        lock,
        lock_sha(lock),
        "default",
        prefix,
        SyncOptions(cache_dir=cache.root, **options),  # type: ignore[arg-type]
    )
    assert verify_environment(prefix, lock, "default", lock.inputs.platforms[0]).ok


def _kinds(cache: Cache, lock: Lockfile) -> list[tuple[bool, bool]]:
    """(archive there, tree there) per artifact."""
    return [
        (_archive_dir(cache, a).exists(), cache.unpacked_dir(a.sha256).exists())
        for a in lock.artifacts.values()
    ]


@pytest.fixture
def basic(fixture_index_dir: Path) -> Lockfile:
    return fixture_lock(fixture_index_dir, BASIC)


def test_what_known_environments_use_is_kept_until_they_go(tmp_path: Path, basic: Lockfile) -> None:
    cache = Cache(tmp_path / "cache")
    prefix = tmp_path / "env"
    _sync(basic, prefix, cache, cache_keep="both")  # both kinds of entry, each kept
    uses = environment_uses(cache)
    assert [u.present for u in uses] == [True]
    assert uses[0].artifacts == {a.sha256 for a in basic.artifacts.values()}
    _age_all(cache, basic, 90)
    report = prune(cache, older_than_days=30, environments=environment_uses(cache))
    assert report.entries == 0
    assert report.kept_for_environments == 2 * len(basic.artifacts)
    assert all(k == (True, True) for k in _kinds(cache, basic))
    # The environment goes: its entries are old, so they go too; its registration stays
    # for the period (the prefix may be on another node's scratch, unseen from here).
    shutil.rmtree(prefix)
    uses = environment_uses(cache)
    assert [u.present for u in uses] == [False]
    report = prune(cache, older_than_days=30, environments=uses)
    assert report.entries == 2 * len(basic.artifacts)
    assert all(k == (False, False) for k in _kinds(cache, basic))
    assert uses[0].registration.exists()
    _age(uses[0].registration, 40)
    report = prune(cache, older_than_days=30, environments=environment_uses(cache))
    assert not uses[0].registration.exists() and report.leftovers == 1
    assert environment_uses(cache) == []


def test_an_environment_moved_elsewhere_no_longer_counts(tmp_path: Path, basic: Lockfile) -> None:
    cache = Cache(tmp_path / "cache")
    _sync(basic, tmp_path / "env", cache)
    os.rename(tmp_path / "env", tmp_path / "moved")
    assert [u.present for u in environment_uses(cache)] == [False]


def test_dry_run_lists_what_a_real_run_removes(tmp_path: Path, basic: Lockfile) -> None:
    cache = Cache(tmp_path / "cache")
    _sync(basic, tmp_path / "env", cache, link_mode="copy", cache_keep="both")
    _age_all(cache, basic, 90)
    before = cache_usage(cache)
    dry = prune(cache, older_than_days=30, dry_run=True)
    assert dry.dry_run and dry.entries == 2 * len(basic.artifacts)
    assert cache_usage(cache) == before
    assert all(k == (True, True) for k in _kinds(cache, basic))
    real = prune(cache, older_than_days=30)
    assert sorted(dry.items, key=lambda i: i.path) == sorted(real.items, key=lambda i: i.path)
    # Copies in the environment: every byte of the cache entries is freed.
    assert real.freed_bytes > sum(a.size for a in basic.artifacts.values())
    for item in real.items:
        assert item.reason == "unused for 30 days"
        assert item.path.startswith(("archives/", "unpacked/"))


def test_keep_trees_drops_archives_of_sealed_trees(tmp_path: Path, basic: Lockfile) -> None:
    cache = Cache(tmp_path / "cache")
    _sync(basic, tmp_path / "env", cache, cache_keep="both")  # then prune keeps trees
    artifacts = list(basic.artifacts.values())
    damaged, busy = artifacts[0], artifacts[1]
    os.chmod(cache.unpacked_dir(damaged.sha256) / "seal.json", 0o666)  # proves nothing now
    with cache.artifact_lock(busy.sha256):
        # As a sync busy with it would; prune runs in another thread (the lock is
        # reentrant within a thread).
        report_box = []
        thread = threading.Thread(
            target=lambda: report_box.append(
                prune(cache, keep="trees", environments=environment_uses(cache))
            )
        )
        thread.start()
        thread.join()
    report = report_box[0]
    kinds = dict(zip([a.sha256 for a in artifacts], _kinds(cache, basic), strict=True))
    assert kinds[damaged.sha256] == (True, True)
    assert kinds[busy.sha256] == (True, True)
    others = [a for a in artifacts if a not in (damaged, busy)]
    assert all(kinds[a.sha256] == (False, True) for a in others)
    assert report.entries == len(others)
    assert {i.reason for i in report.items} == {"its unpacked tree is sealed (keep: trees)"}
    # The trees alone serve another sync: no archive is fetched again.
    _sync(basic, tmp_path / "again", cache, offline=True)
    kinds = dict(zip([a.sha256 for a in artifacts], _kinds(cache, basic), strict=True))
    assert all(kinds[a.sha256] == (False, True) for a in others)


def test_keep_archives_drops_trees_unless_symlinked(tmp_path: Path, basic: Lockfile) -> None:
    cache = Cache(tmp_path / "cache")
    _sync(basic, tmp_path / "env", cache, cache_keep="both")  # then prune keeps archives
    _age_all(cache, basic, 0.5)  # half a day: not in use by a running sync, not old
    report = prune(cache, keep="archives", environments=environment_uses(cache))
    assert report.entries == len(basic.artifacts)
    assert all(k == (True, False) for k in _kinds(cache, basic))
    # Hardlinks: the environment keeps its files, and a new sync unpacks again.
    _sync(basic, tmp_path / "env2", cache, offline=True, cache_keep="archives")
    assert verify_environment(tmp_path / "env", basic, "default", basic.inputs.platforms[0]).ok
    # An environment whose files are symlinks into the trees keeps them.
    _sync(basic, tmp_path / "linked", cache, link_mode="symlink", cache_keep="archives")
    _age_all(cache, basic, 0.5)
    report = prune(cache, keep="archives", environments=environment_uses(cache))
    assert report.entries == 0
    assert all(k == (True, True) for k in _kinds(cache, basic))


def test_a_tree_without_its_archive_is_kept_by_keep_archives(
    tmp_path: Path, basic: Lockfile
) -> None:
    cache = Cache(tmp_path / "cache")
    _sync(basic, tmp_path / "env", cache, cache_keep="trees")
    _age_all(cache, basic, 0.5)
    report = prune(cache, keep="archives", environments=environment_uses(cache))
    assert report.entries == 0  # the only copies
    assert all(k == (False, True) for k in _kinds(cache, basic))


def test_sync_keeps_trees_by_default_and_syncs_offline_again(
    tmp_path: Path, basic: Lockfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(tmp_path / "cache")
    monkeypatch.delenv("LOCKENV_CACHE_KEEP", raising=False)
    _sync(basic, tmp_path / "env", cache)
    assert all(k == (False, True) for k in _kinds(cache, basic))
    _sync(basic, tmp_path / "env2", cache, offline=True)
    # A damaged tree is made again from a new download (here: the file:// URL).
    victim = next(iter(basic.artifacts.values()))
    seal = cache.unpacked_dir(victim.sha256) / "seal.json"
    os.chmod(seal, 0o644)
    seal.write_text("{}")
    os.chmod(seal, 0o444)
    _sync(basic, tmp_path / "env3", cache)
    assert all(k == (False, True) for k in _kinds(cache, basic))
    # $LOCKENV_CACHE_KEEP=both: the archive of what a sync fetches is kept beside its tree.
    monkeypatch.setenv("LOCKENV_CACHE_KEEP", "both")
    os.chmod(seal, 0o644)
    seal.write_text("{}")
    os.chmod(seal, 0o444)
    _sync(basic, tmp_path / "env4", cache)
    kinds = dict(zip(basic.artifacts.values(), _kinds(cache, basic), strict=True))
    assert kinds.pop(victim) == (True, True)
    assert all(k == (False, True) for k in kinds.values())


def test_keep_policy_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCKENV_CACHE_KEEP", raising=False)
    assert keep_policy() == "trees"  # as uv: see the module doc of lockenv.cache
    assert keep_policy("archives") == "archives"
    monkeypatch.setenv("LOCKENV_CACHE_KEEP", "trees")
    assert keep_policy() == "trees"
    monkeypatch.setenv("LOCKENV_CACHE_KEEP", "tree")
    with pytest.raises(UsageError, match=r"LOCKENV_CACHE_KEEP 'tree'.*trees, both, archives"):
        keep_policy()
    with pytest.raises(UsageError, match="--keep 'all'"):
        keep_policy("all")


def test_cache_usage_counts_each_inode_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    (tmp_path / "archives").mkdir()
    (tmp_path / "unpacked").mkdir()
    (tmp_path / "archives" / "a").write_bytes(b"x" * 10000)
    os.link(tmp_path / "archives" / "a", tmp_path / "unpacked" / "a")
    (tmp_path / "unpacked" / "b").write_bytes(b"y")
    (tmp_path / "artifacts.lock").touch()
    usage = cache_usage(cache)
    assert usage["archives"].inodes == 2  # the directory and its file
    assert usage["unpacked"].inodes == 2  # the directory and b: a counted already
    assert usage["other"].inodes == 1
    assert usage["archives"].bytes >= 10000 > usage["unpacked"].bytes


def test_cli_prune_dry_run_keep_and_size(tmp_path: Path, basic: Lockfile) -> None:
    cache = Cache(Path(os.environ["LOCKENV_CACHE_DIR"]))
    _sync(basic, tmp_path / "env", cache, cache_keep="both")  # then prune keeps trees
    _age_all(cache, basic, 0.5)
    result = lockenv(tmp_path, "cache", "prune", "--keep", "trees", "--dry-run")
    lines = result.stdout.splitlines()
    assert len(lines) == len(basic.artifacts)
    assert all(
        line.startswith("would remove archives/") and "(its unpacked tree is sealed" in line
        for line in lines
    )
    assert f"would prune {len(basic.artifacts)} cache entries" in result.stderr
    assert all(k == (True, True) for k in _kinds(cache, basic))
    result = lockenv(tmp_path, "cache", "size")
    assert "archives" in result.stdout and "unpacked" in result.stdout
    assert "total" in result.stdout.splitlines()[-1]
    result = lockenv(tmp_path, "cache", "prune", "--keep", "trees")
    assert f"pruned {len(basic.artifacts)} cache entries" in result.stderr
    assert all(k == (False, True) for k in _kinds(cache, basic))
    # Old, but the environment uses them: kept, and said so.
    _age_all(cache, basic, 90)
    result = lockenv(tmp_path, "cache", "prune")
    assert "pruned 0 cache entries" in result.stderr
    assert f"kept {len(basic.artifacts)} old entries that environments use" in result.stderr
    result = lockenv(tmp_path, "cache", "prune", "--keep", "everything", check=False)
    assert result.returncode == 2
