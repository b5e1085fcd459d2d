"""Every request decided: lockenv's conda solver beside rattler on hard and impossible ones.

    python benchmarks/conda_requests.py [--count 80] [--seed 1] [--rattler-python PATH]
                                        [--timeout 120] [--memory-gb 6] [--json OUT]
                                        [--only 10,53] [--random-only]

Requests:

- ``--count`` seeded random requests (`fixtures.gen_channel.random_requests`) over the
  generated benchmark channel (seed 7, scale 1.0: 135k records), many impossible;
- named hard ones: the benchmark's 20 specs with ``python 3.9.*`` (impossible), on the
  three platforms;
- conda's 2018 ``defaults`` snapshot (``fixtures/real_repodata``): ``r-essentials`` and a
  few large stacks.

Both tools answer each request in one long-lived process each (rattler through one
``Gateway``, lockenv through one `ChannelClient`), timed in CPU seconds per request, so
repodata is read once per tool; lockenv's first look at the channel also makes its
by-name stores.  Prints, per request set, how many each tool solved and proved
impossible, whether they agree (and on the requested packages' versions), the median
and worst CPU ratio, and how many requests lockenv decided within 5x rattler's time
(rattler's time floored at 0.05 s: below that both are instant).  A request rattler
has not decided after ``--timeout`` seconds is listed apart, with lockenv's answer and
time, and left out of the agreement and the ratios; so is one whose rattler process
ran out of its ``--memory-gb`` of address space.  Either kills that rattler process and
a new one takes the remaining requests (`rattler_peer.rattler_solve_all`).  ``--json``
writes every request with both answers, for a closer look at single requests;
``--only`` runs chosen requests of the random set (by their index, as the json and the
list of slow ones give it) and ``--random-only`` leaves out the other two sets.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rattler_peer import ROOT, find_rattler_python, rattler_solve_all

from fixtures.gen_channel import benchmark_specs, generate, random_requests
from lockenv.http import HttpClient
from lockenv.lock.conda.matchspec import MatchSpec
from lockenv.lock.conda.repodata import Channel, ChannelClient
from lockenv.lock.conda.solver import CondaSolver, Unsatisfiable
from lockenv.platforms import get_platform, virtual_packages

FLOOR = 0.05


def lockenv_solve_all(
    channel_dir: Path, requests: list[dict[str, Any]], cache: Path
) -> list[dict[str, Any]]:
    channel = Channel.parse(channel_dir.as_uri())
    answers = []
    with HttpClient(cache) as http:
        client = ChannelClient(http)
        for request in requests:
            platform = request["platform"]
            started = time.process_time()
            records = client.records_by_name([channel], [platform])
            specs = [MatchSpec.parse(s) for s in request["specs"]]
            solver = CondaSolver(
                records=records,
                virtual_packages=virtual_packages(get_platform(platform)),
                direct=specs,
                platform=platform,
            )
            try:
                answer: dict[str, Any] = {
                    "solution": {r.name: f"{r.version} {r.build}" for r in solver.solve()}
                }
            except Unsatisfiable as exc:
                answer = {"error": exc.explanation}
            answer["cpu"] = time.process_time() - started
            answers.append(answer)
    return answers


def report(title: str, requests: list[dict[str, Any]], ours: list[Any], theirs: list[Any]) -> None:
    print(f"\n{title}: {len(requests)} requests")
    decided = {"lockenv": [0, 0], "rattler": [0, 0]}
    disagree, differ, slow, ratios, undecided = [], [], [], [], []
    for request, mine, other in zip(requests, ours, theirs, strict=True):
        decided["lockenv"]["error" in mine] += 1
        if other.get("undecided"):
            # rattler gave up: no answer to compare with, no time to hold lockenv to.
            undecided.append((mine, other, request))
            continue
        decided["rattler"]["error" in other] += 1
        if ("error" in mine) != ("error" in other):
            disagree.append(request)
        elif "solution" in mine:
            names = [MatchSpec.parse(s).name for s in request["specs"]] + ["python"]
            if any(mine["solution"].get(n) != other["solution"].get(n) for n in names):
                differ.append(request)
        ratio = mine["cpu"] / max(other["cpu"], FLOOR)
        ratios.append(ratio)
        if ratio > 5:
            slow.append((ratio, mine["cpu"], other["cpu"], request))
    for tool, (solved, impossible) in decided.items():
        print(f"  {tool:8} solved {solved:3}, proved impossible {impossible:3}")
    for mine, other, request in undecided:
        verdict = "proved impossible" if "error" in mine else "solved"
        print(
            f"  rattler undecided ({other['error']}; {other['cpu']:.0f} s cpu); lockenv "
            f"{verdict} in {mine['cpu']:.2f} s cpu: {request['platform']} {request['specs']}"
        )
    decided_by_both = len(requests) - len(undecided)
    print(f"  decided differently: {len(disagree)}; requested packages differ: {len(differ)}")
    if not ratios:  # nothing both decided (--count 0 leaves the random set empty)
        return
    print(
        f"  cpu lockenv {sum(a['cpu'] for a in ours):.2f} s, rattler "
        f"{sum(a['cpu'] for a in theirs):.2f} s; per request ratio median "
        f"{statistics.median(ratios):.2f}, worst {max(ratios):.2f}; within 5x: "
        f"{decided_by_both - len(slow)}/{decided_by_both} of those rattler decided"
    )
    for ratio, mine, other, request in sorted(slow, key=lambda s: -s[0])[:5]:
        where = f"#{request.get('index', '')} {request['platform']} {request['specs']}"
        print(f"    {ratio:5.1f}x  {mine:.2f} s vs {other:.2f} s  {where}")
    for request in disagree[:5]:
        print(f"    DECIDED DIFFERENTLY: {request['platform']} {request['specs']}")


def defaults_snapshot(work: Path) -> tuple[Path, list[dict[str, Any]]]:
    """conda's 2018 snapshot decompressed under ``work`` (rattler reads plain
    repodata.json), and the requests on it."""
    import zstandard

    real = ROOT / "fixtures" / "real_repodata" / "defaults-2018"
    plain = work / "defaults-2018"
    for subdir in ("linux-64", "win-64", "noarch"):
        (plain / subdir).mkdir(parents=True)
        data = (real / subdir / "repodata.json.zst").read_bytes()
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        (plain / subdir / "repodata.json").write_bytes(reader.read())
    stacks = [
        ["r-essentials"],
        ["anaconda"],
        ["python 3.6.*", "numpy", "scipy", "pandas", "matplotlib", "scikit-learn", "jupyter"],
        ["python 2.7.*", "tensorflow", "keras"],
    ]
    return plain, [{"platform": "linux-64", "specs": s} for s in stacks]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=80)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--channel-dir", type=Path)
    parser.add_argument("--rattler-python")
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds before rattler gives up on one"
    )
    parser.add_argument(
        "--memory-gb", type=float, default=6, help="address space of a rattler process"
    )
    parser.add_argument("--json", type=Path, help="write the requests and answers here")
    parser.add_argument(
        "--only", help="comma-separated indices of the random requests to run (e.g. 10,53)"
    )
    parser.add_argument("--random-only", action="store_true", help="run the random requests alone")
    args = parser.parse_args()
    python = find_rattler_python(args.rattler_python)
    channel_dir = args.channel_dir or Path(tempfile.gettempdir()) / "lockenv-bench-conda-s7-x1"
    if not (channel_dir / "noarch" / "repodata.json").exists():
        print(f"generating the channel in {channel_dir} ...", flush=True)
        generate(channel_dir, seed=7, scale=1.0)
    work = Path(tempfile.mkdtemp(prefix="lockenv-bench-requests-"))

    requests = [
        {**request, "index": index}
        for index, request in enumerate(
            random_requests(channel_dir, seed=args.seed, count=args.count)
        )
    ]
    if args.only:
        chosen = {int(i) for i in args.only.split(",")}
        requests = [r for r in requests if r["index"] in chosen]
    hard = [
        {"platform": p, "specs": ["python 3.9.*", *(f"{n} {s}" for n, s in benchmark_specs()[1:])]}
        for p in ("linux-64", "osx-arm64", "win-64")
    ]
    sets = [(f"random requests (seed {args.seed}) on the generated channel", channel_dir, requests)]
    if not (args.random_only or args.only):
        sets.append(("the benchmark's specs with python 3.9.*", channel_dir, hard))
        sets.append(("conda's 2018 defaults snapshot", *defaults_snapshot(work)))
    written = []
    for title, directory, batch in sets:
        theirs = rattler_solve_all(
            python,
            directory.as_uri(),
            batch,
            work / "rattler-cache",
            timeout=args.timeout,
            memory_limit=int(args.memory_gb * (1 << 30)),
        )
        ours = lockenv_solve_all(directory, batch, work / "lockenv-cache")
        report(title, batch, ours, theirs)
        written.append({"title": title, "requests": batch, "lockenv": ours, "rattler": theirs})
    if args.json:
        args.json.write_text(json.dumps(written, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
