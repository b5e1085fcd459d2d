"""The package index pip is configured to use, so lockenv needs no index setting by default.

Only ``index-url`` is honoured: ``extra-index-url`` and ``find-links`` would silently widen
where packages come from (dependency confusion), and constraints are a pip-only concept.
The lookup follows pip's own precedence:

1. ``PIP_INDEX_URL``;
2. pip's configuration files, later files overriding earlier ones, and an ``[install]``
   section beating ``[global]`` whatever file either comes from:
   ``$XDG_CONFIG_DIRS/pip/pip.conf`` (default ``/etc/xdg``), ``/etc/pip.conf``,
   ``~/.pip/pip.conf``, ``$XDG_CONFIG_HOME/pip/pip.conf``, ``$VIRTUAL_ENV/pip.conf``, then
   ``PIP_CONFIG_FILE``.  ``PIP_CONFIG_FILE=/dev/null`` disables every file, and an existing
   ``PIP_CONFIG_FILE`` replaces the user files, as in pip;
3. pip's built-in default, read from pip itself at run time (never written here).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from lockenv.errors import UsageError

__all__ = [
    "config_files",
    "configured_index_url",
    "default_index_source",
    "default_index_url",
    "fingerprint",
]

_SECTIONS = ("global", "install")  # later sections win, as for `pip install`
_PIP_DEFAULT_SNIPPET = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"


def default_index_url() -> str:
    """Return the index URL pip would use for ``pip install`` on this machine.

    Raises UsageError when no index is configured and pip is not available to say what its
    default is.
    """
    return configured_index_url() or _pip_builtin_default()


def configured_index_url() -> str | None:
    """The index URL pip is configured with (``PIP_INDEX_URL``, then pip's configuration
    files), or None; never asks pip for its built-in default (no subprocess)."""
    from_env = os.environ.get("PIP_INDEX_URL", "").strip()
    return from_env or _index_url_from_files()


def default_index_source() -> str:
    """Where `default_index_url` takes its answer from, for messages."""
    if os.environ.get("PIP_INDEX_URL", "").strip():
        return "PIP_INDEX_URL"
    for path in reversed(config_files()):
        if any(key.endswith(".index-url") and value.strip() for key, value in _read_config(path)):
            return f"pip configuration file {str(path)!r}"
    return "pip's built-in default"


def fingerprint() -> list[object]:
    """What `default_index_url` depends on, cheaply (no file is read): the variable and
    the size and time of each configuration file.  Equal fingerprints, same answer.

    The variable only by its sha256: the fingerprint is written to a file, and the URL may
    carry credentials."""
    import hashlib

    variable = os.environ.get("PIP_INDEX_URL", "")
    files: list[object] = [hashlib.sha256(variable.encode()).hexdigest()]
    for path in config_files():
        try:
            st = path.stat()
        except OSError:
            continue
        files.append([str(path), st.st_size, st.st_mtime_ns])
    return files


def config_files() -> list[Path]:
    """pip's configuration files in load order (later override earlier); may not exist."""
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file is not None and env_file in ("/dev/null", os.devnull):
        return []
    files: list[Path] = []
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files.extend(Path(d, "pip", "pip.conf") for d in xdg_dirs.split(os.pathsep) if d)
    files.append(Path("/etc/pip.conf"))
    if not (env_file and Path(env_file).exists()):
        home = Path.home()
        files.append(home / ".pip" / "pip.conf")
        xdg_home = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        files.append(Path(xdg_home, "pip", "pip.conf"))
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        files.append(Path(venv, "pip.conf"))
    if env_file:
        files.append(Path(env_file))
    return files


def _index_url_from_files() -> str | None:
    merged: dict[str, str] = {}
    for path in config_files():
        for key, value in _read_config(path):
            merged[key] = value
    for section in reversed(_SECTIONS):
        value = merged.get(f"{section}.index-url", "").strip()
        if value:
            return value
    return None


def _read_config(path: Path) -> Iterator[tuple[str, str]]:
    import configparser

    if not path.is_file():
        return
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError, OSError) as exc:
        raise UsageError(
            f"pip configuration file {str(path)!r} is unreadable ({exc}); fix it, or set "
            "PIP_INDEX_URL or `indexes` in lockenv.toml"
        ) from exc
    for section in parser.sections():
        for name, value in parser.items(section):
            # pip accepts `index_url`, `index-url` and `--index-url` as the same key.
            key = name.lower().lstrip("-").replace("_", "-")
            yield f"{section.lower()}.{key}", value


def _pip_builtin_default() -> str:
    import subprocess

    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        pass
    else:
        return str(PyPI.simple_url)
    # lockenv may run from an environment without pip while the user's python has it.
    for exe in ("python3", "python"):
        path = shutil.which(exe)
        if not path or Path(path).resolve() == Path(sys.executable).resolve():
            continue
        try:
            out = subprocess.run(
                [path, "-c", _PIP_DEFAULT_SNIPPET],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out:
            return out
    raise UsageError(
        "no package index configured and pip is not available to provide its default: "
        "set `indexes` in lockenv.toml, PIP_INDEX_URL, or index-url in pip.conf"
    )
