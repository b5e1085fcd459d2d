"""Tests for lockenv.lock.manifest: reading, validation messages, features and environments."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from packaging.specifiers import SpecifierSet

from lockenv.errors import ManifestError, UsageError
from lockenv.lock import manifest as manifest_module
from lockenv.lock.manifest import (
    MANIFEST_NAMES,
    PLATFORMS,
    CondaDependency,
    Environment,
    SystemRequirements,
    find_manifest,
    load_manifest,
    parse_manifest,
)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "schemas" / "manifest.schema.json").read_text("utf-8")
)
# Built once: jsonschema.validate checks the schema itself on every call (~0.1 s each).
VALIDATOR = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
LOCKENV_TOML = Path("lockenv.toml")

DESIGN_EXAMPLE = """\
[project]
name = "climate-analysis"
platforms = ["linux-64", "linux-aarch64", "osx-arm64", "win-64"]
channels = ["conda-forge"]            # names (via channel alias) or URLs
# indexes = ["https://mirror.example.invalid/simple"]
exclude-newer = "2025-06-01T00:00:00Z"

[dependencies]                 # conda packages, MatchSpec syntax
python = "3.12.*"
numpy = ">=1.26"

[pypi-dependencies]            # PyPI packages, PEP 508 syntax
requests = ">=2.31"
rich = { version = ">=13", extras = ["jupyter"] }

[system-requirements]
glibc = "2.28"
macos = "11.0"
cuda = "12"

[feature.test.pypi-dependencies]
pytest = ">=8"

[environments]
default = []
test = ["test"]
"""

FEATURES_EXAMPLE = """\
[project]
name = "feat"
platforms = ["linux-64", "osx-arm64", "win-64"]
channels = ["conda-forge"]
requires-python = ">=3.11"

[dependencies]
python = "3.12.*"
numpy = { version = ">=1.26", build = "py*", channel = "conda-forge" }

[pypi-dependencies]
requests = { version = ">=2.31", extras = ["socks"] }
tomli = { version = ">=2", markers = "python_version < '3.11'" }

[system-requirements]
glibc = "2.17"
cuda = 11

[feature.test.pypi-dependencies]
pytest = ">=8"
Requests = { version = "<3", extras = ["use-chardet-on-py3"] }

[feature.test.dependencies]
numpy = "<3"

[feature.gpu]
platforms = ["linux-64", "win-64"]
channels = ["nvidia", "conda-forge"]

[feature.gpu.dependencies]
cudatoolkit = "12.*"

[feature.gpu.system-requirements]
glibc = "2.28"
cuda = "12.2"
archspec = "x86_64_v3"

[feature.lint.pypi-dependencies]
ruff = "*"

[environments]
test = ["test"]
gpu = { features = ["gpu", "test"] }
lint = { features = ["lint"], no-default-feature = true }
"""

SOURCES_EXAMPLE = """\
[project]
platforms = ["linux-64"]

[pypi-dependencies]
itself = { path = ".", editable = true, extras = ["cli"] }
tool = { git = "https://git.example.invalid/org/tool.git", tag = "v1.2", subdirectory = "py" }
other = { url = "https://files.example.invalid/other-1.0-py3-none-any.whl" }

[pypi-options]
prefer-newest = ["tool"]
no-build = ["numpy", "scipy"]
no-binary = false
"""

VALID_EXAMPLES = {
    "design": DESIGN_EXAMPLE,
    "sources": SOURCES_EXAMPLE,
    "features": FEATURES_EXAMPLE,
    "minimal": '[project]\nplatforms = ["linux-64"]\n',
    "locations": """\
[project]
name = "loc"
platforms = ["win-64"]
channels = ["conda-forge/label/dev", "./local-channel", "file:///srv/channel"]
indexes = ["./wheels", "http://127.0.0.1:8080/simple"]
find-links = ["../dist"]
exclude-newer = 2025-06-01
""",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _problems(text: str, path: Path = LOCKENV_TOML) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, path=path)
    return info.value.problems


# --------------------------------------------------------------------------- valid manifests


@pytest.mark.parametrize("name", sorted(VALID_EXAMPLES))
def test_valid_examples_parse_and_match_the_schema(name: str) -> None:
    text = VALID_EXAMPLES[name]
    parse_manifest(text, path=LOCKENV_TOML)
    VALIDATOR.validate(_jsonable(tomllib.loads(text)))


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_design_example(tmp_path: Path) -> None:
    path = tmp_path / "lockenv.toml"
    manifest = parse_manifest(DESIGN_EXAMPLE, path=path)
    assert manifest.path == path
    assert manifest.root == tmp_path
    assert manifest.name == "climate-analysis"
    assert manifest.platforms == ("linux-64", "linux-aarch64", "osx-arm64", "win-64")
    assert manifest.channels == ("conda-forge",)
    assert manifest.indexes == ()
    assert manifest.exclude_newer == datetime(2025, 6, 1, tzinfo=UTC)
    default = manifest.default_feature
    assert default.name == "default"
    assert default.dependencies == (
        CondaDependency(name="numpy", spec=">=1.26"),
        CondaDependency(name="python", spec="3.12.*"),
    )
    assert [str(d.requirement) for d in default.pypi_dependencies] == [
        "requests>=2.31",
        "rich[jupyter]>=13",
    ]
    assert default.system_requirements == SystemRequirements(glibc="2.28", macos="11.0", cuda="12")
    assert list(manifest.features) == ["test"]
    assert manifest.environment_names() == ("default", "test")
    assert manifest.environments["test"] == Environment(name="test", features=("test",))
    test = manifest.environment("test")
    assert [d.name for d in test.pypi_dependencies] == ["pytest", "requests", "rich"]
    assert test.platforms == manifest.platforms


def test_default_environment_is_implicit_and_listed_first() -> None:
    manifest = parse_manifest(
        '[project]\nplatforms = ["linux-64"]\n[feature.b]\n[feature.a]\n'
        "[environments]\nzeta = ['a']\nalpha = ['b']\n",
        path=LOCKENV_TOML,
    )
    assert manifest.environment_names() == ("default", "alpha", "zeta")
    assert list(manifest.features) == ["a", "b"]
    assert manifest.environment("default").name == "default"


def test_platforms_default_to_the_current_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_module, "_current_platform", lambda: "osx-arm64")
    manifest = parse_manifest("[project]\nname = 'x'\n", path=LOCKENV_TOML)
    assert manifest.platforms == ("osx-arm64",)


def test_name_defaults_to_the_directory(tmp_path: Path) -> None:
    root = tmp_path / "my-project"
    manifest = parse_manifest('[project]\nplatforms = ["linux-64"]\n', path=root / "lockenv.toml")
    assert manifest.name == "my-project"


def test_locations_resolve_against_the_manifest_directory(tmp_path: Path) -> None:
    manifest = parse_manifest(VALID_EXAMPLES["locations"], path=tmp_path / "lockenv.toml")
    assert manifest.indexes == (
        (tmp_path / "wheels").as_uri(),
        "http://127.0.0.1:8080/simple",
    )
    assert manifest.find_links == ((tmp_path.parent / "dist").as_uri(),)
    assert manifest.channels == (
        "conda-forge/label/dev",
        (tmp_path / "local-channel").as_uri(),
        "file:///srv/channel",
    )


def test_pypi_names_are_normalized_and_requirements_canonical() -> None:
    manifest = parse_manifest(
        '[project]\nplatforms = ["linux-64"]\n[pypi-dependencies]\n'
        'Foo_Bar = { version = ">=1,<2", extras = ["B", "a"], markers = "os_name==\'nt\'" }\n',
        path=LOCKENV_TOML,
    )
    (dep,) = manifest.default_feature.pypi_dependencies
    assert dep.name == "foo-bar"
    assert str(dep.requirement) == 'foo-bar[a,b]<2,>=1; os_name == "nt"'


def test_conda_names_lower_cased_and_table_form() -> None:
    manifest = parse_manifest(
        '[project]\nplatforms = ["linux-64"]\nchannels = ["x"]\n[dependencies]\n'
        'PyYAML = "*"\nnumpy = { build = "py312*" }\nscipy = { version = "1.2", channel = "x" }\n',
        path=LOCKENV_TOML,
    )
    assert manifest.default_feature.dependencies == (
        CondaDependency(name="numpy", spec="* py312*"),
        CondaDependency(name="pyyaml", spec="*"),
        CondaDependency(name="scipy", spec="==1.2", channel="x"),
    )


# --------------------------------------------------------------------------- exclude-newer


@pytest.mark.parametrize(
    ("toml_value", "expected"),
    [
        ('"2025-06-01T00:00:00Z"', datetime(2025, 6, 1, tzinfo=UTC)),
        ('"2025-06-01T02:30:00+02:00"', datetime(2025, 6, 1, 0, 30, tzinfo=UTC)),
        ('"2025-06-01T00:00:00.5z"', datetime(2025, 6, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ('"2025-06-01 12:00:00"', datetime(2025, 6, 1, 12, tzinfo=UTC)),
        ('"2025-06-01"', datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01T00:00:00Z", datetime(2025, 6, 1, tzinfo=UTC)),
        ("2025-06-01T01:00:00-01:00", datetime(2025, 6, 1, 2, tzinfo=UTC)),
        ("2025-06-01T08:00:00", datetime(2025, 6, 1, 8, tzinfo=UTC)),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC)),
    ],
)
def test_exclude_newer_forms(toml_value: str, expected: datetime) -> None:
    manifest = parse_manifest(
        f'[project]\nplatforms = ["linux-64"]\nexclude-newer = {toml_value}\n', path=LOCKENV_TOML
    )
    assert manifest.exclude_newer == expected
    assert manifest.exclude_newer is not None
    assert manifest.exclude_newer.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "span"),
    [("14 days", timedelta(days=14)), ("P2W", timedelta(days=14)), ("36h", timedelta(hours=36))],
)
def test_exclude_newer_duration(text: str, span: timedelta) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    manifest = parse_manifest(
        f'[project]\nplatforms = ["linux-64"]\nexclude-newer = "{text}"\n', path=LOCKENV_TOML
    )
    after = datetime.now(UTC)
    assert manifest.exclude_newer_span == span
    assert manifest.exclude_newer is not None
    assert before - span <= manifest.exclude_newer <= after - span


def test_exclude_newer_moment_has_no_span() -> None:
    manifest = parse_manifest(
        '[project]\nplatforms = ["linux-64"]\nexclude-newer = "2025-06-01"\n', path=LOCKENV_TOML
    )
    assert manifest.exclude_newer_span is None


# --------------------------------------------------------------------------- validation errors

BASE = '[project]\nplatforms = ["linux-64"]\n'

# (manifest text, expected key path, expected fragment naming the bad value)
INVALID = [
    pytest.param(
        BASE + "[projec]\n",
        "projec",
        "unknown key 'projec' (did you mean 'project'?)",
        id="top-key",
    ),
    pytest.param(
        '[project]\nplatforms = ["linux-64"]\nnmae = "x"\n',
        "project.nmae",
        "'nmae'",
        id="project-key",
    ),
    pytest.param("[project]\nname = 3\n", "project.name", "got 3 (integer)", id="name-type"),
    pytest.param('[project]\nname = ""\n', "project.name", "empty project name", id="name-empty"),
    pytest.param(
        '[project]\nplatforms = "linux-64"\n',
        "project.platforms",
        "'linux-64' (string)",
        id="platforms-type",
    ),
    pytest.param(
        '[project]\nplatforms = ["linux64"]\n',
        "project.platforms[0]",
        "unknown platform 'linux64' (valid: " + ", ".join(PLATFORMS),
        id="platform-unknown",
    ),
    pytest.param(
        '[project]\nplatforms = ["linux-64", "linux-64"]\n',
        "project.platforms[1]",
        "'linux-64' is listed twice",
        id="platform-twice",
    ),
    pytest.param(
        "[project]\nplatforms = []\n",
        "project.platforms",
        "empty platform list",
        id="platforms-empty",
    ),
    pytest.param(
        BASE + 'channels = ["conda forge"]\n',
        "project.channels[0]",
        "invalid channel 'conda forge'",
        id="channel-bad",
    ),
    pytest.param(
        BASE + 'channels = ["ftp://x/y"]\n',
        "project.channels[0]",
        "'ftp://x/y'",
        id="channel-scheme",
    ),
    pytest.param(
        BASE + 'indexes = ["ssh://h/simple"]\n',
        "project.indexes[0]",
        "unsupported URL scheme in 'ssh://h/simple'",
        id="index-scheme",
    ),
    pytest.param(
        BASE + 'find-links = [""]\n',
        "project.find-links[0]",
        "empty location",
        id="find-links-empty",
    ),
    pytest.param(
        BASE + 'requires-python = ">=3.x"\n',
        "project.requires-python",
        "invalid requires-python '>=3.x'",
        id="requires-python",
    ),
    pytest.param(
        BASE + 'exclude-newer = "yesterday"\n',
        "project.exclude-newer",
        "invalid exclude-newer 'yesterday'",
        id="exclude-newer-text",
    ),
    pytest.param(
        BASE + 'exclude-newer = "3 months"\n',
        "project.exclude-newer",
        "invalid exclude-newer duration '3 months': 'months' has no fixed length",
        id="exclude-newer-months",
    ),
    pytest.param(
        BASE + 'exclude-newer = "2025-13-01"\n',
        "project.exclude-newer",
        "'2025-13-01'",
        id="exclude-newer-month",
    ),
    pytest.param(
        BASE + "exclude-newer = 5\n",
        "project.exclude-newer",
        "got 5 (integer)",
        id="exclude-newer-type",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nrequests = ">=2.x"\n',
        "pypi-dependencies.requests",
        "invalid version specifier '>=2.x' (use PEP 440, e.g. '>=2.31')",
        id="pypi-specifier",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nrequests = "2.31"\n',
        "pypi-dependencies.requests",
        "'2.31' (use PEP 440, e.g. '==2.31')",
        id="pypi-bare-version",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nrequests = ""\n',
        "pypi-dependencies.requests",
        "empty version specifier ''",
        id="pypi-empty",
    ),
    pytest.param(
        BASE + "[pypi-dependencies]\nrequests = 2\n",
        "pypi-dependencies.requests",
        "got 2 (integer)",
        id="pypi-type",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\n"-bad" = "*"\n',
        "pypi-dependencies.-bad",
        "invalid distribution name '-bad'",
        id="pypi-name",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\n"a b" = "*"\n',
        'pypi-dependencies."a b"',
        "invalid distribution name 'a b'",
        id="pypi-name-space",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nx = { version = "=>1" }\n',
        "pypi-dependencies.x.version",
        "'=>1'",
        id="pypi-table-version",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nx = { extras = ["a b"] }\n',
        "pypi-dependencies.x.extras[0]",
        "invalid extra name 'a b'",
        id="pypi-extra",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nx = { extras = "a" }\n',
        "pypi-dependencies.x.extras",
        "'a' (string)",
        id="pypi-extras-type",
    ),
    pytest.param(
        BASE + "[pypi-dependencies]\nx = { markers = \"python_version >> '3'\" }\n",
        "pypi-dependencies.x.markers",
        "invalid environment marker \"python_version >> '3'\"",
        id="pypi-marker",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nx = { markers = "os_name == nt" }\n',
        "pypi-dependencies.x.markers",
        "'os_name == nt'",
        id="pypi-marker-unquoted",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nx = { hash = "sha256:00" }\n',
        "pypi-dependencies.x.hash",
        "unknown key 'hash'",
        id="pypi-table-key",
    ),
    pytest.param(
        BASE + '[pypi-dependencies]\nfoo_bar = "*"\nFoo-Bar = "*"\n',
        "pypi-dependencies.Foo-Bar",
        "'Foo-Bar' names the same package as 'foo-bar'",
        id="pypi-duplicate",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = ">=1.2;x"\n',
        "dependencies.numpy",
        "invalid conda spec '>=1.2;x': bad version '>=1.2;x': invalid character(s) ';'",
        id="conda-char",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = ""\n',
        "dependencies.numpy",
        "invalid conda spec '': empty version (use '*' for any version)",
        id="conda-empty",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = ">=1.2 <2"\n',
        "dependencies.numpy",
        "'<2' is not a build string; join version constraints with ','",
        id="conda-space",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = "1 2 3"\n',
        "dependencies.numpy",
        "'1 2 3'",
        id="conda-parts",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = ">="\n',
        "dependencies.numpy",
        "invalid conda spec '>=': bad version '>=': invalid operator in '>='",
        id="conda-operator-only",
    ),
    pytest.param(
        BASE + '[dependencies]\n"num py" = "*"\n',
        'dependencies."num py"',
        "invalid conda package name 'num py'",
        id="conda-name",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = { version = ">=1", bild = "py*" }\n',
        "dependencies.numpy.bild",
        "unknown key 'bild' (did you mean 'build'?)",
        id="conda-table-key",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = { version = "1;2" }\n',
        "dependencies.numpy.version",
        "'1;2'",
        id="conda-table-version",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = { build = "py 3" }\n',
        "dependencies.numpy.build",
        "invalid build string 'py 3'",
        id="conda-build",
    ),
    pytest.param(
        BASE + '[dependencies]\nnumpy = { channel = "a b" }\n',
        "dependencies.numpy.channel",
        "invalid channel 'a b'",
        id="conda-channel",
    ),
    pytest.param(
        BASE + "[dependencies]\nnumpy = [1]\n",
        "dependencies.numpy",
        "got [1] (array)",
        id="conda-type",
    ),
    pytest.param(
        "dependencies = 3\n" + BASE,
        "dependencies",
        "expected a table, got 3 (integer)",
        id="deps-type",
    ),
    pytest.param(
        BASE + '[system-requirements]\nglibc = "2.x"\n',
        "system-requirements.glibc",
        "invalid glibc value '2.x'",
        id="glibc",
    ),
    pytest.param(
        BASE + "[system-requirements]\ncuda = true\n",
        "system-requirements.cuda",
        "got True (boolean)",
        id="cuda-type",
    ),
    pytest.param(
        BASE + '[system-requirements]\narchspec = "x86-64 v3"\n',
        "system-requirements.archspec",
        "'x86-64 v3'",
        id="archspec",
    ),
    pytest.param(
        BASE + '[system-requirements]\nlibc = "2.28"\n',
        "system-requirements.libc",
        "unknown key 'libc'",
        id="system-key",
    ),
    pytest.param(
        BASE + "[feature.default.dependencies]\n",
        "feature.default",
        "'default' names the top-level tables",
        id="feature-default",
    ),
    pytest.param(
        BASE + "[feature.Test]\n", "feature.Test", "invalid feature name 'Test'", id="feature-name"
    ),
    pytest.param(
        BASE + '[feature.t]\nplatform = ["linux-64"]\n',
        "feature.t.platform",
        "unknown key 'platform' (did you mean 'platforms'?)",
        id="feature-key",
    ),
    pytest.param(
        BASE + '[feature.t]\nplatforms = ["win-64"]\n',
        "feature.t.platforms",
        "platform 'win-64' is not in project.platforms",
        id="feature-platform",
    ),
    pytest.param(
        BASE + '[feature.t]\nplatforms = ["win64"]\n',
        "feature.t.platforms[0]",
        "unknown platform 'win64'",
        id="feature-platform-unknown",
    ),
    pytest.param(
        BASE + '[feature.t.pypi-dependencies]\nx = "~=1"\n',
        "feature.t.pypi-dependencies.x",
        "'~=1'",
        id="feature-pypi",
    ),
    pytest.param("feature = 1\n" + BASE, "feature", "got 1 (integer)", id="feature-type"),
    pytest.param(
        BASE + '[environments]\ntest = ["nope"]\n',
        "environments.test[0]",
        "unknown feature 'nope' (defined features: none defined)",
        id="env-unknown-feature",
    ),
    pytest.param(
        BASE + '[feature.a]\n[environments]\ntest = ["a", "a"]\n',
        "environments.test[1]",
        "'a' is listed twice",
        id="env-feature-twice",
    ),
    pytest.param(
        BASE + '[environments]\ntest = ["default"]\n',
        "environments.test[0]",
        "the default feature is included automatically",
        id="env-default-feature",
    ),
    pytest.param(
        BASE + '[environments]\n"My Env" = []\n',
        'environments."My Env"',
        "invalid environment name 'My Env'",
        id="env-name",
    ),
    pytest.param(
        BASE + '[environments]\ntest = "a"\n', "environments.test", "'a' (string)", id="env-type"
    ),
    pytest.param(
        BASE + '[environments]\ntest = { feature = ["a"] }\n',
        "environments.test.feature",
        "unknown key 'feature' (did you mean 'features'?)",
        id="env-key",
    ),
    pytest.param(
        BASE + '[environments]\ntest = { no-default-feature = "yes" }\n',
        "environments.test.no-default-feature",
        "'yes' (string)",
        id="env-flag",
    ),
]


@pytest.mark.parametrize(("text", "key_path", "fragment"), INVALID)
def test_each_problem_names_file_key_path_and_value(
    text: str, key_path: str, fragment: str
) -> None:
    problems = _problems(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"lockenv.toml: {key_path}: "), problems[0]
    assert fragment in problems[0]


def test_three_bad_keys_report_three_problems() -> None:
    problems = _problems(
        '[project]\nplatforms = ["linux-64", "mac"]\n'
        '[pypi-dependencies]\nrequests = ">=2.x"\n'
        '[dependencies]\nnumpy = "1;2"\n'
    )
    assert problems == [
        "lockenv.toml: project.platforms[1]: unknown platform 'mac' (valid: "
        + ", ".join(PLATFORMS)
        + ")",
        "lockenv.toml: dependencies.numpy: invalid conda spec '1;2': bad version '1;2': "
        "invalid character(s) ';' in '1;2' (e.g. '>=1.26', '3.12.*', '1.2 py*', "
        "'conda-forge::>=1.26' or '[build_number=0]')",
        "lockenv.toml: pypi-dependencies.requests: invalid version specifier '>=2.x' "
        "(use PEP 440, e.g. '>=2.31')",
    ]
    with pytest.raises(ManifestError) as info:
        parse_manifest(
            '[project]\nplatforms = ["linux-64", "mac"]\n[pypi-dependencies]\nrequests = ">=2.x"\n'
            '[dependencies]\nnumpy = "1;2"\n',
            path=LOCKENV_TOML,
        )
    assert str(info.value).count("lockenv.toml:") == 3


def test_toml_syntax_error_reports_line_and_column() -> None:
    problems = _problems('[project]\nname = "x"\nplatforms = [\n  "linux-64",\n  oops\n]\n')
    assert len(problems) == 1
    assert problems[0].startswith("lockenv.toml: invalid TOML: ")
    assert "line 5, column 3" in problems[0]


def test_invalid_examples_also_fail_the_schema() -> None:
    for text in (
        BASE + "[projec]\n",
        '[project]\nplatforms = ["linux64"]\n',
        BASE + '[pypi-dependencies]\nx = { hash = "sha256:00" }\n',
        BASE + '[pypi-dependencies]\nx = { path = ".", version = ">=1" }\n',
        BASE + '[pypi-dependencies]\nx = { git = "https://h/r", editable = true }\n',
        BASE + "[pypi-options]\nno-build = 1\n",
        BASE + '[dependencies]\n"pkg..name" = "*"\n',
        BASE + '[system-requirements]\nglibc = "2.x"\n',
    ):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(_jsonable(tomllib.loads(text)))


# --------------------------------------------------------------------------- pyproject form

PYPROJECT = """\
[project]
name = "pep621-name"
requires-python = ">=3.10"
dependencies = ["anything-goes-here"]

[tool.ruff]
line-length = 100

[tool.lockenv.project]
platforms = ["linux-64"]
channels = ["conda-forge"]

[tool.lockenv.pypi-dependencies]
requests = ">=2.31"

[tool.lockenv.feature.test.pypi-dependencies]
pytest = "*"

[tool.lockenv.environments]
test = ["test"]
"""


def test_pyproject_form_takes_name_and_requires_python_from_pep621() -> None:
    manifest = parse_manifest(PYPROJECT, path=Path("pyproject.toml"))
    assert manifest.name == "pep621-name"
    assert manifest.requires_python == SpecifierSet(">=3.10")
    assert manifest.environment("test").requires_python == SpecifierSet(">=3.10")
    assert [d.name for d in manifest.environment("test").pypi_dependencies] == [
        "pytest",
        "requests",
    ]


def test_pyproject_tool_lockenv_project_wins() -> None:
    text = PYPROJECT.replace(
        'platforms = ["linux-64"]\n',
        'platforms = ["linux-64"]\nname = "own"\nrequires-python = "==3.12.*"\n',
    )
    manifest = parse_manifest(text, path=Path("pyproject.toml"))
    assert manifest.name == "own"
    assert manifest.requires_python == SpecifierSet("==3.12.*")


def test_pyproject_problems_use_the_full_key_path() -> None:
    text = PYPROJECT.replace('requests = ">=2.31"', 'requests = ">=2.x"\nrequires-python = 1')
    text = text.replace('requires-python = ">=3.10"', 'requires-python = ">3.x"')
    problems = _problems(
        text.replace("[tool.lockenv.project]", "[tool.lockenv.projet]"), Path("pyproject.toml")
    )
    assert (
        "pyproject.toml: tool.lockenv.projet: unknown key 'projet' (did you mean 'project'?)"
        in problems
    )
    assert any(
        p.startswith("pyproject.toml: tool.lockenv.pypi-dependencies.requests: ") for p in problems
    )
    assert any(p.startswith("pyproject.toml: project.requires-python: ") for p in problems)


def test_pyproject_without_tool_lockenv() -> None:
    problems = _problems('[project]\nname = "x"\n', Path("pyproject.toml"))
    assert problems == [
        "pyproject.toml: no [tool.lockenv] table; add one (e.g. [tool.lockenv.project]) "
        "or use a lockenv.toml"
    ]


# --------------------------------------------------------------------------- environments


def test_features_merge_into_environment_specs() -> None:
    manifest = parse_manifest(FEATURES_EXAMPLE, path=LOCKENV_TOML)
    default = manifest.environment("default")
    assert default.platforms == ("linux-64", "osx-arm64", "win-64")
    assert default.requires_python == SpecifierSet(">=3.11")

    test = manifest.environment("test")
    by_name = {d.name: str(d.requirement) for d in test.pypi_dependencies}
    assert by_name == {
        "pytest": "pytest>=8",
        "requests": "requests[socks,use-chardet-on-py3]<3,>=2.31",
        "tomli": 'tomli>=2; python_version < "3.11"',
    }
    assert {d.name: d for d in test.dependencies}["numpy"] == CondaDependency(
        name="numpy", spec=">=1.26,<3 py*", channel="conda-forge"
    )

    gpu = manifest.environment("gpu")
    assert gpu.platforms == ("linux-64", "win-64")
    assert gpu.channels == ("conda-forge", "nvidia")
    assert gpu.system_requirements == SystemRequirements(
        glibc="2.28", cuda="12.2", archspec="x86_64_v3"
    )
    assert [d.name for d in gpu.dependencies] == ["cudatoolkit", "numpy", "python"]

    lint = manifest.environment("lint")
    assert [d.name for d in lint.pypi_dependencies] == ["ruff"]
    assert lint.dependencies == ()
    assert lint.system_requirements == SystemRequirements()


def test_unknown_environment_names_the_known_ones() -> None:
    manifest = parse_manifest(FEATURES_EXAMPLE, path=LOCKENV_TOML)
    with pytest.raises(UsageError, match=r"unknown environment 'tset'.*default, gpu, lint, test"):
        manifest.environment("tset")


@pytest.mark.parametrize(
    ("tables", "fragment"),
    [
        pytest.param(
            '[pypi-dependencies]\nx = { version = "*", markers = "os_name == \'nt\'" }\n'
            '[feature.a.pypi-dependencies]\nx = "*"\n',
            "pypi dependency 'x' conflicts between features 'default' and 'a': markers",
            id="pypi-markers",
        ),
        pytest.param(
            '[dependencies]\nx = "1 py*"\n[feature.a.dependencies]\nx = "1 cuda*"\n',
            "conda dependency 'x' conflicts between features 'default' and 'a': build 'py*'",
            id="conda-build",
        ),
        pytest.param(
            '[dependencies]\nx = { channel = "c1" }\n'
            '[feature.a.dependencies]\nx = { channel = "c2" }\n',
            "channel 'c1' versus 'c2'",
            id="conda-channel",
        ),
        pytest.param(
            '[system-requirements]\narchspec = "zen2"\n'
            '[feature.a.system-requirements]\narchspec = "zen3"\n',
            "system-requirements of feature 'a': archspec 'zen2' versus 'zen3'",
            id="archspec",
        ),
    ],
)
def test_environment_merge_conflicts(tables: str, fragment: str) -> None:
    text = (
        '[project]\nplatforms = ["linux-64"]\nchannels = ["c1", "c2"]\n'
        + tables
        + '[environments]\nenv = ["a"]\n'
    )
    problems = _problems(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith("lockenv.toml: environments.env: ")
    assert fragment in problems[0]


def test_environment_with_no_platform_left() -> None:
    text = (
        '[project]\nplatforms = ["linux-64", "win-64"]\n'
        '[feature.a]\nplatforms = ["linux-64"]\n[feature.b]\nplatforms = ["win-64"]\n'
        '[environments]\nboth = ["a", "b"]\n'
    )
    (problem,) = _problems(text)
    assert problem.startswith("lockenv.toml: environments.both: no platform left")


def test_conda_or_versions_are_parenthesized_when_merged() -> None:
    text = (
        '[project]\nplatforms = ["linux-64"]\n[dependencies]\nx = "1.*|2.*"\n'
        '[feature.a.dependencies]\nx = "!=2.1"\n[environments]\ne = ["a"]\n'
    )
    spec = parse_manifest(text, path=LOCKENV_TOML).environment("e")
    assert spec.dependencies == (CondaDependency(name="x", spec="(1.*|2.*),!=2.1"),)


# --------------------------------------------------------------------------- finding and loading


def test_find_manifest_walks_up_and_prefers_lockenv_toml(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    assert find_manifest(deep) == tmp_path / "pyproject.toml"
    (tmp_path / "lockenv.toml").write_text(BASE)
    assert find_manifest(deep) == tmp_path / "lockenv.toml"
    # A pyproject.toml without [tool.lockenv] nearer to the start does not count.
    (tmp_path / "a" / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert find_manifest(deep) == tmp_path / "lockenv.toml"
    (deep / "file.txt").write_text("")
    assert find_manifest(deep / "file.txt") == tmp_path / "lockenv.toml"
    assert MANIFEST_NAMES == ("lockenv.toml", "pyproject.toml")


def test_find_manifest_reports_none_found(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no lockenv.toml .*lockenv init.*--manifest"):
        find_manifest(tmp_path)


def test_find_manifest_reports_a_broken_pyproject_that_is_ours(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.lockenv.project\n")
    with pytest.raises(ManifestError, match="invalid TOML"):
        find_manifest(tmp_path)


def test_load_manifest(tmp_path: Path) -> None:
    path = tmp_path / "lockenv.toml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    assert load_manifest(path).name == "climate-analysis"
    assert load_manifest(tmp_path).path == path
    with pytest.raises(UsageError, match="does not exist"):
        load_manifest(tmp_path / "missing.toml")
    path.write_bytes(b"[project]\nname = '\xff'\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifest(path)


def test_conda_pypi_map(tmp_path: Path) -> None:
    text = '[project]\nname = "m"\nplatforms = ["linux-64"]\n[conda-pypi-map]\npytorch = "Torch"\n'
    manifest = parse_manifest(text, path=tmp_path / "lockenv.toml")
    assert manifest.pypi_name_of("pytorch") == "torch"
    assert manifest.pypi_name_of("Ruamel.YAML") == "ruamel-yaml"


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('"Bad Name" = "torch"', ['conda-pypi-map."Bad Name"', "not a conda package name"]),
        ('pytorch = "not ok!"', ["conda-pypi-map.pytorch", "'not ok!'"]),
        ("pytorch = 3", ["conda-pypi-map.pytorch", "3"]),
    ],
)
def test_conda_pypi_map_errors(tmp_path: Path, table: str, words: list[str]) -> None:
    text = f'[project]\nname = "m"\nplatforms = ["linux-64"]\n[conda-pypi-map]\n{table}\n'
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, path=tmp_path / "lockenv.toml")
    for word in words:
        assert word in str(info.value)


def test_mirrors(tmp_path: Path) -> None:
    text = (
        '[project]\nname = "m"\nplatforms = ["linux-64"]\n[mirrors]\n'
        '"https://origin.invalid/simple" = ["https://m.invalid/simple", "./wheels"]\n'
    )
    manifest = parse_manifest(text, path=tmp_path / "lockenv.toml")
    assert manifest.mirrors.locations("https://origin.invalid/simple/a/") == (
        "https://m.invalid/simple/a/",
        (tmp_path / "wheels").as_uri() + "/a/",
    )


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('"./here" = ["https://m.invalid"]', ['mirrors."./here"', "not a URL without credentials"]),
        ('"https://o.invalid" = []', ['mirrors."https://o.invalid"', "a list of mirror URLs"]),
        (
            '"https://o.invalid" = ["https://u:secret@m.invalid", "gopher://x"]',
            ["'gopher://x' is not an http://"],
        ),
    ],
)
def test_mirrors_errors(tmp_path: Path, table: str, words: list[str]) -> None:
    text = f'[project]\nname = "m"\nplatforms = ["linux-64"]\n[mirrors]\n{table}\n'
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, path=tmp_path / "lockenv.toml")
    for word in words:
        assert word in str(info.value)
    assert "secret" not in str(info.value)


def test_base_environment_project_and_per_environment(tmp_path: Path) -> None:
    text = (
        '[project]\nname = "m"\nplatforms = ["linux-64"]\nbase-environment = "site/base"\n'
        "[feature.gpu.pypi-dependencies]\nalpha = '*'\n"
        '[environments]\ngpu = { features = ["gpu"], base-environment = "/opt/gpu-stack/" }\n'
        'plain = ["gpu"]\n'
    )
    manifest = parse_manifest(text, path=tmp_path / "lockenv.toml")
    assert manifest.environment("default").base_environment == tmp_path / "site" / "base"
    assert manifest.environment("plain").base_environment == tmp_path / "site" / "base"
    assert manifest.environment("gpu").base_environment == Path("/opt/gpu-stack")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('base-environment = "https://x.invalid/env"', ["project.base-environment", "directory"]),
        ('base-environment = ""', ["project.base-environment", "invalid base-environment"]),
        ("base-environment = 3", ["project.base-environment", "expected a string"]),
    ],
)
def test_base_environment_errors(tmp_path: Path, line: str, words: list[str]) -> None:
    text = f'[project]\nname = "m"\nplatforms = ["linux-64"]\n{line}\n'
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, path=tmp_path / "lockenv.toml")
    for word in words:
        assert word in str(info.value)


# --------------------------------------------------------------------------- sources


def _pypi(text: str, root: Path) -> dict[str, Any]:
    manifest = parse_manifest(text, path=root / "lockenv.toml")
    return {d.name: d for d in manifest.default_feature.pypi_dependencies}


def test_sources_and_their_requirement_text(tmp_path: Path) -> None:
    (tmp_path / "libs" / "a").mkdir(parents=True)
    deps = _pypi(
        '[pypi-dependencies]\nme = { path = ".", editable = true }\n'
        'a = { path = "./libs/a/", extras = ["x"], markers = "os_name == \'nt\'" }\n'
        'g = { git = "git+https://h.invalid/r.git", branch = "main" }\n'
        'u = { url = "https://h.invalid/u-1.0.tar.gz" }\n',
        tmp_path,
    )
    assert {n: str(d.requirement) for n, d in deps.items()} == {
        "me": "me @ .",
        "a": 'a[x] @ ./libs/a ; os_name == "nt"',
        "g": "g @ git+https://h.invalid/r.git@main",
        "u": "u @ https://h.invalid/u-1.0.tar.gz",
    }
    assert deps["me"].source.editable and deps["a"].source.path == "libs/a"
    assert deps["g"].source.git == "https://h.invalid/r.git"  # the git+ prefix dropped
    assert (tmp_path / deps["a"].source.path).is_dir()


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ('{ path = "missing" }', "'missing' is not a directory"),
        ('{ path = ".", version = ">=1" }', "takes its version from its source; remove version"),
        ('{ path = ".", git = "https://h/r" }', "path and git both given"),
        ('{ git = "https://h/r", editable = true }', "editable goes with path"),
        ('{ path = ".", tag = "v1" }', "tag goes with git"),
        ('{ git = "https://h/r", tag = "v1", branch = "b" }', "tag and branch both given"),
        ('{ git = "https://h/r", subdirectory = "../x" }', "'../x' leaves the repository"),
        ('{ git = "not a url" }', "is not a git URL"),
        ('{ url = "ftp://h/x-1.0.tar.gz" }', "use an https:// or file:// URL"),
        ('{ url = "https://h/x-1.0.txt" }', "names no wheel or sdist"),
        ('{ path = ".", editable = "yes" }', "expected true or false"),
        ('{ git = "" }', "empty git"),
    ],
)
def test_source_problems(tmp_path: Path, entry: str, fragment: str) -> None:
    problems = _problems(f"[pypi-dependencies]\nx = {entry}\n", tmp_path / "lockenv.toml")
    assert any(fragment in p for p in problems), problems
    assert all("lockenv.toml: pypi-dependencies.x" in p for p in problems)


@pytest.mark.parametrize(
    ("default", "feature", "result"),
    [
        ('{ path = "." }', '{ path = ".", extras = ["x"] }', "me[x] @ ."),
        ('{ path = "." }', '"*"', "me @ ."),
        ('{ path = "." }', '">=2"', "a source sets the version"),
        ('{ path = "." }', '{ git = "https://h/r" }', "use one source"),
    ],
)
def test_sources_merge_across_features(
    tmp_path: Path, default: str, feature: str, result: str
) -> None:
    text = (
        f"[pypi-dependencies]\nme = {default}\n[feature.f.pypi-dependencies]\nme = {feature}\n"
        '[environments]\nf = ["f"]\n'
    )
    try:
        spec = parse_manifest(text, path=tmp_path / "lockenv.toml").environment("f")
    except ManifestError as error:
        assert result in str(error)
        return
    assert str(spec.pypi_dependencies[0].requirement) == result


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("git+https://h/r.git@v1#subdirectory=sub", {"git": "https://h/r.git", "rev": "v1"}),
        ("git+ssh://git@h/r.git", {"git": "ssh://git@h/r.git", "rev": None}),
        ("git+ssh://git@h/r.git@abc", {"git": "ssh://git@h/r.git", "rev": "abc"}),
        ("https://h/p/x-1.0-py3-none-any.whl", {"url": "https://h/p/x-1.0-py3-none-any.whl"}),
        ("https://h/p/x-1.0.tar.gz#sha256=ab", {"url": "https://h/p/x-1.0.tar.gz"}),
    ],
)
def test_source_from_url(url: str, expected: dict[str, object]) -> None:
    from lockenv.lock.manifest import source_from_url

    source = source_from_url(url, root=Path("/"))
    assert not isinstance(source, str)
    for key, value in expected.items():
        assert getattr(source, key) == value


def test_source_from_a_file_url_is_a_relative_path(tmp_path: Path) -> None:
    from lockenv.lock.manifest import source_from_url

    (tmp_path / "lib").mkdir()
    source = source_from_url((tmp_path / "lib").as_uri(), root=tmp_path / "app")
    assert not isinstance(source, str) and source.path == "../lib"
    assert "is not a source" in str(source_from_url("https://h/page", root=tmp_path))


PROJECT_PYPROJECT = """\
[project]
name = "My.Proj"
version = "1.0"
dependencies = ["alpha"]

[project.optional-dependencies]
fast = ["delta"]
Docs = ["epsilon"]

[dependency-groups]
test = ["pytest>=8", {include-group = "Lint"}]
lint = ["ruff; python_version >= '3.9'"]

[tool.lockenv.project]
platforms = ["linux-64"]

[tool.lockenv.pypi-dependencies]
my-proj = { path = ".", editable = true }

[tool.lockenv.feature.test.pypi-dependencies]
pytest = ">=8.1"

[tool.lockenv.environments]
test = ["test"]
docs = ["docs"]
"""


def test_extras_and_dependency_groups_are_features(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    manifest = parse_manifest(PROJECT_PYPROJECT, path=path)
    assert set(manifest.features) == {"fast", "docs", "test", "lint"}
    test = manifest.environment("test")
    assert {str(d.requirement) for d in test.pypi_dependencies} == {
        "my-proj @ .",
        "pytest>=8.1",  # the manifest's own feature table wins over the group's entry
        'ruff; python_version >= "3.9"',  # include-group, names compared normalized
    }
    docs = manifest.environment("docs")
    # An extra is the project itself with that extra.
    assert [str(d.requirement) for d in docs.pypi_dependencies] == ["my-proj[docs] @ ."]


@pytest.mark.parametrize(
    ("groups", "fragment"),
    [
        ('a = [{include-group = "b"}]\nb = [{include-group = "a"}]\n', "include-group cycle"),
        ('a = [{include-group = "nope"}]\n', "no such group"),
        ("a = [1]\n", "neither a PEP 508 string nor"),
        ('a = ["not a requirement!"]\n', "invalid requirement"),
    ],
)
def test_dependency_group_problems(tmp_path: Path, groups: str, fragment: str) -> None:
    text = (
        '[project]\nname = "p"\nversion = "1"\n[dependency-groups]\n'
        + groups
        + '[tool.lockenv.project]\nplatforms = ["linux-64"]\n'
    )
    problems = _problems(text, tmp_path / "pyproject.toml")
    assert any(fragment in p and ": dependency-groups" in p for p in problems), problems


def test_pypi_options(tmp_path: Path) -> None:
    manifest = parse_manifest(SOURCES_EXAMPLE, path=tmp_path / "lockenv.toml")
    options = manifest.pypi_options
    assert options.wheels_first("numpy") and not options.wheels_first("tool")
    assert not options.may_build("scipy") and options.may_build("tool")
    assert options.may_use_wheel("numpy")
    assert options.as_inputs() == {"no-build": ["numpy", "scipy"], "prefer-newest": ["tool"]}


@pytest.mark.parametrize(
    ("table", "fragment"),
    [
        ("no-build = 1", "expected true, false or an array of package names"),
        ('no-build = ["Bad Name"]', "invalid distribution name 'Bad Name'"),
        ('no-build = ["x"]\nno-binary = ["X"]', "no-build and no-binary both name x"),
        ("no-build = true\nno-binary = true", "both name every package"),
        ("prefer-binary = false", "unknown key 'prefer-binary'"),
    ],
)
def test_pypi_options_problems(table: str, fragment: str) -> None:
    problems = _problems(BASE + "[pypi-options]\n" + table + "\n")
    assert any(fragment in p for p in problems), problems


# --------------------------------------------------------------------------- conda specs as typed


CHANNELS = '[project]\nplatforms = ["linux-64"]\nchannels = ["conda-forge", "pytorch"]\n'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"conda-forge::numpy"', CondaDependency(name="numpy", spec="*", channel="conda-forge")),
        (
            '"conda-forge::>=1.26"',
            CondaDependency(name="numpy", spec=">=1.26", channel="conda-forge"),
        ),
        ('"pytorch::"', CondaDependency(name="numpy", spec="*", channel="pytorch")),
        (
            '"conda-forge/linux-64::numpy >=1.26"',
            CondaDependency(name="numpy", spec=">=1.26", channel="conda-forge/linux-64"),
        ),
        ("\"[version='>=1.20', build=py*]\"", CondaDependency(name="numpy", spec=">=1.20 py*")),
        ('"[build_number=0]"', CondaDependency(name="numpy", spec="[build_number=0]")),
        ('"[subdir=linux-64]"', CondaDependency(name="numpy", spec="[subdir=linux-64]")),
        (
            '"[channel=conda-forge]"',
            CondaDependency(name="numpy", spec="*", channel="conda-forge"),
        ),
        ('"numpy >=1.26"', CondaDependency(name="numpy", spec=">=1.26")),
        ('"1.2"', CondaDependency(name="numpy", spec="==1.2")),  # exact, as in conda
        ('"=1.2"', CondaDependency(name="numpy", spec="1.2.*")),
        (
            '{ version = ">=1", build-number = 0, subdir = "linux-64", channel = "pytorch" }',
            CondaDependency(name="numpy", spec=">=1[build_number=0]", channel="pytorch/linux-64"),
        ),
        (
            '{ md5 = "' + "ab" * 16 + '" }',
            CondaDependency(name="numpy", spec="[md5=" + "ab" * 16 + "]"),
        ),
    ],
)
def test_conda_specs_as_conda_users_type_them(value: str, expected: CondaDependency) -> None:
    text = CHANNELS + f"[dependencies]\nnumpy = {value}\n"
    manifest = parse_manifest(text, path=LOCKENV_TOML)
    assert manifest.default_feature.dependencies == (expected,)
    VALIDATOR.validate(tomllib.loads(text))


def test_one_meaning_of_a_bare_conda_version() -> None:
    """ "1.2" is exactly 1.2 in the manifest, in `add 'libzlib 1.2'` and in environment.yml."""
    from lockenv.lock.conda.matchspec import MatchSpec
    from lockenv.lock.resolve import conda_spec

    manifest = parse_manifest(CHANNELS + '[dependencies]\nlibzlib = "1.2"\n', path=LOCKENV_TOML)
    (dependency,) = manifest.default_feature.dependencies
    assert (
        conda_spec(dependency) == MatchSpec.parse("libzlib 1.2") == MatchSpec.parse("libzlib==1.2")
    )
    assert conda_spec(dependency).version is not None
    assert conda_spec(dependency).version.contains("1.2.0")
    assert not conda_spec(dependency).version.contains("1.2.13")
    # Valid, but a likely slip for the series: a warning says how to write either meaning.
    (warning,) = manifest.warnings
    assert warning.startswith("lockenv.toml: dependencies.libzlib: '1.2' means exactly 1.2")
    assert '"1.2.*"' in warning and '"==1.2"' in warning
    quiet = parse_manifest(CHANNELS + '[dependencies]\nlibzlib = "==1.2"\n', path=LOCKENV_TOML)
    assert quiet.warnings == ()


@pytest.mark.parametrize(
    ("table", "value", "words"),
    [
        ("dependencies", '">=1.2,,<2"', "a constraint is missing before ','"),
        ("pypi-dependencies", '">=1.2,,<2"', "an empty constraint between commas"),
        ("pypi-dependencies", '",>=1.2"', "an empty constraint between commas"),
        ("dependencies", '"pkg::scipy"', "names the package 'scipy'"),
        ("dependencies", '"conda forge::numpy"', "invalid channel"),
        ("dependencies", '{ build-number = "x" }', "bad build_number 'x'"),
    ],
)
def test_malformed_specs_are_refused(table: str, value: str, words: str) -> None:
    (problem,) = _problems(CHANNELS + f"[{table}]\nnumpy = {value}\n")
    assert problem.startswith(f"lockenv.toml: {table}.numpy")
    assert words in problem


def test_names_conda_refuses_are_refused() -> None:
    problems = _problems(CHANNELS + '[dependencies]\n"pkg..name" = "*"\n"pkg--name" = "*"\n')
    assert len(problems) == 2
    assert all("two separators" in p for p in problems)


def test_a_channel_outside_the_channels_list_is_named() -> None:
    (problem,) = _problems(
        '[project]\nplatforms = ["linux-64"]\nchannels = ["conda-forge"]\n'
        '[dependencies]\ntorch = "pytorch::*"\n'
    )
    assert "dependencies.torch asks for channel 'pytorch'" in problem
    assert "add it to [project] channels" in problem
    # A channel name matches a channels entry given as its URL.
    parse_manifest(
        '[project]\nplatforms = ["linux-64"]\nchannels = ["https://repo.example.invalid/pytorch"]\n'
        '[dependencies]\ntorch = "pytorch::*"\n',
        path=LOCKENV_TOML,
    )


def test_features_merge_bracket_specs() -> None:
    manifest = parse_manifest(
        CHANNELS
        + '[dependencies]\nx = "[build_number=0]"\n'
        + '[feature.a.dependencies]\nx = ">=1"\n'
        + "[environments]\na = ['a']\n",
        path=LOCKENV_TOML,
    )
    (merged,) = manifest.environment("a").dependencies
    assert merged == CondaDependency(name="x", spec=">=1[build_number=0]")
    (problem,) = _problems(
        CHANNELS
        + '[dependencies]\nx = "[build_number=0]"\n'
        + '[feature.b.dependencies]\nx = "[build_number=1]"\n'
        + "[environments]\nb = ['b']\n"
    )
    assert "build number '0' versus '1'; use one build number" in problem
