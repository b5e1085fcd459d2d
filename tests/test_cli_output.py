"""How the command talks (lockenv.console): status lines, colour, -q/-v, tasks, hints."""

from __future__ import annotations

import io
import logging
import threading

import pytest

from lockenv.console import Console, format_size, use_color
from lockenv.progress import Reporter, Task, task_of


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    out = Console(0, live=False)
    out("download a.whl")
    out("download b.whl")
    out.note("synced")
    out.finish()
    assert capsys.readouterr().err == "download a.whl\ndownload b.whl\nsynced\n"


def test_status_line_on_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    out = Console(0, live=True, color="never")
    out("download a.whl")
    out("download b.whl")
    out.note("synced")
    out("cleaning up")
    out.finish()
    err = capsys.readouterr().err
    assert err == ("download a.whl\r\x1b[Kdownload b.whl\r\x1b[Ksynced\ncleaning up\r\x1b[K")


def test_quiet_silences_all_but_errors(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = Console(-1, live=True, color="never")
    quiet("hidden")
    quiet.note("hidden")
    quiet.warn("hidden")
    quiet.hint("hidden")
    with quiet.task("download", items=1, total=10) as task:
        task.start("a.whl", 10)
        task.advance(10)
        task.done("a.whl")
    quiet.error("shown")
    assert capsys.readouterr().err == "error: shown\n"


def test_verbose_keeps_every_message_as_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    verbose = Console(1, live=True, color="never")
    assert not verbose.live  # -v: the scrollback keeps everything
    verbose("kept as a line")
    assert capsys.readouterr().err == "kept as a line\n"


def test_verbose_logs_what_lockenv_does(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(1, color="never")
    console.install_logging()
    try:
        logging.getLogger("lockenv.http").info("GET %s -> %d", "https://i.invalid/simple/x/", 200)
        logging.getLogger("lockenv.http").debug("not at -v, only at -vv")
    finally:
        Console(0).install_logging()
    assert capsys.readouterr().err == "[http] GET https://i.invalid/simple/x/ -> 200\n"
    logging.getLogger("lockenv.http").info("silent without -v")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("choice", "env", "tty", "expected"),
    [
        ("auto", {}, True, True),
        ("auto", {}, False, False),
        ("auto", {"NO_COLOR": "1"}, True, False),
        ("auto", {"FORCE_COLOR": "1"}, False, True),
        ("auto", {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
        ("auto", {"TERM": "dumb"}, True, False),
        ("auto", {"NO_COLOR": ""}, True, True),  # NO_COLOR counts only when non-empty
        ("always", {"NO_COLOR": "1"}, False, True),  # the flag wins
        ("never", {"FORCE_COLOR": "1"}, True, False),
    ],
)
def test_color_choice(choice: str, env: dict[str, str], tty: bool, expected: bool) -> None:
    stream = _Tty() if tty else io.StringIO()
    assert use_color(choice, stream, env) is expected  # type: ignore[arg-type]


def test_colored_error_warning_and_hint() -> None:
    err = io.StringIO()
    console = Console(0, color="always", stderr=err, stdout=io.StringIO())
    console.error("bad")
    console.warn("odd")
    console.hint("next")
    assert err.getvalue() == (
        "\x1b[1;31merror\x1b[0m: bad\n\x1b[1;33mwarning\x1b[0m: odd\n\x1b[1;36mhint\x1b[0m: next\n"
    )
    plain = io.StringIO()
    Console(0, color="never", stderr=plain).error("bad")
    assert plain.getvalue() == "error: bad\n"


def test_download_task_on_a_terminal_shows_counts_and_bytes() -> None:
    err = _Tty()
    console = Console(0, color="never", stderr=err, stdout=io.StringIO())
    assert console.live
    with console.task("download", items=2, total=3 << 30) as task:
        task.start("torch-2.5.1.whl", 3 << 30)
        task.advance(1 << 30)
        task.start("typing_extensions.whl", 100)
        task.done("typing_extensions.whl")
        line = task.line()  # type: ignore[attr-defined]
    assert line.startswith("download 1/2, 1.0 GiB/3.0 GiB")
    assert line.endswith(": torch-2.5.1.whl")  # what is still running, not what finished
    assert err.getvalue().endswith("\r\x1b[K")  # the status line is gone when it is over


def test_download_task_in_ci_is_a_line_per_file_and_a_total() -> None:
    err = io.StringIO()
    console = Console(0, color="never", stderr=err, stdout=io.StringIO())
    assert not console.live
    with console.task("download", items=2, total=2048) as task:
        for name in ("a.whl", "b.whl"):
            task.start(name, 1024)
            for _ in range(64):
                task.advance(16)  # many chunks: never a line each
            task.done(name)
    lines = err.getvalue().splitlines()
    assert lines[:2] == ["download a.whl (1.0 KiB)", "download b.whl (1.0 KiB)"]
    assert lines[2].startswith("download: 2 of 2 done (2.0 KiB) in ")
    assert len(lines) == 3


def test_tasks_are_thread_safe() -> None:
    err = io.StringIO()
    console = Console(0, color="never", stderr=err, stdout=io.StringIO())
    task = console.task("download", items=8, total=8 * 1000)

    def work(i: int) -> None:
        task.start(f"f{i}", 1000)
        for _ in range(100):
            task.advance(10)
        task.done(f"f{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    task.close()
    assert task.amount == 8000 and task.finished == 8  # type: ignore[attr-defined]


def test_task_of_a_plain_callable_reports_nothing() -> None:
    messages: list[str] = []
    task = task_of(messages.append, "download", items=1, total=1)
    assert type(task) is Task
    task.start("x")
    task.advance(1)
    task.done("x")
    task.close()
    assert messages == []

    class Counting(Reporter):
        def task(self, label: str, *, items: int, total: int, unit: str = "bytes") -> Task:  # type: ignore[override]
            return Task(label, items=items, total=total, unit="bytes")

    assert isinstance(task_of(Counting(), "download", items=1, total=1), Task)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (3 << 30, "3.0 GiB"), (5 << 40, "5.0 TiB")],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text
