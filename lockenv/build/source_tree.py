"""Source trees: an sdist unpacked safely, and what its ``[build-system]`` asks for.

An sdist comes from an index, a URL or a bundle; it is hash-checked before it gets here,
but its member paths are still refused when they would land outside the directory it
is unpacked into (absolute paths, ``..``, links pointing out, devices).
"""

from __future__ import annotations

import os
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lockenv.errors import BuildError, UnsafePathError

__all__ = ["BuildSystem", "read_build_system", "unpack_sdist"]

# What pip and uv assume for a tree without [build-system] (PEP 517's legacy fallback).
_LEGACY_REQUIRES = ("setuptools>=40.8.0",)
_LEGACY_BACKEND = "setuptools.build_meta:__legacy__"


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildSystem:
    """A source tree's ``[build-system]`` (PEP 517/518), defaults applied."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


def read_build_system(tree: Path, label: str) -> BuildSystem:
    """The build system of the source tree ``tree``; ``label`` names it in errors."""
    pyproject = tree / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not (tree / "setup.py").is_file():
            raise BuildError(
                f"{label}: neither pyproject.toml nor setup.py at the top of the source tree; "
                "it cannot be built"
            ) from None
        return BuildSystem(requires=_LEGACY_REQUIRES, backend=_LEGACY_BACKEND)
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"{label}: cannot read pyproject.toml: {exc}") from None
    try:
        table = tomllib.loads(text).get("build-system")
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{label}: pyproject.toml is not valid TOML: {exc}") from None
    if table is None:
        return BuildSystem(requires=_LEGACY_REQUIRES, backend=_LEGACY_BACKEND)
    if not isinstance(table, dict):
        raise BuildError(f"{label}: pyproject.toml: [build-system] is not a table")
    requires = table.get("requires")
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise BuildError(
            f"{label}: pyproject.toml: build-system.requires must be a list of strings "
            f"(PEP 518), got {requires!r}"
        )
    backend = table.get("build-backend", _LEGACY_BACKEND)
    backend_path = table.get("backend-path", [])
    if not isinstance(backend, str) or not backend.strip():
        raise BuildError(f"{label}: pyproject.toml: build-system.build-backend {backend!r}")
    if not isinstance(backend_path, list) or not all(isinstance(p, str) for p in backend_path):
        raise BuildError(f"{label}: pyproject.toml: build-system.backend-path {backend_path!r}")
    for entry in backend_path:
        # PEP 517: in-tree backends stay in the tree.
        inside = os.path.normpath(os.path.join(tree, entry))
        if os.path.commonpath([inside, os.path.normpath(tree)]) != os.path.normpath(tree):
            raise BuildError(
                f"{label}: pyproject.toml: backend-path {entry!r} points outside the source tree"
            )
    return BuildSystem(
        requires=tuple(requires), backend=backend.strip(), backend_path=tuple(backend_path)
    )


def unpack_sdist(archive: Path, dest: Path, *, label: str) -> Path:
    """Unpack the sdist ``archive`` (.tar.gz or .zip) into the empty directory ``dest``.

    Returns the source tree: the single top-level directory, as PEP 517 sdists have it
    (``name-version/``), else ``dest`` itself.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            _unzip(archive, dest, label)
        else:
            with tarfile.open(archive, "r:*") as tar:
                _untar(tar, dest, label)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BuildError(f"{label}: not a readable source archive ({exc})") from None
    entries = os.listdir(dest)
    if len(entries) == 1 and (dest / entries[0]).is_dir():
        return dest / entries[0]
    return dest


def _check_member(name: str, label: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise UnsafePathError(
            f"{label}: member {name!r} would be written outside the directory it is unpacked "
            "into; refusing this archive (it is broken or malicious)"
        )
    return "/".join(parts)


def _untar(tar: tarfile.TarFile, dest: Path, label: str) -> None:
    members = []
    for member in tar.getmembers():
        _check_member(member.name, label)
        if member.issym() or member.islnk():
            target = member.linkname
            base = os.path.dirname(member.name) if member.issym() else ""
            _check_member(os.path.join(base, target) if target else "", label)
        elif not (member.isfile() or member.isdir()):
            continue  # devices, fifos: never part of a source tree
        members.append(member)
    # The "data" filter (Python 3.12, and 3.11.4+) re-checks all of the above and drops
    # set-uid bits and odd permissions.
    tar.extractall(dest, members=members, filter="data")


def _unzip(archive: Path, dest: Path, label: str) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            rel = _check_member(info.filename, label)
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if mode & 0o111:
                os.chmod(target, 0o755)
