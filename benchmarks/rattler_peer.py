"""py-rattler as a peer: solve lists of conda requests with rattler, from a lockenv script.

py-rattler is not a lockenv dependency: it runs in a Python of its own (a throwaway
venv, ``--rattler-python``), fed a JSON job on its command line and answering JSON on
stdout.  Both tools get the same virtual packages: the ones lockenv gives each target
platform by default (`lockenv.platforms.virtual_packages`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lockenv.platforms import get_platform, virtual_packages  # noqa: E402

# Runs in the rattler Python: every job through one Gateway, one after the other, each
# timed in CPU seconds (rattler's threads included); a failure is recorded, not raised.
# With a timeout, a request rattler gives up on is marked "undecided" (not an answer).
BATCH_SCRIPT = r"""
import asyncio, datetime, json, sys, time
import rattler
from rattler import BuildString, Gateway, GenericVirtualPackage, PackageName, Version

job = json.loads(open(sys.argv[1]).read())

async def main():
    gateway = Gateway(cache_dir=job["cache"])
    results = []
    for request in job["requests"]:
        platform = request["platform"]
        virtual = [
            GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
            for n, v, b in job["virtual"][platform]
        ]
        timeout = job.get("timeout")
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            records = await rattler.solve(
                sources=[job["channel"]], specs=request["specs"], gateway=gateway,
                platforms=[platform, "noarch"], virtual_packages=virtual, strategy="highest",
                timeout=datetime.timedelta(seconds=timeout) if timeout else None,
            )
            answer = {"solution": {
                str(r.name.normalized): f"{r.version} {r.build}" for r in records
            }}
        except Exception as exc:
            answer = {"error": str(exc)}
            if timeout and time.perf_counter() - wall >= timeout:
                answer["undecided"] = True
        answer["cpu"] = time.process_time() - cpu
        answer["wall"] = time.perf_counter() - wall
        results.append(answer)
    return results

print(json.dumps(asyncio.run(main())))
"""


def find_rattler_python(given: str | None) -> str:
    """``given``, else $RATTLER_PYTHON, else this Python: one that can import rattler."""
    python = given or os.environ.get("RATTLER_PYTHON") or sys.executable
    probe = subprocess.run(
        [python, "-c", "import rattler"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        sys.exit(
            f"{python} cannot import rattler (py-rattler). It is not a lockenv dependency; "
            "install it into a throwaway venv:\n"
            "  uv venv /tmp/rattler && VIRTUAL_ENV=/tmp/rattler uv pip install py-rattler\n"
            "then pass --rattler-python /tmp/rattler/bin/python (or set RATTLER_PYTHON)"
        )
    return python


def peer_env() -> dict[str, str]:
    """The environment for peer processes: no pip, uv or lockenv settings leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "LOCKENV_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def write_project(
    project: Path, name: str, platforms: list[str], channel_url: str, specs: list[tuple[str, str]]
) -> None:
    """Write ``project/lockenv.toml``: one channel, ``specs`` as (name, spec) dependencies."""
    project.mkdir(parents=True, exist_ok=True)
    deps = "\n".join(f"{dep} = {json.dumps(spec)}" for dep, spec in specs)
    (project / "lockenv.toml").write_text(
        f'[project]\nname = "{name}"\nplatforms = {json.dumps(platforms)}\n'
        f"channels = {json.dumps([channel_url])}\n\n[dependencies]\n{deps}\n"
    )


def rattler_solve_all(
    python: str,
    channel_url: str,
    requests: list[dict[str, Any]],
    cache: Path | None = None,
    *,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """rattler's answer to each request (``{"platform", "specs"}``), in order:
    ``{"solution": {name: "version build"}}`` or ``{"error": message}``, plus ``cpu``
    and ``wall`` seconds.  A request still unsolved after ``timeout`` seconds (wall)
    answers ``{"error": ..., "undecided": True}``."""
    platforms = sorted({r["platform"] for r in requests})
    with tempfile.TemporaryDirectory(prefix="rattler-peer-") as work:
        job = {
            "channel": channel_url,
            "requests": requests,
            "virtual": {
                p: [[v.name, v.version, v.build] for v in virtual_packages(get_platform(p))]
                for p in platforms
            },
            "cache": str(cache or Path(work) / "cache"),
            "timeout": timeout,
        }
        job_file = Path(work) / "job.json"
        job_file.write_text(json.dumps(job))
        result = subprocess.run(
            [python, "-c", BATCH_SCRIPT, str(job_file)],
            capture_output=True,
            text=True,
            check=False,
            env=peer_env(),
        )
    if result.returncode != 0:
        sys.exit(f"rattler failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


# Runs a command and reports its wall time, CPU time and peak memory on stderr's last line.
_MEASURE = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
result = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.buffer.write(result.stdout)
sys.stderr.buffer.write(result.stderr)
report = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
          "rss": usage.ru_maxrss / 1024, "code": result.returncode}
print("\n" + json.dumps(report), file=sys.stderr)
"""


def measure(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """Run ``cmd``: (wall seconds, CPU seconds, peak resident MB, stdout).  Exits on failure.

    Each command runs under a small parent process of its own, so its peak memory is
    its own (the resource usage of a process's children is the maximum over all).
    """
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    if report["code"] != 0:
        sys.exit(
            f"failed: {' '.join(cmd[:3])} ...\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    return report["wall"], report["cpu"], report["rss"], result.stdout
