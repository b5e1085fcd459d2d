"""The ``lockenv`` command's entry point: the fast path for job arrays, else the CLI.

``lockenv run -- CMD`` and a no-op ``lockenv sync`` are what every task of a job array
runs.  When their arguments are the plain ones (an environment, a prefix, a lock, the
modes that change nothing for an environment in sync), they are answered here from the
environment's stamp (`lockenv.fastpath`), importing nothing but ``os``, ``sys`` and that
module.  Anything else, and anything the stamp cannot vouch for, goes to `lockenv.cli`,
which does the full check (and leaves a stamp for the next time).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing itself is not imported: the fast path does without it
if TYPE_CHECKING:
    from typing import NoReturn


def _parse(argv: Sequence[str]) -> dict[str, str | list[str] | int | bool] | None:
    """The options of a plain ``sync`` or ``run`` that the fast path can answer
    (`lockenv.fastpath.read_plain`, less what the full command line would refuse or
    needs to look at), or None for anything else."""
    from lockenv.fastpath import read_plain

    plain = read_plain(argv)
    if plain is None:
        return None
    command = plain["command"]
    found: dict[str, str | list[str] | int | bool] = {
        "command": command,
        "frozen": bool(plain.get("frozen")),
        "quiet": _count(plain["quiet"]) + _count(plain["quiet_after"]),
    }
    for key in ("environment", "prefix", "lock"):
        if key in plain:
            found[key] = plain[key]
    if command == "run":
        cmd = plain.get("cmd", [])
        assert isinstance(cmd, list)
        if cmd[:1] == ["--"]:
            cmd = cmd[1:]
        if not cmd:
            return None
        found["cmd"] = cmd
    if "lock" in found and "prefix" not in found:
        return None
    bundle = plain.get("bundle")
    if isinstance(bundle, str) and not os.path.isfile(os.path.join(bundle, "bundle.json")):
        return None  # not a bundle: the full command line says so (a no-op needs none)
    return found


def _count(value: object) -> int:
    assert isinstance(value, int)
    return value


def _left_by_killed_sync(prefix: str) -> bool:
    """True when a staging or moved-away tree of ``prefix`` lies beside it: one listing."""
    parent, name = os.path.split(prefix)
    stems = (f".{name}.staging-", f".{name}.old-")
    try:
        return any(entry.startswith(stems) for entry in os.listdir(parent or "."))
    except OSError:
        return False


def _fast(argv: Sequence[str]) -> int | None:
    """Answer a plain ``sync``/``run`` of an environment in sync; None: not decided."""
    from lockenv.fastpath import (
        activation_env,
        find_program,
        locate_manifest,
        stamp_says_current,
        up_to_date_message,
    )

    options = _parse(argv)
    if options is None:
        return None
    environment = str(options.get("environment", "default"))
    prefix_option = options.get("prefix")
    lock_option = options.get("lock")
    manifest: str | None
    if isinstance(lock_option, str):
        lock, manifest = os.path.abspath(lock_option), None
    else:
        located = locate_manifest(os.getcwd())
        if located is None:
            return None
        manifest, root, vouch = located
        lock = os.path.join(root, "lockenv.lock")
        if options["frozen"] and not vouch:
            manifest = None  # not read at all
        if not isinstance(prefix_option, str):
            prefix_option = os.path.join(root, ".lockenv", "envs", environment)
    prefix = os.path.abspath(str(prefix_option))
    if not stamp_says_current(prefix, environment=environment, lock=lock, manifest=manifest):
        return None
    if options["command"] == "sync":
        if _left_by_killed_sync(prefix):
            return None  # the full path removes them (`lockenv.sync.materialize.tidy`)
        if not options["quiet"]:
            sys.stderr.write(up_to_date_message(environment, prefix) + "\n")
        return 0
    command = options["cmd"]
    assert isinstance(command, list)
    env = activation_env(prefix, os.environ)
    program = find_program(command[0], env.get("PATH", ""))
    if program is None:
        return None  # the full command line says what is wrong
    sys.stdout.flush()
    sys.stderr.flush()
    # exec: signals and the exit status reach the caller as if lockenv were not there.
    os.execve(program, command, env)
    return 0  # not reached


def _dataclasses_without_inspect() -> None:
    """Import `dataclasses` with `inspect` loaded only if a dataclass needs it.

    dataclasses imports inspect, and with it ast, dis, tokenize and linecache (about a
    tenth of a warm sync's start-up), for one call: `inspect.signature`, which writes the
    docstring of a dataclass that has none.  lockenv's dataclasses have docstrings
    (tests/test_main.py checks), so the command never needs it.  `dataclasses` is given a
    stand-in that imports the real module at its first attribute lookup, and is then
    pointed at it; whatever else imports inspect gets the real module.
    """
    if "dataclasses" in sys.modules or "inspect" in sys.modules:
        return
    import types

    class _Inspect(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            if sys.modules.get("inspect") is self:
                del sys.modules["inspect"]
            import inspect  # the real one

            vars(sys.modules["dataclasses"])["inspect"] = inspect
            return getattr(inspect, name)

    stand_in = _Inspect("inspect")
    sys.modules["inspect"] = stand_in
    try:
        import dataclasses  # noqa: F401  (imported for what it keeps of the stand-in)
    finally:
        if sys.modules.get("inspect") is stand_in:
            del sys.modules["inspect"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lockenv`` command with ``argv``; without, the process's arguments, and
    the process ends with the command (`_end`)."""
    if argv is None:
        _end(main(sys.argv[1:]))
    args = list(argv)
    if os.name == "posix":
        status = _fast(args)
        if status is not None:
            return status
    from lockenv.gcpause import gc_paused

    # Modules, functions and classes by the thousand, all kept: nothing to collect.
    with gc_paused():
        _dataclasses_without_inspect()
        from lockenv.cli import main as cli_main

    return cli_main(args)


def _end(status: int) -> NoReturn:
    """End the process with ``status`` without tearing the interpreter down.

    What the end of the interpreter does that anything outside it can see is done here:
    the ``atexit`` handlers run (log handlers flushed and closed, temporary directories
    removed...) and the standard streams are flushed.  What is left out is freeing every
    object and module one by one, which nothing needs of a process that ends (measured:
    30-60 ms after a warm sync of a large environment, more than a no-op sync takes).
    While another thread runs (the interpreter would wait for it), or when a stream
    cannot be flushed (the interpreter reports it), the interpreter ends as usual.
    """
    import atexit

    threading = sys.modules.get("threading")  # no thread was started without it
    if threading is None or threading.active_count() == 1:
        atexit._run_exitfuncs()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        else:
            os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    raise SystemExit(main())
