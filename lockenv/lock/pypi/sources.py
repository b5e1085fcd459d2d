"""Path, git and URL dependencies at lock time: each made into the one candidate it is.

- ``path``: the directory's metadata is its ``pyproject.toml`` ``[project]`` when that is
  static (PEP 621: name, version, dependencies, optional-dependencies and
  requires-python not listed in ``dynamic``), else what its build backend's
  ``prepare_metadata_for_build_wheel`` says (built in place, as pip and uv build a local
  tree).  The lock records the path relative to the manifest.
- ``git``: the branch, tag or rev is resolved to a full commit (a locked commit is kept
  on a re-lock unless the package is updated), checked out into the cache, then read
  like a path (built in a copy).  The lock records the commit.
- ``url``: the wheel or sdist is downloaded once into the artifact cache; the lock records
  its sha256 and size, and its metadata comes from the file like an index's.

A source's candidate is the only one its name has; requirements on that name from other
packages must accept its version.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from lockenv.errors import MetadataError, ResolutionError
from lockenv.lock.pypi.metadata import CoreMetadata, parse_core_metadata
from lockenv.lockfile import PypiArtifact, PypiSource

if TYPE_CHECKING:
    from packaging.tags import Tag

    from lockenv.http import HttpClient
    from lockenv.lock.pypi.metadata import MetadataBuilder, MetadataFetcher
    from lockenv.lock.pypi.wanted import PypiDependency
    from lockenv.lock.pypi.wanted import PypiSource as ManifestSource
    from lockenv.lockfile import Lockfile

__all__ = ["PreparedSource", "prepare_sources", "sources_of", "static_project_metadata"]

# [project] keys whose being dynamic means only a build knows the metadata lockenv needs.
_NEEDED = ("version", "dependencies", "optional-dependencies", "requires-python")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedSource:
    """One path, git or URL dependency, ready to be the only candidate of its name."""

    name: NormalizedName
    version: Version
    metadata: CoreMetadata
    artifact: PypiArtifact | PypiSource  # what the lock records
    tags: frozenset[Tag] | None = None  # a URL wheel's tags; None: installs anywhere


def static_project_metadata(tree: Path) -> CoreMetadata | None:
    """The core metadata ``tree/pyproject.toml``'s ``[project]`` states, or None when it
    has none, or leaves part of what a lock needs to a build (``dynamic``)."""
    try:
        document = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    project = document.get("project")
    if not isinstance(project, dict):
        return None
    dynamic = project.get("dynamic", [])
    if not isinstance(dynamic, list) or any(key in dynamic for key in _NEEDED):
        return None
    label = f"{str(tree / 'pyproject.toml')!r}"
    try:
        name = canonicalize_name(str(project["name"]))
        version = Version(str(project["version"]))
        requires = [Requirement(str(r)) for r in project.get("dependencies", [])]
        extras: list[NormalizedName] = []
        for extra, items in sorted(dict(project.get("optional-dependencies", {})).items()):
            extras.append(canonicalize_name(extra))
            for item in items:
                requires.append(_with_extra(Requirement(str(item)), canonicalize_name(extra)))
        raw_python = project.get("requires-python")
        requires_python = SpecifierSet(str(raw_python)) if raw_python else None
    except InvalidVersion:
        raise MetadataError(f"{label}: [project] version is not a PEP 440 version") from None
    except (KeyError, TypeError, ValueError, InvalidRequirement, InvalidSpecifier) as exc:
        raise MetadataError(f"{label}: [project] is not valid PEP 621 metadata ({exc})") from None
    return CoreMetadata(
        name=name,
        version=version,
        requires_dist=tuple(requires),
        requires_python=requires_python,
        provides_extra=tuple(extras),
        dynamic=(),
        metadata_version="2.4",
    )


def _with_extra(requirement: Requirement, extra: NormalizedName) -> Requirement:
    marker = requirement.marker
    requirement.marker = None
    condition = f'extra == "{extra}"'
    text = f"{requirement}; ({marker}) and {condition}" if marker else f"{requirement}; {condition}"
    return Requirement(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    """What preparing one path or git source needs."""

    root: Path
    http: HttpClient
    fetcher: MetadataFetcher
    builder: MetadataBuilder | None
    cache_dir: Path
    previous: Lockfile | None
    keep_previous: bool


def prepare_sources(
    dependencies: Iterable[PypiDependency],
    *,
    root: Path,
    http: HttpClient,
    fetcher: MetadataFetcher,
    builder: MetadataBuilder | None,
    cache_dir: Path,
    previous: Lockfile | None,
    update: frozenset[NormalizedName],
    update_all: bool,
) -> dict[tuple[NormalizedName, ManifestSource], PreparedSource]:
    """Every distinct source among ``dependencies``, prepared (by name and source)."""
    prepared: dict[tuple[NormalizedName, ManifestSource], PreparedSource] = {}
    for dependency in dependencies:
        source = dependency.source
        if source is None or (dependency.name, source) in prepared:
            continue
        context = _Context(
            root=root,
            http=http,
            fetcher=fetcher,
            builder=builder,
            cache_dir=cache_dir,
            previous=previous,
            keep_previous=not update_all and dependency.name not in update,
        )
        if source.path is not None:
            result = _prepare_path(dependency, source, context)
        elif source.git is not None:
            result = _prepare_git(dependency, source, context)
        else:
            result = _prepare_url(dependency, source, context)
        prepared[(dependency.name, source)] = result
    return prepared


def _tree_metadata(tree: Path, label: str, context: _Context, *, in_place: bool) -> CoreMetadata:
    meta = static_project_metadata(tree)
    if meta is not None:
        return meta
    if context.builder is None:
        raise MetadataError(
            f"{label}: its metadata is dynamic (or it has no [project] table): only a build "
            "can tell, and building is not possible here"
        )
    data = context.builder.tree_metadata(tree, label=label, in_place=in_place)
    return parse_core_metadata(data, source=label)


def _check_name(dependency: PypiDependency, meta: CoreMetadata, label: str) -> None:
    if meta.name != dependency.name:
        raise ResolutionError(
            f"[pypi-dependencies] {dependency.name}: {label} is the project {meta.name!r}; "
            f"name the dependency {meta.name!r}"
        )


def _requires(meta: CoreMetadata) -> tuple[tuple[str, ...], str | None]:
    """``requires_dist`` and ``requires_python`` as the lock records them."""
    python = str(meta.requires_python) if meta.requires_python else None
    return tuple(str(r) for r in meta.requires_dist), python


def _prepare_path(
    dependency: PypiDependency, source: ManifestSource, context: _Context
) -> PreparedSource:
    assert source.path is not None
    tree = Path(os.path.normpath(context.root / source.path))
    label = f"the path dependency {source.path!r}"
    meta = _tree_metadata(tree, label, context, in_place=True)
    _check_name(dependency, meta, label)
    artifact = PypiSource(
        name=meta.name,
        version=str(meta.version),
        path=source.path,
        editable=source.editable,
        requires_dist=_requires(meta)[0],
        requires_python=_requires(meta)[1],
    )
    return PreparedSource(name=meta.name, version=meta.version, metadata=meta, artifact=artifact)


def _previous(context: _Context, name: NormalizedName) -> PypiArtifact | PypiSource | None:
    if context.previous is None or not context.keep_previous:
        return None
    for artifact in context.previous.artifacts.values():
        if isinstance(artifact, PypiArtifact | PypiSource) and artifact.name == name:
            return artifact
    return None


def _prepare_git(
    dependency: PypiDependency, source: ManifestSource, context: _Context
) -> PreparedSource:
    from lockenv.git import checkout, resolve_commit
    from lockenv.urls import redact_url

    assert source.git is not None
    shown = redact_url(source.git)
    locked = _previous(context, dependency.name)
    same = (
        isinstance(locked, PypiSource)
        and locked.git == shown
        and (locked.rev, locked.tag, locked.branch, locked.subdirectory)
        == (source.rev, source.tag, source.branch, source.subdirectory)
    )
    if same:
        assert isinstance(locked, PypiSource) and locked.commit is not None
        commit = locked.commit  # a locked commit is a pin like any other
    else:
        commit = resolve_commit(
            source.git,
            rev=source.rev,
            tag=source.tag,
            branch=source.branch,
            cache_dir=context.cache_dir,
        )
    tree = checkout(source.git, commit, context.cache_dir)
    if source.subdirectory:
        tree = tree / source.subdirectory
    label = f"{shown}@{commit[:12]}" + (f"#{source.subdirectory}" if source.subdirectory else "")
    meta = _tree_metadata(tree, label, context, in_place=False)
    _check_name(dependency, meta, label)
    artifact = PypiSource(
        name=meta.name,
        version=str(meta.version),
        git=shown,
        commit=commit,
        rev=source.rev,
        tag=source.tag,
        branch=source.branch,
        subdirectory=source.subdirectory,
        requires_dist=_requires(meta)[0],
        requires_python=_requires(meta)[1],
    )
    return PreparedSource(name=meta.name, version=meta.version, metadata=meta, artifact=artifact)


def _prepare_url(
    dependency: PypiDependency, source: ManifestSource, context: _Context
) -> PreparedSource:
    import dataclasses

    from lockenv.cache import Cache, hash_file
    from lockenv.lock.pypi.index import Link, dist_file_from_link
    from lockenv.urls import redact_url

    assert source.url is not None
    url = source.url.split("#", 1)[0]
    shown = redact_url(url)
    filename = url.split("?", 1)[0].rsplit("/", 1)[-1]
    file = dist_file_from_link(Link(filename=filename, url=url), index_url=shown)
    if file is None:
        raise ResolutionError(f"{shown!r}: {filename!r} is not a wheel or sdist file name")
    if file.name != dependency.name:
        raise ResolutionError(
            f"[pypi-dependencies] {dependency.name}: {shown!r} is the project {file.name!r}; "
            f"name the dependency {file.name!r}"
        )
    cache = Cache(context.cache_dir)
    locked = _previous(context, dependency.name)
    path: Path | None = None
    if isinstance(locked, PypiArtifact) and locked.url == shown and locked.index is None:
        candidate = cache.archive_path(locked.sha256, filename)
        try:
            if hash_file(candidate) == (locked.sha256, locked.size):
                path = candidate
        except OSError:
            path = None
    if path is None:
        staged = cache.make_temp_dir("url") / filename
        sha256, _ = context.http.download(url, staged, sha256=None, size=None)
        path = cache.archive_path(sha256, filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, path)
        cache.remove_temp_dir(staged.parent)
    sha256, size = hash_file(path)
    local = dataclasses.replace(file, url=path.as_uri(), sha256=sha256, size=size)
    meta = context.fetcher.get(local)
    artifact = PypiArtifact(
        name=file.name,
        version=str(file.version),
        filename=filename,
        url=shown,
        sha256=sha256,
        size=size,
        requires_dist=_requires(meta)[0],
        requires_python=_requires(meta)[1],
    )
    tags = file.tags if file.is_wheel else None
    return PreparedSource(
        name=file.name, version=file.version, metadata=meta, artifact=artifact, tags=tags
    )


def sources_of(
    prepared: Mapping[tuple[NormalizedName, ManifestSource], PreparedSource],
    dependencies: Iterable[PypiDependency],
) -> dict[NormalizedName, PreparedSource]:
    """The prepared sources of one environment's dependencies, by name."""
    return {d.name: prepared[(d.name, d.source)] for d in dependencies if d.source is not None}
