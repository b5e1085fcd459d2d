"""Entry-point launchers and ``#!python`` shebang rewriting, as pip does them on POSIX.

A console or gui script is a small Python file whose shebang names the environment's
interpreter.  When that path cannot be a shebang (spaces, or longer than the kernel
reads), the launcher starts as a ``/bin/sh`` script that re-executes itself with the
interpreter: a line both sh and Python can read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from lockenv.errors import InstallError, UnsafePathError

__all__ = [
    "EntryPoint",
    "launcher_script",
    "parse_entry_points",
    "python_shebang_chunks",
    "rewrite_python_shebang",
    "shebang",
]

# Linux reads 127 bytes of a shebang line before kernel 5.1; stay below everywhere.
_MAX_SHEBANG = 127
_OBJECT_REF = re.compile(
    r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)"
    r"\s*:\s*(?P<attr>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)"
    r"\s*(?:\[[^\]]*\])?\s*$"
)
SCRIPT_GROUPS = ("console_scripts", "gui_scripts")

EntryPoint = tuple[str, str, str]  # (group, script name, "module:attr")


def parse_entry_points(text: str, *, wheel: str) -> list[EntryPoint]:
    """The console_scripts and gui_scripts of an ``entry_points.txt``.

    Script names become file names in ``bin/``: one plain component only, else
    UnsafePathError.  A malformed file or reference is an InstallError naming the wheel.
    """
    import configparser

    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise InstallError(f"{wheel}: entry_points.txt is malformed: {exc}") from None
    found: list[EntryPoint] = []
    for group in SCRIPT_GROUPS:
        if not parser.has_section(group):
            continue
        for name, value in parser.items(group):
            if (
                not name
                or name in (".", "..")
                or "/" in name
                or "\\" in name
                or "\0" in name
                or name.startswith("-")
            ):
                raise UnsafePathError(
                    f"{wheel}: entry point script name {name!r} is not a plain file name; "
                    "refusing to install this wheel"
                )
            if _OBJECT_REF.match(value.strip()) is None:
                raise InstallError(
                    f"{wheel}: entry point {name!r} = {value!r} is not 'module:function' "
                    "(a launcher needs the function to call)"
                )
            found.append((group, name, value.strip()))
    return found


def shebang(python: str) -> bytes:
    """The first line(s) of a script run by ``python`` (an absolute path)."""
    line = f"#!{python}\n".encode()
    if " " not in python and len(line) <= _MAX_SHEBANG:
        return line
    quoted = "'" + python.replace("'", "'\"'\"'") + "'"
    # sh runs the exec line; Python sees a string literal and moves on.
    return f"#!/bin/sh\n'''exec' {quoted} \"$0\" \"$@\"\n' '''\n".encode()


def launcher_script(python: str, reference: str) -> bytes:
    """The launcher pip writes for an entry point ``module:attr`` (same body)."""
    match = _OBJECT_REF.match(reference.strip())
    if match is None:  # parse_entry_points checked it already
        raise InstallError(f"entry point {reference!r} is not 'module:function'")
    module = match["module"]
    attr = match["attr"]
    head = f"from {module} import {attr.split('.')[0]}"
    call = attr
    body = (
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n"
        f"{head}\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({call}())\n"
    )
    return shebang(python) + body.encode("utf-8")


def python_shebang_chunks(src: BinaryIO, python: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The script read from ``src`` with a ``#!python`` / ``#!pythonw`` first line pointed
    at ``python`` (unchanged when it has no such line), a chunk at a time."""
    data = src.read(chunk)
    if not data.startswith(b"#!python"):
        while data:
            yield data
            data = src.read(chunk)
        return
    yield shebang(python)
    while data and (newline := data.find(b"\n")) < 0:
        data = src.read(chunk)  # a first line longer than a chunk: skipped
    if data:
        yield data[newline + 1 :]
    while data := src.read(chunk):
        yield data


def rewrite_python_shebang(data: bytes, python: str) -> bytes | None:
    """``data`` with a ``#!python`` / ``#!pythonw`` first line pointed at ``python``.

    None when the script does not start with such a line (it is installed unchanged).
    """
    if not data.startswith(b"#!python"):
        return None
    newline = data.find(b"\n")
    rest = b"" if newline < 0 else data[newline + 1 :]
    return shebang(python) + rest
