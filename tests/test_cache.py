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


# -- the seal check, file by file ---------------------------------------------------------


def _sealed_entry(root: Path) -> Path:
    """A sealed entry: files at its top and a few directories deep, and a symlink."""
    work = root / "entry"
    for rel, data in {
        "manifest.json": b"{}",
        "files/pkg/__init__.py": b"",
        "files/pkg/mod.py": b"x = 1\n",
        "files/pkg/sub/deep.py": b"y = 2\n",
        "files/pkg/sub/other.py": b"z = 3\n",
    }.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
        os.chmod(work / rel, 0o444)
    os.symlink("mod.py", work / "files/pkg/alias.py")
    cache_mod.seal_entry(work)
    return work


def _rewrite(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def _touch(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _swap_directory_for_a_link(entry: Path) -> None:
    """``files/pkg/sub`` becomes a symlink to a directory holding the very same inodes:
    nothing but the directory itself differs."""
    sub, twin = entry / "files/pkg/sub", entry.parent / "twin"
    twin.mkdir()
    for child in sub.iterdir():
        os.link(child, twin / child.name)
        child.unlink()
    sub.rmdir()
    os.symlink(twin, sub)


_TAMPERINGS = {
    "nothing": (lambda e: None, "ok"),
    "touched, same content": (lambda e: _touch(e / "files/pkg/sub/deep.py"), "ok"),
    "edited in place": (lambda e: _rewrite(e / "files/pkg/sub/deep.py", b"y = 3\n"), "damaged"),
    "edited, time put back": (
        lambda e: (_rewrite(e / "files/pkg/mod.py", b"x = 9\n"), _touch(e / "files/pkg/mod.py")),
        "damaged",
    ),
    "made writable": (lambda e: os.chmod(e / "files/pkg/sub/other.py", 0o666), "damaged"),
    "removed": (lambda e: os.unlink(e / "files/pkg/sub/other.py"), "damaged"),
    "manifest removed": (lambda e: os.unlink(e / "manifest.json"), "damaged"),
    "file swapped for a link": (
        lambda e: (
            os.unlink(e / "files/pkg/mod.py"),
            os.symlink("/etc/hostname", e / "files/pkg/mod.py"),
        ),
        "damaged",
    ),
    "link retargeted": (
        lambda e: (
            os.unlink(e / "files/pkg/alias.py"),
            os.symlink("sub/deep.py", e / "files/pkg/alias.py"),
        ),
        "damaged",
    ),
    "directory removed": (lambda e: __import__("shutil").rmtree(e / "files/pkg/sub"), "damaged"),
}


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks and modes as on POSIX")
@pytest.mark.parametrize("by_descriptor", [True, False], ids=["dir-fd", "paths"])
@pytest.mark.parametrize("tampering", sorted(_TAMPERINGS))
def test_check_entry_sees_each_tampering_whichever_way_it_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tampering: str, by_descriptor: bool
) -> None:
    """Through descriptors of each directory (`lockenv.cache._check_files`) or through
    whole paths (where descriptors are not available), the seal check tells the same."""
    monkeypatch.setattr(cache_mod, "_AT_DIRECTORY", by_descriptor)
    entry = _sealed_entry(tmp_path)
    tamper, expected = _TAMPERINGS[tampering]
    tamper(entry)
    inodes: dict[str, tuple[int, int]] = {}
    assert cache_mod.check_entry(entry, inodes) == expected
    if expected == "ok":
        assert set(inodes) == {
            f"{entry}{os.sep}{rel}"
            for rel in (
                "manifest.json",
                "files/pkg/__init__.py",
                "files/pkg/mod.py",
                "files/pkg/sub/deep.py",
                "files/pkg/sub/other.py",
            )
        }


@pytest.mark.skipif(not cache_mod._AT_DIRECTORY, reason="lstat takes no directory descriptor")
def test_check_entry_refuses_a_directory_swapped_for_a_link(tmp_path: Path) -> None:
    """A sealed tree's directories are real ones: one made a symlink is a change, even to
    a directory holding the very same files (the whole-path walk followed it)."""
    entry = _sealed_entry(tmp_path)
    _swap_directory_for_a_link(entry)
    assert cache_mod.check_entry(entry) == "damaged"
