"""How the ``lockenv`` command talks: results on stdout, everything else on stderr.

Conventions (the README's "Command line" section says the same to users):

- stdout holds what a command was asked for (``list``, ``tree``, ``export``, ``diff``,
  the changes ``lock`` made); stderr holds progress, notes, ``warning:``, ``hint:`` and
  ``error:`` lines, so ``lockenv export ... > file`` and pipes stay clean.
- ``-q`` silences everything but errors (and what was asked for on stdout); ``-v`` adds
  a log of what lockenv does — requests, cache hits, resolver decisions — through
  `logging` (``-vv`` for more); a traceback with an error only with ``-v``.
- Colour only where it helps (``error:`` red, ``warning:`` yellow, ``hint:`` cyan,
  added/removed/changed packages green/red/yellow) and only when wanted:
  ``--color always|never`` wins, then ``NO_COLOR`` (set: never), then ``FORCE_COLOR``
  (set: always), else colour when the stream is a terminal (and ``TERM`` is not dumb).
- Progress on a terminal is one status line rewritten in place — "download 3/12 files,
  1.2/3.1 GiB" — and clears itself; in CI logs (not a terminal) each file is one plain
  line when it starts and one when the whole task ends, never a line per chunk.

Everything is written whole under one lock: workers in threads report too.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import Literal, TextIO

from lockenv.progress import Reporter, Task, Unit, format_size

__all__ = ["Color", "Console", "format_size", "scrub", "use_color"]

Color = Literal["auto", "always", "never"]

_STYLES = {
    "error": "\x1b[1;31m",
    "warning": "\x1b[1;33m",
    "hint": "\x1b[1;36m",
    "added": "\x1b[32m",
    "removed": "\x1b[31m",
    "changed": "\x1b[33m",
    "dim": "\x1b[2m",
}
_RESET = "\x1b[0m"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_REDRAW_SECONDS = 0.1  # a status line is redrawn at most this often


def scrub(text: str) -> str:
    """``text`` with every URL's credentials and tokens removed (`lockenv.urls.redact_text`):
    the last line of defence, whatever a message or a library put into it."""
    if "://" not in text:
        return text
    from lockenv.urls import redact_text

    return redact_text(text)


def use_color(choice: Color, stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to colour ``stream``: the flag, then NO_COLOR, FORCE_COLOR, the terminal."""
    if choice != "auto":
        return choice == "always"
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    return _isatty(stream) and environ.get("TERM") != "dumb"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Console(Reporter):
    """The command's voice; also the `Reporter` the stages report progress to."""

    def __init__(
        self,
        verbosity: int = 0,
        *,
        color: Color = "auto",
        live: bool | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.verbosity = verbosity
        self._out = stdout
        self._err = stderr
        err = self.stderr
        # A live status line only on a terminal and at the default verbosity: with -v
        # every message stays in the scrollback.
        self.live = (_isatty(err) if live is None else live) and verbosity == 0
        self.color_err = use_color(color, err)
        self.color_out = use_color(color, self.stdout)
        self._status = ""  # the status line showing, if any
        self._lock = threading.RLock()

    @property
    def stdout(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._err or sys.stderr

    # ---- styling

    def style(self, text: str, name: str, *, stream: Literal["out", "err"] = "err") -> str:
        """``text`` in style ``name`` when that stream is coloured."""
        wanted = self.color_out if stream == "out" else self.color_err
        return f"{_STYLES[name]}{text}{_RESET}" if wanted else text

    # ---- writing

    def _write(self, line: str, *, status: bool = False) -> None:
        line = scrub(line)
        with self._lock:
            err = self.stderr
            if self.live:
                clear = "\r\x1b[K" if self._status else ""
                if status:
                    import shutil  # only a live status line needs it

                    width = shutil.get_terminal_size().columns - 1
                    err.write(clear + line[:width])
                    self._status = line
                else:
                    err.write(clear + line + "\n")
                    self._status = ""
            else:
                err.write(line + "\n")
            err.flush()

    def result(self, line: str, style: str | None = None) -> None:
        """A line of what the command was asked for, on stdout."""
        with self._lock:
            self._clear_status()
            text = self.style(line, style, stream="out") if style else line
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def note(self, message: str) -> None:
        """Something the user should read (what was done); silenced by ``-q``."""
        if self.verbosity >= 0:
            self._write(message)

    def warn(self, message: str) -> None:
        """``warning: ...``: valid, but probably not what was meant; silenced by ``-q``."""
        if self.verbosity >= 0:
            self._write(f"{self.style('warning', 'warning')}: {message}")

    def hint(self, message: str) -> None:
        """``hint: ...``: the next step; silenced by ``-q``."""
        if self.verbosity >= 0:
            self._write(f"{self.style('hint', 'hint')}: {message}")

    def error(self, message: str) -> None:
        """``error: ...``: always shown; control characters shown escaped (a hostile lock
        or archive name must not drive the terminal)."""
        message = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", message)
        self._write(f"{self.style('error', 'error')}: {message}")

    def debug(self, message: str) -> None:
        if self.verbosity > 0:
            self._write(message)

    def __call__(self, message: str) -> None:
        """A status message from a stage (the `Reporter` interface)."""
        if self.verbosity >= 0:
            self._write(message, status=self.live)

    progress = __call__

    def _clear_status(self) -> None:
        if self._status:
            self.stderr.write("\r\x1b[K")
            self.stderr.flush()
            self._status = ""

    def finish(self) -> None:
        """Clear a status line left showing."""
        with self._lock:
            self._clear_status()

    # ---- tasks

    def task(self, label: str, *, items: int, total: int, unit: Unit = "bytes") -> Task:
        if self.verbosity < 0:
            return Task(label, items=items, total=total, unit=unit)
        return _ConsoleTask(self, label, items=items, total=total, unit=unit)

    # ---- logging (-v)

    def install_logging(self) -> None:
        """Send lockenv's log records here: INFO with ``-v``, DEBUG with ``-vv``."""
        import logging  # only when asked: logging costs start-up time on the no-op path

        console = self

        class ConsoleHandler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    where = console.style(f"[{record.name.removeprefix('lockenv.')}]", "dim")
                    console._write(f"{where} {record.getMessage()}")
                except Exception:  # a broken log line must never break the command
                    self.handleError(record)

        logger = logging.getLogger("lockenv")
        for handler in list(logger.handlers):
            if type(handler).__name__ == "ConsoleHandler":
                logger.removeHandler(handler)
        if self.verbosity <= 0:
            logger.setLevel(logging.WARNING)
            return
        logger.setLevel(logging.INFO if self.verbosity == 1 else logging.DEBUG)
        logger.addHandler(ConsoleHandler())
        logger.propagate = False


class _ConsoleTask(Task):
    """A task shown as a redrawn status line (terminal) or as plain lines (CI)."""

    def __init__(self, console: Console, label: str, *, items: int, total: int, unit: Unit) -> None:
        super().__init__(label, items=items, total=total, unit=unit)
        self.console = console
        self.finished = 0
        self.amount = 0
        self.current: list[str] = []
        self.started = time.monotonic()
        self._drawn = 0.0
        self._lock = threading.Lock()

    def _amount(self, value: float) -> str:
        return format_size(value) if self.unit == "bytes" else str(int(value))

    def line(self) -> str:
        text = f"{self.label} {self.finished}/{self.items}"
        if self.total:
            text += f", {self._amount(self.amount)}/{self._amount(self.total)}"
            elapsed = time.monotonic() - self.started
            if self.unit == "bytes" and elapsed > 1 and self.amount:
                text += f" ({format_size(self.amount / elapsed)}/s)"
        if self.current:
            text += f": {self.current[-1]}"
        return text

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= _REDRAW_SECONDS:
            self._drawn = now
            self.console._write(self.line(), status=True)

    def start(self, item: str, size: int | None = None) -> None:
        with self._lock:
            self.current.append(item)
            if self.console.live:
                self._draw(force=True)
            else:
                size_text = f" ({self._amount(size)})" if size is not None else ""
                self.console._write(f"{self.label} {item}{size_text}")

    def advance(self, amount: int) -> None:
        with self._lock:
            self.amount += amount
            if self.console.live:
                self._draw()

    def done(self, item: str) -> None:
        with self._lock:
            self.finished += 1
            if item in self.current:
                self.current.remove(item)
            if self.console.live:
                self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            if not self.console.live and self.finished:
                seconds = time.monotonic() - self.started
                size = f" ({self._amount(self.amount)})" if self.total else ""
                self.console._write(
                    f"{self.label}: {self.finished} of {self.items} done{size} in {seconds:.1f}s"
                )
            self.console.finish()
