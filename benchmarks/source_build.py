"""Benchmark: lock and sync of sdist-only packages, cold and warm — lockenv vs uv.

    python benchmarks/source_build.py [--rounds 3] [--uv PATH] [--package NAME]...

The packages (default: ``flitsdist``, built by the real flit_core, whose metadata is
dynamic so even locking needs a build; and ``tinysdist``, static metadata, built by the
fixture's small backend) come from the fixture index (``fixtures/build_index.py``) read
through ``file://``; their build backends are wheels on that index.  No network.

- lock: ``lockenv lock`` for this machine's platform vs ``uv pip compile`` (both ask the
  backend for metadata when it is dynamic);
- sync: ``lockenv sync`` into a new environment vs ``uv venv`` + ``uv pip sync`` of the
  same pins (both build the sdist in an isolated build environment, then install);
- cold: empty caches; warm: the caches a previous run left (built wheels included).

Every tool gets its own cache; pip's and uv's configuration files are ignored.  Times
are medians of ``--rounds`` runs (wall clock of the whole command, start-up included);
the table ends with the ratios lockenv / uv (lower is better).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixtures.build_index import build_index  # noqa: E402


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "LOCKENV_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never")
    env.update(extra)
    return env


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uv", default=shutil.which("uv") or "uv")
    parser.add_argument("--package", action="append", dest="packages")
    args = parser.parse_args(argv)
    packages = args.packages or ["flitsdist", "tinysdist"]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    work = Path(tempfile.mkdtemp(prefix="lockenv-bench-build-"))
    try:
        index = (build_index(work / "index") / "simple").as_uri()
        project = work / "project"
        project.mkdir()
        deps = "".join(f'{name} = "*"\n' for name in packages)
        (project / "lockenv.toml").write_text(
            "[project]\n"
            'platforms = ["' + _platform() + '"]\n'
            f'indexes = ["{index}"]\n'
            f'requires-python = "=={python}.*"\n\n[pypi-dependencies]\n' + deps
        )
        (project / "req.in").write_text("\n".join(packages) + "\n")
        lockenv = [sys.executable, "-m", "lockenv", "-q"]
        lock_cache, uv_cache = work / "lockenv-cache", work / "uv-cache"
        lock_env = _env(LOCKENV_CACHE_DIR=str(lock_cache))
        uv_env = _env(UV_CACHE_DIR=str(uv_cache))
        compile_cmd = [args.uv, "pip", "compile", "-q", "--index-url", index]
        compile_cmd += ["--python-version", python, "req.in", "-o", "req.txt"]

        def lock(cold: bool) -> float:
            if cold:
                shutil.rmtree(lock_cache, ignore_errors=True)
            (project / "lockenv.lock").unlink(missing_ok=True)
            return _run([*lockenv, "lock"], lock_env, project)

        def uv_lock(cold: bool) -> float:
            if cold:
                shutil.rmtree(uv_cache, ignore_errors=True)
            return _run(compile_cmd, uv_env, project)

        counter = iter(range(1_000_000))

        def sync(cold: bool) -> float:
            if cold:
                shutil.rmtree(lock_cache, ignore_errors=True)
            prefix = work / f"lockenv-env-{next(counter)}"
            cmd = [*lockenv, "sync", "--frozen", "--prefix", str(prefix)]
            return _run(cmd, lock_env, project)

        def uv_sync(cold: bool) -> float:
            if cold:
                shutil.rmtree(uv_cache, ignore_errors=True)
            prefix = work / f"uv-env-{next(counter)}"
            elapsed = _run(
                [args.uv, "venv", "-q", "--python", python, str(prefix)], uv_env, project
            )
            cmd = [args.uv, "pip", "sync", "-q", "--index-url", index, "--python"]
            cmd += [str(prefix / "bin" / "python"), "req.txt"]
            return elapsed + _run(cmd, uv_env, project)

        results: dict[str, dict[str, float]] = {"lockenv": {}, "uv": {}}
        for label, step in (("lockenv", lock), ("uv", uv_lock)):
            results[label]["lock cold"] = _median(step, True, args.rounds)
            results[label]["lock warm"] = _median(step, False, args.rounds)
        lock(False)  # the lock the syncs install
        uv_lock(False)
        for label, step in (("lockenv", sync), ("uv", uv_sync)):
            results[label]["sync cold"] = _median(step, True, args.rounds)
            step(False)  # fills the cache (built wheels) for the warm runs
            results[label]["sync warm"] = _median(step, False, args.rounds)
        print(f"sdist-only packages: {', '.join(packages)} (Python {python}, {_platform()})")
        print(f"{'scenario':<12}{'lockenv':>10}{'uv':>10}{'lockenv/uv':>12}")
        for scenario in ("lock cold", "lock warm", "sync cold", "sync warm"):
            ours, theirs = results["lockenv"][scenario], results["uv"][scenario]
            print(f"{scenario:<12}{ours:>9.2f}s{theirs:>9.2f}s{ours / theirs:>11.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _platform() -> str:
    from lockenv.platforms import current_platform

    return current_platform()


def _median(step: Callable[[bool], float], cold: bool, rounds: int) -> float:
    return statistics.median(step(cold) for _ in range(rounds))


if __name__ == "__main__":
    raise SystemExit(main())
