"""Conda versions and version constraints, with conda's exact semantics.

**Versions** (`VersionOrder`) order as conda orders them:

- ``[N!]VERSION[+LOCAL]``: an optional integer epoch, the version, an optional local
  version that only breaks ties.  Allowed characters are letters, digits and ``.``,
  ``_``, ``*``; ``-`` is accepted only when the text has no ``_`` (it then means ``_``).
  Comparison is case-insensitive.
- ``.`` and ``_`` split components; each component splits into runs of digits (numbers)
  and non-digits (strings); a component that starts with a string gets a leading ``0``,
  so ``1.1.a1 == 1.1.0a1``.  A trailing ``_`` stays part of the last component
  (openssl-style ``1.1.1_ < 1.1.1a``; still ``1.1.1_ < 1.1.1``).
- Missing components and sub-components count as ``0``: ``1.1 == 1.1.0``.
- Strings sort before numbers; ``dev`` sorts before every other string and ``post``
  after everything (numbers included); other strings compare alphabetically.

**Constraints** (`VersionSpec`):

- ``*`` any; ``1.2`` and ``==1.2`` equal to 1.2 (so 1.2.0 too, but not 1.2.1);
  ``!=``, ``<``, ``<=``, ``>``, ``>=`` compare; ``~=1.2.3`` is ``>=1.2.3`` and
  starts with ``1.2``;
- ``1.2.*``, ``1.2*`` and ``=1.2`` match the versions that *start with* 1.2 component by
  component (1.2, 1.2.0, 1.2.7, 1.2a — never 1.20); ``!=1.2.*`` is the negation;
  ``>=1.2.*`` is ``>=1.2``; ``.*`` on ``==``, ``<``, ``<=``, ``>`` is ignored, as conda
  does (so ``==1.2.*`` here means exactly 1.2: MatchSpec strings translate it first);
- ``1.*.3``: a ``*`` inside a version is a glob over the version text; ``^...$`` is a
  regular expression over the version text;
- ``,`` (and) binds tighter than ``|`` (or); parentheses group.  Spaces around ``,``,
  ``|`` and parentheses are ignored; a space anywhere else is an error.

``VersionSpec.parse`` and ``VersionOrder.parse`` are cached, and every version carries a
precomputed tuple key, so comparisons and ``contains`` are plain tuple operations.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from lockenv.errors import EXIT_INPUT_ERROR, LockenvError

__all__ = [
    "InvalidCondaVersion",
    "InvalidVersionSpec",
    "VersionOrder",
    "VersionSpec",
]

_VERSION_HINT: Final = "conda versions look like '1.2.3', '1.0rc1', '2!1.0' or '1.0+local'"
_SPEC_HINT: Final = "e.g. '1.2', '>=1.8,<2', '1.2.*', '!=1.3' or '1.7|>=2'"


class InvalidCondaVersion(LockenvError, ValueError):
    """A conda version string cannot be parsed."""

    exit_code = EXIT_INPUT_ERROR

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid conda version {text!r}: {reason} ({_VERSION_HINT})")


class InvalidVersionSpec(LockenvError, ValueError):
    """A conda version constraint cannot be parsed."""

    exit_code = EXIT_INPUT_ERROR

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid conda version spec {text!r}: {reason} ({_SPEC_HINT})")


# -- versions ------------------------------------------------------------------------------

#: One sub-component: a number, a lower-case string (``"DEV"`` for dev), or +inf for post.
Part = int | float | str
Component = tuple[Part, ...]

_POST: Final = float("inf")
# Upper case sorts before '_' and every lower-case letter, which puts dev first among
# strings; '*' (42) sorts before it, as in conda.
_DEV: Final = "DEV"
_VALID_CHARS = re.compile(r"[*.+!_0-9a-z]+")
_RUNS = re.compile(r"[0-9]+|\*+|[^0-9*]+")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class VersionOrder:
    """A parsed conda version; ``==``, ``<``... and ``hash`` follow conda's ordering.

    ``version`` and ``local`` hold the raw components (each a tuple of ints, strings and
    ``inf`` for ``post``) without the epoch and before zero padding.
    """

    text: str
    epoch: int
    version: tuple[Component, ...]
    local: tuple[Component, ...]
    _key: tuple[Any, ...] = field(compare=False)
    _hash: int = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> VersionOrder:
        """Parse a conda version (cached); raise `InvalidCondaVersion` quoting ``text``."""
        return _parse_version(text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VersionOrder({self.text!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_parse_version, (self.text,))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionOrder):
            return self._key == other._key
        return NotImplemented

    def __lt__(self, other: VersionOrder) -> bool:
        if isinstance(other, VersionOrder):
            return self._key < other._key
        return NotImplemented

    def __le__(self, other: VersionOrder) -> bool:
        if isinstance(other, VersionOrder):
            return self._key <= other._key
        return NotImplemented

    def __gt__(self, other: VersionOrder) -> bool:
        if isinstance(other, VersionOrder):
            return self._key > other._key
        return NotImplemented

    def __ge__(self, other: VersionOrder) -> bool:
        if isinstance(other, VersionOrder):
            return self._key >= other._key
        return NotImplemented

    def startswith(self, other: VersionOrder) -> bool:
        """Whether ``self`` matches ``other.*`` (conda's fuzzy ``=other``).

        All of ``other``'s components but the last must equal ``self``'s (with zero
        padding); in the last one, a trailing string of ``other`` must be a prefix of
        ``self``'s string there, and a trailing number must be equal.  ``other``'s local
        part, when it has one, is matched the same way after equal versions.
        """
        return _prefix_matcher(other)(self)


def _strip_zeros(component: Component) -> Component:
    """The component without trailing zeros: equal after padding iff equal stripped."""
    end = len(component)
    while end and component[end - 1] == 0:
        end -= 1
    return component[:end]


def _normalize(components: tuple[Component, ...]) -> tuple[Component, ...]:
    stripped = [_strip_zeros(c) for c in components]
    while stripped and not stripped[-1]:
        stripped.pop()
    return tuple(stripped)


def _prefix_matcher(prefix: VersionOrder) -> Callable[[VersionOrder], bool]:
    """A test for `VersionOrder.startswith` ``prefix``, with ``prefix``'s side precomputed."""
    use_local = bool(prefix.local)
    base_epoch = prefix.epoch
    base = _normalize(prefix.version)
    theirs = prefix.local if use_local else ((prefix.epoch,), *prefix.version)
    last = len(theirs) - 1
    leading = _normalize(theirs[:last])
    tail = theirs[last]
    end = len(tail) - 1
    tail_head = _strip_zeros(tail[:end])
    their_part = tail[end]
    string_part = isinstance(their_part, str)
    their_text = their_part if isinstance(their_part, str) else ""

    def match(version: VersionOrder) -> bool:
        if use_local:
            if version.epoch != base_epoch or _normalize(version.version) != base:
                return False
            mine = version.local
        else:
            mine = ((version.epoch,), *version.version)
        if _normalize(mine[:last]) != leading:
            return False
        head: Component = mine[last] if len(mine) > last else ()
        if _strip_zeros(head[:end]) != tail_head:
            return False
        part: Part = head[end] if len(head) > end else 0
        if string_part:
            return isinstance(part, str) and part.startswith(their_text)
        return part == their_part

    return match


# Sort keys.  conda compares component lists padded with empty components, and each
# component padded with zeros; that is not Python's tuple order (a shorter tuple is not
# simply smaller: '1.1' > '1.1.a').  The key below makes it so, as one flat tuple:
#
# - an element is a (rank, value) pair: string (1, s) < zero < number (3, n) < post (4, 0);
#   a zero is (2, 0) or (2, 2) by whether the first non-zero element after it is a
#   string or a number, and each component ends with (2, 1): "zeros from here on";
# - each component is followed by one more number: for an all-zero component, 0 or 2 by
#   the first non-zero component after it (the same trick one level up); 0 otherwise;
#   and the list ends with (2, 1, 1), "zero components from here on".
#
# Two keys agree up to a position only if they are aligned there, so every comparison is
# between two ints or two strings, and the first difference gives conda's answer.  The
# tests check this against a direct transcription of conda's rules.
_ZERO_COMPONENT_BEFORE_LESS: Final = (2, 1, 0)
_ZERO_COMPONENT_BEFORE_MORE: Final = (2, 1, 2)
_END_OF_LIST: Final = (2, 1, 1)


def _component_key(component: Component) -> list[Any]:
    # ``component`` has no trailing zeros, so every zero has a non-zero after it.
    key: list[Any] = [1, 2]  # reversed at the end, like everything appended here
    zero_rank = 2  # a zero before a number (or post)
    for part in reversed(component):
        if isinstance(part, str):
            key += (part, 1)
            zero_rank = 0
        elif part == 0:
            key += (zero_rank, 2)
        elif part == _POST:
            key += (0, 4)
            zero_rank = 2
        else:
            key += (part, 3)
            zero_rank = 2
    key.reverse()
    return key


def _components_key(components: tuple[Component, ...]) -> list[Any]:
    normalized = _normalize(components)
    chunks: list[Any] = [_END_OF_LIST]
    zero_chunk = _ZERO_COMPONENT_BEFORE_MORE
    for component in reversed(normalized):
        if component:
            chunks.append((*_component_key(component), 0))
            first = next(p for p in component if isinstance(p, str) or p != 0)
            more = not isinstance(first, str)
            zero_chunk = _ZERO_COMPONENT_BEFORE_MORE if more else _ZERO_COMPONENT_BEFORE_LESS
        else:
            chunks.append(zero_chunk)
    return [item for chunk in reversed(chunks) for item in chunk]


def _numeric_key(numbers: list[int]) -> list[Any]:
    """`_components_key` for a version made of plain numbers only (the common case)."""
    end = len(numbers)
    while end and numbers[end - 1] == 0:
        end -= 1
    key: list[Any] = []
    for n in numbers[:end]:
        key += _ZERO_COMPONENT_BEFORE_MORE if n == 0 else (3, n, 2, 1, 0)
    key += _END_OF_LIST
    return key


def _split_component(raw: str, text: str) -> Component:
    runs = _RUNS.findall(raw)
    if not runs:
        raise InvalidCondaVersion(text, "empty version component (two separators in a row?)")
    parts: list[Part] = [] if raw[0].isdigit() else [0]
    for run in runs:
        if run.isdigit():
            parts.append(int(run))
        elif run == "post":
            parts.append(_POST)
        elif run == "dev":
            parts.append(_DEV)
        else:
            parts.append(run)
    return tuple(parts)


_NUMERIC = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_NO_LOCAL_KEY: Final = tuple(_END_OF_LIST)


@lru_cache(maxsize=1 << 18)
def _parse_version(text: str) -> VersionOrder:
    if not isinstance(text, str):
        raise InvalidCondaVersion(repr(text), "a version must be a string")
    norm = text.strip().lower()
    if _NUMERIC.fullmatch(norm):
        numbers = [int(n) for n in norm.split(".")]
        key = (0, *_numeric_key(numbers), *_NO_LOCAL_KEY)
        numeric: tuple[Component, ...] = tuple((n,) for n in numbers)
        return VersionOrder(
            text=text, epoch=0, version=numeric, local=(), _key=key, _hash=hash(key)
        )
    if not norm:
        raise InvalidCondaVersion(text, "empty version")
    if not _VALID_CHARS.fullmatch(norm):
        # conda reads '-' as '_' when the version has no '_' of its own.
        if "-" in norm and "_" not in norm:
            norm = norm.replace("-", "_")
        if not _VALID_CHARS.fullmatch(norm):
            bad = sorted({c for c in norm if not _VALID_CHARS.fullmatch(c)})
            raise InvalidCondaVersion(text, f"invalid character(s) {''.join(bad)!r}")
    epoch_text, bang, rest = norm.rpartition("!")
    epoch = 0
    if bang:
        if "!" in epoch_text:
            raise InvalidCondaVersion(text, "more than one epoch separator '!'")
        if not epoch_text.isdigit():
            raise InvalidCondaVersion(text, "the epoch before '!' must be an integer")
        epoch = int(epoch_text)
    main, plus, local_text = rest.partition("+")
    if "+" in local_text:
        raise InvalidCondaVersion(text, "more than one local version separator '+'")
    if not main:
        raise InvalidCondaVersion(text, "no version before the local version or after '!'")
    if main.endswith("_"):
        # openssl-style versions: the trailing '_' is a string run of the last component.
        raw = main[:-1].replace("_", ".").split(".")
        raw[-1] += "_"
    else:
        raw = main.replace("_", ".").split(".")
    version = tuple(_split_component(c, text) for c in raw)
    local: tuple[Component, ...] = ()
    if plus:
        local = tuple(_split_component(c, text) for c in local_text.replace("_", ".").split("."))
    key = (epoch, *_components_key(version), *_components_key(local))
    return VersionOrder(
        text=text, epoch=epoch, version=version, local=local, _key=key, _hash=hash(key)
    )


# -- version specs -------------------------------------------------------------------------

Matcher = Callable[[VersionOrder], bool]

_RELATION = re.compile(r"(==|!=|<=|>=|~=|<|>|=)(?![=<>!~])(\S+)")
_OPERATOR_START: Final = frozenset("=<>!~")
_MEMO_LIMIT: Final = 1 << 14


def _always(_: VersionOrder) -> bool:
    return True


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class _Node:
    """A parsed constraint: canonical text, whether it is an or-group, and its matcher."""

    text: str
    is_or: bool
    match: Matcher


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class VersionSpec:
    """A parsed conda version constraint; equal when the canonical texts are equal."""

    text: str
    is_any: bool
    _match: Matcher = field(compare=False)
    _memo: dict[str, bool] = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> VersionSpec:
        """Parse a constraint (cached); raise `InvalidVersionSpec` quoting ``text``."""
        return _parse_spec(text)

    def contains(self, version: VersionOrder | str) -> bool:
        """Whether ``version`` satisfies the constraint.

        A ``str`` is parsed (`InvalidCondaVersion` when it is not a conda version).  Answers
        are remembered by version text, since a solver asks about the same versions of a
        package many times.
        """
        if isinstance(version, str):
            text = version
            hit = self._memo.get(text)
            if hit is not None:
                return hit
            hit = self._match(_parse_version(text))
        else:
            text = version.text
            hit = self._memo.get(text)
            if hit is not None:
                return hit
            hit = self._match(version)
        memo = self._memo
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[text] = hit
        return hit

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"VersionSpec({self.text!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_parse_spec, (self.text,))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionSpec):
            return self.text == other.text
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.text)


@lru_cache(maxsize=1 << 16)
def _parse_spec(text: str) -> VersionSpec:
    if not isinstance(text, str):
        raise InvalidVersionSpec(repr(text), "a version spec must be a string")
    tokens = _tokenize(text)
    if not tokens:
        raise InvalidVersionSpec(text, "empty version spec (use '*' for any version)")
    parser = _Parser(text, tokens)
    node = parser.parse_or()
    if parser.pos != len(tokens):
        raise InvalidVersionSpec(text, f"unexpected {tokens[parser.pos]!r}")
    return VersionSpec(text=node.text, is_any=node.text == "*", _match=node.match, _memo={})


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "(),|":
            tokens.append(char)
            i += 1
        elif char == "^":
            # A regular expression may hold any of the operators: it runs to its '$'.
            end = text.find("$", i)
            if end < 0:
                raise InvalidVersionSpec(text, "a regular expression must end with '$'")
            tokens.append(text[i : end + 1])
            i = end + 1
        else:
            start = i
            while i < n and text[i] not in "(),|":
                i += 1
            tokens.append(text[start:i].strip())
    return tokens


class _Parser:
    """Recursive descent over ``or := and ('|' and)*``, ``and := atom (',' atom)*``."""

    def __init__(self, text: str, tokens: list[str]) -> None:
        self.text = text
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse_or(self) -> _Node:
        nodes = [self.parse_and()]
        while self._peek() == "|":
            self.pos += 1
            nodes.append(self.parse_and())
        if len(nodes) == 1:
            return nodes[0]
        text = "|".join(node.text for node in nodes)
        matchers = tuple(node.match for node in nodes)

        def match_any(version: VersionOrder, matchers: tuple[Matcher, ...] = matchers) -> bool:
            # A plain loop: any() over a generator costs more, and this runs per record.
            for matcher in matchers:  # noqa: SIM110
                if matcher(version):
                    return True
            return False

        return _Node(text, True, match_any)

    def parse_and(self) -> _Node:
        nodes = [self.parse_atom()]
        while self._peek() == ",":
            self.pos += 1
            nodes.append(self.parse_atom())
        if len(nodes) == 1:
            return nodes[0]
        text = ",".join(f"({node.text})" if node.is_or else node.text for node in nodes)
        matchers = tuple(node.match for node in nodes)

        def match_all(version: VersionOrder, matchers: tuple[Matcher, ...] = matchers) -> bool:
            for matcher in matchers:  # noqa: SIM110
                if not matcher(version):
                    return False
            return True

        return _Node(text, False, match_all)

    def parse_atom(self) -> _Node:
        token = self._peek()
        if token is None:
            raise InvalidVersionSpec(self.text, "a constraint is missing at the end")
        if token == "(":
            self.pos += 1
            node = self.parse_or()
            if self._peek() != ")":
                raise InvalidVersionSpec(self.text, "unbalanced '(': add the closing ')'")
            self.pos += 1
            return node
        if token in "),|":
            what = "unbalanced ')'" if token == ")" else f"a constraint is missing before {token!r}"
            raise InvalidVersionSpec(self.text, what)
        self.pos += 1
        return _parse_leaf(token, self.text)


def _version_in(leaf: str, spec: str) -> VersionOrder:
    try:
        return _parse_version(leaf)
    except InvalidCondaVersion as error:
        raise InvalidVersionSpec(spec, f"{error.reason} in {leaf!r}") from None


def _parse_leaf(leaf: str, spec: str) -> _Node:
    if leaf[0] == "^" or leaf[-1] == "$":
        if leaf[0] != "^" or leaf[-1] != "$":
            raise InvalidVersionSpec(
                spec, "a regular expression must start with '^' and end with '$'"
            )
        try:
            search = re.compile(leaf).match
        except re.error as error:
            raise InvalidVersionSpec(spec, f"bad regular expression {leaf!r}: {error}") from None
        return _Node(leaf, False, lambda v: search(v.text) is not None)
    if any(c.isspace() for c in leaf):
        raise InvalidVersionSpec(
            spec, f"unexpected space in {leaf!r} (write operators next to their version)"
        )
    if leaf[0] in _OPERATOR_START:
        return _parse_relation(leaf, spec)
    if leaf == "*":
        return _Node("*", False, _always)
    if "*" in leaf.rstrip("*"):
        # A '*' inside the version: a glob over the version text, as conda does.
        pattern = re.escape(leaf).replace(r"\*", ".*")
        glob = re.compile(f"(?:{pattern})$").match
        return _Node(leaf, False, lambda v: glob(v.text) is not None)
    if leaf[-1] == "*":
        prefix = leaf.rstrip("*").rstrip(".")
        return _startswith(prefix, _version_in(prefix, spec))
    if "@" in leaf:
        return _Node(leaf, False, lambda v: v.text == leaf)
    target = _version_in(leaf, spec)
    return _Node(f"=={leaf}", False, lambda v: v == target)


def _startswith(prefix: str, target: VersionOrder) -> _Node:
    # "1.2.*" reads back the same; a prefix holding '*' (from "=1*") has to keep its '='.
    # A prefix ending in '.*' (from "=1.*.*") keeps one more '.*' for conda to strip again.
    if prefix.endswith(".*"):
        text = f"={prefix}.*"
    else:
        text = f"={prefix}" if "*" in prefix else f"{prefix}.*"
    return _Node(text, False, _prefix_matcher(target))


def _parse_relation(leaf: str, spec: str) -> _Node:
    found = _RELATION.fullmatch(leaf)
    if found is None:
        raise InvalidVersionSpec(
            spec, f"invalid operator in {leaf!r} (use ==, !=, <, <=, >, >=, ~= or =)"
        )
    op, version_text = found.groups()
    negated_prefix = False
    if version_text.endswith(".*"):
        if op == "~=":
            raise InvalidVersionSpec(spec, f"'~=' cannot take a '.*' version in {leaf!r}")
        negated_prefix = op == "!="
        # conda ignores '.*' after ==, <, <=, > and >= (with a warning); so do we.
        version_text = version_text[:-2]
    target = _version_in(version_text, spec)
    if op == "=":
        return _startswith(version_text, target)
    if negated_prefix:
        starts = _prefix_matcher(target)
        return _Node(f"!={version_text}.*", False, lambda v: not starts(v))
    key = target._key
    # A version still ending in '.*' (from '>=2.*.*') needs the '.*' conda strips once more,
    # or the text would read back as another constraint.
    text = f"{op}{version_text}.*" if version_text.endswith(".*") else f"{op}{version_text}"
    if op == "==":
        return _Node(text, False, lambda v: v._key == key)
    if op == "!=":
        return _Node(text, False, lambda v: v._key != key)
    if op == "<":
        return _Node(text, False, lambda v: v._key < key)
    if op == "<=":
        return _Node(text, False, lambda v: v._key <= key)
    if op == ">":
        return _Node(text, False, lambda v: v._key > key)
    if op == ">=":
        return _Node(text, False, lambda v: v._key >= key)
    # '~=1.2.3' is '>=1.2.3' and '1.2.*': conda drops the last '.'-separated part.
    norm = target.text.strip().lower()
    if "-" in norm and "_" not in norm:
        norm = norm.replace("-", "_")
    prefix_text = ".".join(norm.split(".")[:-1])
    if not prefix_text:
        raise InvalidVersionSpec(
            spec, f"'~=' needs at least two version components in {leaf!r}, e.g. '~=1.2'"
        )
    starts = _prefix_matcher(_version_in(prefix_text, spec))
    return _Node(text, False, lambda v: v._key >= key and starts(v))
