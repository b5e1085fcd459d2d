"""`lockenv cache prune`: old unused entries and leftovers go; what syncs use stays."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from lockenv import cache as cache_mod
from lockenv.cache import Cache, prune
from lockenv.errors import UsageError
from lockenv.lockfile import Artifact
from lockenv.sync.fetch import fetch_artifacts
from lockenv.sync.materialize import SyncOptions, sync_environment
from lockenv.sync.verify import verify_environment

from cli_support import lockenv
from materializer_support import BASIC, abandoned_work_dir, fixture_lock, lock_sha

DAY = 86400.0


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def _entry(cache: Cache, seed: str, *, archive: bool = True, unpacked: bool = True) -> str:
    """A fabricated entry (archive file + unpacked tree) with 1000-byte files."""
    sha = hashlib.sha256(seed.encode()).hexdigest()
    if archive:
        path = cache.archive_path(sha, f"{seed}-1.0-py3-none-any.whl")
        path.parent.mkdir(parents=True)
        path.write_bytes(b"a" * 1000)
    if unpacked:
        files = cache.unpacked_dir(sha) / "files"
        files.mkdir(parents=True)
        (files / "mod.py").write_bytes(b"u" * 1000)
    return sha


def _age_entry(cache: Cache, sha: str, days: float) -> None:
    for path in (cache.root / "archives" / sha[:2] / sha, cache.unpacked_dir(sha)):
        if path.exists():
            _age(path, days)


def _exists(cache: Cache, sha: str) -> tuple[bool, bool]:
    return (
        (cache.root / "archives" / sha[:2] / sha).exists(),
        cache.unpacked_dir(sha).exists(),
    )


def test_removes_old_unused_entries_and_keeps_recent_ones(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    old, recent, edge = _entry(cache, "old"), _entry(cache, "recent"), _entry(cache, "edge")
    _age_entry(cache, old, 45)
    _age_entry(cache, recent, 2)
    _age_entry(cache, edge, 29)
    report = prune(cache, older_than_days=30)
    assert _exists(cache, old) == (False, False)
    assert _exists(cache, recent) == (True, True)
    assert _exists(cache, edge) == (True, True)
    assert (report.entries, report.leftovers, report.freed_bytes) == (2, 0, 2000)
    # A shorter horizon takes the others too.
    report = prune(cache, older_than_days=1)
    assert report.entries == 4 and report.freed_bytes == 4000
    assert _exists(cache, recent) == _exists(cache, edge) == (False, False)
    assert prune(cache).entries == 0  # nothing left; shard dirs are kept, harmless


def test_conda_repodata_stores_and_shards_unused_for_the_period_go(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    stores = tmp_path / "conda-repodata"
    shards = tmp_path / "conda-shards" / "ab"
    stores.mkdir()
    shards.mkdir(parents=True)
    files = {
        "old-store": stores / f"{'1' * 64}.byname",
        "new-store": stores / f"{'2' * 64}.byname",
        "old-shard": shards / f"ab{'3' * 62}.msgpack.zst",
        "new-shard": shards / f"ab{'4' * 62}.msgpack.zst",
    }
    for path in files.values():
        path.write_bytes(b"x" * 100)
    _age(files["old-store"], 40)
    _age(files["old-shard"], 40)
    report = prune(cache, older_than_days=30)
    assert sorted(k for k, path in files.items() if path.exists()) == ["new-shard", "new-store"]
    assert (report.entries, report.freed_bytes) == (2, 200)


@pytest.mark.parametrize("days", [0, 0.01])
def test_entries_used_in_the_last_hour_are_never_pruned(tmp_path: Path, days: float) -> None:
    cache = Cache(tmp_path)
    busy, idle = _entry(cache, "busy"), _entry(cache, "idle")
    for sha, seconds in ((busy, 50 * 60), (idle, 70 * 60)):
        _age_entry(cache, sha, seconds / DAY)
    prune(cache, older_than_days=days)
    assert _exists(cache, busy) == (True, True)
    assert _exists(cache, idle) == (False, False)


def test_unpacked_trees_without_their_archive_go(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    orphan = _entry(cache, "orphan", archive=False)
    fresh_orphan = _entry(cache, "fresh-orphan", archive=False)
    _age_entry(cache, orphan, 2 / 24)  # two hours: no sync is using it
    report = prune(cache, older_than_days=30)
    assert _exists(cache, orphan) == (False, False)
    assert _exists(cache, fresh_orphan) == (False, True)  # maybe a sync's, just published
    assert report.entries == 1


def test_leftovers_of_killed_processes(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    sha = _entry(cache, "kept")
    entry = cache.root / "archives" / sha[:2] / sha
    dead_part = entry / ".kept-1.0-py3-none-any.whl.x1y2.part"
    live_part = entry / ".kept-1.0-py3-none-any.whl.z3w4.part"
    dead_part.write_bytes(b"p" * 300)
    live_part.write_bytes(b"p" * 300)
    _age(dead_part, 1)
    lone = cache.root / "archives" / "cd" / ("cd" * 32)
    lone.mkdir(parents=True)
    (lone / ".x.whl.abcd.part").write_bytes(b"p" * 200)
    _age(lone / ".x.whl.abcd.part", 1)
    _age(lone, 1)
    # This process's first work directory cleans what killed ones left: made before.
    fresh = cache.make_temp_dir("unpack")
    stale = abandoned_work_dir(cache.root)
    (stale / "half-written.py").write_bytes(b"s" * 100)
    report = prune(cache)
    assert not dead_part.exists() and live_part.exists()
    assert not lone.exists()
    assert not stale.exists() and fresh.exists()
    assert _exists(cache, sha) == (True, True)
    assert report.entries == 0
    assert report.leftovers == 3  # two partial downloads, one work directory
    assert report.freed_bytes == 300 + 200 + 100


def test_hardlinked_files_free_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    sha = _entry(cache, "linked")
    os.link(next(cache.unpacked_dir(sha).rglob("mod.py")), tmp_path / "in-an-env.py")
    _age_entry(cache, sha, 60)
    report = prune(cache)
    assert report.entries == 2 and report.freed_bytes == 1000  # the archive only
    assert (tmp_path / "in-an-env.py").read_bytes() == b"u" * 1000


def test_entry_marked_during_prune_is_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(tmp_path)
    sha = _entry(cache, "raced")
    _age_entry(cache, sha, 60)
    real = Cache.make_temp_dir

    def marked_meanwhile(self: Cache, purpose: str) -> Path:
        # A sync marks the entry after prune's scan, before its rename.
        if purpose == "prune":
            self.mark_used(sha)
        return real(self, purpose)

    monkeypatch.setattr(Cache, "make_temp_dir", marked_meanwhile)
    report = prune(cache)
    assert report.entries == 0
    assert _exists(cache, sha) == (True, True)
    assert (next(cache.unpacked_dir(sha).rglob("mod.py"))).read_bytes() == b"u" * 1000
    assert not any((tmp_path / "tmp").iterdir())


def test_bad_horizon(tmp_path: Path) -> None:
    for days in (-1.0, float("nan")):
        with pytest.raises(UsageError, match="--older-than"):
            prune(Cache(tmp_path), older_than_days=days)


# -- with real syncs ---------------------------------------------------------------------


def _archive_dir(cache: Cache, artifact: Artifact) -> Path:
    return cache.archive_path(artifact.sha256, artifact.filename).parent


def test_a_sync_marks_what_it_uses_and_the_no_op_sync_does_not(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    lock = fixture_lock(fixture_index_dir, BASIC)
    # Archives kept too: each kind of entry is marked, and pruned.
    options = SyncOptions(cache_dir=cache.root, cache_keep="both")
    prefix = tmp_path / "env"
    sync_environment(lock, lock_sha(lock), "default", prefix, options)
    artifacts = list(lock.artifacts.values())
    for a in artifacts:
        _age(_archive_dir(cache, a), 60)
        _age(cache.unpacked_dir(a.sha256), 60)
    report = sync_environment(lock, lock_sha(lock), "default", prefix, options)
    assert report.no_op
    assert prune(cache, older_than_days=90).entries == 0
    assert all(time.time() - _archive_dir(cache, a).stat().st_mtime > 59 * DAY for a in artifacts)
    # A real sync (another prefix) marks every entry it uses: prune keeps them all.
    sync_environment(lock, lock_sha(lock), "default", tmp_path / "env2", options)
    assert prune(cache, older_than_days=30).entries == 0
    for a in artifacts:
        assert _archive_dir(cache, a).exists() and cache.unpacked_dir(a.sha256).exists()
    # Unused for long: pruned, and the next sync fetches and unpacks again.
    for a in artifacts:
        _age(_archive_dir(cache, a), 60)
        _age(cache.unpacked_dir(a.sha256), 60)
    assert prune(cache, older_than_days=30).entries == 2 * len(artifacts)
    sync_environment(lock, lock_sha(lock), "default", tmp_path / "env3", options)
    assert verify_environment(tmp_path / "env3", lock, "default", lock.inputs.platforms[0]).ok
    # The environments still work: their files were hardlinks, not the cache's only copies.
    assert verify_environment(prefix, lock, "default", lock.inputs.platforms[0]).ok


def test_prune_while_syncs_run_leaves_the_cache_consistent(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    lock = fixture_lock(fixture_index_dir, BASIC)
    # Archives kept too: the offline sync at the end is served by the cache alone.
    options = SyncOptions(cache_dir=cache.root, jobs=2, cache_keep="both")
    stale = [_entry(cache, f"stale{i}") for i in range(20)]
    for sha in stale:
        _age_entry(cache, sha, 100)
    stop = threading.Event()
    reports = []

    def pruner() -> None:
        while not stop.is_set():
            reports.append(prune(cache, older_than_days=0))

    thread = threading.Thread(target=pruner)
    thread.start()
    try:
        for i in range(4):
            prefix = tmp_path / f"env{i}"
            sync_environment(lock, lock_sha(lock), "default", prefix, options)
            assert verify_environment(prefix, lock, "default", lock.inputs.platforms[0]).ok
            if i % 2:
                # Unpacked trees gone (as if pruned long ago): the next sync rebuilds them.
                for a in lock.artifacts.values():
                    cache.discard(cache.unpacked_dir(a.sha256))
    finally:
        stop.set()
        thread.join()
    assert reports and sum(r.entries for r in reports) == 2 * len(stale)
    assert all(_exists(cache, sha) == (False, False) for sha in stale)
    # Every entry the syncs used is whole: the cache alone (offline) serves another sync.
    artifacts = list(lock.artifacts.values())
    fetched = fetch_artifacts(artifacts, cache, offline=True)
    assert fetched.downloaded == ()
    sync_environment(
        lock,
        lock_sha(lock),
        "default",
        tmp_path / "offline",
        SyncOptions(cache_dir=cache.root, offline=True, cache_keep="both"),
    )
    assert not list((cache.root / "archives").rglob("*.part"))


def test_cli_prune(tmp_path: Path) -> None:
    cache = Cache(Path(os.environ["LOCKENV_CACHE_DIR"]))
    sha = _entry(cache, "cli")
    _age_entry(cache, sha, 40)
    result = lockenv(tmp_path, "cache", "prune")
    assert "pruned 2 cache entries" in result.stderr and "2.0 KiB freed" in result.stderr
    assert _exists(cache, sha) == (False, False)
    result = lockenv(tmp_path, "cache", "prune", "--older-than", "-3", check=False)
    assert result.returncode == 2 and "--older-than" in result.stderr


def test_clean_stale_temp_reports(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    stale = abandoned_work_dir(cache.root)
    (stale / "f").write_bytes(b"z" * 10)
    assert cache.clean_stale_temp() == (1, 10)
    assert cache_mod.Cache(tmp_path).clean_stale_temp() == (0, 0)
