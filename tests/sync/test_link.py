"""Placing cached files: hardlink, copy, symlink, and the cross-filesystem fallback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lockenv.errors import UsageError
from lockenv.sync import link as link_mod
from lockenv.sync.link import Linker, check_link_mode, each_in_threads, link_all


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.write_text("data")
    src.chmod(0o444)
    return src


@pytest.mark.parametrize("mode", ["hardlink", "copy", "symlink"])
def test_modes(tmp_path: Path, mode: str) -> None:
    src = _src(tmp_path)
    dst = tmp_path / "dst"
    dst.write_text("old")  # replaced, never written through
    Linker(check_link_mode(mode)).place(str(src), str(dst), executable=False)
    assert dst.read_text() == "data"
    assert dst.is_symlink() == (mode == "symlink")
    assert (os.stat(dst).st_ino == os.stat(src).st_ino) == (mode != "copy")
    if mode == "copy":
        assert os.stat(dst).st_mode & 0o777 == 0o644


def test_exdev_switches_to_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(link_mod.os, "link", cross_device)
    linker = Linker("hardlink")
    src = _src(tmp_path)
    linker.place(str(src), str(tmp_path / "a"), executable=True)
    assert linker.mode == "copy" and linker.copied_across_filesystems
    assert (tmp_path / "a").read_text() == "data"
    assert os.stat(tmp_path / "a").st_mode & 0o777 == 0o755


def test_eperm_copies_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def protected(src: str, dst: str) -> None:
        raise OSError(errno.EPERM, "protected_hardlinks")

    monkeypatch.setattr(link_mod.os, "link", protected)
    linker = Linker("hardlink")
    linker.place(str(_src(tmp_path)), str(tmp_path / "a"), executable=False)
    assert linker.mode == "hardlink"
    assert (tmp_path / "a").read_text() == "data"


def test_unknown_mode() -> None:
    with pytest.raises(UsageError, match="hardlink, copy, symlink"):
        check_link_mode("reflink")


@pytest.fixture(params=[False, True], ids=["inline", "threads"])
def either_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`each_in_threads` as it runs small lists (in the caller's thread), then made to use
    threads from two items on, in batches of three."""
    if request.param:
        monkeypatch.setattr(link_mod, "_PARALLEL_FROM", 2)
        monkeypatch.setattr(link_mod, "_BATCH", 3)
        monkeypatch.setattr(link_mod.os, "cpu_count", lambda: 4)


@pytest.mark.usefixtures("either_way")
def test_each_in_threads_calls_every_item_and_returns_the_failures_in_order() -> None:
    seen: list[int] = []

    def call(item: int) -> None:
        seen.append(item)
        if item % 7 == 3:
            raise FileNotFoundError(item)

    items = list(range(50))
    assert each_in_threads(call, items) == [i for i in items if i % 7 == 3]
    assert sorted(seen) == items


@pytest.mark.usefixtures("either_way")
def test_each_in_threads_lets_other_errors_through() -> None:
    def call(item: int) -> None:
        if item == 17:
            raise ValueError(item)

    with pytest.raises(ValueError):
        each_in_threads(call, list(range(40)))


@pytest.mark.usefixtures("either_way")
def test_link_all_links_every_pair_and_returns_the_failures_in_order(tmp_path: Path) -> None:
    """Failures anywhere in a batch (first, last, several in a row) are each reported, and
    every other pair of that batch is linked still."""
    cache, env = tmp_path / "cache", tmp_path / "env"
    cache.mkdir()
    env.mkdir()
    sources = []
    for i in range(20):
        (cache / f"f{i}").write_text(str(i))
        sources.append(str(cache / f"f{i}"))
    in_the_way = [0, 2, 3, 4, 8, 9, 19]
    for i in in_the_way:
        (env / f"f{i}").write_text("there")
    targets = [str(env / f"f{i}") for i in range(20)]
    assert link_all(sources, targets) == in_the_way
    for i, target in enumerate(targets):
        linked = os.path.samefile(sources[i], target)
        assert linked != (i in in_the_way), i


@pytest.mark.usefixtures("either_way")
def test_link_all_lets_other_errors_through(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    with pytest.raises(ValueError):
        link_all([str(tmp_path / "a")] * 30, [str(tmp_path / f"b{i}\0") for i in range(30)])
