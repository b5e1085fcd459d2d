"""lockenv.pipconfig: pip's index-url, in pip's order of precedence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockenv import pipconfig
from lockenv.errors import UsageError
from lockenv.pipconfig import config_files, default_index_url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty machine: no global, user or site config files, no PIP_ variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("PIP_CONFIG_FILE", raising=False)
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    # /etc/pip.conf of the machine running the tests must not leak in.
    real = pipconfig._read_config
    monkeypatch.setattr(
        pipconfig,
        "_read_config",
        lambda path: iter(()) if str(path) == "/etc/pip.conf" else real(path),
    )
    return home


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_env_var_beats_everything(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(home / ".config/pip/pip.conf", "[install]\nindex-url = http://file.example.invalid/\n")
    monkeypatch.setenv("PIP_INDEX_URL", " http://env.example.invalid/simple ")
    assert default_index_url() == "http://env.example.invalid/simple"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # later files override earlier ones
        (
            {
                "xdg/pip/pip.conf": "[global]\nindex-url = http://xdg.example.invalid/\n",
                "home/.pip/pip.conf": "[global]\nindex-url = http://legacy.example.invalid/\n",
                "home/.config/pip/pip.conf": "[global]\nindex-url = http://user.example.invalid/\n",
            },
            "http://user.example.invalid/",
        ),
        # [install] beats [global] whatever the file
        (
            {
                "xdg/pip/pip.conf": "[install]\nindex-url = http://install.example.invalid/\n",
                "home/.config/pip/pip.conf": "[global]\nindex_url = http://g.example.invalid/\n",
            },
            "http://install.example.invalid/",
        ),
        # the site file ($VIRTUAL_ENV/pip.conf) beats the user file
        (
            {
                "home/.config/pip/pip.conf": "[global]\nindex-url = http://user.example.invalid/\n",
                "venv/pip.conf": "[global]\nindex-url = http://venv.example.invalid/\n",
            },
            "http://venv.example.invalid/",
        ),
        # extra-index-url, find-links and constraints are ignored on purpose
        (
            {
                "home/.config/pip/pip.conf": (
                    "[global]\nextra-index-url = http://extra.example.invalid/\n"
                    "find-links = /opt/wheels\nconstraint = /c.txt\n"
                ),
            },
            None,
        ),
    ],
)
def test_config_file_precedence(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, str],
    expected: str | None,
) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "venv"))
    monkeypatch.setattr(pipconfig, "_pip_builtin_default", lambda: "BUILTIN")
    for rel, text in files.items():
        _write(tmp_path / rel, text)
    assert default_index_url() == (expected or "BUILTIN")


def test_pip_config_file_overrides_and_hides_user_files(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(home / ".config/pip/pip.conf", "[install]\nindex-url = http://user.example.invalid/\n")
    env_file = _write(tmp_path / "env.conf", "[global]\nindex-url = http://env.example.invalid/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(env_file))
    assert home / ".config/pip/pip.conf" not in config_files()
    assert config_files()[-1] == env_file
    assert default_index_url() == "http://env.example.invalid/"


def test_pip_config_file_devnull_disables_all_files(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(home / ".config/pip/pip.conf", "[global]\nindex-url = http://user.example.invalid/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert config_files() == []
    monkeypatch.setattr(pipconfig, "_pip_builtin_default", lambda: "BUILTIN")
    assert default_index_url() == "BUILTIN"


def test_builtin_default_comes_from_pip(home: Path) -> None:
    pytest.importorskip("pip")
    from pip._internal.models.index import PyPI

    assert default_index_url() == PyPI.simple_url


def test_no_pip_at_all_is_a_usage_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pip(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("pip"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_pip)
    monkeypatch.setattr(pipconfig.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="PIP_INDEX_URL"):
        default_index_url()


def test_broken_config_file_names_it(home: Path) -> None:
    path = _write(home / ".config/pip/pip.conf", "index-url = no section\n")
    with pytest.raises(UsageError, match=str(path)):
        default_index_url()
