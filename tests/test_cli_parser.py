"""The command line `main` parses with: one command's parser, the same as the whole one.

`lockenv.cli.main` builds only the parser of the command `command_named` finds in the
arguments.  Whatever the arguments, that parse must come out as the whole command line's:
the same namespace, or the same error and exit status, the same help.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.cli import COMMANDS, build_parser, command_named


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
    [*COMMANDS, "-q", "-v", "-vq", "--quiet", "--manifest", "--manifest=m", "--color", "never"]
    + ["--frozen", "--locked", "-e", "--prefix", "--", "-h", "--bogus", "x", "--man", ""]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_TOKENS, max_size=6))
def test_any_arguments_parse_as_the_whole_command_line(argv: list[str]) -> None:
    _same_as_whole(argv)
