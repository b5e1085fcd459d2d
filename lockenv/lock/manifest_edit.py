"""Edit a manifest's text for ``lockenv init`` / ``add`` / ``remove``.

Edits go through tomlkit so that comments, key order and the formatting of everything
the edit does not touch stay byte for byte as the user wrote them:

- a new entry goes right after the last entry of its table (before any comments or
  blank lines that close the table), with the indentation of the entry before it;
- an existing entry (names compared normalized) gets a new value in place, keeping its
  key spelling and its end-of-line comment;
- a missing table is created after its siblings (for a feature: after that feature's
  other tables; in ``pyproject.toml``: after the last ``[tool.lockenv...]`` table; else
  at the end of the file), followed by a blank line (or preceded by one at the end);
- a feature table emptied by ``remove`` is dropped when nothing but blank lines is left
  in it (so ``add`` then ``remove`` gives back the original bytes), unless that would
  delete a feature an environment names; emptied default tables are kept, as
  ``init`` writes them empty on purpose.

Every function takes and returns the whole text and checks that the result still
parses, so a caller never writes a broken manifest.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lockenv.errors import ManifestError
from lockenv.lock.manifest import (
    CondaDependency,
    check_conda_name,
    check_conda_spec,
    parse_manifest,
)
from lockenv.project import TOML_ERRORS, toml_problem

if TYPE_CHECKING:
    from tomlkit.container import Container
    from tomlkit.items import Item, Table
    from tomlkit.toml_document import TOMLDocument

    from lockenv.lock.manifest import PypiSource as ManifestSource

__all__ = [
    "add_conda_dependencies",
    "add_feature_to_environment",
    "add_pypi_dependencies",
    "init_manifest_text",
    "init_pyproject_text",
    "pyproject_project",
    "remove_dependencies",
]

# NUL cannot occur in a TOML document, so these mark our new table unambiguously while
# we look at what surrounds it in the rendered text.
_BEFORE = "\x00lockenv-before\x00"
_AFTER = "\x00lockenv-after\x00"

_PYPI = "pypi-dependencies"
_CONDA = "dependencies"


def init_manifest_text(
    *,
    name: str,
    platforms: Sequence[str],
    channels: Sequence[str],
    requires_python: str | None,
    indexes: Sequence[str] = (),
    find_links: Sequence[str] = (),
) -> str:
    """The text of a new ``lockenv.toml``; raises `ManifestError` for invalid values."""
    import tomlkit

    def value(item: object) -> str:
        return tomlkit.item(item).as_string()

    lines = [
        "[project]",
        f"name = {value(name)}",
        f"platforms = {value(list(platforms))}",
        f"channels = {value(list(channels))}",
    ]
    if indexes:
        lines.append(f"indexes = {value(list(indexes))}")
    if find_links:
        lines.append(f"find-links = {value(list(find_links))}")
    if requires_python is not None:
        lines.append(f"requires-python = {value(requires_python)}")
    lines += ["", "[dependencies]", "", "[pypi-dependencies]", ""]
    text = "\n".join(lines)
    parse_manifest(text, path=Path("lockenv.toml"))
    return text


def add_pypi_dependencies(
    text: str,
    requirements: Sequence[Requirement],
    *,
    feature: str | None,
    in_pyproject: bool,
    root: Path | None = None,
    editable: bool = False,
) -> str:
    """Add (or replace in place) PyPI requirements in the default table or ``feature``'s.

    A direct reference (``name @ git+URL@ref``, an archive URL, a ``file:`` directory
    made relative to ``root``, the manifest's directory) becomes a git, url or path
    source; ``editable`` makes path sources editable.
    """
    import dataclasses

    import tomlkit

    from lockenv.lock.manifest import source_from_url

    problems = []
    entries: list[tuple[str, Item]] = []
    for requirement in requirements:
        if requirement.url:
            source = source_from_url(requirement.url, root=root or Path.cwd())
            if isinstance(source, str):
                problems.append(f"{requirement.name}: {source}")
                continue
            if editable and source.path is not None:
                source = dataclasses.replace(source, editable=True)
            entries.append((requirement.name, _source_value(tomlkit, requirement, source)))
            continue
        entries.append((requirement.name, _pypi_value(tomlkit, requirement)))
    if problems:
        raise ManifestError(problems)
    return _add(text, _PYPI, entries, feature=feature, in_pyproject=in_pyproject)


def add_conda_dependencies(
    text: str, specs: Sequence[tuple[str, str]], *, feature: str | None, in_pyproject: bool
) -> str:
    """Add (or replace in place) conda ``(name, spec)`` entries.

    ``spec`` is a manifest value (a MatchSpec without its name, a channel may lead:
    ``"conda-forge::>=1.26"``).  It is written in its canonical form (``"==1.2"`` for
    ``"1.2"``): a string, or with a channel the table ``{ version, build, channel }``
    pixi writes (a string ``"channel::..."`` when the spec holds more than that).
    """
    from lockenv.lock.conda.matchspec import InvalidMatchSpec
    from lockenv.lock.manifest import conda_dependency

    problems = []
    entries: list[tuple[str, Item]] = []
    for name, spec in specs:
        label = f"{_table_label(_CONDA, feature)}.{name}"
        name_problem = check_conda_name(name)
        if name_problem is not None:
            problems.append(f"{label}: {name_problem}")
            continue
        try:
            dependency = conda_dependency(name, spec)
        except InvalidMatchSpec:
            problems.append(f"{label}: {check_conda_spec(spec, name)}")
            continue
        entries.append((name.lower(), _conda_value(dependency)))
    if problems:
        raise ManifestError(problems)
    return _add(text, _CONDA, entries, feature=feature, in_pyproject=in_pyproject)


def _conda_value(dependency: CondaDependency) -> Item:
    """The TOML value of a conda entry, chosen so that it reads back as ``dependency``."""
    import tomlkit

    from lockenv.lock.conda.matchspec import parse_manifest_spec
    from lockenv.lock.manifest import conda_dependency

    if dependency.channel is None:
        return tomlkit.item(dependency.spec)
    spec = parse_manifest_spec(dependency.name, dependency.spec)
    only_version_and_build = spec == parse_manifest_spec(
        dependency.name, str(spec.version or "*") + (f" {spec.build}" if spec.build else "")
    )
    if only_version_and_build:
        parts = [f"version = {tomlkit.item(str(spec.version or '*')).as_string()}"]
        if spec.build is not None:
            parts.append(f"build = {tomlkit.item(spec.build).as_string()}")
        parts.append(f"channel = {tomlkit.item(dependency.channel).as_string()}")
        # Parsed from text so the inline table keeps the spacing shown in the docs.
        return tomlkit.parse(f"x = {{ {', '.join(parts)} }}\n")["x"]  # type: ignore[no-any-return]
    text = f"{dependency.channel}::{dependency.spec}"
    assert conda_dependency(dependency.name, text) == dependency
    return tomlkit.item(text)


def add_feature_to_environment(
    text: str, environment: str, feature: str, *, in_pyproject: bool
) -> str:
    """Make ``environment`` include ``feature``: appended to its list, or a new entry
    ``environment = ["feature"]`` in ``[environments]`` (pixi's auto-create)."""
    import tomlkit

    document = _parse(text)
    base = ("tool", "lockenv") if in_pyproject else ()
    environments = _lookup(document, (*base, "environments"))
    entry = environments.get(environment) if environments is not None else None
    if entry is not None:
        names = entry.get("features") if hasattr(entry, "get") else entry
        if names is None and hasattr(entry, "get"):
            entry["features"] = [feature]
        elif feature not in names:
            names.append(feature)
        result = document.as_string()
        _check(result)
        return result
    return _add(
        text,
        "environments",
        [(environment, tomlkit.item([feature]))],
        feature=None,
        in_pyproject=in_pyproject,
    )


def remove_dependencies(
    text: str,
    names: Sequence[str],
    *,
    feature: str | None,
    in_pyproject: bool,
    kind: Literal["pypi", "conda", "any"] = "any",
) -> tuple[str, list[str]]:
    """Remove ``names`` from the default (or ``feature``'s) dependency tables.

    Returns the new text and the keys removed, as they were spelled in the manifest.
    A name found in no table raises `ManifestError` naming it, and nothing is removed.
    """
    document = _parse(text)
    kinds = {"pypi": (_PYPI,), "conda": (_CONDA,), "any": (_CONDA, _PYPI)}[kind]
    parent = _lookup(document, _parent_path(feature, in_pyproject))
    tables: list[tuple[str, Any]] = []
    for table_name in kinds:
        table = parent.get(table_name) if parent is not None else None
        if table is not None and hasattr(table, "keys"):
            tables.append((table_name, table))

    plan: list[tuple[Any, str]] = []
    missing = []
    for name in names:
        hits = [
            (table, key)
            for table_name, table in tables
            for key in list(table.keys())
            if _same_name(table_name, key, name)
        ]
        if not hits:
            missing.append(name)
        plan += hits
    if missing:
        where = " or ".join(f"[{_table_label(t, feature)}]" for t in kinds)
        raise ManifestError(
            [f"{name!r} is not in {where}; nothing was removed" for name in missing]
        )

    removed: list[str] = []
    for table, key in plan:
        if key in table:
            del table[key]
        if key not in removed:
            removed.append(key)
    # Emptied default tables stay (``init`` writes them); an emptied feature table goes,
    # unless that would remove a feature an environment still names.
    emptied = [name for name, table in tables if _is_empty(table)]
    if feature is not None and emptied:
        keeps_feature = any(key not in emptied for key in parent)
        if keeps_feature or feature not in _features_in_environments(document, in_pyproject):
            for table_name in emptied:
                del parent[table_name]
            _drop_empty_super_tables(document, _parent_path(feature, in_pyproject))
    result = document.as_string()
    if not text.endswith("\n\n"):
        # A dropped last table leaves the blank line that set it apart from the one before.
        while result.endswith("\n\n"):
            result = result[:-1]
    _check(result)
    return result, removed


# --------------------------------------------------------------------------- helpers


def _add(
    text: str,
    table_name: str,
    entries: list[tuple[str, Item]],
    *,
    feature: str | None,
    in_pyproject: bool,
) -> str:
    import tomlkit
    from tomlkit.items import Whitespace

    document = _parse(text)
    parent_path = _parent_path(feature, in_pyproject)
    parent: Any = document
    for part in parent_path:
        child = parent.get(part)
        if child is None:
            child = tomlkit.table(is_super_table=True)
            parent[part] = child
            child = parent[part]
        elif not hasattr(child, "keys"):
            raise ManifestError(
                f"{'.'.join(parent_path)}: expected a table, found {child.as_string()!r}; "
                "fix the manifest first"
            )
        parent = child

    table = parent.get(table_name)
    created = table is None
    if created:
        table = tomlkit.table()
    elif not hasattr(table, "keys"):
        raise ManifestError(
            f"{_table_label(table_name, feature)}: expected a table, found "
            f"{table.as_string()!r}; fix the manifest first"
        )

    for name, value in entries:
        existing = next((k for k in table if _same_name(table_name, k, name)), None)
        if existing is not None:
            table[existing] = value
        elif created or getattr(table, "is_inline_table", lambda: False)():
            table[name] = value
        else:
            _insert_entry(table.value, name, value)

    if not created:
        result = document.as_string()
    else:
        table.trivia.indent = _BEFORE
        # Ends in a newline, else tomlkit adds one of its own after a nested table.
        table.add(Whitespace(_AFTER + "\n"))
        parent[table_name] = table
        rendered = document.as_string()
        before, _, rest = rendered.partition(_BEFORE)
        body, _, after = rest.partition(_AFTER + "\n")
        if text.endswith(after):
            # tomlkit may pad the table before ours with a blank line: keep the user's bytes.
            before = text[: len(text) - len(after)]
        if before and not before.endswith("\n"):
            before += "\n"
        if after.strip():
            # The blank line goes after the new table, so removing it later restores the
            # original bytes (the line before a table belongs to the previous one).
            result = before + body + "\n" + after
        else:
            result = before + ("" if before.endswith("\n\n") or not before else "\n") + body
    _check(result)
    return result


def _insert_entry(container: Container, key: str, value: Item) -> None:
    """Put ``key = value`` after the table's last entry, keeping that entry's indent."""
    from tomlkit.items import Comment, Whitespace

    body = container.body
    index = 0
    previous = None
    for position, (body_key, item) in enumerate(body):
        if body_key is not None:
            index, previous = position + 1, item
    if previous is None:
        # Comment lines right under the header stay on top (often commented-out entries).
        while index < len(body) and isinstance(body[index][1], Comment):
            index += 1
        while index < len(body) and isinstance(body[index][1], Whitespace):
            if "\n" in body[index][1].as_string():
                break
            index += 1
    elif not previous.trivia.trail.endswith("\n"):
        previous.trivia.trail += "\n"
    if previous is not None and not previous.trivia.indent.strip():
        value.trivia.indent = previous.trivia.indent
    if index >= len(body):
        container.append(key, value)
    else:
        container._insert_at(index, key, value)


def _pypi_value(tomlkit: Any, requirement: Requirement) -> Item:
    specifier = str(requirement.specifier) or "*"
    if not requirement.extras and requirement.marker is None:
        return tomlkit.item(specifier)  # type: ignore[no-any-return]
    parts = []
    if str(requirement.specifier):
        parts.append(f"version = {tomlkit.item(specifier).as_string()}")
    if requirement.extras:
        parts.append(f"extras = {tomlkit.item(sorted(requirement.extras)).as_string()}")
    if requirement.marker is not None:
        marker = str(requirement.marker)
        literal = "'" not in marker
        parts.append(f"markers = {tomlkit.string(marker, literal=literal).as_string()}")
    # Parsed from text so the inline table keeps the spacing shown in the docs.
    return tomlkit.parse(f"x = {{ {', '.join(parts)} }}\n")["x"]  # type: ignore[no-any-return]


def _source_value(tomlkit: Any, requirement: Requirement, source: ManifestSource) -> Item:
    """``{ path = ..., editable = true }``, ``{ git = ..., rev = ... }`` or ``{ url = ... }``."""
    fields: dict[str, object] = {
        "path": source.path,
        "editable": True if source.editable else None,
        "git": source.git,
        "rev": source.rev,
        "tag": source.tag,
        "branch": source.branch,
        "subdirectory": source.subdirectory,
        "url": source.url,
        "extras": sorted(requirement.extras) or None,
    }
    parts = [f"{k} = {tomlkit.item(v).as_string()}" for k, v in fields.items() if v is not None]
    if requirement.marker is not None:
        marker = str(requirement.marker)
        parts.append(
            f"markers = {tomlkit.string(marker, literal=chr(39) not in marker).as_string()}"
        )
    return tomlkit.parse(f"x = {{ {', '.join(parts)} }}\n")["x"]  # type: ignore[no-any-return]


def _parse(text: str) -> TOMLDocument:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.parse(text)
    except (TOMLKitError, *TOML_ERRORS) as error:
        problem = toml_problem(error) if isinstance(error, TOML_ERRORS) else str(error)
        raise ManifestError(f"invalid TOML: {problem}; fix the manifest first") from None


def _check(text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:  # pragma: no cover - a tomlkit bug
        raise ManifestError(
            f"editing the manifest would produce invalid TOML ({error}); edit it by hand instead"
        ) from None


def _parent_path(feature: str | None, in_pyproject: bool) -> tuple[str, ...]:
    path: tuple[str, ...] = ("tool", "lockenv") if in_pyproject else ()
    return (*path, "feature", feature) if feature is not None else path


def _lookup(document: TOMLDocument, path: Sequence[str]) -> Any:
    node: Any = document
    for part in path:
        node = node.get(part) if hasattr(node, "get") else None
        if node is None:
            return None
    return node


def _features_in_environments(document: TOMLDocument, in_pyproject: bool) -> set[str]:
    base = ("tool", "lockenv") if in_pyproject else ()
    environments = _lookup(document, (*base, "environments"))
    named: set[str] = set()
    for value in (environments or {}).values():
        names = value.get("features", []) if hasattr(value, "get") else value
        named.update(name for name in names if isinstance(name, str))
    return named


def _table_label(table_name: str, feature: str | None) -> str:
    return f"feature.{feature}.{table_name}" if feature is not None else table_name


def _same_name(table_name: str, key: str, name: str) -> bool:
    if table_name == _PYPI:
        return canonicalize_name(key) == canonicalize_name(name)
    return key.lower() == name.lower()


def _is_empty(table: Table) -> bool:
    """True when nothing but whitespace is left (comments are the user's: keep them)."""
    from tomlkit.items import Null, Whitespace

    if getattr(table, "is_inline_table", lambda: False)():
        return False
    if not hasattr(table, "value") or table.trivia.comment:
        return False
    return all(isinstance(item, Whitespace | Null) for _, item in table.value.body)


def _drop_empty_super_tables(document: TOMLDocument, path: Sequence[str]) -> None:
    """Remove ``[feature.X]`` (and ``[feature]``) left with nothing in them."""
    from tomlkit.items import Table as TableItem

    for depth in range(len(path), 0, -1):
        parent = _lookup(document, path[: depth - 1])
        node = _lookup(document, path[:depth])
        if (
            path[depth - 1] in ("tool", "lockenv")
            or not isinstance(node, TableItem)
            or not node.is_super_table()
            or len(node) > 0
        ):
            return
        del parent[path[depth - 1]]


# -- the project itself ------------------------------------------------------------------


def pyproject_project(text: str) -> dict[str, Any] | None:
    """The ``[project]`` table of pyproject.toml ``text``, or None when it has none."""
    try:
        project = tomllib.loads(text).get("project")
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"pyproject.toml: invalid TOML: {error}") from None
    return project if isinstance(project, dict) else None


def init_pyproject_text(
    text: str,
    *,
    path: Path,
    platforms: Sequence[str],
    channels: Sequence[str],
    requires_python: str | None,
    indexes: Sequence[str] = (),
) -> str:
    """``text`` (a pyproject.toml with a ``[project]`` table) with ``[tool.lockenv]``
    added at its end, everything before kept byte for byte: the project itself as an
    editable path dependency (so its dependencies come from its own metadata and
    ``lockenv run`` runs the working tree), and one environment per extra and per PEP
    735 dependency group (the manifest reads each as a feature)."""
    import tomlkit

    document = tomllib.loads(text)
    project = document.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise ManifestError(f"{path.name}: no [project] table with a name; use a lockenv.toml")
    tool = document.get("tool")
    if isinstance(tool, dict) and "lockenv" in tool:
        raise ManifestError(f"{path.name} already has a [tool.lockenv] table; edit it")

    def value(item: object) -> str:
        return tomlkit.item(item).as_string()

    name = canonicalize_name(project["name"])
    lines = ["", "[tool.lockenv.project]", f"platforms = {value(list(platforms))}"]
    if channels:
        lines.append(f"channels = {value(list(channels))}")
    if indexes:
        lines.append(f"indexes = {value(list(indexes))}")
    if requires_python is not None:
        lines.append(f"requires-python = {value(requires_python)}")
    lines += [
        "",
        "[tool.lockenv.pypi-dependencies]",
        f'{name} = {{ path = ".", editable = true }}',
    ]
    extras = project.get("optional-dependencies", {})
    groups = document.get("dependency-groups", {})
    features = sorted({canonicalize_name(f) for f in (*dict(extras or {}), *dict(groups or {}))})
    if features:
        lines += ["", "[tool.lockenv.environments]", "default = []"]
        lines += [f"{feature} = [{value(feature)}]" for feature in features]
    new = text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    _check(new)
    parse_manifest(new, path=path)
    return new
