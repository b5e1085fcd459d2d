"""Calling a build backend's PEP 517 / PEP 660 hooks, through ``pyproject_hooks``.

Each hook runs in a subprocess on the build environment's Python (``pyproject_hooks``
writes the request, runs its in-process script, reads the answer): package code never
runs inside lockenv.  The subprocess sees the build environment alone (no PYTHONPATH,
no user site-packages, the environment's ``bin`` first on PATH); everything it prints
goes to a build log, whose tail is shown when the build fails.
"""

from __future__ import annotations

import os
import subprocess
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lockenv.build.source_tree import BuildSystem
from lockenv.errors import BuildError

__all__ = ["Backend", "log_tail"]

_TAIL_LINES = 25
# Variables that would let the host's Python setup leak into the build.
_DROPPED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "__PYVENV_LAUNCHER__")


class _HookFailed(Exception):
    def __init__(self, returncode: int) -> None:
        super().__init__(returncode)
        self.returncode = returncode


def log_tail(log: Path, lines: int = _TAIL_LINES) -> tuple[str, ...]:
    """The last ``lines`` non-empty lines of the log at ``log``."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(line.rstrip() for line in text.splitlines() if line.strip())[-lines:]


class Backend:
    """The build backend of one source tree, in one build environment."""

    def __init__(
        self, tree: Path, system: BuildSystem, *, python: Path, log: Path, label: str
    ) -> None:
        from pyproject_hooks import BuildBackendHookCaller

        self.tree = tree
        self.system = system
        self.python = python
        self.log = log
        self.label = label
        self._caller = BuildBackendHookCaller(
            str(tree),
            system.backend,
            backend_path=list(system.backend_path) or None,
            runner=self._run,
            python_executable=str(python),
        )

    def _run(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
        scripts = self.python.parent
        env["PATH"] = os.pathsep.join(filter(None, [str(scripts), env.get("PATH", "")]))
        env["VIRTUAL_ENV"] = str(scripts.parent)
        env["PYTHONNOUSERSITE"] = "1"
        env.update(extra_environ or {})
        with open(self.log, "ab") as out:
            out.write(f"$ {self.system.backend}: {cmd[-2] if len(cmd) > 1 else cmd}\n".encode())
            out.flush()
            result = subprocess.run(
                list(cmd),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise _HookFailed(result.returncode)

    def call(self, hook: str, *args: Any) -> Any:
        """Call ``hook`` (a `pyproject_hooks.BuildBackendHookCaller` method) with ``args``.

        BuildError, with the tail of the build log, when the backend fails, cannot be
        imported or lacks the hook.
        """
        from pyproject_hooks import BackendUnavailable, HookMissing, UnsupportedOperation

        _quiet_backend_warnings()
        try:
            return getattr(self._caller, hook)(*args)
        except _HookFailed as exc:
            raise BuildError(
                f"{self.label}: the build backend {self.system.backend!r} failed in {hook} "
                f"(exit status {exc.returncode}); the whole log is {str(self.log)!r}",
                log_tail=log_tail(self.log),
            ) from None
        except BackendUnavailable as exc:
            requires = ", ".join(self.system.requires) or "nothing"
            raise BuildError(
                f"{self.label}: its build backend {self.system.backend!r} cannot be imported "
                f"in the build environment (build-system.requires: {requires}); the sdist "
                "names a backend its requirements do not provide",
                log_tail=tuple(exc.traceback.strip().splitlines()[-_TAIL_LINES:]),
            ) from None
        except HookMissing as exc:
            what = (
                "editable installs (PEP 660): install it with editable = false"
                if "editable" in exc.hook_name
                else f"the {exc.hook_name} hook"
            )
            raise BuildError(
                f"{self.label}: its build backend {self.system.backend!r} does not support {what}"
            ) from None
        except UnsupportedOperation:
            raise BuildError(
                f"{self.label}: its build backend {self.system.backend!r} refused {hook}"
            ) from None
        except OSError as exc:
            raise BuildError(f"{self.label}: cannot run {str(self.python)!r}: {exc}") from None


_quiet = threading.Lock()
_quieted = False


def _quiet_backend_warnings() -> None:
    """Backends' warnings are in the build log already: not for the terminal.

    A process-wide filter set once (``warnings.catch_warnings`` is not thread-safe, and
    builds of a lock run in several threads).
    """
    global _quieted
    with _quiet:
        if not _quieted:
            from pyproject_hooks import BuildBackendWarning

            warnings.filterwarnings("ignore", category=BuildBackendWarning)
            _quieted = True
