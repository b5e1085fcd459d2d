"""The path guard alone: every way a symlink could lead a write out of the tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lockenv.errors import InstallError, UnsafePathError
from lockenv.sync.guard import PrefixGuard
from lockenv.sync.link import Linker

unix_only = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")


def _guard(tmp_path: Path) -> PrefixGuard:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return PrefixGuard(root, Linker("copy"))


@unix_only
@pytest.mark.parametrize(
    ("links", "write"),
    [
        ({"up": ".."}, "up/x"),
        ({"abs": str(Path("/").resolve())}, "abs/x"),
        ({"a": "b", "b": "a"}, "a/x"),
        ({"a": "sub/..", "sub": "../.."}, "a/x"),
        ({"deep": "x/../../.."}, "deep/y"),
    ],
    ids=["dotdot", "absolute", "loop", "chain", "dangling-dotdot"],
)
@pytest.mark.parametrize("how", ["write", "makedirs_all"])
def test_guard_refuses_every_way_out(
    tmp_path: Path, links: dict[str, str], write: str, how: str
) -> None:
    guard = _guard(tmp_path)
    for name, target in links.items():
        # Placed behind the guard's back, as a cache or an earlier sync step might.
        os.symlink(target, guard.root + "/" + name)
    with pytest.raises((UnsafePathError, InstallError, FileNotFoundError)):
        if how == "write":
            guard.write(write, b"pwned", executable=False, what="test")
        else:
            guard.makedirs_all([("fine/a", "test"), (write, "test"), (f"{write}/z", "test")])
    assert not any(p.name == "x" for p in tmp_path.rglob("x") if guard.root not in str(p))
    assert not (Path(guard.root) / "fine").exists()  # every path resolved before any mkdir


@unix_only
def test_guard_never_writes_through_an_existing_link(tmp_path: Path) -> None:
    guard = _guard(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    guard.makedirs("bin", what="test")
    os.symlink(outside, guard.root + "/bin/tool")
    guard.write("bin/tool", b"new", executable=True, what="test")
    assert outside.read_text() == "precious"
    assert not os.path.islink(guard.root + "/bin/tool")


@unix_only
def test_guard_refuses_a_symlink_out(tmp_path: Path) -> None:
    guard = _guard(tmp_path)
    with pytest.raises(UnsafePathError, match="outside"):
        guard.symlink("../../etc", "share/x", what="test")
    with pytest.raises(UnsafePathError, match="outside"):
        guard.symlink("/etc/passwd", "share/y", what="test")


# -- many files at once: linked by threads, checked like one ----------------------------


def _many_threads(monkeypatch: pytest.MonkeyPatch, *, batch: int = 2) -> None:
    """Threads from two files on, whatever the machine (`each_in_threads`)."""
    from lockenv.sync import link as link_mod

    monkeypatch.setattr(link_mod, "_PARALLEL_FROM", 2)
    monkeypatch.setattr(link_mod, "_BATCH", batch)
    monkeypatch.setattr(link_mod.os, "cpu_count", lambda: 4)


def _cache_files(tmp_path: Path, count: int) -> list[Path]:
    cache = tmp_path / "cache"
    cache.mkdir()
    files = []
    for i in range(count):
        path = cache / f"f{i}.py"
        path.write_text(f"x = {i}\n")
        files.append(path)
    return files


@unix_only
def test_place_files_links_many_files_in_threads_and_places_the_rest_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _many_threads(monkeypatch, batch=3)
    files = _cache_files(tmp_path, 40)
    root = tmp_path / "root"
    root.mkdir()
    guard = PrefixGuard(root, Linker("hardlink"))
    for d in ("pkg", "pkg/sub"):
        guard.makedirs(d, what="test")
    # In the way: a file to replace, and a symlink that must be replaced, not followed.
    (root / "pkg" / "f3.py").write_text("stale")
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    os.symlink(outside, root / "pkg" / "sub" / "f4.py")
    items = [
        (str(src), f"pkg/{'sub/' if i % 2 else ''}{src.name}", False) for i, src in enumerate(files)
    ]
    guard.place_files(items, what="test")
    for src, rel, _x in items:
        assert os.path.samestat(os.lstat(root / rel), os.stat(src)), rel
    assert outside.read_text() == "precious"


@unix_only
def test_place_files_refuses_what_place_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _many_threads(monkeypatch)
    files = _cache_files(tmp_path, 4)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("..", root / "up")
    guard = PrefixGuard(root, Linker("hardlink"))
    guard.protect_interpreter()
    for rel in ("up/escape.py", "bin/python3", ".lockenv-state.json"):
        items = [(str(f), f"pkg/{f.name}", False) for f in files[:3]]
        items.append((str(files[3]), rel, False))
        with pytest.raises(UnsafePathError):
            guard.place_files(items, what="test")
    assert not (tmp_path / "escape.py").exists()
    assert not (root / ".lockenv-state.json").exists() and not (root / "bin/python3").exists()
    assert list((root / "pkg").iterdir()) == []  # every path is checked before any link


def test_place_files_copies_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    _many_threads(monkeypatch)

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    files = _cache_files(tmp_path, 10)
    root = tmp_path / "root"
    root.mkdir()
    linker = Linker("hardlink")
    guard = PrefixGuard(root, linker)
    guard.place_files([(str(f), f"pkg/{f.name}", True) for f in files], what="test")
    assert linker.copied_across_filesystems
    for f in files:
        copy = root / "pkg" / f.name
        assert copy.read_bytes() == f.read_bytes() and os.stat(copy).st_nlink == 1


@pytest.fixture
def threaded_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PrefixGuard:
    """A guard whose directories and links are made by threads from two on."""
    _many_threads(monkeypatch, batch=2)
    return _guard(tmp_path)


@unix_only
def test_makedirs_all_makes_every_level_through_links_inside(threaded_guard: PrefixGuard) -> None:
    guard = threaded_guard
    os.mkdir(guard.root + "/lib")
    os.symlink("lib", guard.root + "/lib64")  # as a venv's skeleton has it
    wanted = [(f"lib64/pkg{i}/sub{j}", f"w{i}") for i in range(6) for j in range(4)]
    wanted += [("lib/pkg0", "w0"), ("bin", "w9"), ("lib/pkg0/sub0/deep/er", "w0")]
    guard.makedirs_all(wanted)
    for rel, _what in wanted:
        real = guard.root + "/" + rel.replace("lib64/", "lib/")
        assert os.path.isdir(real) and not os.path.islink(real)
    assert os.path.islink(guard.root + "/lib64")
    # Files then go where the directories are, through the memoised parents.
    guard.write("lib64/pkg5/sub3/m.py", b"x", executable=False, what="w5")
    assert (Path(guard.root) / "lib/pkg5/sub3/m.py").read_bytes() == b"x"


@unix_only
def test_makedirs_all_refuses_a_file_in_the_way_and_what_appears_meanwhile(
    threaded_guard: PrefixGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = threaded_guard
    Path(guard.root, "taken").write_text("a file")
    with pytest.raises(InstallError, match="w1: 'taken/sub/x' needs 'taken' as a directory"):
        guard.makedirs_all([("ok/a", "w0"), ("taken/sub/x", "w1")])
    real_mkdir = os.mkdir

    def racing_mkdir(path: str, mode: int = 0o777) -> None:
        if path.endswith("/raced"):
            Path(path).write_text("not a directory")
            raise FileExistsError(path)
        real_mkdir(path, mode)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    wanted = [(f"d{i}", "w2") for i in range(5)] + [("raced", "w3"), ("raced/below", "w3")]
    with pytest.raises(InstallError, match="w3: 'raced' must be a directory"):
        guard.makedirs_all(wanted)
    assert not (Path(guard.root) / "raced").is_dir()


def test_check_kept_holds_files_left_in_place_to_the_rules_of_placed_ones(
    tmp_path: Path,
) -> None:
    guard = _guard(tmp_path)
    fine = ["lib/python3.11/site-packages/pkg/bin/python", "bin/tool", "Scripts/x.exe", "a.pth"]
    guard.check_kept(fine, what="kept")
    guard.protect_interpreter()
    guard.check_kept(fine, what="kept")
    for bad in ("bin/python3", ".lockenv-state.json", "conda-meta/history"):
        with pytest.raises(UnsafePathError, match=f"kept: would .*{bad}"):
            guard.check_kept([*fine, bad], what="kept")
