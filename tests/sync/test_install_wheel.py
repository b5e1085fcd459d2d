"""Wheel unpacking and installation: layout, launchers, RECORD, path safety, pip parity."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lockenv.cache import Cache
from lockenv.errors import InstallError, UnsafePathError
from lockenv.sync.guard import PrefixGuard
from lockenv.sync.link import Linker
from lockenv.sync.materialize import SyncOptions, sync_environment
from lockenv.sync.pypi.record import parse_record, record_hash
from lockenv.sync.pypi.wheel import (
    UnpackedWheel,
    install_wheel,
    load_unpacked,
    plan_wheel_install,
    unpack_wheel,
)
from lockenv.sync.venv import create_venv, find_interpreter, layout_for

from materializer_support import BASIC, build_wheel, fixture_lock, lock_sha, run_in_env

PY = find_interpreter(f"{sys.version_info.major}.{sys.version_info.minor}")


def _install(tmp_path: Path, wheel: Path, *, project: str | None = None) -> Path:
    work = tmp_path / "unpacked"
    work.mkdir()
    name = project or wheel.name.split("-")[0].replace("_", "-")
    unpack_wheel(wheel, work, filename=wheel.name, project=name)
    unpacked = load_unpacked(work)
    assert unpacked is not None
    prefix = tmp_path / "env"
    layout = layout_for(prefix, PY.major_minor)
    create_venv(layout, PY)
    install_wheel(unpacked, layout, PrefixGuard(layout.root, Linker("hardlink")), requested=True)
    return prefix


# -- layout and contents --------------------------------------------------------------------


def test_gui_app_layout_launchers_and_record(tmp_path: Path, fixture_index_dir: Path) -> None:
    prefix = _install(tmp_path, fixture_index_dir / "files" / "gui_app-1.0-py3-none-any.whl")
    sp = prefix / "lib" / f"python{PY.major_minor}" / "site-packages"
    launcher = (prefix / "bin" / "gui-app-cli").read_text()
    assert launcher.splitlines()[0] == f"#!{prefix}/bin/python"
    assert "from gui_app import cli" in launcher
    assert "sys.exit(cli())" in launcher
    assert (prefix / "bin" / "gui-app").read_text().startswith(f"#!{prefix}/bin/python\n")
    tool = (prefix / "bin" / "gui-app-tool").read_bytes()
    assert tool.startswith(f"#!{prefix}/bin/python\n".encode())
    for script in ("gui-app", "gui-app-cli", "gui-app-tool"):
        assert os.stat(prefix / "bin" / script).st_mode & 0o111 == 0o111
    assert (
        prefix / "include" / "site" / f"python{PY.major_minor}" / "gui-app" / "gui_app.h"
    ).is_file()
    assert (prefix / "share" / "gui-app" / "readme.txt").is_file()
    dist_info = sp / "gui_app-1.0.dist-info"
    assert (dist_info / "INSTALLER").read_text() == "lockenv\n"
    assert (dist_info / "REQUESTED").exists()
    assert not (dist_info / "direct_url.json").exists()
    rows = parse_record((dist_info / "RECORD").read_text())
    paths = {r.path for r in rows}
    assert "../../../bin/gui-app-tool" in paths
    assert "../../../share/gui-app/readme.txt" in paths
    # Every RECORD row is right about the file it names.
    for row in rows:
        target = os.path.normpath(sp / row.path)
        if row.hash:
            data = Path(target).read_bytes()
            assert (record_hash(data), len(data)) == (row.hash, row.size), row.path
    result = run_in_env(prefix, str(prefix / "bin" / "gui-app-tool"))
    assert result.stdout.strip() == "gui-app-tool ok"


def test_cache_files_are_read_only_and_never_written_through(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    wheel = fixture_index_dir / "files" / "gui_app-1.0-py3-none-any.whl"
    prefix = _install(tmp_path, wheel)
    cached = tmp_path / "unpacked" / "files" / "gui_app-1.0.data" / "scripts" / "gui-app-tool"
    assert stat.S_IMODE(os.stat(cached).st_mode) == 0o555
    # The rewritten script is a file of its own, not a hardlink into the cache.
    assert os.stat(prefix / "bin" / "gui-app-tool").st_ino != os.stat(cached).st_ino
    assert cached.read_bytes().startswith(b"#!python")
    init = tmp_path / "unpacked" / "files" / "gui_app" / "__init__.py"
    sp = prefix / "lib" / f"python{PY.major_minor}" / "site-packages"
    assert os.stat(sp / "gui_app" / "__init__.py").st_ino == os.stat(init).st_ino


def test_platlib_wheel_goes_to_site_packages(tmp_path: Path, fixture_index_dir: Path) -> None:
    name = "numfast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    prefix = _install(tmp_path, fixture_index_dir / "files" / name)
    sp = prefix / "lib" / f"python{PY.major_minor}" / "site-packages"
    assert (sp / "numfast" / "_wheel_tag.py").is_file()
    assert "Root-Is-Purelib: false" in (sp / "numfast-1.0.dist-info" / "WHEEL").read_text()


def test_symlink_member_inside_the_wheel_is_installed_as_a_file(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "w", "linky", "1.0", {"linky/__init__.py": b""}, symlinks={"linky/alias": "x.py"}
    )
    prefix = _install(tmp_path, wheel)
    alias = prefix / "lib" / f"python{PY.major_minor}" / "site-packages" / "linky" / "alias"
    assert not alias.is_symlink()
    assert alias.read_bytes() == b"x.py"


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member",
    [
        "../evil.py",
        "pkg/../../evil.py",
        "/etc/evil.py",
        "C:/evil.py",
        "c:evil.py",
        "pkg\\..\\evil.py",
        "pkg/\0evil.py",
    ],
)
def test_unsafe_member_paths_are_refused(tmp_path: Path, member: str) -> None:
    wheel = build_wheel(tmp_path / "w", "evil", "1.0", {"evil/__init__.py": b"", member: b"x"})
    with pytest.raises(UnsafePathError) as info:
        _install(tmp_path, wheel)
    message = str(info.value)
    assert wheel.name in message
    assert repr(member)[1:-1].split("\\")[0] in message
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "../../../../../tmp/x"])
def test_symlink_members_escaping_the_wheel_are_refused(tmp_path: Path, target: str) -> None:
    wheel = build_wheel(
        tmp_path / "w", "evil", "1.0", {"evil/__init__.py": b""}, symlinks={"evil/link": target}
    )
    with pytest.raises(UnsafePathError, match="evil/link"):
        _install(tmp_path, wheel)


def test_unsafe_record_paths_are_refused(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "w", "evil", "1.0", {"evil/__init__.py": b""}, record_extra=["../../bin/x"]
    )
    with pytest.raises(UnsafePathError, match=r"\.\./\.\./bin/x"):
        _install(tmp_path, wheel)


@pytest.mark.parametrize("script", ["../escape", "sub/dir", "..", "-rf"])
def test_unsafe_entry_point_names_are_refused(tmp_path: Path, script: str) -> None:
    wheel = build_wheel(
        tmp_path / "w",
        "evil",
        "1.0",
        {"evil/__init__.py": b"def main(): pass\n"},
        entry_points=f"[console_scripts]\n{script} = evil:main\n",
    )
    with pytest.raises(UnsafePathError, match="entry point"):
        _install(tmp_path, wheel)


def test_wheel_for_another_project_is_refused(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "w", "alpha", "1.0", {"alpha/__init__.py": b""})
    with pytest.raises(InstallError, match="not the locked project 'beta'"):
        _install(tmp_path, wheel, project="beta")


def test_unknown_data_scheme_is_refused(tmp_path: Path) -> None:
    wheel = build_wheel(
        tmp_path / "w", "odd", "1.0", {"odd/__init__.py": b"", "odd-1.0.data/weird/x": b""}
    )
    with pytest.raises(InstallError, match=r"no known \.data scheme"):
        _install(tmp_path, wheel)


# -- parity with pip ------------------------------------------------------------------------


def _pip_available() -> bool:
    return (
        subprocess.run(
            [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
        ).returncode
        == 0
    )


def _installed_tree(prefix: Path) -> dict[str, bytes]:
    """Installed files (not the venv skeleton, bytecode or pip itself), prefix normalized."""
    skip_top = {"pyvenv.cfg", ".lockenv-state.json", ".lockenv-tree.json", "lib64"}
    out = {}
    for root, _dirs, files in os.walk(prefix):
        for name in files:
            path = Path(root) / name
            rel = path.relative_to(prefix).as_posix()
            if rel in skip_top or "__pycache__" in rel or path.is_symlink():
                continue
            if rel.startswith("bin/activate") or rel.startswith("bin/Activate"):
                continue
            out[rel] = path.read_bytes().replace(str(prefix).encode(), b"<PREFIX>")
    return out


@pytest.mark.skipif(not _pip_available(), reason="pip is not installed")
def test_installed_tree_matches_pip(tmp_path: Path, fixture_index_dir: Path) -> None:
    lock = fixture_lock(
        fixture_index_dir, BASIC, requested=("alpha", "beta", "clicky", "gui-app", "numfast")
    )
    ours = tmp_path / "ours"
    sync_environment(lock, lock_sha(lock), "default", ours, SyncOptions())

    theirs = tmp_path / "theirs"
    subprocess.run([str(PY.executable), "-m", "venv", "--without-pip", str(theirs)], check=True)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(theirs / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-compile",
            *[str(fixture_index_dir / "files" / f) for f in BASIC],
        ],
        check=True,
        env=env,
    )
    mine, pips = _installed_tree(ours), _installed_tree(theirs)
    sp = f"lib/python{PY.major_minor}/site-packages/"

    def comparable(tree: dict[str, bytes]) -> set[str]:
        return {p for p in tree if not p.endswith(("/INSTALLER", "/direct_url.json", "/RECORD"))}

    assert comparable(mine) == comparable(pips)
    for path in comparable(mine):
        assert mine[path] == pips[path], path
    for dist_info in [p for p in mine if p.endswith("/RECORD")]:
        rows_mine = {r.path: r for r in parse_record(mine[dist_info].decode())}
        rows_pip = {r.path: r for r in parse_record(pips[dist_info].decode())}
        name = dist_info[len(sp) :].split("/")[0]
        rows_pip.pop(f"{name}/direct_url.json", None)
        assert set(rows_mine) == set(rows_pip), dist_info
        for path, row in rows_mine.items():
            if path.endswith("/INSTALLER"):
                continue
            # Launchers carry the prefix, so their hashes differ; every other file is equal.
            if "bin/" not in path:
                assert row == rows_pip[path], path


def test_long_prefix_launcher_uses_sh_trampoline(tmp_path: Path, fixture_index_dir: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e with space" * 3)
    lock = fixture_lock(fixture_index_dir, ["clicky-8.0-py3-none-any.whl"], requested=["clicky"])
    sync_environment(lock, lock_sha(lock), "default", deep, SyncOptions())
    launcher = (deep / "bin" / "clicky").read_bytes()
    assert launcher.startswith(b"#!/bin/sh\n")
    result = run_in_env(deep, str(deep / "bin" / "clicky"))
    assert result.stdout.strip() == "clicky ok"


def test_hash_while_unpacking_matches_file_bytes(tmp_path: Path, fixture_index_dir: Path) -> None:
    wheel = fixture_index_dir / "files" / "clicky-8.0-py3-none-any.whl"
    cache = Cache(tmp_path / "cache")
    work = cache.make_temp_dir("unpack")
    unpacked = unpack_wheel(wheel, work, filename=wheel.name, project="clicky")
    for f in unpacked.files:
        data = (work / "files" / f.path).read_bytes()
        digest = hashlib.sha256(data).digest()
        assert f.size == len(data)
        assert f.hash == record_hash(data)
        assert digest


def _wheel_with_large_members(out: Path, payload: dict[str, bytes]) -> Path:
    """A wheel whose ``payload`` members are stored (``*.so``) or deflated (others)."""
    import zipfile

    info = "big-1.0.dist-info"
    meta = {
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: big\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    members = {**payload, **meta}
    record = "".join(f"{p},{record_hash(d)},{len(d)}\n" for p, d in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = out / "big-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            method = zipfile.ZIP_STORED if name.endswith(".so") else zipfile.ZIP_DEFLATED
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, method)
    return path


def test_large_members_are_streamed_hashed_and_sealed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.cache import check_entry
    from lockenv.lockfile import PypiArtifact
    from lockenv.sync import prepare
    from lockenv.sync.pypi import wheel as wheel_mod

    # Small limits: the streaming path, several blocks per member, an odd tail.
    monkeypatch.setattr(wheel_mod, "_IN_MEMORY_LIMIT", 1000)
    monkeypatch.setattr(wheel_mod, "_BLOCK", 4096)
    payload = {
        "big/_native.so": os.urandom(50_001),
        "big/data.py": b"x = 1\n" * 20_000,  # deflates well: many blocks out per block in
        "big/small.py": b"y = 2\n",
    }
    archive = _wheel_with_large_members(tmp_path, payload)
    data = archive.read_bytes()
    artifact = PypiArtifact(
        name="big",
        version="1.0",
        filename=archive.name,
        url=archive.as_uri(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    cache = Cache(tmp_path / "cache")
    entry = cache.unpacked_dir(artifact.sha256)
    prepare.ensure_unpacked(cache, artifact, archive, entry)
    unpacked = load_unpacked(entry)
    assert unpacked is not None
    by_path = {f.path: f for f in unpacked.files}
    for path, content in payload.items():
        assert (entry / "files" / path).read_bytes() == content
        assert by_path[path].hash == record_hash(content)
        assert by_path[path].size == len(content)
    # The seal took the unpacker's digests: a file touched since is re-hashed, and agrees.
    os.utime(entry / "files" / "big" / "_native.so", (1, 1))
    assert check_entry(entry) == "ok"


def test_a_damaged_large_deflated_member_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.sync.pypi import wheel as wheel_mod

    monkeypatch.setattr(wheel_mod, "_IN_MEMORY_LIMIT", 1000)
    monkeypatch.setattr(wheel_mod, "_BLOCK", 4096)
    archive = _wheel_with_large_members(
        tmp_path, {"big/data.py": os.urandom(30_000).hex().encode()}
    )
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"big/data.py") + len(b"big/data.py") + 100  # inside the deflated stream
    raw[at : at + 64] = bytes(64)
    archive.write_bytes(bytes(raw))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InstallError, match=r"big/data\.py"):
        unpack_wheel(archive, work, filename=archive.name, project="big")


def test_apply_wheel_installs_links_all_plans_together_and_the_last_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.sync import link as link_mod
    from lockenv.sync.pypi.wheel import InstalledDist, WheelInstall, apply_wheel_installs

    # Threads from two files on: the plans' files are linked by them, together.
    monkeypatch.setattr(link_mod, "_PARALLEL_FROM", 2)
    monkeypatch.setattr(link_mod, "_BATCH", 3)
    monkeypatch.setattr(link_mod.os, "cpu_count", lambda: 4)
    cache = tmp_path / "cache"
    cache.mkdir()

    def cached(name: str) -> str:
        path = cache / name
        path.write_text(name)
        return str(path)

    def plan(name: str, entries: list[tuple[str, str | bytes, bool]]) -> WheelInstall:
        dirs = sorted({dest.rpartition("/")[0] for dest, _s, _x in entries})
        dist = InstalledDist(dist_info=f"{name}.dist-info", name=name, version="1", files=0)
        return WheelInstall(dist=dist, dirs=tuple(dirs), entries=tuple(entries))

    first = plan(
        "a",
        [(f"pkg/a/m{i}.py", cached(f"a{i}"), False) for i in range(10)]
        + [("pkg/shared.py", cached("a-shared"), False), ("pkg/note.txt", b"a wrote", False)]
        + [("pkg/tool", cached("a-tool"), True)],
    )
    second = plan(
        "b",
        [(f"pkg/b/m{i}.py", cached(f"b{i}"), False) for i in range(10)]
        + [("pkg/shared.py", cached("b-shared"), False), ("pkg/note.txt", cached("b-note"), False)]
        + [("pkg/tool", b"#!b\n", True)],
    )
    root = tmp_path / "root"
    root.mkdir()
    apply_wheel_installs(
        [(first, "a.whl"), (second, "b.whl")],
        PrefixGuard(root, Linker("hardlink")),
        skip=frozenset({"pkg/a/m0.py"}),
    )
    assert not (root / "pkg/a/m0.py").exists()  # skipped: already in place elsewhere
    for name, rel in [("a1", "pkg/a/m1.py"), ("b9", "pkg/b/m9.py"), ("b-shared", "pkg/shared.py")]:
        assert os.path.samestat(os.stat(root / rel), os.stat(cache / name)), rel
    # The last entry for a path wins, whether it is linked or written.
    assert os.path.samestat(os.stat(root / "pkg/note.txt"), os.stat(cache / "b-note"))
    assert (root / "pkg/tool").read_bytes() == b"#!b\n"
    assert os.stat(root / "pkg/tool").st_nlink == 1 and os.access(root / "pkg/tool", os.X_OK)


# -- planning ------------------------------------------------------------------------------


def _unpacked(tmp_path: Path, wheel: Path, project: str) -> UnpackedWheel:
    work = tmp_path / "unpacked"
    work.mkdir()
    unpack_wheel(wheel, work, filename=wheel.name, project=project)
    unpacked = load_unpacked(work)
    assert unpacked is not None
    return unpacked


def test_a_wheel_without_data_is_planned_as_any_wheel_is(tmp_path: Path) -> None:
    """The short way for wheels without a .data directory (`plan_wheel_install`) puts
    everything where the general one does, with the same RECORD."""
    files = {
        "top.py": b"x = 1\n",
        "pkg/__init__.py": b"",
        "pkg/sub/deep.py": b"y = 2\n",
        "pkg/data.bin": bytes(range(256)),
        "pkg-1.0.dist-info/INSTALLER": b"someone else\n",  # written by the installer instead
        "pkg-1.0.dist-info/licenses/LICENSE": b"MIT\n",
    }
    wheel = build_wheel(
        tmp_path / "w", "pkg", "1.0", files, entry_points="[console_scripts]\npkg-cli = pkg:main\n"
    )
    unpacked = _unpacked(tmp_path, wheel, "pkg")
    assert unpacked.data_dir is None
    layout = layout_for(tmp_path / "env", PY.major_minor)
    short = plan_wheel_install(unpacked, layout, requested=True, direct_url={"url": "file:///x"})
    # A .data directory named, holding nothing: the general way, file by file.
    general = plan_wheel_install(
        replace(unpacked, data_dir="pkg-1.0.data"),
        layout,
        requested=True,
        direct_url={"url": "file:///x"},
    )
    assert short == general
    sp = layout.site_packages_rel
    dests = [dest for dest, _source, _x in short.entries]
    assert f"{sp}/pkg/sub/deep.py" in dests and f"{sp}/top.py" in dests
    assert dests.count(f"{sp}/pkg-1.0.dist-info/INSTALLER") == 1
    assert f"{sp}/pkg" in short.dirs and f"{sp}/pkg/sub" in short.dirs


def test_loaded_flags_are_booleans(tmp_path: Path) -> None:
    data = "pkg-1.0.data"
    wheel = build_wheel(
        tmp_path / "w",
        "pkg",
        "1.0",
        {"pkg/__init__.py": b"", f"{data}/scripts/tool": b"#!python\nprint(1)\n"},
    )
    unpacked = _unpacked(tmp_path, wheel, "pkg")
    by_path = {f.path: f for f in unpacked.files}
    tool = by_path[f"{data}/scripts/tool"]
    assert tool.executable is True and tool.python_shebang is True
    init = by_path["pkg/__init__.py"]
    assert init.executable is False and init.python_shebang is False
    assert all(type(f.size) is int for f in unpacked.files)
