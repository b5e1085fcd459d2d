"""Conda locking on a large synthetic channel: `lockenv lock` vs py-rattler's solver.

    python benchmarks/conda_solve.py [--seed 7] [--scale 1.0] [--repeat 1] [--profile]
                                     [--channel-dir DIR] [--rattler-python PATH]

The channel (~2,500 names, 130k+ records over linux-64, osx-arm64, win-64 and noarch,
shaped like conda-forge; see ``fixtures/gen_channel.py``) is generated once per seed and scale
into a temporary directory and read through ``file://`` by both tools.  Both solve the
same 20 specs for linux-64, osx-arm64 and win-64 with the same virtual packages (the
ones lockenv gives each target by default).

- lockenv: the real CLI in a subprocess (``python -m lockenv -q lock``), all three
  platforms in one run; cold = empty ``LOCKENV_CACHE_DIR`` (repodata parsed and stored
  by name), warm = the cache the cold run left (the by-name stores opened, nothing
  parsed), lock file removed so it solves again.
- rattler: a subprocess of a Python that has py-rattler (this one, or
  ``--rattler-python``) solving the three platforms concurrently through one
  ``Gateway``; cold = empty gateway cache dir, warm = the cache the cold run left.

Times are wall clock and CPU (user + system, all threads) of the whole command
(start-up included; on a busy machine the CPU columns are the steadier comparison); the
rattler process also reports its own solve time.  The large single-subdir case is
``conda_large.py``, hard and impossible requests ``conda_requests.py``.  Prints a
table, the ratios lockenv / rattler (lower is better) and whether both pick the same
version for each requested name.  With
``--profile`` it records one warm lockenv run with py-spy and prints where the time
went.  py-rattler is not a lockenv dependency: install it into a throwaway venv,
e.g. ``uv venv /tmp/rattler && VIRTUAL_ENV=/tmp/rattler uv pip install py-rattler``,
and pass ``--rattler-python /tmp/rattler/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rattler_peer import find_rattler_python, peer_env, write_project  # noqa: E402

from fixtures.gen_channel import SUBDIRS, benchmark_specs, generate  # noqa: E402
from lockenv.platforms import get_platform, virtual_packages  # noqa: E402

PLATFORMS = ("linux-64", "osx-arm64", "win-64")

# Runs in the rattler Python: solve every platform through one gateway, print JSON.
RATTLER_SCRIPT = r"""
import asyncio, json, sys, time
started = time.perf_counter()
import rattler
from rattler import BuildString, Gateway, GenericVirtualPackage, PackageName, Version
job = json.loads(sys.argv[1])
imported = time.perf_counter()

async def main():
    gateway = Gateway(cache_dir=job["cache"])
    async def one(platform):
        virtual = [
            GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
            for n, v, b in job["virtual"][platform]
        ]
        records = await rattler.solve(
            sources=[job["channel"]], specs=job["specs"], gateway=gateway,
            platforms=[platform, "noarch"], virtual_packages=virtual, strategy="highest",
        )
        return platform, {str(r.name.normalized): [str(r.version), str(r.build)] for r in records}
    return dict(await asyncio.gather(*(one(p) for p in job["platforms"])))

result = asyncio.run(main())
done = time.perf_counter()
print(json.dumps({"pins": result, "import": imported - started, "solve": done - imported}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    return peer_env() | extra


# CPU seconds (user + system) of every finished child process so far.
def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


LAST_CPU = [0.0]  # CPU seconds of the last `run`: steadier than wall time on a busy machine


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    cpu = children_cpu()
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    LAST_CPU[0] = children_cpu() - cpu
    if result.returncode != 0:
        sys.exit(f"failed: {cmd[0]} {cmd[1]} ...\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def ensure_channel(directory: Path, seed: int, scale: float) -> dict[str, int]:
    if all((directory / s / "repodata.json.zst").exists() for s in SUBDIRS):
        counts = {}
        for subdir in SUBDIRS:
            document = json.loads((directory / subdir / "repodata.json").read_bytes())
            counts[subdir] = len(document["packages"]) + len(document["packages.conda"])
        return counts
    print(f"generating the channel in {directory} ...", flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    return generate(directory, seed=seed, scale=scale)


def lockenv_pins(project: Path, env: dict[str, str]) -> dict[str, dict[str, list[str]]]:
    pins: dict[str, dict[str, list[str]]] = {}
    for platform in PLATFORMS:
        _, out = run(
            [sys.executable, "-m", "lockenv", "-q", "list", "--platform", platform, "--json"],
            project,
            env,
        )
        pins[platform] = {
            row["name"]: [row["version"], row.get("build", "")] for row in json.loads(out)
        }
    return pins


def profile(project: Path, env: dict[str, str], out: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    (project / "lockenv.lock").unlink(missing_ok=True)
    cmd = [
        py_spy,
        "record",
        "-r",
        "250",
        "-f",
        "raw",
        "-o",
        str(out),
        "--",
        sys.executable,
        "-m",
        "lockenv",
        "-q",
        "lock",
    ]
    result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not out.exists():
        print(f"py-spy failed (needs ptrace permission): {result.stderr.strip()[-500:]}")
        return
    print_profile(out)


# First match wins: (category, regex over one frame "function (file:line)").
CATEGORIES = [
    ("lock writing", r"write_lockfile|lockfile\.py|yaml/"),
    ("repodata: read file", r"_get_file_page|read_bytes"),
    ("repodata: zstd decompress", r"_decompress"),
    ("repodata: json.loads", r"^loads \(json|decode \(json|raw_decode"),
    ("repodata: group by name", r"_group_by_name"),
    ("repodata: by-name store", r"subdir_store\.py"),
    ("repodata: shards", r"shards\.py"),
    ("records: build RepoRecord", r"_build_record|RepodataIndex\.get|\bget \(.*repodata\.py"),
    ("channel priority merge", r"__getitem__ \(.*repodata\.py"),
    ("MatchSpec parse", r"_parse_matchspec|parse_spec"),
    ("MatchSpec match", r"matches \(.*matchspec\.py|contains \(.*version\.py"),
    ("version parse", r"_parse_version|parse_version|_valid_version"),
    ("build order", r"order\.py|_best_in_span|_newest_admitted"),
    ("solver: propagate", r"propagate \(.*sat\.py|_choose"),
    ("solver: learn", r"_resolve|_analyze|_minimize|backtrack"),
    ("solver: encode", r"_require|_expand|_constrain|_clashes|_pool \("),
    ("solver: decide", r"decide|_pick"),
    ("solver: explain", r"_explain|_minimal|_satisfiable"),
    ("manifest / cli / imports", r"manifest|cli\.py|<module>|_find_and_load"),
]


def print_profile(path: Path) -> None:
    total = 0
    inclusive: dict[str, int] = defaultdict(int)
    own: dict[str, int] = defaultdict(int)
    compiled = [(name, re.compile(rx)) for name, rx in CATEGORIES]
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        # The innermost frame that falls in a category decides where a sample goes.
        for frame in reversed(frames):
            hit = next((name for name, rx in compiled if rx.search(frame)), None)
            if hit:
                inclusive[hit] += count
                break
        else:
            inclusive["other"] += count
        own[frames[-1]] += count
    if not total:
        print("empty profile")
        return
    print(f"\nprofile of one warm `lockenv lock` ({total} samples, all threads):")
    for name, count in sorted(inclusive.items(), key=lambda kv: -kv[1]):
        print(f"  {name:32} {100 * count / total:5.1f}%")
    print("  hottest functions (self time):")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:15]:
        print(f"    {100 * count / total:5.1f}%  {frame[:110]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1, help="warm runs to take the median of")
    parser.add_argument("--channel-dir", type=Path)
    parser.add_argument("--rattler-python")
    parser.add_argument("--profile", action="store_true", help="py-spy one warm lockenv run")
    args = parser.parse_args()
    rattler_python = find_rattler_python(args.rattler_python)
    channel_dir = args.channel_dir or Path(tempfile.gettempdir()) / (
        f"lockenv-bench-conda-s{args.seed}-x{args.scale:g}"
    )
    counts = ensure_channel(channel_dir, args.seed, args.scale)
    channel_url = channel_dir.resolve().as_uri()
    specs = benchmark_specs(args.seed, args.scale)
    work = Path(tempfile.mkdtemp(prefix="lockenv-bench-conda-"))
    env = clean_env()

    project = work / "project"
    write_project(project, "bench", list(PLATFORMS), channel_url, specs)
    lockenv_cache = work / "cache-lockenv"

    def run_lockenv() -> float:
        (project / "lockenv.lock").unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "lockenv", "-q", "lock"]
        return run(cmd, project, env | {"LOCKENV_CACHE_DIR": str(lockenv_cache)})[0]

    virtual = {
        p: [[v.name, v.version, v.build] for v in virtual_packages(get_platform(p))]
        for p in PLATFORMS
    }
    job = {
        "channel": channel_url,
        "specs": [f"{name} {spec}" for name, spec in specs],
        "platforms": list(PLATFORMS),
        "virtual": virtual,
        "cache": str(work / "cache-rattler"),
    }
    rattler_results: list[dict[str, object]] = []

    def run_rattler() -> float:
        elapsed, out = run(
            [rattler_python, "-c", RATTLER_SCRIPT, json.dumps(job)], work, clean_env()
        )
        rattler_results.append(json.loads(out))
        return elapsed

    rows = []
    for label, runner in (
        ("lockenv lock (3 platforms)", run_lockenv),
        ("rattler solve (3 platforms)", run_rattler),
    ):
        cold = runner()
        cold_cpu = LAST_CPU[0]
        warm_runs = []
        for _ in range(max(1, args.repeat)):
            warm_runs.append((runner(), LAST_CPU[0]))
        warm = statistics.median(wall for wall, _ in warm_runs)
        warm_cpu = statistics.median(cpu for _, cpu in warm_runs)
        rows.append((label, cold, warm, cold_cpu, warm_cpu))

    print(
        f"channel: {sum(counts.values())} records "
        f"({', '.join(f'{s} {n}' for s, n in counts.items())}), file://, seed {args.seed}"
    )
    print(f"{len(specs)} specs: {', '.join(f'{n} {s}' for n, s in specs)}")
    head = ("cold (s)", "warm (s)", "cold cpu", "warm cpu")
    print(f"\n{'':30}" + "".join(f"{h:>10}" for h in head))
    for label, *numbers in rows:
        print(f"{label:30}" + "".join(f"{n:10.2f}" for n in numbers))
    ratios = [ours / theirs for ours, theirs in zip(rows[0][1:], rows[1][1:], strict=True)]
    print(f"{'ratio lockenv / rattler':30}" + "".join(f"{r:10.2f}" for r in ratios))
    print("(wall clock of the whole command; cpu = user + system seconds, all threads)")
    solve_times = [float(r["solve"]) for r in rattler_results]  # type: ignore[arg-type]
    print(f"(rattler in-process solve: cold {solve_times[0]:.2f} s, warm {solve_times[-1]:.2f} s)")

    ours = lockenv_pins(project, env | {"LOCKENV_CACHE_DIR": str(lockenv_cache)})
    theirs: dict[str, dict[str, list[str]]] = rattler_results[-1]["pins"]  # type: ignore[assignment]
    print()
    for platform in PLATFORMS:
        differ = [
            f"{name}: lockenv {ours[platform].get(name, ['-'])[0]} / rattler "
            f"{theirs[platform].get(name, ['-'])[0]}"
            for name, _ in specs
            if ours[platform].get(name, ["-"])[0] != theirs[platform].get(name, ["-"])[0]
        ]
        common = set(ours[platform]) & set(theirs[platform])
        same_all = sum(ours[platform][n][0] == theirs[platform][n][0] for n in common)
        verdict = "agree" if not differ else "DISAGREE: " + "; ".join(differ)
        others = sorted(
            f"{n} {ours[platform][n][0]}/{theirs[platform][n][0]}"
            for n in common
            if ours[platform][n][0] != theirs[platform][n][0]
        )
        print(
            f"{platform:10} requested versions {verdict} "
            f"(packages: lockenv {len(ours[platform])}, rattler {len(theirs[platform])}, "
            f"same version {same_all}/{len(common)} of the common names)"
        )
        if others:
            print(f"{'':10} other names that differ (lockenv/rattler): {', '.join(others[:8])}")
    if args.profile:
        profile(project, env | {"LOCKENV_CACHE_DIR": str(lockenv_cache)}, work / "profile.txt")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
