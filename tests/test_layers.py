"""The package's layering, as the import contracts in pyproject.toml state it.

`lockenv/__init__.py` describes the layers; import-linter checks them over every import
(function-level and TYPE_CHECKING ones included).  The contracts are also run on a copy
of the package with deliberate violations, to show they fail when broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_LINT = (
    "import sys\n"
    "from importlinter.cli import lint_imports_command\n"
    "sys.exit(lint_imports_command())\n"
)


def _lint(project: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = ["--no-logo", "--no-cache"]
    for contract in contracts:
        args += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, "-c", _LINT, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_contracts_hold() -> None:
    pytest.importorskip("importlinter")
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    shutil.copytree(
        ROOT / "lockenv", project / "lockenv", ignore=shutil.ignore_patterns("__pycache__")
    )
    return project


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "violation", "contract"),
    [
        ("sync/fetch.py", "import lockenv.lock.resolve  # noqa", "sync-alone"),
        ("sync/verify.py", "import tomlkit  # noqa", "sync-alone"),
        ("sync/plan.py", "from lockenv.lock.pypi import index  # noqa", "sync-alone"),
        ("lockfile.py", "from lockenv import cli  # noqa", "no-cli"),
        ("lock/resolve.py", "from lockenv.sync import materialize  # noqa", "layers"),
        ("errors.py", "import lockenv.platforms  # noqa", "layers"),
        ("lock/pypi/provider.py", "import lockenv.lock.conda.solver  # noqa", "ecosystems"),
        # Building needs both sides; neither side may reach up into it.
        ("sync/materialize.py", "import lockenv.build.builder  # noqa", "layers"),
        ("lock/pypi/metadata.py", "from lockenv.build import backend  # noqa", "layers"),
        ("build/builder.py", "import lockenv.workspace  # noqa", "layers"),
    ],
)
def test_a_deliberate_violation_breaks_its_contract(
    tmp_path: Path, module: str, violation: str, contract: str
) -> None:
    pytest.importorskip("importlinter")
    project = _copy_project(tmp_path)
    _append(project / "lockenv" / module, violation)
    result = _lint(project, contract)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    # The run used the copy, not the installed package.
    assert "lockenv." in result.stdout


# Modules of one layer may import each other (the base layer's `cache` uses `http`), which
# the layers contract allows in both directions: a cycle between them is found here.
_CYCLES = """
import grimp
graph = grimp.build_graph("lockenv", exclude_type_checking_imports=False)
found = set()
for module in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        back = graph.find_shortest_chain(importer=imported, imported=module)
        if back:
            found.add(" -> ".join((module, *back)))
print("\\n".join(sorted(found)))
"""


def _import_cycles(project: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    result = subprocess.run(
        [sys.executable, "-c", _CYCLES],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return result.stdout.split()


def test_no_import_cycles() -> None:
    pytest.importorskip("grimp")
    assert _import_cycles(ROOT) == []


def test_a_cycle_within_a_layer_is_found(tmp_path: Path) -> None:
    pytest.importorskip("grimp")
    project = _copy_project(tmp_path)
    _append(project / "lockenv" / "mirrors.py", "from lockenv import http  # noqa")
    cycles = " ".join(_import_cycles(project))
    assert "lockenv.http" in cycles and "lockenv.mirrors" in cycles
