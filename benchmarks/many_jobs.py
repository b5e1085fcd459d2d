"""Benchmark: a job array on one empty cache — how often each artifact is downloaded.

    python benchmarks/many_jobs.py [--jobs 64] [--uv PATH] [--pins 30] [--files 3000]

A generated stack (`benchmarks.synthetic.make_stack`) is served on 127.0.0.1 by a server
that logs every request.  Each tool locks it once (with a cache of its own), then
``--jobs`` processes start at once on one *empty* shared cache, each building its own
environment from the lock:

- lockenv: ``lockenv sync --lock lockenv.lock --prefix envs/e<i>`` (what
  ``examples/slurm/job-array.sh`` runs on every node), then ``lockenv verify`` of each;
- uv: ``uv sync --frozen`` with ``UV_PROJECT_ENVIRONMENT=envs/e<i>`` and one
  ``UV_CACHE_DIR``.

Reported per tool: jobs that succeeded, GET requests per artifact over the whole array
(min / max; 1 / 1 is single-flight), and the wall time of the array.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import synthetic  # noqa: E402
from cache_footprint import write_projects  # noqa: E402
from fast_paths import PYTHON, clean_env, timed  # noqa: E402


def run_array(commands: list[tuple[list[str], Path, dict[str, str]]]) -> tuple[int, float]:
    """Start every command at once; (how many exited 0, seconds until the last ended)."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for cmd, cwd, env in commands
    ]
    ok = 0
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode == 0:
            ok += 1
        else:
            print(f"  a job failed ({proc.returncode}): {err.decode()[-500:]}", file=sys.stderr)
    return ok, time.perf_counter() - started


def downloads(served: synthetic.Served, before: dict[str, int], wheels: set[str]) -> list[int]:
    """GET requests per wheel since ``before`` was taken."""
    after = served.requests()
    return [after.get(f"/files/{w}", 0) - before.get(f"/files/{w}", 0) for w in sorted(wheels)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--uv", default=shutil.which("uv") or "/work/peers/bin/uv")
    parser.add_argument("--lockenv", help="a lockenv command (default: this checkout's)")
    parser.add_argument("--pins", type=int, default=30)
    parser.add_argument("--files", type=int, default=3000)
    args = parser.parse_args(argv)
    lockenv = [args.lockenv] if args.lockenv else [sys.executable, "-m", "lockenv"]
    python = shutil.which(f"python{PYTHON}") or sys.executable

    work = Path(tempfile.mkdtemp(prefix="lockenv-many-jobs-"))
    try:
        stack = synthetic.indexed_stack(work, pins=args.pins, files=args.files)
        with synthetic.serve(work / "index") as served:
            le_dir, uv_dir = write_projects(work / "project", stack.top, served.index)
            timed([*lockenv, "lock"], le_dir, clean_env(LOCKENV_CACHE_DIR=str(work / "lc")))
            timed(
                [args.uv, "lock", "-q", "--python", python],
                uv_dir,
                clean_env(UV_CACHE_DIR=str(work / "uc")),
            )
            from lockenv.lockfile import read_lockfile
            from lockenv.platforms import current_platform

            lock = read_lockfile(le_dir / "lockenv.lock")
            wheels = {a.filename for a in lock.packages_for("default", current_platform())}

            rows = []
            env = clean_env(LOCKENV_CACHE_DIR=str(work / "shared-lockenv"))
            before = served.requests()
            prefixes = [work / "envs-lockenv" / f"e{i}" for i in range(args.jobs)]
            ok, seconds = run_array(
                [
                    (
                        [*lockenv, "sync", "-q", "--lock", "lockenv.lock", "--prefix", str(p)],
                        le_dir,
                        env,
                    )
                    for p in prefixes
                ]
            )
            counts = downloads(served, before, wheels)
            verified = sum(
                subprocess.run(
                    [*lockenv, "verify", "--lock", "lockenv.lock", "--prefix", str(p)],
                    cwd=le_dir,
                    env=env,
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
                for p in prefixes
            )
            rows.append(("lockenv", ok, verified, counts, seconds))

            env = clean_env(UV_CACHE_DIR=str(work / "shared-uv"), UV_LINK_MODE="hardlink")
            before = served.requests()
            ok, seconds = run_array(
                [
                    (
                        [args.uv, "sync", "-q", "--frozen", "--python", python],
                        uv_dir,
                        {**env, "UV_PROJECT_ENVIRONMENT": str(work / "envs-uv" / f"e{i}")},
                    )
                    for i in range(args.jobs)
                ]
            )
            rows.append(("uv", ok, None, downloads(served, before, wheels), seconds))

        print(
            f"\n{args.jobs} jobs at once on one empty cache, {len(wheels)} artifacts "
            f"({args.files} files), {os.cpu_count()} CPUs"
        )
        print(f"{'tool':<10}{'ok':>6}{'verified':>10}{'GETs/artifact min-max':>24}{'wall s':>9}")
        for tool, ok, verified, counts, seconds in rows:
            shown = "-" if verified is None else str(verified)
            spread = f"{min(counts)}-{max(counts)} (total {sum(counts)})"
            print(f"{tool:<10}{ok:>6}{shown:>10}{spread:>24}{seconds:>9.1f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
