"""`lockenv init --from`: requirements.txt and environment.yml into a new manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockenv.lock.manifest import load_manifest

from cli_support import lockenv


def test_from_requirements_txt(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# comment\nrequests>=2.31  # trailing\n\nrich[jupyter]>=13\n"
        'colorama; sys_platform == "win32"\n'
    )
    lockenv(tmp_path, "init", "--platform", "linux-64", "--from", "requirements.txt")
    manifest = load_manifest(tmp_path / "lockenv.toml")
    deps = {d.name: str(d.requirement) for d in manifest.default_feature.pypi_dependencies}
    assert deps == {
        "requests": "requests>=2.31",
        "rich": "rich[jupyter]>=13",
        "colorama": 'colorama; sys_platform == "win32"',
    }


def test_from_environment_yml(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text(
        "name: x\nchannels: [conda-forge]\ndependencies:\n"
        "  - python=3.11\n  - conda-forge::numpy >=1.26\n  - zlib\n"
        "  - pip:\n    - requests==2.32.3\n"
    )
    lockenv(tmp_path, "init", "--platform", "linux-64", "--from", "environment.yml")
    manifest = load_manifest(tmp_path / "lockenv.toml")
    conda = {d.name: d.spec for d in manifest.default_feature.dependencies}
    assert conda == {"python": "3.11.*", "numpy": ">=1.26", "zlib": "*"}
    pypi = [str(d.requirement) for d in manifest.default_feature.pypi_dependencies]
    assert pypi == ["requests==2.32.3"]


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("requirements.txt", "-e .\n", ["line 1", "'-e'"]),
        ("requirements.txt", "requests>=2 @@\n", ["line 1", "PEP 508"]),
        ("environment.yml", "dependencies: [{conda: x}]\n", ["dependencies[0]"]),
        ("environment.yml", "dependencies: [\n", ["not valid YAML"]),
    ],
)
def test_import_errors_are_one_line(
    tmp_path: Path, name: str, content: str, words: list[str]
) -> None:
    (tmp_path / name).write_text(content)
    result = lockenv(tmp_path, "init", "--platform", "linux-64", "--from", name, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    for word in words:
        assert word in result.stderr
    assert not (tmp_path / "lockenv.toml").exists()
