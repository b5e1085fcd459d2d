"""The command line `main` parses with: one command's parser, the same as the whole one.

`lockenv.cli.main` reads a plain ``sync`` or ``run`` without argparse (`plain_arguments`)
and builds, for anything else, only the parser of the command `command_named` finds in
the arguments.  Whatever the arguments, that must come out as the whole command line's:
the same namespace, or the same error and exit status, the same help.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.cli import COMMANDS, build_parser, command_named, plain_arguments


def _outcome(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[object, str, str]:
    """(namespace or exit status, stdout, stderr) of parsing ``argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(parser.parse_args(list(argv)))
        except SystemExit as exc:
            result = exc.code
    return result, out.getvalue(), err.getvalue()


def _same_as_whole(argv: Sequence[str]) -> None:
    narrowed = build_parser(command_named(argv))
    assert _outcome(narrowed, argv) == _outcome(build_parser(), argv)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["sync"], "sync"),
        (["-q", "sync", "--frozen"], "sync"),
        (["-vv", "-q", "--verbose", "--quiet", "run", "--", "true"], "run"),
        (["--manifest", "sync", "lock"], "lock"),  # "sync" is --manifest's value
        (["--manifest=x.toml", "--color=never", "verify"], "verify"),
        (["--color", "always", "merge-driver", "a", "b", "c"], "merge-driver"),
        (["sync", "run"], "sync"),
        ([], None),
        (["--help"], None),
        (["-h", "sync"], None),
        (["--version"], None),
        (["--mani", "x", "sync"], None),  # an abbreviation: argparse decides
        (["-qx", "sync"], None),
        (["--manifest"], None),
        (["--manifest", "-q", "sync"], None),  # argparse: "expected one argument"
        (["--", "sync"], None),
        (["synk"], None),
        (["x", "sync"], None),
        ([""], None),
    ],
)
def test_command_named(argv: list[str], command: str | None) -> None:
    assert command_named(argv) == command
    _same_as_whole(argv)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_parses_and_helps_as_the_whole_command_line(command: str) -> None:
    _same_as_whole([command, "--help"])
    _same_as_whole(["-q", command, "--bogus"])
    _same_as_whole([command])


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "-q", "--frozen", "-e", "test", "--prefix", "p", "--link-mode", "copy"],
        ["sync", "--locked", "--frozen"],  # mutually exclusive
        ["sync", "--link-mode", "bogus"],
        ["--color", "bogus", "sync"],
        ["run", "-e", "x", "--", "python", "-c", "pass"],
        ["lock", "--update", "a", "--update", "b", "--dry-run", "-v"],
        ["cache", "prune", "--older-than", "soon"],
        ["export", "--format", "pylock.toml", "-o", "out"],
        ["bundle"],
        ["verify", "--json", "unexpected"],
    ],
)
def test_parse_outcomes_are_the_whole_command_lines(argv: list[str]) -> None:
    _same_as_whole(argv)


def test_the_top_help_lists_every_command() -> None:
    text = build_parser().format_help()
    assert all(name in text for name in COMMANDS)
    _same_as_whole(["--help"])


_TOKENS = st.sampled_from(
    [
        *COMMANDS,
        *("-q", "-v", "-vq", "--quiet", "--manifest", "--manifest=m", "--color", "never"),
        *("--frozen", "--locked", "-e", "--prefix", "--", "-h", "--bogus", "x", "--man", ""),
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_TOKENS, max_size=6))
def test_any_arguments_parse_as_the_whole_command_line(argv: list[str]) -> None:
    _same_as_whole(argv)


# -- plain_arguments: the plain sync and run, read without argparse -----------------------


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _plain_is_argparse(argv: Sequence[str]) -> bool:
    """Whether `plain_arguments` read ``argv`` (False: it left it to argparse), checking
    that what it read is what argparse reads."""
    plain = plain_arguments(argv)
    if plain is None:
        return False
    assert vars(plain) == vars(build_parser().parse_args(list(argv))), argv
    return True


@pytest.mark.parametrize(
    "argv",
    [
        ["sync"],
        ["-q", "sync", "--frozen"],
        ["-q", "-q", "sync", "-q"],
        ["--quiet", "sync", "--locked", "--offline"],
        ["sync", "-e", "test", "--prefix", "/p", "--lock", "l.lock"],
        ["sync", "--environment=test", "--prefix=/p", "--lock=x=y"],
        ["sync", "-etest"],
        ["sync", "-e=test"],
        ["sync", "-ex=y"],
        ["sync", "--frozen", "--frozen"],
        ["run", "--", "true"],
        ["run", "-q", "--frozen", "-e", "x", "--", "python", "-c", "pass"],
        ["run", "true", "-q", "--frozen"],
        ["run", "--", "--", "x"],
        ["run", ""],
        ["run"],
    ],
)
def test_plain_arguments_read_as_argparse_does(argv: list[str]) -> None:
    assert _plain_is_argparse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["sync", "--bundle", "b"],
        ["sync", "--link-mode", "copy"],
        ["sync", "-e", "a", "-e", "b"],  # repeated: argparse's last-one-wins
        ["sync", "-e", "-q"],  # argparse: "expected one argument"
        ["sync", "-e"],
        ["sync", "--prefix="],
        ["sync", "--env", "x"],  # an abbreviation
        ["sync", "--locked", "--frozen"],
        ["run", "--locked", "--frozen", "--", "true"],
        ["sync", "extra"],
        ["sync", "-v"],
        ["-v", "sync"],
        ["--manifest", "m", "sync"],
        ["lock"],
        ["run", "-", "x"],
        [],
    ],
)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert plain_arguments(argv) is None


@pytest.mark.parametrize(
    "variables",
    [
        {"LOCKENV_FROZEN": "1", "LOCKENV_OFFLINE": "yes", "LOCKENV_LINK_MODE": "copy"},
        {"LOCKENV_LOCKED": "true", "LOCKENV_MANIFEST": "m.toml", "LOCKENV_COLOR": "never"},
        {"LOCKENV_FROZEN": "0", "LOCKENV_LOCKED": "", "LOCKENV_COLOR": ""},
    ],
)
def test_plain_arguments_read_the_variables_argparse_reads(variables: dict[str, str]) -> None:
    with _environment(variables):
        for argv in (["sync", "-q"], ["sync", "--locked"], ["run", "--frozen", "--", "x"]):
            assert _plain_is_argparse(argv)


_PLAIN_TOKENS = st.sampled_from(
    [
        *("sync", "run", "-q", "--quiet", "--frozen", "--locked", "--offline", "-e", "-ex"),
        *("-e=", "--environment", "--environment=y", "--prefix", "--prefix=/p", "--lock"),
        *("--", "x", "-", "", "--bundle", "-v", "--env", "true", "-eq"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PLAIN_TOKENS, max_size=7))
def test_what_plain_arguments_reads_argparse_reads_alike(argv: list[str]) -> None:
    _plain_is_argparse(argv)
