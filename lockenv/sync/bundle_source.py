"""A bundle as a source of artifacts for a sync: finding it beside a lock, reading its
``bundle.json``.  The format is described in `lockenv.reports.bundle`, which writes it.

Standard library only: `bundle_for_lock` runs on the no-op sync path, and the fetch
stage (`lockenv.sync.fetch`) reads the bundle when artifacts are missing from the cache.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lockenv.errors import LockfileError, UsageError
from lockenv.limits import MAX_METADATA, read_capped

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "LOCK_IN_BUNDLE",
    "MANIFEST_NAME",
    "Bundle",
    "BundledArtifact",
    "bundle_for_lock",
    "is_plain_name",
    "read_bundle",
]

BUNDLE_FORMAT = "lockenv-bundle"
BUNDLE_VERSION = 1
MANIFEST_NAME = "bundle.json"
LOCK_IN_BUNDLE = "lockenv.lock"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class BundledArtifact:
    """One artifact file of a bundle; ``path`` is relative to the bundle, POSIX style."""

    filename: str
    sha256: str
    size: int
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A complete bundle directory, as its ``bundle.json`` describes it."""

    root: Path
    lockenv_version: str
    environments: tuple[str, ...]
    platforms: tuple[str, ...]
    artifacts: Mapping[str, BundledArtifact]  # sha256 -> artifact
    # Wheels built from the lock's sdists and git sources (listed among the artifacts):
    # "<sdist sha256 or git source>/<interpreter>-<platform>" -> the wheel's sha256.
    built: Mapping[str, str] = field(default_factory=dict)

    def path_of(self, sha256: str) -> Path | None:
        """The file of the artifact with this content, or None when the bundle lacks it
        (not listed, or the file is missing: then the sync reports it as missing)."""
        entry = self.artifacts.get(sha256)
        if entry is None:
            return None
        path = self.root.joinpath(*PurePosixPath(entry.path).parts)
        return path if path.is_file() else None


def bundle_for_lock(lock_path: Path, explicit: Path | None = None) -> Path | None:
    """The bundle a sync of ``lock_path`` takes artifacts from: ``explicit`` (checked to
    be a complete bundle directory), else the lock's directory when it holds a
    ``bundle.json``, else None.  Only stats files: it runs on the no-op sync path."""
    if explicit is not None:
        if explicit.is_file() and explicit.name.endswith(".tar"):
            raise UsageError(
                f"--bundle {str(explicit)!r} is a tar file: extract it first "
                f"(`tar -xf {explicit.name}`) and pass the directory"
            )
        if not (explicit / MANIFEST_NAME).is_file():
            raise UsageError(
                f"--bundle {str(explicit)!r} is not a complete lockenv bundle (it has no "
                f"{MANIFEST_NAME}); write one with `lockenv bundle OUT`"
            )
        return Path(os.path.abspath(explicit))
    directory = Path(os.path.abspath(lock_path)).parent
    return directory if (directory / MANIFEST_NAME).is_file() else None


def read_bundle(root: Path) -> Bundle:
    """Read ``root/bundle.json``; raises LockfileError naming every problem in it."""
    source = root / MANIFEST_NAME
    try:
        data = json.loads(read_capped(source, MAX_METADATA, "bundle index").decode("utf-8"))
    except FileNotFoundError:
        raise LockfileError(
            f"{str(source)!r} does not exist: {str(root)!r} is not a complete bundle; "
            "write it again with `lockenv bundle`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LockfileError(
            f"{str(source)!r} is not readable JSON ({exc}); write the bundle again with "
            "`lockenv bundle`"
        ) from None
    problems: list[str] = []
    if not isinstance(data, dict):
        data = {}
        problems.append("the top level is not an object")
    if data.get("format") != BUNDLE_FORMAT and not problems:
        problems.append(f"format: expected {BUNDLE_FORMAT!r}, got {data.get('format')!r}")
    if data.get("version") != BUNDLE_VERSION and not problems:
        raise LockfileError(
            f"{str(source)!r} has bundle format version {data.get('version')!r}, this "
            f"lockenv reads version {BUNDLE_VERSION}; write the bundle with this lockenv"
        )
    artifacts: dict[str, BundledArtifact] = {}
    items = data.get("artifacts", [])
    if not isinstance(items, list):
        problems.append("artifacts: not a list")
        items = []
    for i, item in enumerate(items):
        entry = _artifact_from_dict(item, f"artifacts[{i}]", problems)
        if entry is not None:
            artifacts[entry.sha256] = entry
    built: dict[str, str] = {}
    raw_built = data.get("built", [])
    for i, item in enumerate(raw_built if isinstance(raw_built, list) else [None]):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("source", "target", "sha256")
        ):
            problems.append(f"built[{i}]: expected {{source, target, sha256}}")
        elif item["sha256"] not in artifacts:
            problems.append(f"built[{i}].sha256: {item['sha256']!r} is not among the artifacts")
        else:
            built[f"{item['source']}/{item['target']}"] = item["sha256"]
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise LockfileError(
            f"{str(source)!r} is not a valid bundle manifest: {shown}; write the bundle "
            "again with `lockenv bundle`"
        )
    return Bundle(
        root=Path(os.path.abspath(root)),
        lockenv_version=str(data.get("lockenv-version", "")),
        environments=tuple(str(e) for e in data.get("environments", [])),
        platforms=tuple(str(p) for p in data.get("platforms", [])),
        artifacts=artifacts,
        built=built,
    )


def _artifact_from_dict(item: Any, where: str, problems: list[str]) -> BundledArtifact | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: not an object")
        return None
    filename, sha256, size, path = (item.get(k) for k in ("filename", "sha256", "size", "path"))
    before = len(problems)
    if not isinstance(filename, str) or not is_plain_name(filename):
        problems.append(f"{where}.filename: {filename!r} is not a file name")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        problems.append(f"{where}.sha256: {sha256!r} is not a sha256 hex digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append(f"{where}.size: {size!r} is not a size in bytes")
    if not isinstance(path, str) or not _is_inside(path):
        # Taken from a file someone handed us: it must stay inside the bundle.
        problems.append(f"{where}.path: {path!r} is not a relative path inside the bundle")
    if len(problems) > before:
        return None
    assert isinstance(filename, str) and isinstance(sha256, str)
    assert isinstance(size, int) and isinstance(path, str)
    return BundledArtifact(filename=filename, sha256=sha256, size=size, path=path)


def is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _is_inside(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        bool(parts)
        and not path.startswith("/")
        and "\\" not in path
        and ":" not in path
        and "\0" not in path
        and all(part not in ("..", ".") for part in parts)
    )
