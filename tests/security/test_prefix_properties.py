"""Property: whatever the archives hold, a sync creates nothing outside its prefix.

Hypothesis generates several packages — conda packages (``.tar.bz2`` and ``.conda``) whose
members are files, directories, symlinks to anywhere (``..`` chains, absolute paths into
a victim directory, links through earlier links) and tar hard links, and wheels with
hostile member paths, symlink members and ``.data`` schemes — locks them together in one
environment, links them with a random link mode, and asserts that, whether the sync
succeeds or refuses, nothing outside the environment changed, the cache's unpacked
trees still match their seals, and every symlink in the environment leads inside it.
"""

from __future__ import annotations

import bz2
import contextlib
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lockenv.cache import check_entry
from lockenv.errors import LockenvError
from lockenv.lockfile import Artifact, CondaArtifact

from hostile import PLATFORM, PYTHON_XY, Sandbox, fixture_conda, lock_of, outside_snapshot, sync
from materializer_support import artifact_for, build_wheel, conda_archive_artifact

pytestmark = pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="symlinks, and the fixture python package, need a unix platform",
)

OUT = "@OUT@"  # replaced by the sandbox's victim directory
_SAFE = ["a", "b", "lnk", "sub", "bin", "lib", "python", "site-packages", "x.txt"]
_safe_rel = st.lists(st.sampled_from(_SAFE), min_size=1, max_size=4).map("/".join)
_hostile_rel = st.lists(st.sampled_from([*_SAFE, "..", "."]), min_size=1, max_size=5).map("/".join)
# Mostly plain paths, so that most packages get past their own checks and it is the
# links of several packages together that have to be caught.
_rel = st.one_of(_safe_rel, _safe_rel, _safe_rel, _safe_rel, _safe_rel, _hostile_rel)
_target = st.one_of(
    _safe_rel,
    st.tuples(st.integers(0, 3), _safe_rel).map(lambda t: "../" * t[0] + t[1]),
    st.sampled_from([OUT, f"{OUT}/keep.txt", "/", ".", "..", "../../..", "../../../../outside"]),
    st.integers(1, 8).map(lambda n: "../" * n + "outside"),
)
_member = st.one_of(
    st.tuples(st.just("file"), _rel, st.binary(max_size=16)),
    st.tuples(st.just("dir"), _rel, st.just(b"")),
    st.tuples(st.just("symlink"), _rel, _target.map(str.encode)),
    st.tuples(st.just("hardlink"), _rel, _rel.map(str.encode)),
)
_conda = st.tuples(
    st.lists(_member, min_size=1, max_size=6), st.sampled_from([".tar.bz2", ".conda"])
)
_wheel = st.tuples(
    st.lists(
        st.tuples(
            st.one_of(
                _rel,
                _rel.map(lambda p: f"@DATA@/data/{p}"),
                _rel.map(lambda p: f"@DATA@/scripts/{p}"),
            ),
            st.binary(max_size=8),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda f: f[0],
    ),
    st.lists(st.tuples(_rel, _target), max_size=2, unique_by=lambda f: f[0]),
)


def _resolve(text: str, outside: Path) -> str:
    return text.replace(OUT, str(outside))


def _conda_archive(
    directory: Path,
    name: str,
    members: list[tuple[str, str, bytes]],
    fmt: str,
    depends: list[str],
    outside: Path,
) -> CondaArtifact:
    """A conda package whose tar members are exactly ``members`` (hostile ones too) and
    whose paths.json describes them."""
    from fixtures.build_channel import _tar, _zip, _zstd  # the fixture builder's containers

    buf = io.BytesIO()
    paths = []
    index = {
        "name": name,
        "version": "1.0",
        "build": "h_0",
        "build_number": 0,
        "subdir": "noarch",
        "noarch": "generic",
        "depends": depends,
    }
    info = {
        "info/index.json": json.dumps(index).encode(),
    }
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, data in members:
            member = tarfile.TarInfo(path)
            if kind == "file":
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
                paths.append(
                    {
                        "_path": path,
                        "path_type": "hardlink",
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size_in_bytes": len(data),
                    }
                )
            elif kind == "dir":
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
                paths.append({"_path": path, "path_type": "directory"})
            elif kind == "symlink":
                member.type = tarfile.SYMTYPE
                member.linkname = _resolve(data.decode(), outside)
                tar.addfile(member)
                paths.append({"_path": path, "path_type": "softlink"})
            else:
                member.type = tarfile.LNKTYPE
                member.linkname = data.decode()
                tar.addfile(member)
                paths.append({"_path": path, "path_type": "hardlink"})
        info["info/paths.json"] = json.dumps({"paths": paths, "paths_version": 1}).encode()
        for info_path, data in info.items():
            member = tarfile.TarInfo(info_path)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    payload = buf.getvalue()
    if fmt == ".tar.bz2":
        archive = bz2.compress(payload)
    else:
        archive = _zip(
            [
                ("metadata.json", b'{"conda_pkg_format_version": 2}'),
                (f"pkg-{name}-1.0-h_0.tar.zst", _zstd(payload)),
                (f"info-{name}-1.0-h_0.tar.zst", _zstd(_tar(info, []))),
            ]
        )
    path = directory / f"{name}-1.0-h_0{fmt}"
    path.write_bytes(archive)
    return conda_archive_artifact(path, name, "1.0", "h_0", depends=depends, noarch="generic")


def _links_stay_inside(prefix: Path, cache: Path) -> None:
    root = os.path.realpath(prefix)
    venv = (prefix / "pyvenv.cfg").is_file()
    for dirpath, dirnames, filenames in os.walk(prefix):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if venv and dirpath == str(prefix / "bin") and name.startswith("python"):
                continue  # a virtual environment's interpreter is the host's
            if os.path.islink(path):
                real = os.path.realpath(path)
                inside = real == root or real.startswith(root + os.sep)
                into_cache = real.startswith(os.path.realpath(cache) + os.sep)
                assert inside or into_cache, (path, os.readlink(path))


@contextlib.contextmanager
def _sandbox() -> Iterator[Sandbox]:
    with tempfile.TemporaryDirectory(prefix="lockenv-prop-") as tmp:
        yield Sandbox.make(Path(tmp) / "box")


@settings(
    max_examples=int(os.environ.get("LOCKENV_PROPERTY_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    conda=st.lists(_conda, min_size=0, max_size=3),
    wheels=st.lists(_wheel, min_size=0, max_size=2),
    link_mode=st.sampled_from(["hardlink", "copy", "symlink"]),
)
def test_nothing_is_ever_created_outside_the_prefix(
    fixture_channel_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    conda: list[tuple[list[tuple[str, str, bytes]], str]],
    wheels: list[tuple[list[tuple[str, bytes]], list[tuple[str, str]]]],
    link_mode: str,
) -> None:
    if not conda and not wheels:
        return
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)
    with _sandbox() as box:
        pkgs = box.root / "pkgs"
        pkgs.mkdir()
        artifacts: list[Artifact] = []
        previous: list[str] = []
        for i, (members, fmt) in enumerate(conda):
            name = f"p{i}"
            artifacts.append(_conda_archive(pkgs, name, members, fmt, previous[-1:], box.outside))
            previous.append(name)
        for i, (files, links) in enumerate(wheels):
            wheel = build_wheel(
                pkgs,
                f"w{i}",
                "1.0",
                {path.replace("@DATA@", f"w{i}-1.0.data"): data for path, data in files},
                symlinks={path: _resolve(target, box.outside) for path, target in links},
            )
            artifacts.append(artifact_for(wheel, wheel.as_uri(), index=None))
        if conda and wheels:
            artifacts.append(fixture_conda(fixture_channel_dir, "python-3.11.7"))
        lock = lock_of(artifacts, python=None if conda else PYTHON_XY)
        before = outside_snapshot(box)
        try:
            sync(lock, box, link_mode=link_mode)
        except LockenvError as exc:
            event(f"refused: {type(exc).__name__}")
            assert not box.prefix.exists()
        else:
            event("synced")
            _links_stay_inside(box.prefix, box.cache)
        assert outside_snapshot(box) == before
        for entry in (box.cache / "unpacked").glob("*/*"):
            assert check_entry(entry) == "ok", entry
