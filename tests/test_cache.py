"""The content-addressed cache: location, atomic publication, cleanup."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lockenv import cache as cache_mod
from lockenv.cache import Cache, default_cache_dir, hash_file

from materializer_support import abandoned_work_dir


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"LOCKENV_CACHE_DIR": "/c/lockenv"}, "/c/lockenv"),
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/lockenv"),
        ("linux", {"XDG_CACHE_HOME": "relative/ignored"}, "~/.cache/lockenv"),
        ("linux", {}, "~/.cache/lockenv"),
        ("darwin", {}, "~/Library/Caches/lockenv"),
        ("darwin", {"LOCKENV_CACHE_DIR": "/c"}, "/c"),
        ("win32", {"LOCALAPPDATA": "/appdata"}, "/appdata/lockenv/Cache"),
    ],
)
def test_default_cache_dir(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for key in ("LOCKENV_CACHE_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(cache_mod.sys, "platform", platform)
    assert default_cache_dir() == Path(expected.replace("~", str(tmp_path)))


def test_default_cache_dir_follows_the_test_isolation() -> None:
    assert default_cache_dir() == Path(os.environ["LOCKENV_CACHE_DIR"])
    assert sys.platform  # the parametrized test restored it


def test_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello" * 1000)
    assert hash_file(path) == (hashlib.sha256(b"hello" * 1000).hexdigest(), 5000)


def test_entry_paths(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    sha = "ab" + "0" * 62
    assert cache.archive_path(sha, "x.whl") == tmp_path / "archives" / "ab" / sha / "x.whl"
    assert cache.unpacked_dir(sha) == tmp_path / "unpacked" / "ab" / sha


def test_publish_race_keeps_the_first_copy(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    final = cache.unpacked_dir("cd" + "1" * 62)
    first, second = cache.make_temp_dir("unpack"), cache.make_temp_dir("unpack")
    (first / "who").write_text("first")
    (second / "who").write_text("second")
    assert cache.publish_dir(first, final) is True
    assert cache.publish_dir(second, final) is False
    assert (final / "who").read_text() == "first"
    assert not second.exists()


def test_discard_and_clean_stale_temp(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    entry = cache.unpacked_dir("ef" + "2" * 62)
    (entry / "files").mkdir(parents=True)
    (entry / "files" / "a").write_text("x")
    os.chmod(entry / "files" / "a", 0o444)
    cache.discard(entry)
    assert not entry.exists()
    # Left by a killed process: removed at once, however young.
    abandoned = abandoned_work_dir(cache.root)
    # Held by a live one (this test): kept, however old.
    held = cache.make_temp_dir("unpack")
    # Without a lock (an older lockenv's): by age.
    stale, fresh = cache.root / "tmp" / "unpack-old", cache.root / "tmp" / "unpack-new"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 3 * 24 * 3600
    for path in (held, stale):
        os.utime(path, (old, old))
    cache.clean_stale_temp()
    assert not abandoned.exists() and not Path(f"{abandoned}.lock").exists()
    assert held.exists() and not stale.exists() and fresh.exists()
    cache.remove_temp_dir(held)
    assert sorted(p.name for p in (cache.root / "tmp").iterdir()) == ["unpack-new"]


# -- single flight ---------------------------------------------------------------------------

_SHA_A = "a" * 64
_SHA_B = "b" * 64

_HOLDER = """
import sys, time
from pathlib import Path
from lockenv.cache import Cache
with Cache(Path(sys.argv[1])).artifact_lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def _hold_in_another_process(root: Path, sha256: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), sha256], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX byte-range locks")
def test_artifact_lock_is_held_across_processes_and_dies_with_its_holder(
    tmp_path: Path,
) -> None:
    cache = Cache(tmp_path)
    holder = _hold_in_another_process(tmp_path, _SHA_A)
    try:
        with cache.artifact_lock(_SHA_A, wait=False) as held:
            assert held is False
        with cache.artifact_lock(_SHA_B, wait=False) as held:
            assert held is True  # an unrelated artifact is never held up
    finally:
        holder.kill()  # kill -9: the kernel drops its locks, nothing is left stale
        holder.wait()
    with cache.artifact_lock(_SHA_A, wait=False) as held:
        assert held is True
    assert [p.name for p in tmp_path.iterdir()] == [cache_mod.LOCK_FILE]  # one file for all


def test_artifact_lock_is_reentrant_and_excludes_other_threads(tmp_path: Path) -> None:
    import threading

    cache = Cache(tmp_path)
    seen: list[bool] = []
    with cache.artifact_lock(_SHA_A) as outer:
        with cache.artifact_lock(_SHA_A, wait=False) as inner:
            assert outer and inner

        def other_thread() -> None:
            with cache.artifact_lock(_SHA_A, wait=False) as held:
                seen.append(held)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen == [False]
    # Released by the outermost exit, for this process and for others.
    holder = _hold_in_another_process(tmp_path, _SHA_A)
    holder.kill()
    holder.wait()


def test_artifact_lock_without_lock_support_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def no_locks(*args: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with Cache(tmp_path / "nolocks").artifact_lock(_SHA_A, wait=False) as held:
        assert held is True  # correct without it (entries appear by rename), only not single-flight
