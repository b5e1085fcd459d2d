"""Conda MatchSpecs (lockenv.lock.conda.matchspec)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lockenv.errors import EXIT_INPUT_ERROR, LockenvError
from lockenv.lock.conda.matchspec import (
    BuildNumberSpec,
    InvalidMatchSpec,
    MatchSpec,
    manifest_parts,
    name_problem,
    parse_manifest_spec,
)
from lockenv.lock.conda.version import VersionSpec


@dataclass(frozen=True)
class Rec:
    name: str = "numpy"
    version: str = "1.8.1"
    build: str = "py27_0"
    build_number: int = 0
    subdir: str | None = "linux-64"
    channel: str | None = "https://example.invalid/conda-forge"
    md5: str | None = "0" * 32
    sha256: str | None = "a" * 64
    filename: str | None = "numpy-1.8.1-py27_0.conda"
    url: str | None = "https://example.invalid/conda-forge/linux-64/numpy-1.8.1-py27_0.conda"


def _fields(spec: MatchSpec) -> dict[str, object]:
    out: dict[str, object] = {"name": spec.name}
    for key in ("version", "build", "build_number", "channel", "subdir", "md5", "fn", "url"):
        value = getattr(spec, key)
        if value is not None:
            out[key] = str(value)
    return out


PARSE = [
    ("numpy", {"name": "numpy"}),
    ("NumPy", {"name": "numpy"}),
    ("numpy=", {"name": "numpy"}),
    ("numpy *", {"name": "numpy"}),
    ("numpy * *", {"name": "numpy"}),
    ("numpy 1.26", {"name": "numpy", "version": "==1.26"}),
    ("numpy 1.8.1", {"name": "numpy", "version": "==1.8.1"}),
    ("numpy==1.26", {"name": "numpy", "version": "==1.26"}),
    ("numpy ==1.26", {"name": "numpy", "version": "==1.26"}),
    ("numpy=1.26", {"name": "numpy", "version": "1.26.*"}),
    ("numpy =1.26", {"name": "numpy", "version": "1.26.*"}),
    ("numpy = 1.26", {"name": "numpy", "version": "1.26.*"}),
    ("numpy 1.26.*", {"name": "numpy", "version": "1.26.*"}),
    ("numpy 1.8*", {"name": "numpy", "version": "1.8.*"}),
    ("numpy==1.8.*", {"name": "numpy", "version": "1.8.*"}),  # conda drops the '=='
    ("numpy >=1.26", {"name": "numpy", "version": ">=1.26"}),
    ("numpy>=1.26", {"name": "numpy", "version": ">=1.26"}),
    ("numpy >=1.2,<2", {"name": "numpy", "version": ">=1.2,<2"}),
    ("numpy>=1.8,<2|1.7", {"name": "numpy", "version": ">=1.8,<2|==1.7"}),
    ("numpy >= 1.8 , < 2", {"name": "numpy", "version": ">=1.8,<2"}),
    ("numpy !=1.2.*", {"name": "numpy", "version": "!=1.2.*"}),
    ("numpy ~=1.2", {"name": "numpy", "version": "~=1.2"}),
    ("numpy=1.26=py311*", {"name": "numpy", "version": "==1.26", "build": "py311*"}),
    ("numpy=1.8.1=py27_0", {"name": "numpy", "version": "==1.8.1", "build": "py27_0"}),
    ("numpy==1.8.1=py27_0", {"name": "numpy", "version": "==1.8.1", "build": "py27_0"}),
    ("numpy 1.8.1 py27_0", {"name": "numpy", "version": "==1.8.1", "build": "py27_0"}),
    ("numpy =1.8 py27_0", {"name": "numpy", "version": "==1.8", "build": "py27_0"}),
    ("numpy 1.26 py311*", {"name": "numpy", "version": "==1.26", "build": "py311*"}),
    ("numpy >=1.0 , < 2.0 py34_0", {"name": "numpy", "version": ">=1.0,<2.0", "build": "py34_0"}),
    ("numpy * openblas_0", {"name": "numpy", "build": "openblas_0"}),
    ("python 3.11.* *_cpython", {"name": "python", "version": "3.11.*", "build": "*_cpython"}),
    ("__glibc >=2.17", {"name": "__glibc", "version": ">=2.17"}),
    (
        "_libgcc_mutex 0.1 conda_forge",
        {"name": "_libgcc_mutex", "version": "==0.1", "build": "conda_forge"},
    ),
    ("libgcc-ng >=12", {"name": "libgcc-ng", "version": ">=12"}),
    ("openblas 0.2.18|0.2.18.*.", {"name": "openblas", "version": "==0.2.18|0.2.18.*."}),
    ("conda-forge::numpy", {"name": "numpy", "channel": "conda-forge"}),
    (
        "conda-forge/linux-64::numpy >=1",
        {"name": "numpy", "version": ">=1", "channel": "conda-forge", "subdir": "linux-64"},
    ),
    ("conda-forge/label/dev::numpy", {"name": "numpy", "channel": "conda-forge/label/dev"}),
    ("*/linux-64::numpy", {"name": "numpy", "subdir": "linux-64"}),
    ("*::numpy", {"name": "numpy"}),
    (
        "https://example.invalid:8443/ch/::numpy",
        {"name": "numpy", "channel": "https://example.invalid:8443/ch"},
    ),
    (
        "http://[::1]/ch::numpy[version=1]",
        {"name": "numpy", "version": "==1", "channel": "http://[::1]/ch"},
    ),
    (
        "numpy[version='>=1.26', build=py311*, build_number=3]",
        {"name": "numpy", "version": ">=1.26", "build": "py311*", "build_number": "3"},
    ),
    (
        "numpy[version='>=1.26' build=py311*]",
        {"name": "numpy", "version": ">=1.26", "build": "py311*"},
    ),
    ('numpy[version=">=1.8,<2"]', {"name": "numpy", "version": ">=1.8,<2"}),
    ("numpy[version=1.8]", {"name": "numpy", "version": "==1.8"}),
    ("numpy[version='=1.8']", {"name": "numpy", "version": "1.8.*"}),
    ("numpy[version=1.8.*]", {"name": "numpy", "version": "1.8.*"}),
    ("numpy[build_number='>=3']", {"name": "numpy", "build_number": ">=3"}),
    ("numpy[build_number=*]", {"name": "numpy"}),
    ("numpy[build_number=>=3]", {"name": "numpy", "build_number": ">=3"}),
    ("numpy =>1.2", {"name": "numpy", "version": ">1.2*"}),  # conda reads '=>' so, too
    ("http://[::1]/ch::numpy", {"name": "numpy", "channel": "http://[::1]/ch"}),
    ("numpy 1.0[version=2.0]", {"name": "numpy", "version": "==2.0"}),  # brackets win
    (
        "numpy[channel=conda-forge/osx-arm64]",
        {"name": "numpy", "channel": "conda-forge", "subdir": "osx-arm64"},
    ),
    ("numpy[subdir=noarch]", {"name": "numpy", "subdir": "noarch"}),
    ("numpy[md5=" + "A" * 32 + "]", {"name": "numpy", "md5": "a" * 32}),
    ("numpy[fn=numpy-1.0-0.conda]", {"name": "numpy", "fn": "numpy-1.0-0.conda"}),
    ("numpy[build='^py3[0-9]+_0$']", {"name": "numpy", "build": "^py3[0-9]+_0$"}),
    ("numpy >=1.2  # the array library", {"name": "numpy", "version": ">=1.2"}),
]


@pytest.mark.parametrize(("text", "expected"), PARSE)
def test_parse(text: str, expected: dict[str, object]) -> None:
    spec = MatchSpec.parse(text)
    assert _fields(spec) == expected
    assert MatchSpec.parse(str(spec)) == spec


ERRORS = [
    ("", "empty spec"),
    ("   ", "empty spec"),
    ("# just a comment", "empty spec"),
    ("*", "package name is required"),
    ("num*", "package name is required"),
    ("*[md5=" + "0" * 32 + "]", "package name is required"),
    ("=1.2", "no package name"),
    (">=1.2", "no package name"),
    ("conda-forge/numpy", "channel::name"),
    ("numpy >>1.2", "invalid operator"),
    ("numpy ==", "invalid operator"),
    ("numpy >=", "invalid operator"),
    ("numpy >=1.2 <2", "not a build string"),
    ("numpy 1.2 py27_0 extra", "too many space-separated parts"),
    ("numpy 1..2", "empty version component"),
    ("numpy[version=1.2", "unbalanced"),
    ("numpy]", "unbalanced"),
    ("numpy[version=1.2]x", "unbalanced"),
    ("numpy[version=1.2][build=0]", "only one"),
    ("numpy[foo=1]", "unknown key 'foo'"),
    ("numpy[name=scipy]", "unknown key 'name'"),
    ("numpy[track_features=mkl]", "unknown key"),
    ("numpy[version]", "key=value"),
    ("numpy[version=]", "no value for 'version'"),
    ("numpy[version='1.2]", "unterminated quote"),
    ("numpy[version=1, version=2]", "given twice"),
    ("numpy[build_number=abc]", "bad build_number"),
    ("numpy[md5=xyz]", "md5 must be 32 hexadecimal digits"),
    ("numpy[sha256=" + "0" * 63 + "]", "sha256 must be 64"),
    ("numpy[build='^py($']", "bad regular expression"),
    ("::numpy", "invalid channel"),
    ("conda-forge::", "no package name"),
    ("conda-forge::*", "package name is required"),
    ("./numpy-1.0-0.tar.bz2", "package files"),
    ("numpy[version='^1.2']", "regular expression must end"),
]


@pytest.mark.parametrize(("text", "reason"), ERRORS)
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidMatchSpec) as info:
        MatchSpec.parse(text)
    message = str(info.value)
    assert reason in message
    assert message.startswith(f"invalid MatchSpec {text!r}: ")
    assert isinstance(info.value, LockenvError) and isinstance(info.value, ValueError)
    assert info.value.exit_code == EXIT_INPUT_ERROR


MATCHES = [
    ("numpy", Rec(), True),
    ("NUMPY", Rec(), True),
    ("scipy", Rec(), False),
    ("numpy 1.8.1", Rec(), True),
    ("numpy 1.8.1", Rec(version="1.8.1.0"), True),
    ("numpy 1.8.1", Rec(version="1.8.10"), False),
    ("numpy 1.8", Rec(version="1.8.1"), False),  # a bare version is exact, as in conda
    ("numpy=1.8", Rec(version="1.8.1"), True),
    ("numpy=1.8", Rec(version="1.80"), False),
    ("numpy 1.8*", Rec(version="1.8.1"), True),
    ("numpy==1.8.*", Rec(version="1.8.1"), True),
    ("numpy>=1.8,<2", Rec(version="1.9"), True),
    ("numpy>=1.8,<2", Rec(version="2.0"), False),
    ("numpy>=1.8", Rec(version="not..valid"), False),
    ("numpy 1.8.1 py27_0", Rec(), True),
    ("numpy 1.8.1 py27_1", Rec(), False),
    ("numpy * py27*", Rec(), True),
    ("numpy * py3*", Rec(), False),
    ("numpy * *_0", Rec(), True),
    ("numpy[build='^py2[0-9]_0$']", Rec(), True),
    ("numpy[build='^py3[0-9]_0$']", Rec(), False),
    ("numpy[build_number=0]", Rec(), True),
    ("numpy[build_number='>=1']", Rec(), False),
    ("numpy[build_number='>=1']", Rec(build_number=3), True),
    ("numpy[build_number='!=3']", Rec(build_number=3), False),
    ("conda-forge::numpy", Rec(), True),
    ("conda-forge::numpy", Rec(channel="conda-forge"), True),
    ("conda-forge::numpy", Rec(channel="https://example.invalid/bioconda"), False),
    ("forge::numpy", Rec(), False),  # the name must be a whole path segment
    ("https://example.invalid/conda-forge::numpy", Rec(), True),
    ("https://example.invalid/conda-forge/::numpy", Rec(), True),
    ("https://example.invalid/other::numpy", Rec(), False),
    ("conda-forge::numpy", Rec(channel=None), False),
    ("conda-forge/linux-64::numpy", Rec(), True),
    ("conda-forge/noarch::numpy", Rec(), False),
    ("numpy[subdir=linux-64]", Rec(), True),
    ("numpy[subdir=linux-64]", Rec(subdir=None), False),
    ("numpy[md5=" + "0" * 32 + "]", Rec(), True),
    ("numpy[md5=" + "1" * 32 + "]", Rec(), False),
    ("numpy[sha256=" + "A" * 64 + "]", Rec(), True),
    ("numpy[sha256=" + "a" * 64 + "]", Rec(sha256=None), False),
    ("numpy[fn=numpy-1.8.1-py27_0.conda]", Rec(), True),
    ("numpy[fn=numpy-1.8.1-py27_1.conda]", Rec(), False),
    (f"numpy[url='{Rec().url}']", Rec(), True),
    ("__glibc >=2.17", Rec(name="__glibc", version="2.28", build="0"), True),
    ("__glibc >=2.17", Rec(name="__glibc", version="2.12", build="0"), False),
    ("python 3.11.* *_cpython", Rec(name="python", version="3.11.4", build="h1_0_cpython"), True),
    ("python 3.11.* *_cpython", Rec(name="python", version="3.11.4", build="h1_0_pypy"), False),
]


@pytest.mark.parametrize(("text", "record", "expected"), MATCHES)
def test_matches(text: str, record: Rec, expected: bool) -> None:
    spec = MatchSpec.parse(text)
    assert spec.matches(record) is expected
    assert MatchSpec.parse(str(spec)).matches(record) is expected
    if spec.version_only and record.name == spec.name:
        # The solver matches such specs by the distinct versions of a name.
        assert spec.matches_version(record.version) is expected


def test_matches_minimal_record() -> None:
    @dataclass(frozen=True)
    class Bare:
        name: str
        version: str
        build: str
        build_number: int

    bare = Bare("numpy", "1.0", "0", 0)
    assert MatchSpec.parse("numpy >=1").matches(bare)
    assert not MatchSpec.parse("conda-forge::numpy").matches(bare)
    assert not MatchSpec.parse("numpy[md5=" + "0" * 32 + "]").matches(bare)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("numpy", "numpy"),
        ("numpy 1.26", "numpy ==1.26"),
        ("numpy=1.26", "numpy 1.26.*"),
        ("numpy>=1.8,<2|1.7", "numpy >=1.8,<2|==1.7"),
        ("numpy=1.8.1=py27_0", "numpy ==1.8.1 py27_0"),
        ("numpy * py27*", "numpy * py27*"),
        ("conda-forge/linux-64::numpy >=1", "conda-forge/linux-64::numpy >=1"),
        ("*/linux-64::numpy", "numpy[subdir=linux-64]"),
        (
            "numpy[version='>=1.26', build=py311*, build_number=3]",
            "numpy >=1.26 py311*[build_number=3]",
        ),
        ("numpy[build_number='>=3']", "numpy[build_number='>=3']"),
        ("numpy[version='^1\\.2 $']", "numpy[version='^1\\.2 $']"),
        ("numpy[build='^py3[0-9]$']", "numpy[build='^py3[0-9]$']"),
        ("numpy[version='=1*']", "numpy 1.*"),
        ("numpy[version='(=1*)']", "numpy (=1*)"),
        ("numpy[version='(=1*)', build=py*]", "numpy (=1*) py*"),
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    spec = MatchSpec.parse(text)
    assert str(spec) == canonical
    assert MatchSpec.parse(canonical) == spec
    assert repr(spec) == f"MatchSpec({canonical!r})"


def test_parse_is_cached_hashable_and_picklable() -> None:
    spec = MatchSpec.parse("conda-forge::numpy >=1.26 py311*[build_number=3]")
    assert MatchSpec.parse("conda-forge::numpy >=1.26 py311*[build_number=3]") is spec
    assert hash(spec) == hash(MatchSpec.parse(str(spec)))
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert len({spec, MatchSpec.parse(str(spec))}) == 1


def test_direct_construction() -> None:
    spec = MatchSpec(name="numpy", version=VersionSpec.parse(">=1"), build="py*")
    assert spec == MatchSpec.parse("numpy >=1 py*")
    assert spec.matches(Rec())
    with pytest.raises(InvalidMatchSpec):
        MatchSpec(name="NumPy")


@pytest.mark.parametrize(
    ("text", "number", "expected"),
    [("3", 3, True), ("3", 4, False), ("=3", 3, True), (">=3", 2, False), ("<3", 2, True)],
)
def test_build_number_spec(text: str, number: int, expected: bool) -> None:
    spec = BuildNumberSpec.parse(text)
    assert spec.contains(number) is expected
    assert BuildNumberSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("python", "3.12.*", "python 3.12.*"),
        ("python", "3.12", "python ==3.12"),  # a bare version is exact, as in conda
        ("numpy", "conda-forge::numpy", "conda-forge::numpy"),
        ("numpy", "conda-forge::>=1.26", "conda-forge::numpy >=1.26"),
        ("numpy", "conda-forge/linux-64::", "conda-forge/linux-64::numpy"),
        ("numpy", "numpy >=1.26", "numpy >=1.26"),
        ("numpy", "[version='>=1.20', build=py*]", "numpy >=1.20 py*"),
        ("numpy", "[channel=conda-forge, subdir=linux-64]", "conda-forge/linux-64::numpy"),
        ("numpy", ">=1.26", "numpy >=1.26"),
        ("numpy", ">=1.26,<2", "numpy >=1.26,<2"),
        ("foo", "1.2 py*", "foo ==1.2 py*"),
        ("foo", "1.2=py*", "foo ==1.2 py*"),
        ("foo", "=1.2", "foo 1.2.*"),
        ("foo", "*", "foo"),
        ("foo", "* py*", "foo * py*"),
        ("Foo", "[build_number=3]", "foo[build_number=3]"),
        # A word then "!" is a version with an epoch, not another package's name.
        ("numpy", "post.!.*.*", "numpy post.!.*.*"),
        ("numpy", "numpy!=1.0", "numpy !=1.0"),
    ],
)
def test_parse_manifest_spec(name: str, spec: str, expected: str) -> None:
    assert str(parse_manifest_spec(name, spec)) == expected


def test_parse_manifest_spec_channel() -> None:
    spec = parse_manifest_spec("numpy", ">=1", channel="conda-forge/linux-64")
    assert (spec.channel, spec.subdir) == ("conda-forge", "linux-64")
    assert str(spec) == "conda-forge/linux-64::numpy >=1"


@pytest.mark.parametrize(
    ("name", "spec", "reason"),
    [
        ("numpy", "", "empty version"),
        ("numpy", "  ", "empty version"),
        ("numpy", "scipy>=1", "names the package 'scipy'"),
        ("numpy", "conda-forge::scipy", "names the package 'scipy'"),
        ("numpy", "a b::numpy", "invalid channel"),
        ("numpy", ">=1 <2", "not a build string"),
        ("num py", ">=1", "invalid package name"),
        ("numpy", ">>1", "invalid operator"),
    ],
)
def test_parse_manifest_spec_errors(name: str, spec: str, reason: str) -> None:
    with pytest.raises(InvalidMatchSpec) as info:
        parse_manifest_spec(name, spec)
    assert reason in str(info.value)
    assert str(info.value).startswith(f"invalid conda spec for {name!r} {spec!r}: ")


_versions = st.lists(
    st.sampled_from(["0", "1", "2", "10", "1a", "0rc1"]), min_size=1, max_size=3
).map(".".join)
_version_specs = st.one_of(
    _versions,
    _versions.map(lambda v: "=" + v),
    _versions.map(lambda v: "==" + v),
    _versions.map(lambda v: v + ".*"),
    st.builds("{}{}".format, st.sampled_from([">=", "<", "!=", ">", "<="]), _versions),
    st.builds(">={},<{}|{}".format, _versions, _versions, _versions),
    st.builds("(=1*)|{}".format, _versions),
)
_builds = st.sampled_from(["py27_0", "py3*", "*_cpython", "0", "h1234_1", "^py3[0-9]$"])
_channels = st.sampled_from(
    ["conda-forge", "conda-forge/linux-64", "https://example.invalid/ch", "*/noarch"]
)


@given(
    name=st.sampled_from(["numpy", "__glibc", "libgcc-ng", "python"]),
    version=st.one_of(st.none(), _version_specs),
    build=st.one_of(st.none(), _builds),
    build_number=st.one_of(st.none(), st.sampled_from(["3", ">=2", "!=0"])),
    channel=st.one_of(st.none(), _channels),
    md5=st.one_of(st.none(), st.just("ab" * 16)),
)
@settings(max_examples=400)
def test_round_trip(
    name: str,
    version: str | None,
    build: str | None,
    build_number: str | None,
    channel: str | None,
    md5: str | None,
) -> None:
    brackets = []
    if version is not None:
        brackets.append(f"version='{version}'")
    if build is not None:
        brackets.append(f"build='{build}'")
    if build_number is not None:
        brackets.append(f"build_number='{build_number}'")
    if md5 is not None:
        brackets.append(f"md5={md5}")
    text = f"{channel}::{name}" if channel else name
    if brackets:
        text += "[" + ", ".join(brackets) + "]"
    spec = MatchSpec.parse(text)
    again = MatchSpec.parse(str(spec))
    assert again == spec
    assert str(again) == str(spec)


# -- round trips over everything the parser accepts -----------------------------------------

_any_version = st.lists(
    st.sampled_from(["0", "1", "2", "10", "1a", "rc1", "post", "dev", "*", "_", "+local", "!"]),
    min_size=1,
    max_size=4,
).map(".".join)
_any_leaf = st.builds(
    "{}{}{}".format,
    st.sampled_from(["", "=", "==", ">=", "<", "<=", ">", "!=", "~="]),
    _any_version,
    st.sampled_from(["", ".*", "*", ".*.*"]),
)
_any_version_spec = st.recursive(
    _any_leaf,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(",".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map("({})".format),
    ),
    max_leaves=5,
)
_any_build = st.sampled_from(["py_0", "py*", "*", "*_cpython", "^py3.*$", "0", "h1_2", "x.conda"])
_bracket_values = st.one_of(
    _any_version_spec,
    _any_build,
    st.sampled_from(["3", ">=2", "linux-64", "py_0", "conda-forge", "ab" * 16, "x.conda"]),
)


@given(
    channel=st.sampled_from(
        [
            "",
            "conda-forge::",
            "conda-forge/noarch::",
            "*::",
            "https://h:8/c::",
            "pytorch/label/dev::",
        ]
    ),
    name=st.sampled_from(["numpy", "__glibc", "_r-mutex", "libgcc-ng", "py.test"]),
    version=st.one_of(st.none(), st.tuples(st.sampled_from([" ", "", "="]), _any_version_spec)),
    build=st.one_of(st.none(), st.tuples(st.sampled_from([" ", "="]), _any_build)),
    brackets=st.lists(
        st.tuples(
            st.sampled_from(
                ["version", "build", "build_number", "channel", "subdir", "md5", "fn", "url"]
            ),
            _bracket_values,
        ),
        max_size=3,
        unique_by=lambda item: item[0],
    ),
    quote=st.sampled_from(["", "'", '"']),
)
@example(  # a version that starts like a name: 'post.' then an epoch mark, not '!='
    channel="", name="numpy", version=(" ", "post.!.*.*"), build=None, brackets=[], quote=""
)
@settings(max_examples=600, deadline=None)
def test_every_accepted_spec_round_trips(
    channel: str,
    name: str,
    version: tuple[str, str] | None,
    build: tuple[str, str] | None,
    brackets: list[tuple[str, str]],
    quote: str,
) -> None:
    """parse -> str -> parse gives an equal spec and the same text, whatever was accepted."""
    text = channel + name + "".join(version or ()) + "".join(build or ())
    if brackets:
        text += "[" + ",".join(f"{key}={quote}{value}{quote}" for key, value in brackets) + "]"
    spec = _round_trips(text)
    if spec is not None:
        # The manifest's form (text after the name, channel apart) reads back equal too.
        rest, where = manifest_parts(spec)
        assert parse_manifest_spec(spec.name, rest, channel=where) == spec


def _round_trips(text: str) -> MatchSpec | None:
    """Check parse -> str -> parse on ``text``; None when the parser refuses it."""
    try:
        spec = MatchSpec.parse(text)
    except InvalidMatchSpec:
        return None
    again = MatchSpec.parse(str(spec))
    assert again == spec, (text, str(spec), str(again))
    assert str(again) == str(spec)
    return spec


_SPEC_TOKENS = [
    "numpy",
    "conda-forge::",
    "conda-forge/linux-64::",
    "*::",
    " ",
    "=",
    "==",
    ">=",
    "<",
    "!=",
    "~=",
    "1",
    "2",
    ".",
    "*",
    ".*",
    ",",
    "|",
    "(",
    ")",
    "py",
    "_0",
    "[",
    "]",
    "version=",
    "build=",
    "build_number=",
    "channel=",
    "subdir=",
    "'",
    '"',
    "a",
    "rc",
    "+",
    "!",
    "$",
    "^",
    "-",
]
_spec_tokens = st.sampled_from(_SPEC_TOKENS)


@given(st.lists(_spec_tokens, min_size=1, max_size=12).map("".join))
@settings(max_examples=800, deadline=None)
def test_any_text_the_parser_accepts_round_trips(text: str) -> None:
    _round_trips(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("numpy>=2.*.*", "numpy >=2.*.*"),  # was written back as '>=2.*', read as '>=2'
        ("numpy[version='>=2.*.*']", "numpy >=2.*.*"),
        ("numpy =1.*.*", "numpy 1.*.*"),
        ("numpy[version=x.conda]", "numpy (==x.conda)"),  # never ends like a package file
        ("numpy[channel=conda-forge,subdir=py_0]", "conda-forge::numpy[subdir=py_0]"),
    ],
)
def test_awkward_specs_are_written_so_they_read_back(text: str, expected: str) -> None:
    spec = MatchSpec.parse(text)
    assert str(spec) == expected
    assert MatchSpec.parse(expected) == spec


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("numpy", True),
        ("libgcc-ng", True),
        ("_libgcc_mutex", True),
        ("_r-mutex", True),
        ("__glibc", True),  # virtual packages start with two underscores
        ("py.test", True),
        ("python_abi", True),
        ("pkg..name", False),  # CEP 26: never two separators in a row
        ("pkg--name", False),
        ("pkg_-name", False),
        ("___x", False),
        ("-pkg", False),
        ("p" * 128, True),
        ("p" * 129, False),  # longer than 128 characters
    ],
)
def test_package_names_follow_cep_26(name: str, ok: bool) -> None:
    assert (name_problem(name) is None) is ok
    if ok:
        assert MatchSpec.parse(name).name == name
    else:
        with pytest.raises(InvalidMatchSpec, match="invalid package name"):
            MatchSpec.parse(name)


@pytest.mark.parametrize(
    "text",
    ["a b::numpy", "conda'forge::numpy", "x::y::numpy", "numpy[channel='a b']"],
)
def test_bad_channels_are_refused(text: str) -> None:
    with pytest.raises(InvalidMatchSpec, match="invalid channel"):
        MatchSpec.parse(text)
