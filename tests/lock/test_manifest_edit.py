"""Tests for lockenv.lock.manifest_edit: edits keep every byte they do not need to change."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lockenv.errors import ManifestError
from lockenv.lock.manifest import conda_dependency, parse_manifest
from lockenv.lock.manifest_edit import (
    add_conda_dependencies,
    add_pypi_dependencies,
    init_manifest_text,
    remove_dependencies,
)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "manifest.schema.json").read_text("utf-8")
)
# Built once: jsonschema.validate checks the schema itself on every call (~0.1 s each).
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)

# Comments everywhere, odd spacing, an indented entry, a comment closing a table, tables
# out of their usual order, no blank line before [environments].
MANIFEST = """\
# climate analysis, see README
[project]
name   =  "demo"      # the project
platforms = [ "linux-64",   "osx-arm64" ]
channels = ['conda-forge']

[pypi-dependencies]   # from PyPI
Requests = ">=2.31"    # http
  rich="*"

# ---- conda below ----
[dependencies]
python = "3.12.*"

[feature.test.dependencies]
pytest = "*"
[environments]
test = ["test"]   # ci
"""

PYPROJECT = """\
[project]
name = "demo"
requires-python = ">=3.11"

[tool.lockenv.project]
platforms = ["linux-64"]   # only linux

[tool.lockenv.dependencies]
python = "3.12.*"

[tool.ruff]
line-length = 100
"""


def _parse(text: str, pyproject: bool = False) -> None:
    parse_manifest(text, path=Path("pyproject.toml" if pyproject else "lockenv.toml"))


def _pypi(text: str, feature: str | None = None, pyproject: bool = False) -> dict[str, str]:
    manifest = parse_manifest(text, path=Path("pyproject.toml" if pyproject else "lockenv.toml"))
    found = manifest.default_feature if feature is None else manifest.features[feature]
    return {d.name: str(d.requirement) for d in found.pypi_dependencies}


# --------------------------------------------------------------------------- add


def test_add_to_an_existing_table_inserts_one_line_after_its_last_entry() -> None:
    new = add_pypi_dependencies(
        MANIFEST, [Requirement("httpx>=0.27")], feature=None, in_pyproject=False
    )
    assert new == MANIFEST.replace('  rich="*"\n', '  rich="*"\n  httpx = ">=0.27"\n')
    _parse(new)


def test_add_existing_name_replaces_the_value_in_place() -> None:
    new = add_pypi_dependencies(
        MANIFEST, [Requirement("requests[socks]<3")], feature=None, in_pyproject=False
    )
    assert new == MANIFEST.replace(
        'Requests = ">=2.31"    # http',
        'Requests = { version = "<3", extras = ["socks"] }    # http',
    )
    assert _pypi(new)["requests"] == "requests[socks]<3"


@pytest.mark.parametrize(
    ("requirement", "line"),
    [
        ("httpx", 'httpx = "*"'),
        ("httpx>=0.27", 'httpx = ">=0.27"'),
        ("httpx==1.0", 'httpx = "==1.0"'),
        ("httpx>=0.27,<1", 'httpx = "<1,>=0.27"'),
        ("httpx[http2,brotli]", 'httpx = { extras = ["brotli", "http2"] }'),
        (
            "httpx>=1; python_version < '3.12'",
            """httpx = { version = ">=1", markers = 'python_version < "3.12"' }""",
        ),
        (
            'httpx[cli]>=1; platform_version == "it\'s"',
            'httpx = { version = ">=1", extras = ["cli"], markers = '
            '"platform_version == \\"it\'s\\"" }',
        ),
    ],
)
def test_add_value_forms(requirement: str, line: str) -> None:
    new = add_pypi_dependencies(
        MANIFEST, [Requirement(requirement)], feature=None, in_pyproject=False
    )
    assert new == MANIFEST.replace('  rich="*"\n', f'  rich="*"\n  {line}\n')
    expected = Requirement(requirement)
    expected.name = canonicalize_name(expected.name)
    assert _pypi(new)["httpx"] == str(expected)


def test_add_creates_a_feature_table_after_that_features_tables() -> None:
    new = add_pypi_dependencies(
        MANIFEST, [Requirement("pytest-cov")], feature="test", in_pyproject=False
    )
    assert new == MANIFEST.replace(
        '[feature.test.dependencies]\npytest = "*"\n',
        # No blank line before the new table: the user put none between these tables, and
        # removing the table later must give back the original bytes.
        '[feature.test.dependencies]\npytest = "*"\n'
        '[feature.test.pypi-dependencies]\npytest-cov = "*"\n\n',
    )
    assert _pypi(new, "test") == {"pytest-cov": "pytest-cov"}


def test_add_creates_a_new_feature() -> None:
    new = add_conda_dependencies(
        MANIFEST, [("CUDA-Toolkit", "12.*")], feature="gpu", in_pyproject=False
    )
    assert new.startswith(MANIFEST.split("[environments]")[0])
    assert '[feature.gpu.dependencies]\ncuda-toolkit = "12.*"\n' in new
    assert new.endswith('[environments]\ntest = ["test"]   # ci\n')
    _parse(new)


def test_add_creates_the_default_table_at_the_end() -> None:
    text = '[project]\nplatforms = ["linux-64"]\n'
    new = add_conda_dependencies(text, [("numpy", ">=1.26")], feature=None, in_pyproject=False)
    assert new == text + '\n[dependencies]\nnumpy = ">=1.26"\n'


def test_add_to_a_file_without_final_newline() -> None:
    text = '[project]\nplatforms = ["linux-64"]\n[pypi-dependencies]\nrich = "*"'
    new = add_pypi_dependencies(text, [Requirement("httpx")], feature=None, in_pyproject=False)
    assert new == text + '\nhttpx = "*"\n'
    new = add_conda_dependencies(text, [("numpy", "*")], feature=None, in_pyproject=False)
    assert new == text + '\n\n[dependencies]\nnumpy = "*"\n'


def test_add_to_an_empty_table_keeps_comment_lines_under_the_header_on_top() -> None:
    text = '[pypi-dependencies]\n# rich = "*"\n\n[project]\nplatforms = ["linux-64"]\n'
    new = add_pypi_dependencies(text, [Requirement("httpx")], feature=None, in_pyproject=False)
    assert new == text.replace('# rich = "*"\n', '# rich = "*"\nhttpx = "*"\n')


def test_add_to_an_inline_table() -> None:
    text = 'pypi-dependencies = { rich = "*" }\n\n[project]\nplatforms = ["linux-64"]\n'
    new = add_pypi_dependencies(text, [Requirement("httpx>1")], feature=None, in_pyproject=False)
    assert _pypi(new) == {"httpx": "httpx>1", "rich": "rich"}
    assert new.endswith('\n\n[project]\nplatforms = ["linux-64"]\n')


def test_add_in_pyproject_goes_after_the_last_lockenv_table() -> None:
    new = add_pypi_dependencies(
        PYPROJECT, [Requirement("requests>=2")], feature=None, in_pyproject=True
    )
    assert new == PYPROJECT.replace(
        "[tool.ruff]",
        '[tool.lockenv.pypi-dependencies]\nrequests = ">=2"\n\n[tool.ruff]',
    )
    assert _pypi(new, pyproject=True) == {"requests": "requests>=2"}
    new = add_conda_dependencies(PYPROJECT, [("numpy", "*")], feature=None, in_pyproject=True)
    assert new == PYPROJECT.replace('python = "3.12.*"\n', 'python = "3.12.*"\nnumpy = "*"\n')


def test_add_direct_references_as_sources(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    new = add_pypi_dependencies(
        MANIFEST,
        [
            Requirement("x @ https://example.invalid/x-1.0-py3-none-any.whl"),
            Requirement("g[extra] @ git+https://example.invalid/g.git@v2#subdirectory=py"),
            Requirement(f"lib @ {(tmp_path / 'lib').as_uri()}"),
        ],
        feature=None,
        in_pyproject=False,
        root=tmp_path,
        editable=True,
    )
    assert 'x = { url = "https://example.invalid/x-1.0-py3-none-any.whl" }' in new
    assert (
        'g = { git = "https://example.invalid/g.git", rev = "v2", subdirectory = "py", '
        'extras = ["extra"] }'
    ) in new
    assert 'lib = { path = "lib", editable = true }' in new


def test_add_rejects_what_the_manifest_cannot_hold() -> None:
    with pytest.raises(ManifestError, match="is not a source lockenv can lock"):
        add_pypi_dependencies(
            MANIFEST,
            [Requirement("x @ https://example.invalid/a-page")],
            feature=None,
            in_pyproject=False,
        )
    with pytest.raises(ManifestError) as info:
        add_conda_dependencies(
            MANIFEST, [("num py", "*"), ("scipy", "1;2")], feature=None, in_pyproject=False
        )
    assert info.value.problems == [
        "dependencies.num py: invalid conda package name 'num py': use letters, digits and "
        "single '.', '-' or '_' between them (e.g. 'libgcc-ng')",
        "dependencies.scipy: invalid conda spec '1;2': bad version '1;2': invalid character(s) "
        "';' in '1;2' (e.g. '>=1.26', '3.12.*', '1.2 py*', 'conda-forge::>=1.26' or "
        "'[build_number=0]')",
    ]
    with pytest.raises(ManifestError, match="invalid TOML"):
        add_conda_dependencies("[x\n", [("numpy", "*")], feature=None, in_pyproject=False)
    with pytest.raises(ManifestError, match="expected a table"):
        add_conda_dependencies(
            "dependencies = 1\n", [("numpy", "*")], feature=None, in_pyproject=False
        )


# --------------------------------------------------------------------------- remove


def test_remove_returns_the_removed_keys_as_written() -> None:
    new, removed = remove_dependencies(
        MANIFEST, ["requests", "python"], feature=None, in_pyproject=False
    )
    assert removed == ["Requests", "python"]
    # The emptied [dependencies] stays: default tables are kept (init writes them empty).
    assert new == MANIFEST.replace('Requests = ">=2.31"    # http\n', "").replace(
        'python = "3.12.*"\n', ""
    )


def test_remove_keeps_a_feature_that_an_environment_names() -> None:
    new, _ = remove_dependencies(MANIFEST, ["pytest"], feature="test", in_pyproject=False)
    assert new == MANIFEST.replace('pytest = "*"\n', "")
    assert parse_manifest(new, path=Path("lockenv.toml")).environment("test").dependencies == (
        parse_manifest(MANIFEST, path=Path("lockenv.toml")).environment("default").dependencies
    )


def test_add_then_remove_keeps_the_created_default_table() -> None:
    text = '[project]\nplatforms = ["linux-64"]\n'
    added = add_pypi_dependencies(text, [Requirement("x")], feature=None, in_pyproject=False)
    restored, _ = remove_dependencies(added, ["x"], feature=None, in_pyproject=False)
    assert restored == text + "\n[pypi-dependencies]\n"


def test_remove_keeps_a_table_that_still_holds_comments() -> None:
    text = '[project]\nplatforms = ["linux-64"]\n\n[dependencies]\n# pinned by hand\nnumpy = "*"\n'
    new, _ = remove_dependencies(text, ["numpy"], feature=None, in_pyproject=False)
    assert new == text.replace('numpy = "*"\n', "")


def test_remove_absent_names_fails_and_changes_nothing() -> None:
    with pytest.raises(ManifestError) as info:
        remove_dependencies(MANIFEST, ["rich", "nope", "numpy"], feature=None, in_pyproject=False)
    assert info.value.problems == [
        "'nope' is not in [dependencies] or [pypi-dependencies]; nothing was removed",
        "'numpy' is not in [dependencies] or [pypi-dependencies]; nothing was removed",
    ]
    with pytest.raises(ManifestError, match=r"'python' is not in \[pypi-dependencies\]"):
        remove_dependencies(MANIFEST, ["python"], feature=None, in_pyproject=False, kind="pypi")
    with pytest.raises(ManifestError, match=r"\[feature.nope.dependencies\]"):
        remove_dependencies(MANIFEST, ["pytest"], feature="nope", in_pyproject=False)


def test_remove_kind_any_removes_a_name_from_both_tables() -> None:
    text = MANIFEST.replace('python = "3.12.*"\n', 'python = "3.12.*"\nrich = "*"\n')
    new, removed = remove_dependencies(text, ["rich"], feature=None, in_pyproject=False)
    assert removed == ["rich"]
    assert new == MANIFEST.replace('  rich="*"\n', "")


# --------------------------------------------------------------------------- round trips

CASES = [
    pytest.param(MANIFEST, False, None, id="default"),
    pytest.param(MANIFEST, False, "test", id="existing-feature"),
    pytest.param(MANIFEST, False, "gpu", id="new-feature"),
    pytest.param('[project]\nplatforms = ["linux-64"]\n', False, "new", id="no-tables"),
    pytest.param(PYPROJECT, True, "dev", id="pyproject-feature"),
]


@pytest.mark.parametrize(("text", "in_pyproject", "feature"), CASES)
def test_add_then_remove_gives_back_the_original_bytes(
    text: str, in_pyproject: bool, feature: str | None
) -> None:
    added = add_pypi_dependencies(
        text,
        [Requirement("zzz-new[extra]>=1; os_name == 'posix'"), Requirement("aaa-new")],
        feature=feature,
        in_pyproject=in_pyproject,
    )
    added = add_conda_dependencies(
        added, [("zlib-new", "1.2 h*")], feature=feature, in_pyproject=in_pyproject
    )
    _parse(added, in_pyproject)
    restored, removed = remove_dependencies(
        added,
        ["zzz-new", "aaa_new", "zlib-new"],
        feature=feature,
        in_pyproject=in_pyproject,
    )
    assert removed == ["zzz-new", "aaa-new", "zlib-new"]
    assert restored == text


# --------------------------------------------------------------------------- init


def test_init_manifest_text() -> None:
    text = init_manifest_text(
        name="demo",
        platforms=["linux-64", "osx-arm64"],
        channels=["conda-forge"],
        requires_python=">=3.11",
        indexes=["http://127.0.0.1:8080/simple"],
    )
    assert text == (
        "[project]\n"
        'name = "demo"\n'
        'platforms = ["linux-64", "osx-arm64"]\n'
        'channels = ["conda-forge"]\n'
        'indexes = ["http://127.0.0.1:8080/simple"]\n'
        'requires-python = ">=3.11"\n'
        "\n[dependencies]\n\n[pypi-dependencies]\n"
    )
    VALIDATOR.validate(tomllib.loads(text))
    minimal = init_manifest_text(
        name='we"ird', platforms=["win-64"], channels=[], requires_python=None
    )
    assert parse_manifest(minimal, path=Path("lockenv.toml")).name == 'we"ird'
    with pytest.raises(ManifestError, match="unknown platform 'win32'"):
        init_manifest_text(name="x", platforms=["win32"], channels=[], requires_python=None)


# --------------------------------------------------------------------------- properties

_names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,6}([-_.][A-Za-z0-9]{1,3})?", fullmatch=True)
_specifiers = st.sampled_from(["", ">=1.0", "==2.31.0", "<3,>=1", "~=1.4", "!=1.5.*", "===weird"])
_extras = st.lists(st.sampled_from(["cli", "http2", "Socks", "a.b"]), max_size=3, unique=True)
_markers = st.sampled_from(
    [None, "python_version < '3.12'", 'sys_platform == "linux"', "os_name=='nt' or extra=='x'"]
)


@st.composite
def _requirements(draw: st.DrawFn) -> Requirement:
    text = draw(_names)
    extras = draw(_extras)
    if extras:
        text += "[" + ",".join(extras) + "]"
    text += draw(_specifiers)
    marker = draw(_markers)
    if marker:
        text += f"; {marker}"
    return Requirement(text)


@settings(max_examples=60, deadline=None)
@given(
    requirements=st.lists(_requirements(), min_size=1, max_size=6),
    feature=st.sampled_from([None, "test", "new"]),
    base=st.sampled_from([MANIFEST, '[project]\nplatforms = ["linux-64"]\n']),
)
def test_added_requirements_parse_back_unchanged(
    requirements: list[Requirement], feature: str | None, base: str
) -> None:
    text = add_pypi_dependencies(base, requirements, feature=feature, in_pyproject=False)
    expected = {}
    for requirement in requirements:
        canonical = Requirement(str(requirement))
        canonical.name = canonicalize_name(canonical.name)
        canonical.extras = {canonicalize_name(e) for e in canonical.extras}
        expected[canonical.name] = str(canonical)
    found = _pypi(text, feature)
    assert {name: found[name] for name in expected} == expected
    VALIDATOR.validate(tomllib.loads(text))

    restored, _ = remove_dependencies(
        text, list(expected), feature=feature, in_pyproject=False, kind="pypi"
    )
    # Entries that were there before get a new value and are then removed: not undoable.
    existing = {"requests", "rich"} if base == MANIFEST and feature is None else set()
    if base != MANIFEST and feature is None:
        assert restored == base + "\n[pypi-dependencies]\n"  # default tables are kept
    elif not existing & set(expected):
        assert restored == base


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9]{0,6}([_-][a-z0-9]{1,3})?", fullmatch=True),
            st.sampled_from(["*", "3.12.*", ">=1.26", "1.2 py*", ">=1,<2|3.*", "1.0 h1234_0"]),
        ),
        min_size=1,
        max_size=5,
    ),
    feature=st.sampled_from([None, "test", "new"]),
)
def test_added_conda_specs_parse_back_unchanged(
    specs: list[tuple[str, str]], feature: str | None
) -> None:
    text = add_conda_dependencies(MANIFEST, specs, feature=feature, in_pyproject=False)
    manifest = parse_manifest(text, path=Path("lockenv.toml"))
    found = manifest.default_feature if feature is None else manifest.features[feature]
    by_name = {d.name: d.spec for d in found.dependencies}
    # As the manifest reads them: canonical text ("1.2 py*" is "==1.2 py*").
    assert {name: by_name[name] for name, _ in specs} == {
        name: conda_dependency(name, spec).spec for name, spec in dict(specs).items()
    }
    restored, _ = remove_dependencies(
        text, list(dict(specs)), feature=feature, in_pyproject=False, kind="conda"
    )
    existing = {None: {"python"}, "test": {"pytest"}}.get(feature, set())
    if not existing & set(dict(specs)):
        assert restored == MANIFEST


def test_conda_specs_as_conda_and_pixi_users_type_them() -> None:
    """What `lockenv add` writes for each MatchSpec form, and that it reads back the same."""
    from lockenv.cli import _split_conda_spec
    from lockenv.lock.conda.matchspec import MatchSpec
    from lockenv.lock.resolve import conda_spec

    base = '[project]\nplatforms = ["linux-64"]\nchannels = ["conda-forge", "pytorch"]\n\n'
    base += "[dependencies]\n"
    typed = [
        "conda-forge::numpy",
        "pytorch::pytorch",
        "conda-forge/linux-64::zlib",
        "scipy[version='>=1.20',build=py*]",
        "openssl[build_number=0]",
        "libblas[subdir=linux-64]",
        "tk[channel=conda-forge]",
        "libzlib 1.2",
        "cuda=12.1=*cuda*",
    ]
    text = add_conda_dependencies(
        base, [_split_conda_spec(s) for s in typed], feature=None, in_pyproject=False
    )
    assert text == base + (
        'numpy = { version = "*", channel = "conda-forge" }\n'
        'pytorch = { version = "*", channel = "pytorch" }\n'
        'zlib = { version = "*", channel = "conda-forge/linux-64" }\n'
        'scipy = ">=1.20 py*"\n'
        'openssl = "[build_number=0]"\n'
        'libblas = "[subdir=linux-64]"\n'
        'tk = { version = "*", channel = "conda-forge" }\n'
        'libzlib = "==1.2"\n'
        'cuda = "==12.1 *cuda*"\n'
    )
    manifest = parse_manifest(text, path=Path("lockenv.toml"))
    read = {d.name: conda_spec(d) for d in manifest.default_feature.dependencies}
    assert read == {MatchSpec.parse(s).name: MatchSpec.parse(s) for s in typed}
