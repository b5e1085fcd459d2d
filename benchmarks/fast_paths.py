"""Benchmark: what a job array pays per task — lockenv beside uv on the same project.

    python benchmarks/fast_paths.py [--rounds 9] [--uv PATH] [--lockenv PATH] [--only CASE]
                                    [--baseline CMD]

A generated stack (`benchmarks.synthetic.make_stack`: 24 packages asked for, 80 pins,
about 12k files) is served on 127.0.0.1 and locked by each tool for this machine: a
lockenv project and a uv project asking for the same packages.  Then, each tool with its
own warm cache, in turns (lockenv, uv, lockenv, uv, ...):

- run:      ``lockenv run -- true``            vs ``uv run --offline -- true``
- no-op:    ``lockenv sync``                   vs ``uv sync --offline``
- warm:     environment deleted (lockenv's with the spare tree it keeps beside it), then
            ``lockenv sync --frozen`` vs ``uv sync --frozen``
- change:   one pin moved (1.0 -> 1.1 -> 1.2 -> 1.0 ...), then ``lockenv sync --frozen``
            vs ``uv sync --frozen``; three versions in turn, so that the tree lockenv kept
            from the sync before last (`lockenv.sync.reuse`) is one package off too

(uv's ``--frozen`` and ``--offline`` keep it from asking the index again, which
would only flatter lockenv; so would an interpreter shim first on PATH, see
`real_interpreter`.)  ``cp -al`` of the environment is shown for scale, and
"floor": a bare Python loop that only makes its directories and lstats and links its
cache files (`link_floor`), start-up included.  Times
are medians of wall-clock and CPU (user + system, the process and its children); the
ratios are lockenv / uv.  lockenv is installed from this checkout into a fresh venv (not
editable: an editable install's import hook costs every start-up).

``--baseline CMD`` names another lockenv command (say, one installed from an older
checkout), timed in the same rounds on the same project and cache (an environment of its
own), in turn with the two others (lockenv, baseline, uv, ...): a before/after that a
varying load hits alike.  It is shown in a second table, as lockenv / baseline.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import synthetic  # noqa: E402
from link_floor import write_plan  # noqa: E402

from lockenv.platforms import current_platform  # noqa: E402

PYTHON = "3.11"
VERSIONS = ("1.0", "1.1", "1.2")  # of the package a one-package change moves
CASES = ("run", "no-op", "warm", "change")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without pip's, uv's and lockenv's settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "LOCKENV_", "VIRTUAL_ENV", "PYTHON", "CONDA"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, LOCKENV_CONFIG=os.devnull, UV_PYTHON_DOWNLOADS="never")
    env.update(extra)
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``cmd``; exits on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def real_interpreter(python: str) -> str:
    """The interpreter ``python`` starts, past any shim: pyenv's ``python3.11`` is a shell
    script that takes ~150 ms to start it, and uv runs the interpreter it finds on PATH
    on every sync (measured by hand from such a shell: uv's warm sync 450 ms instead of
    240), which would flatter lockenv."""
    found = subprocess.run(
        [python, "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.strip()


def project_manifests(wanted: list[str], index: str) -> tuple[str, str]:
    """A lockenv manifest and a uv ``pyproject.toml`` asking for the requirements
    ``wanted`` (``name`` or ``name==version``) from ``index``, for this platform."""
    deps = "".join(
        f'{w.split("==")[0]} = "{"==" + w.split("==")[1] if "==" in w else "*"}"\n' for w in wanted
    )
    lockenv_toml = (
        "[project]\n"
        'name = "bench"\n'
        f'platforms = ["{current_platform()}"]\n'
        f'indexes = ["{index}"]\n'
        f'requires-python = "=={PYTHON}.*"\n'
        "\n[pypi-dependencies]\n" + deps
    )
    pyproject_toml = (
        "[project]\n"
        'name = "bench"\n'
        'version = "0"\n'
        f'requires-python = "=={PYTHON}.*"\n'
        f"dependencies = {wanted!r}\n"
        "\n[tool.uv]\npackage = false\n"
        f'\n[[tool.uv.index]]\nurl = "{index}"\ndefault = true\n'
    )
    return lockenv_toml, pyproject_toml


def install_lockenv(venv: Path) -> Path:
    """lockenv from this checkout in a fresh venv (not editable); its ``lockenv`` command."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(HERE.parent)],
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOCKENV_")},
    )
    shutil.rmtree(HERE.parent / "build" / "lib", ignore_errors=True)
    shutil.rmtree(HERE.parent / "build" / f"bdist.{sys.platform}", ignore_errors=True)
    return venv / "bin" / "lockenv"


class Pair:
    """Measurements of lockenv and uv in one scenario, taken in turns."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: dict[str, list[tuple[float, float]]] = {
            "lockenv": [],
            "uv": [],
            "baseline": [],
        }
        self.load = float("nan")  # the 1-minute load average when its rounds ended

    def add(self, tool: str, sample: tuple[float, float]) -> None:
        self.samples[tool].append(sample)

    def median(self, tool: str, which: int) -> float:
        return statistics.median(s[which] for s in self.samples[tool])

    def row(self, versus: str = "uv") -> str:
        """The medians of lockenv and of ``versus`` (uv, or the baseline), and the ratios."""
        lw, lc = self.median("lockenv", 0), self.median("lockenv", 1)
        uw, uc = self.median(versus, 0), self.median(versus, 1)
        return (
            f"{self.name:<8}{lw * 1000:>9.1f}{uw * 1000:>9.1f}{lw / uw:>8.2f}x"
            f"{lc * 1000:>10.1f}{uc * 1000:>9.1f}{lc / uc:>8.2f}x{self.load:>7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--uv", default=shutil.which("uv") or "/work/peers/bin/uv")
    parser.add_argument("--lockenv", help="a lockenv command (default: installed afresh)")
    parser.add_argument(
        "--baseline", help="another lockenv command, timed in the same rounds (before/after)"
    )
    parser.add_argument("--pins", type=int, default=80)
    parser.add_argument("--files", type=int, default=12000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--only", action="append", choices=CASES, help="measure only this case (repeatable)"
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="lockenv-fast-paths-"))
    try:
        lockenv = args.lockenv or str(install_lockenv(work / "venv"))
        stack = synthetic.make_stack(
            work / "wheels", pins=args.pins, files=args.files, later=VERSIONS[1:]
        )
        synthetic.write_index(work / "index", stack.wheels)
        with synthetic.serve(work / "index") as served:
            return bench(args, lockenv, stack, served, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench(
    args: argparse.Namespace,
    lockenv: str,
    stack: synthetic.Stack,
    served: synthetic.Served,
    work: Path,
) -> int:
    python = real_interpreter(shutil.which(f"python{PYTHON}") or sys.executable)
    # Both tools find that interpreter first on PATH, not a shim in front of it.
    path = f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    le_dir, uv_dir = work / "lockenv-project", work / "uv-project"
    le_env = clean_env(LOCKENV_CACHE_DIR=str(work / "lockenv-cache"), PATH=path)
    uv_env = clean_env(UV_CACHE_DIR=str(work / "uv-cache"), UV_LINK_MODE="hardlink", PATH=path)
    le_dir.mkdir()
    uv_dir.mkdir()
    locks: dict[str, dict[str, bytes]] = {"lockenv": {}, "uv": {}}
    for version in VERSIONS:
        wanted = [*stack.top, f"{stack.changed}=={version}"]
        lockenv_toml, pyproject_toml = project_manifests(wanted, served.index)
        (le_dir / "lockenv.toml").write_text(lockenv_toml)
        (uv_dir / "pyproject.toml").write_text(pyproject_toml)
        timed([lockenv, "lock"], le_dir, le_env)
        timed([args.uv, "lock", "-q", "--python", python], uv_dir, uv_env)
        locks["lockenv"][version] = (le_dir / "lockenv.lock").read_bytes()
        locks["uv"][version] = (uv_dir / "uv.lock").read_bytes()
    # Both projects as locked for the first version, environments built, caches warm.
    last, first = f"=={VERSIONS[-1]}", f"=={VERSIONS[0]}"
    manifests = {
        "lockenv": (le_dir / "lockenv.toml").read_text().replace(f'"{last}"', f'"{first}"'),
        "uv": (uv_dir / "pyproject.toml").read_text().replace(last, first),
    }
    (le_dir / "lockenv.toml").write_text(manifests["lockenv"])
    (uv_dir / "pyproject.toml").write_text(manifests["uv"])
    (le_dir / "lockenv.lock").write_bytes(locks["lockenv"][VERSIONS[0]])
    (uv_dir / "uv.lock").write_bytes(locks["uv"][VERSIONS[0]])
    for version in (*VERSIONS[1:], VERSIONS[0]):  # every version in both caches
        (le_dir / "lockenv.lock").write_bytes(locks["lockenv"][version])
        (uv_dir / "uv.lock").write_bytes(locks["uv"][version])
        timed([lockenv, "sync", "--frozen"], le_dir, le_env)
        timed([args.uv, "sync", "-q", "--frozen", "--python", python], uv_dir, uv_env)
    timed([lockenv, "sync"], le_dir, le_env)
    # The baseline gets a project of its own (the same manifest, locks and cache): the
    # two share no environment, so neither refreshes a tree the other kept (whose
    # record it may not read, if their formats differ).
    base_dir = work / "baseline-project"
    if args.baseline:
        base_dir.mkdir()
        shutil.copy(le_dir / "lockenv.toml", base_dir / "lockenv.toml")
        for version in (*VERSIONS[1:], VERSIONS[0]):
            (base_dir / "lockenv.lock").write_bytes(locks["lockenv"][version])
            timed([args.baseline, "sync", "--frozen"], base_dir, le_env)
        timed([args.baseline, "sync"], base_dir, le_env)
    le_prefix, uv_prefix = le_dir / ".lockenv" / "envs" / "default", uv_dir / ".venv"
    files = sum(len(f) for _, _, f in os.walk(le_prefix))
    time.sleep(2.5)  # lockenv's stamp trusts files 2 s older than itself

    pairs = []
    tools = ("lockenv", "baseline", "uv") if args.baseline else ("lockenv", "uv")
    command = {"lockenv": lockenv, "baseline": args.baseline or lockenv}
    project = {"lockenv": le_dir, "baseline": base_dir}

    def scenario(name: str, steps: dict[str, Callable[[], tuple[float, float]]]) -> None:
        if args.only and name not in args.only:
            return
        pair = Pair(name)
        for tool in tools:
            steps[tool]()  # warm-up
        for _ in range(args.rounds):
            for tool in tools:
                pair.add(tool, steps[tool]())
        pair.load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        pairs.append(pair)

    def run(tool: str) -> tuple[float, float]:
        if tool == "uv":
            return timed([args.uv, "run", "--offline", "--", "true"], uv_dir, uv_env)
        return timed([command[tool], "run", "--", "true"], project[tool], le_env)

    def no_op(tool: str) -> tuple[float, float]:
        if tool == "uv":
            return timed([args.uv, "sync", "-q", "--offline"], uv_dir, uv_env)
        return timed([command[tool], "sync", "-q"], project[tool], le_env)

    def warm(tool: str) -> tuple[float, float]:
        if tool == "uv":
            shutil.rmtree(uv_prefix)
            return timed([args.uv, "sync", "-q", "--frozen", "--offline"], uv_dir, uv_env)
        prefix = project[tool] / ".lockenv" / "envs" / "default"
        shutil.rmtree(prefix)
        shutil.rmtree(prefix.parent / f".{prefix.name}.spare", ignore_errors=True)
        return timed([command[tool], "sync", "-q", "--frozen"], project[tool], le_env)

    state = dict.fromkeys(tools, VERSIONS[0])

    def change(tool: str) -> tuple[float, float]:
        state[tool] = VERSIONS[(VERSIONS.index(state[tool]) + 1) % len(VERSIONS)]
        if tool == "uv":
            (uv_dir / "uv.lock").write_bytes(locks["uv"][state[tool]])
            return timed([args.uv, "sync", "-q", "--frozen", "--offline"], uv_dir, uv_env)
        (project[tool] / "lockenv.lock").write_bytes(locks["lockenv"][state[tool]])
        return timed([command[tool], "sync", "-q", "--frozen"], project[tool], le_env)

    for name, step in (("run", run), ("no-op", no_op), ("warm", warm), ("change", change)):
        scenario(name, {tool: functools.partial(step, tool) for tool in tools})

    copies = []
    for i in range(args.rounds):
        copy = work / f"cp-al-{i}"
        copies.append(timed(["cp", "-al", str(le_prefix), str(copy)], work, le_env))
        shutil.rmtree(copy)
    # The floor: a bare Python loop making the same directories and links (link_floor.py).
    floor_plan = work / "floor-plan.json"
    write_plan(le_prefix, work / "lockenv-cache", floor_plan)
    floors = []
    for i in range(args.rounds):
        copy = work / f"floor-{i}"
        floor = [python, "-I", str(HERE / "link_floor.py"), str(floor_plan), str(copy)]
        floors.append(timed(floor, work, le_env))
        shutil.rmtree(copy)

    print(
        f"\n{args.pins} pins ({len(stack.top)} asked for), {files} files in the environment, "
        f"{current_platform()}, {os.cpu_count()} CPUs, median of {args.rounds}"
    )
    print(f"{'':<8}{'wall ms':>18}{'':>9}{'cpu ms':>19}")
    print(
        f"{'':<8}{'lockenv':>9}{'uv':>9}{'ratio':>9}{'lockenv':>10}{'uv':>9}{'ratio':>9}{'load':>7}"
    )
    for pair in pairs:
        print(pair.row())
    cp_wall = statistics.median(c[0] for c in copies)
    cp_cpu = statistics.median(c[1] for c in copies)
    print(f"{'cp -al':<8}{cp_wall * 1000:>9.1f}{'':>18}{cp_cpu * 1000:>10.1f}")
    floor_wall = statistics.median(f[0] for f in floors)
    floor_cpu = statistics.median(f[1] for f in floors)
    print(f"{'floor':<8}{floor_wall * 1000:>9.1f}{'':>18}{floor_cpu * 1000:>10.1f}")
    if args.baseline:
        print(f"\nthe same rounds, beside the baseline ({args.baseline})")
        print(
            f"{'':<8}{'lockenv':>9}{'base':>9}{'ratio':>9}"
            f"{'lockenv':>10}{'base':>9}{'ratio':>9}{'load':>7}"
        )
        for pair in pairs:
            print(pair.row("baseline"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
