"""lockenv.lock.pypi.sources: path, git (a local repository over file://) and URL dependencies
locked against the fixture index; static [project] metadata read without a build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lockenv.errors import LockenvError, MetadataError
from lockenv.lock.manifest import parse_manifest
from lockenv.lock.pypi.sources import static_project_metadata
from lockenv.lock.resolve import LockOptions, lock_manifest
from lockenv.lockfile import PypiArtifact, PypiSource

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

PYPROJECT = """\
[build-system]
requires = ["tinybackend"]
build-backend = "tinybackend"

[project]
name = "{name}"
version = "{version}"
dependencies = {dependencies}
"""


def make_project(root: Path, name: str, version: str = "1.0", deps: str = "[]") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        PYPROJECT.format(name=name, version=version, dependencies=deps)
    )
    package = root / name.replace("-", "_")
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(f"NAME = {name!r}\n")
    return root


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def lock_of(root: Path, index: Path, deps: str, previous: object = None, **options: object):  # type: ignore[no-untyped-def]
    text = (
        "[project]\n"
        'platforms = ["linux-64", "win-64"]\n'
        f'indexes = ["{(index / "simple").as_uri()}"]\n'
        'requires-python = "==3.11.*"\n'
        "\n[pypi-dependencies]\n" + deps
    )
    manifest = parse_manifest(text, path=root / "lockenv.toml")
    return lock_manifest(
        manifest,
        previous=previous,  # type: ignore[arg-type]
        options=LockOptions(cache_dir=root / "cache", **options),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[project]\nname = "My.Pkg"\nversion = "2.0"\ndependencies = ["alpha>=1"]\n'
            'requires-python = ">=3.10"\n'
            '[project.optional-dependencies]\nfast = ["delta; os_name == \'nt\'", "beta"]\n',
            (
                "my-pkg",
                "2.0",
                ["alpha>=1", 'delta; os_name == "nt" and extra == "fast"', 'beta; extra == "fast"'],
                ">=3.10",
                ["fast"],
            ),
        ),
        ('[project]\nname = "x"\nversion = "1"\n', ("x", "1", [], None, [])),
    ],
)
def test_static_project_metadata(tmp_path: Path, text: str, expected: tuple[object, ...]) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    meta = static_project_metadata(tmp_path)
    assert meta is not None
    got = (
        meta.name,
        str(meta.version),
        [str(r) for r in meta.requires_dist],
        str(meta.requires_python) if meta.requires_python else None,
        list(meta.provides_extra),
    )
    assert got == expected


@pytest.mark.parametrize(
    "text",
    [
        '[project]\nname = "x"\ndynamic = ["version"]\n',
        '[project]\nname = "x"\nversion = "1"\ndynamic = ["dependencies"]\n',
        "[tool.other]\nx = 1\n",
        "not toml [",
    ],
)
def test_dynamic_or_missing_project_needs_a_build(tmp_path: Path, text: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    assert static_project_metadata(tmp_path) is None


def test_invalid_project_metadata(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "one"\n')
    with pytest.raises(MetadataError, match="not a PEP 440 version"):
        static_project_metadata(tmp_path)


def test_path_dependency(tmp_path: Path, fixture_index_dir: Path) -> None:
    make_project(tmp_path / "libs" / "mylib", "mylib", "0.3", '["alpha<2"]')
    lock = lock_of(
        tmp_path,
        fixture_index_dir,
        'mylib = { path = "libs/mylib", editable = true }\n',
    )
    source = lock.artifacts["libs/mylib"]
    assert isinstance(source, PypiSource)
    assert (source.version, source.editable, source.requires_dist) == ("0.3", True, ("alpha<2",))
    for platform in ("linux-64", "win-64"):
        assert sorted(a.name for a in lock.packages_for("default", platform)) == [
            "alpha",
            "mylib",
        ]


def test_path_dependency_with_dynamic_metadata_asks_the_builder(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    project = make_project(tmp_path / "dyn", "dyn", "0.1", '["alpha<2"]')
    text = (
        (project / "pyproject.toml").read_text().replace('version = "0.1"', 'dynamic = ["version"]')
    )
    (project / "pyproject.toml").write_text(text)
    with pytest.raises(LockenvError, match="metadata is dynamic"):
        lock_of(tmp_path, fixture_index_dir, 'dyn = { path = "dyn" }\n')


def test_path_dependency_named_wrongly(tmp_path: Path, fixture_index_dir: Path) -> None:
    make_project(tmp_path / "lib", "reallib")
    with pytest.raises(LockenvError, match=r"is the project 'reallib'; name the dependency"):
        lock_of(tmp_path, fixture_index_dir, 'other = { path = "lib" }\n')


def test_transitive_direct_reference_must_be_declared(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    make_project(tmp_path / "lib", "lib", "1.0", '["other @ https://example.invalid/o-1.0.tar.gz"]')
    with pytest.raises(LockenvError, match=r"declare other in \[pypi-dependencies\]"):
        lock_of(tmp_path, fixture_index_dir, 'lib = { path = "lib" }\n')


def test_a_source_must_satisfy_other_requirements(tmp_path: Path, fixture_index_dir: Path) -> None:
    make_project(tmp_path / "alphafork", "alpha", "3.0")  # tinysdist needs alpha<2
    with pytest.raises(LockenvError, match="cannot lock") as info:
        lock_of(tmp_path, fixture_index_dir, 'alpha = { path = "alphafork" }\ntinysdist = "*"\n')
    assert info.value.exit_code == 2


@needs_git
def test_git_dependency_pins_the_commit(tmp_path: Path, fixture_index_dir: Path) -> None:
    repo = make_project(tmp_path / "repo" / "sub", "gitpkg", "1.0", '["delta"]').parent
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    git(repo, "tag", "v1")
    first = git(repo, "rev-parse", "HEAD")
    branch = git(repo, "branch", "--show-current")
    deps = f'gitpkg = {{ git = "{repo.as_uri()}", branch = "{branch}", subdirectory = "sub" }}\n'
    lock = lock_of(tmp_path, fixture_index_dir, deps)
    (source,) = [a for a in lock.artifacts.values() if isinstance(a, PypiSource)]
    assert (source.commit, source.subdirectory, source.requires_dist) == (first, "sub", ("delta",))
    # The branch moves on: a re-lock keeps the locked commit; --update moves it.
    (repo / "sub" / "pyproject.toml").write_text(
        (repo / "sub" / "pyproject.toml").read_text().replace('"1.0"', '"1.1"')
    )
    git(repo, "commit", "-qam", "two")
    second = git(repo, "rev-parse", "HEAD")
    kept = lock_of(tmp_path, fixture_index_dir, deps, previous=lock)
    assert [a.commit for a in kept.artifacts.values() if isinstance(a, PypiSource)] == [first]
    moved = lock_of(tmp_path, fixture_index_dir, deps, previous=lock, update=frozenset({"gitpkg"}))
    (new,) = [a for a in moved.artifacts.values() if isinstance(a, PypiSource)]
    assert (new.commit, new.version) == (second, "1.1")
    # A tag names its commit.
    by_tag = lock_of(
        tmp_path,
        fixture_index_dir,
        f'gitpkg = {{ git = "{repo.as_uri()}", tag = "v1", subdirectory = "sub" }}\n',
    )
    assert [a.commit for a in by_tag.artifacts.values() if isinstance(a, PypiSource)] == [first]


@needs_git
def test_unknown_git_reference(tmp_path: Path, fixture_index_dir: Path) -> None:
    repo = make_project(tmp_path / "repo", "gitpkg")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    with pytest.raises(LockenvError, match=r"has no tag 'nope'"):
        lock_of(
            tmp_path, fixture_index_dir, f'gitpkg = {{ git = "{repo.as_uri()}", tag = "nope" }}\n'
        )


def test_url_dependency_records_sha256_and_size(
    tmp_path: Path, fixture_index_dir: Path, index_server: object
) -> None:
    wheel = "alpha-1.0-py3-none-any.whl"
    url = f"{index_server.url.removesuffix('/simple/')}/files/{wheel}"  # type: ignore[attr-defined]
    lock = lock_of(tmp_path, fixture_index_dir, f'alpha = {{ url = "{url}" }}\n')
    artifact = lock.artifacts[url]
    assert isinstance(artifact, PypiArtifact) and artifact.index is None
    data = (fixture_index_dir / "files" / wheel).read_bytes()
    import hashlib

    assert (artifact.sha256, artifact.size) == (hashlib.sha256(data).hexdigest(), len(data))
    # An sdist by URL: its static PKG-INFO says what it needs.
    sdist = (fixture_index_dir / "files" / "tinysdist-1.0.tar.gz").as_uri()
    lock = lock_of(tmp_path, fixture_index_dir, f'tinysdist = {{ url = "{sdist}" }}\n')
    assert sorted(a.name for a in lock.packages_for("default", "linux-64")) == [
        "alpha",
        "tinysdist",
    ]
    assert Requirement("alpha<2") in [
        Requirement(r)
        for r in lock.artifacts[sdist].requires_dist  # type: ignore[union-attr]
    ]
