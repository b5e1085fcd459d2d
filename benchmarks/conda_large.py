"""Conda locking on one very large subdir (conda-forge's linux-64 size): lockenv vs rattler.

    python benchmarks/conda_large.py [--records 800000] [--repeat 3] [--rattler-python PATH]
                                     [--channel-dir DIR]

A generated channel (``fixtures/gen_channel.py``) with only ``linux-64`` and ``noarch``,
scaled until ``linux-64`` holds about ``--records`` records (conda-forge's held ~813k
when this was written), is read through ``file://`` by both tools; both lock the
benchmark's 20 specs for linux-64.  Cold: empty caches; warm: the caches the cold run
left (for lockenv, its by-name store of the subdir).  Each run is a separate process,
measured for wall time, CPU time (user + system) and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rattler_peer import find_rattler_python, measure, peer_env, write_project

from fixtures.gen_channel import benchmark_specs, generate
from lockenv.platforms import get_platform, virtual_packages

PLATFORM = "linux-64"
# Records of linux-64 per unit of scale (gen_channel at scale 1.0 has ~37k there).
_PER_SCALE = 37_000

RATTLER_SCRIPT = r"""
import asyncio, json, sys
import rattler
from rattler import BuildString, Gateway, GenericVirtualPackage, PackageName, Version
job = json.loads(sys.argv[1])
virtual = [GenericVirtualPackage(PackageName(n), Version(v), BuildString(b))
           for n, v, b in job["virtual"]]
records = asyncio.run(rattler.solve(
    sources=[job["channel"]], specs=job["specs"], gateway=Gateway(cache_dir=job["cache"]),
    platforms=[job["platform"], "noarch"], virtual_packages=virtual, strategy="highest"))
print(json.dumps({str(r.name.normalized): f"{r.version} {r.build}" for r in records}))
"""


def ensure_channel(directory: Path, seed: int, scale: float) -> int:
    marker = directory / "linux-64" / "repodata.json.zst"
    if not marker.exists():
        print(f"generating ~{int(scale * _PER_SCALE)} linux-64 records in {directory} ...")
        shutil.rmtree(directory, ignore_errors=True)
        generate(directory, seed=seed, scale=scale, subdirs=(PLATFORM,))
    document = json.loads((directory / "linux-64" / "repodata.json").read_bytes())
    return len(document["packages"]) + len(document["packages.conda"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=800_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--channel-dir", type=Path)
    parser.add_argument("--rattler-python")
    args = parser.parse_args()
    rattler_python = find_rattler_python(args.rattler_python)
    scale = round(args.records / _PER_SCALE, 2)
    channel_dir = args.channel_dir or Path(tempfile.gettempdir()) / (
        f"lockenv-bench-conda-large-s{args.seed}-x{scale:g}"
    )
    records = ensure_channel(channel_dir, args.seed, scale)
    channel = channel_dir.resolve().as_uri()
    specs = benchmark_specs(args.seed, scale)
    work = Path(tempfile.mkdtemp(prefix="lockenv-bench-large-"))
    project = work / "project"
    write_project(project, "large", [PLATFORM], channel, specs)
    env = peer_env() | {"LOCKENV_CACHE_DIR": str(work / "cache-lockenv")}

    def lockenv_run() -> tuple[float, float, float, str]:
        (project / "lockenv.lock").unlink(missing_ok=True)
        return measure([sys.executable, "-m", "lockenv", "-q", "lock"], cwd=project, env=env)

    job = {
        "channel": channel,
        "platform": PLATFORM,
        "specs": [f"{n} {s}" for n, s in specs],
        "virtual": [[v.name, v.version, v.build] for v in virtual_packages(get_platform(PLATFORM))],
        "cache": str(work / "cache-rattler"),
    }

    def rattler_run() -> tuple[float, float, float, str]:
        return measure(
            [rattler_python, "-c", RATTLER_SCRIPT, json.dumps(job)], cwd=work, env=peer_env()
        )

    rows = []
    answers = []
    for label, runner in (("lockenv lock", lockenv_run), ("rattler solve", rattler_run)):
        cold = runner()
        warm = [runner() for _ in range(max(1, args.repeat))]
        answers.append(warm[-1][3])
        rows.append(
            (label, cold, tuple(statistics.median(run[i] for run in warm) for i in range(3)))
        )
    print(f"channel: linux-64 {records} records (+ noarch), file://, seed {args.seed}")
    head = ("cold (s)", "cold cpu", "cold MB", "warm (s)", "warm cpu", "warm MB")
    print(f"\n{'':24}" + "".join(f"{h:>10}" for h in head))
    for label, cold, warm in rows:
        numbers = (cold[0], cold[1], cold[2], warm[0], warm[1], warm[2])
        print(f"{label:24}" + "".join(f"{n:10.2f}" for n in numbers))
    ours, theirs = rows[0], rows[1]
    ratios = [
        ours[1][0] / theirs[1][0],
        ours[1][1] / theirs[1][1],
        ours[1][2] / theirs[1][2],
        ours[2][0] / theirs[2][0],
        ours[2][1] / theirs[2][1],
        ours[2][2] / theirs[2][2],
    ]
    print(f"{'ratio lockenv / rattler':24}" + "".join(f"{r:10.2f}" for r in ratios))
    print("(MB: peak resident memory of the process)")
    _, _, _, listed = measure(
        [sys.executable, "-m", "lockenv", "-q", "list", "--platform", PLATFORM, "--json"],
        cwd=project,
        env=env,
    )
    ours = {row["name"]: f"{row['version']} {row.get('build', '')}" for row in json.loads(listed)}
    theirs = json.loads(answers[1])
    same = sum(ours.get(name) == pin for name, pin in theirs.items())
    print(
        f"same build as rattler: {same} of {len(theirs)} packages "
        f"(lockenv locked {len(ours)}); requested: "
        + ("all agree" if all(ours.get(n) == theirs.get(n) for n, _ in specs) else "DIFFER")
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
