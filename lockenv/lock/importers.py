"""``lockenv init --from``: what a requirements.txt, an environment.yml or a
pyproject.toml asks for.

Both are read as their own tools read them, and turned into an `Imported`: the
manifest's dependencies, channels, indexes and find-links, plus warnings for what a
manifest cannot hold.  Anything that cannot be imported faithfully is refused with one
line naming the file, the line and what to do; nothing is dropped without a word.

**requirements.txt**, as pip reads it (``pip._internal.req.req_file``):

- decoded from a UTF-8, UTF-16 or UTF-32 byte-order mark, else a PEP 263 ``coding:``
  line, else UTF-8, else latin-1 (pip falls back to the locale's encoding; latin-1
  decodes every byte, so the import never fails on it);
- ``\\`` at the end of a line joins the next one; ``#`` starts a comment at the start of
  a line or after whitespace (a tab too);
- ``-r``/``--requirement`` and ``-c``/``--constraint`` include other files, relative to
  the including file; constraints narrow the requirements they name (the manifest has
  no constraints: constraints on other packages are left out, with a warning);
- ``-i``/``--index-url``, ``--extra-index-url``, ``--no-index`` and ``-f``/
  ``--find-links`` become ``[project] indexes`` and ``find-links`` (credentials in their
  URLs are left out: lockenv reads them from ``.netrc`` or the environment);
- per-requirement options (``--hash``, ``--config-settings``, ...) are accepted and
  dropped: the lock records its own hashes; options that change what pip installs
  (``--pre``, ``--only-binary``, ...) are dropped with a warning;
- a name listed twice is one requirement: ``numpy>=1.20`` and ``numpy<2`` give
  ``numpy>=1.20,<2`` (extras united; different markers are refused).

**environment.yml**: ``channels`` are kept (``nodefaults`` is implied; ``defaults``
has no single URL and is left out with a warning), each dependency is a conda MatchSpec
kept whole (``conda-forge::numpy``, ``numpy=1.26=py312*``, ``[build_number=0]``), and
the ``pip:`` list is read as the lines of a requirements.txt beside the file.

**pyproject.toml**: ``[project]`` ``dependencies``, ``requires-python`` and ``name``;
each extra (``[project.optional-dependencies]``) and each PEP 735 dependency group
(``[dependency-groups]``, ``{include-group = ...}`` expanded) becomes a feature, names
normalized as PEP 685 and PEP 735 compare them (an extra and a group of one name are one
feature); the project's own extras (``all = ["me[test,docs]"]``) stand for what they list.
"""

from __future__ import annotations

import codecs
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockenv.errors import UsageError
from lockenv.limits import MAX_MANIFEST, read_capped

if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = ["Imported", "read_import"]

# (mark, codec of what follows it, name reported); UTF-32 first: its LE mark starts like UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32"),
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
)
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")
_COMMENT = re.compile(r"(^|\s+)#.*$")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")

# Options of a requirements file (pip's SUPPORTED_OPTIONS), by what lockenv does with them.
_INCLUDES = {"-r": "requirement", "--requirement": "requirement"}
_INCLUDES |= {"-c": "constraint", "--constraint": "constraint"}
_LOCATIONS = {"-i": "index-url", "--index-url": "index-url", "--extra-index-url": "extra"}
_LOCATIONS |= {"-f": "find-links", "--find-links": "find-links"}
_EDITABLE = ("-e", "--editable")
_IGNORED_WITH_VALUE = ("--trusted-host", "--use-feature", "--only-binary", "--no-binary")
_IGNORED_FLAGS = ("--pre", "--prefer-binary", "--require-hashes")
_PER_REQUIREMENT = ("--hash", "--config-settings", "--global-option", "--install-option")


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    """What an imported file asks for, in the manifest's terms."""

    platforms: tuple[str, ...] = ()  # what the file was made for, when it says
    conda: tuple[tuple[str, str], ...] = ()  # (name, manifest value)
    pypi: tuple[Requirement, ...] = ()
    channels: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    name: str | None = None  # environment.yml's `name:`, pyproject.toml's project.name
    requires_python: str | None = None  # pyproject.toml's project.requires-python
    # Named groups of requirements (extras, dependency groups): features of the manifest.
    features: tuple[tuple[str, tuple[Requirement, ...]], ...] = ()
    warnings: tuple[str, ...] = ()


def read_import(source: Path) -> Imported:
    """Read ``source`` into an `Imported`: a requirements.txt, an environment.yml (or
    .yaml), a pyproject.toml, a pylock.toml (PEP 751) or a conda explicit file
    (``@EXPLICIT``).

    UsageError (one line, naming the file and line) for anything that cannot be imported.
    """
    if source.suffix in (".yml", ".yaml"):
        return _environment_yml(source)
    if source.name == "pyproject.toml":
        return _pyproject_toml(source)
    if source.suffix == ".toml":
        return _pylock_toml(source)
    text, _ = decode(_read_bytes(source, str(source)))
    if any(line.strip() == "@EXPLICIT" for line in text.splitlines()):
        return _conda_explicit(text, str(source))
    reader = _RequirementsReader()
    reader.read_file(source, kind="requirement")
    return reader.result()


# --------------------------------------------------------------------------- decoding


def _read_bytes(path: Path, label: str) -> bytes:
    try:
        return read_capped(path, MAX_MANIFEST, "requirements file")
    except FileNotFoundError:
        raise UsageError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{label}: is a directory, not a requirements file") from None
    except OSError as exc:
        raise UsageError(f"{label}: cannot read it ({exc.strerror or exc})") from None


def decode(data: bytes) -> tuple[str, str]:
    """``data`` as text, and the encoding used: pip's order, latin-1 last."""
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec), name
            except UnicodeDecodeError:
                break
    for line in data.split(b"\n")[:2]:
        found = _CODING.match(line)
        if found:
            encoding = found.group(1).decode("ascii")
            try:
                return data.decode(encoding), encoding
            except (LookupError, UnicodeDecodeError):
                break
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


# --------------------------------------------------------------------------- requirements.txt


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, logical line): continuations joined, comments removed."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\") and not raw.lstrip().startswith("#"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = _COMMENT.sub("", "".join(pending)).strip()
        pending = []
        if line:
            yield start, line
    if pending:
        line = _COMMENT.sub("", "".join(pending)).strip()
        if line:
            yield start, line


def _without_credentials(url: str) -> tuple[str, bool]:
    stripped = _CREDENTIALS.sub(r"\1", url)
    return stripped, stripped != url


class _RequirementsReader:
    """Collects requirements, constraints and locations over a file and its includes."""

    def __init__(self) -> None:

        self.requirements: dict[str, tuple[Requirement, str]] = {}  # name -> (req, where)
        self.constraints: list[tuple[Requirement, str]] = []
        self.index_url: str | None = None
        self.extra_indexes: list[str] = []
        self.find_links: list[str] = []
        self.no_index = False
        self.warnings: list[str] = []
        self.seen: set[Path] = set()

    # ---- files

    def read_file(self, path: Path, *, kind: str, label: str | None = None) -> None:
        label = label or str(path)
        resolved = path.resolve()
        if resolved in self.seen:
            return  # pip would loop forever; once is what the author meant
        self.seen.add(resolved)
        text, encoding = decode(_read_bytes(path, label))
        if encoding == "latin-1":
            self.warnings.append(f"{label}: not UTF-8; read as latin-1")
        self.read_lines(_logical_lines(text), base=path.parent, label=label, kind=kind)

    def read_lines(
        self, lines: Iterator[tuple[int, str]], *, base: Path, label: str, kind: str
    ) -> None:
        for number, line in lines:
            self.read_line(line, base=base, where=f"{label}:{number}", kind=kind)

    def read_line(self, line: str, *, base: Path, where: str, kind: str) -> None:
        if line.startswith("-"):
            self._option_line(line, base=base, where=where)
            return
        requirement_text, options = _split_options(line)
        self._per_requirement_options(options, where)
        requirement = self.requirement(requirement_text, where)
        if kind == "constraint":
            self.constraints.append((requirement, where))
        else:
            self.add(requirement, where)

    # ---- option lines

    def _option_line(self, line: str, *, base: Path, where: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{where}: cannot split {line!r} ({exc})") from None
        option, value = words[0], None
        if "=" in option and option.startswith("--"):
            option, value = option.split("=", 1)
        elif len(option) > 2 and option[1] != "-" and option[:2] in ("-r", "-c", "-i", "-f", "-e"):
            option, value = option[:2], option[2:]
        rest = words[1:]
        if value is None and rest and option not in _IGNORED_FLAGS and option != "--no-index":
            value, rest = rest[0], rest[1:]
        if rest:
            raise UsageError(f"{where}: {line!r}: one option per line, as pip reads it")
        if option in _INCLUDES:
            self._include(_INCLUDES[option], self._need(option, value, where), base, where)
        elif option in _LOCATIONS:
            self._location(_LOCATIONS[option], self._need(option, value, where), base, where)
        elif option == "--no-index":
            self.no_index = True
        elif option in _EDITABLE:
            raise UsageError(
                f"{where}: editable requirement {line!r} cannot be imported: the manifest "
                "takes packages from indexes only; install it from an index or a wheel"
            )
        elif option in _IGNORED_WITH_VALUE or option in _IGNORED_FLAGS:
            self.warnings.append(f"{where}: {line!r} left out (no such setting in lockenv)")
        else:
            raise UsageError(
                f"{where}: unknown option {option!r}; pip's requirements files take -r, -c, "
                "-e, -i, --extra-index-url, -f, --no-index and per-requirement --hash"
            )

    @staticmethod
    def _need(option: str, value: str | None, where: str) -> str:
        if not value:
            raise UsageError(f"{where}: {option} needs a value")
        return value

    def _include(self, kind: str, target: str, base: Path, where: str) -> None:
        if _URL.match(target):
            raise UsageError(
                f"{where}: the included file {target!r} is a URL; download it and include "
                "the local copy"
            )
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = base / path
        self.read_file(path, kind=kind, label=f"{where}: {target}")

    def _location(self, what: str, value: str, base: Path, where: str) -> None:
        if not _URL.match(value):
            # A local directory (find-links) or index path, relative to the file.
            local = Path(value).expanduser()
            value = str(local if local.is_absolute() else (base / local).resolve())
        url, had_credentials = _without_credentials(value)
        if had_credentials:
            self.warnings.append(
                f"{where}: the credentials in the {what} URL were left out of the manifest; "
                "put them in ~/.netrc (lockenv reads it)"
            )
        if what == "index-url":
            self.index_url = url
        elif what == "extra":
            if url not in self.extra_indexes:
                self.extra_indexes.append(url)
        elif url not in self.find_links:
            self.find_links.append(url)

    def _per_requirement_options(self, options: list[str], where: str) -> None:
        for option in options:
            name = option.split("=", 1)[0]
            if name not in _PER_REQUIREMENT:
                raise UsageError(
                    f"{where}: {option!r} is not a per-requirement option (pip takes --hash, "
                    "--config-settings and --global-option after a requirement)"
                )

    # ---- requirements

    def requirement(self, text: str, where: str) -> Requirement:
        """``text`` as a requirement from an index; one-line UsageError otherwise."""
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            if _URL.match(text) or text.startswith((".", "/", "~")) or "/" in text:
                raise UsageError(
                    f"{where}: {text!r} is a file or URL, not a requirement; the manifest "
                    "takes packages from indexes (name and version)"
                ) from None
            reason = str(exc).splitlines()[0]
            raise UsageError(
                f"{where}: {text!r} is not a PEP 508 requirement ({reason}); fix or remove "
                "it, then run `lockenv init --from` again"
            ) from None
        if requirement.url:
            raise UsageError(
                f"{where}: {text!r} is a direct URL requirement; the manifest takes packages "
                "from indexes: write a version instead"
            )
        return requirement

    def add(self, requirement: Requirement, where: str) -> None:
        """Add ``requirement``, merged with an earlier one of its name."""
        from packaging.utils import canonicalize_name

        key = canonicalize_name(requirement.name)
        if key not in self.requirements:
            self.requirements[key] = (requirement, where)
            return
        previous, first = self.requirements[key]
        merged = _merge(previous, requirement)
        if merged is None:
            raise UsageError(
                f"{where}: {requirement.name!r} is also listed at {first} with other markers "
                f"({previous.marker or 'none'} versus {requirement.marker or 'none'}); the "
                "manifest keeps one entry per package: merge the two lines by hand"
            )
        self.requirements[key] = (merged, first)

    def result(self) -> Imported:
        from packaging.utils import canonicalize_name

        unused = []
        for constraint, where in self.constraints:
            key = canonicalize_name(constraint.name)
            if key in self.requirements:
                requirement, first = self.requirements[key]
                merged = _merge(requirement, constraint, extras=False)
                if merged is None:
                    raise UsageError(
                        f"{where}: the constraint {str(constraint)!r} has other markers than "
                        f"the requirement at {first}; merge them by hand"
                    )
                self.requirements[key] = (merged, first)
            else:
                unused.append(f"{constraint.name} ({where})")
        warnings = list(self.warnings)
        if unused:
            warnings.append(
                "constraints on packages that are not requirements were left out (a manifest "
                f"has no constraints): {', '.join(unused)}"
            )
        indexes = [] if self.no_index else self._indexes(warnings)
        return Imported(
            pypi=tuple(r for r, _ in self.requirements.values()),
            indexes=tuple(indexes),
            find_links=tuple(self.find_links),
            warnings=tuple(warnings),
        )

    def _indexes(self, warnings: list[str]) -> list[str]:
        if self.index_url is None and not self.extra_indexes:
            return []
        first = self.index_url
        if first is None:
            from lockenv.pipconfig import default_index_url

            first, _ = _without_credentials(default_index_url())
            warnings.append(
                f"--extra-index-url adds to pip's index; lockenv's indexes replace it, so the "
                f"manifest lists the index pip uses on this machine first ({first})"
            )
        return [first, *(u for u in self.extra_indexes if u != first)]


def _split_options(line: str) -> tuple[str, list[str]]:
    """pip's split: the requirement ends at the first word that starts with '-'."""
    words = line.split(" ")
    for i, word in enumerate(words):
        if word.startswith("-") and i > 0:
            requirement = " ".join(words[:i]).strip()
            try:
                options = shlex.split(" ".join(words[i:]))
            except ValueError:
                options = words[i:]
            return requirement, options
    return line.strip(), []


def _merge(a: Requirement, b: Requirement, *, extras: bool = True) -> Requirement | None:
    """``a`` and ``b`` at once (specifiers AND-ed), or None when their markers differ."""
    from packaging.requirements import Requirement

    if a.marker != b.marker:
        return None
    text = a.name
    names = sorted(a.extras | b.extras) if extras else sorted(a.extras)
    if names:
        text += "[" + ",".join(names) + "]"
    text += str(a.specifier & b.specifier)
    if a.marker is not None:
        text += f"; {a.marker}"
    return Requirement(text)


# --------------------------------------------------------------------------- environment.yml


@dataclass(slots=True)
class _Environment:
    """What an environment.yml asks for, as it is read."""

    conda: list[tuple[str, str]] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _environment_yml(source: Path) -> Imported:
    import yaml

    label = str(source)
    text, _ = decode(_read_bytes(source, label))
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"{label} is not valid YAML: {reason}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{label}: expected a mapping with 'channels' and 'dependencies'")
    env = _Environment()
    for index, channel in enumerate(_list(data, "channels", label)):
        _channel(env, channel, f"{label}: channels[{index}]")
    pip = _RequirementsReader()
    for index, dep in enumerate(_list(data, "dependencies", label)):
        where = f"{label}: dependencies[{index}]"
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            lines = _list(dep, "pip", where)
            for number, line in enumerate(lines):
                if not isinstance(line, str):
                    raise UsageError(f"{where}.pip[{number}]: {line!r} is not a string")
                for _, logical in _logical_lines(line):
                    pip.read_line(
                        logical, base=source.parent, where=f"{where}.pip[{number}]", kind="req"
                    )
        elif isinstance(dep, str):
            _conda_dependency(env, dep, where)
        else:
            raise UsageError(
                f"{where}: {dep!r} is not a MatchSpec string or a 'pip:' list; fix or remove it"
            )
    if "variables" in data:
        env.warnings.append(
            f"{label}: 'variables' left out (the manifest has no environment variables)"
        )
    if env.conda and not env.channels:
        env.warnings.append(
            f"{label}: no channels: add one to [project] channels (e.g. conda-forge) before "
            "`lockenv lock`"
        )
    imported = pip.result()
    name = data.get("name")
    return Imported(
        conda=tuple(env.conda),
        pypi=imported.pypi,
        channels=tuple(env.channels),
        indexes=imported.indexes,
        find_links=imported.find_links,
        name=name if isinstance(name, str) and name.strip() else None,
        warnings=tuple(env.warnings) + imported.warnings,
    )


def _list(data: dict[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise UsageError(f"{where}: {key!r} must be a list, not {type(value).__name__}")
    return value


def _channel(env: _Environment, channel: object, where: str) -> None:
    if not isinstance(channel, str) or not channel.strip():
        raise UsageError(f"{where}: {channel!r} is not a channel name or URL")
    channel = channel.strip()
    if channel == "nodefaults":
        return  # lockenv never adds conda's defaults
    if channel == "defaults":
        env.warnings.append(
            f"{where}: 'defaults' (the channels conda is configured with) has no single "
            "URL and was left out; list the channels it stands for on your machine "
            "(`conda config --show default_channels`) in [project] channels"
        )
        return
    url, had_credentials = _without_credentials(channel)
    if had_credentials:
        env.warnings.append(f"{where}: the credentials in the channel URL were left out")
    if url not in env.channels:
        env.channels.append(url)


def _conda_dependency(env: _Environment, text: str, where: str) -> None:
    from lockenv.lock.conda.matchspec import InvalidMatchSpec, MatchSpec, manifest_parts

    try:
        spec = MatchSpec.parse(text)
    except InvalidMatchSpec as exc:
        raise UsageError(f"{where}: {exc}; fix it, then run `lockenv init --from` again") from None
    value, channel = manifest_parts(spec)
    if spec.channel is not None:
        base = spec.channel
        if base not in env.channels and not any(c.endswith("/" + base) for c in env.channels):
            # conda takes a channel named in a spec for that package: so must the lock.
            env.channels.append(base)
            env.warnings.append(
                f"{where}: channel {base!r} (from {text.strip()!r}) added to [project] "
                "channels, after the file's own"
            )
    entry = (spec.name, f"{channel}::{value}" if channel else value)
    for index, (name, existing) in enumerate(env.conda):
        if name == spec.name:
            # Listed twice: conda asks for both at once, and so does the manifest.
            env.conda[index] = (name, _merged(name, existing, entry[1], text, where))
            return
    env.conda.append(entry)


def _merged(name: str, first: str, second: str, text: str, where: str) -> str:
    from lockenv.lock.manifest import conda_dependency, merge_conda_dependencies

    merged = merge_conda_dependencies(conda_dependency(name, first), conda_dependency(name, second))
    if isinstance(merged, str):
        raise UsageError(f"{where}: {text.strip()!r} contradicts the earlier {name!r}: {merged}")
    return f"{merged.channel}::{merged.spec}" if merged.channel else merged.spec


# --------------------------------------------------------------------------- pyproject.toml


def _pyproject_toml(source: Path) -> Imported:
    """``[project]``'s dependencies, with its extras and PEP 735 dependency groups as
    features: each gets an environment of its name, as pixi imports a pyproject.toml."""
    import tomllib

    from packaging.utils import canonicalize_name

    label = str(source)
    text, _ = decode(_read_bytes(source, label))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{label} is not valid TOML: {exc}") from None
    project = _toml_table(data, "project", label)
    groups = _toml_table(data, "dependency-groups", label)
    if not project and not groups:
        raise UsageError(f"{label}: no [project] or [dependency-groups] table to import")
    name = project.get("name")
    own = canonicalize_name(name) if isinstance(name, str) else None
    extras: dict[str, list[tuple[str, str]]] = {}
    for extra, items in _toml_table(project, "optional-dependencies", label).items():
        where = f"{label}: project.optional-dependencies.{extra}"
        extras.setdefault(canonicalize_name(extra), []).extend(_toml_strings(items, where))
    reader = _RequirementsReader()

    def expand(lines: list[tuple[str, str]], seen: frozenset[str]) -> list[tuple[Requirement, str]]:
        # The project's own extras (`all = ["me[test,docs]"]`) stand for what they list.
        found: list[tuple[Requirement, str]] = []
        for line, where in lines:
            requirement = reader.requirement(line, where)
            if canonicalize_name(requirement.name) != own:
                found.append((requirement, where))
                continue
            for extra in sorted(canonicalize_name(e) for e in requirement.extras):
                if extra not in extras:
                    raise UsageError(f"{where}: {line!r} names no extra of {name!r}")
                if extra not in seen:  # extras that name each other ask for nothing more
                    found += [
                        (_and_marker(r, requirement), w)
                        for r, w in expand(extras[extra], seen | {extra})
                    ]
        return found

    warnings = []
    dynamic = _toml_strings(project.get("dynamic", []), f"{label}: project.dynamic")
    if any(field == "dependencies" for field, _ in dynamic):
        warnings.append(
            f"{label}: project.dependencies is dynamic (its build backend sets it) and was "
            "not imported; add them with `lockenv add --pypi`"
        )
    default = expand(
        _toml_strings(project.get("dependencies", []), f"{label}: project.dependencies"),
        frozenset(),
    )
    features: dict[str, list[tuple[Requirement, str]]] = {}
    for extra, lines in extras.items():
        features.setdefault(extra, []).extend(expand(lines, frozenset({extra})))
    for group, lines in _dependency_groups(groups, label).items():
        features.setdefault(group, []).extend(expand(lines, frozenset()))
    if "default" in features:
        raise UsageError(
            f"{label}: an extra or dependency group named 'default' would be lockenv's "
            "default environment; rename it before importing"
        )
    requires_python = project.get("requires-python")
    return Imported(
        name=name if isinstance(name, str) else None,
        requires_python=requires_python if isinstance(requires_python, str) else None,
        pypi=_one_per_name(default),
        features=tuple(
            (feature, _one_per_name(found)) for feature, found in features.items() if found
        ),
        warnings=tuple(warnings),
    )


def _toml_table(data: dict[str, Any], key: str, label: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{label}: {key} must be a table, not {value!r}")
    return value


def _toml_strings(value: object, where: str) -> list[tuple[str, str]]:
    """(string, where it is) for each item of a TOML array of strings."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"{where} must be an array of strings, not {value!r}")
    return [(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _dependency_groups(groups: dict[str, Any], label: str) -> dict[str, list[tuple[str, str]]]:
    """PEP 735 groups by normalized name, with their ``{include-group = ...}`` expanded."""
    from packaging.utils import canonicalize_name

    by_name: dict[str, tuple[str, list[Any]]] = {}
    for name, items in groups.items():
        key = canonicalize_name(name)
        if key in by_name:
            raise UsageError(
                f"{label}: dependency-groups {by_name[key][0]!r} and {name!r} are one group "
                "(names compare normalized); merge them"
            )
        if not isinstance(items, list):
            raise UsageError(f"{label}: dependency-groups.{name} must be an array")
        by_name[key] = (name, items)

    def expand(key: str, path: tuple[str, ...]) -> list[tuple[str, str]]:
        name, items = by_name[key]
        lines: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            where = f"{label}: dependency-groups.{name}[{i}]"
            if isinstance(item, str):
                lines.append((item, where))
                continue
            target = item.get("include-group") if isinstance(item, dict) else None
            if not isinstance(target, str) or len(item) != 1:
                raise UsageError(
                    f"{where}: {item!r} is neither a requirement nor {{include-group = NAME}}"
                )
            included = canonicalize_name(target)
            if included not in by_name:
                raise UsageError(f"{where}: includes {target!r}, which is not a group")
            if included in path:
                cycle = " -> ".join(by_name[k][0] for k in (*path, included))
                raise UsageError(f"{where}: the groups include each other ({cycle})")
            lines += expand(included, (*path, included))
        return lines

    return {key: expand(key, (key,)) for key in by_name}


def _and_marker(requirement: Requirement, via: Requirement) -> Requirement:
    """``requirement`` under the marker of the self-reference (``me[test]; ...``) it came by."""
    from packaging.markers import Marker
    from packaging.requirements import Requirement

    if via.marker is None:
        return requirement
    both = Requirement(str(requirement))
    both.marker = (
        Marker(f"({via.marker}) and ({requirement.marker})")
        if requirement.marker is not None
        else via.marker
    )
    return both


def _one_per_name(found: list[tuple[Requirement, str]]) -> tuple[Requirement, ...]:
    """One requirement per name, as the manifest holds them (merged as pip's lines are)."""
    reader = _RequirementsReader()
    for requirement, where in found:
        reader.add(requirement, where)
    return tuple(requirement for requirement, _ in reader.requirements.values())


# --------------------------------------------------------------------------- pylock.toml


def _pylock_toml(source: Path) -> Imported:
    import tomllib

    from packaging.pylock import Pylock, PylockValidationError
    from packaging.requirements import Requirement

    label = str(source)
    text, _ = decode(_read_bytes(source, label))
    try:
        pylock = Pylock.from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{label} is not valid TOML: {exc}") from None
    except PylockValidationError as exc:
        raise UsageError(f"{label} is not a valid pylock.toml (PEP 751): {exc}") from None
    requirements: list[Requirement] = []
    indexes: list[str] = []
    for index, package in enumerate(pylock.packages):
        if package.version is None or package.vcs or package.directory or package.archive:
            raise UsageError(
                f"{label}: packages[{index}] ({package.name}) is not from an index; the "
                "manifest takes packages from indexes (name and version)"
            )
        marker = f"; {package.marker}" if package.marker else ""
        requirements.append(Requirement(f"{package.name}=={package.version}{marker}"))
        if package.index:
            url, _ = _without_credentials(package.index)
            if url not in indexes:
                indexes.append(url)
    return Imported(pypi=tuple(requirements), indexes=tuple(indexes))


# --------------------------------------------------------------------------- conda explicit


_EXPLICIT_FILE = re.compile(r"(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+)\.(conda|tar\.bz2)")


def _conda_explicit(text: str, label: str) -> Imported:
    """An ``@EXPLICIT`` file (``conda list --explicit``): exact pins, channels from URLs."""
    from lockenv.lock.conda.matchspec import KNOWN_SUBDIRS

    conda: list[tuple[str, str]] = []
    channels: list[str] = []
    platforms: list[str] = []
    started = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{label}:{number}"
        if line.startswith("# platform:"):
            platforms.append(line.partition(":")[2].strip())
        if not line or line.startswith("#"):
            continue
        if line == "@EXPLICIT":
            started = True
            continue
        if not started:
            raise UsageError(f"{where}: {line!r} comes before the @EXPLICIT line")
        url, _, _digest = line.partition("#")
        url, _ = _without_credentials(url.strip())
        base, _, filename = url.rpartition("/")
        channel, _, subdir = base.rpartition("/")
        found = _EXPLICIT_FILE.fullmatch(filename)
        if not _URL.match(url) or found is None or subdir not in KNOWN_SUBDIRS:
            raise UsageError(
                f"{where}: {line!r} is not a package URL of a conda channel "
                "(CHANNEL/SUBDIR/NAME-VERSION-BUILD.conda)"
            )
        if channel not in channels:
            channels.append(channel)
        value = f"{channel}::=={found['version']} {found['build']}"
        conda.append((found["name"], value))
    return Imported(
        conda=tuple(conda),
        channels=tuple(channels),
        platforms=tuple(p for p in platforms if p),
        warnings=(
            f"{label}: every package is pinned to one build: loosen the versions you mean "
            "to update (e.g. with `lockenv add`)",
        )
        if conda
        else (),
    )
