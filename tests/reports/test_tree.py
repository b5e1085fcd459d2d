"""Tests for lockenv.reports.tree: golden trees from small locks built here.

Covered: markers evaluated per platform, extras as ``name[extra]`` edges, shared subtrees
and cycles printed once then ``(*)``, conda depends with virtual packages, PyPI
requirements met by conda packages, ``root`` and ``invert``, and the JSON form.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from lockenv.errors import UsageError
from lockenv.lockfile import (
    Artifact,
    CondaArtifact,
    LockedEnvironment,
    Lockfile,
    LockInputs,
    PypiArtifact,
)
from lockenv.reports.tree import TreeNode, conda_spec_name, dependency_tree, render_tree

FILES = "https://files.example.invalid"


def _wheel(name: str, version: str, *requires: str) -> PypiArtifact:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return PypiArtifact(
        name=name,
        version=version,
        filename=filename,
        url=f"{FILES}/{filename}",
        sha256=hashlib.sha256(filename.encode()).hexdigest(),
        size=1,
        requires_dist=requires,
    )


def _conda(name: str, version: str, *depends: str) -> CondaArtifact:
    filename = f"{name}-{version}-0.conda"
    return CondaArtifact(
        name=name,
        version=version,
        build="0",
        build_number=0,
        subdir="linux-64",
        filename=filename,
        url=f"{FILES}/conda/{filename}",
        sha256=hashlib.sha256(filename.encode()).hexdigest(),
        size=1,
        depends=depends,
    )


def _lock(
    artifacts: list[Artifact],
    *,
    pypi: tuple[str, ...] = (),
    conda: tuple[str, ...] = (),
    python: str | None = "3.11",
    platforms: tuple[str, ...] = ("linux-64", "win-64"),
) -> Lockfile:
    urls = tuple(a.url for a in artifacts)
    env = LockedEnvironment(
        name="default",
        python=python,
        pypi_requirements=pypi,
        conda_requirements=conda,
        packages=dict.fromkeys(platforms, urls),
    )
    return Lockfile(
        inputs=LockInputs(platforms=platforms),
        environments={"default": env},
        artifacts={a.url: a for a in artifacts},
    )


def _web() -> Lockfile:
    return _lock(
        [
            _wheel(
                "requests",
                "2.31.0",
                "urllib3<3,>=1.21.1",
                "certifi>=2017.4.17",
                "PySocks!=1.5.7,>=1.5.6; extra == 'socks'",
                "urllib3[socks]; extra == 'socks'",
            ),
            _wheel("urllib3", "2.2.1", "pysocks>=1.5.6; extra == 'socks'"),
            _wheel("certifi", "2024.2.2"),
            _wheel("pysocks", "1.7.1"),
            _wheel("rich", "13.7.1", "markdown-it-py>=2.2", "colorama; sys_platform == 'win32'"),
            _wheel("markdown-it-py", "3.0.0", "mdurl~=0.1"),
            _wheel("mdurl", "0.1.2"),
            _wheel("colorama", "0.4.6"),
            _wheel("app", "1.0", "rich", "requests[socks]"),
        ],
        pypi=("requests[socks]>=2", "rich>=13", "app"),
    )


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        (
            "linux-64",
            """\
app 1.0
├── requests[socks] 2.31.0
│   ├── certifi 2024.2.2
│   ├── pysocks 1.7.1
│   └── urllib3[socks] 2.2.1
│       └── pysocks 1.7.1
└── rich 13.7.1
    └── markdown-it-py 3.0.0
        └── mdurl 0.1.2
requests[socks] 2.31.0 (*)
rich 13.7.1 (*)
(*) Package tree already displayed
""",
        ),
        (
            "win-64",
            """\
app 1.0
├── requests[socks] 2.31.0
│   ├── certifi 2024.2.2
│   ├── pysocks 1.7.1
│   └── urllib3[socks] 2.2.1
│       └── pysocks 1.7.1
└── rich 13.7.1
    ├── colorama 0.4.6
    └── markdown-it-py 3.0.0
        └── mdurl 0.1.2
requests[socks] 2.31.0 (*)
rich 13.7.1 (*)
(*) Package tree already displayed
""",
        ),
    ],
)
def test_forward_tree_golden(platform: str, expected: str) -> None:
    assert render_tree(dependency_tree(_web(), "default", platform)) == expected


def test_extras_of_a_dependency_are_followed() -> None:
    lock = _lock(
        [
            _wheel("top", "1", "mid[fast]"),
            _wheel("mid", "2", "speed; extra == 'fast'", "slow; extra == 'slow'"),
            _wheel("speed", "3"),
            _wheel("slow", "4"),
        ],
        pypi=("top",),
    )
    assert render_tree(dependency_tree(lock, "default", "linux-64")) == (
        "top 1\n└── mid[fast] 2\n    └── speed 3\n"
    )


def test_root_markers_are_evaluated_per_platform() -> None:
    lock = _lock([_wheel("pywin32", "306")], pypi=("pywin32; sys_platform == 'win32'",))
    assert render_tree(dependency_tree(lock, "default", "linux-64")) == ""
    assert render_tree(dependency_tree(lock, "default", "win-64")) == "pywin32 306\n"


def test_cycle_is_cut() -> None:
    lock = _lock([_wheel("a", "1", "b"), _wheel("b", "1", "a")], pypi=("a",))
    assert render_tree(dependency_tree(lock, "default", "linux-64")) == (
        "a 1\n└── b 1\n    └── a 1 (*)\n(*) Package tree already displayed\n"
    )


def test_conda_tree_with_virtual_and_missing() -> None:
    lock = _lock(
        [
            _conda("python", "3.12.1", "libzlib >=1.2.13,<2.0a0", "__glibc >=2.17,<3.0.a0"),
            _conda("libzlib", "1.3.1", "libgcc-ng >=12"),
            _conda("numpy", "1.26.4", "python >=3.12,<3.13.0a0", "libzlib"),
        ],
        conda=("numpy >=1.26", "conda-forge::python 3.12.*"),
        python=None,
        platforms=("linux-64",),
    )
    assert render_tree(dependency_tree(lock, "default", "linux-64")) == (
        "numpy 1.26.4\n"
        "├── libzlib 1.3.1\n"
        "│   └── libgcc-ng >=12 (not locked)\n"
        "└── python 3.12.1\n"
        "    ├── __glibc >=2.17,<3.0.a0 (virtual)\n"
        "    └── libzlib 1.3.1 (*)\n"
        "python 3.12.1 (*)\n"
        "(*) Package tree already displayed\n"
    )


def test_mixed_environment_marks_pypi_and_uses_conda_providers() -> None:
    lock = _lock(
        [
            _conda("python", "3.12.1"),
            _conda("numpy", "1.26.4", "python"),
            _wheel("pandas-lite", "0.1", "numpy>=1.20", "tzdata"),
        ],
        conda=("python 3.12.*", "numpy"),
        pypi=("pandas-lite",),
        python=None,
        platforms=("linux-64",),
    )
    assert render_tree(dependency_tree(lock, "default", "linux-64")) == (
        "numpy 1.26.4\n"
        "└── python 3.12.1\n"
        "pandas-lite 0.1 (pypi)\n"
        "├── numpy 1.26.4 (*)\n"
        "└── tzdata (not locked)\n"
        "python 3.12.1\n"
        "(*) Package tree already displayed\n"
    )


def test_root_shows_one_package_with_the_extras_it_is_asked_for() -> None:
    assert render_tree(dependency_tree(_web(), "default", "linux-64", root="URLLIB3")) == (
        "urllib3[socks] 2.2.1\n└── pysocks 1.7.1\n"
    )


def test_invert_with_root() -> None:
    assert render_tree(
        dependency_tree(_web(), "default", "linux-64", root="mdurl", invert=True)
    ) == ("mdurl 0.1.2\n└── markdown-it-py 3.0.0\n    └── rich 13.7.1\n        └── app 1.0\n")


def test_invert_shows_the_extra_that_pulls_a_package_in() -> None:
    tree = dependency_tree(_web(), "default", "linux-64", root="pysocks", invert=True)
    assert render_tree(tree) == (
        "pysocks 1.7.1\n"
        "├── requests[socks] 2.31.0\n"
        "│   └── app 1.0\n"
        "└── urllib3[socks] 2.2.1\n"
        "    └── requests 2.31.0 (*)\n"
        "(*) Package tree already displayed\n"
    )


def test_invert_without_root_starts_from_leaves() -> None:
    tree = dependency_tree(_web(), "default", "linux-64", invert=True)
    assert [n.name for n in tree] == ["certifi", "colorama", "mdurl", "pysocks"]
    # colorama is only needed on Windows: nothing depends on it on Linux.
    assert tree[1].children == ()


def test_unknown_root_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"'nope'.*lockenv list"):
        dependency_tree(_web(), "default", "linux-64", root="nope")


def test_json_form() -> None:
    tree = dependency_tree(_web(), "default", "linux-64", root="urllib3")
    data = json.loads(json.dumps([n.to_json() for n in tree]))
    assert data == [
        {
            "name": "urllib3",
            "version": "2.2.1",
            "kind": "pypi",
            "extras": ["socks"],
            "requested": "urllib3",
            "repeated": False,
            "children": [
                {
                    "name": "pysocks",
                    "version": "1.7.1",
                    "kind": "pypi",
                    "extras": [],
                    "requested": "pysocks>=1.5.6",
                    "repeated": False,
                    "children": [],
                }
            ],
        }
    ]


def test_render_of_nothing_is_empty() -> None:
    assert render_tree([]) == ""
    assert render_tree([TreeNode(name="x", version="1", kind="pypi")]) == "x 1\n"


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("numpy >=1.26", "numpy"),
        ("conda-forge::python 3.12.*", "python"),
        ("libgcc-ng>=12", "libgcc-ng"),
        ("python_abi 3.12.* *_cp312", "python_abi"),
        ("__glibc >=2.17,<3.0.a0", "__glibc"),
        ("pkg[version='>=1']", "pkg"),
    ],
)
def test_conda_spec_name(spec: str, name: str) -> None:
    assert conda_spec_name(spec) == name
