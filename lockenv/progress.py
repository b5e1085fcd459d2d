"""What long work reports as it goes: status messages, and tasks counted in items and bytes.

The stages take a ``progress`` callable (``progress("solving ...")``): a status message.
A `Reporter` is such a callable that can also follow a `Task` — "download 3 of 12
files, 1.2 of 3.1 GiB" — which is what a user watching a multi-gigabyte sync needs to
see.  Code that moves bytes asks for a task with `task_of` whatever callable it was
given; with a plain callable (or None) it gets a task that does nothing, so the stages
need not know how progress is shown.  The command line renders reporters (one status
line on a terminal, plain lines in CI logs); tests use them to count.

Standard library only, and cheap: imported on the sync path.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Literal

__all__ = ["Progress", "Reporter", "Task", "Unit", "format_size", "task_of"]

Progress = Callable[[str], None]
Unit = Literal["bytes", "items"]


class Task:
    """One piece of long work: ``items`` things (files) of ``total`` units (bytes).

    Workers call `start`, `advance` and `done` from any thread; a reporter's subclass
    must keep its own state thread-safe.  This base class does nothing.
    """

    def __init__(self, label: str, *, items: int, total: int, unit: Unit) -> None:
        self.label = label
        self.items = items
        self.total = total
        self.unit = unit

    def start(self, item: str, size: int | None = None) -> None:
        """``item`` (a file name) begins; ``size`` in the task's unit, when known."""

    def advance(self, amount: int) -> None:
        """``amount`` more units are done (bytes received)."""

    def done(self, item: str) -> None:
        """``item`` is finished."""

    def close(self) -> None:
        """The task is over (all items done, or given up)."""

    def __enter__(self) -> Task:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Reporter:
    """A ``progress`` callable that can also follow tasks.  This base class is silent."""

    def __call__(self, message: str) -> None:
        """A status message: what is happening now."""

    def task(self, label: str, *, items: int, total: int, unit: Unit = "bytes") -> Task:
        """A new task to follow; the caller closes it (it is a context manager)."""
        return Task(label, items=items, total=total, unit=unit)


def task_of(
    progress: Progress | None, label: str, *, items: int, total: int, unit: Unit = "bytes"
) -> Task:
    """A task on ``progress`` when it is a `Reporter`, else one that reports nothing."""
    if isinstance(progress, Reporter):
        return progress.task(label, items=items, total=total, unit=unit)
    return Task(label, items=items, total=total, unit=unit)


def format_size(n: float) -> str:
    """``1.2 GiB``: sizes as people read them (binary units, one decimal)."""
    if n < 1024:
        return f"{int(n)} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"
