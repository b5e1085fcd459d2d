"""Is a ``__pycache__/*.pyc`` the compiled form of the source beside it?

Python loads ``pkg/__pycache__/mod.cpython-311.pyc`` instead of ``pkg/mod.py`` when the
header matches the source (its mtime and size, or its hash, or never checked for
"unchecked-hash" files): a file anyone can forge.  So `shadow_bytecode` compiles each
source and compares the code with what the ``.pyc`` holds, code object by code object
(``co_code``, constants, names, line tables; not the file name, which the environment's
prefix changes).  A ``.pyc`` its interpreter would not load (another Python's magic
number) is inert and passes.

The check runs in the environment's own interpreter (the one that would load the
bytecode), isolated (``-I -S``: no site, no ``.pth`` files, no package code), in a few
parallel processes; unmarshalling a hostile file may crash that process, which then
counts every file it was given as not matching.

Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence

__all__ = ["BytecodeFile", "pyc_source", "shadow_bytecode"]

BytecodeFile = tuple[str, str, int]  # (pyc path, source path, optimization level)

_CHECKER = r"""
import importlib.util, json, marshal, sys

def check(items):
    bad = []
    magic = importlib.util.MAGIC_NUMBER
    for pyc, source, optimize in items:
        try:
            with open(pyc, "rb") as fh:
                data = fh.read()
            if data[:4] != magic:
                continue  # this interpreter never loads it
            if int.from_bytes(data[4:8], "little") & ~0b11:
                bad.append(pyc)
                continue
            code = marshal.loads(data[16:])
            with open(source, "rb") as fh:
                text = fh.read()
            expected = compile(text, source, "exec", dont_inherit=True, optimize=optimize)
            if code != expected:
                bad.append(pyc)
        except Exception:
            bad.append(pyc)
    return bad

json.dump(check(json.load(sys.stdin)), sys.stdout)
"""
_PER_PROCESS = 400


def pyc_source(rel: str) -> tuple[str, int] | None:
    """``(source path, optimization level)`` of ``a/__pycache__/m.<tag>[.opt-N].pyc``,
    or None when ``rel`` is not bytecode in a ``__pycache__`` directory."""
    head, _, name = rel.rpartition("/")
    directory, _, cache = head.rpartition("/")
    if cache != "__pycache__" or not name.endswith(".pyc"):
        return None
    parts = name[: -len(".pyc")].split(".")
    if len(parts) < 2:
        return None
    optimize = 0
    if len(parts) >= 3 and parts[-1].startswith("opt-") and parts[-1][4:].isdigit():
        optimize = int(parts[-1][4:])
        parts = parts[:-1]
    module = ".".join(parts[:-1])  # drop the cache tag ("cpython-311")
    if not module:
        return None
    return (f"{directory}/{module}.py" if directory else f"{module}.py"), optimize


def shadow_bytecode(python: str, items: Sequence[BytecodeFile]) -> list[str]:
    """The ``.pyc`` paths among ``items`` that ``python`` would load and that do not hold
    the compiled source; every one of them when ``python`` cannot run."""
    if not items:
        return []
    chunks = [items[i : i + _PER_PROCESS] for i in range(0, len(items), _PER_PROCESS)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    workers = max(1, min(len(chunks), os.cpu_count() or 1))
    from concurrent.futures import ThreadPoolExecutor

    def run(chunk: Sequence[BytecodeFile]) -> list[str]:
        try:
            done = subprocess.run(
                [python, "-I", "-S", "-c", _CHECKER],
                input=json.dumps(list(chunk)),
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                check=True,
            )
            bad = json.loads(done.stdout)
            if isinstance(bad, list) and all(isinstance(b, str) for b in bad):
                return bad
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
        return [pyc for pyc, _source, _optimize in chunk]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sorted(path for bad in pool.map(run, chunks) for path in bad)
