"""The lockfile model: ``lockenv.lock`` read, validated and written deterministically.

The file is YAML, written only by lockenv.  Layout (``schemas/lockfile.schema.json``)::

    version: 1
    lockenv-version: 0.1.0
    inputs: {platforms, channels, indexes, find-links, requires-python,
             system-requirements, exclude-newer, exclude-newer-span}
    environments:
      <env>:
        base-environment: {path, python, site-packages, digest, conda, pypi}   # if any
        python: '3.11'                # PyPI-only environments: the Python resolved for
        requirements: {conda: [...], pypi: [...]}
        packages:
          <platform>: [{pypi: URL} | {conda: URL}, ...]
    packages: [<artifact>, ...]       # every distinct artifact once, keyed by URL

An artifact is an archive (a wheel, an sdist or a conda package: URL, sha256, size) or a
source tree a PyPI package is built from (`PypiSource`: a path relative to the lock, or
a git repository at a full commit), keyed by its path or ``git+URL@commit``.
Environments and platforms only name artifacts by that key, so an artifact shared by
several platforms and environments is described once.  Mappings whose keys are names are
sorted, lists are sorted, and each record's keys come in one fixed order, so the same
inputs give the same bytes and a small change gives a small diff.

This module is part of the materializer's import graph: it imports yaml (lazily) and
the standard library only.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lockenv import __version__
from lockenv.errors import LockfileError
from lockenv.limits import MAX_LOCK, read_capped, size_text
from lockenv.platforms import PLATFORMS

if TYPE_CHECKING:
    # Imported where a lock has one: most locks (and syncs) never make a BaseEnvironment.
    from lockenv.base_environment import BaseEnvironment

LOCK_NAME = "lockenv.lock"
LOCK_VERSION = 1

ArtifactKind = Literal["pypi", "conda"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)


@dataclass(frozen=True, slots=True, kw_only=True)
class PypiArtifact:
    """One wheel or sdist, as locked."""

    name: str  # normalized (PEP 503)
    version: str
    filename: str
    url: str  # never carries credentials
    sha256: str
    size: int
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    upload_time: str | None = None  # RFC 3339, UTC, as the index gave it (PEP 700)
    index: str | None = None  # the index it came from (redacted)

    kind: ArtifactKind = field(default="pypi", init=False)

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def key(self) -> str:
        """How environments name it: its URL."""
        return self.url


@dataclass(frozen=True, slots=True, kw_only=True)
class PypiSource:
    """A PyPI package built from a source tree, as locked: a directory (``path``,
    relative to the lock's directory, POSIX; ``"."`` is the project itself) or a git
    repository at a full ``commit`` (with the ``rev``, ``tag`` or ``branch`` asked for,
    and an optional ``subdirectory``).  It has no archive, so no sha256: a git tree is
    named by its commit, a directory is the user's own."""

    name: str  # normalized (PEP 503)
    version: str
    path: str | None = None
    editable: bool = False
    git: str | None = None  # never carries credentials
    commit: str | None = None
    rev: str | None = None
    tag: str | None = None
    branch: str | None = None
    subdirectory: str | None = None
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None

    kind: ArtifactKind = field(default="pypi", init=False)

    @property
    def key(self) -> str:
        """How environments name it: the path, or ``git+URL@commit[#subdirectory=...]``."""
        if self.path is not None:
            return self.path
        fragment = f"#subdirectory={self.subdirectory}" if self.subdirectory else ""
        return f"git+{self.git}@{self.commit}{fragment}"

    @property
    def identity(self) -> str:
        """What an environment records it was installed from (the sha256 of an archive)."""
        return f"path:{self.path}" if self.path is not None else self.key

    @property
    def filename(self) -> str:
        """How reports show it in place of a file name."""
        if self.path is not None:
            return f"{self.path} (editable)" if self.editable else self.path
        return self.key


@dataclass(frozen=True, slots=True, kw_only=True)
class CondaArtifact:
    """One conda package archive (``.conda`` or ``.tar.bz2``), as locked."""

    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    filename: str
    url: str
    sha256: str
    size: int
    md5: str | None = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    timestamp: int | None = None  # milliseconds since the epoch, as repodata gives it
    channel: str | None = None
    noarch: str | None = None  # "python" or "generic"
    license: str | None = None
    track_features: tuple[str, ...] = ()

    kind: ArtifactKind = field(default="conda", init=False)

    @property
    def key(self) -> str:
        """How environments name it: its URL."""
        return self.url


Archive = PypiArtifact | CondaArtifact
"""An artifact that is a file: downloaded, hash-checked, cached and unpacked."""
Artifact = PypiArtifact | CondaArtifact | PypiSource
"""Anything a lock pins."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LockInputs:
    """The inputs that shaped the lock (compared to the manifest for staleness)."""

    platforms: tuple[str, ...]
    channels: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    requires_python: str | None = None
    system_requirements: Mapping[str, str] = field(default_factory=dict)
    exclude_newer: str | None = None  # RFC 3339 UTC
    # The manifest's duration ("2 weeks") when exclude_newer was computed from one.
    exclude_newer_span: str | None = None
    # [pypi-options] that differ from the default (wheels first): True or sorted names.
    pypi_options: Mapping[str, bool | tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockedEnvironment:
    """One environment: what it asked for and, per platform, the artifacts it pins."""

    name: str
    python: str | None = None  # "3.11" for PyPI-only environments
    conda_requirements: tuple[str, ...] = ()
    pypi_requirements: tuple[str, ...] = ()  # PEP 508, as the manifest asked
    packages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # platform -> URLs
    base: BaseEnvironment | None = None  # the site environment it is built on, as locked


@dataclass(frozen=True, slots=True, kw_only=True)
class Lockfile:
    """A whole lock: its inputs, each environment's pins per platform, and every
    artifact they name, by key."""

    inputs: LockInputs
    environments: Mapping[str, LockedEnvironment]
    artifacts: Mapping[str, Artifact]  # key (URL, path or git+URL@commit) -> artifact
    lockenv_version: str = __version__
    version: int = LOCK_VERSION

    def environment(self, name: str) -> LockedEnvironment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            raise LockfileError(
                f"the lock has no environment {name!r} (it has: {known}); run `lockenv lock`"
            ) from None

    def packages_for(self, environment: str, platform: str) -> list[Artifact]:
        """The artifacts ``environment`` pins on ``platform``, in lock order."""
        env = self.environment(environment)
        if platform not in env.packages:
            known = ", ".join(sorted(env.packages)) or "none"
            raise LockfileError(
                f"environment {environment!r} is not locked for platform {platform!r} "
                f"(locked for: {known}); add it to [project] platforms and run `lockenv lock`"
            )
        return [self.artifacts[url] for url in env.packages[platform]]


# ---------------------------------------------------------------------------- writing


def _artifact_sort_key(artifact: Artifact) -> tuple[str, str, str, str, str]:
    return (artifact.kind, artifact.name, artifact.version, artifact.filename, artifact.key)


def redact_url(url: str) -> str:
    """`lockenv.urls.redact_url`, imported when a lock is written (not when one is read)."""
    from lockenv.urls import redact_url as redact

    return redact(url)


def redact_text(text: str) -> str:
    """`lockenv.urls.redact_text`, imported when a lock is written."""
    from lockenv.urls import redact_text as redact

    return redact(text)


def _pypi_to_dict(a: PypiArtifact) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "pypi",
        "name": a.name,
        "version": a.version,
        "filename": a.filename,
        "url": redact_url(a.url),
        "sha256": a.sha256,
        "size": a.size,
    }
    if a.index is not None:
        data["index"] = redact_url(a.index)
    if a.requires_python is not None:
        data["requires-python"] = a.requires_python
    if a.requires_dist:
        data["requires-dist"] = list(a.requires_dist)
    if a.upload_time is not None:
        data["upload-time"] = a.upload_time
    return data


def _source_to_dict(a: PypiSource) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": "pypi", "name": a.name, "version": a.version}
    optional: dict[str, Any] = {
        "path": a.path,
        "editable": True if a.editable else None,
        "git": None if a.git is None else redact_url(a.git),
        "rev": a.rev,
        "tag": a.tag,
        "branch": a.branch,
        "commit": a.commit,
        "subdirectory": a.subdirectory,
        "requires-python": a.requires_python,
        "requires-dist": list(a.requires_dist) or None,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return data


def _conda_to_dict(a: CondaArtifact) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "conda",
        "name": a.name,
        "version": a.version,
        "build": a.build,
        "build-number": a.build_number,
        "subdir": a.subdir,
        "filename": a.filename,
        "url": redact_url(a.url),
        "sha256": a.sha256,
        "size": a.size,
    }
    optional: dict[str, Any] = {
        "md5": a.md5,
        "channel": None if a.channel is None else redact_url(a.channel),
        "noarch": a.noarch,
        "license": a.license,
        "timestamp": a.timestamp,
        "depends": list(a.depends) or None,
        "constrains": list(a.constrains) or None,
        "track-features": list(a.track_features) or None,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return data


def _base_to_dict(base: BaseEnvironment) -> dict[str, Any]:
    data: dict[str, Any] = {
        "path": base.prefix,
        "python": base.python,
        "site-packages": base.site_packages,
        "digest": base.digest,
    }
    if base.conda:
        data["conda"] = list(base.conda)
    if base.pypi:
        data["pypi"] = list(base.pypi)
    return data


def to_dict(lock: Lockfile) -> dict[str, Any]:
    """The lock as plain data, in the canonical order it is written in.

    Every URL and requirement goes through `lockenv.urls.redact_url`: a lock never holds
    credentials or conda tokens, whatever the artifacts it is given carry.
    """
    inputs: dict[str, Any] = {"platforms": sorted(lock.inputs.platforms)}
    # Channel and index order carries meaning (priority): kept as written.
    inputs["channels"] = [redact_url(c) for c in lock.inputs.channels]
    inputs["indexes"] = [redact_url(u) for u in lock.inputs.indexes]
    if lock.inputs.find_links:
        inputs["find-links"] = [redact_url(u) for u in lock.inputs.find_links]
    if lock.inputs.requires_python is not None:
        inputs["requires-python"] = lock.inputs.requires_python
    if lock.inputs.system_requirements:
        inputs["system-requirements"] = dict(sorted(lock.inputs.system_requirements.items()))
    if lock.inputs.exclude_newer is not None:
        inputs["exclude-newer"] = lock.inputs.exclude_newer
    if lock.inputs.exclude_newer_span is not None:
        inputs["exclude-newer-span"] = lock.inputs.exclude_newer_span
    if lock.inputs.pypi_options:
        inputs["pypi-options"] = {
            key: value if isinstance(value, bool) else sorted(value)
            for key, value in sorted(lock.inputs.pypi_options.items())
        }

    environments: dict[str, Any] = {}
    for name in sorted(lock.environments):
        env = lock.environments[name]
        entry: dict[str, Any] = {}
        if env.base is not None:
            entry["base-environment"] = _base_to_dict(env.base)
        if env.python is not None:
            entry["python"] = env.python
        requirements: dict[str, Any] = {}
        if env.conda_requirements:
            requirements["conda"] = sorted(map(redact_text, env.conda_requirements))
        if env.pypi_requirements:
            requirements["pypi"] = sorted(map(redact_text, env.pypi_requirements))
        entry["requirements"] = requirements
        packages: dict[str, Any] = {}
        for platform in sorted(env.packages):
            refs = sorted(
                (lock.artifacts[url] for url in env.packages[platform]), key=_artifact_sort_key
            )
            packages[platform] = [{a.kind: redact_url(a.key)} for a in refs]
        entry["packages"] = packages
        environments[name] = entry

    artifacts = sorted(lock.artifacts.values(), key=_artifact_sort_key)
    return {
        "version": lock.version,
        "lockenv-version": lock.lockenv_version,
        "inputs": inputs,
        "environments": environments,
        "packages": [
            _pypi_to_dict(a)
            if isinstance(a, PypiArtifact)
            else _source_to_dict(a)
            if isinstance(a, PypiSource)
            else _conda_to_dict(a)
            for a in artifacts
        ],
    }


def dumps(lock: Lockfile) -> str:
    """The lock as YAML text: byte-identical for equal locks."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[valid-type,misc]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # never anchors: the loader refuses aliases

    dumper = Dumper
    header = "# This file is written by lockenv; do not edit it by hand. Run `lockenv lock`.\n"
    body: str = yaml.dump(
        to_dict(lock),
        Dumper=dumper,
        sort_keys=False,
        default_flow_style=False,
        # Escaped non-ASCII: libyaml and pure-Python PyYAML then write the same bytes.
        allow_unicode=False,
        width=1_000_000,
        indent=2,
    )
    return header + body


def write_lockfile(lock: Lockfile, path: Path) -> bool:
    """Write ``lock`` to ``path`` atomically (`lockenv.atomic.write_atomic`: the old lock
    whole or the new one, its file mode kept); False when the file already held these
    bytes."""
    from lockenv.atomic import write_atomic

    data = dumps(lock).encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LockfileError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    # One rename, after an fsync; the mode follows the umask (or the file it replaces),
    # so a group can read a shared project's lock (mkstemp alone would make it 0600).
    write_atomic(path, data)
    return True


# ---------------------------------------------------------------------------- reading


class _Problems:
    """Collects every problem of a hand-broken lock before raising once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            shown = "; ".join(self.items[:5])
            more = f" (and {len(self.items) - 5} more)" if len(self.items) > 5 else ""
            raise LockfileError(
                f"{self.source} is not a valid lockfile: {shown}{more}; "
                "run `lockenv lock` to write it again"
            )


def _get(
    data: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    path: str,
    problems: _Problems,
    *,
    required: bool = True,
) -> Any:
    if key not in data:
        if required:
            problems.add(f"{path}.{key}" if path else key, "missing")
        return None
    value = data[key]
    # bool is an int subclass: a size of `true` is not a size.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        problems.add(
            f"{path}.{key}" if path else key, f"expected {_kind_name(kind)}, got {value!r}"
        )
        return None
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return {"str": "a string", "int": "an integer", "list": "a list", "dict": "a mapping"}.get(
        kind.__name__, kind.__name__
    )


def _str_list(data: Mapping[str, Any], key: str, path: str, problems: _Problems) -> tuple[str, ...]:
    value = _get(data, key, list, path, problems, required=False)
    if value is None:
        return ()
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        problems.add(f"{path}.{key}", f"expected a list of strings, got {bad[0]!r}")
        return ()
    return tuple(value)


def _check_hash(
    value: str | None, pattern: re.Pattern[str], path: str, what: str, problems: _Problems
) -> None:
    if value is not None and not pattern.match(value):
        problems.add(path, f"{value!r} is not a {what} hex digest")


def _check_filename(filename: str | None, path: str, problems: _Problems) -> None:
    # Filenames become cache and download paths: one plain path component only.
    if filename is not None and (
        filename in ("", ".", "..") or any(c in filename for c in "/\\:\0")
    ):
        problems.add(path, f"{filename!r} is not a plain file name")


def _artifact_from_dict(data: Any, path: str, problems: _Problems) -> Artifact | None:
    if not isinstance(data, dict):
        problems.add(path, f"expected a mapping, got {data!r}")
        return None
    kind = _get(data, "kind", str, path, problems)
    if kind == "pypi" and ("path" in data or "git" in data):
        return _source_from_dict(data, path, problems)
    common = {
        "name": _get(data, "name", str, path, problems),
        "version": _get(data, "version", str, path, problems),
        "filename": _get(data, "filename", str, path, problems),
        "url": _get(data, "url", str, path, problems),
        "sha256": _get(data, "sha256", str, path, problems),
        "size": _get(data, "size", int, path, problems),
    }
    _check_hash(common["sha256"], _SHA256, f"{path}.sha256", "sha256", problems)
    _check_filename(common["filename"], f"{path}.filename", problems)
    if isinstance(common["size"], int) and common["size"] < 0:
        problems.add(f"{path}.size", f"{common['size']!r} is negative")
    if kind == "pypi":
        known = {
            "kind",
            "name",
            "version",
            "filename",
            "url",
            "sha256",
            "size",
            "index",
            "requires-python",
            "requires-dist",
            "upload-time",
        }
        _unknown_keys(data, known, path, problems)
        extra = {
            "requires_dist": _str_list(data, "requires-dist", path, problems),
            "requires_python": _get(data, "requires-python", str, path, problems, required=False),
            "upload_time": _get(data, "upload-time", str, path, problems, required=False),
            "index": _get(data, "index", str, path, problems, required=False),
        }
        if any(v is None for v in common.values()):
            return None
        return PypiArtifact(**common, **extra)
    if kind == "conda":
        known = {
            "kind",
            "name",
            "version",
            "build",
            "build-number",
            "subdir",
            "filename",
            "url",
            "sha256",
            "size",
            "md5",
            "depends",
            "constrains",
            "timestamp",
            "channel",
            "noarch",
            "license",
            "track-features",
        }
        _unknown_keys(data, known, path, problems)
        conda = {
            "build": _get(data, "build", str, path, problems),
            "build_number": _get(data, "build-number", int, path, problems),
            "subdir": _get(data, "subdir", str, path, problems),
        }
        extra = {
            "md5": _get(data, "md5", str, path, problems, required=False),
            "depends": _str_list(data, "depends", path, problems),
            "constrains": _str_list(data, "constrains", path, problems),
            "timestamp": _get(data, "timestamp", int, path, problems, required=False),
            "channel": _get(data, "channel", str, path, problems, required=False),
            "noarch": _get(data, "noarch", str, path, problems, required=False),
            "license": _get(data, "license", str, path, problems, required=False),
            "track_features": _str_list(data, "track-features", path, problems),
        }
        _check_hash(extra["md5"], _MD5, f"{path}.md5", "md5", problems)
        if any(v is None for v in (*common.values(), *conda.values())):
            return None
        return CondaArtifact(**common, **conda, **extra)
    if kind is not None:
        problems.add(f"{path}.kind", f"{kind!r} is neither 'pypi' nor 'conda'")
    return None


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _source_from_dict(data: dict[str, Any], path: str, problems: _Problems) -> PypiSource | None:
    known = {
        "kind",
        "name",
        "version",
        "path",
        "editable",
        "git",
        "rev",
        "tag",
        "branch",
        "commit",
        "subdirectory",
        "requires-python",
        "requires-dist",
    }
    _unknown_keys(data, known, path, problems)
    name = _get(data, "name", str, path, problems)
    version = _get(data, "version", str, path, problems)
    where = _get(data, "path", str, path, problems, required=False)
    git = _get(data, "git", str, path, problems, required=False)
    commit = _get(data, "commit", str, path, problems, required=git is not None)
    editable = _get(data, "editable", bool, path, problems, required=False) or False
    subdirectory = _get(data, "subdirectory", str, path, problems, required=False)
    refs = {k: _get(data, k, str, path, problems, required=False) for k in ("rev", "tag", "branch")}
    if where is not None and git is not None:
        problems.add(path, "has both path and git; a source is one or the other")
    if where is not None and (where.startswith("/") or where == "" or "\\" in where):
        problems.add(f"{path}.path", f"{where!r} is not a relative POSIX path")
    if commit is not None and not _COMMIT.match(commit):
        problems.add(f"{path}.commit", f"{commit!r} is not a full git commit hash")
    for rel in (subdirectory,):
        if rel is not None and (rel.startswith("/") or ".." in rel.split("/")):
            problems.add(f"{path}.subdirectory", f"{rel!r} leaves the repository")
    if editable and where is None:
        problems.add(f"{path}.editable", "only a path source can be editable")
    if name is None or version is None:
        return None
    return PypiSource(
        name=name,
        version=version,
        path=where,
        editable=bool(editable),
        git=git,
        commit=commit,
        subdirectory=subdirectory,
        requires_dist=_str_list(data, "requires-dist", path, problems),
        requires_python=_get(data, "requires-python", str, path, problems, required=False),
        **refs,
    )


def _unknown_keys(data: Mapping[str, Any], known: set[str], path: str, problems: _Problems) -> None:
    for key in sorted(set(data) - known):
        problems.add(f"{path}.{key}", "unknown key")


def _base_from_dict(
    raw_env: Mapping[str, Any], path: str, problems: _Problems
) -> BaseEnvironment | None:
    raw = _get(raw_env, "base-environment", dict, path.rpartition(".")[0], problems, required=False)
    if raw is None:
        return None
    _unknown_keys(
        raw, {"path", "python", "site-packages", "digest", "conda", "pypi"}, path, problems
    )
    values = {
        "prefix": _get(raw, "path", str, path, problems),
        "python": _get(raw, "python", str, path, problems),
        "site_packages": _get(raw, "site-packages", str, path, problems),
    }
    digest = _get(raw, "digest", str, path, problems)
    if any(v is None for v in values.values()) or digest is None:
        return None
    from lockenv.base_environment import BaseEnvironment

    base = BaseEnvironment(
        **values,
        conda=_str_list(raw, "conda", path, problems),
        pypi=_str_list(raw, "pypi", path, problems),
    )
    if base.digest != digest:
        problems.add(f"{path}.digest", "does not match the package set recorded beside it")
    return base


def from_dict(data: Any, *, source: str = LOCK_NAME) -> Lockfile:
    """Validate plain data (as loaded from YAML) into a Lockfile, reporting every problem."""
    problems = _Problems(source)
    if not isinstance(data, dict):
        problems.add("(top)", f"expected a mapping, got {type(data).__name__}")
        problems.raise_if_any()
    version = _get(data, "version", int, "", problems)
    if isinstance(version, int) and version != LOCK_VERSION:
        raise LockfileError(
            f"{source} has lock format version {version!r}, this lockenv reads version "
            f"{LOCK_VERSION}: upgrade lockenv or run `lockenv lock` to rewrite it"
        )
    lockenv_version = _get(data, "lockenv-version", str, "", problems) or __version__
    _unknown_keys(
        data, {"version", "lockenv-version", "inputs", "environments", "packages"}, "", problems
    )

    raw_inputs = _get(data, "inputs", dict, "", problems) or {}
    system = _get(raw_inputs, "system-requirements", dict, "inputs", problems, required=False) or {}
    for key, value in system.items():
        if not isinstance(value, str):
            problems.add(f"inputs.system-requirements.{key}", f"expected a string, got {value!r}")
    pypi_options: dict[str, bool | tuple[str, ...]] = {}
    raw_options = _get(raw_inputs, "pypi-options", dict, "inputs", problems, required=False) or {}
    for key, value in raw_options.items():
        where = f"inputs.pypi-options.{key}"
        if key not in ("prefer-newest", "no-build", "no-binary"):
            problems.add(where, "unknown key")
        elif value is True:
            pypi_options[key] = True
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            pypi_options[key] = tuple(value)
        else:
            problems.add(where, f"expected true or a list of names, got {value!r}")
    inputs = LockInputs(
        platforms=_str_list(raw_inputs, "platforms", "inputs", problems),
        channels=_str_list(raw_inputs, "channels", "inputs", problems),
        indexes=_str_list(raw_inputs, "indexes", "inputs", problems),
        find_links=_str_list(raw_inputs, "find-links", "inputs", problems),
        requires_python=_get(
            raw_inputs, "requires-python", str, "inputs", problems, required=False
        ),
        system_requirements={str(k): v for k, v in system.items() if isinstance(v, str)},
        exclude_newer=_get(raw_inputs, "exclude-newer", str, "inputs", problems, required=False),
        exclude_newer_span=_get(
            raw_inputs, "exclude-newer-span", str, "inputs", problems, required=False
        ),
        pypi_options=pypi_options,
    )
    _unknown_keys(
        raw_inputs,
        {
            "platforms",
            "channels",
            "indexes",
            "find-links",
            "requires-python",
            "system-requirements",
            "exclude-newer",
            "exclude-newer-span",
            "pypi-options",
        },
        "inputs",
        problems,
    )

    artifacts: dict[str, Artifact] = {}
    raw_packages = _get(data, "packages", list, "", problems) or []
    for i, raw in enumerate(raw_packages):
        artifact = _artifact_from_dict(raw, f"packages[{i}]", problems)
        if artifact is None:
            continue
        if artifact.key in artifacts:
            problems.add(f"packages[{i}]", f"{artifact.key!r} is described twice")
        artifacts[artifact.key] = artifact

    environments: dict[str, LockedEnvironment] = {}
    raw_envs = _get(data, "environments", dict, "", problems) or {}
    for env_name, raw_env in raw_envs.items():
        path = f"environments.{env_name}"
        # Environment names become directory names (.lockenv/envs/<env>).
        if not (isinstance(env_name, str) and _ENV_NAME.match(env_name)):
            problems.add(path, f"{env_name!r} is not a valid environment name")
            continue
        if not isinstance(raw_env, dict):
            problems.add(path, f"expected a mapping, got {raw_env!r}")
            continue
        _unknown_keys(
            raw_env, {"base-environment", "python", "requirements", "packages"}, path, problems
        )
        requirements = _get(raw_env, "requirements", dict, path, problems, required=False) or {}
        _unknown_keys(requirements, {"conda", "pypi"}, f"{path}.requirements", problems)
        packages: dict[str, tuple[str, ...]] = {}
        raw_platforms = _get(raw_env, "packages", dict, path, problems) or {}
        for platform, refs in raw_platforms.items():
            ppath = f"{path}.packages.{platform}"
            if platform not in PLATFORMS:
                problems.add(ppath, f"{platform!r} is not a platform lockenv knows")
                continue
            if not isinstance(refs, list):
                problems.add(ppath, f"expected a list, got {refs!r}")
                continue
            urls: list[str] = []
            for j, ref in enumerate(refs):
                if not (isinstance(ref, dict) and len(ref) == 1):
                    problems.add(
                        f"{ppath}[{j}]", f"expected {{pypi: URL}} or {{conda: URL}}, got {ref!r}"
                    )
                    continue
                ((kind, url),) = ref.items()
                target = artifacts.get(url) if isinstance(url, str) else None
                if target is None or target.kind != kind:
                    problems.add(
                        f"{ppath}[{j}]", f"{kind}: {url!r} is not described under packages"
                    )
                    continue
                urls.append(url)
            packages[str(platform)] = tuple(urls)
        environments[str(env_name)] = LockedEnvironment(
            name=str(env_name),
            python=_get(raw_env, "python", str, path, problems, required=False),
            conda_requirements=_str_list(requirements, "conda", f"{path}.requirements", problems),
            pypi_requirements=_str_list(requirements, "pypi", f"{path}.requirements", problems),
            packages=packages,
            base=_base_from_dict(raw_env, f"{path}.base-environment", problems),
        )
    problems.raise_if_any()
    return Lockfile(
        inputs=inputs,
        environments=environments,
        artifacts=artifacts,
        lockenv_version=lockenv_version,
        version=LOCK_VERSION,
    )


def has_conflict_markers(text: str) -> bool:
    """True when ``text`` holds git merge conflict markers (a lock left mid-merge)."""
    return _CONFLICT_MARKER.search(text) is not None


def loads(text: str, *, source: str = LOCK_NAME) -> Lockfile:
    """Parse lock text; LockfileError (one line, naming the problem) on anything wrong."""
    _check_text(text, source)
    return from_dict(_yaml_data(text, source), source=source)


def _check_text(text: str, source: str) -> None:
    """LockfileError for lock text too large to be real, or left mid-merge."""
    if len(text) > MAX_LOCK:
        raise _too_large(source)
    marker = _CONFLICT_MARKER.search(text)
    if marker:
        line = text.count("\n", 0, marker.start()) + 1
        raise LockfileError(
            f"{source} has git merge conflict markers (line {line}): resolve the conflict in "
            "the manifest, then run `lockenv lock`: it solves again, preferring both sides' "
            "pins (or set up lockenv's git merge driver, see the README)"
        )


def _yaml_data(text: str, source: str) -> Any:
    """The plain data of the YAML ``text`` (the strict loader); LockfileError if invalid."""
    import yaml

    try:
        plain = _events_data(text)
        if plain is _UNSURE:  # the strict loader decides, and words any refusal
            plain = yaml.load(text, Loader=_strict_loader())
        return plain
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise LockfileError(
            f"{source} is not valid YAML{where}: {problem}; run `lockenv lock` to write it again"
        ) from None
    except RecursionError:
        raise LockfileError(
            f"{source} is nested too deeply to be a lockfile; run `lockenv lock` to write it again"
        ) from None


_UNSURE = object()
_DEEPEST = 64  # far deeper than a lock nests; deeper documents go to the strict loader


def _events_data(text: str) -> Any:
    """The data the strict loader (`_strict_loader`) makes of ``text``, built straight
    from libyaml's parse events in about half its time: no node graph, and constructors
    called only for scalars that are not strings (what a lock holds is mostly strings).

    `_UNSURE` for whatever it leaves to the strict loader: aliases, explicit tags, merge,
    duplicate or unhashable keys, not exactly one document, deep nesting, any error, and
    PyYAML without libyaml.
    """
    import yaml

    try:
        from yaml._yaml import CParser  # libyaml's parser (PyYAML >= 5.4)
    except ImportError:
        return _UNSURE
    events = yaml.events
    resolver = yaml.resolver.Resolver()
    constructor = yaml.constructor.SafeConstructor()
    plain_str = resolver.DEFAULT_SCALAR_TAG
    parser = CParser(text)
    containers: list[Any] = []  # the open mappings and sequences, innermost last
    keys: list[Any] = []  # per open mapping: its pending key (_UNSURE: none yet)
    documents = 0
    root: Any = _UNSURE
    try:
        while True:
            event = parser.get_event()
            value: Any
            if isinstance(event, events.ScalarEvent):
                if event.tag is not None and event.tag != "!":
                    return _UNSURE
                value = event.value
                tag = resolver.resolve(yaml.ScalarNode, value, event.implicit)  # type: ignore[no-untyped-call]
                if tag != plain_str:
                    value = constructor.construct_object(yaml.ScalarNode(tag, value))
            elif isinstance(event, events.CollectionStartEvent):
                if (event.tag is not None and event.tag != "!") or len(containers) >= _DEEPEST:
                    return _UNSURE
                containers.append({} if isinstance(event, events.MappingStartEvent) else [])
                keys.append(_UNSURE)
                continue
            elif isinstance(event, events.CollectionEndEvent):
                value = containers.pop()
                keys.pop()
            elif isinstance(event, events.DocumentStartEvent):
                documents += 1
                continue
            elif isinstance(event, events.StreamEndEvent):
                break
            elif isinstance(event, events.AliasEvent):
                return _UNSURE
            else:  # stream start, document end
                continue
            if not containers:
                root = value
            elif type(containers[-1]) is list:
                containers[-1].append(value)
            elif keys[-1] is _UNSURE:
                if isinstance(value, list | dict):
                    return _UNSURE  # unhashable
                keys[-1] = value
            else:
                mapping, key = containers[-1], keys[-1]
                if key in mapping:
                    return _UNSURE
                mapping[key] = value
                keys[-1] = _UNSURE
    except yaml.YAMLError:
        return _UNSURE
    finally:
        parser.dispose()
    return root if documents == 1 else _UNSURE


def _too_large(source: str) -> LockfileError:
    return LockfileError(
        f"{source} is larger than {size_text(MAX_LOCK)}, more than any real lockfile: it is "
        "broken or hostile; run `lockenv lock` to write it again"
    )


def loads_bytes(data: bytes, *, source: str = LOCK_NAME) -> Lockfile:
    """`loads` of a lock file's bytes (UTF-8); LockfileError when they are not text."""
    return loads(_lock_text(data, source), source=source)


def _lock_text(data: bytes, source: str) -> str:
    if len(data) > MAX_LOCK:
        raise _too_large(source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockfileError(
            f"{source} is not UTF-8 text (byte {exc.start}): it is not a lockfile lockenv "
            "wrote; run `lockenv lock` to write it again"
        ) from None


# -- the parse, remembered -------------------------------------------------------------------
#
# Parsing a large lock's YAML (and importing the YAML library) is most of what a sync that
# changes one package spends before it links anything.  So the plain data a parse gave is
# kept, as JSON (read back in a fraction of a millisecond, by the standard library), in a
# file beside the environment, under the sha256 of the very bytes it was parsed from: a
# lock whose bytes hash differently is parsed again.  The data is validated into a
# `Lockfile` by `from_dict` either way, so the memo saves the YAML parse and nothing else.

_PARSED_FORMAT = 1
_PARSED_KEPT = 4  # the last few locks: switching between branches finds theirs


def loads_remembered(data: bytes, memo: Path, *, source: str = LOCK_NAME) -> Lockfile:
    """`loads_bytes`, reusing the YAML parse of these bytes kept in the file ``memo`` (see
    above) and keeping it there when it had to be made.  The memo counts only when it is
    a regular file of this user's that nobody else may write (like the environment it sits
    beside); an unusable memo is ignored, and a memo that cannot be written is no error."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    remembered = _read_parsed(memo)
    plain = remembered.get(digest)
    if plain is not None:
        with contextlib.suppress(LockfileError):  # else parsed again, reported from the text
            return from_dict(plain, source=source)
    text = _lock_text(data, source)
    _check_text(text, source)
    plain = _yaml_data(text, source)
    lock = from_dict(plain, source=source)
    _remember_parsed(memo, digest, plain, remembered)
    return lock


def _read_parsed(memo: Path) -> dict[str, Any]:
    """The parses kept in ``memo`` by lock sha256, most recent first; {} when unusable."""
    import json
    import os
    import stat

    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(memo, flags)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        geteuid = getattr(os, "geteuid", None)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o022:
            return {}
        if geteuid is not None and st.st_uid != geteuid():
            return {}
        raw = fh.read(_PARSED_KEPT * MAX_LOCK + 1)
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(doc, dict) or doc.get("format") != _PARSED_FORMAT:
        return {}
    kept: dict[str, Any] = {}
    for item in doc.get("locks") or ():
        if isinstance(item, dict) and isinstance(item.get("sha256"), str) and "data" in item:
            kept.setdefault(item["sha256"], item["data"])
    return kept


def _remember_parsed(memo: Path, digest: str, plain: Any, remembered: dict[str, Any]) -> None:
    """Keep ``plain`` (the data of the lock whose bytes hash to ``digest``) first in
    ``memo``, with the most recent others; only data that JSON gives back exactly (a YAML
    timestamp or a non-string key would come back as something else)."""
    import json

    from lockenv.atomic import write_atomic

    try:
        if json.loads(json.dumps(plain)) != plain:
            return
        others = [{"sha256": k, "data": v} for k, v in remembered.items() if k != digest]
        locks = [{"sha256": digest, "data": plain}, *others][:_PARSED_KEPT]
        payload = json.dumps({"format": _PARSED_FORMAT, "locks": locks}, separators=(",", ":"))
        # Not durable: a memo lost in a crash is parsed again.
        write_atomic(memo, payload, mode=0o644, durable=False)
    except (OSError, TypeError, ValueError, RecursionError):
        return


@functools.cache
def _strict_loader() -> Any:
    """A safe YAML loader for locks: no aliases (``*name``: lockenv never writes them, and
    nested aliases make a kilobyte of YAML into gigabytes), no merge keys, no duplicate or
    unhashable keys (a badly hand-merged lock)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    error = yaml.constructor.ConstructorError

    class StrictLoader(base):  # type: ignore[valid-type,misc]
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            # Every node is constructed once; a node met again is an alias of an anchor.
            if node in self.constructed_objects or node in self.recursive_objects:
                raise error(None, None, "aliases are not allowed in a lockfile", node.start_mark)
            return super().construct_object(node, deep=deep)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            if not isinstance(node, yaml.MappingNode):
                raise error(None, None, f"expected a mapping, found {node.id}", node.start_mark)
            mapping: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise error(None, None, "merge keys are not allowed", key_node.start_mark)
                key = self.construct_object(key_node, deep=deep)
                try:
                    hash(key)
                except TypeError:
                    raise error(
                        None,
                        None,
                        "a mapping key must be a string, not a list or mapping",
                        key_node.start_mark,
                    ) from None
                if key in mapping:
                    raise error(None, None, f"duplicate key {key!r}", key_node.start_mark)
                mapping[key] = self.construct_object(value_node, deep=deep)
            return mapping

    return StrictLoader


def read_lock_bytes(path: Path) -> bytes:
    """The bytes of the lock at ``path`` (at most `lockenv.limits.MAX_LOCK`);
    LockfileError when there is none, or it cannot be read or is too large."""
    try:
        return read_capped(path, MAX_LOCK, "lockfile")
    except FileNotFoundError:
        raise LockfileError(f"no lockfile at {str(path)!r}: run `lockenv lock` first") from None
    except OSError as exc:
        raise LockfileError(f"cannot read {str(path)!r}: {exc}") from None


def read_lockfile(path: Path) -> Lockfile:
    """Read and validate the lock at ``path``."""
    return loads_bytes(read_lock_bytes(path), source=str(path))


def env_requested_names(env: LockedEnvironment) -> frozenset[str]:
    """Normalized names the manifest asked for directly (for REQUESTED / conda history)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names: set[str] = set()
    for text in env.pypi_requirements:
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    for text in env.conda_requirements:
        names.add(re.split(r"[\s=<>!~\[]", text.split("::")[-1], maxsplit=1)[0].lower())
    return frozenset(names)


def sequence_of_urls(artifacts: Sequence[Artifact]) -> tuple[str, ...]:
    """The keys (URLs, paths, git+URL@commit) of ``artifacts`` in canonical lock order."""
    return tuple(a.key for a in sorted(artifacts, key=_artifact_sort_key))
