"""Conda version ordering and version constraints (lockenv.lock.conda.version)."""

from __future__ import annotations

import pickle
from itertools import pairwise, zip_longest
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.errors import EXIT_INPUT_ERROR, LockenvError
from lockenv.lock.conda.version import (
    InvalidCondaVersion,
    InvalidVersionSpec,
    VersionOrder,
    VersionSpec,
)

V = VersionOrder.parse

# conda's documented canonical order; "==" marks versions conda holds equal.
CANONICAL_ORDER = [
    ("0.4", None),
    ("0.4.0", "=="),
    ("0.4.1.rc", "<"),
    ("0.4.1.RC", "=="),
    ("0.4.1", "<"),
    ("0.5a1", "<"),
    ("0.5b3", "<"),
    ("0.5C1", "<"),
    ("0.5", "<"),
    ("0.9.6", "<"),
    ("0.960923", "<"),
    ("1.0", "<"),
    ("1.1dev1", "<"),
    ("1.1_", "<"),
    ("1.1a1", "<"),
    ("1.1.0dev1", "<"),
    ("1.1.dev1", "=="),
    ("1.1.a1", "<"),
    ("1.1.0rc1", "<"),
    ("1.1.0", "<"),
    ("1.1", "=="),
    ("1.1.0post1", "<"),
    ("1.1.post1", "=="),
    ("1.1post1", "<"),
    ("1996.07.12", "<"),
    ("1!0.4.1", "<"),
    ("1!3.1.1.6", "<"),
    ("2!0.4.1", "<"),
]


def test_canonical_order_neighbours() -> None:
    for (before, _), (after, relation) in pairwise(CANONICAL_ORDER):
        if relation == "==":
            assert V(before) == V(after), (before, after)
            assert hash(V(before)) == hash(V(after))
        else:
            assert V(before) < V(after), (before, after)
            assert V(after) > V(before)
            assert V(before) != V(after)


def test_canonical_order_sorts() -> None:
    texts = [text for text, _ in CANONICAL_ORDER]
    ranks: list[int] = []
    rank = -1
    for _, relation in CANONICAL_ORDER:
        rank += relation != "=="
        ranks.append(rank)
    for i, a in enumerate(texts):
        for j, b in enumerate(texts):
            assert (V(a) < V(b)) == (ranks[i] < ranks[j]), (a, b)
            assert (V(a) == V(b)) == (ranks[i] == ranks[j]), (a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.1", "1.1.0"),
        ("1.1", "1.1.0.0"),
        ("1.0_1", "1.0.1"),
        ("1.0-1", "1.0.1"),  # '-' means '_' when the text has no '_'
        ("1.0RC1", "1.0rc1"),
        ("1.1.a1", "1.1.0a1"),
        ("0!1.0", "1.0"),
        ("1.0+0", "1.0"),  # an all-zero local part pads like a missing one
        ("1.0+a_1", "1.0+a.1"),
        (" 1.0 ", "1.0"),
        ("1.0DEV", "1.0dev"),
        # plain numbers take a fast path; it must agree with the general one
        ("1.2", "0!1.2"),
        ("1.2.0", "1.2+0"),
        ("1.0.0.0", "1_0"),
        ("1.02", "1.2"),
        ("0", "0!0.0+0"),
    ],
)
def test_equal(a: str, b: str) -> None:
    assert V(a) == V(b)
    assert hash(V(a)) == hash(V(b))
    assert not V(a) < V(b)
    assert V(a) <= V(b) <= V(a)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.1.a", "1.1"),  # strings before the implicit zero
        ("1.0", "1.0.1"),
        ("1.0dev", "1.0_"),
        ("1.0_", "1.0a"),
        ("1.0.1", "1.0.1post"),
        ("1.0.1post", "1.0.2"),  # post only wins within its own component
        ("1.9", "1.10"),
        ("1.0", "1.0+1"),
        ("1.0+a", "1.0"),
        ("1.0+1.1", "1.0+1.2"),
        ("9999", "1!0"),
        ("1.0", "1.0.0.0.1"),
        ("1.0.0.0.a", "1.0"),
        ("1.0.*", "1.0"),
        ("1.2.3", "1.2.3.1"),
        ("2.0rc", "2.0"),
        ("2.0.0rc1", "2.0"),
        ("1.0.0.1a", "1.0.0.1"),  # the general path against the numeric fast path
        ("1.0.0.0a", "1.0"),
        ("1.0.1", "1.0.1post"),
        ("1.1.1_", "1.1.1a"),  # openssl-style trailing underscore
        ("1.1.1_", "1.1.1"),  # ... which still sorts before the plain release
    ],
)
def test_less(low: str, high: str) -> None:
    assert V(low) < V(high)
    assert V(high) > V(low)
    assert V(low) != V(high)
    assert V(low) <= V(high) and not V(high) <= V(low)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty version"),
        ("   ", "empty version"),
        ("1..2", "empty version component"),
        ("1.2.", "empty version component"),
        (".1", "empty version component"),
        ("a!1.0", "epoch"),
        ("!1.0", "epoch"),
        ("1!2!3", "more than one epoch"),
        ("1.0+2+3", "more than one local"),
        ("+1", "no version before"),
        ("1!", "no version"),
        ("1.0+", "empty version component"),
        ("1.2@3", "invalid character"),
        ("1-2_3", "invalid character"),  # '-' is only accepted without '_'
        ("1.0 2", "invalid character"),
        ("1.0ä", "invalid character"),
    ],
)
def test_invalid_versions(text: str, reason: str) -> None:
    with pytest.raises(InvalidCondaVersion) as info:
        V(text)
    assert reason in str(info.value)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, LockenvError) and isinstance(info.value, ValueError)
    assert info.value.exit_code == EXIT_INPUT_ERROR


def test_fields_and_text() -> None:
    version = V("2!1.2rc3+Local_1")
    assert version.text == "2!1.2rc3+Local_1"
    assert str(version) == "2!1.2rc3+Local_1"
    assert version.epoch == 2
    assert version.version == ((1,), (2, "rc", 3))
    assert version.local == ((0, "local"), (1,))
    assert V("1.0dev").version == ((1,), (0, "DEV"))
    assert V("1.0post").version == ((1,), (0, float("inf")))
    assert repr(V("1.0")) == "VersionOrder('1.0')"


def test_parse_is_cached_and_picklable() -> None:
    assert V("3.11.4") is V("3.11.4")
    assert pickle.loads(pickle.dumps(V("1.0rc1"))) == V("1.0rc1")


def test_comparing_with_other_types() -> None:
    assert V("1.0") != "1.0"
    with pytest.raises(TypeError):
        _ = V("1.0") < "1.0"  # type: ignore[operator]


@pytest.mark.parametrize(
    ("version", "prefix", "expected"),
    [
        ("1.2.3", "1.2", True),
        ("1.2", "1.2", True),
        ("1.2.0", "1.2", True),
        ("1.2a1", "1.2", True),
        ("1.20", "1.2", False),
        ("1.3", "1.2", False),
        ("1", "1.0", True),  # missing components are zeros
        ("1.2", "1.2.0", True),
        ("1.2.1", "1.2.0", False),
        ("1.2rc1", "1.2r", True),  # a trailing string is a string prefix
        ("1.2.3", "1", True),
        ("2!1.2", "1.2", False),
        ("1.2+abc", "1.2+ab", True),
        ("1.3+abc", "1.2+ab", False),
        ("1.2.post1", "1.2.post", True),
    ],
)
def test_startswith(version: str, prefix: str, expected: bool) -> None:
    assert V(version).startswith(V(prefix)) is expected


# -- a reference comparison, straight from conda's documented rules ------------------------


def _reference_less(a: VersionOrder, b: VersionOrder) -> bool:
    def parts(v: VersionOrder) -> list[list[Any]]:
        return [[v.epoch], *[list(c) for c in v.version]]

    def local(v: VersionOrder) -> list[list[Any]]:
        return [list(c) for c in v.local]

    for left, right in ((parts(a), parts(b)), (local(a), local(b))):
        empty: list[Any] = []
        for ca, cb in zip_longest(left, right, fillvalue=empty):
            for x, y in zip_longest(ca, cb, fillvalue=0):
                if x == y:
                    continue
                if isinstance(x, str) and not isinstance(y, str):
                    return True
                if isinstance(y, str) and not isinstance(x, str):
                    return False
                return bool(x < y)
    return False


_atoms = st.sampled_from(["0", "0", "1", "2", "10", "a", "b", "dev", "post", "rc", "*"])
_components = st.lists(_atoms, min_size=1, max_size=3).map("".join)
_versions = st.builds(
    lambda epoch, parts, seps, local: (
        (f"{epoch}!" if epoch is not None else "")
        + "".join(p + s for p, s in zip(parts, seps, strict=False))[:-1]
        + (f"+{'.'.join(local)}" if local else "")
    ),
    st.one_of(st.none(), st.integers(0, 2)),
    st.lists(_components, min_size=1, max_size=5),
    st.lists(st.sampled_from([".", "_"]), min_size=5, max_size=5),
    st.lists(_components, max_size=2),
)


@given(_versions, _versions)
@settings(max_examples=400)
def test_key_order_matches_reference(a: str, b: str) -> None:
    va, vb = V(a), V(b)
    assert (va < vb) is _reference_less(va, vb)
    assert (va == vb) is (not _reference_less(va, vb) and not _reference_less(vb, va))


@given(_versions, _versions, _versions)
@settings(max_examples=300)
def test_total_order(a: str, b: str, c: str) -> None:
    va, vb, vc = V(a), V(b), V(c)
    assert sum([va < vb, va == vb, va > vb]) == 1
    if va <= vb and vb <= va:
        assert va == vb and hash(va) == hash(vb)
    if va <= vb and vb <= vc:
        assert va <= vc
    if va == vb:
        assert hash(va) == hash(vb)
        assert (va < vc) == (vb < vc)


# -- version specs -------------------------------------------------------------------------

CONTAINS = [
    ("*", "0.0.1", True),
    ("1.2", "1.2", True),
    ("1.2", "1.2.0", True),
    ("1.2", "1.2.1", False),
    ("==1.2", "1.2.0", True),
    ("==1.2", "1.2.1", False),
    ("!=1.2", "1.2.0", False),
    ("!=1.2", "1.3", True),
    ("<1.2", "1.2a1", True),
    ("<1.2", "1.2", False),
    ("<=1.2", "1.2", True),
    (">1.2", "1.2.0.1", True),
    (">1.2", "1.2", False),
    (">=1.2", "1.2.0", True),
    (">=1.2", "1.1.9", False),
    ("1.2.*", "1.2", True),
    ("1.2.*", "1.2.9", True),
    ("1.2.*", "1.2rc1", True),
    ("1.2.*", "1.20", False),
    ("1.2.*", "1.3", False),
    ("1.2*", "1.2.9", True),
    ("1.2*", "1.20", False),
    ("=1.2", "1.2.7", True),
    ("=1.2", "1.20", False),
    ("=1.2.*", "1.2.7", True),
    ("!=1.2.*", "1.2.7", False),
    ("!=1.2.*", "1.3", True),
    (">=1.2.*", "1.2", True),  # '.*' after >= is ignored, as in conda
    ("==1.2.*", "1.2.7", False),  # ... and after ==: exact 1.2
    ("==1.2.*", "1.2.0", True),
    ("~=1.2.3", "1.2.3", True),
    ("~=1.2.3", "1.2.10", True),
    ("~=1.2.3", "1.2.2", False),
    ("~=1.2.3", "1.3", False),
    ("~=1.2", "1.9", True),
    ("~=1.2", "2.0", False),
    (">=1.8,<2", "1.9", True),
    (">=1.8,<2", "2.0", False),
    (">=1.8,<2|1.7", "1.7", True),
    (">=1.8,<2|1.7", "1.7.1", False),
    (">=1.8,<2|1.7", "1.8.5", True),
    ("1.7|>=1.8,<2", "1.9", True),
    ("(1.7|>=1.8),<2", "2.1", False),
    ("(1.7|>=1.8),<2", "1.7", True),
    ("1.0|1.4*", "1.4.1b2", True),  # conda's documentation
    ("1.0|1.4*", "1.2", False),
    ("1.*.3", "1.2.3", True),
    ("1.*.3", "1.2.4", False),
    ("^1\\.(2|3)\\..*$", "1.3.0", True),
    ("^1\\.(2|3)\\..*$", "1.4.0", False),
    (" >=1.8 , <2 ", "1.9", True),
    ("1!1.0.*", "1!1.0.3", True),
    ("1!1.0.*", "1.0.3", False),
    ("1.0+a.*", "1.0+ab", True),
    (">=2.*.*", "2.0", True),
]


@pytest.mark.parametrize(("spec", "version", "expected"), CONTAINS)
def test_contains(spec: str, version: str, expected: bool) -> None:
    parsed = VersionSpec.parse(spec)
    assert parsed.contains(version) is expected
    assert parsed.contains(V(version)) is expected
    assert parsed.contains(version) is expected  # from the memo this time
    assert VersionSpec.parse(str(parsed)).contains(version) is expected


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("*", "*"),
        ("1.2", "==1.2"),
        ("==1.2", "==1.2"),
        ("=1.2", "1.2.*"),
        ("1.2*", "1.2.*"),
        ("1.2.*", "1.2.*"),
        ("=1.2.*", "1.2.*"),
        (">=1.2.*", ">=1.2"),
        ("!=1.2.*", "!=1.2.*"),
        ("~=1.2", "~=1.2"),
        ("=1*", "=1*"),
        (" >=1.8 , <2 | 1.7 ", ">=1.8,<2|==1.7"),
        ("(>=1.8,<2)|1.7", ">=1.8,<2|==1.7"),
        ("(1.7|>=1.8),<2", "(==1.7|>=1.8),<2"),
        ("((1.5|((1.6|1.7), 1.8), 1.9 |2.0))|2.1", "==1.5|(==1.6|==1.7),==1.8,==1.9|==2.0|==2.1"),
        ("1.*.3", "1.*.3"),
        ("^1\\.2$", "^1\\.2$"),
    ],
)
def test_canonical_text(spec: str, canonical: str) -> None:
    parsed = VersionSpec.parse(spec)
    assert str(parsed) == canonical
    assert VersionSpec.parse(canonical) == parsed
    assert repr(parsed) == f"VersionSpec({canonical!r})"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (">=", "invalid operator"),
        ("=>1.2", "invalid operator"),
        ("<>1.2", "invalid operator"),
        ("<=!1.2", "invalid operator"),
        (">= 1.2", "unexpected space"),
        ("1.2 3", "unexpected space"),
        ("~=1.2.*", "'.*'"),
        ("~=1", "two version components"),
        ("1..2", "empty version component"),
        (">=1.2,", "missing at the end"),
        (",1.2", "missing before ','"),
        ("1.2||1.3", "missing before '|'"),
        ("(1.2", "unbalanced '('"),
        ("1.2)", "unexpected ')'"),
        (")", "unbalanced ')'"),
        ("^1.2", "must end with '$'"),
        ("1.2$", "must start with '^'"),
        ("^1.(2$", "bad regular expression"),
        (".*", "empty version"),
    ],
)
def test_invalid_specs(spec: str, reason: str) -> None:
    with pytest.raises(InvalidVersionSpec) as info:
        VersionSpec.parse(spec)
    assert reason in str(info.value)
    assert repr(spec) in str(info.value)
    assert info.value.exit_code == EXIT_INPUT_ERROR
    assert isinstance(info.value, ValueError)


def test_contains_rejects_invalid_version_text() -> None:
    with pytest.raises(InvalidCondaVersion):
        VersionSpec.parse(">=1").contains("1..0")


def test_spec_equality_cache_and_pickle() -> None:
    assert VersionSpec.parse("=1.2") == VersionSpec.parse("1.2.*")
    assert hash(VersionSpec.parse("=1.2")) == hash(VersionSpec.parse("1.2*"))
    assert VersionSpec.parse(">=1") is VersionSpec.parse(">=1")
    assert VersionSpec.parse("1") != VersionSpec.parse("1.0")  # same meaning, other text
    assert VersionSpec.parse("*").is_any and not VersionSpec.parse(">0").is_any
    spec = VersionSpec.parse(">=1.8,<2|1.7")
    assert pickle.loads(pickle.dumps(spec)) == spec


_plain_versions = st.lists(
    st.sampled_from(["0", "1", "2", "10", "1a", "0rc1", "3post1"]), min_size=1, max_size=3
).map(".".join)
_leaves = st.one_of(
    st.just("*"),
    _plain_versions,
    st.builds(
        "{}{}".format,
        st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "=", "~="]),
        _plain_versions,
    ).filter(lambda s: not (s.startswith("~=") and "." not in s)),
    _plain_versions.map(lambda v: v + ".*"),
    _plain_versions.map(lambda v: "!=" + v + ".*"),
)
_spec_texts = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(",".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map(lambda s: f"({s})"),
    ),
    max_leaves=6,
)


@given(_spec_texts, st.lists(_versions, min_size=1, max_size=5))
@settings(max_examples=300)
def test_spec_text_round_trip(text: str, versions: list[str]) -> None:
    spec = VersionSpec.parse(text)
    again = VersionSpec.parse(str(spec))
    assert again == spec
    assert str(again) == str(spec)
    for version in versions:
        assert again.contains(version) is spec.contains(version)
