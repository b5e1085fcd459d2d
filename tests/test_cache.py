"""The content-addressed cache: location, atomic publication, cleanup."""

from __future__ import annotations

import hashlib
import os
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
