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
def test_guard_refuses_every_way_out(tmp_path: Path, links: dict[str, str], write: str) -> None:
    guard = _guard(tmp_path)
    for name, target in links.items():
        # Placed behind the guard's back, as a cache or an earlier sync step might.
        os.symlink(target, guard.root + "/" + name)
    with pytest.raises((UnsafePathError, InstallError, FileNotFoundError)):
        guard.write(write, b"pwned", executable=False, what="test")
    assert not any(p.name == "x" for p in tmp_path.rglob("x") if guard.root not in str(p))


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


@unix_only
def test_place_files_resolves_what_is_not_plain_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files in directories resolved to themselves are joined to the root at once; one
    through a symlink, at the top level or named ``..`` goes the long way, and lands (or
    is refused) exactly as `place` would have it."""
    _many_threads(monkeypatch)
    files = _cache_files(tmp_path, 6)
    root = tmp_path / "root"
    root.mkdir()
    guard = PrefixGuard(root, Linker("hardlink"))
    guard.makedirs("pkg", what="test")
    guard.symlink("pkg", "alias", what="test")
    rels = ["pkg/a.py", "alias/b.py", "top.txt", "pkg/c.py", "alias/d.py", "e.py"]
    guard.place_files(
        [(str(f), rel, False) for f, rel in zip(files, rels, strict=True)], what="test"
    )
    placed = ["pkg/a.py", "pkg/b.py", "top.txt", "pkg/c.py", "pkg/d.py", "e.py"]
    for f, rel in zip(files, placed, strict=True):
        assert os.path.samestat(os.lstat(root / rel), os.stat(f)), rel
    assert sorted(os.listdir(root)) == ["alias", "e.py", "pkg", "top.txt"]
    with pytest.raises(UnsafePathError):
        guard.place_files([(str(files[0]), "pkg/..", False)], what="test")


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


def test_check_kept_holds_files_left_in_place_to_the_rules_of_placed_ones(
    tmp_path: Path,
) -> None:
    guard = _guard(tmp_path)
    fine = ["lib/python3.11/site-packages/pkg/bin/python", "bin/tool", "Scripts/x.exe", "a.pth"]
    guard.check_kept(fine, what="kept")
    guard.protect_interpreter()
    guard.check_kept(fine, what="kept")
    for bad in ("bin/python3", ".lockenv-state.json", "conda-meta/history", "conda-meta/a/b"):
        with pytest.raises(UnsafePathError, match=f"kept: would .*{bad}"):
            guard.check_kept([*fine, bad], what="kept")


# -- many directories and files at once -----------------------------------------------------


def _tree_dirs() -> list[str]:
    """Nested directories of several packages (some sharing parents), a few through the
    skeleton's ``lib64 -> lib`` link."""
    dirs = [f"lib/site/pkg{p}/sub{s}/leaf{x}" for p in range(6) for s in range(4) for x in range(3)]
    return [*dirs, "lib/site/pkg0", "lib64/site/extra/deep", "bin", "lib/site/pkg5/sub1"]


@unix_only
@pytest.mark.parametrize("threads", [False, True], ids=["inline", "threads"])
def test_makedirs_all_makes_what_makedirs_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: bool
) -> None:
    if threads:
        _many_threads(monkeypatch)
    dirs = _tree_dirs()
    one_by_one, together = tmp_path / "a", tmp_path / "b"
    for root in (one_by_one, together):
        (root / "lib" / "site").mkdir(parents=True)
        os.symlink("lib", root / "lib64")
    first = PrefixGuard(one_by_one, Linker("hardlink"))
    for rel in dirs:
        first.makedirs(rel, what="test")
    second = PrefixGuard(together, Linker("hardlink"))
    second.makedirs_all([(rel, "test") for rel in dirs])

    def tree(root: Path) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    assert tree(together) == tree(one_by_one)
    assert (together / "lib64").is_symlink()
    # Its files go where `makedirs` resolved them: through the link, into lib/.
    second.write("lib64/site/extra/deep/f.py", b"x", executable=False, what="test")
    assert (together / "lib" / "site" / "extra" / "deep" / "f.py").read_bytes() == b"x"


@unix_only
def test_makedirs_all_refuses_what_makedirs_refuses(tmp_path: Path) -> None:
    guard = _guard(tmp_path)
    os.symlink("..", guard.root + "/up")
    with pytest.raises(UnsafePathError):
        guard.makedirs_all([("pkg/a", "p"), ("up/out/x", "q")])
    assert not (tmp_path / "out").exists()
    assert not os.path.exists(guard.root + "/pkg")  # every path is resolved before any is made
    Path(guard.root, "file").write_text("")
    with pytest.raises(InstallError, match="conflict"):
        guard.makedirs_all([("file/sub", "p")])


def test_makedirs_all_makes_a_subtree_a_thread_could_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from lockenv.sync import guard as guard_mod

    _many_threads(monkeypatch)
    real_mkdir = os.mkdir
    failed: list[str] = []

    def flaky(path: str, *args: int) -> None:
        if str(path).endswith("pkg3/sub2") and not failed:
            failed.append(str(path))
            raise OSError(errno.EINTR, "interrupted")
        real_mkdir(path, *args)

    monkeypatch.setattr(guard_mod.os, "mkdir", flaky)
    guard = _guard(tmp_path)
    dirs = [d for d in _tree_dirs() if not d.startswith("lib64")]
    guard.makedirs_all([(rel, "test") for rel in dirs])
    assert failed
    for rel in dirs:
        assert Path(guard.root, rel).is_dir(), rel


@pytest.mark.parametrize("threads", [False, True], ids=["inline", "threads"])
def test_write_files_writes_each_file_as_write_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: bool
) -> None:
    if threads:
        _many_threads(monkeypatch)
    guard = _guard(tmp_path)
    root = Path(guard.root)
    (root / "pkg1.dist-info").mkdir()
    cached = tmp_path / "cached"
    cached.write_bytes(b"shared")
    os.link(cached, root / "pkg1.dist-info" / "RECORD")  # in the way: replaced, not written
    items = [
        (f"pkg{i}.dist-info/{name}", f"{i}{name}".encode(), name == "tool", f"pkg{i}")
        for i in range(12)
        for name in ("RECORD", "INSTALLER", "tool")
    ]
    guard.write_files(items)
    for rel, data, executable, _what in items:
        assert (root / rel).read_bytes() == data
        assert os.stat(root / rel).st_mode & 0o777 == (0o755 if executable else 0o644)
    assert cached.read_bytes() == b"shared"


@unix_only
def test_write_files_refuses_before_writing_anything(tmp_path: Path) -> None:
    guard = _guard(tmp_path)
    guard.protect_interpreter()
    items = [("pkg/a.txt", b"a", False, "p"), ("bin/python3", b"#!", True, "q")]
    with pytest.raises(UnsafePathError, match="q: would replace the environment's interpreter"):
        guard.write_files(items)
    assert not os.path.exists(guard.root + "/pkg/a.txt")
