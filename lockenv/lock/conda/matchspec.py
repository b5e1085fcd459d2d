"""Conda MatchSpecs: which package records a dependency string accepts.

The string forms are conda's (``conda.models.match_spec``)::

    [CHANNEL[/SUBDIR]::]NAME[ VERSION[ BUILD]][[key=value, ...]]
    NAME[=|==|<|>...]VERSION[=BUILD]

- ``numpy``: any version.  ``numpy 1.8.1`` and ``numpy==1.8.1``: exactly 1.8.1 (also
  1.8.1.0, by conda version equality; **not** 1.8.1.x).  ``numpy=1.8`` and ``numpy 1.8*``
  / ``numpy 1.8.*``: the 1.8 series (1.8, 1.8.0, 1.8.5; never 1.80).  When a build
  follows, a single ``=`` is exact again: ``numpy=1.8.1=py27_0`` is version ==1.8.1 and
  build py27_0 (conda's rule).  ``numpy==1.8.*`` (no build) is the 1.8 series: conda
  drops the ``==`` before it reads the version.
- ``numpy >=1.8,<2``, ``numpy >=1.8,<2|1.7``: see `lockenv.lock.conda.version.VersionSpec`;
  spaces next to operators, ``,`` and ``|`` are ignored (``numpy >= 1.8 , < 2``).
- The build (after a space, or after ``=`` following the version) is an exact string,
  a glob with ``*`` (``py311*``, ``*_cpython``) or a ``^regex$``.
- ``conda-forge::numpy``, ``conda-forge/linux-64::numpy``, ``https://host/ch::numpy``:
  a channel (name or URL; ``*`` for any) and optional subdir.  A channel name matches a
  record whose channel is that name or a URL ending in ``/<name>``.
- ``numpy[version='>=1.26', build=py311*, build_number='>=3']``: keys ``version``,
  ``build``, ``build_number``, ``channel``, ``subdir``, ``md5``, ``sha256``, ``fn``,
  ``url``; values optionally quoted; separated by ``,`` and/or spaces.  A bracket value
  overrides the same field given outside the brackets, as in conda.  Other keys are an
  error.
- Names are lower-cased; ``*`` as a name and package-file URLs are not accepted.
  ``numpy=`` is just ``numpy``; ``# comment`` after a space is dropped.

``str(spec)`` is a canonical form that parses back to an equal spec:
``[channel[/subdir]::]name[ version[ build]][[key=value,...]]`` with the version in its
canonical text (``numpy ==1.8.1 py27_0``, ``numpy 1.8.*``, ``numpy >=1.8,<2``).
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Protocol

from lockenv.errors import EXIT_INPUT_ERROR, LockenvError
from lockenv.lock.conda.version import InvalidCondaVersion, InvalidVersionSpec, VersionSpec

__all__ = [
    "KNOWN_SUBDIRS",
    "BuildNumberSpec",
    "InvalidMatchSpec",
    "MatchSpec",
    "RecordLike",
    "is_bare_version",
    "manifest_parts",
    "name_problem",
    "parse_manifest_spec",
]

#: Every subdir conda knows: ``channel/<subdir>`` names a subdir of ``channel``.
KNOWN_SUBDIRS: Final = frozenset(
    {
        "noarch",
        "emscripten-wasm32",
        "wasi-wasm32",
        "freebsd-64",
        "linux-32",
        "linux-64",
        "linux-aarch64",
        "linux-armv6l",
        "linux-armv7l",
        "linux-ppc64",
        "linux-ppc64le",
        "linux-riscv64",
        "linux-s390x",
        "osx-64",
        "osx-arm64",
        "win-32",
        "win-64",
        "win-arm64",
        "zos-z",
    }
)

_EXAMPLES: Final = "e.g. 'numpy', 'numpy >=1.26,<2', 'numpy=1.26', 'python 3.12.* *_cpython'"
# CEP 26: letters, digits and single separators ('.', '-', '_'; never two in a row), an
# optional leading '_' (or '__' for virtual packages); '+' is kept for old packages.
_NAME = re.compile(r"(?:__?)?[a-z0-9+]+(?:[._-][a-z0-9+]+)*[._-]?")
_NAME_MAX = 128
# A channel name (with label path) or '*'; URLs are checked apart.
_CHANNEL_NAME = re.compile(r"(?:\*|[A-Za-z0-9_.+-]+)(?:/[A-Za-z0-9_.+-]+)*")
_URL_CHANNEL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\",]+")
_NAME_AND_REST = re.compile(r"([^\s=<>!~]+)(.*)", re.DOTALL)
_SIMPLE_BUILD = re.compile(r"[A-Za-z0-9_.+*]+")
_BRACKET_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*")
_BARE_VALUE = re.compile(r"[^,\s\[\]'\"]*")
_SAFE_VALUE = re.compile(r"[^,\s\[\]'\"=#]+")
_HEX = re.compile(r"[0-9a-f]+")
_AWKWARD_CHANNEL = re.compile(r"[\[\]\s]|::")
# Spaces around "," and "|" and inside parentheses go; a space after ")" may precede a build.
_SPACED_SEPARATOR = re.compile(r"\s*([,|])\s*|(\()\s+|\s+(\))")
_SPACED_OPERATOR = re.compile(r"(==|!=|<=|>=|~=|[<>=])\s+")
_BRACKET_KEYS: Final = (
    "version",
    "build",
    "build_number",
    "channel",
    "subdir",
    "md5",
    "sha256",
    "fn",
    "url",
)
# An '=' after one of these is part of an operator, not the version=build separator.
_OPERATOR_CHARS: Final = frozenset("=!<>~|,(")
_PACKAGE_SUFFIXES: Final = (".conda", ".tar.bz2")


class InvalidMatchSpec(LockenvError, ValueError):
    """A MatchSpec string cannot be parsed; the message quotes it and says why."""

    exit_code = EXIT_INPUT_ERROR

    def __init__(self, text: str, reason: str, *, what: str = "MatchSpec") -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid {what} {text!r}: {reason}")


class RecordLike(Protocol):
    """What `MatchSpec.matches` reads from a package record.

    ``channel``, ``subdir``, ``md5``, ``sha256``, ``fn`` (or ``filename``) and ``url`` are
    read with ``getattr`` when the spec constrains them; a record without one (or with
    None) does not match such a spec.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def build(self) -> str: ...

    @property
    def build_number(self) -> int: ...


# -- build numbers -------------------------------------------------------------------------

_BUILD_NUMBER = re.compile(r"(==|!=|<=|>=|<|>|=)?([0-9]+)")
_COMPARE: Final[dict[str, Callable[[int, int], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildNumberSpec:
    """A build-number constraint: ``3`` (exactly), ``>=3``, ``!=0``...; ``=3`` is ``==3``."""

    op: str
    value: int

    @classmethod
    def parse(cls, text: str) -> BuildNumberSpec:
        """Parse ``N`` or ``OPN``; raise `InvalidMatchSpec` (what="build number") if bad."""
        found = _BUILD_NUMBER.fullmatch(text.strip())
        if found is None:
            raise InvalidMatchSpec(
                text,
                "use a number or an operator and a number, e.g. '3' or '>=3'",
                what="build number",
            )
        op = found.group(1) or "=="
        return cls(op="==" if op == "=" else op, value=int(found.group(2)))

    def contains(self, build_number: int) -> bool:
        """Whether ``build_number`` satisfies the constraint."""
        return _COMPARE[self.op](build_number, self.value)

    def __str__(self) -> str:
        return str(self.value) if self.op == "==" else f"{self.op}{self.value}"


# -- the spec ------------------------------------------------------------------------------


def _string_matcher(pattern: str) -> Callable[[str], bool]:
    """conda's glob-string matching: ``^regex$``, a ``*`` glob, or an exact string."""
    if pattern.startswith("^") and pattern.endswith("$"):
        regex = re.compile(pattern).match
        return lambda value: regex(value) is not None
    if "*" in pattern:
        glob = re.compile("(?:" + re.escape(pattern).replace(r"\*", ".*") + r")\Z").match
        return lambda value: glob(value) is not None
    return pattern.__eq__


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchSpec:
    """A parsed conda MatchSpec; see the module docstring for the string forms.

    ``None`` fields do not constrain.  ``build`` is an exact string, a ``*`` glob or a
    ``^regex$``; ``channel`` a channel name or redacted base URL.
    """

    name: str
    version: VersionSpec | None = None
    build: str | None = None
    build_number: BuildNumberSpec | None = None
    channel: str | None = None
    subdir: str | None = None
    md5: str | None = None
    sha256: str | None = None
    fn: str | None = None
    url: str | None = None
    _build_match: Callable[[str], bool] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _has_extra: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower():
            raise InvalidMatchSpec(self.name, "a package name must be non-empty and lower-case")
        if self.build is not None:
            try:
                matcher = _string_matcher(self.build)
            except re.error as error:
                raise InvalidMatchSpec(
                    self.build, f"bad regular expression: {error}", what="build string"
                ) from None
            object.__setattr__(self, "_build_match", matcher)
        extra = (self.channel, self.subdir, self.md5, self.sha256, self.fn, self.url)
        object.__setattr__(self, "_has_extra", any(v is not None for v in extra))

    @classmethod
    def parse(cls, text: str) -> MatchSpec:
        """Parse a MatchSpec string (cached); raise `InvalidMatchSpec` saying what is wrong."""
        return _parse_matchspec(text)

    def matches(self, record: RecordLike) -> bool:
        """Whether ``record`` satisfies every field of the spec.

        A record whose version is not a valid conda version matches no version constraint.
        """
        name = record.name
        if name != self.name and name.lower() != self.name:
            return False
        if self.version is not None and not self.matches_version(record.version):
            return False
        if self._build_match is not None and not self._build_match(record.build):
            return False
        if self.build_number is not None and not self.build_number.contains(record.build_number):
            return False
        return not self._has_extra or self._matches_extra(record)

    @property
    def version_only(self) -> bool:
        """Whether the spec says nothing of a record but its name and version."""
        return self._build_match is None and self.build_number is None and not self._has_extra

    def matches_version(self, version: str) -> bool:
        """Whether a record of ``version`` meets the spec's version constraint (if any).

        A version that is not a valid conda version meets no constraint.
        """
        constraint = self.version
        if constraint is None:
            return True
        # The memo lookup inlined: the solver asks this of every version of a name.
        hit = constraint._memo.get(version)
        if hit is None:
            try:
                hit = constraint.contains(version)
            except InvalidCondaVersion:
                return False
        return hit

    def _matches_extra(self, record: object) -> bool:
        if self.channel is not None and not _channel_matches(
            self.channel, getattr(record, "channel", None)
        ):
            return False
        if self.subdir is not None and getattr(record, "subdir", None) != self.subdir:
            return False
        for key in ("md5", "sha256"):
            want = getattr(self, key)
            if want is not None:
                have = getattr(record, key, None)
                if not isinstance(have, str) or have.lower() != want:
                    return False
        if self.fn is not None:
            have_fn = getattr(record, "fn", None) or getattr(record, "filename", None)
            if have_fn != self.fn:
                return False
        return self.url is None or getattr(record, "url", None) == self.url

    def __str__(self) -> str:
        head = self.name
        brackets: list[tuple[str, str]] = []
        awkward = self.channel is not None and _AWKWARD_CHANNEL.search(self.channel)
        # 'channel/subdir::' reads back only for a subdir conda knows; others go in brackets.
        subdir_in_head = self.channel is not None and not awkward and self.subdir in KNOWN_SUBDIRS
        if awkward:
            brackets.append(("channel", self.channel))  # type: ignore[arg-type]
        elif self.channel is not None:
            head = f"{self.channel}/{self.subdir}::" if subdir_in_head else f"{self.channel}::"
            head += self.name
        if self.subdir is not None and not subdir_in_head:
            brackets.append(("subdir", self.subdir))
        # A spec string ending like a package file is read as one: such fields go in brackets.
        build_outside = (
            self.build is not None
            and _SIMPLE_BUILD.fullmatch(self.build)
            and not self.build.endswith(_PACKAGE_SUFFIXES)
        )
        if self.version is not None:
            outside = _positional_version(self.version, self.build if build_outside else None)
            if outside is None:
                brackets.append(("version", _bracket_version(self.version)))
                build_outside = False
            else:
                head += f" {outside}"
        if self.build is not None:
            if build_outside:
                head += f" {self.build}" if self.version is not None else f" * {self.build}"
            else:
                brackets.append(("build", self.build))
        if self.build_number is not None:
            brackets.append(("build_number", str(self.build_number)))
        for key in ("md5", "sha256", "fn", "url"):
            value = getattr(self, key)
            if value is not None:
                brackets.append((key, value))
        if brackets:
            head += "[" + ",".join(f"{k}={_quote(v)}" for k, v in brackets) + "]"
        return head

    def __repr__(self) -> str:
        return f"MatchSpec({str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_parse_matchspec, (str(self),))


def _channel_matches(want: str, have: object) -> bool:
    if not isinstance(have, str):
        return False
    have = have.rstrip("/")
    if have == want:
        return True
    # A channel name stands for the URL it resolves to under the channel alias.
    return "://" not in want and "://" in have and have.endswith("/" + want)


def _quote(value: str) -> str:
    if _SAFE_VALUE.fullmatch(value):
        return value
    return f'"{value}"' if "'" in value else f"'{value}'"


def _positional_version(version: VersionSpec, build: str | None) -> str | None:
    """The version text to write after the name, if one reads back as ``version``."""
    for candidate in (version.text, f"({version.text})"):
        if build is None and candidate.endswith(_PACKAGE_SUFFIXES):
            continue
        rest = f" {candidate} {build}" if build is not None else f" {candidate}"
        try:
            parsed_version, parsed_build = _version_and_build(rest, rest)
        except InvalidMatchSpec:
            continue
        if parsed_build == build and parsed_version == version:
            return candidate
    return None


def _bracket_version(version: VersionSpec) -> str:
    for candidate in (version.text, f"({version.text})"):
        try:
            if VersionSpec.parse(_sanitize_version(candidate, None)) == version:
                return candidate
        except InvalidVersionSpec:
            continue
    return version.text


# -- parsing -------------------------------------------------------------------------------


def _sanitize_version(version: str, build: str | None) -> str:
    """conda's reading of a MatchSpec version that starts with '='.

    ``==V`` without a build is ``V`` (so ``==1.2.*`` is the 1.2 series); ``=V`` without a
    build is ``V*`` (fuzzy); with a build, a plain ``=V`` or ``==V`` is ``V`` (exact).
    """
    if version in ("=", "==") or not version.startswith("="):
        return version
    bare = version.lstrip("=")
    if version.startswith("==") and build is None:
        return bare
    if not any(c in bare for c in "=,|"):
        if build is None and not bare.endswith("*"):
            return bare + "*"
        return bare
    return version


def _split_equals_build(token: str) -> tuple[str, str | None]:
    """``1.2=py_0`` → ("1.2", "py_0"); an '=' of an operator is never the separator."""
    cut = token.rfind("=")
    if cut <= 0 or token[cut - 1] in _OPERATOR_CHARS:
        return token, None
    build = token[cut + 1 :]
    if not _SIMPLE_BUILD.fullmatch(build):
        return token, None
    return token[:cut], build


def _version_and_build(rest: str, original: str) -> tuple[VersionSpec | None, str | None]:
    """Read what follows the name: a version, optionally a build."""
    rest = rest.strip()
    if not rest or rest == "=":
        return None, None
    rest = _SPACED_SEPARATOR.sub(lambda m: m.group(1) or m.group(2) or m.group(3), rest)
    rest = _SPACED_OPERATOR.sub(r"\1", rest)
    tokens = rest.split()
    build: str | None
    if len(tokens) == 1:
        version_text, build = _split_equals_build(tokens[0])
    elif len(tokens) == 2:
        version_text, build = tokens
        if not _SIMPLE_BUILD.fullmatch(build):
            raise InvalidMatchSpec(
                original,
                f"{build!r} is not a build string; join version constraints with ',' "
                "(e.g. 'numpy >=1.8,<2') and put the build last (e.g. 'numpy 1.8 py27_0')",
            )
    else:
        raise InvalidMatchSpec(
            original,
            "too many space-separated parts: write 'name version build', joining version "
            f"constraints with ',' ({_EXAMPLES})",
        )
    return _version_spec(_sanitize_version(version_text, build), original), (
        None if build == "*" else build
    )


def _version_spec(text: str, original: str) -> VersionSpec | None:
    try:
        spec = VersionSpec.parse(text)
    except InvalidVersionSpec as error:
        raise InvalidMatchSpec(original, f"bad version {text!r}: {error.reason}") from None
    return None if spec.is_any else spec


def _check_name(raw: str, original: str) -> str:
    name = raw.lower()
    if name == "*" or "*" in name:
        raise InvalidMatchSpec(
            original, f"a package name is required, not the wildcard {raw!r} ({_EXAMPLES})"
        )
    problem = name_problem(name)
    if problem is not None:
        hint = " (write a channel as 'channel::name')" if "/" in name or ":" in name else ""
        raise InvalidMatchSpec(original, f"invalid package name {raw!r}: {problem}{hint}")
    return name


def name_problem(name: str) -> str | None:
    """Why ``name`` (lower-cased) is not a conda package name (CEP 26), or None."""
    if len(name) > _NAME_MAX:
        return f"longer than {_NAME_MAX} characters"
    if _NAME.fullmatch(name):
        return None
    if re.search(r"[._-]{2}", name.lstrip("_")):
        return "two separators ('.', '-', '_') in a row"
    return "use letters, digits and single '.', '-' or '_' between them (e.g. 'libgcc-ng')"


def _split_channel(text: str, original: str) -> tuple[str | None, str | None]:
    """``conda-forge/linux-64`` → ("conda-forge", "linux-64"); ``*`` → any channel."""
    text = text.strip().rstrip("/")
    if not (_CHANNEL_NAME.fullmatch(text) or _URL_CHANNEL.fullmatch(text)):
        raise InvalidMatchSpec(
            original,
            f"invalid channel {text!r} (a name such as 'conda-forge', 'conda-forge/linux-64' "
            "or a URL, e.g. 'conda-forge::numpy')",
        )
    head, slash, tail = text.rpartition("/")
    if slash and head and tail in KNOWN_SUBDIRS:
        return (None if head == "*" else head), tail
    return (None if text == "*" else text), None


def _parse_bracket_body(text: str, start: int, original: str) -> tuple[dict[str, str], int]:
    """Read ``key=value`` pairs from ``start`` up to the closing ']'; return them and its index."""
    pairs: dict[str, str] = {}
    pos, end = start, len(text)
    while True:
        while pos < end and (text[pos] == "," or text[pos].isspace()):
            pos += 1
        if pos >= end:
            raise InvalidMatchSpec(original, "unbalanced '[': close the key=value list with ']'")
        if text[pos] == "]":
            return pairs, pos
        found = _BRACKET_KEY.match(text, pos)
        if found is None:
            raise InvalidMatchSpec(
                original, "inside [...] write key=value pairs, e.g. \"numpy[version='>=1.26']\""
            )
        key = found.group(1)
        pos = found.end()
        if pos < end and text[pos] in "'\"":
            close = text.find(text[pos], pos + 1)
            if close < 0:
                raise InvalidMatchSpec(original, f"unterminated quote in the value of {key!r}")
            value = text[pos + 1 : close]
            pos = close + 1
        else:
            bare = _BARE_VALUE.match(text, pos)
            assert bare is not None  # the pattern also matches the empty string
            value = bare.group(0)
            pos = bare.end()
        if key not in _BRACKET_KEYS:
            raise InvalidMatchSpec(
                original, f"unknown key {key!r} in [...] (known: {', '.join(_BRACKET_KEYS)})"
            )
        if not value.strip():
            raise InvalidMatchSpec(original, f"no value for {key!r} in [...]")
        if key in pairs:
            raise InvalidMatchSpec(original, f"{key!r} is given twice in [...]")
        pairs[key] = value.strip()


def _split_brackets(text: str, original: str) -> tuple[str, dict[str, str]]:
    name_part = text.rpartition("::")[2]
    if "[" not in name_part and "]" not in name_part:
        # Brackets before '::' belong to the channel URL (an IPv6 host).
        return text, {}
    if not text.endswith("]") or "[" not in text:
        raise InvalidMatchSpec(
            original,
            "unbalanced brackets: a [key=value, ...] section must come last and end with ']'",
        )
    first_error: InvalidMatchSpec | None = None
    # The first '[' whose section closes exactly at the end; an earlier one may belong to
    # an IPv6 channel URL.
    for start in (i for i, c in enumerate(text) if c == "["):
        try:
            pairs, close = _parse_bracket_body(text, start + 1, original)
        except InvalidMatchSpec as error:
            first_error = first_error or error
            continue
        head = text[:start]
        if close == len(text) - 1 and not any(c in head.rpartition("::")[2] for c in "[]"):
            return head, pairs
        first_error = first_error or InvalidMatchSpec(
            original, "only one [key=value, ...] section is allowed, at the end"
        )
    assert first_error is not None
    raise first_error


def _strip_comment(text: str) -> str:
    found = re.search(r"(?:^|\s)#", text)
    return text[: found.start()] if found else text


@lru_cache(maxsize=1 << 16)
def _parse_matchspec(text: str) -> MatchSpec:
    if not isinstance(text, str):
        raise InvalidMatchSpec(repr(text), "a MatchSpec must be a string")
    spec = _strip_comment(text).strip()
    if not spec:
        raise InvalidMatchSpec(text, f"empty spec ({_EXAMPLES})")
    if spec.endswith(_PACKAGE_SUFFIXES):
        raise InvalidMatchSpec(
            text, f"package files and URLs are not supported here; write a MatchSpec ({_EXAMPLES})"
        )
    spec, brackets = _split_brackets(spec, text)
    channel: str | None = None
    subdir: str | None = None
    if "::" in spec:
        channel_text, _, spec = spec.rpartition("::")
        channel, subdir = _split_channel(channel_text, text)
    found = _NAME_AND_REST.fullmatch(spec.strip())
    if found is None:
        raise InvalidMatchSpec(text, f"no package name ({_EXAMPLES})")
    name = _check_name(found.group(1), text)
    version, build = _version_and_build(found.group(2), text)
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "build": build,
        "channel": channel,
        "subdir": subdir,
    }
    for key, value in brackets.items():
        if key == "version":
            fields["version"] = _version_spec(_sanitize_version(value, None), text)
        elif key == "build":
            fields["build"] = None if value == "*" else value
        elif key == "build_number":
            fields["build_number"] = None if value == "*" else _build_number(value, text)
        elif key == "channel":
            bracket_channel, bracket_subdir = _split_channel(value, text)
            fields["channel"] = bracket_channel
            if bracket_subdir is not None:
                fields["subdir"] = bracket_subdir
        elif key == "subdir":
            fields["subdir"] = None if value == "*" else value
        elif key in ("md5", "sha256"):
            fields[key] = _digest(key, value, text)
        else:
            fields[key] = value
    try:
        return MatchSpec(**fields)
    except InvalidMatchSpec as error:
        raise InvalidMatchSpec(text, error.reason) from None


def _build_number(value: str, original: str) -> BuildNumberSpec:
    try:
        return BuildNumberSpec.parse(value)
    except InvalidMatchSpec as error:
        raise InvalidMatchSpec(original, f"bad build_number {value!r}: {error.reason}") from None


def _digest(key: str, value: str, original: str) -> str:
    digest = value.lower()
    length = 32 if key == "md5" else 64
    if len(digest) != length or not _HEX.fullmatch(digest):
        raise InvalidMatchSpec(original, f"{key} must be {length} hexadecimal digits")
    return digest


_BARE_VERSION = re.compile(r"[0-9][0-9A-Za-z_.+!]*")


def is_bare_version(text: str) -> bool:
    """True for a version with no operator (``"1.2"``): exactly that version, as in conda."""
    return _BARE_VERSION.fullmatch(text.strip()) is not None


def parse_manifest_spec(name: str, spec: str, *, channel: str | None = None) -> MatchSpec:
    """The MatchSpec of a manifest ``[dependencies]`` entry ``name = spec``.

    ``spec`` is a MatchSpec without its name, read exactly as conda reads the same text
    after a name: ``"3.12.*"`` and ``"=3.12"`` (the series), ``"3.12"`` and ``"==3.12"``
    (exactly 3.12), ``">=1.26"``, ``"1.2 py*"``, ``"*"``, ``"[build_number=0]"``.  A
    channel may lead (``"conda-forge::>=1.26"``), and the name itself may follow it
    (``"conda-forge::numpy >=1.26"``).  ``channel`` (a name or URL, optionally ending in
    a subdir; the table form's ``channel`` key) pins the channel instead.
    """
    what = f"conda spec for {name!r}"
    try:
        _check_name(name, name)
    except InvalidMatchSpec as error:
        raise InvalidMatchSpec(spec, error.reason, what=what) from None
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        raise InvalidMatchSpec(spec, "empty version (use '*' for any version)", what=what)
    head, bracket, tail = text.partition("[")
    if "::" in head:
        if channel is not None:
            raise InvalidMatchSpec(
                spec, "the channel is given twice (in the spec and as 'channel')", what=what
            )
        channel, _, rest = head.rpartition("::")
        text = rest.lstrip() + bracket + tail
        if not text:
            text = "*"
    text = _without_own_name(text, name, spec, what)
    combined = f"{name}{text}" if text[0] == "[" else f"{name} {text}"
    try:
        parsed = _parse_matchspec(combined)
        chosen, subdir = (None, None) if channel is None else _split_channel(channel, channel)
    except InvalidMatchSpec as error:
        raise InvalidMatchSpec(spec, error.reason, what=what) from None
    if parsed.name != name.lower():
        raise InvalidMatchSpec(spec, "the spec must not repeat or contain a name", what=what)
    if channel is None:
        return parsed
    return dataclasses.replace(
        parsed,
        channel=chosen if chosen is not None else parsed.channel,
        subdir=subdir if subdir is not None else parsed.subdir,
    )


def _without_own_name(text: str, name: str, spec: str, what: str) -> str:
    """``text`` without a leading ``name`` (``"numpy >=1"`` for key numpy); refuse others."""
    found = re.match(r"[A-Za-z_][A-Za-z0-9_.+-]*", text)
    if found is None:
        return text
    word = found.group(0)
    after = text[found.end() :]
    if after and (after[0] not in " =<>!~[" or (after[0] == "!" and after[:2] != "!=")):
        return text  # not a name then an operator ('post.!.*' is a version with an epoch)
    if word.lower() == name.lower():
        return after.strip() or "*"
    if any(c.isdigit() for c in word) and not word.startswith("_"):
        return text  # a version that starts with a letter ('rc1'): let the parser judge
    raise InvalidMatchSpec(
        spec, f"it names the package {word!r}, but the entry is for {name!r}", what=what
    )


def manifest_parts(spec: MatchSpec) -> tuple[str, str | None]:
    """How a manifest writes ``spec``: its text after the name, and its channel (or None).

    ``parse_manifest_spec(spec.name, *manifest_parts(spec))`` gives back an equal spec.
    The channel carries a subdir conda knows (``"conda-forge/linux-64"``); any other
    subdir stays in the text's brackets.
    """
    channel: str | None = None
    subdir = spec.subdir
    if spec.channel is not None:
        channel = spec.channel
        if subdir in KNOWN_SUBDIRS:
            channel, subdir = f"{channel}/{subdir}", None
    rest = dataclasses.replace(spec, channel=None, subdir=subdir)
    text = str(rest)[len(spec.name) :].strip()
    return text or "*", channel
