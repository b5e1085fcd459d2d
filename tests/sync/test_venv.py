"""Interpreter discovery and virtual environments written without `python -m venv`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lockenv.errors import InstallError
from lockenv.sync import venv
from lockenv.sync.venv import create_venv, find_interpreter, interpreter_info, layout_for

XY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _python_at(prefix: Path, code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return out.split()


def test_running_interpreter_is_preferred() -> None:
    found = find_interpreter(XY)
    assert found.major_minor == XY
    assert found.executable == Path(getattr(sys, "_base_executable", sys.executable))


@pytest.mark.parametrize(
    ("sys_version", "expected"),
    [
        ("3.11.7 (main, Dec  8 2023, 18:56:58) [GCC 12.2.0]", "3.11.7"),
        ("3.13.0rc1 (main, Aug  1 2024, 10:00:00) [Clang 15.0.0 ]", "3.13.0rc1"),
        ("3.12.1+ (heads/3.12:abc, Jan 1 2024, 00:00:00) [GCC 13.2.0]", "3.12.1+"),
        ("3.14 (main) [GCC]", "3.14.0"),
    ],
)
def test_the_running_version_is_what_platform_says(
    sys_version: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platform

    assert venv._python_version() == platform.python_version()  # this Python
    monkeypatch.setattr(sys, "version", sys_version)
    assert venv._python_version() == expected


def test_explicit_python(tmp_path: Path) -> None:
    found = find_interpreter(XY, python=Path(sys.executable), cache_dir=tmp_path)
    assert found.major_minor == XY


def test_explicit_python_of_the_wrong_version() -> None:
    with pytest.raises(InstallError, match=r"lock was made for CPython 3\.2"):
        find_interpreter("3.2", python=Path(sys.executable))


def test_explicit_path_that_is_not_python(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(InstallError, match="not a runnable Python"):
        find_interpreter(XY, python=fake, cache_dir=tmp_path)


def test_none_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    with pytest.raises(InstallError) as info:
        find_interpreter("3.98")
    assert "Python 3.98" in str(info.value)
    assert "--python PATH" in str(info.value)


def test_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend lockenv runs on another Python: the search must find one on PATH.
    monkeypatch.setattr(venv.sys, "version_info", (3, 1, 0))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = Path(getattr(sys, "_base_executable", sys.executable))
    (bin_dir / f"python{XY}").symlink_to(real)
    monkeypatch.setenv("PATH", str(bin_dir))
    found = find_interpreter(XY, cache_dir=tmp_path / "cache")
    assert found.major_minor == XY


def test_interpreter_answer_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "py"
    link.symlink_to(Path(getattr(sys, "_base_executable", sys.executable)))
    first = interpreter_info(link, tmp_path)
    assert first is not None
    assert list((tmp_path / "interpreters").iterdir())

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError("asked the interpreter again")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    assert interpreter_info(link, tmp_path) == first


def test_created_venv_is_a_working_virtual_environment(tmp_path: Path) -> None:
    interp = find_interpreter(XY)
    prefix = tmp_path / "env"
    create_venv(layout_for(prefix, XY), interp, prompt="demo")
    cfg = (prefix / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    assert f"home = {interp.executable.parent}" in cfg
    assert os.readlink(prefix / "bin" / f"python{XY}") == "python"
    if sys.platform.startswith("linux"):
        assert os.readlink(prefix / "lib64") == "lib"
    code = (
        "import sys, site; "
        "print(sys.prefix, sys.base_prefix != sys.prefix, site.getsitepackages()[0])"
    )
    out = _python_at(prefix, code)
    assert out == [str(prefix), "True", str(prefix / "lib" / f"python{XY}" / "site-packages")]


def test_staged_venv_names_the_final_prefix(tmp_path: Path) -> None:
    interp = find_interpreter(XY)
    staging, final = tmp_path / "staging", tmp_path / "final"
    create_venv(layout_for(final, XY, root=staging), interp)
    assert str(staging) not in (staging / "bin" / "activate").read_text()
    assert str(final) in (staging / "bin" / "activate").read_text()
    os.rename(staging, final)
    assert _python_at(final, "import sys; print(sys.prefix)") == [str(final)]


def test_activate_scripts(tmp_path: Path) -> None:
    prefix = tmp_path / "it's env"
    create_venv(layout_for(prefix, XY), find_interpreter(XY), prompt="demo")
    script = (
        f"export PYTHONHOME=/x; source {str(prefix / 'bin' / 'activate')!r}; "
        'echo "$VIRTUAL_ENV|${PYTHONHOME:-unset}|$(command -v python)"; deactivate; '
        'echo "${VIRTUAL_ENV:-gone}|$PYTHONHOME"'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == f"{prefix}|unset|{prefix / 'bin' / 'python'}"
    assert lines[1] == "gone|/x"
    fish = (prefix / "bin" / "activate.fish").read_text()
    assert (
        "set -gx VIRTUAL_ENV 'it\\'s env'".replace("it\\'s env", str(prefix).replace("'", "\\'"))
        in fish
    )
