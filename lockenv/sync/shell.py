"""``lockenv shell-hook``: the script ``eval "$(lockenv shell-hook)"`` runs to activate.

It does what `lockenv.sync.materialize.activation_env` does for ``lockenv run``, in the
user's shell: the environment's executables first on PATH, VIRTUAL_ENV (a virtual
environment) or CONDA_PREFIX (a conda prefix: one with ``conda-meta/``), PYTHONHOME
removed (it would point the interpreter at another standard library).  Every value is
quoted for the shell it is meant for, so a prefix with spaces, quotes, ``$`` or
newlines arrives intact.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal, get_args

from lockenv.errors import UsageError

__all__ = ["SHELLS", "Shell", "default_shell", "path_entries", "quote", "shell_hook"]

Shell = Literal["bash", "zsh", "fish", "powershell"]
SHELLS: tuple[str, ...] = get_args(Shell)

# What `conda activate` puts on PATH for a Windows prefix, in its order.
_CONDA_WINDOWS_DIRS = (
    "",
    "Library/mingw-w64/bin",
    "Library/usr/bin",
    "Library/bin",
    "Scripts",
    "bin",
)
# Characters PowerShell reads as a single quote, each escaped by doubling it.
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"


def quote(value: str, shell: Shell) -> str:
    """``value`` as one literal word of ``shell`` (always single-quoted)."""
    if shell in ("bash", "zsh"):
        return "'" + value.replace("'", "'\"'\"'") + "'"
    if shell == "fish":
        # In fish single quotes only \\ and \' are escapes.
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if shell == "powershell":
        return "'" + "".join(c * 2 if c in _PS_QUOTES else c for c in value) + "'"
    raise UsageError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")


def is_conda_prefix(prefix: Path) -> bool:
    """A conda prefix (``conda-meta/`` inside) rather than a virtual environment."""
    return (prefix / "conda-meta").is_dir()


def path_entries(prefix: str, *, conda: bool, windows: bool) -> list[str]:
    """The directories of ``prefix`` to put first on PATH, first one first."""
    if windows:
        base = PureWindowsPath(prefix)
        subdirs = _CONDA_WINDOWS_DIRS if conda else ("Scripts",)
        return [str(base / d) if d else str(base) for d in subdirs]
    return [str(PurePosixPath(prefix) / "bin")]


def default_shell(environ: Mapping[str, str]) -> Shell:
    """The user's shell, from ``$SHELL`` (PowerShell on Windows, else bash, when unknown)."""
    name = os.path.basename(environ.get("SHELL", "")).removesuffix(".exe").lower()
    for shell in ("bash", "zsh", "fish"):
        if name == shell:
            return shell
    if name in ("pwsh", "powershell"):
        return "powershell"
    return "powershell" if sys.platform == "win32" else "bash"


def shell_hook(prefix: Path, shell: Shell, *, windows: bool | None = None) -> str:
    """The activation script of the environment at ``prefix`` for ``shell``.

    ``windows`` picks the prefix layout (``Scripts`` rather than ``bin``); by default
    the machine this runs on decides.  UsageError for an unknown shell.

    The script remembers what it changes and defines ``lockenv_deactivate`` (and
    ``deactivate``, unless something else — an active venv — owns that name), which puts
    PATH and the variables back.  A second hook (another environment, or the same one
    again) deactivates the first before it activates: PATH never stacks.
    """
    if shell not in SHELLS:
        raise UsageError(f"unknown shell {shell!r}: use one of {', '.join(SHELLS)}")
    native = sys.platform == "win32"
    windows = native if windows is None else windows
    # An absolute path: the hook is evaluated from whatever directory the user is in.
    root = os.path.abspath(prefix) if windows == native else str(prefix)
    conda = is_conda_prefix(Path(root))
    if windows:
        root = str(PureWindowsPath(root))
    entries = path_entries(root, conda=conda, windows=windows)
    # Only one of the two: tools such as uv and pip take VIRTUAL_ENV over CONDA_PREFIX.
    set_var, drop_var = ("CONDA_PREFIX", "VIRTUAL_ENV") if conda else ("VIRTUAL_ENV", None)
    drops = [v for v in (drop_var, "PYTHONHOME") if v is not None]
    saved = [set_var, *drops]
    if shell in ("bash", "zsh"):
        return _posix_hook(root, entries, set_var, drops, saved, shell)
    if shell == "fish":
        return _fish_hook(root, entries, set_var, drops, saved)
    return _powershell_hook(root, entries, set_var, drops, saved)


# The variable that marks an active lockenv environment (its prefix).
_ACTIVE = "_LOCKENV_PREFIX"


def _posix_hook(
    root: str, entries: list[str], set_var: str, drops: list[str], saved: list[str], shell: Shell
) -> str:
    head = ":".join(quote(e, shell) for e in entries)
    restore = [
        f'    if [ -n "${{_LOCKENV_HAD_{v}:-}}" ]; then export {v}="$_LOCKENV_OLD_{v}"; '
        f"else unset {v}; fi"
        for v in saved
    ]
    forget = " ".join(f"_LOCKENV_OLD_{v} _LOCKENV_HAD_{v}" for v in saved)
    lines = [
        f'if [ -n "${{{_ACTIVE}:-}}" ] && command -v lockenv_deactivate >/dev/null 2>&1; then',
        "    lockenv_deactivate",
        "fi",
        '_LOCKENV_OLD_PATH="${PATH:-}"',
        *(f'_LOCKENV_HAD_{v}="${{{v}+1}}"; _LOCKENV_OLD_{v}="${{{v}:-}}"' for v in saved),
        "lockenv_deactivate() {",
        '    export PATH="$_LOCKENV_OLD_PATH"',
        *restore,
        f"    unset _LOCKENV_OLD_PATH {forget} {_ACTIVE}",
        '    if [ -n "${_LOCKENV_OWNS_DEACTIVATE:-}" ]; then unset -f deactivate; fi',
        "    unset _LOCKENV_OWNS_DEACTIVATE",
        "    unset -f lockenv_deactivate",
        "    hash -r 2>/dev/null || true",
        "}",
        "if ! command -v deactivate >/dev/null 2>&1; then",
        "    deactivate() { lockenv_deactivate; }",
        "    _LOCKENV_OWNS_DEACTIVATE=1",
        "fi",
        # ${PATH:+...}: an empty PATH must not gain an empty entry (the current directory).
        f'export PATH={head}"${{PATH:+:${{PATH}}}}"',
        f"export {set_var}={quote(root, shell)}",
        *(f"unset {v}" for v in drops),
        f"export {_ACTIVE}={quote(root, shell)}",
        # Forget command locations cached from the old PATH.
        "hash -r 2>/dev/null || true",
    ]
    return "\n".join(lines) + "\n"


def _fish_hook(
    root: str, entries: list[str], set_var: str, drops: list[str], saved: list[str]
) -> str:
    restore = [
        f"    if set -q _LOCKENV_OLD_{v}; set -gx {v} $_LOCKENV_OLD_{v}; "
        f"set -e _LOCKENV_OLD_{v}; else; set -e {v}; end"
        for v in saved
    ]
    lines = [
        f"if set -q {_ACTIVE}; and functions -q lockenv_deactivate",
        "    lockenv_deactivate",
        "end",
        "set -g _LOCKENV_OLD_PATH $PATH",
        *(
            f"if set -q {v}; set -g _LOCKENV_OLD_{v} ${v}; else; set -e _LOCKENV_OLD_{v}; end"
            for v in saved
        ),
        "function lockenv_deactivate",
        "    set -gx PATH $_LOCKENV_OLD_PATH",
        *restore,
        f"    set -e _LOCKENV_OLD_PATH {_ACTIVE}",
        "    if set -q _LOCKENV_OWNS_DEACTIVATE; functions -e deactivate; end",
        "    set -e _LOCKENV_OWNS_DEACTIVATE",
        "    functions -e lockenv_deactivate",
        "end",
        "if not functions -q deactivate",
        "    function deactivate; lockenv_deactivate; end",
        "    set -g _LOCKENV_OWNS_DEACTIVATE 1",
        "end",
        f"set -gx PATH {' '.join(quote(e, 'fish') for e in entries)} $PATH",
        f"set -gx {set_var} {quote(root, 'fish')}",
        *(f"set -q {v}; and set -e {v}" for v in drops),
        f"set -gx {_ACTIVE} {quote(root, 'fish')}",
    ]
    return "\n".join(lines) + "\n"


def _powershell_hook(
    root: str, entries: list[str], set_var: str, drops: list[str], saved: list[str]
) -> str:
    items = ", ".join(quote(e, "powershell") for e in entries)
    remembered = "; ".join(f"'{v}' = $env:{v}" for v in ["PATH", *saved])
    lines = [
        f"if ($env:{_ACTIVE} -and (Get-Command lockenv_deactivate -ErrorAction "
        "SilentlyContinue)) { lockenv_deactivate }",
        f"$global:_LOCKENV_OLD = @{{ {remembered} }}",
        "function global:lockenv_deactivate {",
        "    foreach ($name in $global:_LOCKENV_OLD.Keys) {",
        "        $value = $global:_LOCKENV_OLD[$name]",
        '        if ($null -eq $value) { Remove-Item "Env:$name" -ErrorAction SilentlyContinue }',
        '        else { Set-Item "Env:$name" $value }',
        "    }",
        "    Remove-Variable _LOCKENV_OLD -Scope Global",
        f"    Remove-Item Env:{_ACTIVE} -ErrorAction SilentlyContinue",
        "    if ($global:_LOCKENV_OWNS_DEACTIVATE) {",
        "        Remove-Item function:deactivate -ErrorAction SilentlyContinue",
        "        Remove-Variable _LOCKENV_OWNS_DEACTIVATE -Scope Global",
        "    }",
        "    Remove-Item function:lockenv_deactivate",
        "}",
        "if (-not (Get-Command deactivate -ErrorAction SilentlyContinue)) {",
        "    function global:deactivate { lockenv_deactivate }",
        "    $global:_LOCKENV_OWNS_DEACTIVATE = $true",
        "}",
        f"$env:PATH = (@({items}) + @($env:PATH | Where-Object {{ $_ }}))"
        " -join [IO.Path]::PathSeparator",
        f"$env:{set_var} = {quote(root, 'powershell')}",
        *(f"Remove-Item Env:{v} -ErrorAction SilentlyContinue" for v in drops),
        f"$env:{_ACTIVE} = {quote(root, 'powershell')}",
    ]
    return "\n".join(lines) + "\n"
