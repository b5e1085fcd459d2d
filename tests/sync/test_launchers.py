"""Entry-point parsing, launcher scripts and #!python rewriting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockenv.errors import InstallError, UnsafePathError
from lockenv.sync.launchers import (
    launcher_script,
    parse_entry_points,
    rewrite_python_shebang,
    shebang,
)


def test_parse_entry_points() -> None:
    text = (
        "[console_scripts]\nCli = pkg.mod:main\nx = pkg:obj.method [extra]\n"
        "[gui_scripts]\ng = pkg:gui\n[other.group]\nignored = a:b\n"
    )
    assert parse_entry_points(text, wheel="w") == [
        ("console_scripts", "Cli", "pkg.mod:main"),
        ("console_scripts", "x", "pkg:obj.method [extra]"),
        ("gui_scripts", "g", "pkg:gui"),
    ]


@pytest.mark.parametrize("value", ["pkg", "pkg:", "1pkg:main", "pkg:main()"])
def test_bad_references(value: str) -> None:
    with pytest.raises(InstallError, match="module:function"):
        parse_entry_points(f"[console_scripts]\nx = {value}\n", wheel="w")


@pytest.mark.parametrize("name", ["a/b", "..", "-x", "a\\b"])
def test_bad_script_names(name: str) -> None:
    with pytest.raises(UnsafePathError):
        parse_entry_points(f"[console_scripts]\n{name} = pkg:main\n", wheel="w")


def test_launcher_matches_pip() -> None:
    assert launcher_script("/p/bin/python", "pkg.cli:app.run") == (
        b"#!/p/bin/python\n"
        b"# -*- coding: utf-8 -*-\n"
        b"import re\n"
        b"import sys\n"
        b"from pkg.cli import app\n"
        b"if __name__ == '__main__':\n"
        b"    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        b"    sys.exit(app.run())\n"
    )


def test_shebang_falls_back_to_sh_for_spaces_and_length(tmp_path: Path) -> None:
    assert shebang("/short/python") == b"#!/short/python\n"
    python = Path(sys.executable)
    for odd in (tmp_path / "with space", tmp_path / ("x" * 130)):
        odd.mkdir()
        link = odd / "python"
        link.symlink_to(python)
        script = odd / "script"
        script.write_bytes(shebang(str(link)) + b"import sys\nprint(sys.executable)\n")
        script.chmod(0o755)
        assert script.read_bytes().startswith(b"#!/bin/sh\n")
        out = subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout
        assert out.strip() == str(link)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"#!python\nprint(1)\n", b"#!/p/bin/python\nprint(1)\n"),
        (b"#!pythonw -u\nx\n", b"#!/p/bin/python\nx\n"),
        (b"#!/usr/bin/env python\nx\n", None),
        (b"binary\x00", None),
    ],
)
def test_rewrite_python_shebang(data: bytes, expected: bytes | None) -> None:
    assert rewrite_python_shebang(data, "/p/bin/python") == expected
