"""lockenv.__main__: the entry point keeps what the command imports to what it uses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lockenv"

_PROBE = '''
import sys
from lockenv.__main__ import _dataclasses_without_inspect

_dataclasses_without_inspect()
import dataclasses

assert "dataclasses" in sys.modules and "inspect" not in sys.modules


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Documented:
    """Says what it holds."""

    a: int


assert Documented(a=1) == Documented(a=1) and "inspect" not in sys.modules


@dataclasses.dataclass
class Bare:
    a: int
    b: str = "x"


assert sys.modules["inspect"] is dataclasses.inspect
print(Bare.__doc__)
'''


def test_dataclasses_load_inspect_only_for_a_class_without_a_docstring() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    # The docstring dataclasses writes for an undocumented class, as without the stand-in.
    assert result.stdout == "Bare(a: int, b: str = 'x')\n"


def test_nothing_is_done_when_dataclasses_is_already_imported() -> None:
    probe = (
        "import sys, dataclasses\n"
        "real = dataclasses.inspect\n"
        "from lockenv.__main__ import _dataclasses_without_inspect\n"
        "_dataclasses_without_inspect()\n"
        "assert dataclasses.inspect is real is sys.modules['inspect']\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def _undocumented_dataclasses() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.ClassDef)
                and any("dataclass" in ast.unparse(d) for d in node.decorator_list)
                and ast.get_docstring(node) is None
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}: {node.name}")
    return found


def test_every_dataclass_has_a_docstring() -> None:
    # Without one, dataclasses asks inspect for the class's signature to write one: every
    # command that builds the class would load inspect (see _dataclasses_without_inspect).
    assert _undocumented_dataclasses() == []
