"""The cache is trusted by hash, never by location.

Unpacked trees are sealed when made and checked before every use; an entry another user
made is never trusted; environments never share a writable inode with the cache, and
lockenv never writes through a link it made; an environment made with ``--link-mode
symlink`` notices when the cache it points into is gone.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from lockenv.cache import SEAL, check_entry
from lockenv.errors import UnsafePathError
from lockenv.lockfile import Lockfile
from lockenv.sync.materialize import is_up_to_date
from lockenv.sync.verify import verify_environment

from hostile import PLATFORM, PYTHON_XY, PayloadFile, Sandbox, conda_package, lock_of, sync
from materializer_support import artifact_for, build_wheel, lock_sha

unix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and owners")
SOURCE = b"def get(url):\n    return url\n"


def _wheel_lock(tmp_path: Path) -> Lockfile:
    wheel = build_wheel(tmp_path / "wheels", "requests", "2.0", {"requests/api.py": SOURCE})
    return lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY)


def _entry(box: Sandbox) -> Path:
    (entry,) = [p for p in (box.cache / "unpacked").glob("*/*") if "-u" not in p.name]
    return entry


def _spy_want_inodes(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What each sync from now on asks `prepare_artifacts` for: the seal check's inodes,
    or not."""
    from lockenv.sync import prepare

    asked: list[object] = []
    prepare_artifacts = prepare.prepare_artifacts

    def spying(*args: Any, **kwargs: Any) -> prepare.Prepared:
        asked.append(kwargs.get("want_inodes"))
        return prepare_artifacts(*args, **kwargs)

    monkeypatch.setattr(prepare, "prepare_artifacts", spying)
    return asked


def _entry_of(box: Sandbox, project: str) -> Path:
    """The shared cache entry of ``project``'s wheel."""
    (entry,) = [
        p
        for p in (box.cache / "unpacked").glob("*/*")
        if "-u" not in p.name and (p / "files" / project).is_dir()
    ]
    return entry


def _api(prefix: Path) -> Path:
    return prefix / "lib" / f"python{PYTHON_XY}" / "site-packages" / "requests" / "api.py"


@unix_only
def test_a_file_edited_in_the_cache_never_reaches_a_new_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Sandbox.make(tmp_path / "box")
    lock = _wheel_lock(tmp_path)
    sync(lock, box, prefix=tmp_path / "env1")
    cached = _entry(box) / "files" / "requests" / "api.py"
    os.chmod(cached, 0o644)
    with open(cached, "ab") as fh:
        fh.write(b"import os; os.system('echo pwned')\n")
    os.chmod(cached, 0o444)
    assert check_entry(_entry(box)) == "damaged"
    asked = _spy_want_inodes(monkeypatch)
    notes: list[str] = []
    from lockenv.sync.materialize import SyncOptions, sync_environment

    sync_environment(
        lock,
        lock_sha(lock),
        "default",
        box.prefix,
        SyncOptions(cache_dir=box.cache),
        progress=notes.append,
    )
    assert asked == [False]  # no spare tree to refresh: no inodes gathered
    assert _api(box.prefix).read_bytes() == SOURCE
    assert any("unpacking it again" in n for n in notes)
    assert check_entry(_entry(box)) == "ok"


@unix_only
def test_a_file_edited_in_the_cache_never_reaches_an_environment_made_from_its_spare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above when the sync refreshes the tree it kept (`lockenv.sync.reuse`), whose
    file is a link to the very inode edited: the seal check's inodes are gathered then
    (`lockenv.sync.prepare.prepare_artifacts`), and the edited one is never kept."""
    from lockenv.sync.reuse import is_spare, spare_path

    box = Sandbox.make(tmp_path / "box")
    lock = _wheel_lock(tmp_path)
    extra = build_wheel(tmp_path / "wheels", "idna", "3.0", {"idna/__init__.py": b""})
    idna = artifact_for(extra, extra.as_uri(), index=None)
    both = lock_of([*lock.artifacts.values(), idna], python=PYTHON_XY)
    sync(lock, box)
    sync(both, box)  # the tree with requests alone is kept as the spare
    assert is_spare(spare_path(box.prefix))
    cached = _entry_of(box, "requests") / "files" / "requests" / "api.py"
    edited = os.stat(cached).st_ino
    os.chmod(cached, 0o644)
    with open(cached, "ab") as fh:
        fh.write(b"import os; os.system('echo pwned')\n")
    os.chmod(cached, 0o444)
    asked = _spy_want_inodes(monkeypatch)
    sync(lock, box)
    assert asked == [True]  # a spare to refresh
    assert _api(box.prefix).read_bytes() == SOURCE
    assert os.stat(_api(box.prefix)).st_ino != edited


@unix_only
@pytest.mark.parametrize("change", [0o4755, 0o666, 0o644])
def test_a_chmod_through_an_environment_is_found_and_undone(tmp_path: Path, change: int) -> None:
    box = Sandbox.make(tmp_path / "box")
    lock = _wheel_lock(tmp_path)
    sync(lock, box, prefix=tmp_path / "env1")
    linked = _api(tmp_path / "env1")
    assert not os.stat(linked).st_mode & 0o222  # hardlinked files are read-only
    os.chmod(linked, change)  # the cache's inode: every environment sees it
    assert check_entry(_entry(box)) == "damaged"
    sync(lock, box)
    fresh = os.stat(_api(box.prefix))
    assert stat.S_IMODE(fresh.st_mode) == 0o444
    assert fresh.st_ino != os.stat(linked).st_ino


@unix_only
def test_a_cache_file_swapped_for_a_link_out_is_never_followed(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    pkg = conda_package(
        tmp_path / "pkgs", "p1", [PayloadFile(path="etc/a.conf", kind="hardlink", data=b"a=1\n")]
    )
    lock = lock_of([pkg])
    sync(lock, box, prefix=tmp_path / "env1")
    cached = _entry(box) / "pkg" / "etc" / "a.conf"
    cached.unlink()
    cached.symlink_to(box.outside / "keep.txt")
    for mode in ("hardlink", "copy"):
        prefix = tmp_path / f"env-{mode}"
        sync(lock, box, prefix=prefix, link_mode=mode)
        placed = prefix / "etc" / "a.conf"
        assert not placed.is_symlink() and placed.read_bytes() == b"a=1\n"


@unix_only
def test_an_entry_without_a_seal_is_made_again(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    lock = _wheel_lock(tmp_path)
    sync(lock, box, prefix=tmp_path / "env1")
    os.unlink(_entry(box) / SEAL)
    assert check_entry(_entry(box)) == "missing"
    sync(lock, box)
    assert check_entry(_entry(box)) == "ok"


@unix_only
def test_an_entry_someone_else_sealed_is_never_trusted(tmp_path: Path) -> None:
    """Another user of a shared cache rewrites a file and its seal consistently: the
    seal is theirs, so the sync makes and uses a private entry of its own."""
    box = Sandbox.make(tmp_path / "box")
    lock = _wheel_lock(tmp_path)
    sync(lock, box, prefix=tmp_path / "env1")
    entry = _entry(box)
    cached = entry / "files" / "requests" / "api.py"
    evil = b"import os; os.system('echo pwned')\n"
    os.chmod(cached, 0o644)
    cached.write_bytes(evil)
    os.chmod(cached, 0o444)
    seal = json.loads((entry / SEAL).read_text())
    import hashlib

    for row in seal["files"]:
        if row[0] == "files/requests/api.py":
            st = os.lstat(cached)
            row[2:7] = [
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                0o444,
                hashlib.sha256(evil).hexdigest(),
            ]
    os.chmod(entry / SEAL, 0o644)
    (entry / SEAL).write_text(json.dumps(seal))
    # Written by "someone else": a seal others can write (or owned by another user).
    os.chmod(entry / SEAL, 0o666)
    assert check_entry(entry) == "foreign"
    sync(lock, box)
    assert _api(box.prefix).read_bytes() == SOURCE
    private = entry.with_name(f"{entry.name}-u{os.geteuid()}")
    assert check_entry(private) == "ok"
    assert cached.read_bytes() == evil  # someone else's entry is left alone


@unix_only
@pytest.mark.parametrize(
    "path",
    [
        ".lockenv-state.json.tmp",
        ".lockenv-state.json",
        ".lockenv-tree.json",
        "conda-meta/p1-1.0-h_test_0.json",
    ],
)
def test_lockenv_never_writes_through_a_file_a_package_placed(tmp_path: Path, path: str) -> None:
    box = Sandbox.make(tmp_path / "box")
    pkg = conda_package(
        tmp_path / "pkgs", "p1", [PayloadFile(path=path, kind="hardlink", data=b"{}")]
    )
    with pytest.raises(UnsafePathError, match="lockenv's record"):
        sync(lock_of([pkg]), box)
    for cached in (box.cache / "unpacked").rglob(Path(path).name):
        assert cached.read_bytes() == b"{}"


@unix_only
def test_symlink_mode_notices_a_cleaned_cache(tmp_path: Path) -> None:
    import shutil

    box = Sandbox.make(tmp_path / "box")
    lock = _wheel_lock(tmp_path)
    sync(lock, box, link_mode="symlink")
    assert is_up_to_date(box.prefix, lock_sha(lock), "default")
    shutil.rmtree(box.cache)  # `lockenv cache clean`
    assert not is_up_to_date(box.prefix, lock_sha(lock), "default")
    assert not verify_environment(box.prefix, lock, "default", PLATFORM).ok
    report = sync(lock, box, link_mode="symlink")
    assert not report.no_op
    assert _api(box.prefix).read_bytes() == SOURCE
