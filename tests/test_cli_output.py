"""Progress output: one rewritten status line on a terminal, plain lines in CI logs."""

from __future__ import annotations

import pytest

from lockenv.cli import _Output


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    out = _Output(0, live=False)
    out.progress("download a.whl")
    out.progress("download b.whl")
    out.note("synced")
    out.finish()
    assert capsys.readouterr().err == "download a.whl\ndownload b.whl\nsynced\n"


def test_status_line_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    out = _Output(0, live=True)
    out.progress("download a.whl")
    out.progress("download b.whl")
    out.note("synced")
    out.progress("cleaning up")
    out.finish()
    err = capsys.readouterr().err
    assert err == ("download a.whl\r\x1b[Kdownload b.whl\r\x1b[Ksynced\ncleaning up\r\x1b[K")


def test_quiet_and_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    _Output(-1, live=True).progress("hidden")
    _Output(-1, live=False).note("hidden")
    verbose = _Output(1, live=True)
    verbose.progress("kept as a line")  # -v: every message stays in the scrollback
    assert capsys.readouterr().err == "kept as a line\n"
