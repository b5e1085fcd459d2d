"""``conda-meta/``: what a conda prefix records about its packages, written as conda does.

One ``conda-meta/<name>-<version>-<build>.json`` per package (conda's ``PrefixRecord``):
the repodata fields of the package, ``files`` (prefix-relative paths), ``paths_data``
(per path: ``path_type``, ``sha256``, ``size_in_bytes``, ``sha256_in_prefix`` for files
whose prefix placeholder was replaced, ``file_mode``, ``prefix_placeholder``,
``no_link``), ``link`` (``source`` and ``type``: 1 hardlink, 2 softlink, 3 copy),
``requested_spec``, ``extracted_package_dir`` and ``package_tarball_full_path``; plus
``conda-meta/history``.  conda, mamba and micromamba read these to list, verify and
update the environment.

Some fields name this machine (cache paths, the sync time, hashes of files holding the
prefix): `normalized_record` and `normalized_history` leave them out, so an environment
digest does not depend on them.

Standard library only: read on the verify path.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockenv import __version__
from lockenv.errors import UnsafePathError
from lockenv.limits import MAX_METADATA, read_capped
from lockenv.lockfile import CondaArtifact

__all__ = [
    "CONDA_META",
    "HISTORY",
    "LINK_TYPES",
    "PrefixPath",
    "PrefixRecord",
    "channel_url",
    "dump_record",
    "history_text",
    "normalized_history",
    "normalized_record",
    "prefix_record",
    "read_prefix_records",
    "record_name",
    "requested_specs",
]

CONDA_META = "conda-meta"
HISTORY = f"{CONDA_META}/history"
# conda's LinkType numbering, by lockenv link mode.
LINK_TYPES = {"hardlink": 1, "symlink": 2, "copy": 3}
# Fields that name this machine or this prefix rather than what is installed.
_VOLATILE = frozenset({"extracted_package_dir", "package_tarball_full_path", "link"})
_VOLATILE_PATH_KEYS = frozenset({"sha256_in_prefix"})
_SPEC_NAME = re.compile(r"[\s=<>!~\[]")


def record_name(artifact: CondaArtifact) -> str:
    """``<name>-<version>-<build>.json``; UnsafePathError if that is no plain file name."""
    name = f"{artifact.name}-{artifact.version}-{artifact.build}.json"
    if any(c in name for c in "/\\\0:") or name.startswith("."):
        raise UnsafePathError(
            f"{artifact.filename}: {name!r} (name-version-build) is not a plain file name; "
            "the lock is broken: run `lockenv lock`"
        )
    return name


def channel_url(artifact: CondaArtifact) -> str:
    """The channel subdirectory URL the package came from, as conda records ``channel``
    (without credentials or token)."""
    from lockenv.urls import redact_url

    return redact_url(artifact.url.rsplit("/", 1)[0])


def _redacted(url: str) -> str:
    from lockenv.urls import redact_url

    return redact_url(url)


def requested_specs(conda_requirements: Iterable[str]) -> dict[str, str]:
    """The manifest's conda MatchSpecs by package name (``"python 3.11.*"`` → python)."""
    specs: dict[str, str] = {}
    for text in conda_requirements:
        bare = text.split("::")[-1].strip()
        name = _SPEC_NAME.split(bare, maxsplit=1)[0].lower()
        if name:
            specs[name] = text
    return specs


def prefix_record(
    artifact: CondaArtifact,
    *,
    noarch: str | None,
    files: Sequence[str],
    paths: Sequence[Mapping[str, Any]],
    link_type: int,
    requested_spec: str,
    extracted_package_dir: Path,
    tarball: Path,
) -> dict[str, Any]:
    """The ``conda-meta`` record of one installed package, as a JSON-able dict."""
    record: dict[str, Any] = {
        "name": artifact.name,
        "version": artifact.version,
        "build": artifact.build,
        "build_number": artifact.build_number,
        "channel": channel_url(artifact),
        "subdir": artifact.subdir,
        "fn": artifact.filename,
        "url": _redacted(artifact.url),
        "sha256": artifact.sha256,
        "size": artifact.size,
        "depends": list(artifact.depends),
        "constrains": list(artifact.constrains),
        "track_features": " ".join(artifact.track_features),
        "files": sorted(files),
        "paths_data": {
            "paths_version": 1,
            "paths": sorted((dict(p) for p in paths), key=lambda p: str(p["_path"])),
        },
        "link": {"source": str(extracted_package_dir), "type": link_type},
        "requested_spec": requested_spec,
        "requested_specs": [requested_spec] if requested_spec else [],
        "extracted_package_dir": str(extracted_package_dir),
        "package_tarball_full_path": str(tarball),
    }
    optional = {
        "md5": artifact.md5,
        "license": artifact.license,
        "timestamp": artifact.timestamp,
        "noarch": noarch or artifact.noarch,
    }
    record.update({k: v for k, v in optional.items() if v is not None})
    return record


def dump_record(record: Mapping[str, Any]) -> bytes:
    """The bytes of a record file (sorted keys, two-space indent, as conda writes them)."""
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")


def history_text(
    artifacts: Sequence[CondaArtifact], specs: Iterable[str], *, when: float | None = None
) -> str:
    """``conda-meta/history`` for a prefix created with ``artifacts``, as one transaction."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    lines = [f"==> {stamp} <==", "# cmd: lockenv sync", f"# lockenv version: {__version__}"]
    lines += sorted(
        f"+{_redacted(a.channel) if a.channel else channel_url(a)}::{a.name}-{a.version}-{a.build}"
        for a in artifacts
    )
    listed = sorted(specs)
    if listed:
        # A Python list literal: what conda writes and what `conda env export
        # --from-history` parses.
        lines.append(f"# update specs: {listed!r}")
    return "\n".join(lines) + "\n"


def normalized_history(data: bytes) -> bytes:
    """History without its time stamps (for a digest)."""
    return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"==>"))


def normalized_record(data: bytes) -> bytes:
    """A record without the fields that name this machine or prefix (for a digest).

    Files whose placeholder was replaced are hashed on their own (with the prefix
    normalised), so their ``sha256_in_prefix`` is left out here; so are the cache paths
    and the link type (which depends on the filesystems, not on what is installed).
    """
    try:
        doc = json.loads(data)
    except ValueError:
        return data
    if not isinstance(doc, dict):
        return data
    for key in _VOLATILE:
        doc.pop(key, None)
    paths = (
        doc.get("paths_data", {}).get("paths") if isinstance(doc.get("paths_data"), dict) else None
    )
    if isinstance(paths, list):
        for entry in paths:
            if isinstance(entry, dict):
                for key in _VOLATILE_PATH_KEYS:
                    entry.pop(key, None)
    return json.dumps(doc, sort_keys=True).encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixPath:
    """One ``paths_data`` entry of an installed record, as verify needs it."""

    path: str  # prefix-relative, POSIX, checked to stay inside
    path_type: str
    sha256: str | None  # what the file in the prefix should hash to (hex)
    size: int | None  # its size, when known (not for rewritten files)
    original_path: str | None = None  # a clobbered file kept aside: where it was linked


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefixRecord:
    """A ``conda-meta/*.json`` record, read back."""

    file: str  # record file name
    name: str
    version: str
    build: str
    sha256: str | None
    fn: str | None
    paths: tuple[PrefixPath, ...]
    problems: tuple[str, ...] = ()

    @classmethod
    def unreadable(cls, file: str, problem: str) -> PrefixRecord:
        """A record that could not be read: verify reports ``problem``."""
        return cls(
            file=file,
            name="",
            version="",
            build="",
            sha256=None,
            fn=None,
            paths=(),
            problems=(problem,),
        )


def _inside(path: str) -> str | None:
    if (
        not path
        or "\0" in path
        or "\\" in path
        or path.startswith("/")
        or re.match(r"^[A-Za-z]:", path)
    ):
        return None
    joined = posixpath.normpath(path)
    if joined in ("", ".", "..") or joined.startswith("../"):
        return None
    return joined


def _parse_record(file: str, doc: Any) -> PrefixRecord:
    where = f"{CONDA_META}/{file}"
    if not isinstance(doc, dict):
        return PrefixRecord.unreadable(file, f"{where} is not a JSON object")
    problems: list[str] = []
    paths: list[PrefixPath] = []
    paths_data = doc.get("paths_data")
    entries = paths_data.get("paths") if isinstance(paths_data, dict) else None
    if not isinstance(entries, list):
        # Old records list files only: each must exist, nothing more is known.
        entries = [{"_path": f, "path_type": "hardlink"} for f in doc.get("files", []) or []]
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("_path"), str):
            problems.append(f"{where} has a malformed paths_data entry {entry!r}")
            continue
        rel = _inside(entry["_path"])
        if rel is None:
            problems.append(f"{where} lists {entry['_path']!r}, outside the prefix")
            continue
        in_prefix = entry.get("sha256_in_prefix")
        sha = in_prefix if isinstance(in_prefix, str) else entry.get("sha256")
        size = entry.get("size_in_bytes") if in_prefix is None else None
        original = entry.get("original_path")
        paths.append(
            PrefixPath(
                path=rel,
                path_type=str(entry.get("path_type", "hardlink")),
                sha256=sha if isinstance(sha, str) else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                original_path=_inside(original) if isinstance(original, str) else None,
            )
        )
    return PrefixRecord(
        file=file,
        name=str(doc.get("name", "")),
        version=str(doc.get("version", "")),
        build=str(doc.get("build", "")),
        sha256=doc.get("sha256") if isinstance(doc.get("sha256"), str) else None,
        fn=doc.get("fn") if isinstance(doc.get("fn"), str) else None,
        paths=tuple(paths),
        problems=tuple(problems),
    )


def read_prefix_records(prefix: Path) -> list[PrefixRecord]:
    """Every ``conda-meta/*.json`` record of the prefix (unreadable ones carry problems)."""
    directory = os.path.join(prefix, CONDA_META)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except OSError:
        return []
    records = []
    for name in names:
        try:
            path = os.path.join(directory, name)
            doc = json.loads(read_capped(path, MAX_METADATA, "conda-meta record"))
        except (OSError, ValueError) as exc:
            records.append(
                PrefixRecord.unreadable(name, f"{CONDA_META}/{name} is unreadable: {exc}")
            )
            continue
        records.append(_parse_record(name, doc))
    return records
