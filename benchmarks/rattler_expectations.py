"""Write down rattler's answers, once, as data for lockenv's conda solver tests.

    python benchmarks/rattler_expectations.py [--rattler-python PATH]

Runs py-rattler (0.28 when these files were made; not a lockenv dependency, see
``rattler_peer.py``) and writes:

- ``fixtures/real_repodata/expected.json``: requests over conda's 2018 ``defaults``
  snapshot (``fixtures/real_repodata``): popular packages alone and with each Python
  series, a seeded sample of every other name, seeded random combinations;
- ``fixtures/resolver_cases/generated_expected.json``: seeded random requests
  (`fixtures.gen_channel.random_requests`) over the generated channel of seed 3,
  scale 0.1, many of them impossible.

Each entry holds the platform, the specs, and rattler's whole solution (``name ->
"version build"``) or its error.  The tests (``tests/lock/test_conda_rattler.py``)
compare lockenv's answers with these, without py-rattler.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rattler_peer import ROOT, find_rattler_python, rattler_solve_all

from fixtures.gen_channel import generate, random_requests

REAL = ROOT / "fixtures" / "real_repodata"
REAL_CHANNEL = REAL / "defaults-2018"
GENERATED_SEED, GENERATED_SCALE, GENERATED_REQUESTS = 3, 0.1, 60
POPULAR = [
    "anaconda-client",
    "astropy",
    "blas",
    "bokeh",
    "conda",
    "conda-build",
    "cython",
    "dask",
    "flask",
    "h5py",
    "ipython",
    "jupyter",
    "lxml",
    "matplotlib",
    "mkl",
    "networkx",
    "nomkl",
    "notebook",
    "numba",
    "numpy",
    "openssl",
    "pandas",
    "pillow",
    "pyqt",
    "pytables",
    "pytest",
    "python",
    "r-base",
    "r-essentials",
    "requests",
    "scikit-learn",
    "scipy",
    "seaborn",
    "spyder",
    "sqlalchemy",
    "statsmodels",
    "sympy",
]
PYTHONS = ("2.7", "3.5", "3.6", "3.7")


def real_requests(channel: Path, seed: int = 2018) -> list[dict[str, Any]]:
    """The request set over the 2018 snapshot (reproducible from ``seed``)."""
    rng = random.Random(seed)
    requests: list[dict[str, Any]] = []
    noarch = _names(channel / "noarch")
    for platform in ("linux-64", "win-64"):
        names = sorted(_names(channel / platform) | noarch)
        popular = [n for n in POPULAR if n in names]
        requests += [{"platform": platform, "specs": [n]} for n in popular]
        others = [n for n in names if n not in popular]
        requests += [{"platform": platform, "specs": [n]} for n in rng.sample(others, 120)]
        for python in PYTHONS:
            requests += [
                {"platform": platform, "specs": [f"python {python}.*", n]}
                for n in popular
                if n != "python"
            ]
        for _ in range(40):
            requests.append(
                {"platform": platform, "specs": rng.sample(names, rng.choice([2, 3, 4]))}
            )
        for _ in range(30):
            python = rng.choice(PYTHONS)
            requests.append(
                {"platform": platform, "specs": [*rng.sample(popular, 3), f"python {python}.*"]}
            )
    return requests


def _names(subdir: Path) -> set[str]:
    data = zstandard.ZstdDecompressor().stream_reader((subdir / "repodata.json.zst").read_bytes())
    document = json.loads(data.read())
    return {r["name"] for r in document["packages"].values()}


def write(path: Path, about: str, requests: list[dict[str, Any]], answers: list[Any]) -> None:
    entries = []
    for request, answer in zip(requests, answers, strict=True):
        entry = dict(request)
        if "solution" in answer:
            entry["solution"] = dict(sorted(answer["solution"].items()))
        else:
            entry["error"] = answer["error"].splitlines()[0]
        entries.append(entry)
    document = {"about": about, "requests": entries}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    solved = sum("solution" in e for e in entries)
    print(f"{path.relative_to(ROOT)}: {len(entries)} requests, {solved} solved by rattler")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rattler-python")
    args = parser.parse_args()
    python = find_rattler_python(args.rattler_python)
    version = _rattler_version(python)

    with tempfile.TemporaryDirectory(prefix="rattler-expect-") as work:
        # rattler reads plain repodata.json from a local channel.
        plain = Path(work) / "defaults-2018"
        for subdir in ("linux-64", "win-64", "noarch"):
            (plain / subdir).mkdir(parents=True)
            raw = (REAL_CHANNEL / subdir / "repodata.json.zst").read_bytes()
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            (plain / subdir / "repodata.json").write_bytes(reader.read())
        requests = real_requests(REAL_CHANNEL)
        answers = rattler_solve_all(python, plain.as_uri(), requests)
        write(
            REAL / "expected.json",
            f"py-rattler {version} on fixtures/real_repodata/defaults-2018; "
            "made by benchmarks/rattler_expectations.py",
            requests,
            answers,
        )

        generated = Path(work) / "generated"
        generate(generated, seed=GENERATED_SEED, scale=GENERATED_SCALE)
        requests = random_requests(generated, seed=11, count=GENERATED_REQUESTS)
        answers = rattler_solve_all(python, generated.as_uri(), requests)
        write(
            ROOT / "fixtures" / "resolver_cases" / "generated_expected.json",
            f"py-rattler {version} on fixtures/gen_channel.py seed {GENERATED_SEED} scale "
            f"{GENERATED_SCALE}, fixtures.gen_channel.random_requests seed 11; made by "
            "benchmarks/rattler_expectations.py",
            requests,
            answers,
        )
    return 0


def _rattler_version(python: str) -> str:
    import subprocess

    out = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('py-rattler'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
