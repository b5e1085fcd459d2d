"""Real projects against the real default index (opt-in: LOCKENV_NETWORK_TESTS=1).

The five situations of the source-distribution work: sdist-only requirements of a Flask
app built at sync; scipy on macOS 11 locked with a note; an old-glibc cluster given
wheel-only pins; a real conflict reported as one; a pyproject.toml CLI project run as
itself.  Where uv is on PATH, pins are compared with ``uv pip compile``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_support import lockenv

pytestmark = pytest.mark.network


def _uv() -> str | None:
    return shutil.which("uv")


def _manifest(root: Path, deps: str, *, platforms: str, extra: str = "") -> None:
    (root / "lockenv.toml").write_text(
        "[project]\n"
        'name = "real"\n'
        f"platforms = {platforms}\n"
        'requires-python = "==3.11.*"\n'
        f"{extra}\n[pypi-dependencies]\n{deps}"
    )


def _pins(root: Path, platform: str) -> dict[str, tuple[str, str]]:
    rows = json.loads(lockenv(root, "list", "--platform", platform, "--json").stdout)
    return {row["name"]: (row["version"], row["filename"]) for row in rows}


def _uv_compile(root: Path, requirements: str, platform: str, *extra: str) -> dict[str, str]:
    from lockenv.pipconfig import default_index_url

    uv = _uv()
    assert uv is not None
    (root / "req.in").write_text(requirements)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")} | {"UV_NO_CONFIG": "1"}
    out = subprocess.run(
        [
            uv,
            "pip",
            "compile",
            "-q",
            "--no-header",
            "--no-annotate",
            "--index-url",
            default_index_url(),
            "--python-version",
            "3.11",
            "--python-platform",
            platform,
            *extra,
            "req.in",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = {}
    for line in out.splitlines():
        if "==" in line:
            name, version = line.strip().split("==")
            pins[name] = version
    return pins


def test_flask_app_with_sdist_only_requirements(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask\nlangdetect\nFlask-Mail==0.9.1\n")
    lockenv(tmp_path, "init", "--from", "requirements.txt", "--requires-python", "==3.11.*")
    locked = lockenv(tmp_path, "lock")
    notes = [line for line in locked.stderr.splitlines() if line.startswith("note:")]
    assert any(n.startswith("note: langdetect 1.0.9 is built from source") for n in notes)
    assert any(n.startswith("note: flask-mail 0.9.1 is built from source") for n in notes)
    synced = lockenv(tmp_path, "sync")
    assert "building langdetect 1.0.9" in synced.stderr
    out = lockenv(
        tmp_path,
        "run",
        "--",
        "python",
        "-c",
        "import langdetect, flask_mail, flask; print(langdetect.detect('Das ist ein Haus'))",
    ).stdout
    assert out.strip() == "de"
    assert lockenv(tmp_path, "verify").returncode == 0


def test_scipy_on_macos_11_is_built_there_with_a_note(tmp_path: Path) -> None:
    _manifest(
        tmp_path,
        'scipy = "*"\n',
        platforms='["linux-64", "osx-arm64"]',
        extra='\n[system-requirements]\nmacos = "11.0"\n',
    )
    locked = lockenv(tmp_path, "lock")
    notes = [line for line in locked.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "scipy" in notes[0] and "osx-arm64" in notes[0], notes
    assert "at macOS 11.0" in notes[0] and "raise [system-requirements] macos to" in notes[0]
    linux, mac = _pins(tmp_path, "linux-64"), _pins(tmp_path, "osx-arm64")
    assert linux["scipy"][1].endswith(".whl") and mac["scipy"][1].endswith(".tar.gz")
    assert mac["numpy"][1].endswith(".whl")  # only what must be built is built


@pytest.mark.skipif(_uv() is None, reason="uv is not on PATH")
def test_old_glibc_gets_the_wheel_only_pins_uv_finds(tmp_path: Path) -> None:
    _manifest(
        tmp_path,
        'numpy = "*"\npandas = "*"\nscipy = "*"\n',
        platforms='["linux-64"]',
        extra='\n[system-requirements]\nglibc = "2.17"\n',
    )
    locked = lockenv(tmp_path, "lock")
    assert "note:" not in locked.stderr  # nothing to build: wheels first found wheels
    ours = {name: version for name, (version, _) in _pins(tmp_path, "linux-64").items()}
    theirs = _uv_compile(
        tmp_path, "numpy\npandas\nscipy\n", "x86_64-manylinux_2_17", "--only-binary", ":all:"
    )
    assert ours == theirs
    assert all(f.endswith(".whl") for _, f in _pins(tmp_path, "linux-64").values())


def test_a_real_conflict_is_reported_as_one(tmp_path: Path) -> None:
    _manifest(tmp_path, 'pandas = ">=2.2"\nnumpy = "<1.20"\n', platforms='["linux-64"]')
    result = lockenv(tmp_path, "lock", check=False)
    assert result.returncode == 2, result.stderr
    assert "numpy" in result.stderr and "pandas" in result.stderr
    assert "conflict" in result.stderr


def test_a_pyproject_cli_project_runs_itself_and_its_tests(tmp_path: Path) -> None:
    project = tmp_path / "greeter"
    (project / "src" / "greeter").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "greeter"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n'
        'dependencies = ["click>=8"]\n\n[project.scripts]\ngreet = "greeter:main"\n\n'
        '[dependency-groups]\ntest = ["pytest>=8"]\n'
    )
    (project / "src" / "greeter" / "__init__.py").write_text(
        "import click\n\n\n@click.command()\n@click.argument('name')\n"
        "def main(name):\n    click.echo(f'hello {name}')\n"
    )
    (project / "tests" / "test_greet.py").write_text(
        "from click.testing import CliRunner\nfrom greeter import main\n\n\n"
        "def test_greet():\n    assert CliRunner().invoke(main, ['x']).output == 'hello x\\n'\n"
    )
    lockenv(project, "init", "--requires-python", "==3.11.*")
    lockenv(project, "lock")
    assert lockenv(project, "run", "--", "greet", "world").stdout == "hello world\n"
    tested = lockenv(project, "run", "-e", "test", "--", "pytest", "-q", "tests")
    assert "1 passed" in tested.stdout
    assert lockenv(project, "lock", "--check").returncode == 0


@pytest.mark.skipif(_uv() is None, reason="uv is not on PATH")
def test_wheel_only_pins_still_equal_uv(tmp_path: Path) -> None:
    _manifest(tmp_path, 'requests = "*"\nnumpy = "*"\nclick = "*"\n', platforms='["linux-64"]')
    lockenv(tmp_path, "lock")
    ours = {name: version for name, (version, _) in _pins(tmp_path, "linux-64").items()}
    assert ours == _uv_compile(tmp_path, "requests\nnumpy\nclick\n", "x86_64-manylinux_2_28")
