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
