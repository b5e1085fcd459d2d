"""Host interpreters and virtual environments, made without running ``python -m venv``.

A PyPI-only environment is a virtual environment on a host CPython whose ``X.Y`` matches
the lock.  Creating one is a few symlinks, a ``pyvenv.cfg`` and activation scripts, so it
is written here directly (milliseconds) rather than by a ``venv`` subprocess.  Every
absolute path written (``pyvenv.cfg``, activation scripts, shebangs) names the *final*
prefix, so an environment built in a staging directory works once renamed into place.

Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lockenv.errors import InstallError

__all__ = [
    "EnvLayout",
    "Interpreter",
    "base_interpreter",
    "create_venv",
    "find_interpreter",
    "interpreter_info",
    "layout_for",
]

_IS_WINDOWS = sys.platform == "win32"
_QUERY = (
    "import json, sys, platform\n"
    "print(json.dumps({'executable': getattr(sys, '_base_executable', sys.executable),"
    " 'version': platform.python_version(),"
    " 'implementation': sys.implementation.name}))"
)
_QUERY_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Interpreter:
    """A host (non-virtual) CPython: its real executable and full version ("3.11.7")."""

    executable: Path
    version: str
    implementation: str = "cpython"

    @property
    def major_minor(self) -> str:
        """ "3.11" of "3.11.7"."""
        return ".".join(self.version.split(".")[:2])


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class EnvLayout:
    """Where things go in an environment whose files are written under ``root``.

    ``prefix`` is where the environment will live (absolute); ``root`` is where it is being
    built (the staging directory, or the prefix itself).  ``conda``: a conda prefix, whose
    interpreter on Windows is ``python.exe`` at the root rather than in ``Scripts``.
    """

    root: Path
    prefix: Path
    python_version: str  # "3.11"
    conda: bool = False
    # CEP 17: where the conda `python` package says its site-packages is
    # (``lib/python3.13t/site-packages`` for a free-threading build); "" for the default.
    python_site_packages_path: str = ""

    @property
    def site_packages_rel(self) -> str:
        """site-packages relative to the prefix, POSIX separators."""
        if self.python_site_packages_path:
            return self.python_site_packages_path
        if _IS_WINDOWS:
            return "Lib/site-packages"
        return f"lib/python{self.python_version}/site-packages"

    @property
    def scripts_rel(self) -> str:
        return "Scripts" if _IS_WINDOWS else "bin"

    @property
    def include_rel(self) -> str:
        """Where wheel headers go (one subdirectory per distribution), as pip puts them."""
        if _IS_WINDOWS:
            return "Include/site"
        return f"include/site/python{self.python_version}"

    @property
    def site_packages(self) -> Path:
        return self.root / self.site_packages_rel

    @property
    def prefix_python(self) -> str:
        """The environment's interpreter at its final place (for shebangs)."""
        if _IS_WINDOWS:
            if self.conda:
                return os.path.join(str(self.prefix), "python.exe")
            return os.path.join(str(self.prefix), self.scripts_rel, "python.exe")
        return os.path.join(str(self.prefix), self.scripts_rel, "python")


def layout_for(
    prefix: Path,
    python_version: str,
    *,
    root: Path | None = None,
    conda: bool = False,
    python_site_packages_path: str = "",
) -> EnvLayout:
    """The layout of an environment at ``prefix`` (built in ``root``, default the prefix).

    ``python_site_packages_path``: a conda python's own site-packages (CEP 17), already
    checked to be a relative path inside the prefix.
    """
    prefix = Path(os.path.abspath(prefix))
    return EnvLayout(
        root=root or prefix,
        prefix=prefix,
        python_version=python_version,
        conda=conda,
        python_site_packages_path=python_site_packages_path,
    )


# -- interpreters ---------------------------------------------------------------------------


def interpreter_info(path: Path, cache_dir: Path | None = None) -> Interpreter | None:
    """Ask the interpreter at ``path`` what it is (one tiny subprocess, answer cached).

    Returns None when ``path`` is not a runnable Python (a broken pyenv shim, say).
    """
    import hashlib
    import subprocess

    try:
        real = Path(os.path.realpath(path))
        st = real.stat()
    except OSError:
        return None
    if os.path.abspath(path) == os.path.abspath(sys.executable):
        return _running_interpreter()
    key = hashlib.sha256(
        f"{_QUERY_FORMAT}\0{os.path.abspath(path)}\0{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    ).hexdigest()
    cache_file = None if cache_dir is None else cache_dir / "interpreters" / f"{key}.json"
    if cache_file is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(cache_file.read_text(encoding="utf-8"))
            return Interpreter(
                executable=Path(data["executable"]),
                version=str(data["version"]),
                implementation=str(data["implementation"]),
            )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        out = subprocess.run(
            [str(path), "-I", "-S", "-c", _QUERY],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
            check=True,
        ).stdout
        data = json.loads(out)
        info = Interpreter(
            executable=Path(data["executable"]),
            version=str(data["version"]),
            implementation=str(data["implementation"]),
        )
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None
    if cache_file is not None:
        with contextlib.suppress(OSError):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            from lockenv.atomic import write_atomic

            write_atomic(cache_file, json.dumps(data), durable=False)
    return info


def _running_interpreter() -> Interpreter:
    base = getattr(sys, "_base_executable", None) or sys.executable
    return Interpreter(
        executable=Path(base),
        version=_python_version(),
        implementation=sys.implementation.name,
    )


def _python_version() -> str:
    """``platform.python_version()`` of this Python without importing ``platform`` (~4 ms
    of a cold sync): the first word of ``sys.version``, ``X.Y`` completed to ``X.Y.0``."""
    version = sys.version.split()[0]
    return f"{version}.0" if version.count(".") == 1 else version


def _candidates(version: str) -> list[Path]:
    import glob
    import shutil

    found: list[Path] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(Path(on_path))
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    pyenv = sorted(
        glob.glob(
            os.path.join(glob.escape(pyenv_root), "versions", f"{version}*", "bin", "python")
        ),
        key=_version_sort_key,
        reverse=True,
    )
    found += [Path(p) for p in pyenv]
    for directory in ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"):
        found.append(Path(directory) / f"python{version}")
    return found


def _version_sort_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.parent.name  # versions/3.11.7/bin/python -> 3.11.7
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def find_interpreter(
    version: str, *, python: Path | None = None, cache_dir: Path | None = None
) -> Interpreter:
    """A host CPython ``version`` ("3.11"): ``python`` if given, else the first found of
    the running interpreter, ``pythonX.Y`` on PATH, pyenv versions, /usr/bin, /usr/local/bin.

    InstallError names the version needed and ``--python PATH`` when there is none.
    """
    if python is not None:
        info = interpreter_info(python, cache_dir)
        if info is None:
            raise InstallError(
                f"--python {str(python)!r} is not a runnable Python interpreter; "
                f"give the path of a CPython {version} executable"
            )
        if info.major_minor != version or info.implementation != "cpython":
            raise InstallError(
                f"--python {str(python)!r} is {info.implementation} {info.version}, but the "
                f"lock was made for CPython {version}; give a CPython {version} interpreter"
            )
        return info
    if ".".join(map(str, sys.version_info[:2])) == version and sys.implementation.name == "cpython":
        return _running_interpreter()
    seen: set[str] = set()
    for candidate in _candidates(version):
        key = os.path.abspath(candidate)
        if key in seen or not os.path.exists(candidate):
            continue
        seen.add(key)
        info = interpreter_info(candidate, cache_dir)
        if info is not None and info.major_minor == version and info.implementation == "cpython":
            return info
    raise InstallError(
        f"no Python {version} interpreter found (the lock was made for Python {version}; "
        f"looked for python{version} on PATH, in pyenv, /usr/bin and /usr/local/bin); "
        f"install one or pass `--python PATH`"
    )


def base_interpreter(prefix: Path, *, cache_dir: Path | None = None) -> Interpreter:
    """The CPython a base environment at ``prefix`` runs (behind any launcher script)."""
    from lockenv.base_environment import base_python

    python = base_python(prefix)
    info = interpreter_info(python, cache_dir)
    if info is None or info.implementation != "cpython":
        raise InstallError(
            f"the base environment's Python {str(python)!r} does not run as CPython "
            f"({'not runnable' if info is None else info.implementation}); fix the base "
            "environment, or build this environment without it"
        )
    return info


# -- virtual environments -------------------------------------------------------------------


BASE_PTH = "_lockenv_base.pth"


def create_venv(
    layout: EnvLayout,
    interpreter: Interpreter,
    *,
    prompt: str | None = None,
    base_site_packages: Path | None = None,
) -> list[str]:
    """Write the skeleton of a virtual environment into ``layout.root`` (which may exist);
    return the root-relative paths of the files and links written.

    The result is what ``python -m venv --without-pip`` makes: ``pyvenv.cfg``, the
    interpreter symlinks, an empty site-packages, ``lib64 -> lib`` and activation scripts
    for bash/zsh and fish, every absolute path naming ``layout.prefix``.  An entry already
    at one of these paths is replaced, never written through (it may be a hardlink).

    ``base_site_packages``: a base environment's site-packages, made visible after the
    environment's own by `BASE_PTH`, which adds it as a site directory (its own ``.pth``
    files processed): what ``--system-site-packages`` does for the interpreter's own
    installation, for any base (a conda environment, a Python installation, a venv).
    """
    root = layout.root
    scripts = root / layout.scripts_rel
    scripts.mkdir(parents=True, exist_ok=True)
    layout.site_packages.mkdir(parents=True, exist_ok=True)
    (root / ("Include" if _IS_WINDOWS else "include")).mkdir(exist_ok=True)
    written: list[Path] = []

    def write(path: Path, text: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.write_text(text, encoding="utf-8")
        written.append(path)

    exe = interpreter.executable
    cfg = (
        f"home = {exe.parent}\n"
        "include-system-site-packages = false\n"
        f"version = {interpreter.version}\n"
        f"executable = {exe}\n"
    )
    write(root / "pyvenv.cfg", cfg)
    if _IS_WINDOWS:
        # Windows venvs copy the interpreter's launcher; symlinks need privileges there.
        import shutil

        for name in ("python.exe", "pythonw.exe"):
            source = exe.parent / name
            if source.exists():
                with contextlib.suppress(FileNotFoundError):
                    (scripts / name).unlink()
                shutil.copy2(source, scripts / name)
                written.append(scripts / name)
    else:
        major = layout.python_version.split(".")[0]
        links = [
            (str(exe), scripts / "python"),
            ("python", scripts / f"python{major}"),
            ("python", scripts / f"python{layout.python_version}"),
        ]
        if sys.maxsize > 2**32 and sys.platform != "darwin":
            links.append(("lib", root / "lib64"))
        for target, link in links:
            _symlink(target, link)
            written.append(link)
    name = prompt or layout.prefix.name
    for filename, text in activation_scripts(layout.prefix, layout.scripts_rel, name).items():
        write(scripts / filename, text)
    if base_site_packages is not None:
        write(layout.site_packages / BASE_PTH, base_pth_text(base_site_packages))
    return [os.path.relpath(path, root).replace(os.sep, "/") for path in written]


def base_pth_text(base_site_packages: Path) -> str:
    """The ``.pth`` line that puts a base environment's site-packages on ``sys.path``."""
    return f"import site; site.addsitedir({str(base_site_packages)!r})\n"


def _symlink(target: str, link: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    os.symlink(target, link)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def activation_scripts(prefix: Path, scripts_rel: str, prompt: str) -> dict[str, str]:
    """The activation scripts of an environment at ``prefix``, by file name."""
    bin_dir = os.path.join(str(prefix), scripts_rel)
    sh = f"""\
# Source this file from bash or zsh: `source {bin_dir}/activate`.
# `deactivate` undoes it.

deactivate () {{
    if [ -n "${{_OLD_VIRTUAL_PATH:-}}" ]; then
        PATH="$_OLD_VIRTUAL_PATH"
        export PATH
        unset _OLD_VIRTUAL_PATH
    fi
    if [ -n "${{_OLD_VIRTUAL_PYTHONHOME:-}}" ]; then
        PYTHONHOME="$_OLD_VIRTUAL_PYTHONHOME"
        export PYTHONHOME
        unset _OLD_VIRTUAL_PYTHONHOME
    fi
    if [ -n "${{_OLD_VIRTUAL_PS1:-}}" ]; then
        PS1="$_OLD_VIRTUAL_PS1"
        export PS1
        unset _OLD_VIRTUAL_PS1
    fi
    unset VIRTUAL_ENV VIRTUAL_ENV_PROMPT
    hash -r 2> /dev/null
    if [ "${{1:-}}" != "nondestructive" ]; then
        unset -f deactivate
    fi
}}

deactivate nondestructive

VIRTUAL_ENV={_sh_quote(str(prefix))}
export VIRTUAL_ENV
VIRTUAL_ENV_PROMPT={_sh_quote(f"({prompt}) ")}
export VIRTUAL_ENV_PROMPT

_OLD_VIRTUAL_PATH="$PATH"
PATH={_sh_quote(bin_dir)}":$PATH"
export PATH

if [ -n "${{PYTHONHOME:-}}" ]; then
    _OLD_VIRTUAL_PYTHONHOME="$PYTHONHOME"
    unset PYTHONHOME
fi

if [ -z "${{VIRTUAL_ENV_DISABLE_PROMPT:-}}" ]; then
    _OLD_VIRTUAL_PS1="${{PS1:-}}"
    PS1="$VIRTUAL_ENV_PROMPT${{PS1:-}}"
    export PS1
fi

hash -r 2> /dev/null
"""
    fish = f"""\
# Source this file from fish: `source {bin_dir}/activate.fish`.
# `deactivate` undoes it.

function deactivate -d "Leave the environment"
    if set -q _OLD_VIRTUAL_PATH
        set -gx PATH $_OLD_VIRTUAL_PATH
        set -e _OLD_VIRTUAL_PATH
    end
    if set -q _OLD_VIRTUAL_PYTHONHOME
        set -gx PYTHONHOME $_OLD_VIRTUAL_PYTHONHOME
        set -e _OLD_VIRTUAL_PYTHONHOME
    end
    set -e VIRTUAL_ENV
    set -e VIRTUAL_ENV_PROMPT
    if test "$argv[1]" != "nondestructive"
        functions -e deactivate
    end
end

deactivate nondestructive

set -gx VIRTUAL_ENV {_fish_quote(str(prefix))}
set -gx VIRTUAL_ENV_PROMPT {_fish_quote(f"({prompt}) ")}
set -gx _OLD_VIRTUAL_PATH $PATH
set -gx PATH {_fish_quote(bin_dir)} $PATH

if set -q PYTHONHOME
    set -gx _OLD_VIRTUAL_PYTHONHOME $PYTHONHOME
    set -e PYTHONHOME
end
"""
    return {"activate": sh, "activate.fish": fish}
