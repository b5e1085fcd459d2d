"""Conda packages: unpacked once into the cache, then linked into a prefix as conda links them.

Unpacking (`unpack_conda`) extracts the verified archive with
`lockenv.sync.conda.archive.extract_package` into ``pkg/`` (conda's "extracted package
directory": ``info/`` plus the payload), reads ``info/index.json``, ``info/paths.json``
(or the older ``info/files``, ``has_prefix`` and ``no_link``) and ``info/link.json``,
checks every listed path, makes the files read-only (environments hardlink them), and
writes ``manifest.json`` beside ``pkg/`` with what linking needs.

Linking (`install_conda_package`) places each path of ``paths.json`` into the prefix:

- regular files are hardlinked (copied across filesystems, or with ``--link-mode``),
  but a file with a prefix placeholder, or marked ``no_link``, is always a private copy;
- the placeholder is replaced by the FINAL prefix (the package is linked into a staging
  directory, so the path written is not where the file is): in ``text`` files as plain
  text, in ``binary`` files inside each NUL-terminated string, keeping the length and
  padding with NUL bytes (a prefix longer than the placeholder cannot fit: refused);
- softlinks are recreated as symlinks, checked to stay inside the prefix;
- ``noarch: python`` packages are relocated: ``site-packages/`` into the environment's
  ``lib/pythonX.Y/site-packages`` and ``python-scripts/`` into ``bin/``, and their
  entry points (``info/link.json``) become console launchers for ``<prefix>/bin/python``;
- then ``conda-meta/<name>-<version>-<build>.json`` records what was done.

Two packages may ship the same file ("clobbering").  The one linked later wins, as with
conda; the earlier one's copy is moved to ``__clobbers__/<name>/<path>`` and its record
rewritten to list it there (with ``original_path``, as rattler records it), so every
record describes exactly the files it owns and ``verify`` right after ``sync`` is clean.

Package scripts (``bin/.<name>-post-link.sh`` and friends) are linked like any file
(they are part of the package) but never run: lockenv runs no package code.  The
caller is told which packages have them.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lockenv.errors import InstallError, UnsafePathError
from lockenv.limits import MAX_METADATA, read_capped
from lockenv.lockfile import CondaArtifact
from lockenv.sync.conda.archive import extract_package
from lockenv.sync.conda.placeholders import (
    PrefixRewrite,
    replace_binary_prefix,
    replace_text_prefix,
)
from lockenv.sync.conda.prefix_record import (
    CONDA_META,
    LINK_TYPES,
    dump_record,
    prefix_record,
    record_name,
)
from lockenv.sync.guard import PrefixGuard
from lockenv.sync.launchers import launcher_script
from lockenv.sync.venv import EnvLayout

__all__ = [
    "CLOBBERS_DIR",
    "ClobberRegistry",
    "CondaFile",
    "InstalledConda",
    "UnpackedConda",
    "conda_destinations",
    "conda_dist_infos",
    "conda_launchers",
    "digest_in_prefix",
    "install_conda_package",
    "load_unpacked_conda",
    "replace_binary_prefix",
    "replace_text_prefix",
    "unpack_conda",
]

MANIFEST = "manifest.json"
#: Where a file that a later package replaced is kept (rattler's directory name).
CLOBBERS_DIR = "__clobbers__"
PKG = "pkg"
_MANIFEST_FORMAT = 2  # 2: python_site_packages_path (CEP 17)
_IS_WINDOWS = sys.platform == "win32"
# conda-build's placeholder for has_prefix lines that name none (old packages).
_LEGACY_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
_DRIVE = re.compile(r"^[A-Za-z]:")
_PACKAGE_SCRIPT = re.compile(
    r"^(?:bin|Scripts)/\.(?P<name>.+)-(?P<kind>pre-link|post-link|pre-unlink)\.(?:sh|bat)$"
)
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class CondaFile(NamedTuple):
    """One ``paths.json`` entry of an unpacked package.

    A NamedTuple rather than a frozen dataclass: a warm sync loads one per file.
    """

    path: str  # package-relative, POSIX
    path_type: str  # "hardlink" (a regular file), "softlink" or "directory"
    sha256: str  # hex; "" when unknown (directories, dangling links)
    size: int  # -1 when unknown
    executable: bool
    placeholder: str  # "" when the file has none
    file_mode: str  # "text" | "binary" | "" (no placeholder)
    no_link: bool
    target: str  # softlinks: the link text


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackedConda:
    """A conda package unpacked in the cache."""

    filename: str
    directory: Path  # conda's extracted package dir: info/ + payload
    name: str
    version: str
    build: str
    noarch: str | None  # "python" | "generic" | None
    entry_points: tuple[tuple[str, str], ...]  # (script name, "module:function")
    files: tuple[CondaFile, ...]
    # CEP 17, from a python package's info/index.json: its site-packages relative to the
    # prefix (``lib/python3.13t/site-packages``); "" when it does not say.
    python_site_packages_path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledConda:
    """What linking one package produced."""

    record: str  # conda-meta record file name
    files: tuple[str, ...]  # prefix-relative paths (not directories)
    package_scripts: tuple[str, ...]  # kinds of package scripts it has ("post-link"), not run


# -- unpacking -------------------------------------------------------------------------


def _broken(filename: str, why: str) -> InstallError:
    return InstallError(f"{filename}: {why}; the package is broken, do not install it")


def _safe_path(path: object, filename: str, where: str = "info/paths.json lists") -> str:
    """``path`` (from paths.json) normalized, if it stays inside the package."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise UnsafePathError(f"{filename}: {where} the path {path!r}")
    if path.startswith("/") or _DRIVE.match(path) or "\\" in path:
        raise UnsafePathError(
            f"{filename}: {where} the absolute or non-POSIX path {path!r}; "
            "refusing to install this package (it is broken or malicious)"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePathError(
            f"{filename}: {where} {path!r}, which climbs out of the prefix; "
            "refusing to install this package (it is broken or malicious)"
        )
    return "/".join(parts)


def _read_json(path: Path, filename: str) -> Any:
    try:
        return json.loads(read_capped(path, MAX_METADATA, "package metadata file"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise _broken(filename, f"{path.parent.name}/{path.name} is unreadable: {exc}") from None


def _read_lines(path: Path, filename: str) -> list[str]:
    try:
        text = read_capped(path, MAX_METADATA, "package metadata file").decode("utf-8")
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise _broken(filename, f"{path.parent.name}/{path.name} is unreadable: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _legacy_paths(info: Path, filename: str) -> list[dict[str, Any]]:
    """paths.json entries rebuilt from the pre-2017 ``files``, ``has_prefix``, ``no_link``."""
    placeholders: dict[str, tuple[str, str]] = {}
    for line in _read_lines(info / "has_prefix", filename):
        try:
            parts = [p.strip("\"'") for p in shlex.split(line, posix=False)]
        except ValueError:
            raise _broken(filename, f"info/has_prefix line {line!r} is malformed") from None
        if len(parts) == 1:
            placeholders[parts[0]] = (_LEGACY_PLACEHOLDER, "text")
        elif len(parts) == 3:
            placeholders[parts[2]] = (parts[0], parts[1])
        else:
            raise _broken(filename, f"info/has_prefix line {line!r} is malformed")
    no_link = set(_read_lines(info / "no_link", filename))
    entries: list[dict[str, Any]] = []
    for path in _read_lines(info / "files", filename):
        entry: dict[str, Any] = {"_path": path}
        if path in placeholders:
            entry["prefix_placeholder"], entry["file_mode"] = placeholders[path]
        if path in no_link:
            entry["no_link"] = True
        entries.append(entry)
    return entries


def _noarch(index: dict[str, Any], link: Any) -> str | None:
    if isinstance(link, dict) and isinstance(link.get("noarch"), dict):
        kind = link["noarch"].get("type")
        if isinstance(kind, str):
            return kind
    value = index.get("noarch")
    if isinstance(value, str) and value:
        return value
    if index.get("noarch_python") is True:  # conda-build 2 spelling
        return "python"
    return None


def _entry_points(link: Any, filename: str) -> tuple[tuple[str, str], ...]:
    raw = link.get("noarch", {}).get("entry_points", []) if isinstance(link, dict) else []
    if not isinstance(raw, list):
        raise _broken(filename, "info/link.json noarch.entry_points is not a list")
    found = []
    for item in raw:
        name, sep, reference = str(item).partition("=")
        name, reference = name.strip(), reference.strip()
        if not sep or not _ENTRY_NAME.match(name) or name in (".", ".."):
            raise UnsafePathError(
                f"{filename}: entry point {item!r} in info/link.json is not "
                "'name = module:function' with a plain script name; refusing to install it"
            )
        launcher_script("/python", reference)  # raises InstallError when not module:function
        found.append((name, reference))
    return tuple(found)


def _describe(pkg_dir: str, entry: dict[str, Any], filename: str) -> CondaFile:
    path = _safe_path(entry.get("_path"), filename)
    declared = str(entry.get("path_type", "hardlink"))
    full = os.path.join(pkg_dir, *path.split("/"))
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        if declared == "directory":
            return CondaFile(path, "directory", "", -1, False, "", "", False, "")
        raise _broken(
            filename, f"info/paths.json lists {path!r}, which it does not contain"
        ) from None
    placeholder = entry.get("prefix_placeholder") or ""
    file_mode = entry.get("file_mode") or ("text" if placeholder else "")
    if not isinstance(placeholder, str) or file_mode not in ("", "text", "binary"):
        raise _broken(filename, f"{path!r} has prefix placeholder mode {file_mode!r}")
    if "\0" in placeholder or "\n" in placeholder:
        # Never in a real package; the streamed rewrite relies on it (see .placeholders).
        raise _broken(filename, f"{path!r} has the prefix placeholder {placeholder!r}")
    raw_sha, raw_size = entry.get("sha256"), entry.get("size_in_bytes")
    sha256: str = raw_sha if isinstance(raw_sha, str) else ""
    size: int = raw_size if isinstance(raw_size, int) and not isinstance(raw_size, bool) else -1
    if stat.S_ISLNK(st.st_mode):
        return CondaFile(path, "softlink", sha256, size, False, "", "", False, os.readlink(full))
    if stat.S_ISDIR(st.st_mode):
        return CondaFile(path, "directory", "", -1, False, "", "", False, "")
    if declared in ("softlink", "directory"):
        # What paths.json says is what conda and verify will check later: a "symlink" that
        # is a regular file would install, then fail every verify (rattler refuses it too).
        raise _broken(
            filename,
            f"info/paths.json calls {path!r} a {declared}, but the archive holds a regular file",
        )
    if not sha256 or size < 0:  # old packages: hash what paths.json does not say
        with open(full, "rb") as fh:
            sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        size = st.st_size
    return CondaFile(
        path,
        "hardlink",
        sha256,
        size,
        bool(st.st_mode & 0o111),
        placeholder if file_mode else "",
        file_mode if placeholder else "",
        bool(entry.get("no_link", False)),
        "",
    )


def _python_site_packages_path(index: dict[str, Any], filename: str) -> str:
    """CEP 17's ``python_site_packages_path`` of index.json, checked to stay in the prefix."""
    value = index.get("python_site_packages_path")
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _broken(filename, f"info/index.json python_site_packages_path is {value!r}")
    return _safe_path(value, filename, "info/index.json python_site_packages_path is")


def unpack_conda(
    archive: Path, work: Path, *, filename: str, artifact: CondaArtifact
) -> UnpackedConda:
    """Unpack the (already hash-checked) package ``archive`` into the empty dir ``work``.

    Writes ``work/pkg/`` (info/ and the payload; regular files read-only) and
    ``work/manifest.json``.  The package must be the locked one (name, version, build).
    """
    pkg_dir = work / PKG
    extract_package(archive, pkg_dir)
    info = pkg_dir / "info"
    index = _read_json(info / "index.json", filename)
    if not isinstance(index, dict):
        raise _broken(filename, "info/index.json is missing or not a JSON object")
    found = (str(index.get("name")), str(index.get("version")), str(index.get("build")))
    wanted = (artifact.name, artifact.version, artifact.build)
    if found != wanted:
        raise InstallError(
            f"{filename}: contains {'-'.join(found)!r}, not the locked "
            f"{'-'.join(wanted)!r}; the artifact does not match the lock"
        )
    link = _read_json(info / "link.json", filename)
    noarch = _noarch(index, link)
    paths_doc = _read_json(info / "paths.json", filename)
    if paths_doc is None:
        entries = _legacy_paths(info, filename)
    elif isinstance(paths_doc, dict) and isinstance(paths_doc.get("paths"), list):
        entries = paths_doc["paths"]
    else:
        raise _broken(filename, "info/paths.json has no 'paths' list")
    files: list[CondaFile] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise _broken(filename, f"info/paths.json entry {entry!r} is not an object")
        item = _describe(str(pkg_dir), entry, filename)
        if item.path in seen:
            raise _broken(filename, f"info/paths.json lists {item.path!r} twice")
        if item.path == "info" or item.path.startswith("info/"):
            raise UnsafePathError(
                f"{filename}: info/paths.json lists {item.path!r}: package metadata is never "
                "installed; refusing to install this package"
            )
        seen.add(item.path)
        files.append(item)
    for item in files:
        if item.path_type == "hardlink":
            full = os.path.join(pkg_dir, *item.path.split("/"))
            # Environments hardlink these: a write through one must not change the cache.
            os.chmod(full, stat.S_IMODE(os.lstat(full).st_mode) & ~0o222)
    unpacked = UnpackedConda(
        filename=filename,
        directory=pkg_dir,
        name=artifact.name,
        version=artifact.version,
        build=artifact.build,
        noarch=noarch,
        entry_points=_entry_points(link, filename) if noarch == "python" else (),
        files=tuple(files),
        python_site_packages_path=_python_site_packages_path(index, filename),
    )
    data = {
        "format": _MANIFEST_FORMAT,
        "filename": filename,
        "name": unpacked.name,
        "version": unpacked.version,
        "build": unpacked.build,
        "noarch": noarch,
        "entry_points": [list(ep) for ep in unpacked.entry_points],
        "files": [list(f) for f in files],
        "python_site_packages_path": unpacked.python_site_packages_path,
    }
    (work / MANIFEST).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    return unpacked


def load_unpacked_conda(directory: Path) -> UnpackedConda | None:
    """The package unpacked in ``directory``, or None when the entry is absent or unusable."""
    try:
        data = json.loads(read_capped(directory / MANIFEST, MAX_METADATA, "cache manifest"))
        if data.get("format") != _MANIFEST_FORMAT or not (directory / PKG).is_dir():
            return None
        return UnpackedConda(
            filename=str(data["filename"]),
            directory=directory / PKG,
            name=str(data["name"]),
            version=str(data["version"]),
            build=str(data["build"]),
            noarch=data["noarch"],
            entry_points=tuple((str(n), str(r)) for n, r in data["entry_points"]),
            files=tuple(
                CondaFile(str(p), str(t), str(h), int(s), bool(x), str(ph), str(m), bool(n), str(g))
                for p, t, h, s, x, ph, m, n, g in data["files"]
            ),
            python_site_packages_path=str(data["python_site_packages_path"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# -- linking -------------------------------------------------------------------------------


class ClobberRegistry:
    """Which package owns each path linked so far into one environment.

    `claim` is called before a package places a path: when an earlier package placed it,
    that package's copy moves to ``__clobbers__/<name>/<path>`` and its record (kept here
    since `register`) is changed to say so; `write_changed` then rewrites those records.
    """

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}  # prefix-relative path -> record file name
        self._records: dict[str, tuple[str, dict[str, Any]]] = {}  # record -> (name, doc)
        self._changed: set[str] = set()

    def claim(self, guard: PrefixGuard, dest: str, record: str) -> None:
        """``record``'s package is about to place ``dest``: move an earlier owner's aside."""
        owner = self._owner.get(dest)
        self._owner[dest] = record
        if owner is None or owner == record or owner not in self._records:
            return
        name, doc = self._records[owner]
        moved = f"{CLOBBERS_DIR}/{name}/{dest}"
        if not guard.exists(dest):
            return
        guard.makedirs(moved.rpartition("/")[0], what=record)
        guard.move(dest, moved, what=record)
        doc["files"] = sorted(moved if f == dest else f for f in doc.get("files", []))
        for entry in doc.get("paths_data", {}).get("paths", []):
            if entry.get("_path") == dest:
                entry["_path"] = moved
                entry["original_path"] = dest
        doc["paths_data"]["paths"].sort(key=lambda e: str(e["_path"]))
        self._changed.add(owner)

    def register(self, record: str, name: str, doc: dict[str, Any]) -> None:
        """The record just written for package ``name`` (changed later if it loses a path)."""
        self._records[record] = (name, doc)

    def write_changed(self, guard: PrefixGuard) -> list[str]:
        """Rewrite the records of packages that lost a path; their file names."""
        for record in sorted(self._changed):
            data = dump_record(self._records[record][1])
            meta = f"{CONDA_META}/{record}"
            guard.write(meta, data, executable=False, what=record, internal=True)
        return sorted(self._changed)


def _destination(path: str, pkg: UnpackedConda, layout: EnvLayout) -> str:
    if pkg.noarch == "python":
        head, _, rest = path.partition("/")
        if head == "site-packages" and rest:
            return f"{layout.site_packages_rel}/{rest}"
        if head == "python-scripts" and rest:
            return f"{layout.scripts_rel}/{rest}"
    return path


def conda_destinations(pkg: UnpackedConda, layout: EnvLayout) -> list[tuple[CondaFile, str]]:
    """Where each ``paths.json`` entry of ``pkg`` goes, prefix-relative (``noarch: python``
    packages relocated)."""
    return [(item, _destination(item.path, pkg, layout)) for item in pkg.files]


def conda_launchers(pkg: UnpackedConda, layout: EnvLayout) -> list[tuple[str, bytes]]:
    """``(prefix-relative path, content)`` of the console launchers a ``noarch: python``
    package's entry points become."""
    return [
        (
            f"{layout.scripts_rel}/{name}-script.py"
            if _IS_WINDOWS
            else f"{layout.scripts_rel}/{name}",
            launcher_script(layout.prefix_python, reference),
        )
        for name, reference in pkg.entry_points
    ]


def digest_in_prefix(
    item: CondaFile, source: Path, layout: EnvLayout, filename: str
) -> tuple[str, int]:
    """``(sha256, size)`` of the file ``item`` (at ``source`` in the cache) once linked into
    ``layout``: its prefix placeholder replaced by the final prefix, streamed."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as fh:
        for piece in _rewriter(item, layout, filename, item.path).chunks(fh):
            digest.update(piece)
            size += len(piece)
    return digest.hexdigest(), size


def _check_link_target(dest: str, target: str, filename: str) -> None:
    if not target or "\0" in target or target.startswith(("/", "\\")) or _DRIVE.match(target):
        raise UnsafePathError(
            f"{filename}: {dest!r} is a symlink to {target!r}, outside the prefix; "
            "refusing to install this package (it is broken or malicious)"
        )
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(dest), target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafePathError(
            f"{filename}: {dest!r} is a symlink to {target!r}, outside the prefix; "
            "refusing to install this package (it is broken or malicious)"
        )


def _rewriter(item: CondaFile, layout: EnvLayout, filename: str, dest: str) -> PrefixRewrite:
    """What replaces ``item``'s placeholder by ``layout``'s final prefix."""
    placeholder = item.placeholder.encode("utf-8")
    prefix = str(layout.prefix)
    if item.file_mode == "binary":
        new = os.fsencode(prefix)
        if len(new) > len(placeholder):
            raise InstallError(
                f"{filename}: {dest!r} holds the prefix in binary strings of "
                f"{len(placeholder)} bytes, and the prefix {prefix!r} is {len(new)} bytes; "
                f"choose a prefix of at most {len(placeholder)} bytes"
            )
        return PrefixRewrite(placeholder, new, "binary")
    if _IS_WINDOWS:
        # conda writes forward slashes into text files: no backslash escapes to worry about.
        prefix = prefix.replace("\\", "/")
    return PrefixRewrite(placeholder, os.fsencode(prefix), "text")


def _write_rewritten(
    guard: PrefixGuard, item: CondaFile, src: str, dest: str, layout: EnvLayout, what: str
) -> str | None:
    """Write ``src`` to ``dest`` with its placeholder replaced, a chunk at a time; the
    sha256 of what was written when it differs from the source, else None."""
    rewrite = _rewriter(item, layout, what, dest)
    with open(src, "rb") as fh:
        sha256, _ = guard.write_chunks(
            dest, rewrite.chunks(fh), executable=item.executable, what=what
        )
    return sha256 if rewrite.changed else None


def install_conda_package(
    pkg: UnpackedConda,
    artifact: CondaArtifact,
    layout: EnvLayout,
    guard: PrefixGuard,
    *,
    requested_spec: str,
    tarball: Path,
    clobbers: ClobberRegistry | None = None,
) -> InstalledConda:
    """Link the unpacked ``pkg`` into ``layout.root`` (for ``layout.prefix``) and write its
    ``conda-meta`` record.  ``tarball`` is the archive in the cache (recorded as conda does).
    Every entry is created through ``guard`` (rooted at ``layout.root``): it stays inside
    the tree whatever symlinks this or earlier packages placed.

    A later package replaces a file an earlier one placed (conda's "clobber"), never by
    writing through it; with ``clobbers``, the earlier copy is kept aside and its record
    updated (call `ClobberRegistry.write_changed` after the last package).  Raises
    InstallError / UnsafePathError naming the package.
    """
    if pkg.noarch == "python" and not layout.python_version:
        raise InstallError(
            f"{pkg.filename} is a noarch: python package, but the environment has no conda "
            "`python` package to install it for; add python to [dependencies] and lock again"
        )
    what = pkg.filename
    record = record_name(artifact)
    placed = conda_destinations(pkg, layout)
    entry_points = conda_launchers(pkg, layout)
    parents = {dest.rpartition("/")[0] for item, dest in placed if item.path_type != "directory"}
    parents.update(dest.rpartition("/")[0] for dest, _ in entry_points)
    parents.update(dest for item, dest in placed if item.path_type == "directory")
    parents.add(CONDA_META)
    try:
        for parent in sorted(p for p in parents if p):
            guard.makedirs(parent, what=what)
    except OSError as exc:
        raise InstallError(
            f"{pkg.filename}: cannot create a directory in the environment ({exc}); another "
            "package has a file where this one needs a directory"
        ) from None

    paths: list[dict[str, Any]] = []
    files: list[str] = []
    source_dir = str(pkg.directory)
    for item, dest in placed:
        entry: dict[str, Any] = {"_path": dest, "path_type": item.path_type}
        if item.sha256:
            entry["sha256"] = item.sha256
        if item.size >= 0:
            entry["size_in_bytes"] = item.size
        try:
            if item.path_type == "directory":
                paths.append(entry)
                continue
            if clobbers is not None:
                clobbers.claim(guard, dest, record)
            if item.path_type == "softlink":
                _check_link_target(dest, item.target, pkg.filename)
                guard.symlink(item.target, dest, what=what)
            else:
                src = os.path.join(source_dir, *item.path.split("/"))
                if item.placeholder:
                    in_prefix = _write_rewritten(guard, item, src, dest, layout, what)
                    entry["prefix_placeholder"] = item.placeholder
                    entry["file_mode"] = item.file_mode
                    if in_prefix is not None:
                        entry["sha256_in_prefix"] = in_prefix
                elif item.no_link:
                    guard.copy(src, dest, executable=item.executable, what=what)
                else:
                    guard.place(src, dest, executable=item.executable, what=what)
                if item.no_link:
                    entry["no_link"] = True
        except FileNotFoundError as exc:
            raise InstallError(
                f"{pkg.filename}: the unpacked cache entry is damaged ({exc}); run "
                "`lockenv cache clean` and sync again"
            ) from None
        except (IsADirectoryError, FileExistsError):
            raise InstallError(
                f"{pkg.filename}: {dest!r} is a directory in the environment (made by another "
                "package); the two packages conflict"
            ) from None
        paths.append(entry)
        files.append(dest)

    for dest, content in entry_points:
        if clobbers is not None:
            clobbers.claim(guard, dest, record)
        guard.write(dest, content, executable=True, what=what)
        digest = hashlib.sha256(content).hexdigest()
        kind = "windows_python_entry_point_script" if _IS_WINDOWS else "unix_python_entry_point"
        # Only the hash in the prefix: the launcher names the prefix, so nothing about it
        # is the same in another environment.
        paths.append({"_path": dest, "path_type": kind, "sha256_in_prefix": digest})
        files.append(dest)

    doc = prefix_record(
        artifact,
        noarch=pkg.noarch,
        files=files,
        paths=paths,
        link_type=LINK_TYPES[guard.linker.mode],
        requested_spec=requested_spec,
        extracted_package_dir=pkg.directory,
        tarball=tarball,
    )
    guard.write(
        f"{CONDA_META}/{record}", dump_record(doc), executable=False, what=what, internal=True
    )
    if clobbers is not None:
        clobbers.register(record, pkg.name, doc)
    scripts = sorted({m["kind"] for m in map(_PACKAGE_SCRIPT.match, files) if m is not None})
    return InstalledConda(record=record, files=tuple(sorted(files)), package_scripts=tuple(scripts))


def conda_dist_infos(files: Iterable[str], site_packages_rel: str) -> set[str]:
    """The ``*.dist-info`` directories directly in site-packages among ``files``."""
    head = site_packages_rel + "/"
    found = set()
    for path in files:
        if path.startswith(head):
            top = path[len(head) :].split("/", 1)[0]
            if top.endswith(".dist-info"):
                found.add(top)
    return found
