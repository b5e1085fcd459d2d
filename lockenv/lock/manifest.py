"""Read ``lockenv.toml`` (or ``[tool.lockenv]`` in ``pyproject.toml``) into a `Manifest`.

Read-only and on the fast path of every command, so it uses the stdlib ``tomllib``;
edits that must keep the user's formatting live in `lockenv.lock.manifest_edit`.

Validation collects every problem first and raises one `ManifestError`; each problem
names the file, the key path and the bad value, e.g.::

    lockenv.toml: pypi-dependencies.requests: invalid version specifier '>=2.x' (...)

Decisions the rest of lockenv relies on:

- Names are normalized: PyPI names with PEP 503 (`canonicalize_name`), and the
  `Requirement` of a `PypiDependency` is rebuilt with that name, so ``str(requirement)``
  does not depend on how the user spelled it. Conda names are lower-cased.
- An environment is the default feature (unless ``no-default-feature = true``) followed
  by its features, in the order listed. When several of them name the same package:
  PyPI specifiers are intersected, extras are united, markers must be equal; conda
  version specs are joined with ``,`` (AND), build strings and channels must agree.
  System requirements take the highest version (the machines must satisfy all of them);
  ``archspec`` values must agree.
- Platforms of an environment are ``project.platforms`` restricted by every feature that
  sets ``platforms`` (a feature may only name platforms the project lists). Channels are
  the project's, then each feature's in order (earlier = higher priority).
- ``indexes``, ``find-links`` and channels that are written as local paths (``./x``,
  ``../x``, absolute) become ``file://`` URLs, relative to the manifest's directory.
- ``exclude-newer`` without a UTC offset (a TOML local datetime or a string without
  ``Z``) is read as UTC, never as the machine's local time, so a lock is the same
  everywhere; a date means midnight UTC of that day.  A duration (``"14 days"``,
  ``"P2W"``; `lockenv.lock.exclude_newer`) is evaluated when the manifest is read: the
  cutoff is then, minus the span, and ``exclude_newer_span`` keeps the span.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from lockenv.errors import ManifestError, UsageError
from lockenv.limits import MAX_MANIFEST, read_capped
from lockenv.lock.pypi.wanted import NameSet, PypiDependency, PypiOptions, PypiSource
from lockenv.mirrors import Mirrors, parse_mirror_table
from lockenv.platforms import PLATFORMS as _TARGETS
from lockenv.project import TOML_ERRORS, toml_problem
from lockenv.urls import redact_url

__all__ = [
    "MANIFEST_NAMES",
    "PLATFORMS",
    "CondaDependency",
    "Environment",
    "EnvironmentSpec",
    "Feature",
    "Manifest",
    "PypiDependency",
    "PypiOptions",
    "PypiSource",
    "SystemRequirements",
    "check_conda_name",
    "check_conda_spec",
    "conda_dependency",
    "find_manifest",
    "load_manifest",
    "merge_conda_dependencies",
    "parse_manifest",
    "pypi_dependency_from_requirement",
    "read_manifest_text",
]

MANIFEST_NAMES = ("lockenv.toml", "pyproject.toml")
PLATFORMS: tuple[str, ...] = tuple(_TARGETS)
DEFAULT_FEATURE = "default"

# PEP 508 distribution names (also used for extras, which PEP 685 normalizes alike).
_DIST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
# Feature and environment names become directory names under .lockenv/envs.
_GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_NUMERIC_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*")
_ARCHSPEC = re.compile(r"[A-Za-z0-9_]+")
_EXCLUDE_NEWER = re.compile(
    r"\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?)?"
)

_PROJECT_KEYS = (
    "name",
    "platforms",
    "channels",
    "indexes",
    "find-links",
    "requires-python",
    "exclude-newer",
    "base-environment",
)
_TOP_KEYS = (
    "project",
    "dependencies",
    "pypi-dependencies",
    "system-requirements",
    "feature",
    "environments",
    "conda-pypi-map",
    "mirrors",
    "pypi-options",
)
_PYPI_OPTION_KEYS = ("prefer-newest", "no-build", "no-binary")
_FEATURE_KEYS = (
    "dependencies",
    "pypi-dependencies",
    "system-requirements",
    "platforms",
    "channels",
)
_CONDA_TABLE_KEYS = ("version", "build", "build-number", "channel", "subdir", "md5", "sha256")
_CONDA_EXAMPLES = "e.g. '>=1.26', '3.12.*', '1.2 py*', 'conda-forge::>=1.26' or '[build_number=0]'"
_SOURCE_KEYS = ("path", "editable", "git", "rev", "tag", "branch", "subdirectory", "url")
_PYPI_TABLE_KEYS = ("version", "extras", "markers", *_SOURCE_KEYS)
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip")
_SYSTEM_KEYS = ("glibc", "macos", "cuda", "archspec")
_ENVIRONMENT_KEYS = ("features", "no-default-feature", "base-environment")

Key = str | int


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True, kw_only=True)
class CondaDependency:
    """One ``[dependencies]`` entry: a conda package name and its MatchSpec version/build."""

    name: str
    spec: str
    channel: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemRequirements:
    """What the target machines provide (virtual packages and wheel tag floors)."""

    glibc: str | None = None
    macos: str | None = None
    cuda: str | None = None
    archspec: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Feature:
    """A named group of requirements; ``default`` holds the top-level tables."""

    name: str
    dependencies: tuple[CondaDependency, ...]
    pypi_dependencies: tuple[PypiDependency, ...]
    system_requirements: SystemRequirements
    platforms: tuple[str, ...] | None = None
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Environment:
    """An ``[environments]`` entry: which features make up an environment."""

    name: str
    features: tuple[str, ...]
    include_default: bool = True
    base_environment: Path | None = None  # overrides [project] base-environment


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvironmentSpec:
    """Everything the resolver needs for one environment, its features merged."""

    name: str
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    dependencies: tuple[CondaDependency, ...]
    pypi_dependencies: tuple[PypiDependency, ...]
    system_requirements: SystemRequirements
    requires_python: SpecifierSet | None
    # A site environment to build on: a venv over its Python, its packages installed.
    base_environment: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A validated manifest. ``root`` is where ``lockenv.lock`` and ``.lockenv/`` live."""

    path: Path
    root: Path
    name: str
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    indexes: tuple[str, ...]
    find_links: tuple[str, ...]
    requires_python: SpecifierSet | None
    exclude_newer: datetime | None
    default_feature: Feature
    features: Mapping[str, Feature]
    environments: Mapping[str, Environment]
    # Set when exclude-newer is a duration; exclude_newer is then now minus this span.
    exclude_newer_span: timedelta | None = None
    # [mirrors]: where to fetch from (never recorded in the lock); see lockenv.mirrors.
    mirrors: Mirrors = field(default_factory=Mirrors)
    base_environment: Path | None = None  # [project] base-environment
    # Conda package name -> the PyPI name it provides, where the two differ (pytorch ->
    # torch); other conda packages provide the PyPI name equal to their own.
    conda_pypi_map: Mapping[str, NormalizedName] = field(
        default_factory=lambda: MappingProxyType({})
    )
    pypi_options: PypiOptions = field(default_factory=PypiOptions)
    # Things that are valid but probably not meant (e.g. a bare conda version, which is
    # exact): printed by `lock` and `add`, never an error.
    warnings: tuple[str, ...] = ()

    def pypi_name_of(self, conda_name: str) -> NormalizedName:
        """The PyPI distribution a conda package of this name provides."""
        return self.conda_pypi_map.get(conda_name) or canonicalize_name(conda_name)

    def environment_names(self) -> tuple[str, ...]:
        """Environment names: ``default`` first, then the others sorted."""
        return tuple(self.environments)

    def environment(self, name: str) -> EnvironmentSpec:
        """Merge the features of environment ``name`` into one `EnvironmentSpec`.

        Raises `UsageError` (listing the known environments) for an unknown name.
        """
        env = self.environments.get(name)
        if env is None:
            known = ", ".join(self.environments)
            raise UsageError(
                f"unknown environment {name!r} in {_display(self.path)}; "
                f"known environments: {known}"
            )
        problems: list[str] = []
        spec = _compose(self, env, problems.append)
        if spec is None:
            raise ManifestError(problems)
        return spec


# --------------------------------------------------------------------------- public functions


def find_manifest(start: Path) -> Path:
    """Find the manifest for ``start`` (a file or directory), walking up to the root.

    In each directory ``lockenv.toml`` wins over ``pyproject.toml``, and a
    ``pyproject.toml`` only counts when it has a ``[tool.lockenv]`` table.
    """
    from lockenv.project import locate

    start = Path(os.path.abspath(start))
    return locate(None, start if start.is_dir() else start.parent).manifest


def load_manifest(path: Path) -> Manifest:
    """Read and validate the manifest at ``path`` (a file, or a directory holding one)."""
    if path.is_dir():
        from lockenv.project import locate

        path = locate(path).manifest
    return parse_manifest(read_manifest_text(path), path=path)


def read_manifest_text(path: Path) -> str:
    """The text of the manifest file at ``path`` (at most `lockenv.limits.MAX_MANIFEST`
    bytes of UTF-8); UsageError when it does not exist, ManifestError when unreadable."""
    try:
        data = read_capped(path, MAX_MANIFEST, "manifest")
    except FileNotFoundError:
        raise UsageError(
            f"manifest {str(path)!r} does not exist; run 'lockenv init' or pass --manifest PATH"
        ) from None
    except OSError as error:
        raise ManifestError(
            f"{_display(path)}: cannot read the manifest ({error.strerror or error})"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(
            f"{_display(path)}: not UTF-8 text (bad byte at offset {error.start}); "
            "save the file as UTF-8"
        ) from None


def parse_manifest(text: str, *, path: Path) -> Manifest:
    """Validate manifest ``text``; ``path`` names it in messages and gives the root.

    A file named ``pyproject.toml`` is read in its ``[tool.lockenv]`` form.
    """
    label = _display(path)
    root = Path(os.path.abspath(path)).parent
    try:
        document = tomllib.loads(text)
    except TOML_ERRORS as error:
        raise ManifestError(f"{label}: invalid TOML: {toml_problem(error)}") from None

    if path.name == "pyproject.toml":
        tool = document.get("tool")
        table = tool.get("lockenv") if isinstance(tool, dict) else None
        if not isinstance(table, dict):
            raise ManifestError(
                f"{label}: no [tool.lockenv] table; add one (e.g. [tool.lockenv.project]) "
                "or use a lockenv.toml"
            )
        pep621 = document.get("project")
        reader = _Reader(label, ("tool", "lockenv"), root)
        manifest = reader.manifest(
            table,
            path,
            pep621 if isinstance(pep621, dict) else {},
            groups=document.get("dependency-groups", {}),
        )
    else:
        reader = _Reader(label, (), root)
        manifest = reader.manifest(document, path, None)
    if manifest is None or reader.problems:
        raise ManifestError(reader.problems)
    return manifest


def check_conda_name(name: str) -> str | None:
    """Why ``name`` is not a valid conda package name (CEP 26), or None when it is."""
    from lockenv.lock.conda.matchspec import name_problem

    problem = name_problem(name.lower())
    if problem is None:
        return None
    return f"invalid conda package name {name!r}: {problem}"


def check_conda_spec(spec: str, name: str = "package") -> str | None:
    """Why ``spec`` (a manifest value: a MatchSpec without its name) is invalid, or None."""
    from lockenv.lock.conda.matchspec import InvalidMatchSpec, parse_manifest_spec

    try:
        parse_manifest_spec(name, spec)
    except InvalidMatchSpec as error:
        return _spec_problem(spec, error.reason)
    return None


def _split_subdir(channel: str) -> tuple[str, str | None]:
    """``conda-forge/linux-64`` -> ("conda-forge", "linux-64"); no known subdir: None."""
    from lockenv.lock.conda.matchspec import KNOWN_SUBDIRS

    base, slash, tail = channel.rstrip("/").rpartition("/")
    if slash and base and tail in KNOWN_SUBDIRS:
        return base, tail
    return channel, None


def _channel_listed(channel: str, channels: Sequence[str]) -> bool:
    """Whether a dependency's ``channel`` is one of ``channels`` (a name matches its URL)."""
    base = _split_subdir(channel)[0].rstrip("/")
    for listed in channels:
        listed = listed.rstrip("/")
        if base == listed or ("://" not in base and listed.endswith("/" + base)):
            return True
    return False


def _spec_problem(spec: str, reason: str) -> str:
    hint = "" if "e.g." in reason else f" ({_CONDA_EXAMPLES})"
    return f"invalid conda spec {spec!r}: {reason}{hint}"


def conda_dependency(name: str, spec: str, *, channel: str | None = None) -> CondaDependency:
    """The `CondaDependency` of ``name = spec`` (``channel``: the table form's key).

    Its ``spec`` is the canonical text (``"==1.2"`` for ``"1.2"``), with the channel moved
    to ``channel``, so equal requirements compare equal however they were written.
    Raises `InvalidMatchSpec`.
    """
    from lockenv.lock.conda.matchspec import manifest_parts, parse_manifest_spec

    text, chosen = manifest_parts(parse_manifest_spec(name, spec, channel=channel))
    return CondaDependency(name=name.lower(), spec=text, channel=chosen)


def _table_spec(texts: Mapping[str, str | None]) -> str:
    """The MatchSpec text (without name or channel) of a table ``{version, build, ...}``."""
    spec = (texts.get("version") or "*").strip()
    if texts.get("build"):
        spec += f" {(texts['build'] or '').strip()}"
    fields = [
        f"{key.replace('-', '_')}='{value.strip()}'"
        for key, value in texts.items()
        if key not in ("version", "build", "channel") and value is not None
    ]
    return spec + ("[" + ",".join(fields) + "]" if fields else "")


# --------------------------------------------------------------------------- reading


def _display(path: Path) -> str:
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


def _keypath(keys: Iterable[Key]) -> str:
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
            continue
        text = key if _BARE_KEY.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
        out += f".{text}" if out else text
    return out


def _type_name(value: object) -> str:
    match value:
        case bool():
            return "boolean"
        case int():
            return "integer"
        case float():
            return "float"
        case str():
            return "string"
        case list():
            return "array"
        case dict():
            return "table"
        case datetime():
            return "datetime"
        case date():
            return "date"
        case time():
            return "time"
    return type(value).__name__


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Walks the parsed TOML, building the model and collecting problems."""

    def __init__(self, label: str, prefix: tuple[str, ...], root: Path) -> None:
        self.label = label
        self.prefix = prefix
        self.root = root
        self.problems: list[str] = []
        self.warnings: list[str] = []

    # ---- problem helpers

    def warn(self, keys: Sequence[Key], message: str) -> None:
        self.warnings.append(f"{self.label}: {_keypath((*self.prefix, *keys))}: {message}")

    def add(self, keys: Sequence[Key], message: str, *, absolute: bool = False) -> None:
        full = tuple(keys) if absolute else (*self.prefix, *keys)
        self.problems.append(f"{self.label}: {_keypath(full)}: {message}")

    def wrong_type(self, keys: Sequence[Key], expected: str, value: object) -> None:
        self.add(keys, f"expected {expected}, got {_short(value)} ({_type_name(value)})")

    def table(self, value: object, keys: Sequence[Key], allowed: Sequence[str]) -> dict[str, Any]:
        """``value`` as a table with only ``allowed`` keys (else problems and ``{}``)."""
        if not isinstance(value, dict):
            self.wrong_type(keys, "a table", value)
            return {}
        for key in value:
            if key not in allowed:
                self.unknown_key((*keys, key), key, allowed)
        return {key: item for key, item in value.items() if key in allowed}

    def unknown_key(self, keys: Sequence[Key], key: str, allowed: Sequence[str]) -> None:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(allowed)
        self.add(keys, f"unknown key {key!r} ({hint})")

    def string(self, value: object, keys: Sequence[Key]) -> str | None:
        if isinstance(value, str):
            return value
        self.wrong_type(keys, "a string", value)
        return None

    def string_list(self, value: object, keys: Sequence[Key]) -> list[tuple[int, str]] | None:
        if not isinstance(value, list):
            self.wrong_type(keys, "an array of strings", value)
            return None
        out: list[tuple[int, str]] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.wrong_type((*keys, index), "a string", item)
            elif item in seen:
                self.add((*keys, index), f"{item!r} is listed twice; remove one")
            else:
                seen.add(item)
                out.append((index, item))
        return out

    # ---- whole manifest

    def manifest(
        self,
        doc: dict[str, Any],
        path: Path,
        pep621: dict[str, Any] | None,
        *,
        groups: object = None,
    ) -> Manifest | None:
        top = self.table(doc, (), _TOP_KEYS)
        project = self.table(top.get("project", {}), ("project",), _PROJECT_KEYS)

        name = self._project_name(project, pep621)
        platforms = self._platforms(project.get("platforms"), ("project", "platforms"))
        if platforms is None:
            platforms = (_current_platform(),)
        channels = self._channels(project.get("channels", []), ("project", "channels"))
        indexes = self._locations(project.get("indexes", []), ("project", "indexes"))
        find_links = self._locations(project.get("find-links", []), ("project", "find-links"))
        requires_python = self._requires_python(project, pep621)
        exclude_newer, exclude_newer_span = self._exclude_newer(project.get("exclude-newer"))
        base_environment = self._base_environment(project, ("project", "base-environment"))

        default_feature = self._feature(DEFAULT_FEATURE, top, (), platforms)
        features: dict[str, Feature] = {}
        raw_features = top.get("feature", {})
        if not isinstance(raw_features, dict):
            self.wrong_type(("feature",), "a table of features", raw_features)
            raw_features = {}
        for feature_name in sorted(raw_features):
            keys = ("feature", feature_name)
            if feature_name == DEFAULT_FEATURE:
                self.add(
                    keys,
                    "'default' names the top-level tables; give this feature another name",
                )
                continue
            if not _GROUP_NAME.fullmatch(feature_name):
                self.add(
                    keys,
                    f"invalid feature name {feature_name!r} "
                    "(use lower-case letters, digits, '-' and '_')",
                )
            raw = self.table(raw_features[feature_name], keys, _FEATURE_KEYS)
            features[feature_name] = self._feature(feature_name, raw, keys, platforms)
        if pep621:
            implicit = self._project_features(pep621, groups or {}, default_feature)
            for feature_name, pypi in implicit.items():
                features[feature_name] = _with_pypi(features.get(feature_name), feature_name, pypi)

        environments = self._environments(top.get("environments", {}), features)
        used = {name for env in environments.values() for name in env.features}
        # Only features the manifest declares: a project's extras and dependency groups
        # are features too, but many projects have extras no environment needs.
        for feature_name in sorted(set(raw_features) & set(features) - used):
            self.warn(
                ("feature", feature_name),
                f"no environment includes feature {feature_name!r}, so nothing locks or "
                f'installs it; add it to one, e.g. [environments] {feature_name} = ["'
                f'{feature_name}"] (`lockenv add --feature {feature_name} --environment '
                f"{feature_name} ...` does that)",
            )
        conda_pypi_map = self._conda_pypi_map(top.get("conda-pypi-map", {}))
        mirrors = parse_mirror_table(
            top.get("mirrors", {}),
            source=self.label,
            base_dir=self.root,
            problem=lambda key, message: self.add(
                ("mirrors", key) if key else ("mirrors",), message
            ),
        )
        pypi_options = self._pypi_options(top.get("pypi-options", {}))
        if name is None or channels is None or indexes is None or find_links is None:
            return None
        manifest = Manifest(
            path=path,
            root=self.root,
            name=name,
            platforms=platforms,
            channels=channels,
            indexes=indexes,
            find_links=find_links,
            requires_python=requires_python,
            exclude_newer=exclude_newer,
            exclude_newer_span=exclude_newer_span,
            default_feature=default_feature,
            features=MappingProxyType(features),
            environments=MappingProxyType(environments),
            conda_pypi_map=MappingProxyType(conda_pypi_map),
            mirrors=mirrors,
            base_environment=base_environment,
            pypi_options=pypi_options,
            warnings=tuple(self.warnings),
        )
        if not self.problems:
            for env in environments.values():
                _compose(manifest, env, self.problems.append)
        return manifest

    def _conda_pypi_map(self, value: object) -> dict[str, NormalizedName]:
        keys: tuple[Key, ...] = ("conda-pypi-map",)
        if not isinstance(value, dict):
            self.wrong_type(keys, "a table of conda name = PyPI name", value)
            return {}
        mapping: dict[str, NormalizedName] = {}
        for conda_name, pypi_name in sorted(value.items()):
            if check_conda_name(conda_name) is not None:
                self.add((*keys, conda_name), f"{conda_name!r} is not a conda package name")
            elif not isinstance(pypi_name, str) or not _DIST_NAME.fullmatch(pypi_name):
                self.add(
                    (*keys, conda_name),
                    f'{pypi_name!r} is not a PyPI distribution name (e.g. "torch")',
                )
            else:
                mapping[conda_name] = canonicalize_name(pypi_name)
        return mapping

    def _project_features(
        self, pep621: dict[str, Any], groups: object, default: Feature
    ) -> dict[str, list[PypiDependency]]:
        """Features the project's own pyproject.toml defines, as pixi and uv read them: one
        per ``[project.optional-dependencies]`` extra (the project itself with that extra,
        when it is a path dependency of the manifest, else the extra's requirements) and
        one per PEP 735 ``[dependency-groups]`` group (its requirements, includes
        expanded)."""
        out: dict[str, list[PypiDependency]] = {}
        project = canonicalize_name(str(pep621.get("name", "")) or "-")
        itself = next(
            (d for d in default.pypi_dependencies if d.name == project and d.source is not None),
            None,
        )
        extras = pep621.get("optional-dependencies", {})
        if not isinstance(extras, dict):
            self.add(("project", "optional-dependencies"), "expected a table", absolute=True)
            extras = {}
        for extra, items in extras.items():
            feature = canonicalize_name(extra)
            keys: tuple[Key, ...] = ("project", "optional-dependencies", extra)
            if itself is not None and itself.source is not None:
                text = f"{project}[{feature}] @ {itself.source.reference} "
                out.setdefault(feature, []).append(
                    PypiDependency(
                        name=project, requirement=Requirement(text), source=itself.source
                    )
                )
            elif isinstance(items, list):
                out.setdefault(feature, []).extend(self._pep508_list(items, keys))
        if not isinstance(groups, dict):
            self.add(("dependency-groups",), "expected a table", absolute=True)
            return out
        normalized: dict[str, Any] = {canonicalize_name(g): v for g, v in groups.items()}
        for group in groups:
            feature = canonicalize_name(group)
            texts = self._group_requirements(feature, normalized, ())
            keys = ("dependency-groups", group)
            out.setdefault(feature, []).extend(self._pep508_list(texts, keys))
        return out

    def _group_requirements(
        self, group: str, groups: dict[str, Any], seen: tuple[str, ...]
    ) -> list[str]:
        """The requirement strings of a dependency group, ``include-group`` expanded."""
        if group in seen:
            chain = " -> ".join((*seen, group))
            self.add(("dependency-groups",), f"include-group cycle: {chain}", absolute=True)
            return []
        items = groups.get(group)
        if not isinstance(items, list):
            self.add(("dependency-groups", group), "expected an array", absolute=True)
            return []
        texts: list[str] = []
        for item in items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                included = canonicalize_name(item["include-group"])
                if included not in groups:
                    self.add(
                        ("dependency-groups", group),
                        f"include-group {item['include-group']!r}: no such group",
                        absolute=True,
                    )
                    continue
                texts += self._group_requirements(included, groups, (*seen, group))
            else:
                self.add(
                    ("dependency-groups", group),
                    f"{item!r} is neither a PEP 508 string nor {{include-group = ...}}",
                    absolute=True,
                )
        return texts

    def _pep508_list(self, items: list[Any], keys: tuple[Key, ...]) -> list[PypiDependency]:
        """Manifest dependencies from PEP 508 strings (a requirement with a URL becomes a
        git, url or path source)."""
        out = []
        for index, text in enumerate(items):
            try:
                requirement = Requirement(str(text))
            except InvalidRequirement as error:
                self.add(
                    (*keys, index),
                    f"invalid requirement {text!r} ({str(error).splitlines()[0]})",
                    absolute=True,
                )
                continue
            dependency = pypi_dependency_from_requirement(requirement, root=self.root)
            if isinstance(dependency, str):
                self.add((*keys, index), dependency, absolute=True)
            else:
                out.append(dependency)
        return out

    def _pypi_options(self, value: object) -> PypiOptions:
        keys: tuple[Key, ...] = ("pypi-options",)
        table = self.table(value, keys, _PYPI_OPTION_KEYS)
        settings: dict[str, NameSet] = {}
        for key in _PYPI_OPTION_KEYS:
            if key not in table:
                continue
            raw = table[key]
            if isinstance(raw, bool):
                settings[key.replace("-", "_")] = raw
                continue
            if not isinstance(raw, list):
                self.wrong_type((*keys, key), "true, false or an array of package names", raw)
                continue
            items = self.string_list(raw, (*keys, key))
            names: set[NormalizedName] = set()
            for index, item in items or []:
                if _DIST_NAME.fullmatch(item):
                    names.add(canonicalize_name(item))
                else:
                    self.add((*keys, key, index), f"invalid distribution name {item!r}")
            settings[key.replace("-", "_")] = frozenset(names)
        options = PypiOptions(**settings)
        both = _overlap(options.no_build, options.no_binary)
        if both:
            self.add(
                keys,
                f"no-build and no-binary both name {both}: a package needs a wheel or an "
                "sdist it may build; remove it from one of them",
            )
        return options

    def _project_name(self, project: dict[str, Any], pep621: dict[str, Any] | None) -> str | None:
        if "name" in project:
            name = self.string(project["name"], ("project", "name"))
            if name is not None and not name.strip():
                self.add(("project", "name"), "empty project name; give the project a name")
                return None
            return name
        if pep621 is not None and isinstance(pep621.get("name"), str) and pep621["name"].strip():
            return str(pep621["name"])
        return self.root.name or "project"

    def _platforms(self, value: object, keys: tuple[Key, ...]) -> tuple[str, ...] | None:
        if value is None:
            return None
        items = self.string_list(value, keys)
        if items is None:
            return None
        if not items and isinstance(value, list) and not value:
            self.add(keys, "empty platform list; name at least one of: " + ", ".join(PLATFORMS))
            return None
        out = []
        for index, item in items:
            if item in PLATFORMS:
                out.append(item)
            else:
                self.add(
                    (*keys, index), f"unknown platform {item!r} (valid: {', '.join(PLATFORMS)})"
                )
        return tuple(out)

    def _channels(self, value: object, keys: tuple[Key, ...]) -> tuple[str, ...] | None:
        items = self.string_list(value, keys)
        if items is None:
            return None
        out = []
        for index, item in items:
            channel = self._channel(item, (*keys, index))
            if channel is not None:
                out.append(channel)
        return tuple(out)

    def _channel(self, item: str, keys: Sequence[Key]) -> str | None:
        if _URL.match(item) or _is_local_path(item):
            return self._location(item, keys, ("http", "https", "file"))
        if _CHANNEL_NAME.fullmatch(item):
            return item
        self.add(
            keys,
            f"invalid channel {item!r} (use a channel name such as 'conda-forge', "
            "an https:// or file:// URL, or a path starting with './')",
        )
        return None

    def _locations(self, value: object, keys: tuple[Key, ...]) -> tuple[str, ...] | None:
        items = self.string_list(value, keys)
        if items is None:
            return None
        out = []
        for index, item in items:
            location = self._location(item, (*keys, index), ("http", "https", "file"))
            if location is not None:
                out.append(location)
        return tuple(out)

    def _location(self, item: str, keys: Sequence[Key], schemes: Sequence[str]) -> str | None:
        if not item.strip():
            self.add(keys, "empty location; use a URL or a directory path")
            return None
        if _URL.match(item):
            scheme = item.split("://", 1)[0].lower()
            if scheme not in schemes:
                self.add(
                    keys,
                    f"unsupported URL scheme in {item!r} (use one of: "
                    + ", ".join(f"{s}://" for s in schemes)
                    + ")",
                )
                return None
            try:
                parts = urllib.parse.urlsplit(item)
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError as exc:
                self.add(keys, f"{redact_url(item)!r} is not a valid URL ({exc})")
                return None
            if parts.scheme != "file" and not parts.hostname:
                self.add(keys, f"{redact_url(item)!r} names no host")
                return None
            return item
        local = Path(os.path.expanduser(item))
        if not local.is_absolute():
            local = self.root / local
        return Path(os.path.normpath(local)).as_uri()

    def _base_environment(self, table: dict[str, Any], keys: tuple[Key, ...]) -> Path | None:
        if "base-environment" not in table:
            return None
        value = self.string(table["base-environment"], keys)
        if value is None:
            return None
        if not value.strip() or _URL.match(value):
            self.add(
                keys,
                f"invalid base-environment {value!r} (the directory of a Python environment, "
                "e.g. '/opt/site/envs/ml-2025')",
            )
            return None
        path = Path(os.path.expanduser(value.strip()))
        return Path(os.path.normpath(path if path.is_absolute() else self.root / path))

    def _requires_python(
        self, project: dict[str, Any], pep621: dict[str, Any] | None
    ) -> SpecifierSet | None:
        if "requires-python" in project:
            keys: tuple[Key, ...] = ("project", "requires-python")
            value, absolute = project["requires-python"], False
        elif pep621 is not None and "requires-python" in pep621:
            keys, value, absolute = ("project", "requires-python"), pep621["requires-python"], True
        else:
            return None
        if not isinstance(value, str):
            self.add(
                keys,
                f"expected a string, got {_short(value)} ({_type_name(value)})",
                absolute=absolute,
            )
            return None
        try:
            return SpecifierSet(value)
        except InvalidSpecifier:
            self.add(
                keys,
                f"invalid requires-python {value!r} (use PEP 440, e.g. '>=3.11' or '==3.12.*')",
                absolute=absolute,
            )
            return None

    def _exclude_newer(self, value: object) -> tuple[datetime | None, timedelta | None]:
        from lockenv.lock.exclude_newer import SpanError, parse_span, span_cutoff

        keys = ("project", "exclude-newer")
        if value is None:
            return None, None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime.combine(value, time())
        elif isinstance(value, str):
            text = value.strip()
            try:
                span = parse_span(text)
            except SpanError as error:
                self.add(keys, f"invalid exclude-newer duration {value!r}: {error}")
                return None, None
            if span is not None:
                return span_cutoff(span), span
            try:
                if not _EXCLUDE_NEWER.fullmatch(text):
                    raise ValueError(text)
                moment = datetime.fromisoformat(text.replace("z", "Z"))
            except ValueError:
                self.add(
                    keys,
                    f"invalid exclude-newer {value!r} (use an RFC 3339 timestamp such as "
                    "'2025-06-01T00:00:00Z', a date such as '2025-06-01', or a duration "
                    "such as '14 days' or 'P2W')",
                )
                return None, None
        else:
            self.wrong_type(keys, "a datetime, a date, a duration or a string", value)
            return None, None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC), None

    # ---- features

    def _feature(
        self,
        name: str,
        raw: dict[str, Any],
        keys: tuple[Key, ...],
        project_platforms: tuple[str, ...],
    ) -> Feature:
        conda: list[CondaDependency] = []
        deps = raw.get("dependencies", {})
        if isinstance(deps, dict):
            for dep_name in deps:
                dep = self._conda_dependency(
                    dep_name, deps[dep_name], (*keys, "dependencies", dep_name)
                )
                if dep is not None:
                    conda.append(dep)
        else:
            self.wrong_type((*keys, "dependencies"), "a table", deps)

        pypi: dict[str, PypiDependency] = {}
        pypi_deps = raw.get("pypi-dependencies", {})
        if isinstance(pypi_deps, dict):
            for dep_name in pypi_deps:
                dep_keys = (*keys, "pypi-dependencies", dep_name)
                pypi_dep = self._pypi_dependency(dep_name, pypi_deps[dep_name], dep_keys)
                if pypi_dep is None:
                    continue
                if pypi_dep.name in pypi:
                    self.add(
                        dep_keys,
                        f"{dep_name!r} names the same package as "
                        f"{pypi[pypi_dep.name].requirement.name!r}; keep one",
                    )
                pypi[pypi_dep.name] = pypi_dep
        else:
            self.wrong_type((*keys, "pypi-dependencies"), "a table", pypi_deps)

        seen_conda: dict[str, CondaDependency] = {}
        for dep in conda:
            if dep.name in seen_conda:
                self.add((*keys, "dependencies", dep.name), "listed twice (names ignore case)")
            seen_conda[dep.name] = dep

        system = self._system_requirements(raw.get("system-requirements", {}), keys)
        platforms = None
        channels: tuple[str, ...] = ()
        if name != DEFAULT_FEATURE:
            platforms = self._platforms(raw.get("platforms"), (*keys, "platforms"))
            if platforms is not None:
                for platform in platforms:
                    if platform not in project_platforms:
                        self.add(
                            (*keys, "platforms"),
                            f"platform {platform!r} is not in project.platforms "
                            f"({', '.join(project_platforms)}); add it there first",
                        )
            channels = self._channels(raw.get("channels", []), (*keys, "channels")) or ()
        return Feature(
            name=name,
            dependencies=tuple(sorted(seen_conda.values(), key=lambda d: d.name)),
            pypi_dependencies=tuple(pypi[n] for n in sorted(pypi)),
            system_requirements=system,
            platforms=platforms,
            channels=channels,
        )

    def _conda_dependency(
        self, name: str, value: object, keys: tuple[Key, ...]
    ) -> CondaDependency | None:
        from lockenv.lock.conda.matchspec import InvalidMatchSpec, is_bare_version

        problem = check_conda_name(name)
        if problem is not None:
            self.add(keys, problem)
            return None
        channel: str | None = None
        if isinstance(value, str):
            spec, spec_keys, version = value.strip(), keys, value.partition("::")[2] or value
        elif isinstance(value, dict):
            table = self.table(value, keys, _CONDA_TABLE_KEYS)
            texts = {
                key: str(item)
                if key == "build-number" and type(item) is int
                else self.string(item, (*keys, key))
                for key, item in table.items()
            }
            if len(table) != len(value) or None in texts.values():
                return None
            if "channel" in texts:
                channel = self._channel(texts["channel"] or "", (*keys, "channel"))
                if channel is None:
                    return None
            version = texts.get("version") or "*"
            build = (texts.get("build") or "").strip()
            if len(build.split()) > 1:
                self.add((*keys, "build"), f"invalid build string {build!r} (no spaces allowed)")
                return None
            spec = _table_spec(texts)
            spec_keys = (*keys, "version") if "version" in table else keys
        else:
            self.wrong_type(
                keys, "a MatchSpec string or a table {version, build, channel, ...}", value
            )
            return None
        try:
            dependency = conda_dependency(name, spec, channel=channel)
        except InvalidMatchSpec as error:
            self.add(spec_keys, _spec_problem(spec, error.reason))
            return None
        if dependency.channel is not None and channel is None:
            # A channel written before '::' is read like a channels entry (paths -> file://).
            base, subdir = _split_subdir(dependency.channel)
            located = self._channel(base, keys)
            if located is None:
                return None
            dependency = replace(dependency, channel=f"{located}/{subdir}" if subdir else located)
        if is_bare_version(version):
            bare = version.strip()
            self.warn(
                spec_keys,
                f"{bare!r} means exactly {bare} (as in conda: {bare}.0 too, not {bare}.1); "
                f'write "{bare}.*" for the {bare} series, or "=={bare}" to keep this meaning',
            )
        return dependency

    def _pypi_dependency(
        self, name: str, value: object, keys: tuple[Key, ...]
    ) -> PypiDependency | None:
        ok = True
        if not _DIST_NAME.fullmatch(name):
            self.add(
                keys,
                f"invalid distribution name {name!r} (use letters, digits, '.', '_' and '-', "
                "starting and ending with a letter or digit)",
            )
            ok = False
        version: str | None = "*"
        extras: list[str] = []
        marker: Marker | None = None
        version_keys = keys
        if isinstance(value, str):
            version = value
        elif isinstance(value, dict):
            table = self.table(value, keys, _PYPI_TABLE_KEYS)
            ok = ok and len(table) == len(value)
            version_keys = (*keys, "version")
            version = self.string(table.get("version", "*"), version_keys)
            if "extras" in table:
                items = self.string_list(table["extras"], (*keys, "extras"))
                if items is None:
                    ok = False
                for index, extra in items or []:
                    if _DIST_NAME.fullmatch(extra):
                        extras.append(canonicalize_name(extra))
                    else:
                        self.add(
                            (*keys, "extras", index),
                            f"invalid extra name {extra!r} (use letters, digits, '.', '_' and "
                            "'-', starting and ending with a letter or digit)",
                        )
                        ok = False
            if "markers" in table:
                marker_text = self.string(table["markers"], (*keys, "markers"))
                try:
                    marker = Marker(marker_text) if marker_text is not None else None
                except InvalidMarker:
                    self.add(
                        (*keys, "markers"),
                        f"invalid environment marker {marker_text!r} "
                        "(use PEP 508, e.g. 'sys_platform == \"linux\"')",
                    )
                ok = ok and marker is not None
        else:
            self.wrong_type(
                keys, "a version specifier string or a table {version, extras, markers}", value
            )
            return None
        source: PypiSource | None = None
        if isinstance(value, dict) and any(k in value for k in _SOURCE_KEYS):
            if "version" in value:
                self.add(
                    (*keys, "version"),
                    "a path, git or url dependency takes its version from its source; "
                    "remove version",
                )
                ok = False
            source = self._pypi_source(value, keys)
            ok = ok and source is not None
        specifier = self._specifier(version, version_keys) if version is not None else None
        if specifier is None or not ok:
            return None
        normalized = canonicalize_name(name)
        text = str(normalized)
        if extras:
            text += "[" + ",".join(sorted(set(extras))) + "]"
        text += f" @ {source.reference} " if source is not None else str(specifier)
        if marker is not None:
            text += f"; {marker}"
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            self.add(keys, f"invalid requirement {text!r} ({str(error).splitlines()[0]})")
            return None
        return PypiDependency(name=normalized, requirement=requirement, source=source)

    def _pypi_source(self, table: dict[str, Any], keys: tuple[Key, ...]) -> PypiSource | None:
        """The path, git or url source of a ``[pypi-dependencies]`` table, checked."""
        kinds = [k for k in ("path", "git", "url") if k in table]
        if len(kinds) > 1:
            self.add(keys, f"{' and '.join(kinds)} both given; a dependency has one source")
            return None
        kind = kinds[0] if kinds else None
        refs = [k for k in ("rev", "tag", "branch") if k in table]
        ok = True
        for key in ("editable", "rev", "tag", "branch", "subdirectory"):
            owner = "path" if key == "editable" else "git"
            if key in table and kind != owner:
                self.add((*keys, key), f"{key} goes with {owner} = ...; remove it or add {owner}")
                ok = False
        if len(refs) > 1:
            self.add(keys, f"{' and '.join(refs)} both given; name one git reference")
            ok = False
        strings: dict[str, str] = {}
        for key in ("path", "git", "url", "rev", "tag", "branch", "subdirectory"):
            if key in table:
                text = self.string(table[key], (*keys, key))
                if text is None or not text.strip():
                    if text is not None:
                        self.add((*keys, key), f"empty {key}")
                    ok = False
                else:
                    strings[key] = text.strip()
        editable = table.get("editable", False)
        if not isinstance(editable, bool):
            self.wrong_type((*keys, "editable"), "true or false", editable)
            ok = False
        if not ok or kind is None:
            return None
        if kind == "path":
            relative = self._source_path(strings["path"], (*keys, "path"))
            if relative is None:
                return None
            return PypiSource(path=relative, editable=bool(editable))
        if kind == "git":
            subdirectory = strings.get("subdirectory")
            if subdirectory is not None and (
                subdirectory.startswith("/") or ".." in subdirectory.split("/")
            ):
                self.add((*keys, "subdirectory"), f"{subdirectory!r} leaves the repository")
                return None
            url = strings["git"]
            if not (_URL.match(url) or re.fullmatch(r"[\w.-]+@[\w.-]+:.+", url)):
                self.add(
                    (*keys, "git"),
                    f"{url!r} is not a git URL (https://, ssh://, file:// or user@host:path)",
                )
                return None
            return PypiSource(
                git=url.removeprefix("git+"),
                rev=strings.get("rev"),
                tag=strings.get("tag"),
                branch=strings.get("branch"),
                subdirectory=subdirectory,
            )
        url = strings["url"]
        if not re.match(r"(https?|file)://", url):
            self.add((*keys, "url"), f"{url!r}: use an https:// or file:// URL")
            return None
        filename = url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1]
        if not filename.endswith(_ARCHIVE_SUFFIXES):
            self.add(
                (*keys, "url"),
                f"{url!r} names no wheel or sdist (a file ending in .whl, .tar.gz or .zip)",
            )
            return None
        return PypiSource(url=url)

    def _source_path(self, text: str, keys: tuple[Key, ...]) -> str | None:
        """A path dependency as a POSIX path relative to the manifest's directory."""
        local = Path(os.path.expanduser(text))
        if not local.is_absolute():
            local = self.root / local
        local = Path(os.path.normpath(local))
        if not local.is_dir():
            self.add(
                keys,
                f"{text!r} is not a directory (a project with pyproject.toml or setup.py, "
                f"relative to {str(self.root)!r})",
            )
            return None
        relative = os.path.relpath(local, self.root)
        return Path(relative).as_posix()

    def _specifier(self, version: str, keys: tuple[Key, ...]) -> SpecifierSet | None:
        text = version.strip()
        if text == "*":
            return SpecifierSet()
        if not text:
            self.add(keys, f"empty version specifier {version!r} (use '*' for any version)")
            return None
        if any(not part.strip() for part in text.split(",")):
            # packaging skips empty parts; pip and uv refuse them, and so do we.
            self.add(
                keys,
                f"invalid version specifier {version!r} (an empty constraint between commas; "
                "e.g. '>=1.2,<2')",
            )
            return None
        try:
            return SpecifierSet(text)
        except InvalidSpecifier:
            pass
        example = "'>=2.31'"
        try:
            Version(text)
            example = f"'=={text}'"
        except InvalidVersion:
            pass
        self.add(keys, f"invalid version specifier {version!r} (use PEP 440, e.g. {example})")
        return None

    def _system_requirements(self, value: object, keys: tuple[Key, ...]) -> SystemRequirements:
        keys = (*keys, "system-requirements")
        table = self.table(value, keys, _SYSTEM_KEYS)
        found: dict[str, str] = {}
        for key, raw in table.items():
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                self.wrong_type((*keys, key), "a string or a number", raw)
                continue
            text = str(raw).strip()
            pattern = _ARCHSPEC if key == "archspec" else _NUMERIC_VERSION
            if not pattern.fullmatch(text):
                example = "'x86_64_v3'" if key == "archspec" else "'2.28'"
                self.add((*keys, key), f"invalid {key} value {raw!r} (e.g. {example})")
                continue
            found[key] = text
        return SystemRequirements(**found)

    # ---- environments

    def _environments(
        self, value: object, features: Mapping[str, Feature]
    ) -> dict[str, Environment]:
        environments: dict[str, Environment] = {}
        if not isinstance(value, dict):
            self.wrong_type(("environments",), "a table", value)
            value = {}
        known = ", ".join(features) or "none defined"
        for env_name, raw in value.items():
            keys: tuple[Key, ...] = ("environments", env_name)
            if not _GROUP_NAME.fullmatch(env_name):
                self.add(
                    keys,
                    f"invalid environment name {env_name!r} "
                    "(use lower-case letters, digits, '-' and '_')",
                )
                continue
            include_default = True
            names_keys = keys
            base: Path | None = None
            if isinstance(raw, dict):
                table = self.table(raw, keys, _ENVIRONMENT_KEYS)
                base = self._base_environment(table, (*keys, "base-environment"))
                flag = table.get("no-default-feature", False)
                if not isinstance(flag, bool):
                    self.wrong_type((*keys, "no-default-feature"), "true or false", flag)
                include_default = flag is not True
                names_keys = (*keys, "features")
                raw = table.get("features", [])
            elif not isinstance(raw, list):
                self.wrong_type(keys, "an array of feature names or a table {features}", raw)
                continue
            items = self.string_list(raw, names_keys)
            if items is None:
                continue
            chosen = []
            for index, feature_name in items:
                if feature_name == DEFAULT_FEATURE:
                    self.add(
                        (*names_keys, index),
                        "the default feature is included automatically "
                        "(use no-default-feature = true to leave it out); remove 'default'",
                    )
                elif feature_name not in features:
                    self.add(
                        (*names_keys, index),
                        f"unknown feature {feature_name!r} (defined features: {known})",
                    )
                else:
                    chosen.append(feature_name)
            environments[env_name] = Environment(
                name=env_name,
                features=tuple(chosen),
                include_default=include_default,
                base_environment=base,
            )
        if DEFAULT_FEATURE not in environments:
            environments[DEFAULT_FEATURE] = Environment(name=DEFAULT_FEATURE, features=())
        ordered = {DEFAULT_FEATURE: environments.pop(DEFAULT_FEATURE)}
        ordered.update(sorted(environments.items()))
        return ordered


def pypi_dependency_from_requirement(
    requirement: Requirement, *, root: Path
) -> PypiDependency | str:
    """A PEP 508 requirement as a manifest dependency (a direct reference becoming a git,
    url or path source, a path relative to ``root``), or why it cannot be one."""
    name = canonicalize_name(requirement.name)
    extras = "[" + ",".join(sorted(requirement.extras)) + "]" if requirement.extras else ""
    marker = f"; {requirement.marker}" if requirement.marker else ""
    source: PypiSource | None = None
    if requirement.url:
        found = source_from_url(requirement.url, root=root)
        if isinstance(found, str):
            return found
        source = found
        text = f"{name}{extras} @ {found.reference} {marker}"
    else:
        text = f"{name}{extras}{requirement.specifier}{marker}"
    return PypiDependency(name=name, requirement=Requirement(text), source=source)


def source_from_url(url: str, *, root: Path) -> PypiSource | str:
    """The source a PEP 508 direct reference names: ``git+URL@ref#subdirectory=...``, an
    archive URL, or a ``file:`` directory (made relative to ``root``); else why not."""
    import urllib.parse

    if url.startswith("git+"):
        rest, _, fragment = url[4:].partition("#")
        subdirectory = urllib.parse.parse_qs(fragment).get("subdirectory", [None])[0]
        scheme, sep, tail = rest.partition("://")
        base, at, ref = tail.rpartition("@") if "@" in tail.split("/", 1)[-1] else ("", "", "")
        repo = f"{scheme}{sep}{base}" if at else rest
        return PypiSource(git=repo, rev=ref or None, subdirectory=subdirectory)
    if url.startswith("file:"):
        from urllib.request import url2pathname

        local = Path(url2pathname(urllib.parse.urlsplit(url).path))
        if local.is_dir():
            relative = os.path.relpath(local, root)
            return PypiSource(path=Path(relative).as_posix())
    if re.match(r"(https?|file)://", url):
        filename = url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1]
        if filename.endswith(_ARCHIVE_SUFFIXES):
            return PypiSource(url=url.split("#", 1)[0])
    return (
        f"{url!r} is not a source lockenv can lock (a git+ URL, a wheel or sdist URL, or a "
        "file: URL of a project directory)"
    )


def _with_pypi(feature: Feature | None, name: str, pypi: list[PypiDependency]) -> Feature:
    """``feature`` (or a new one) with ``pypi`` added; its own entries win by name."""
    own = {d.name: d for d in feature.pypi_dependencies} if feature else {}
    merged = {d.name: d for d in pypi} | own
    if feature is None:
        return Feature(
            name=name,
            dependencies=(),
            pypi_dependencies=tuple(merged[n] for n in sorted(merged)),
            system_requirements=SystemRequirements(),
        )
    return replace(feature, pypi_dependencies=tuple(merged[n] for n in sorted(merged)))


def _overlap(a: NameSet, b: NameSet) -> str:
    """What two ``[pypi-options]`` settings have in common, for a message ("" if nothing)."""
    if a is True and b is True:
        return "every package"
    names_a = a if isinstance(a, frozenset) else frozenset()
    names_b = b if isinstance(b, frozenset) else frozenset()
    common = names_b if a is True else names_a if b is True else names_a & names_b
    return ", ".join(sorted(common))


def _is_local_path(text: str) -> bool:
    return (
        text.startswith(("./", "../", "~", ".\\", "..\\"))
        or text in (".", "..")
        or Path(text).is_absolute()
        or text.startswith("/")
    )


def _current_platform() -> str:
    # Imported here so that reading a manifest that names its platforms never needs it.
    from lockenv.platforms import current_platform

    return current_platform()


# --------------------------------------------------------------------------- merging


def _compose(
    manifest: Manifest, env: Environment, report: Callable[[str], None]
) -> EnvironmentSpec | None:
    """Merge ``env``'s features; report conflicts (one string each) and return None on any."""
    label = _display(manifest.path)
    prefix = "tool.lockenv." if manifest.path.name == "pyproject.toml" else ""
    where = f"{label}: {prefix}environments.{env.name}"
    failed = False

    def fail(message: str) -> None:
        nonlocal failed
        failed = True
        report(f"{where}: {message}")

    features: list[Feature] = [manifest.default_feature] if env.include_default else []
    features += [manifest.features[name] for name in env.features]

    platforms = manifest.platforms
    for feature in features:
        if feature.platforms is not None:
            platforms = tuple(p for p in platforms if p in feature.platforms)
    if not platforms:
        restricting = [f.name for f in features if f.platforms is not None]
        fail(
            f"no platform left: features {', '.join(map(repr, restricting))} restrict "
            "platforms to sets with nothing in common; widen their platforms lists"
        )

    channels = list(manifest.channels)
    for feature in features:
        channels += [c for c in feature.channels if c not in channels]

    conda: dict[str, tuple[CondaDependency, str]] = {}
    pypi: dict[str, tuple[PypiDependency, str]] = {}
    system = SystemRequirements()
    for feature in features:
        for dep in feature.dependencies:
            if dep.channel is not None and not _channel_listed(dep.channel, channels):
                table = (
                    "dependencies"
                    if feature.name == DEFAULT_FEATURE
                    else (f"feature.{feature.name}.dependencies")
                )
                fail(
                    f"{prefix}{table}.{dep.name} asks for channel {dep.channel!r}, which is not "
                    f"among the channels ({', '.join(channels) or 'none'}); add it to "
                    "[project] channels"
                )
            if dep.name not in conda:
                conda[dep.name] = (dep, feature.name)
                continue
            previous, owner = conda[dep.name]
            merged = merge_conda_dependencies(previous, dep)
            if isinstance(merged, str):
                fail(
                    f"conda dependency {dep.name!r} conflicts between features {owner!r} and "
                    f"{feature.name!r}: {merged}"
                )
            else:
                conda[dep.name] = (merged, owner)
        for pypi_dep in feature.pypi_dependencies:
            if pypi_dep.name not in pypi:
                pypi[pypi_dep.name] = (pypi_dep, feature.name)
                continue
            previous_pypi, owner = pypi[pypi_dep.name]
            merged_pypi = _merge_pypi(previous_pypi, pypi_dep)
            if isinstance(merged_pypi, str):
                fail(
                    f"pypi dependency {pypi_dep.name!r} conflicts between features {owner!r} "
                    f"and {feature.name!r}: {merged_pypi}"
                )
            else:
                pypi[pypi_dep.name] = (merged_pypi, owner)
        merged_system = _merge_system(system, feature.system_requirements)
        if isinstance(merged_system, str):
            fail(f"system-requirements of feature {feature.name!r}: {merged_system}")
        else:
            system = merged_system
    if failed:
        return None
    return EnvironmentSpec(
        name=env.name,
        platforms=platforms,
        channels=tuple(channels),
        dependencies=tuple(conda[name][0] for name in sorted(conda)),
        pypi_dependencies=tuple(pypi[name][0] for name in sorted(pypi)),
        system_requirements=system,
        requires_python=manifest.requires_python,
        base_environment=env.base_environment or manifest.base_environment,
    )


def merge_conda_dependencies(a: CondaDependency, b: CondaDependency) -> CondaDependency | str:
    """Both requirements at once: versions AND-ed; every other field must agree (else
    why not, as a message)."""
    from lockenv.lock.conda.matchspec import MatchSpec, manifest_parts, parse_manifest_spec
    from lockenv.lock.conda.version import VersionSpec

    if a.channel is not None and b.channel is not None and a.channel != b.channel:
        return f"channel {a.channel!r} versus {b.channel!r}; use one channel"
    if a.spec == b.spec:
        return CondaDependency(name=a.name, spec=a.spec, channel=a.channel or b.channel)
    spec_a = parse_manifest_spec(a.name, a.spec, channel=a.channel)
    spec_b = parse_manifest_spec(b.name, b.spec, channel=b.channel)
    merged: dict[str, object] = {}
    for key in ("build", "build_number", "channel", "subdir", "md5", "sha256", "fn", "url"):
        value_a, value_b = getattr(spec_a, key), getattr(spec_b, key)
        if value_a is not None and value_b is not None and value_a != value_b:
            what = key.replace("_", " ")
            return f"{what} {str(value_a)!r} versus {str(value_b)!r}; use one {what}"
        merged[key] = value_a if value_a is not None else value_b
    versions = [v for v in (spec_a.version, spec_b.version) if v is not None]
    version = versions[0] if versions else None
    if len(versions) == 2 and versions[0] != versions[1]:
        # Parenthesized so an OR inside one spec cannot swallow the other (conda's , is AND).
        joined = ",".join(f"({v})" if "|" in v.text else v.text for v in versions)
        version = VersionSpec.parse(joined)
    spec = MatchSpec(name=a.name, version=version, **merged)  # type: ignore[arg-type]
    text, channel = manifest_parts(spec)
    return CondaDependency(name=a.name, spec=text, channel=channel)


def _merge_pypi(a: PypiDependency, b: PypiDependency) -> PypiDependency | str:
    ra, rb = a.requirement, b.requirement
    if a.source is not None or b.source is not None:
        return _merge_sourced(a, b)
    if ra.marker != rb.marker:
        return (
            f"markers {str(ra.marker) if ra.marker else None!r} versus "
            f"{str(rb.marker) if rb.marker else None!r}; use the same markers in both"
        )
    text = str(a.name)
    extras = sorted(ra.extras | rb.extras)
    if extras:
        text += "[" + ",".join(extras) + "]"
    text += str(ra.specifier & rb.specifier)
    if ra.marker is not None:
        text += f"; {ra.marker}"
    return PypiDependency(name=a.name, requirement=Requirement(text))


def _merge_sourced(a: PypiDependency, b: PypiDependency) -> PypiDependency | str:
    """Two features name a package and at least one gives it a source: the sources
    agree (or one feature only asks for extras), else it is a conflict."""
    if a.source is not None and b.source is not None and a.source != b.source:
        return f"sources {a.source.reference!r} versus {b.source.reference!r}; use one source"
    sourced, other = (a, b) if a.source is not None else (b, a)
    source = sourced.source
    assert source is not None
    if other.source is None and str(other.requirement.specifier):
        return (
            f"{source.reference!r} (a source) versus the version range "
            f"{str(other.requirement.specifier)!r}; a source sets the version"
        )
    if a.requirement.marker != b.requirement.marker:
        return "different markers; use the same markers in both"
    extras = sorted(a.requirement.extras | b.requirement.extras)
    text = str(sourced.name) + (f"[{','.join(extras)}]" if extras else "")
    text += f" @ {source.reference} "
    if a.requirement.marker is not None:
        text += f"; {a.requirement.marker}"
    return PypiDependency(name=a.name, requirement=Requirement(text), source=sourced.source)


def _merge_system(a: SystemRequirements, b: SystemRequirements) -> SystemRequirements | str:
    if a.archspec is not None and b.archspec is not None and a.archspec != b.archspec:
        return f"archspec {a.archspec!r} versus {b.archspec!r}; use one archspec"

    def highest(x: str | None, y: str | None) -> str | None:
        if x is None or y is None:
            return x or y
        return x if Version(x) >= Version(y) else y

    return SystemRequirements(
        glibc=highest(a.glibc, b.glibc),
        macos=highest(a.macos, b.macos),
        cuda=highest(a.cuda, b.cuda),
        archspec=a.archspec or b.archspec,
    )
