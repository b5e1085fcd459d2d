"""Tests for lockenv.sync.shell: golden hooks per shell, quoting, and the hooks run for real.

The bash hook is evaluated by bash (fish's by fish when it is installed) with prefixes
full of spaces, quotes, ``$`` and newlines; quoting is also checked as a round trip
through ``bash -c`` for arbitrary text.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.errors import UsageError
from lockenv.sync.shell import Shell, default_shell, path_entries, quote, shell_hook

BASH = shutil.which("bash")
FISH = shutil.which("fish")

TRICKY = [
    "/opt/plain",
    "/opt/with space/env",
    "/opt/it's/env",
    '/opt/say "hi"/env',
    "/opt/$HOME/`id`/env",
    "/opt/back\\slash/env",
    "/opt/new\nline/env",
    "/opt/ünïcødé/env",
    "/opt/semi;colon & amp|pipe/*glob?/env",
]


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        (
            "bash",
            [
                "export PATH='/opt/env/bin'\"${PATH:+:${PATH}}\"",
                "export VIRTUAL_ENV='/opt/env'",
                "unset PYTHONHOME",
                "export _LOCKENV_PREFIX='/opt/env'",
                "hash -r 2>/dev/null || true",
            ],
        ),
        (
            "zsh",
            [
                "export PATH='/opt/env/bin'\"${PATH:+:${PATH}}\"",
                "export VIRTUAL_ENV='/opt/env'",
                "unset PYTHONHOME",
                "export _LOCKENV_PREFIX='/opt/env'",
                "hash -r 2>/dev/null || true",
            ],
        ),
        (
            "fish",
            [
                "set -gx PATH '/opt/env/bin' $PATH",
                "set -gx VIRTUAL_ENV '/opt/env'",
                "set -q PYTHONHOME; and set -e PYTHONHOME",
                "set -gx _LOCKENV_PREFIX '/opt/env'",
            ],
        ),
        (
            "powershell",
            [
                "$env:PATH = (@('/opt/env/bin') + @($env:PATH | Where-Object { $_ }))"
                " -join [IO.Path]::PathSeparator",
                "$env:VIRTUAL_ENV = '/opt/env'",
                "Remove-Item Env:PYTHONHOME -ErrorAction SilentlyContinue",
                "$env:_LOCKENV_PREFIX = '/opt/env'",
            ],
        ),
    ],
)
def test_venv_hook_golden(shell: Shell, expected: list[str]) -> None:
    """The activation itself ends the hook; before it, what deactivation needs."""
    hook = shell_hook(Path("/opt/env"), shell, windows=False)
    assert hook.endswith("\n".join(expected) + "\n")
    assert "lockenv_deactivate" in hook and "deactivate" in hook.replace("lockenv_", "")


def test_conda_prefix_sets_conda_prefix_and_drops_virtual_env(tmp_path: Path) -> None:
    (tmp_path / "conda-meta").mkdir()
    hook = shell_hook(tmp_path, "bash", windows=False)
    assert hook.endswith(
        f"export PATH='{tmp_path}/bin'\"${{PATH:+:${{PATH}}}}\"\n"
        f"export CONDA_PREFIX='{tmp_path}'\n"
        "unset VIRTUAL_ENV\n"
        "unset PYTHONHOME\n"
        f"export _LOCKENV_PREFIX='{tmp_path}'\n"
        "hash -r 2>/dev/null || true\n"
    )
    # Deactivation brings back a VIRTUAL_ENV the hook took away.
    assert '_LOCKENV_HAD_VIRTUAL_ENV="${VIRTUAL_ENV+1}"' in hook


def test_windows_venv_uses_scripts() -> None:
    hook = shell_hook(Path("C:/Users/a b/env"), "powershell", windows=True)
    assert hook.splitlines()[-4:-2] == [
        "$env:PATH = (@('C:\\Users\\a b\\env\\Scripts') + @($env:PATH | Where-Object { $_ }))"
        " -join [IO.Path]::PathSeparator",
        "$env:VIRTUAL_ENV = 'C:\\Users\\a b\\env'",
    ]


@pytest.mark.parametrize(
    ("conda", "windows", "expected"),
    [
        (False, False, ["/p/bin"]),
        (True, False, ["/p/bin"]),
        (False, True, ["C:\\p\\Scripts"]),
        (
            True,
            True,
            [
                "C:\\p",
                "C:\\p\\Library\\mingw-w64\\bin",
                "C:\\p\\Library\\usr\\bin",
                "C:\\p\\Library\\bin",
                "C:\\p\\Scripts",
                "C:\\p\\bin",
            ],
        ),
    ],
)
def test_path_entries(conda: bool, windows: bool, expected: list[str]) -> None:
    prefix = "C:\\p" if windows else "/p"
    assert path_entries(prefix, conda=conda, windows=windows) == expected


@pytest.mark.parametrize(
    ("shell", "value", "expected"),
    [
        ("bash", "plain", "'plain'"),
        ("bash", "it's", "'it'\"'\"'s'"),
        ("bash", "$x `y`", "'$x `y`'"),
        ("zsh", "a b", "'a b'"),
        ("fish", "it's", "'it\\'s'"),
        ("fish", "back\\slash", "'back\\\\slash'"),
        ("fish", "$x", "'$x'"),
        ("powershell", "it's", "'it''s'"),
        ("powershell", "it\u2019s", "'it\u2019\u2019s'"),
        ("powershell", "$env:x", "'$env:x'"),
    ],
)
def test_quote(shell: Shell, value: str, expected: str) -> None:
    assert quote(value, shell) == expected


def test_unknown_shell_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'tcsh'"):
        shell_hook(Path("/p"), "tcsh", windows=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SHELL": "/bin/bash"}, "bash"),
        ({"SHELL": "/usr/bin/zsh"}, "zsh"),
        ({"SHELL": "/opt/homebrew/bin/fish"}, "fish"),
        ({"SHELL": "/usr/bin/pwsh"}, "powershell"),
    ],
)
def test_default_shell(environ: dict[str, str], expected: str) -> None:
    assert default_shell(environ) == expected


def _run_bash(script: str, env: dict[str, str]) -> list[str]:
    assert BASH is not None
    result = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return result.stdout.decode("utf-8").split("\0")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("prefix", TRICKY)
def test_bash_hook_runs(prefix: str) -> None:
    hook = shell_hook(Path(prefix), "bash", windows=False)
    out = _run_bash(
        hook + 'printf "%s\\0" "$PATH" "$VIRTUAL_ENV" "${PYTHONHOME-unset}"',
        {"PATH": "/usr/bin:/bin", "PYTHONHOME": "/elsewhere"},
    )
    assert out[:3] == [f"{prefix}/bin:/usr/bin:/bin", prefix, "unset"]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_hook_with_empty_path_adds_no_empty_entry() -> None:
    hook = shell_hook(Path("/opt/env"), "bash", windows=False)
    out = _run_bash(hook + 'printf "%s\\0" "$PATH"', {"PATH": ""})
    assert out[0] == "/opt/env/bin"


@pytest.mark.skipif(FISH is None, reason="fish is not installed")
@pytest.mark.parametrize("prefix", TRICKY)
def test_fish_hook_runs(prefix: str) -> None:
    assert FISH is not None
    hook = shell_hook(Path(prefix), "fish", windows=False)
    result = subprocess.run(
        [FISH, "--no-config", "-c", hook + 'printf "%s\\0" "$PATH[1]" "$VIRTUAL_ENV"'],
        env={"PATH": "/usr/bin:/bin", "PYTHONHOME": "/elsewhere"},
        capture_output=True,
        check=True,
        timeout=30,
    )
    assert result.stdout.decode("utf-8").split("\0")[:2] == [f"{prefix}/bin", prefix]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0")))
def test_posix_quote_round_trips_through_bash(value: str) -> None:
    out = _run_bash(f"printf '%s\\0' {quote(value, 'bash')}", {"PATH": "/usr/bin:/bin"})
    assert out[0] == value


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_second_hook_does_not_stack_and_deactivate_restores() -> None:
    first = shell_hook(Path("/opt/first env"), "bash", windows=False)
    second = shell_hook(Path("/opt/second"), "bash", windows=False)
    out = _run_bash(
        'eval "$HOOK1"; eval "$HOOK1"; printf "%s\\0" "$PATH"; '
        'eval "$HOOK2"; printf "%s\\0" "$PATH" "$VIRTUAL_ENV"; '
        "deactivate; "
        'printf "%s\\0" "$PATH" "${VIRTUAL_ENV-unset}" "${PYTHONHOME-unset}" '
        '"${_LOCKENV_PREFIX-unset}" "$(type -t deactivate lockenv_deactivate)"',
        {"PATH": "/usr/bin:/bin", "PYTHONHOME": "/elsewhere", "HOOK1": first, "HOOK2": second},
    )
    assert out[0] == "/opt/first env/bin:/usr/bin:/bin"  # the same hook twice: once on PATH
    assert out[1:3] == ["/opt/second/bin:/usr/bin:/bin", "/opt/second"]
    assert out[3:8] == ["/usr/bin:/bin", "unset", "/elsewhere", "unset", ""]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_hook_keeps_an_active_venvs_deactivate() -> None:
    """A venv's own `deactivate` stays; `lockenv_deactivate` undoes only lockenv's part."""
    hook = shell_hook(Path("/opt/env"), "bash", windows=False)
    out = _run_bash(
        'deactivate() { echo venv-deactivate; }; eval "$HOOK"; lockenv_deactivate; '
        'printf "%s\\0" "$PATH" "$VIRTUAL_ENV" "$(deactivate)"',
        {"PATH": "/venv/bin:/usr/bin", "VIRTUAL_ENV": "/venv", "HOOK": hook},
    )
    assert out[:3] == ["/venv/bin:/usr/bin", "/venv", "venv-deactivate"]
