"""lockenv.sync.conda.archive: streamed, safe unpacking of .conda and .tar.bz2 packages."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import re
import stat
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.build_channel import load_packages
from lockenv.errors import InstallError, MetadataError, UnsafePathError
from lockenv.sync.conda.archive import (
    extract_package,
    package_format,
    read_index_json,
    read_info_files,
)

FORMATS = [".conda", ".tar.bz2"]
INDEX = {"name": "evil", "version": "1.0", "build": "0", "build_number": 0, "depends": []}
PACKAGES = sorted({f"{spec.subdir}/{spec.stem}" for spec in load_packages()})
needs_symlinks = pytest.mark.skipif(
    sys.platform == "win32", reason="symlinks need privileges on Windows"
)

# A member: (name, kind, data) with kind file | exec | dir | symlink | hardlink | chr | fifo;
# data is the file content or the link target.
Member = tuple[str, str, bytes | str]


def _tar(members: list[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 315532800
            payload = None
            if kind in ("file", "exec"):
                assert isinstance(data, bytes)
                info.size = len(data)
                info.mode = 0o755 if kind == "exec" else 0o644
                payload = io.BytesIO(data)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                assert isinstance(data, str)
                info.linkname = data
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "setuid":
                assert isinstance(data, bytes)
                info.size, info.mode, payload = len(data), 0o6777, io.BytesIO(data)
            archive.addfile(info, payload)
    return buf.getvalue()


def _info_members(index: dict[str, Any] | None = None) -> list[Member]:
    return [("info/index.json", "file", json.dumps(index or INDEX).encode())]


def make_package(
    path: Path,
    payload: list[Member],
    *,
    info: list[Member] | None = None,
    metadata: bytes | None = b'{"conda_pkg_format_version": 2}',
) -> Path:
    """A package at ``path`` (format from its suffix) with ``payload`` after ``info/``."""
    info = _info_members() if info is None else info
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".tar.bz2"):
        path.write_bytes(bz2.compress(_tar(info + payload)))
        return path
    stem = path.name.removesuffix(".conda")
    zstd = zstandard.ZstdCompressor(level=3)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        if metadata is not None:
            archive.writestr("metadata.json", metadata)
        archive.writestr(f"pkg-{stem}.tar.zst", zstd.compress(_tar(payload)))
        if info:
            archive.writestr(f"info-{stem}.tar.zst", zstd.compress(_tar(info)))
    return path


def _tree(root: Path) -> dict[str, tuple[str, bytes | str, bool]]:
    """Every entry under ``root``: kind, content or link target, executable bit."""
    out: dict[str, tuple[str, bytes | str, bool]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path), False)
        elif path.is_dir():
            out[rel] = ("dir", b"", False)
        else:
            out[rel] = ("file", path.read_bytes(), os.access(path, os.X_OK))
    return out


def _outside_entries(tmp_path: Path, dest: Path) -> list[Path]:
    return [
        p for p in tmp_path.rglob("*") if dest not in p.parents and p != dest and p.name != "pkg"
    ]


# --- the fixture channel's packages ---------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_both_formats_unpack_to_the_same_tree(
    fixture_channel_dir: Path, tmp_path: Path, package: str
) -> None:
    trees = []
    for fmt in FORMATS:
        dest = tmp_path / fmt.lstrip(".")
        extract_package(fixture_channel_dir / f"{package}{fmt}", dest)
        trees.append(_tree(dest))
    assert trees[0] == trees[1]
    assert "info/index.json" in trees[0] and "info/paths.json" in trees[0]


@pytest.mark.parametrize("package", PACKAGES)
def test_paths_json_matches_unpacked_files(
    fixture_channel_dir: Path, tmp_path: Path, package: str
) -> None:
    extract_package(fixture_channel_dir / f"{package}.conda", tmp_path)
    paths = json.loads((tmp_path / "info/paths.json").read_bytes())
    assert paths["paths_version"] == 1
    listed = (tmp_path / "info/files").read_text().splitlines()
    assert listed == [p["_path"] for p in paths["paths"] if p["path_type"] != "directory"]
    payload = {
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if not p.is_dir() or p.is_symlink()
    } - {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "info").iterdir()}
    assert payload == set(listed)
    for entry in paths["paths"]:
        path = tmp_path / entry["_path"]
        if entry["path_type"] == "directory":
            assert path.is_dir() and not path.is_symlink()
            continue
        if entry["path_type"] == "softlink":
            assert path.is_symlink()
        else:
            assert entry["path_type"] == "hardlink" and path.is_file() and not path.is_symlink()
        # Placeholder files are hashed as built, before any prefix replacement.
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["_path"]
        assert len(data) == entry["size_in_bytes"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_index_json_matches_unpacked(
    fixture_channel_dir: Path, tmp_path: Path, fmt: str
) -> None:
    archive = fixture_channel_dir / f"linux-64/zlib-1.3.1-h_lockenv_0{fmt}"
    index = read_index_json(archive)
    assert index["name"] == "zlib" and index["depends"] == ["libzlib 1.3.1 *_0"]
    extract_package(archive, tmp_path)
    assert json.loads((tmp_path / "info/index.json").read_bytes()) == index


@pytest.mark.parametrize("fmt", FORMATS)
def test_read_info_files(fixture_channel_dir: Path, fmt: str) -> None:
    archive = fixture_channel_dir / f"noarch/tool-py-2.1.0-pyh_lockenv_0{fmt}"
    found = read_info_files(archive, ["info/link.json", "./info/index.json", "info/missing"])
    assert set(found) == {"info/link.json", "info/index.json"}
    assert json.loads(found["info/link.json"])["noarch"]["type"] == "python"


def test_read_index_json_reads_only_the_info_member(tmp_path: Path) -> None:
    path = make_package(tmp_path / "evil-1.0-0.conda", [("a", "file", b"x")])
    # Damage the payload member: the info fast path never looks at it.
    stem = "evil-1.0-0"
    with zipfile.ZipFile(path) as src:
        members = {n: src.read(n) for n in src.namelist()}
    members[f"pkg-{stem}.tar.zst"] = b"not zstd at all"
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    assert read_index_json(path) == INDEX
    with pytest.raises(InstallError, match=re.escape("cannot unpack 'evil-1.0-0.conda'")):
        extract_package(path, tmp_path / "dest")


# --- what a package may contain -------------------------------------------------------


@needs_symlinks
@pytest.mark.parametrize("fmt", FORMATS)
def test_links_inside_are_kept(tmp_path: Path, fmt: str) -> None:
    archive = make_package(
        tmp_path / f"ok-1.0-0{fmt}",
        [
            ("./lib/libz.so.1.3", "exec", b"\x7fELF"),
            ("lib/libz.so", "symlink", "libz.so.1.3"),
            ("lib64", "symlink", "lib"),
            ("bin/up", "symlink", "../lib/libz.so"),
            ("bin/dot", "symlink", "."),
            ("lib/copy.so", "hardlink", "lib/libz.so.1.3"),
            ("share/empty", "dir", ""),
        ],
    )
    dest = tmp_path / "dest"
    extract_package(archive, dest)
    assert os.readlink(dest / "lib/libz.so") == "libz.so.1.3"
    assert (dest / "bin/up").read_bytes() == b"\x7fELF"
    assert (dest / "lib64").is_symlink() and (dest / "lib64/libz.so.1.3").is_file()
    assert (dest / "lib/copy.so").read_bytes() == b"\x7fELF"
    assert os.access(dest / "lib/libz.so.1.3", os.X_OK)
    assert (dest / "share/empty").is_dir()
    assert (dest / "info/index.json").is_file()


@pytest.mark.parametrize("fmt", FORMATS)
def test_modes_and_duplicates(tmp_path: Path, fmt: str) -> None:
    archive = make_package(
        tmp_path / f"ok-1.0-0{fmt}",
        [("bin/tool", "setuid", b"v1"), ("a.txt", "file", b"old"), ("a.txt", "file", b"new")],
    )
    dest = tmp_path / "dest"
    extract_package(archive, dest)
    mode = stat.S_IMODE((dest / "bin/tool").stat().st_mode)
    assert mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022) == 0
    assert (dest / "a.txt").read_bytes() == b"new"  # a later member wins, as with tar


UNSAFE: list[tuple[str, list[Member], str]] = [
    ("dotdot", [("../evil", "file", b"x")], "'..'"),
    ("nested-dotdot", [("a/../../evil", "file", b"x")], "'..'"),
    ("backslash-dotdot", [("a\\..\\..\\evil", "file", b"x")], "'..'"),
    ("absolute", [("/tmp/evil", "file", b"x")], "absolute"),
    ("drive", [("C:/evil", "file", b"x")], "absolute"),
    ("symlink-up", [("lib/link", "symlink", "../../evil")], "outside"),
    ("symlink-absolute", [("link", "symlink", "/etc/passwd")], "absolute"),
    ("symlink-dotdot-root", [("link", "symlink", "..")], "outside"),
    ("symlink-empty", [("link", "symlink", "")], "empty target"),
    (
        "write-through-symlink",
        [("real", "dir", ""), ("via", "symlink", "real"), ("via/evil", "file", b"x")],
        "through the symlink",
    ),
    (
        "symlink-chain",
        # deep/up points at the root (fine), z then climbs one more level through it.
        [("deep/x", "file", b""), ("deep/up", "symlink", ".."), ("z", "symlink", "deep/up/..")],
        "resolves outside",
    ),
    ("hardlink-up", [("link", "hardlink", "../evil")], "'..'"),
    ("hardlink-absolute", [("link", "hardlink", "/etc/passwd")], "absolute"),
    ("hardlink-missing", [("link", "hardlink", "nothing")], "not an earlier file"),
    ("hardlink-to-symlink", [("s", "symlink", "a"), ("link", "hardlink", "s")], "not an earlier"),
    ("char-device", [("dev/null", "chr", b"")], "device"),
    ("fifo", [("pipe", "fifo", b"")], "FIFO"),
    ("file-over-dir", [("d/x", "file", b""), ("d", "file", b"x")], "replace a directory"),
    ("dir-under-file", [("f", "file", b""), ("f/x", "file", b"")], "it is a file"),
]


@needs_symlinks
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("case", "members", "why"), UNSAFE, ids=[c[0] for c in UNSAFE])
def test_unsafe_members_are_refused(
    tmp_path: Path, fmt: str, case: str, members: list[Member], why: str
) -> None:
    archive = make_package(tmp_path / "pkg" / f"evil-1.0-0{fmt}", members)
    dest = tmp_path / "out" / "dest"
    with pytest.raises(UnsafePathError) as caught:
        extract_package(archive, dest)
    message = str(caught.value)
    assert f"'evil-1.0-0{fmt}'" in message
    assert why in message
    assert repr(members[-1][0]) in message or repr(members[0][0]) in message
    escaped = [p for p in (tmp_path / "out").iterdir() if p != dest]
    assert escaped == []


def test_unsafe_info_member_is_refused(tmp_path: Path) -> None:
    info = [*_info_members(), ("info/../../evil", "file", b"x")]
    archive = make_package(tmp_path / "pkg" / "evil-1.0-0.conda", [], info=info)
    with pytest.raises(UnsafePathError, match=re.escape("info/../../evil")):
        extract_package(archive, tmp_path / "dest")


def test_existing_symlink_in_dest_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    if sys.platform == "win32":
        pytest.skip("symlinks need privileges on Windows")
    (dest / "lib").symlink_to(outside)
    archive = make_package(tmp_path / "evil-1.0-0.tar.bz2", [("lib/x", "file", b"x")])
    with pytest.raises(UnsafePathError, match="through the symlink 'lib'"):
        extract_package(archive, dest)
    assert list(outside.iterdir()) == []


# --- damaged and foreign archives -----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_archive(tmp_path: Path, fmt: str, fixture_channel_dir: Path) -> None:
    data = (fixture_channel_dir / f"linux-64/libzlib-1.3.1-h_lockenv_0{fmt}").read_bytes()
    path = tmp_path / f"libzlib-1.3.1-h_lockenv_0{fmt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InstallError, match=re.escape("cannot unpack 'libzlib-1.3.1-h_lockenv_0")):
        extract_package(path, tmp_path / "dest")
    with pytest.raises((MetadataError, InstallError)):
        read_index_json(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_garbage_archive(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"junk-1.0-0{fmt}"
    path.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(InstallError, match=re.escape("junk-1.0-0")):
        extract_package(path, tmp_path / "dest")
    with pytest.raises(MetadataError, match=re.escape("junk-1.0-0")):
        read_index_json(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_or_bad_index_json(tmp_path: Path, fmt: str) -> None:
    missing = make_package(tmp_path / f"a-1.0-0{fmt}", [], info=[("info/files", "file", b"")])
    with pytest.raises(MetadataError, match=re.escape("has no info/index.json")):
        read_index_json(missing)
    bad = make_package(
        tmp_path / f"b-1.0-0{fmt}", [], info=[("info/index.json", "file", b"[1, 2]")]
    )
    with pytest.raises(MetadataError, match="not a JSON object"):
        read_index_json(bad)


def test_unknown_conda_format_version(tmp_path: Path) -> None:
    path = make_package(
        tmp_path / "new-1.0-0.conda", [], metadata=b'{"conda_pkg_format_version": 3}'
    )
    with pytest.raises(InstallError, match="conda_pkg_format_version 3"):
        extract_package(path, tmp_path / "dest")


def test_conda_without_info_member(tmp_path: Path) -> None:
    path = make_package(tmp_path / "x-1.0-0.conda", [("a", "file", b"")], info=[])
    with pytest.raises(InstallError, match=re.escape("no info-*.tar.zst member")):
        extract_package(path, tmp_path / "dest")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a-1-0.conda", ".conda"), ("a-1-0.tar.bz2", ".tar.bz2"), ("dir/a.conda", ".conda")],
)
def test_package_format(name: str, expected: str) -> None:
    assert package_format(Path(name)) == expected


@pytest.mark.parametrize("name", ["a-1-0.whl", "a-1-0.tar.gz", "a-1-0.zip", "conda"])
def test_package_format_refuses_other_files(name: str) -> None:
    with pytest.raises(InstallError, match=re.escape("expected a '.conda' or '.tar.bz2'")):
        package_format(Path(name))


# --- property -------------------------------------------------------------------------

# Mostly harmless pieces, so that many generated archives unpack and get checked too.
_component = st.sampled_from(["a", "b", "c.txt"] * 4 + ["..", ".", "", "\\..", "C:"])
_name = st.builds(
    lambda lead, parts: lead + "/".join(parts),
    st.sampled_from([""] * 6 + ["/", "./", "\\"]),
    st.lists(_component, min_size=1, max_size=5),
)
_member = st.one_of(
    st.tuples(_name, st.just("file"), st.just(b"data")),
    st.tuples(_name, st.just("symlink"), _name),
    st.tuples(_name, st.just("dir"), st.just(b"")),
)


@needs_symlinks
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(members=st.lists(_member, min_size=1, max_size=6))
def test_nothing_ever_lands_outside(
    tmp_path_factory: pytest.TempPathFactory, members: list[Member]
) -> None:
    base = tmp_path_factory.mktemp("prop")
    archive = make_package(base / "pkg" / "p-1.0-0.tar.bz2", members)
    dest = base / "out" / "dest"
    try:
        extract_package(archive, dest)
    except UnsafePathError:
        pass
    else:
        root = os.path.realpath(dest)
        for path in Path(dest).rglob("*"):
            real = os.path.realpath(path)
            assert real == root or real.startswith(root + os.sep)
    assert [p for p in (base / "out").iterdir() if p != dest] == []
