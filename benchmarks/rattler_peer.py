"""py-rattler as a peer: solve lists of conda requests with rattler, from a lockenv script.

py-rattler is not a lockenv dependency: it runs in a Python of its own (a throwaway
venv, ``--rattler-python``), fed a JSON job on its command line and answering JSON on
stdout.  Both tools get the same virtual packages: the ones lockenv gives each target
platform by default (`lockenv.platforms.virtual_packages`).
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lockenv.platforms import get_platform, virtual_packages  # noqa: E402

# Runs in the rattler Python: the jobs from ``start`` on through one Gateway, one after
# the other, each timed in CPU seconds (rattler's threads included) and printed as one
# JSON line as soon as it is answered; a failure is recorded, not raised.  The parent
# (`rattler_solve_all`) enforces the timeout and the memory limit from outside: a solve
# in progress cannot be cancelled from inside the process.
BATCH_SCRIPT = r"""
import asyncio, json, sys, time
import rattler
from rattler import BuildString, Gateway, GenericVirtualPackage, PackageName, Version

job = json.loads(open(sys.argv[1]).read())
start = int(sys.argv[2])

async def main():
    gateway = Gateway(cache_dir=job["cache"])
    for request in job["requests"][start:]:
        platform = request["platform"]
        virtual = [
            GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
            for n, v, b in job["virtual"][platform]
        ]
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            records = await rattler.solve(
                sources=[job["channel"]], specs=request["specs"], gateway=gateway,
                platforms=[platform, "noarch"], virtual_packages=virtual, strategy="highest",
            )
            answer = {"solution": {
                str(r.name.normalized): f"{r.version} {r.build}" for r in records
            }}
        except Exception as exc:
            answer = {"error": str(exc)}
        answer["cpu"] = time.process_time() - cpu
        answer["wall"] = time.perf_counter() - wall
        print(json.dumps(answer), flush=True)

asyncio.run(main())
"""

#: The address space a rattler process may use (a hard request can take 8 GB and more).
MEMORY_LIMIT = 6 << 30


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
    memory_limit: int = MEMORY_LIMIT,
) -> list[dict[str, Any]]:
    """rattler's answer to each request (``{"platform", "specs"}``), in order:
    ``{"solution": {name: "version build"}}`` or ``{"error": message}``, plus ``cpu``
    and ``wall`` seconds.

    The requests run one after the other in one process (repodata read once), limited
    to ``memory_limit`` bytes of address space.  A request not answered after
    ``timeout`` seconds (wall), or whose process dies (out of memory), answers
    ``{"error": ..., "undecided": True}``; the process is then killed and a new one
    takes the remaining requests.
    """
    platforms = sorted({r["platform"] for r in requests})
    answers: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rattler-peer-") as work:
        job = {
            "channel": channel_url,
            "requests": requests,
            "virtual": {
                p: [[v.name, v.version, v.build] for v in virtual_packages(get_platform(p))]
                for p in platforms
            },
            "cache": str(cache or Path(work) / "cache"),
        }
        job_file = Path(work) / "job.json"
        job_file.write_text(json.dumps(job))
        while len(answers) < len(requests):
            answers += _run_batch(
                python, job_file, len(answers), len(requests), timeout, memory_limit
            )
    return answers


def _run_batch(
    python: str, job_file: Path, start: int, total: int, timeout: float | None, memory_limit: int
) -> list[dict[str, Any]]:
    """The answers of one rattler process from request ``start`` (of ``total``) on, up
    to and including the first it does not decide (timed out, or the process died).
    A process that hangs or fails once every request is answered is only stopped."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    process = subprocess.Popen(
        [python, "-c", BATCH_SCRIPT, str(job_file), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=peer_env(),
        preexec_fn=limit,
    )
    assert process.stdout is not None and process.stderr is not None
    answers: list[dict[str, Any]] = []
    buffered = b""
    asked = time.perf_counter()
    cpu_before = _children_cpu()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            if b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                answers.append(json.loads(line))
                asked = time.perf_counter()
                continue
            if start + len(answers) >= total:
                reason = ""
                break
            left = None if timeout is None else asked + timeout - time.perf_counter()
            if left is not None and left <= 0:
                reason = f"no answer after {timeout:.0f} s"
                break
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                process.wait()
                if process.returncode == 0:
                    return answers
                tail = process.stderr.read().decode(errors="replace").strip().splitlines()
                reason = f"rattler died (exit {process.returncode}): {' '.join(tail[-1:])}"
                break
            buffered += chunk
    process.kill()
    process.wait()
    process.stdout.close()
    process.stderr.close()
    if not reason:
        return answers
    wall = time.perf_counter() - asked
    # The CPU of the undecided request: the process's, less what its answers used.
    cpu = _children_cpu() - cpu_before - sum(a["cpu"] for a in answers)
    answers.append({"error": reason, "undecided": True, "cpu": cpu, "wall": wall})
    return answers


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
