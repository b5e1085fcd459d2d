"""Lock a ~25-package set for 3 platforms with lockenv and with `uv pip compile`, in one run.

    python benchmarks/lock.py [--repeat N] [--exclude-newer 2025-06-01T00:00:00Z]

Both tools use the same index (pip's configured index-url, else pip's default), the same
Python (3.11) and the same cut-off date; uv compiles once per platform, lockenv locks
all three platforms at once. "cold" starts from an empty cache, "warm" from the cache
the cold run left (lockenv: no lockfile, so it resolves from scratch). Prints a table
and the ratios lockenv / uv (lower is better). Needs the network and `uv` on PATH.
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
from pathlib import Path

PACKAGES = [
    "requests",
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
    "click",
    "rich",
    "pydantic",
    "httpx",
    "jinja2",
    "pyyaml",
    "attrs",
    "packaging",
    "typer",
    "sqlalchemy",
    "flask",
    "pytest",
    "tqdm",
    "python-dateutil",
    "pytz",
    "six",
    "urllib3",
    "certifi",
    "idna",
    "charset-normalizer",
]
PLATFORMS = {  # lockenv platform -> uv --python-platform
    "linux-64": "x86_64-manylinux_2_28",
    "osx-arm64": "aarch64-apple-darwin",
    "win-64": "x86_64-pc-windows-msvc",
}


def default_index() -> str:
    from lockenv.pipconfig import default_index_url

    return default_index_url()


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def compare_pins(
    project: Path, platform: str, uv_platform: str, lockenv: list[str], env: dict[str, str]
) -> str:
    import json

    listed = subprocess.run(
        [*lockenv, "list", "--platform", platform, "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours = {(row["name"], row["version"]) for row in json.loads(listed)}
    theirs = set()
    for line in (project / f"out-{uv_platform}.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, _, version = line.strip().partition("==")
            theirs.add((name.strip().lower().replace("_", "-"), version.split()[0]))
    if ours == theirs:
        return f"yes ({len(ours)} packages)"
    return f"NO: only lockenv {sorted(ours - theirs)}, only uv {sorted(theirs - ours)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm runs to take the median of")
    parser.add_argument("--exclude-newer", default="2025-06-01T00:00:00Z")
    args = parser.parse_args()
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    lockenv = [sys.executable, "-m", "lockenv", "-q"]
    index = default_index()
    work = Path(tempfile.mkdtemp(prefix="lockenv-bench-lock-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    base_env |= {"PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1"}

    project = work / "project"
    project.mkdir()
    deps = "\n".join(f'{name} = "*"' for name in PACKAGES)
    (project / "lockenv.toml").write_text(
        f'[project]\nname = "bench"\nplatforms = {list(PLATFORMS)!r}\n'.replace("'", '"')
        + f'indexes = ["{index}"]\n'
        + 'requires-python = "==3.11.*"\n'
        + f'exclude-newer = "{args.exclude_newer}"\n\n[pypi-dependencies]\n{deps}\n'
    )
    (project / "requirements.in").write_text("\n".join(PACKAGES) + "\n")

    def run_lockenv(cache: Path) -> float:
        (project / "lockenv.lock").unlink(missing_ok=True)
        return timed([*lockenv, "lock"], project, base_env | {"LOCKENV_CACHE_DIR": str(cache)})

    def run_uv(cache: Path) -> float:
        total = 0.0
        for uv_platform in PLATFORMS.values():
            total += timed(
                [
                    uv,
                    "pip",
                    "compile",
                    "-q",
                    "--no-header",
                    "--index-url",
                    index,
                    "--exclude-newer",
                    args.exclude_newer,
                    "--python-version",
                    "3.11",
                    "--python-platform",
                    uv_platform,
                    "requirements.in",
                    "-o",
                    f"out-{uv_platform}.txt",
                ],
                project,
                base_env | {"UV_CACHE_DIR": str(cache)},
            )
        return total

    rows = []
    for label, run in (("lockenv lock (3 platforms)", run_lockenv), ("uv pip compile x3", run_uv)):
        cache = work / f"cache-{label.split()[0]}"
        cold = run(cache)
        warm = statistics.median(run(cache) for _ in range(args.repeat))
        rows.append((label, cold, warm))
    locked = sum(
        1
        for line in (project / "lockenv.lock").read_text().splitlines()
        if line.startswith("- kind: pypi")
    )
    print(
        f"{len(PACKAGES)} requested packages, {locked} distinct artifacts locked, "
        f"exclude-newer {args.exclude_newer}"
    )
    print(f"{'':30} {'cold (s)':>10} {'warm (s)':>10}")
    for label, cold, warm in rows:
        print(f"{label:30} {cold:10.2f} {warm:10.2f}")
    (_, lc, lw), (_, uc, uw) = rows
    print(f"{'ratio lockenv / uv':30} {lc / uc:10.2f} {lw / uw:10.2f}")
    run_lockenv(work / "cache-lockenv")
    for platform, uv_platform in PLATFORMS.items():
        ours = compare_pins(project, platform, uv_platform, lockenv, base_env)
        print(f"pins on {platform:10} equal to uv's: {ours}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
