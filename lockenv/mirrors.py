"""Mirrors: where to fetch what a URL names, when the URL's own server is not the place.

A rule maps an origin URL prefix to mirror prefixes, tried in order::

    [mirrors]
    "https://conda.example.org/conda-forge" = ["https://mirror.site/conda-forge", "file:///shared/conda-forge"]
    "https://pypi.example.org/simple" = ["https://pypi.site/simple"]

A URL under an origin (``origin`` itself, or ``origin/...``) is fetched from the first
mirror that has it, the rest of the URL kept; the origin itself only when a rule lists
it among its mirrors (an air-gapped site must not wait on a host it cannot reach).  The
longest matching origin wins.  Locks always keep origin URLs and hashes: a mirror is a
place to fetch from, never part of what was locked, and every artifact, whichever
mirror served it, is checked against the lock's sha256 and size.

Rules come from, first match of an origin wins:

1. ``LOCKENV_MIRRORS``: ``ORIGIN=MIRROR[,MIRROR...]`` entries separated by whitespace;
2. the configuration file ``$LOCKENV_CONFIG`` when set (only that one), else the user's
   (``$XDG_CONFIG_HOME/lockenv/config.toml``, ``~/.config/lockenv/config.toml``; on
   macOS ``~/Library/Application Support/lockenv``, on Windows ``%APPDATA%\\lockenv``)
   then the system's (``/etc/lockenv/config.toml``; ``%PROGRAMDATA%\\lockenv``), each
   with a ``[mirrors]`` table as above;
3. the manifest's ``[mirrors]`` table.

The machine's settings come before the project's: the site knows which hosts its nodes
can reach.  Mirror URLs may carry credentials (``https://user:token@host/...``); they go
into requests only, never into a lock or a message (`lockenv.urls.redact_url`).

Standard library only; read only when something must be fetched.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lockenv.errors import ConfigError
from lockenv.project import TOML_ERRORS, toml_may_spell, toml_problem
from lockenv.urls import redact_url

__all__ = [
    "MIRRORS_ENV",
    "MirrorRule",
    "Mirrors",
    "config_files",
    "load_mirrors",
    "parse_mirror_table",
    "site_mirrors",
]

MIRRORS_ENV = "LOCKENV_MIRRORS"
CONFIG_ENV = "LOCKENV_CONFIG"
_SCHEMES = ("http://", "https://", "file://")
_CONFIG_KEYS = ("mirrors",)


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorRule:
    """One origin prefix and the prefixes to fetch its URLs from, in order.

    ``origin`` has no credentials; neither has a trailing ``/``.  ``source`` says where
    the rule was set (for messages).
    """

    origin: str
    mirrors: tuple[str, ...]
    source: str

    def covers(self, url: str) -> bool:
        """True when ``url`` is ``origin`` or lies under it (at a ``/``)."""
        return _under(url, self.origin)


@dataclass(frozen=True, slots=True)
class Mirrors:
    """An ordered set of rules; the empty set fetches every URL from where it points."""

    rules: tuple[MirrorRule, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def rule_for(self, url: str) -> MirrorRule | None:
        """The rule with the longest origin that covers ``url`` (first listed on a tie)."""
        clean = redact_url(url)
        best: MirrorRule | None = None
        for rule in self.rules:
            if rule.covers(clean) and (best is None or len(rule.origin) > len(best.origin)):
                best = rule
        return best

    def locations(self, url: str) -> tuple[str, ...]:
        """Where to fetch ``url`` from, in order: ``(url,)`` when no rule covers it."""
        rule = self.rule_for(url)
        if rule is None:
            return (url,)
        rest = redact_url(url)[len(rule.origin) :]
        return tuple(mirror + rest for mirror in rule.mirrors)

    def origin_of(self, url: str) -> str:
        """``url`` as its origin names it, when it lies under a mirror of some rule.

        What a mirror's page links to is recorded in a lock under the origin's name, so
        the lock stays the same whichever mirror it was made through.
        """
        clean = redact_url(url)
        best: tuple[int, str] | None = None
        for rule in self.rules:
            for mirror in rule.mirrors:
                plain = redact_url(mirror)
                if _under(clean, plain) and (best is None or len(plain) > best[0]):
                    best = (len(plain), rule.origin + clean[len(plain) :])
        return best[1] if best is not None else url

    def then(self, other: Mirrors) -> Mirrors:
        """These rules, then ``other``'s for origins these do not name."""
        named = {rule.origin for rule in self.rules}
        return Mirrors(self.rules + tuple(r for r in other.rules if r.origin not in named))


def _under(url: str, prefix: str) -> bool:
    return url == prefix or (url.startswith(prefix) and url[len(prefix)] in "/?#")


# -------------------------------------------------------------------------- reading rules


def parse_mirror_table(
    value: object,
    *,
    source: str,
    base_dir: Path | None,
    problem: Callable[[str, str], None],
) -> Mirrors:
    """Rules from a parsed ``[mirrors]`` table; each bad entry is reported to ``problem``
    as ``(key, message)`` and left out.  Local paths become ``file://`` URLs, relative
    ones against ``base_dir``."""
    if not isinstance(value, Mapping):
        problem("", f"expected a table of origin URL = [mirror URLs], got {value!r}")
        return Mirrors()
    rules: list[MirrorRule] = []
    for key, raw in value.items():
        origin = _url(str(key), None) if str(key).lower().startswith(_SCHEMES) else None
        if origin is None or "@" in origin.split("://", 1)[1].split("/", 1)[0]:
            problem(
                str(key),
                f"the origin {key!r} is not a URL without credentials (write the prefix of "
                "the URLs to redirect, e.g. 'https://origin.example/simple')",
            )
            continue
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            problem(str(key), f"expected a list of mirror URLs, got {raw!r}")
            continue
        mirrors = []
        for item in items:
            url = _url(item, base_dir)
            if url is None:
                problem(
                    str(key),
                    f"{redact_url(item)!r} is not an http://, https:// or file:// URL, nor a "
                    "directory path",
                )
            else:
                mirrors.append(url)
        if len(mirrors) == len(items):
            rules.append(MirrorRule(origin=origin, mirrors=tuple(mirrors), source=source))
    return Mirrors(tuple(rules))


def _url(text: str, base_dir: Path | None) -> str | None:
    text = text.strip()
    if not text:
        return None
    if text.lower().startswith(_SCHEMES):
        scheme, _, rest = text.partition("://")
        return f"{scheme.lower()}://{rest}".rstrip("/")
    if "://" in text:
        return None
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        if base_dir is None:
            return None
        path = base_dir / path
    return Path(os.path.normpath(path)).as_uri().rstrip("/")


def _from_environment(value: str) -> Mirrors:
    rules: list[MirrorRule] = []
    problems: list[str] = []
    for entry in value.split():
        origin, sep, targets = entry.partition("=")
        if not sep:
            raise ConfigError(
                f"{MIRRORS_ENV}: {entry!r} is not ORIGIN=MIRROR[,MIRROR...]; separate entries "
                "with spaces"
            )
        parsed = parse_mirror_table(
            {origin: targets.split(",")},
            source=MIRRORS_ENV,
            base_dir=None,
            problem=lambda _key, message: problems.append(message),
        )
        if problems:
            raise ConfigError(f"{MIRRORS_ENV}: {problems[0]}")
        rules += parsed.rules
    return Mirrors(tuple(rules))


def config_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The configuration files read, in order (existing or not)."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit is not None:
        return [Path(explicit)] if explicit else []
    home = Path.home()
    if sys.platform == "win32":
        user = Path(env.get("APPDATA") or home / "AppData" / "Roaming") / "lockenv"
        system = Path(env.get("PROGRAMDATA") or "C:\\ProgramData") / "lockenv"
    elif sys.platform == "darwin":
        user = home / "Library" / "Application Support" / "lockenv"
        system = Path("/etc/lockenv")
    else:
        xdg = env.get("XDG_CONFIG_HOME")
        user = (Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config") / "lockenv"
        system = Path("/etc/lockenv")
    return [user / "config.toml", system / "config.toml"]


def _from_file(path: Path) -> Mirrors:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Mirrors()  # the usual case: tomllib is not even imported
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the lockenv configuration ({exc})") from None
    if not text.strip():
        return Mirrors()  # empty (LOCKENV_CONFIG=/dev/null): nothing to parse
    import tomllib

    try:
        data = tomllib.loads(text)
    except TOML_ERRORS as exc:
        raise ConfigError(f"{path}: invalid TOML: {toml_problem(exc)}") from None
    problems = [f"{path}: unknown key {k!r} (expected: mirrors)" for k in data if k != "mirrors"]
    mirrors = parse_mirror_table(
        data.get("mirrors", {}),
        source=str(path),
        base_dir=path.parent,
        problem=lambda key, message: problems.append(
            f"{path}: mirrors{'.' + repr(key) if key else ''}: {message}"
        ),
    )
    if problems:
        raise ConfigError(problems)
    return mirrors


def site_mirrors(environ: Mapping[str, str] | None = None) -> Mirrors:
    """The machine's rules: ``LOCKENV_MIRRORS``, then the configuration files."""
    env = os.environ if environ is None else environ
    mirrors = _from_environment(env.get(MIRRORS_ENV, ""))
    for path in config_files(env):
        mirrors = mirrors.then(_from_file(path))
    return mirrors


def load_mirrors(manifest: Path | None = None) -> Mirrors:
    """The machine's rules, then those of the manifest at ``manifest`` (if any).

    For the sync side, which never parses a manifest otherwise: only its ``[mirrors]``
    table is read (``[tool.lockenv.mirrors]`` in a ``pyproject.toml``), and a bad table
    is an error naming it.
    """
    mirrors = site_mirrors()
    if manifest is None:
        return mirrors
    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return mirrors  # reading the manifest proper reports it
    if not toml_may_spell(text, "mirrors"):
        return mirrors  # most manifests: no table of mirrors, nothing to parse
    import tomllib

    try:
        data = tomllib.loads(text)
    except TOML_ERRORS:
        return mirrors
    table: object = data
    for key in ("tool", "lockenv") if manifest.name == "pyproject.toml" else ():
        table = table.get(key, {}) if isinstance(table, dict) else {}
    raw = table.get("mirrors") if isinstance(table, dict) else None
    if raw is None:
        return mirrors
    problems: list[str] = []
    project = parse_mirror_table(
        raw,
        source=str(manifest),
        base_dir=manifest.parent,
        problem=lambda key, message: problems.append(f"{manifest}: mirrors: {message}"),
    )
    if problems:
        raise ConfigError(problems)
    return mirrors.then(project)


def describe(mirrors: Mirrors) -> Iterable[str]:
    """One line per rule, credentials removed (for ``lockenv info``)."""
    for rule in mirrors.rules:
        targets = ", ".join(redact_url(m) for m in rule.mirrors)
        yield f"{rule.origin} -> {targets} ({rule.source})"
