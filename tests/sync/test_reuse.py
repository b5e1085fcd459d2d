"""The spare tree: kept by a sync, refreshed by the next into exactly a fresh build."""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockenv.lockfile import Lockfile, write_lockfile
from lockenv.progress import format_size
from lockenv.sync.materialize import SyncOptions, _spare_staging, remove_spare, sync_environment
from lockenv.sync.pypi.wheel import InstalledDist, WheelInstall
from lockenv.sync.reuse import TREE_RECORD, is_spare, refresh_tree, spare_path
from lockenv.sync.verify import verify_environment

from cli_support import lockenv
from materializer_support import (
    PYTHON_XY,
    _no_leftovers,
    fixture_lock,
    kill_sync_at,
    lock_sha,
    tree_snapshot,
)

OLD = ("alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl", "clicky-8.0-py3-none-any.whl")
NEW = (
    "alpha-2.0-py3-none-any.whl",
    "beta-1.0-py3-none-any.whl",
    "clicky-8.0-py3-none-any.whl",
    "delta-1.1-py3-none-any.whl",
)
SP = f"lib/python{PYTHON_XY}/site-packages"


@pytest.fixture
def old_and_new(fixture_index_dir: Path) -> tuple[Lockfile, Lockfile]:
    """The locks of the fixture index's OLD and NEW package sets."""
    return fixture_lock(fixture_index_dir, OLD), fixture_lock(fixture_index_dir, NEW)


def _sync(lock: Lockfile, prefix: Path, **options: object) -> bool:
    report = sync_environment(lock, lock_sha(lock), "default", prefix, SyncOptions(**options))  # type: ignore[arg-type]
    verified = verify_environment(prefix, lock, "default", _platform())
    assert verified.ok, verified.to_json()
    return report.no_op


def _platform() -> str:
    from lockenv.platforms import current_platform

    return current_platform()


def _shared_writable(prefix: Path) -> list[str]:
    """Files of the environment that share their inode and can be written."""
    found = []
    for root, _dirs, files in os.walk(prefix):
        for name in files:
            st_ = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(st_.st_mode) and st_.st_nlink > 1 and st_.st_mode & 0o222:
                found.append(os.path.relpath(os.path.join(root, name), prefix))
    return found


def test_a_change_keeps_the_replaced_tree_and_the_next_refreshes_it(
    tmp_path: Path, old_and_new: tuple[Lockfile, Lockfile]
) -> None:
    old, new = old_and_new
    prefix = tmp_path / "env"
    _sync(old, prefix)
    assert not spare_path(prefix).exists()  # nothing was replaced
    first = os.stat(prefix).st_ino
    _sync(new, prefix)
    assert os.stat(spare_path(prefix)).st_ino == first  # the old tree, kept

    # What the spare went through while it was live, and what a user may do to it.
    spare = spare_path(prefix)
    site = spare / SP
    (site / "alpha" / "__pycache__").mkdir()
    (site / "alpha" / "__pycache__" / "x.cpython.pyc").write_bytes(b"junk")
    (site / "byhand-1.0.dist-info").mkdir()
    (site / "byhand-1.0.dist-info" / "METADATA").write_text("Name: byhand\n")
    (site / "byhand.py").write_text("x = 1\n")
    record = site / "beta-1.0.dist-info" / "RECORD"
    record.write_bytes(record.read_bytes() + b"extra,,\n")  # same file, other bytes
    installer = site / "clicky-8.0.dist-info" / "INSTALLER"
    os.link(installer, tmp_path / "second-name")  # right bytes, but shared
    linked = next(p for p in (site / "beta").rglob("*") if p.is_file())
    copy = linked.read_bytes()
    linked.unlink()
    linked.write_bytes(copy)  # right bytes, but a copy, not the cache's file
    (spare / "bin" / "python").unlink()
    second = os.stat(prefix).st_ino

    assert not _sync(old, prefix)
    assert os.stat(prefix).st_ino == first  # the spare, refreshed, is the environment
    assert os.stat(spare_path(prefix)).st_ino == second
    refreshed = tree_snapshot(prefix)
    assert _shared_writable(prefix) == []
    assert os.stat(linked).st_nlink > 1  # a link to the cache again
    assert os.path.samestat(os.stat(prefix / linked.relative_to(spare)), os.stat(linked))

    # A build from nothing makes the same tree.
    shutil.rmtree(prefix)
    shutil.rmtree(spare_path(prefix))
    _sync(old, prefix)
    assert tree_snapshot(prefix) == refreshed
    _no_leftovers(prefix)


def test_spare_is_kept_only_for_hardlinked_environments(
    tmp_path: Path, old_and_new: tuple[Lockfile, Lockfile]
) -> None:
    old, new = old_and_new
    prefix = tmp_path / "env"
    _sync(old, prefix, link_mode="copy")
    _sync(new, prefix, link_mode="copy")
    assert not spare_path(prefix).exists()  # a copy costs bytes: removed
    _sync(old, prefix, compile_bytecode=True)
    assert not spare_path(prefix).exists()  # bytecode is compiled afresh: no reuse either
    _no_leftovers(prefix)


def test_a_directory_at_the_spares_name_that_no_sync_kept_is_left_alone(
    tmp_path: Path, old_and_new: tuple[Lockfile, Lockfile]
) -> None:
    old, new = old_and_new
    prefix = tmp_path / "env"
    mine = spare_path(prefix)
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    _sync(old, prefix)
    _sync(new, prefix)
    _sync(old, prefix)
    assert os.listdir(mine) == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine"
    _no_leftovers(prefix)


@pytest.mark.parametrize("stage", ["staging:created", "staging:refreshed", "staging:linked#2"])
def test_killed_while_refreshing_the_spare_leaves_the_live_environment(
    tmp_path: Path, old_and_new: tuple[Lockfile, Lockfile], stage: str
) -> None:
    old, new = old_and_new
    prefix = tmp_path / "envs" / "default"
    _sync(old, prefix)
    _sync(new, prefix)
    live = tree_snapshot(prefix)
    old_path = tmp_path / "old.lock"
    write_lockfile(old, old_path)
    cache = Path(os.environ["LOCKENV_CACHE_DIR"])  # warm: the sync goes straight to staging
    kill_sync_at(old_path, prefix, stage, cache_dir=cache)
    assert tree_snapshot(prefix) == live
    assert not spare_path(prefix).exists()  # taken by the killed sync, under a staging name
    _sync(old, prefix)  # removes the killed sync's staging tree, builds afresh
    _sync(new, prefix)
    _no_leftovers(prefix)


# -- refresh_tree, on its own ---------------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "c"])
_PATHS = st.lists(_NAMES, min_size=1, max_size=3).map("/".join)


def _plan(entries: list[tuple[str, str | bytes, bool]]) -> WheelInstall:
    dirs = sorted({dest.rpartition("/")[0] for dest, _s, _x in entries} - {""})
    dist = InstalledDist(dist_info="p-1.dist-info", name="p", version="1", files=len(entries))
    return WheelInstall(dist=dist, dirs=tuple(dirs), entries=tuple(entries))


def _apply(root: Path, plan: WheelInstall, kept: set[str]) -> None:
    """What the sync does after a refresh: place what was not kept, in order."""
    for dest, source, executable in plan.entries:
        if dest in kept:
            continue
        path = root / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        if isinstance(source, str):
            os.link(source, path)
        else:
            path.write_bytes(source)
            path.chmod(0o755 if executable else 0o644)


def _files(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs:
            if not os.path.islink(os.path.join(base, name)):
                out[os.path.relpath(os.path.join(base, name), root)] = (0, 0, b"a directory")
        for name in files + [d for d in dirs if os.path.islink(os.path.join(base, d))]:
            path = os.path.join(base, name)
            st_ = os.lstat(path)
            data = (
                os.readlink(path).encode() if stat.S_ISLNK(st_.st_mode) else Path(path).read_bytes()
            )
            out[os.path.relpath(path, root)] = (
                st_.st_mode,
                st_.st_ino if st_.st_nlink > 1 else 0,
                data,
            )
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    wanted=st.dictionaries(
        _PATHS, st.tuples(st.sampled_from(["c1", "c2", b"x", b"y"]), st.booleans()), max_size=6
    ),
    present=st.dictionaries(
        _PATHS, st.sampled_from(["c1", "c2", b"x", b"y", "dir", "link", "shared"]), max_size=6
    ),
)
def test_refresh_then_placing_the_rest_makes_the_fresh_tree(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    wanted: dict[str, tuple[str | bytes, bool]],
    present: dict[str, str | bytes],
) -> None:
    from lockenv.sync import link as link_mod

    # What goes is removed by threads (as in a large environment), from two files on.
    monkeypatch.setattr(link_mod, "_PARALLEL_FROM", 2)
    monkeypatch.setattr(link_mod, "_BATCH", 1)
    monkeypatch.setattr(link_mod.os, "cpu_count", lambda: 4)
    work = tmp_path_factory.mktemp("refresh")
    cache = work / "cache"
    cache.mkdir()
    for name in ("c1", "c2"):
        (cache / name).write_bytes(name.encode())
        (cache / name).chmod(0o444)
    # A file and a directory cannot share a path: keep the wanted entries that can be.
    entries: list[tuple[str, str | bytes, bool]] = []
    taken: set[str] = set()
    for dest, (source, executable) in sorted(wanted.items()):
        parents = {dest.rsplit("/", i)[0] for i in range(1, dest.count("/") + 1)}
        if parents & taken or any(t.startswith(dest + "/") for t in taken):
            continue
        taken.add(dest)
        src = str(cache / source) if isinstance(source, str) else source
        entries.append((dest, src, executable))
    plan = _plan(entries)

    fresh, spare = work / "fresh", work / "spare"
    fresh.mkdir()
    _apply(fresh, plan, set())
    spare.mkdir()
    for dest, what in sorted(present.items()):
        path = spare / dest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                continue
            if what == "dir":
                path.mkdir()
            elif what == "link":
                path.symlink_to("elsewhere")
            elif what == "shared":
                path.write_bytes(b"x")
                path.chmod(0o644)
                os.link(path, work / f"other-{len(os.listdir(work))}")
            elif isinstance(what, str):
                os.link(cache / what, path)
            else:
                path.write_bytes(what)
                path.chmod(0o644)
        except (FileExistsError, NotADirectoryError):
            continue  # a file where this path needs a directory

    refreshed = refresh_tree(spare, [None], [plan].__getitem__, [])
    assert refreshed is not None
    _apply(spare, plan, refreshed.files)
    assert _files(spare) == _files(fresh)


# -- prune and clean: spare trees keep cache files on disk ---------------------------------


def _with_spare(prefix: Path, index: Path) -> tuple[Lockfile, Path]:
    """An environment synced from OLD then NEW (so with OLD's tree as its spare); the OLD
    lock and the prefix."""
    old = fixture_lock(index, OLD)
    _sync(old, prefix)
    _sync(fixture_lock(index, NEW), prefix)
    return old, prefix


def _age_cache(cache: Path, days: float) -> None:
    then = time.time() - days * 86400
    for top in ("archives", "unpacked"):
        for shard in (cache / top).iterdir():
            for entry in shard.iterdir():
                os.utime(entry, (then, then))


def test_cache_prune_removes_spare_trees_and_says_what_they_kept(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    old, prefix = _with_spare(tmp_path / "env", fixture_index_dir)
    _, gone = _with_spare(tmp_path / "gone", fixture_index_dir)
    new = fixture_lock(fixture_index_dir, NEW)
    shutil.rmtree(gone)  # its spare stays behind, hidden: still linking alpha 1.0
    spare, gone_spare = spare_path(prefix), spare_path(gone)
    alpha_old = next((spare / SP / "alpha").rglob("*.py"))
    assert os.stat(alpha_old).st_nlink == 3  # the cache and the two spares
    cache = Path(os.environ["LOCKENV_CACHE_DIR"])

    result = lockenv(tmp_path, "cache", "prune", "--dry-run")
    lines = sorted(line for line in result.stdout.splitlines() if "spare" in line)
    assert [line.split("  ")[0] for line in lines] == sorted(
        f"would remove {path}" for path in (spare, gone_spare)
    )
    assert all(re.fullmatch(r"\d+(\.\d)? [KMG]?i?B", line.split("  ")[1]) for line in lines)
    assert "2 spare trees of environments" in result.stderr
    assert "would be removed" in result.stderr
    assert is_spare(spare) and is_spare(gone_spare)  # a dry run removes nothing

    _age_cache(cache, 40)  # alpha 1.0 is used by no environment now
    sha = _sha(old, "alpha")
    entry = cache / "unpacked" / sha[:2] / sha
    entry_bytes = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
    result = lockenv(tmp_path, "-v", "cache", "prune")
    assert "2 spare trees of environments" in result.stderr and "removed" in result.stderr
    assert not spare.exists() and not gone_spare.exists()
    assert not entry.exists()
    # The spares went first: nothing links alpha 1.0's unpacked files any more, so
    # removing its tree freed their bytes (and says so).
    (removed,) = [x for x in result.stderr.splitlines() if f"removed unpacked/{sha[:2]}/{sha}" in x]
    assert removed.split("  ")[1] == format_size(entry_bytes)
    assert verify_environment(prefix, new, "default", _platform()).ok
    _sync(old, prefix)  # built afresh: no spare to refresh
    _no_leftovers(prefix)


def _sha(lock: Lockfile, name: str) -> str:
    return next(a.sha256 for a in lock.artifacts.values() if a.name == name)


def test_cache_clean_removes_spare_trees(tmp_path: Path, fixture_index_dir: Path) -> None:
    _old, prefix = _with_spare(tmp_path / "env", fixture_index_dir)
    mine = spare_path(tmp_path / "other")
    mine.mkdir()  # a directory with a spare's name that no sync kept
    result = lockenv(tmp_path, "cache", "clean")
    assert "and 1 spare tree" in result.stderr
    assert not spare_path(prefix).exists() and mine.is_dir()
    assert not Path(os.environ["LOCKENV_CACHE_DIR"]).exists()


def test_a_spare_is_left_alone_while_a_sync_of_its_environment_runs(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    import fcntl

    _old, prefix = _with_spare(tmp_path / "env", fixture_index_dir)
    fd = os.open(prefix.parent / f".{prefix.name}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running sync holds
        assert not remove_spare(prefix)
        assert is_spare(spare_path(prefix))
    finally:
        os.close(fd)
    assert remove_spare(prefix)
    assert not remove_spare(prefix)  # none left
    assert not os.path.lexists(spare_path(prefix))
    _no_leftovers(prefix)


def test_a_spare_removal_cut_short_is_never_taken_for_an_environment(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    old, prefix = _with_spare(tmp_path / "env", fixture_index_dir)
    staging = _spare_staging(prefix)  # remove_spare's first step, then killed
    assert staging is not None and staging.name.startswith(f".{prefix.name}.staging-")
    shutil.rmtree(staging / SP / "beta")
    shutil.rmtree(prefix)  # the environment is gone too: the next sync recovers
    _sync(old, prefix)  # builds afresh (the partial tree has no state file)
    assert not staging.exists()
    _no_leftovers(prefix)


# -- the tree's record: directories not listed, and what that must not miss -------------


@pytest.fixture
def settled_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tree's record written once the filesystem's clock has moved past the last
    change of every directory of the tree, so that none is "racy" (a sync of these tiny
    fixtures can make a whole tree within one clock tick, and then no directory could be
    vouched for, hiding what the tests below are about).  Waits on the clock itself (a
    probe file's mtime), not a guessed sleep."""
    from lockenv.sync import reuse

    write = reuse.write_tree_record

    def settled(root: Path, *args: object, **kwargs: object) -> None:
        last = max(os.lstat(base).st_ctime_ns for base, _d, _f in os.walk(root))
        probe = root.parent / f"{root.name}.probe"
        while True:
            probe.write_bytes(b"")
            ticked = os.lstat(probe).st_mtime_ns > last
            probe.unlink()
            if ticked:
                break
        write(root, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reuse, "write_tree_record", settled)


def _listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The directories `refresh_tree` lists (from now on), as paths."""
    import sys

    listed: list[str] = []
    scandir = os.scandir

    def spy(path: str) -> object:
        if sys._getframe(1).f_code is refresh_tree.__code__:
            listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    return listed


def _seen(listed: list[str], prefix: Path) -> set[str]:
    """The tree-relative paths of ``listed`` (made under a staging name beside ``prefix``)."""
    return {os.path.relpath(p, prefix.parent).partition("/")[2] for p in listed}


def _spare_with_record(prefix: Path, old: Lockfile, new: Lockfile) -> Path:
    """Sync OLD, NEW, OLD, NEW: the spare is then OLD's tree made by a sync that checked
    every cache entry it links (so its record vouches for all of its packages)."""
    for lock in (old, new, old, new):
        _sync(lock, prefix)
    return spare_path(prefix)


@pytest.fixture
def recorded(
    tmp_path: Path, old_and_new: tuple[Lockfile, Lockfile], settled_records: None
) -> tuple[Lockfile, Path, Path]:
    """OLD's lock, and an environment whose spare is OLD's tree with a record vouching
    for all of its packages (`_spare_with_record`), and that spare."""
    old, new = old_and_new
    prefix = tmp_path / "env"
    return old, prefix, _spare_with_record(prefix, old, new)


def _same_as_fresh(prefix: Path, lock: Lockfile) -> None:
    """The environment at ``prefix`` is the tree a sync of ``lock`` builds from nothing."""
    refreshed = tree_snapshot(prefix)
    shutil.rmtree(prefix)
    shutil.rmtree(spare_path(prefix), ignore_errors=True)
    _sync(lock, prefix)
    assert tree_snapshot(prefix) == refreshed
    _no_leftovers(prefix)


def test_a_refresh_lists_only_what_the_record_cannot_vouch_for(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, prefix, spare = recorded
    first = os.stat(spare).st_ino
    assert (spare / TREE_RECORD).is_file()
    listed = _listed(monkeypatch)

    _sync(old, prefix)  # the spare (OLD's tree, untouched) refreshed into OLD
    assert os.stat(prefix).st_ino == first
    seen = _seen(listed, prefix)
    # The root and the skeleton's directories (written again) are listed; the packages',
    # all unchanged, are not.
    assert seen == {"", "bin"}
    assert _shared_writable(prefix) == []
    _same_as_fresh(prefix, old)


def test_a_refresh_into_a_change_lists_the_changed_packages_directories(
    recorded: tuple[Lockfile, Path, Path],
    fixture_index_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _old, prefix, _spare = recorded
    # OLD with alpha 1.1 for 1.0; beta and clicky as they were.
    mid = fixture_lock(fixture_index_dir, ("alpha-1.1-py3-none-any.whl", *OLD[1:]))
    listed = _listed(monkeypatch)

    _sync(mid, prefix)  # the spare, OLD's tree, refreshed into MID
    seen = _seen(listed, prefix)
    assert f"{SP}/alpha" in seen  # the changed package's directories are compared
    assert not any(rel.startswith((f"{SP}/beta", f"{SP}/clicky")) for rel in seen)
    assert _shared_writable(prefix) == []
    _same_as_fresh(prefix, mid)


def _edit_in_place(path: Path, data: bytes) -> None:
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(data)
    os.chmod(path, mode)


def _add(spare: Path) -> None:
    (spare / SP / "beta" / "byhand.py").write_text("x = 1\n")


def _add_then_set_mtime_back(spare: Path) -> None:
    before = os.lstat(spare / SP / "beta")
    _add(spare)
    os.utime(spare / SP / "beta", ns=(before.st_atime_ns, before.st_mtime_ns))


def _remove(spare: Path) -> None:
    next((spare / SP / "beta").glob("*.py")).unlink()


def _replace(spare: Path) -> None:
    target = next((spare / SP / "beta").glob("*.py"))
    other = spare / SP / "beta" / "other.tmp"
    other.write_bytes(b"# not the cache's file\n")
    os.replace(other, target)


def _rename_file(spare: Path) -> None:
    target = next((spare / SP / "beta").glob("*.py"))
    target.rename(target.with_name("renamed.py"))


def _rename_directory(spare: Path) -> None:
    (spare / SP / "clicky").rename(spare / SP / "clicky_moved")


def _directory_for_a_symlink(spare: Path) -> None:
    elsewhere = spare.parent / "elsewhere"
    shutil.copytree(spare / SP / "beta", elsewhere, copy_function=os.link)
    shutil.rmtree(spare / SP / "beta")
    (spare / SP / "beta").symlink_to(elsewhere)


def _edit_a_linked_file(spare: Path) -> None:
    # The file is the cache's inode: the cache entry changes too, which its seal shows.
    _edit_in_place(next((spare / SP / "beta").glob("*.py")), b"raise SystemExit('edited')\n")


def _edit_a_written_file(spare: Path) -> None:
    _edit_in_place(spare / SP / "beta-1.0.dist-info" / "INSTALLER", b"nobody")


def _edit_a_record(spare: Path) -> None:
    record = spare / SP / "clicky-8.0.dist-info" / "RECORD"
    _edit_in_place(record, record.read_bytes()[:-8] + b"tampered")


def _link_a_written_file_elsewhere(spare: Path) -> None:
    os.link(spare / SP / "beta-1.0.dist-info" / "INSTALLER", spare.parent / "second-name")


def _edit_a_record_keeping_its_size_and_mtime(spare: Path) -> None:
    # Only the ctime, which cannot be set by hand, tells this from the file as written.
    record = spare / SP / "beta-1.0.dist-info" / "RECORD"
    before = os.lstat(record)
    data = record.read_bytes()
    _edit_in_place(record, data[:-8] + b"tampered")
    os.utime(record, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.lstat(record).st_size == before.st_size


def _replace_a_written_file(spare: Path) -> None:
    installer = spare / SP / "beta-1.0.dist-info" / "INSTALLER"
    other = installer.with_name("other.tmp")
    other.write_bytes(b"nobody\n")
    os.replace(other, installer)


def _rewrite_a_seal(spare: Path) -> None:
    # The same bytes in a new seal: the entry's identity is not the one recorded, so
    # what the tree links of it is looked at again (the seal check still passes).
    cache = Path(os.environ["LOCKENV_CACHE_DIR"])
    linked = next((spare / SP / "beta").glob("*.py"))
    (cached,) = [p for p in cache.rglob("*.py") if os.path.samestat(os.lstat(p), os.lstat(linked))]
    seal = next(d / "seal.json" for d in cached.parents if (d / "seal.json").exists())
    data = seal.read_bytes()
    seal.unlink()
    seal.write_bytes(data)
    seal.chmod(0o444)


@pytest.mark.parametrize(
    "tamper",
    [
        _add,
        _add_then_set_mtime_back,
        _remove,
        _replace,
        _rename_file,
        _rename_directory,
        _directory_for_a_symlink,
        _edit_a_linked_file,
        _edit_a_written_file,
        _edit_a_record,
        _link_a_written_file_elsewhere,
        _edit_a_record_keeping_its_size_and_mtime,
        _replace_a_written_file,
        _rewrite_a_seal,
    ],
)
def test_what_the_record_vouches_for_is_still_checked(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch, tamper: object
) -> None:
    old, prefix, spare = recorded
    beta = next((spare / SP / "beta").glob("*.py")).read_bytes()
    tamper(spare)  # type: ignore[operator]
    listed = _listed(monkeypatch)

    _sync(old, prefix)  # refreshes the tampered spare into OLD (and verifies it)
    seen = _seen(listed, prefix)
    assert f"{SP}/alpha" not in seen  # the record was used for what was not touched
    assert next((prefix / SP / "beta").glob("*.py")).read_bytes() == beta
    assert _shared_writable(prefix) == []
    _same_as_fresh(prefix, old)


def test_a_cache_file_copied_back_is_linked_again_not_kept(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, prefix, spare = recorded
    linked = next((spare / SP / "beta").glob("*.py"))
    cache = Path(os.environ["LOCKENV_CACHE_DIR"])
    (cached,) = [p for p in cache.rglob("*.py") if os.path.samestat(os.lstat(p), os.lstat(linked))]
    # The same bytes and mode under a new inode: the seal check accepts the file (it
    # hashes it), but the spare's link is to the old inode, which no seal covers now.
    copy = cached.with_name("copy.tmp")
    copy.write_bytes(cached.read_bytes())
    os.chmod(copy, stat.S_IMODE(os.lstat(cached).st_mode))
    os.replace(copy, cached)
    listed = _listed(monkeypatch)

    _sync(old, prefix)
    assert f"{SP}/alpha" not in _seen(listed, prefix)  # the record was used
    assert os.path.samestat(os.lstat(prefix / SP / "beta" / linked.name), os.lstat(cached))
    _same_as_fresh(prefix, old)


def test_a_directory_changed_within_the_records_clock_tick_is_listed(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    old, prefix, spare = recorded
    _add(spare)
    # A record that gives beta's directory its times as they are now (as if the file
    # had been added just after the directory was looked at, in the same clock tick as
    # the record was written): the directory's ctime is not older than the record.
    beta = spare / SP / "beta"
    st_ = os.lstat(beta)
    record = spare / TREE_RECORD
    data = json.loads(record.read_bytes())
    for row in data["dirs"]:
        if row[0] == f"{SP}/beta":
            row[1:] = [st_.st_ino, st_.st_mtime_ns, st_.st_ctime_ns]
    os.chmod(record, 0o644)
    record.write_text(json.dumps(data))
    os.chmod(record, 0o444)
    os.utime(record, ns=(st_.st_ctime_ns, st_.st_ctime_ns))
    listed = _listed(monkeypatch)

    _sync(old, prefix)
    assert f"{SP}/beta" in _seen(listed, prefix)
    assert not (prefix / SP / "beta" / "byhand.py").exists()
    _same_as_fresh(prefix, old)


@pytest.mark.parametrize("damage", ["garbage", "missing", "another format"])
def test_a_record_that_cannot_be_read_means_listing_everything(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    old, prefix, spare = recorded
    _add(spare)
    record = spare / TREE_RECORD
    os.chmod(record, 0o644)
    if damage == "missing":
        record.unlink()
    else:
        record.write_text("{not json" if damage == "garbage" else '{"format": 99}')
    listed = _listed(monkeypatch)

    _sync(old, prefix)
    assert f"{SP}/alpha" in _seen(listed, prefix)
    assert not (prefix / SP / "beta" / "byhand.py").exists()
    _same_as_fresh(prefix, old)


def _planned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the wheels planned (from now on)."""
    from lockenv.sync.pypi import wheel

    planned: list[str] = []
    plan = wheel.plan_wheel_install

    def spy(unpacked: wheel.UnpackedWheel, *args: object, **kwargs: object) -> WheelInstall:
        planned.append(unpacked.name)
        return plan(unpacked, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(wheel, "plan_wheel_install", spy)
    return planned


def test_packages_the_record_stands_for_are_not_even_planned(
    recorded: tuple[Lockfile, Path, Path],
    fixture_index_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, prefix, _spare = recorded
    mid = fixture_lock(fixture_index_dir, ("alpha-1.1-py3-none-any.whl", *OLD[1:]))
    planned = _planned(monkeypatch)

    _sync(old, prefix)  # the spare, OLD's tree, refreshed into OLD
    # clicky's launcher is in bin/, which holds the skeleton (written again each time):
    # never vouched for, so clicky is planned, to compare its launcher.
    assert planned == ["clicky"]
    planned.clear()
    _sync(mid, prefix)  # NEW's tree, with its record, refreshed into MID
    assert planned == ["alpha", "clicky"]  # beta: in place as recorded
    _same_as_fresh(prefix, mid)


def test_a_package_asked_for_differently_is_planned_again(
    recorded: tuple[Lockfile, Path, Path],
    fixture_index_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _old, prefix, spare = recorded
    # OLD's very wheels and cache entries, beta asked for and alpha not: their REQUESTED
    # files differ from the tree's, which nothing in the cache or the tree says.
    asked = fixture_lock(fixture_index_dir, OLD, requested=("beta", "clicky"))
    assert (spare / SP / "alpha-1.0.dist-info" / "REQUESTED").exists()
    planned = _planned(monkeypatch)

    _sync(asked, prefix)
    assert sorted(planned) == ["alpha", "beta", "clicky"]
    assert not (prefix / SP / "alpha-1.0.dist-info" / "REQUESTED").exists()
    assert (prefix / SP / "beta-1.0.dist-info" / "REQUESTED").exists()
    _same_as_fresh(prefix, asked)


def test_a_written_file_changed_within_the_records_clock_tick_is_compared(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    old, prefix, spare = recorded
    installer = spare / SP / "beta-1.0.dist-info" / "INSTALLER"
    _edit_in_place(installer, b"nobody")
    # A record that gives the file its identity as it is now (as if it had been written
    # just after it was looked at, in the record's clock tick): its ctime is not older
    # than the record.
    st_ = os.lstat(installer)
    record = spare / TREE_RECORD
    data = json.loads(record.read_bytes())
    rel = f"{SP}/beta-1.0.dist-info/INSTALLER"
    for package in data["packages"]:
        for row in package[2]:  # key, directories, files written, RECORD's sha256
            if row[0] == rel:
                row[1:] = [st_.st_ino, st_.st_size, st_.st_mtime_ns, st_.st_ctime_ns]
    os.chmod(record, 0o644)
    record.write_text(json.dumps(data))
    os.chmod(record, 0o444)
    os.utime(record, ns=(st_.st_ctime_ns, st_.st_ctime_ns))
    planned = _planned(monkeypatch)

    _sync(old, prefix)
    assert "beta" in planned
    assert (prefix / SP / "beta-1.0.dist-info" / "INSTALLER").read_bytes() == b"lockenv\n"
    _same_as_fresh(prefix, old)


def test_a_directory_reached_through_a_symlink_is_not_taken_as_recorded(
    recorded: tuple[Lockfile, Path, Path],
) -> None:
    old, prefix, spare = recorded
    # site-packages moved away and a symlink left in its place: its subdirectories are
    # as recorded when looked at through the link, but the tree does not hold them.
    moved = spare.parent / "moved-site-packages"
    os.rename(spare / SP, moved)
    (spare / SP).symlink_to(moved)

    _sync(old, prefix)
    assert not (prefix / SP).is_symlink()
    assert _shared_writable(prefix) == []
    _same_as_fresh(prefix, old)


def test_a_file_copied_for_want_of_a_hardlink_is_never_recorded_as_one(
    recorded: tuple[Lockfile, Path, Path],
    fixture_index_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    _old, prefix, _spare = recorded
    _new = fixture_lock(fixture_index_dir, NEW)
    mid = fixture_lock(fixture_index_dir, ("alpha-1.1-py3-none-any.whl", *OLD[1:]))
    link = os.link

    def at_its_limit(src: object, dst: object, *args: object, **kwargs: object) -> None:
        if str(src).endswith("alpha/__init__.py"):
            raise OSError(errno.EMLINK, "Too many links")
        link(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(os, "link", at_its_limit)
        _sync(mid, prefix)  # alpha 1.1's file copied, not linked
    copied = prefix / SP / "alpha" / "__init__.py"
    assert os.lstat(copied).st_nlink == 1
    assert not (prefix / TREE_RECORD).exists()
    _edit_in_place(copied, b"raise SystemExit('edited')\n")  # nothing else sees that
    # MID's tree, with the edited copy, is now the spare, refreshed into MID again.
    for lock in (_new, mid):
        report = sync_environment(lock, lock_sha(lock), "default", prefix, SyncOptions())
        assert not report.no_op
    assert b"edited" not in copied.read_bytes()
    _same_as_fresh(prefix, mid)


def _copy_back_a_cache_file(spare: Path) -> None:
    cache = Path(os.environ["LOCKENV_CACHE_DIR"])
    linked = next((spare / SP / "beta").glob("*.py"))
    (cached,) = [p for p in cache.rglob("*.py") if os.path.samestat(os.lstat(p), os.lstat(linked))]
    copy = cached.with_name("copy.tmp")
    copy.write_bytes(cached.read_bytes())
    os.chmod(copy, stat.S_IMODE(os.lstat(cached).st_mode))
    os.replace(copy, cached)


@pytest.mark.parametrize("change", [_rewrite_a_seal, _copy_back_a_cache_file])
def test_a_package_whose_cache_entry_is_not_as_recorded_is_planned_again(
    recorded: tuple[Lockfile, Path, Path], monkeypatch: pytest.MonkeyPatch, change: object
) -> None:
    old, prefix, spare = recorded
    change(spare)  # type: ignore[operator]
    planned = _planned(monkeypatch)

    _sync(old, prefix)  # the seal check passes; the entry's identity is another
    assert "beta" in planned
    assert "alpha" not in planned
    _same_as_fresh(prefix, old)
