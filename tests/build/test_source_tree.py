"""lockenv.build.source_tree: sdists unpacked safely, [build-system] read with PEP 517 defaults."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from lockenv.build.source_tree import BuildSystem, read_build_system, unpack_sdist
from lockenv.errors import BuildError, UnsafePathError


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def test_unpack_returns_the_single_top_directory(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "demo-1.0.tar.gz",
        {"demo-1.0/pyproject.toml": b"[project]\n", "demo-1.0/demo/__init__.py": b""},
    )
    tree = unpack_sdist(archive, tmp_path / "out", label="demo")
    assert tree == tmp_path / "out" / "demo-1.0"
    assert (tree / "demo" / "__init__.py").is_file()


def test_unpack_zip(tmp_path: Path) -> None:
    archive = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("demo-1.0/setup.py", "")
        info = zipfile.ZipInfo("demo-1.0/run.sh")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
    tree = unpack_sdist(archive, tmp_path / "out", label="demo")
    assert (tree / "setup.py").is_file() and (tree / "run.sh").stat().st_mode & 0o100


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"../evil.py": b"x"}, None),
        ({"/etc/evil": b"x"}, None),
        ({"demo-1.0/../../evil": b"x"}, None),
        ({"demo-1.0/a": b"x"}, {"demo-1.0/link": "../../outside"}),
        ({"demo-1.0/a": b"x"}, {"demo-1.0/abs": "/etc/passwd"}),
    ],
)
def test_unpack_refuses_members_outside_the_tree(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None
) -> None:
    archive = _tar(tmp_path / "demo-1.0.tar.gz", members, links)
    with pytest.raises(UnsafePathError, match="outside the directory"):
        unpack_sdist(archive, tmp_path / "out", label="demo-1.0.tar.gz")
    assert not (tmp_path / "evil.py").exists() and not (tmp_path.parent / "evil").exists()


def test_unpack_refuses_zip_members_outside_the_tree(tmp_path: Path) -> None:
    archive = tmp_path / "demo-1.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.py", "x")
    with pytest.raises(UnsafePathError):
        unpack_sdist(archive, tmp_path / "out", label="demo-1.0.zip")


def test_unreadable_archive(tmp_path: Path) -> None:
    archive = tmp_path / "demo-1.0.tar.gz"
    archive.write_bytes(b"not a tarball")
    with pytest.raises(BuildError, match="not a readable source archive"):
        unpack_sdist(archive, tmp_path / "out", label="demo-1.0.tar.gz")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"pyproject.toml": '[build-system]\nrequires = ["flit_core"]\nbuild-backend = "x.y"\n'},
            BuildSystem(requires=("flit_core",), backend="x.y"),
        ),
        (
            {
                "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "b"\n'
                'backend-path = ["."]\n'
            },
            BuildSystem(requires=(), backend="b", backend_path=(".",)),
        ),
        # PEP 517's fallback, as pip and uv apply it: no [build-system], or no pyproject.toml.
        (
            {"pyproject.toml": "[project]\nname = 'x'\n"},
            BuildSystem(
                requires=("setuptools>=40.8.0",), backend="setuptools.build_meta:__legacy__"
            ),
        ),
        (
            {"setup.py": ""},
            BuildSystem(
                requires=("setuptools>=40.8.0",), backend="setuptools.build_meta:__legacy__"
            ),
        ),
        (
            {"pyproject.toml": "[build-system]\nrequires = []\n"},
            BuildSystem(requires=(), backend="setuptools.build_meta:__legacy__"),
        ),
    ],
)
def test_read_build_system(tmp_path: Path, files: dict[str, str], expected: BuildSystem) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert read_build_system(tmp_path, "demo") == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[build-system]\nrequires = 'setuptools'\n", "must be a list of strings"),
        ("[build-system\n", "not valid TOML"),
        ('[build-system]\nrequires = []\nbackend-path = ["../x"]\n', "outside the source tree"),
        ('[build-system]\nrequires = []\nbuild-backend = ""\n', "build-backend"),
    ],
)
def test_bad_build_system(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(BuildError, match=error):
        read_build_system(tmp_path, "demo")


def test_tree_without_build_files(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"neither pyproject\.toml nor setup\.py"):
        read_build_system(tmp_path, "demo")
