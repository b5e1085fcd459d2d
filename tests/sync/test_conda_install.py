"""Conda environments: unpack once, link, placeholders, noarch python, conda-meta, verify.

Locks are built directly (no resolver) from the fixture channel's repodata; the fixture
``python`` package is a shell script that runs the host interpreter, found through
``LOCKENV_HOST_PYTHON``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.build_channel import PayloadFile, placeholder_prefix
from lockenv.cache import default_cache_dir
from lockenv.errors import InstallError, IntegrityError, UnsafePathError
from lockenv.lockfile import (
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
)
from lockenv.platforms import current_platform
from lockenv.sync import materialize
from lockenv.sync.conda import install as conda_install
from lockenv.sync.conda.install import replace_binary_prefix, replace_text_prefix
from lockenv.sync.conda.prefix_record import normalized_record, requested_specs
from lockenv.sync.materialize import SyncOptions, activation_env, is_up_to_date, sync_environment
from lockenv.sync.plan import EnvState, InstalledPackage, WantedPackage, plan_sync
from lockenv.sync.verify import environment_digest, verify_environment

from materializer_support import (
    artifact_for,
    conda_artifact,
    custom_conda_package,
    interrupt_at_random_moments,
    interrupt_at_stage,
    lock_sha,
    tree_snapshot,
)

PLATFORM = current_platform()
ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = placeholder_prefix()
BASE = ("python-3.11.7", "libzlib-1.3.1", "tool-py-2.1.0")
pytestmark = pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="the fixture python package exists for unix platforms",
)


@pytest.fixture(autouse=True)
def _host_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fixture python package execs this interpreter (conftest clears LOCKENV_*).
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)


# -- locks over the fixture channel -------------------------------------------------------


def conda_lock(
    channel: Path,
    stems: Iterable[str] = BASE,
    *,
    fmt: str = ".conda",
    pypi: Iterable[Artifact] = (),
    requested: Iterable[str] = ("python 3.11.*", "tool-py", "libzlib"),
    pypi_requested: Iterable[str] = (),
    extra: Iterable[Artifact] = (),
) -> Lockfile:
    artifacts: list[Artifact] = [conda_artifact(channel, s, fmt=fmt) for s in stems]
    artifacts += [*extra, *pypi]
    return Lockfile(
        inputs=LockInputs(platforms=(PLATFORM,), channels=(channel.as_uri(),)),
        environments={
            "default": LockedEnvironment(
                name="default",
                conda_requirements=tuple(requested),
                pypi_requirements=tuple(pypi_requested),
                packages={PLATFORM: tuple(a.url for a in artifacts)},
            )
        },
        artifacts={a.url: a for a in artifacts},
    )


def _sync(
    lock: Lockfile, prefix: Path, notes: list[str] | None = None, **options: Any
) -> materialize.SyncReport:
    return sync_environment(
        lock,
        lock_sha(lock),
        "default",
        prefix,
        SyncOptions(**options),
        progress=None if notes is None else notes.append,
    )


def _verify_ok(prefix: Path, lock: Lockfile) -> None:
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert report.ok, report.to_json()


def _run(prefix: Path, *args: str) -> str:
    env = activation_env(prefix, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env, check=True, timeout=60
    ).stdout


def _leftovers(prefix: Path) -> list[str]:
    return sorted(
        p.name
        for p in prefix.parent.iterdir()
        if p.name.startswith(f".{prefix.name}.") and not p.name.endswith(".lock")
    )


def _archive(artifact: Artifact) -> Path:
    cache = default_cache_dir()
    return cache / "archives" / artifact.sha256[:2] / artifact.sha256 / artifact.filename


def _custom_package(
    tmp_path: Path, name: str, files: list[PayloadFile], **spec: Any
) -> CondaArtifact:
    """A hand-made .conda package (the fixture builder's code), locked by file:// URL."""
    return custom_conda_package(tmp_path / "custom", name, files, **spec)


# -- placeholders ------------------------------------------------------------------------

PH = b"/placeholder/prefix/of/thirty-two"


def test_replace_binary_prefix_refuses_longer_prefix() -> None:
    with pytest.raises(ValueError):
        replace_binary_prefix(PH + b"\0", PH, PH + b"x")


@given(
    st.lists(st.sampled_from([PH, b"abc", b"\0", b"/lib", b"\xff"]), max_size=12),
    st.binary(max_size=len(PH)).filter(lambda b: b"\0" not in b),
)
def test_binary_replacement_keeps_length_and_strings(parts: list[bytes], prefix: bytes) -> None:
    data = b"".join(parts)
    out = replace_binary_prefix(data, PH, prefix)
    assert len(out) == len(data)
    # Read as C strings, each terminated one has the placeholder replaced; the padding
    # only adds empty strings.  An unterminated tail is left alone.
    *terminated, tail = data.split(b"\0")
    wanted = [s.replace(PH, prefix) for s in terminated] + [tail]
    assert [s for s in out.split(b"\0") if s] == [s for s in wanted if s]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"prefix=" + PH + b"\n", b"prefix=/new\n"),
        (b"#!" + PH + b"/bin/python -E\nx\n", b"#!/new/bin/python -E\nx\n"),
        (b"nothing\n", b"nothing\n"),
    ],
)
def test_replace_text_prefix(data: bytes, expected: bytes) -> None:
    assert replace_text_prefix(data, PH, b"/new") == expected


def test_long_shebang_becomes_env() -> None:
    long_prefix = b"/very" * 30
    out = replace_text_prefix(b"#!" + PH + b"/bin/python3.11 -E\nbody\n", PH, long_prefix)
    assert out == b"#!/usr/bin/env python3.11 -E\nbody\n"


# -- a conda environment -------------------------------------------------------------------


def test_conda_env_links_replaces_and_records(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir, (*BASE, "zlib-1.3.1"))
    prefix = tmp_path / "env"
    report = _sync(lock, prefix)
    assert report.installed == (
        "libzlib==1.3.1",
        "python==3.11.7",
        "tool-py==2.1.0",
        "zlib==1.3.1",
    )
    _verify_ok(prefix, lock)
    final = str(prefix).encode()

    # text placeholder: replaced, a private copy
    conf = prefix / "etc" / "libzlib.conf"
    assert f"prefix={prefix}\n".encode() in conf.read_bytes()
    assert PLACEHOLDER.encode() not in conf.read_bytes()
    assert conf.stat().st_nlink == 1

    # binary placeholder: same length, the strings padded with NUL bytes, executable kept
    lib = prefix / "lib" / "libzlib.so.1"
    unpacked = next(default_cache_dir().glob("unpacked/*/*/pkg/lib/libzlib.so.1"))
    original = unpacked.read_bytes()
    data = lib.read_bytes()
    assert len(data) == len(original)
    assert PLACEHOLDER.encode() not in data
    assert final + b"/lib\0" in data
    pad = len(PLACEHOLDER) - len(final)
    assert final + b"/lib" + b"\0" * (pad + 1) in data
    assert final + b"/etc/libzlib.conf\0" in data
    assert lib.stat().st_mode & stat.S_IXUSR
    assert lib.stat().st_nlink == 1
    # the cache is untouched, and read-only
    assert PLACEHOLDER.encode() in original
    assert not unpacked.stat().st_mode & 0o222

    # softlinks recreated; ordinary files hardlinked; no_link files copied
    assert os.readlink(prefix / "lib" / "libzlib.so") == "libzlib.so.1"
    assert (prefix / "include" / "zlib.h").stat().st_nlink >= 2
    assert (prefix / "share" / "zlib" / "copied-not-linked.txt").stat().st_nlink == 1
    assert (prefix / "include" / "python3.11").is_dir()
    assert not (prefix / "pyvenv.cfg").exists()
    assert not (prefix / "info").exists()


def test_noarch_python_and_entry_points(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    sp = prefix / "lib" / "python3.11" / "site-packages"
    assert (sp / "tool_py" / "__init__.py").is_file()
    assert (sp / "tool_py-2.1.0.dist-info" / "METADATA").is_file()
    assert not (prefix / "site-packages").exists()
    assert not (prefix / "python-scripts").exists()
    helper = prefix / "bin" / "tool-py-helper"
    assert helper.read_text().startswith(f"#!{prefix}/bin/python\n")
    launcher = prefix / "bin" / "tool-py"
    assert launcher.read_text().startswith(f"#!{prefix}/bin/python\n")
    assert launcher.stat().st_mode & stat.S_IXUSR
    out = _run(
        prefix, str(prefix / "bin" / "python"), "-c", "import tool_py; print(tool_py.__file__)"
    )
    assert out.strip() == str(sp / "tool_py" / "__init__.py")
    assert _run(prefix, "tool-py").strip() == "tool-py 2.1.0"
    assert _run(prefix, "tool-py-helper").strip() == "tool-py-helper 2.1.0"


_RECORD_KEYS = {
    "name",
    "version",
    "build",
    "build_number",
    "channel",
    "subdir",
    "fn",
    "url",
    "md5",
    "sha256",
    "size",
    "depends",
    "constrains",
    "license",
    "timestamp",
    "track_features",
    "files",
    "paths_data",
    "link",
    "requested_spec",
    "requested_specs",
    "extracted_package_dir",
    "package_tarball_full_path",
}


def test_conda_meta_records(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir, (*BASE, "zlib-1.3.1"))
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    meta = prefix / "conda-meta"
    names = sorted(p.name for p in meta.glob("*.json"))
    assert names == [
        "libzlib-1.3.1-h_lockenv_0.json",
        "python-3.11.7-h_lockenv_0.json",
        "tool-py-2.1.0-pyh_lockenv_0.json",
        "zlib-1.3.1-h_lockenv_0.json",
    ]
    for artifact in lock.artifacts.values():
        assert isinstance(artifact, CondaArtifact)
        doc = json.loads(
            (meta / f"{artifact.name}-{artifact.version}-{artifact.build}.json").read_text()
        )
        assert set(doc) >= _RECORD_KEYS, _RECORD_KEYS - set(doc)
        assert (doc["name"], doc["version"], doc["build"]) == (
            artifact.name,
            artifact.version,
            artifact.build,
        )
        assert doc["fn"] == artifact.filename and doc["url"] == artifact.url
        assert doc["sha256"] == artifact.sha256 and doc["size"] == artifact.size
        assert doc["md5"] == artifact.md5
        assert doc["channel"] == f"{fixture_channel_dir.as_uri()}/{artifact.subdir}"
        assert isinstance(doc["track_features"], str)
        assert doc["link"]["type"] in (1, 3)
        assert doc["link"]["source"] == doc["extracted_package_dir"]
        assert (Path(doc["extracted_package_dir"]) / "info" / "index.json").is_file()
        # Where the archive is kept in the cache (as conda records it, even once its
        # tarballs are cleaned: here the default keep policy dropped it).
        assert Path(doc["package_tarball_full_path"]) == _archive(artifact)
        assert doc["paths_data"]["paths_version"] == 1
        paths = {p["_path"]: p for p in doc["paths_data"]["paths"]}
        assert set(doc["files"]) == {p for p, e in paths.items() if e["path_type"] != "directory"}
        for rel in doc["files"]:
            assert os.path.lexists(prefix / rel), rel
        for entry in paths.values():
            assert entry["path_type"] in (
                "hardlink",
                "softlink",
                "directory",
                "unix_python_entry_point",
            )
    libzlib = json.loads((meta / "libzlib-1.3.1-h_lockenv_0.json").read_text())
    entries = {p["_path"]: p for p in libzlib["paths_data"]["paths"]}
    conf = entries["etc/libzlib.conf"]
    assert conf["file_mode"] == "text" and conf["prefix_placeholder"] == PLACEHOLDER
    assert (
        conf["sha256_in_prefix"]
        == hashlib.sha256((prefix / "etc/libzlib.conf").read_bytes()).hexdigest()
    )
    assert conf["sha256"] != conf["sha256_in_prefix"]
    assert entries["lib/libzlib.so.1"]["file_mode"] == "binary"
    assert entries["lib/libzlib.so"]["path_type"] == "softlink"
    assert libzlib["requested_spec"] == "libzlib"
    zlib = json.loads((meta / "zlib-1.3.1-h_lockenv_0.json").read_text())
    assert zlib["requested_spec"] == "" and zlib["requested_specs"] == []
    assert {p["_path"]: p for p in zlib["paths_data"]["paths"]}["share/zlib/copied-not-linked.txt"][
        "no_link"
    ] is True
    tool = json.loads((meta / "tool-py-2.1.0-pyh_lockenv_0.json").read_text())
    assert tool["noarch"] == "python"
    assert "lib/python3.11/site-packages/tool_py/__init__.py" in tool["files"]
    assert "bin/tool-py" in tool["files"] and "bin/tool-py-helper" in tool["files"]
    tool_paths = {p["_path"]: p for p in tool["paths_data"]["paths"]}
    assert tool_paths["bin/tool-py"]["path_type"] == "unix_python_entry_point"
    python = json.loads((meta / "python-3.11.7-h_lockenv_0.json").read_text())
    assert python["requested_spec"] == "python 3.11.*"
    assert python["depends"] == ["__unix"]
    assert python["constrains"] == ["python_abi 3.11.* *_cp311"]

    history = (meta / "history").read_text().splitlines()
    assert history[0].startswith("==> ") and history[0].endswith(" <==")
    channel = fixture_channel_dir.as_uri()
    assert f"+{channel}::libzlib-1.3.1-h_lockenv_0" in history
    assert f"+{channel}::tool-py-2.1.0-pyh_lockenv_0" in history
    assert "# update specs: ['libzlib', 'python 3.11.*', 'tool-py']" in history


def test_requested_specs() -> None:
    assert requested_specs(
        ["python 3.11.*", "conda-forge::numpy >=1", "zlib=1.3", "x[build=1]"]
    ) == {
        "python": "python 3.11.*",
        "numpy": "conda-forge::numpy >=1",
        "zlib": "zlib=1.3",
        "x": "x[build=1]",
    }


def test_unpacked_once_and_reused(
    tmp_path: Path, fixture_channel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = conda_lock(fixture_channel_dir)
    _sync(lock, tmp_path / "a")
    for artifact in lock.artifacts.values():
        entry = default_cache_dir() / "unpacked" / artifact.sha256[:2] / artifact.sha256
        assert (entry / "manifest.json").is_file()
        assert (entry / "pkg" / "info" / "index.json").is_file()

    def no_extract(*args: object, **kwargs: object) -> None:
        raise AssertionError("extracted again")

    monkeypatch.setattr(conda_install, "extract_package", no_extract)
    _sync(lock, tmp_path / "b")
    _verify_ok(tmp_path / "b", lock)


def test_conda_and_tar_bz2_give_the_same_tree(tmp_path: Path, fixture_channel_dir: Path) -> None:
    prefix = tmp_path / "env"
    snapshots, digests = [], []
    for fmt in (".conda", ".tar.bz2"):
        lock = conda_lock(fixture_channel_dir, (*BASE, "zlib-1.3.1"), fmt=fmt)
        _sync(lock, prefix)
        _verify_ok(prefix, lock)
        snapshot = {
            k: v
            for k, v in tree_snapshot(prefix).items()
            if not k.startswith("conda-meta") and k != ".lockenv-state.json"
        }
        snapshots.append(snapshot)
        digests.append(environment_digest(prefix))
    assert snapshots[0] == snapshots[1]
    assert len(snapshots[0]) > 10


def test_no_op_and_fast_path(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    assert is_up_to_date(prefix, lock_sha(lock), "default")
    report = _sync(lock, prefix)
    assert report.no_op and report.unchanged == (
        "libzlib==1.3.1",
        "python==3.11.7",
        "tool-py==2.1.0",
    )
    # A record removed by hand: not up to date, and the sync restores it.
    (prefix / "conda-meta" / "libzlib-1.3.1-h_lockenv_0.json").unlink()
    assert not is_up_to_date(prefix, lock_sha(lock), "default")
    report = _sync(lock, prefix)
    assert not report.no_op and report.installed == ("libzlib==1.3.1",)
    _verify_ok(prefix, lock)


def test_sync_is_exact(tmp_path: Path, fixture_channel_dir: Path) -> None:
    prefix = tmp_path / "env"
    _sync(
        conda_lock(fixture_channel_dir, ("libzlib-1.2.13", "zlib-1.3.1", "python-3.11.7")), prefix
    )
    # A package installed by hand (a record and its file) goes away with the next sync.
    (prefix / "share" / "byhand").mkdir(parents=True)
    (prefix / "share" / "byhand" / "file").write_text("x")
    (prefix / "conda-meta" / "byhand-1.0-0.json").write_text('{"name": "byhand"}')
    lock = conda_lock(fixture_channel_dir, BASE)
    report = _sync(lock, prefix)
    assert report.installed == ("libzlib==1.3.1", "tool-py==2.1.0")
    assert report.removed == ("byhand==1.0", "libzlib==1.2.13", "zlib==1.3.1")
    assert report.unchanged == ("python==3.11.7",)
    assert not (prefix / "include" / "zlib.h").exists()
    assert not (prefix / "share").exists()
    assert not (prefix / "conda-meta" / "zlib-1.3.1-h_lockenv_0.json").exists()
    _verify_ok(prefix, lock)
    assert _leftovers(prefix) == []


def test_conda_only_environment_without_python(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir, ("libzlib-1.3.1", "zlib-1.3.1"), requested=["zlib"])
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    _verify_ok(prefix, lock)
    assert not (prefix / "bin" / "python").exists()
    assert (prefix / "include" / "zlib.h").is_file()
    assert is_up_to_date(prefix, lock_sha(lock), "default")
    assert _sync(lock, prefix).no_op


def test_noarch_python_needs_a_python(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir, ("tool-py-2.1.0",), requested=["tool-py"])
    with pytest.raises(InstallError, match=r"noarch: python.*no conda"):
        _sync(lock, tmp_path / "env")
    assert not (tmp_path / "env").exists()


def test_pypi_packages_need_a_conda_python(
    tmp_path: Path, fixture_channel_dir: Path, fixture_index_dir: Path
) -> None:
    wheel = fixture_index_dir / "files" / "beta-1.5-py3-none-any.whl"
    lock = conda_lock(
        fixture_channel_dir, ("libzlib-1.3.1",), pypi=[artifact_for(wheel, wheel.as_uri())]
    )
    with pytest.raises(InstallError, match="no conda `python`"):
        _sync(lock, tmp_path / "env")


# -- placeholders that do not fit, package scripts, hostile packages --------------------------


def test_prefix_longer_than_binary_placeholder_is_refused(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    lock = conda_lock(fixture_channel_dir, ("libzlib-1.3.1",), requested=["libzlib"])
    parent = tmp_path / ("d" * 120) / ("e" * 120)
    prefix = parent / "env"
    assert len(str(prefix).encode()) > len(PLACEHOLDER)
    with pytest.raises(InstallError) as info:
        _sync(lock, prefix)
    message = str(info.value)
    assert "libzlib-1.3.1-h_lockenv_0.conda" in message
    assert "lib/libzlib.so.1" in message
    assert str(len(PLACEHOLDER)) in message and str(len(str(prefix).encode())) in message
    assert not prefix.exists()
    assert _leftovers(prefix) == []


def test_package_scripts_are_never_run(tmp_path: Path, fixture_channel_dir: Path) -> None:
    marker = tmp_path / "post-link-ran"
    script = PayloadFile(
        path="bin/.hooked-post-link.sh",
        kind="hardlink",
        data=f"#!/bin/sh\ntouch {marker}\n".encode(),
        executable=True,
    )
    unlink = PayloadFile(
        path="bin/.hooked-pre-unlink.sh", kind="hardlink", data=b"#!/bin/sh\n", executable=True
    )
    data = PayloadFile(path="share/hooked/data", kind="hardlink", data=b"data\n")
    hooked = _custom_package(tmp_path, "hooked", [script, unlink, data])
    lock = conda_lock(fixture_channel_dir, ("libzlib-1.3.1",), extra=[hooked])
    notes: list[str] = []
    prefix = tmp_path / "env"
    _sync(lock, prefix, notes)
    assert not marker.exists()
    assert (prefix / "bin" / ".hooked-post-link.sh").is_file()  # linked, as conda does
    skipped = [n for n in notes if "skipped package scripts" in n]
    assert skipped == [
        "skipped package scripts (lockenv never runs package code): hooked (post-link, pre-unlink)"
    ]
    _verify_ok(prefix, lock)


def test_custom_placeholder_package_and_no_link(tmp_path: Path, fixture_channel_dir: Path) -> None:
    files = [
        PayloadFile(
            path="share/p/twice.txt",
            kind="hardlink",
            data=f"{PLACEHOLDER}:{PLACEHOLDER}/x\n".encode(),
            placeholder="text",
        ),
        PayloadFile(path="share/p/plain", kind="hardlink", data=b"plain\n", no_link=True),
        PayloadFile(path="share/p/link", kind="softlink", data=b"plain"),
        PayloadFile(path="share/p/empty", kind="directory"),
    ]
    pkg = _custom_package(tmp_path, "placeholders", files)
    lock = conda_lock(fixture_channel_dir, (), extra=[pkg], requested=["placeholders"])
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    assert (prefix / "share/p/twice.txt").read_text() == f"{prefix}:{prefix}/x\n"
    assert (prefix / "share/p/plain").stat().st_nlink == 1
    assert os.readlink(prefix / "share/p/link") == "plain"
    assert (prefix / "share/p/empty").is_dir()
    _verify_ok(prefix, lock)


def test_symlink_out_of_the_package_is_refused(tmp_path: Path, fixture_channel_dir: Path) -> None:
    evil = PayloadFile(path="share/up", kind="softlink", data=b"../../../etc")
    pkg = _custom_package(tmp_path, "evil-link", [evil])
    lock = conda_lock(fixture_channel_dir, (), extra=[pkg], requested=[])
    with pytest.raises(UnsafePathError, match=r"evil-link.*outside"):
        _sync(lock, tmp_path / "env")
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", ""])
def test_link_step_refuses_links_out_of_the_prefix(tmp_path: Path, target: str) -> None:
    # The extractor refuses these already; linking checks again (defence in depth).
    from lockenv.sync.conda.install import CondaFile, UnpackedConda, install_conda_package
    from lockenv.sync.guard import PrefixGuard
    from lockenv.sync.link import Linker
    from lockenv.sync.venv import layout_for

    pkg = UnpackedConda(
        filename="evil-1.0-0.conda",
        directory=tmp_path / "pkg",
        name="evil",
        version="1.0",
        build="0",
        noarch=None,
        entry_points=(),
        files=(CondaFile("share/x", "softlink", "", -1, False, "", "", False, target),),
    )
    artifact = CondaArtifact(
        name="evil",
        version="1.0",
        build="0",
        build_number=0,
        subdir="noarch",
        filename=pkg.filename,
        url="file:///x/evil-1.0-0.conda",
        sha256="0" * 64,
        size=1,
    )
    layout = layout_for(tmp_path / "env", "", root=tmp_path / "staging", conda=True)
    (tmp_path / "staging").mkdir()
    guard = PrefixGuard(layout.root, Linker("hardlink"))
    with pytest.raises(UnsafePathError, match=r"evil-1\.0-0\.conda.*outside the prefix"):
        install_conda_package(pkg, artifact, layout, guard, requested_spec="", tarball=tmp_path)
    assert not (tmp_path / "staging" / "share" / "x").exists()


def test_package_that_is_not_the_locked_one_is_refused(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    real = _custom_package(tmp_path, "real-name", [PayloadFile(path="a", kind="hardlink")])
    renamed = replace(real, name="other-name")
    lock = conda_lock(fixture_channel_dir, (), extra=[renamed], requested=[])
    with pytest.raises(InstallError, match=r"not the locked 'other-name-1\.0-h_test_0'"):
        _sync(lock, tmp_path / "env")


# -- integrity and atomicity -------------------------------------------------------------------


def test_tampered_cached_conda_archive_is_refused_and_env_unchanged(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    old = conda_lock(fixture_channel_dir, ("libzlib-1.2.13", "python-3.11.7"))
    new = conda_lock(fixture_channel_dir, BASE)
    prefix = tmp_path / "env"
    _sync(old, prefix)
    # Fills the cache with new's archives (kept: not the default policy).
    _sync(new, tmp_path / "other", cache_keep="both")
    before = tree_snapshot(prefix)
    victim = next(a for a in new.artifacts.values() if a.name == "libzlib")
    archive = _archive(victim)
    data = bytearray(archive.read_bytes())
    data[200] ^= 0xFF
    archive.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    # The archive is read only to make its unpacked tree: remove that tree.
    shutil.rmtree(default_cache_dir() / "unpacked" / victim.sha256[:2] / victim.sha256)
    with pytest.raises(IntegrityError) as info:
        _sync(new, prefix)
    message = str(info.value)
    assert victim.filename in message and victim.sha256 in message and actual in message
    assert tree_snapshot(prefix) == before
    _verify_ok(prefix, old)
    assert _leftovers(prefix) == []
    _sync(new, prefix)  # fetched again from the channel
    _verify_ok(prefix, new)


def test_failed_link_leaves_env(
    tmp_path: Path, fixture_channel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = conda_lock(fixture_channel_dir, ("libzlib-1.2.13",), requested=["libzlib"])
    prefix = tmp_path / "env"
    _sync(old, prefix)
    before = tree_snapshot(prefix)

    def boom(*args: object, **kwargs: object) -> None:
        raise InstallError("injected failure")

    monkeypatch.setattr(conda_install, "PrefixRewrite", boom)
    with pytest.raises(InstallError, match="injected"):
        _sync(conda_lock(fixture_channel_dir, BASE), prefix)
    assert tree_snapshot(prefix) == before
    assert _leftovers(prefix) == []


_CONDA_OLD = ("python-3.11.7", "libzlib-1.2.13", "zlib-1.3.1")


@pytest.mark.parametrize(
    ("stage", "left"),
    [
        ("fetch:downloaded", "old"),
        ("unpack:working", "old"),
        ("staging:created", "old"),
        ("staging:linked#2", "old"),
        ("staging:complete", "old"),
        ("swap:done", "new"),
    ],
)
def test_kill_9_at_each_stage_leaves_old_or_new(
    tmp_path: Path, fixture_channel_dir: Path, stage: str, left: str
) -> None:
    old, new = conda_lock(fixture_channel_dir, _CONDA_OLD), conda_lock(fixture_channel_dir, BASE)
    interrupt_at_stage(tmp_path, old, new, stage, left)


def test_kill_9_at_random_moments_leaves_old_or_new(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    old, new = conda_lock(fixture_channel_dir, _CONDA_OLD), conda_lock(fixture_channel_dir, BASE)
    interrupt_at_random_moments(tmp_path, old, new, seed=99, trials=4)


# -- verify and digest ---------------------------------------------------------------------------


def test_verify_finds_drift(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    conf = prefix / "etc" / "libzlib.conf"
    text = conf.read_text()
    conf.unlink()
    conf.write_text(text.replace("libdir", "LIBDIR"))
    lib = prefix / "lib" / "libzlib.so.1"
    lib.unlink()
    (prefix / "lib" / "libzlib.so").unlink()
    (prefix / "bin" / "tool-py").unlink()
    (prefix / "bin" / "tool-py").write_text("#!/bin/sh\necho hijacked\n")
    (prefix / "etc" / "added.conf").write_text("x")
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert not report.ok
    assert report.modified == ("bin/tool-py", "etc/libzlib.conf")
    assert report.missing == ("lib/libzlib.so", "lib/libzlib.so.1")
    assert report.extra == ("etc/added.conf",)
    assert report.problems == ()


def test_verify_compares_conda_packages_with_the_lock(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    lock = conda_lock(fixture_channel_dir)
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    other = conda_lock(fixture_channel_dir, ("python-3.11.7", "libzlib-1.2.13", "zlib-1.3.1"))
    report = verify_environment(prefix, other, "default", PLATFORM)
    assert report.missing_packages == ("zlib==1.3.1",)
    assert report.extra_packages == ("tool-py==2.1.0",)
    assert report.mismatched_packages == (
        "libzlib: locked 1.2.13-h_lockenv_0, installed 1.3.1-h_lockenv_0",
    )
    bz2 = conda_lock(fixture_channel_dir, fmt=".tar.bz2")
    report = verify_environment(prefix, bz2, "default", PLATFORM)
    assert len(report.mismatched_packages) == 3
    assert "installed from libzlib-1.3.1-h_lockenv_0.conda" in report.mismatched_packages[0]
    # Without a lock: against what the state file says was installed.
    assert verify_environment(prefix, None, None, PLATFORM).ok


@pytest.mark.parametrize("mode", ["hardlink", "copy", "symlink"])
def test_digest_same_in_any_prefix_link_mode_and_after_cache_loss(
    tmp_path: Path, fixture_channel_dir: Path, fixture_index_dir: Path, mode: str
) -> None:
    wheel = fixture_index_dir / "files" / "alpha-2.0-py3-none-any.whl"
    beta = fixture_index_dir / "files" / "beta-1.5-py3-none-any.whl"
    lock = conda_lock(
        fixture_channel_dir,
        pypi=[artifact_for(wheel, wheel.as_uri()), artifact_for(beta, beta.as_uri())],
        pypi_requested=["alpha"],
    )
    first, second = tmp_path / "a" / "env", tmp_path / "somewhere-else" / "deeper" / "env2"
    _sync(lock, first)
    _sync(lock, second, link_mode=mode)
    _verify_ok(second, lock)
    digest = environment_digest(first)
    assert environment_digest(second) == digest
    shutil.rmtree(default_cache_dir())
    shutil.rmtree(first)
    _sync(lock, first)
    assert environment_digest(first) == digest
    assert normalized_record(b"not json") == b"not json"


# -- mixed conda + PyPI -------------------------------------------------------------------------


def test_mixed_environment(
    tmp_path: Path, fixture_channel_dir: Path, fixture_index_dir: Path
) -> None:
    files = fixture_index_dir / "files"
    wheels = [
        artifact_for(files / name, (files / name).as_uri())
        for name in (
            "alpha-2.0-py3-none-any.whl",
            "beta-1.5-py3-none-any.whl",
            "clicky-8.0-py3-none-any.whl",
        )
    ]
    lock = conda_lock(fixture_channel_dir, pypi=wheels, pypi_requested=["alpha", "clicky"])
    prefix = tmp_path / "env"
    report = _sync(lock, prefix)
    assert "alpha==2.0" in report.installed and "tool-py==2.1.0" in report.installed
    sp = prefix / "lib" / "python3.11" / "site-packages"
    info = sp / "alpha-2.0.dist-info"
    assert (info / "RECORD").is_file() and (info / "INSTALLER").read_text() == "lockenv\n"
    assert (info / "REQUESTED").exists()
    assert not (sp / "beta-1.5.dist-info" / "REQUESTED").exists()
    assert not (prefix / "pyvenv.cfg").exists()
    assert (prefix / "bin" / "clicky").read_text().startswith(f"#!{prefix}/bin/python\n")
    out = _run(prefix, "python", "-c", "import alpha, beta, tool_py; print('ok')")
    assert out.strip() == "ok"
    assert _run(prefix, "clicky").strip() == "clicky ok"
    _verify_ok(prefix, lock)
    state = json.loads((prefix / ".lockenv-state.json").read_text())
    assert state["kind"] == "conda"
    assert state["conda_dist_infos"] == ["tool_py-2.1.0.dist-info"]
    assert state["site_packages"] == "lib/python3.11/site-packages"
    assert is_up_to_date(prefix, lock_sha(lock), "default")
    assert _sync(lock, prefix).no_op
    # A wheel removed by hand: the next sync puts it back.
    shutil.rmtree(sp / "beta-1.5.dist-info")
    assert not is_up_to_date(prefix, lock_sha(lock), "default")
    assert _sync(lock, prefix).installed == ("beta==1.5",)
    _verify_ok(prefix, lock)


def test_venv_to_conda_and_back(
    tmp_path: Path, fixture_channel_dir: Path, fixture_index_dir: Path
) -> None:
    from materializer_support import fixture_lock

    prefix = tmp_path / "env"
    venv_lock = fixture_lock(
        fixture_index_dir, ("alpha-2.0-py3-none-any.whl", "beta-1.5-py3-none-any.whl")
    )
    _sync(venv_lock, prefix)
    assert (prefix / "pyvenv.cfg").exists()
    conda = conda_lock(fixture_channel_dir)
    _sync(conda, prefix)
    assert not (prefix / "pyvenv.cfg").exists()
    _verify_ok(prefix, conda)
    _sync(venv_lock, prefix)
    assert not (prefix / "conda-meta").exists()
    report = verify_environment(prefix, venv_lock, "default", PLATFORM)
    assert report.ok, report.to_json()


def test_activation_env_for_a_conda_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    (prefix / "conda-meta").mkdir(parents=True)
    env = activation_env(prefix, {"PATH": "/usr/bin", "VIRTUAL_ENV": "/v", "PYTHONHOME": "/h"})
    assert env["PATH"] == f"{prefix / 'bin'}{os.pathsep}/usr/bin"
    assert env["CONDA_PREFIX"] == str(prefix)
    assert "VIRTUAL_ENV" not in env and "PYTHONHOME" not in env


def test_plan_knows_conda_records() -> None:
    record = InstalledPackage(
        name="zlib",
        version="1.3.1",
        sha256="z" * 64,
        filename="zlib-1.3.1-h_0.conda",
        dist_info="zlib-1.3.1-h_0.json",
        kind="conda",
    )
    state = EnvState(
        lock_sha256="l" * 64,
        environment="default",
        platform="linux-64",
        prefix="/p",
        lockenv_version="0",
        python_executable="",
        python_version="",
        site_packages="",
        link_mode="hardlink",
        bytecode=False,
        packages=(record,),
        kind="conda",
        conda_dist_infos=("tool_py-2.1.0.dist-info",),
    )
    want = WantedPackage(name="zlib", version="1.3.1", sha256="z" * 64, kind="conda")
    on_disk = ["zlib-1.3.1-h_0.json", "tool_py-2.1.0.dist-info", "byhand-2.0-h_1.json"]
    plan = plan_sync([want], state, on_disk)
    assert plan.unchanged == ("zlib==1.3.1",)
    assert plan.removed == ("byhand==2.0",)
    assert EnvState.from_json(state.to_json()) == state
    assert state.conda_records == ["zlib-1.3.1-h_0.json"]


def _tar_bz2(path: Path, members: dict[str, bytes]) -> CondaArtifact:
    import bz2
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = bz2.compress(buf.getvalue())
    path.write_bytes(blob)
    return CondaArtifact(
        name="bad",
        version="1.0",
        build="0",
        build_number=0,
        subdir="noarch",
        filename=path.name,
        url=path.as_uri(),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )


@pytest.mark.parametrize(
    ("listed", "error", "match"),
    [
        ("../escape", UnsafePathError, "climbs out"),
        ("/etc/passwd", UnsafePathError, "absolute"),
        ("info/index.json", UnsafePathError, "metadata is never installed"),
        ("not-in-package", InstallError, "does not contain"),
    ],
)
def test_paths_json_is_checked(
    tmp_path: Path, fixture_channel_dir: Path, listed: str, error: type[Exception], match: str
) -> None:
    index = {"name": "bad", "version": "1.0", "build": "0", "build_number": 0}
    paths = {
        "paths_version": 1,
        "paths": [{"_path": "a", "path_type": "hardlink"}, {"_path": listed}],
    }
    bad = _tar_bz2(
        tmp_path / "bad-1.0-0.tar.bz2",
        {
            "info/index.json": json.dumps(index).encode(),
            "info/paths.json": json.dumps(paths).encode(),
            "a": b"a\n",
        },
    )
    lock = conda_lock(fixture_channel_dir, (), extra=[bad], requested=[])
    with pytest.raises(error, match=match):
        _sync(lock, tmp_path / "env")
    assert not (tmp_path / "env").exists()
    assert not any((default_cache_dir() / "unpacked").glob("*/*"))


def test_package_without_paths_json(tmp_path: Path, fixture_channel_dir: Path) -> None:
    # Packages from before paths.json: info/files, info/has_prefix, info/no_link.
    index = {"name": "bad", "version": "1.0", "build": "0", "build_number": 0}
    old = _tar_bz2(
        tmp_path / "bad-1.0-0.tar.bz2",
        {
            "info/index.json": json.dumps(index).encode(),
            "info/files": b"etc/a.conf\netc/b\n",
            "info/has_prefix": b"etc/a.conf\n",
            "info/no_link": b"etc/b\n",
            "etc/a.conf": b"root=/opt/anaconda1anaconda2anaconda3\n",
            "etc/b": b"b\n",
        },
    )
    lock = conda_lock(fixture_channel_dir, (), extra=[old], requested=["bad"])
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    assert (prefix / "etc" / "a.conf").read_text() == f"root={prefix}\n"
    assert (prefix / "etc" / "b").stat().st_nlink == 1
    _verify_ok(prefix, lock)


def test_compile_bytecode_with_the_conda_python(tmp_path: Path, fixture_channel_dir: Path) -> None:
    lock = conda_lock(fixture_channel_dir)
    prefix = tmp_path / "env"
    _sync(lock, tmp_path / "plain")
    digest_without = environment_digest(tmp_path / "plain")
    _sync(lock, prefix, compile_bytecode=True)
    pycs = list((prefix / "lib/python3.11/site-packages/tool_py/__pycache__").glob("*.pyc"))
    assert pycs
    _verify_ok(prefix, lock)
    assert environment_digest(prefix) == digest_without  # bytecode is not in the digest
    assert _sync(lock, prefix, compile_bytecode=True).no_op


def _archive_package(
    path: Path, index: dict[str, Any], members: dict[str, bytes], symlinks: dict[str, str]
) -> CondaArtifact:
    """A hand-made .tar.bz2 package (regular files and symlinks), locked by file:// URL."""
    import bz2
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in symlinks.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    blob = bz2.compress(buf.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return CondaArtifact(
        name=index["name"],
        version=index["version"],
        build=index["build"],
        build_number=0,
        subdir=index.get("subdir", "noarch"),
        filename=path.name,
        url=path.as_uri(),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
        noarch=index.get("noarch"),
    )


def _paths_json(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"paths_version": 1, "paths": entries}).encode()


def _free_threading_python(tmp_path: Path, site_packages: object) -> CondaArtifact:
    index = {
        "name": "python",
        "version": "3.13.1",
        "build": "h_0_cp313t",
        "subdir": PLATFORM,
        "python_site_packages_path": site_packages,
    }
    script = (ROOT / "fixtures" / "channel_src" / "files" / "python" / "python.sh").read_bytes()
    return _archive_package(
        tmp_path / "custom" / "python-3.13.1-h_0_cp313t.tar.bz2",
        index,
        {
            "info/index.json": json.dumps(index).encode(),
            "info/paths.json": _paths_json(
                [
                    {"_path": "bin/python3.13t", "path_type": "hardlink"},
                    {"_path": "bin/python", "path_type": "softlink"},
                ]
            ),
            "bin/python3.13t": script,
        },
        {"bin/python": "python3.13t"},
    )


def test_python_site_packages_path_places_noarch_python(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    # CEP 17: a free-threading python says its site-packages is lib/python3.13t/...;
    # noarch: python packages go there, not into lib/python3.13/.
    python = _free_threading_python(tmp_path, "lib/python3.13t/site-packages")
    pure = _custom_package(
        tmp_path,
        "pure",
        [PayloadFile(path="site-packages/pure/__init__.py", kind="hardlink", data=b"X = 1\n")],
        noarch="python",
    )
    lock = conda_lock(fixture_channel_dir, (), extra=[python, pure], requested=["python", "pure"])
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    assert (prefix / "lib" / "python3.13t" / "site-packages" / "pure" / "__init__.py").is_file()
    assert not (prefix / "lib" / "python3.13").exists()
    _verify_ok(prefix, lock)


@pytest.mark.parametrize("bad", ["../outside/site-packages", "/abs/site-packages", 7])
def test_python_site_packages_path_outside_the_prefix_is_refused(
    tmp_path: Path, fixture_channel_dir: Path, bad: object
) -> None:
    python = _free_threading_python(tmp_path, bad)
    lock = conda_lock(fixture_channel_dir, (), extra=[python], requested=["python"])
    with pytest.raises((UnsafePathError, InstallError), match="python_site_packages_path"):
        _sync(lock, tmp_path / "env")
    assert not (tmp_path / "env").exists()


def test_clobbered_file_belongs_to_the_last_package(
    tmp_path: Path, fixture_channel_dir: Path
) -> None:
    # Two packages ship share/common.txt: the later one's copy is in place, the earlier
    # one's is kept under __clobbers__, and both records say so: verify is clean.
    first = _custom_package(
        tmp_path,
        "first",
        [
            PayloadFile(path="share/common.txt", kind="hardlink", data=b"first\n"),
            PayloadFile(path="share/first.txt", kind="hardlink", data=b"1\n"),
        ],
    )
    second = _custom_package(
        tmp_path,
        "second",
        [PayloadFile(path="share/common.txt", kind="hardlink", data=b"second\n")],
        depends=("first",),  # linked after first
    )
    lock = conda_lock(fixture_channel_dir, (), extra=[second, first], requested=["first", "second"])
    prefix = tmp_path / "env"
    _sync(lock, prefix)
    assert (prefix / "share" / "common.txt").read_bytes() == b"second\n"
    assert (prefix / "__clobbers__" / "first" / "share" / "common.txt").read_bytes() == b"first\n"
    records = {p.name: json.loads(p.read_text()) for p in (prefix / "conda-meta").glob("*.json")}
    first_record = records["first-1.0-h_test_0.json"]
    assert "share/common.txt" not in first_record["files"]
    assert "__clobbers__/first/share/common.txt" in first_record["files"]
    moved = [e for e in first_record["paths_data"]["paths"] if e.get("original_path")]
    assert [(e["_path"], e["original_path"]) for e in moved] == [
        ("__clobbers__/first/share/common.txt", "share/common.txt")
    ]
    assert "share/common.txt" in records["second-1.0-h_test_0.json"]["files"]
    _verify_ok(prefix, lock)
    # A changed clobbered copy is drift like any other file.
    copy = prefix / "__clobbers__" / "first" / "share" / "common.txt"
    copy.chmod(0o644)
    copy.unlink()
    copy.write_bytes(b"edited\n")
    report = verify_environment(prefix, lock, "default", PLATFORM)
    assert report.modified == ("__clobbers__/first/share/common.txt",)


@pytest.mark.parametrize("declared", ["softlink", "directory"])
def test_paths_json_type_must_match_the_archive(
    tmp_path: Path, fixture_channel_dir: Path, declared: str
) -> None:
    # paths.json calls the entry a symlink (or directory); the archive holds a regular file.
    index = {"name": "liar", "version": "1.0", "build": "0"}
    liar = _archive_package(
        tmp_path / "custom" / "liar-1.0-0.tar.bz2",
        index,
        {
            "info/index.json": json.dumps(index).encode(),
            "info/paths.json": _paths_json([{"_path": "lib/libx.so", "path_type": declared}]),
            "lib/libx.so": b"",
        },
        {},
    )
    lock = conda_lock(fixture_channel_dir, (), extra=[liar], requested=["liar"])
    with pytest.raises(InstallError, match=f"calls 'lib/libx.so' a {declared}"):
        _sync(lock, tmp_path / "env")
    assert not (tmp_path / "env").exists()
