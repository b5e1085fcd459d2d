"""Nothing a sync writes lands outside the prefix, whatever the packages or the cache hold.

Each case reproduces a finding of issue 8: symlinks shipped by earlier packages that
redirect later writes, a symlinked prefix, an edited cache manifest, and wheels that
replace the interpreter or lockenv's own records.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import pytest

from lockenv.errors import InstallError, LockenvError, UnsafePathError
from lockenv.lockfile import Lockfile

from hostile import (
    PLATFORM,
    PYTHON_XY,
    PayloadFile,
    Sandbox,
    conda_package,
    fixture_conda,
    lock_of,
    outside_snapshot,
    sync,
)
from materializer_support import artifact_for, build_wheel

unix_only = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges")


def _file(path: str, data: bytes = b"x\n") -> PayloadFile:
    return PayloadFile(path=path, kind="hardlink", data=data)


def _link(path: str, target: str) -> PayloadFile:
    return PayloadFile(path=path, kind="softlink", data=target.encode())


# The staging tree is proj/.lockenv/envs/.default.staging-*: three levels below proj/.
DEEP = "d1/d2/d3/d4/d5/d6"
CHAIN = [
    # P1: `a` leads six levels down, where `a` leads to itself, so `lnk` resolves inside
    # (to d1/d2/d3/victim_dir) and passes every check of P1's own links.
    _file(f"{DEEP}/keep.txt"),
    _link(f"{DEEP}/a", "."),
    _link("a", DEEP),
    _link("lnk", "a/a/a/../../../victim_dir"),
]


@unix_only
@pytest.mark.parametrize("link_mode", ["hardlink", "copy"])
@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_three_packages_cannot_redirect_a_write_outside(
    tmp_path: Path, link_mode: str, fmt: str
) -> None:
    box = Sandbox.make(tmp_path / "box")
    pkgs = tmp_path / "pkgs"
    p1 = conda_package(pkgs, "p1", CHAIN, fmt=fmt)
    # P2 replaces `a` by `a -> .`: now `lnk` climbs three levels out of the tree.
    p2 = conda_package(pkgs, "p2", [_link("a", ".")], depends=["p1"], fmt=fmt)
    # P3 writes through `lnk`.
    p3 = conda_package(pkgs, "p3", [_file("lnk/victim.txt", b"pwned\n")], depends=["p2"])
    before = outside_snapshot(box)
    with pytest.raises(UnsafePathError, match=r"p[23]-1\.0-h_test_0.*(lnk|outside)"):
        sync(lock_of([p1, p2, p3]), box, link_mode=link_mode)
    assert not (box.project / "victim_dir" / "victim.txt").exists()
    assert outside_snapshot(box) == before
    assert not box.prefix.exists()


@unix_only
def test_two_packages_cannot_write_outside_either(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    pkgs = tmp_path / "pkgs"
    p1 = conda_package(pkgs, "p1", CHAIN)
    p2 = conda_package(
        pkgs, "p2", [_link("a", "."), _file("lnk/victim.txt", b"pwned\n")], depends=["p1"]
    )
    before = outside_snapshot(box)
    with pytest.raises(UnsafePathError, match=r"p2-1\.0-h_test_0"):
        sync(lock_of([p1, p2]), box)
    assert outside_snapshot(box) == before


@unix_only
def test_a_link_left_pointing_outside_is_refused(tmp_path: Path) -> None:
    # Nothing writes through it, but the environment would hold a way out.
    box = Sandbox.make(tmp_path / "box")
    pkgs = tmp_path / "pkgs"
    p1 = conda_package(pkgs, "p1", CHAIN)
    p2 = conda_package(pkgs, "p2", [_link("a", ".")], depends=["p1"])
    with pytest.raises(UnsafePathError, match=r"p1-1\.0-h_test_0.*'lnk'.*outside"):
        sync(lock_of([p1, p2]), box)
    assert not box.prefix.exists()


@unix_only
def test_links_inside_the_prefix_still_work(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    pkgs = tmp_path / "pkgs"
    p1 = conda_package(pkgs, "p1", [_file("lib/real/data.txt", b"ok\n"), _link("share", "lib")])
    # Written through p1's `share -> lib`, inside the tree: allowed, as conda does.
    p2 = conda_package(pkgs, "p2", [_file("share/real/more.txt", b"more\n")], depends=["p1"])
    sync(lock_of([p1, p2]), box)
    assert (box.prefix / "lib" / "real" / "more.txt").read_text() == "more\n"
    assert (box.prefix / "share").is_symlink()


@unix_only
def test_symlinked_prefix_is_refused(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    elsewhere = box.outside / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.txt").write_text("not an environment\n")
    box.prefix.symlink_to(elsewhere)
    pkg = conda_package(tmp_path / "pkgs", "p1", [_file("share/a.txt")])
    with pytest.raises(InstallError, match="is a symlink"):
        sync(lock_of([pkg]), box)
    assert sorted(os.listdir(elsewhere)) == ["data.txt"]
    assert box.prefix.is_symlink()


@unix_only
def test_edited_cache_manifest_cannot_reach_outside(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    wheel = build_wheel(tmp_path / "wheels", "demo", "1.0", {"demo/__init__.py": b"x = 1\n"})
    lock = lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY)
    sync(lock, box, prefix=tmp_path / "first")  # fills the cache
    victim = box.outside / "keep.txt"
    (entry,) = (box.cache / "unpacked").glob("*/*")
    manifest = json.loads((entry / "manifest.json").read_text())
    # A path that climbs from site-packages (and from files/) to the victim.
    climb = "../" * 40 + str(victim).lstrip("/")
    manifest["files"][0][0] = climb
    os.chmod(entry / "manifest.json", 0o644)
    (entry / "manifest.json").write_text(json.dumps(manifest))
    box_before = outside_snapshot(box)
    with contextlib.suppress(LockenvError):
        sync(lock, box, link_mode="copy")
    # Refused or re-made from the archive: either way nothing outside changed.
    assert victim.read_text() == "precious\n"
    assert outside_snapshot(box) == box_before


def _venv_lock(tmp_path: Path, files: dict[str, bytes], entry_points: str | None) -> Lockfile:
    wheel = build_wheel(tmp_path / "wheels", "evil", "1.0", files, entry_points=entry_points)
    return lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY)


@unix_only
@pytest.mark.parametrize(
    ("files", "entry_points"),
    [
        ({"evil/__init__.py": b""}, "[console_scripts]\npython = evil:main\n"),
        ({"evil/__init__.py": b""}, "[gui_scripts]\npython3 = evil:main\n"),
        ({"evil-1.0.data/scripts/python": b"#!/bin/sh\necho pwned\n"}, None),
        ({f"evil-1.0.data/scripts/python{PYTHON_XY}": b"#!/bin/sh\necho pwned\n"}, None),
        ({"evil-1.0.data/data/bin/python": b"pwned"}, None),
        ({"evil-1.0.data/data/pyvenv.cfg": b"home = /tmp/evil\n"}, None),
        ({"evil-1.0.data/data/.lockenv-state.json": b"{}"}, None),
        ({"evil-1.0.data/data/conda-meta/fake-1-0.json": b"{}"}, None),
    ],
    ids=["console", "gui", "script", "script-xy", "data-bin", "pyvenv", "state", "conda-meta"],
)
def test_wheel_cannot_replace_the_interpreter_or_lockenv_records(
    tmp_path: Path, files: dict[str, bytes], entry_points: str | None
) -> None:
    box = Sandbox.make(tmp_path / "box")
    with pytest.raises(UnsafePathError, match=r"evil-1\.0-py3-none-any\.whl"):
        sync(_venv_lock(tmp_path, files, entry_points), box)
    assert not box.prefix.exists()


@unix_only
def test_wheel_cannot_replace_a_conda_interpreter(
    tmp_path: Path, fixture_channel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"):
        pytest.skip("the fixture python package exists for unix platforms")
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)
    box = Sandbox.make(tmp_path / "box")
    wheel = build_wheel(tmp_path / "wheels", "evil", "1.0", {"evil-1.0.data/scripts/python3": b""})
    python = fixture_conda(fixture_channel_dir, "python-3.11.7")
    lock = lock_of([python, artifact_for(wheel, wheel.as_uri(), index=None)])
    with pytest.raises(UnsafePathError, match="interpreter"):
        sync(lock, box)


@unix_only
def test_conda_package_cannot_write_conda_meta(tmp_path: Path) -> None:
    box = Sandbox.make(tmp_path / "box")
    pkg = conda_package(tmp_path / "pkgs", "p1", [_file("conda-meta/other-1-0.json", b"{}")])
    with pytest.raises(UnsafePathError, match="lockenv's record"):
        sync(lock_of([pkg]), box)
