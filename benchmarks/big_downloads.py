"""Benchmark: a cold sync of a few large wheels from a loopback server, lockenv beside
``uv pip sync``.

    python benchmarks/big_downloads.py [--wheels 4] [--mib 200] [--rounds 3] [--uv PATH]
                                       [--cache-keep trees|both] [--deflate]
                                       [--lockenv CMD] [--baseline CMD]

``--wheels`` generated wheels (`benchmarks.synthetic.make_wheel`), each holding one
native library of ``--mib`` MiB and a few modules: incompressible and stored, or with
``--deflate`` compressible and deflated, as wheel builders usually write them (then
inflating is part of the work).  They are served on 127.0.0.1 (nginx when installed), so that
the network is not in the way: what is measured is the work per byte (receiving,
hashing, unpacking, writing).  Each round, in turns, each tool starts from an empty
cache and no environment:

- lockenv: ``lockenv sync --frozen`` of a project locked beforehand;
- uv:      ``uv pip sync`` of the same pins (``name==1.0`` with their hashes) into a venv
           made beforehand.

Both link from their cache with hard links.  Medians of wall-clock and CPU (user +
system, the process and its children); ratios are lockenv / uv.  lockenv is this
checkout installed afresh in a venv (not editable, as a user has it) unless ``--lockenv``
names a command; ``--baseline`` names another lockenv command (say, one installed from
main before a change), timed in the same rounds, in turn with the others, and shown on a
row of its own: under a varying load, a before/after comparison only holds that way.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import synthetic  # noqa: E402
from fast_paths import (  # noqa: E402
    PYTHON,
    Pair,
    clean_env,
    install_lockenv,
    project_manifests,
    timed,
)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheels", type=int, default=4)
    parser.add_argument("--mib", type=int, default=200, help="MiB of native code per wheel")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uv", default=shutil.which("uv") or "/work/peers/bin/uv")
    parser.add_argument(
        "--lockenv", help="a lockenv command (default: this checkout, installed afresh)"
    )
    parser.add_argument(
        "--baseline", help="another lockenv command, timed in the same rounds (before/after)"
    )
    parser.add_argument(
        "--cache-keep",
        choices=["trees", "both"],
        help="lockenv's cache keep policy (default: lockenv's own, trees, as uv keeps)",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="native libraries compressible and deflated (as in most large wheels), not stored",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    python = shutil.which(f"python{PYTHON}") or sys.executable

    work = Path(tempfile.mkdtemp(prefix="lockenv-big-downloads-"))
    try:
        lockenv = [args.lockenv or str(install_lockenv(work / "venv"))]
        tools = {"lockenv": lockenv}
        if args.baseline:
            tools["baseline"] = [args.baseline]
        wheels_dir = work / "wheels"
        wheels_dir.mkdir()
        names = [f"big{i:02d}" for i in range(args.wheels)]
        wheels = [
            synthetic.make_wheel(
                wheels_dir,
                name,
                "1.0",
                modules=20,
                native=[args.mib << 20],
                deflate_native=args.deflate,
            )
            for name in names
        ]
        synthetic.write_index(work / "index", wheels)
        total = sum(w.stat().st_size for w in wheels)
        le_dir, uv_dir = work / "lockenv-project", work / "uv-project"
        le_dir.mkdir()
        uv_dir.mkdir()
        pair = Pair("cold")
        baseline = Pair("baseline")
        load_before = os.getloadavg()[0]
        with synthetic.serve(work / "index") as served:
            lockenv_toml, _ = project_manifests(names, served.index)
            (le_dir / "lockenv.toml").write_text(lockenv_toml)
            lock_env = clean_env(LOCKENV_CACHE_DIR=str(work / "lock-cache"))
            timed([*lockenv, "lock"], le_dir, lock_env)
            (uv_dir / "requirements.txt").write_text(
                "".join(
                    f"{n}==1.0 --hash=sha256:{_sha256(w)}\n"
                    for n, w in zip(names, wheels, strict=True)
                )
            )
            for _ in range(args.rounds):
                for tool in (*tools, "uv"):
                    cache = work / f"cache-{tool}"
                    shutil.rmtree(cache, ignore_errors=True)
                    if tool in tools:
                        shutil.rmtree(le_dir / ".lockenv", ignore_errors=True)
                        keep = {"LOCKENV_CACHE_KEEP": args.cache_keep} if args.cache_keep else {}
                        env = clean_env(LOCKENV_CACHE_DIR=str(cache), **keep)
                        sample = timed([*tools[tool], "sync", "-q", "--frozen"], le_dir, env)
                        (pair if tool == "lockenv" else baseline).add("lockenv", sample)
                        continue
                    venv = uv_dir / ".venv"
                    shutil.rmtree(venv, ignore_errors=True)
                    env = clean_env(
                        UV_CACHE_DIR=str(cache),
                        UV_LINK_MODE="hardlink",
                        VIRTUAL_ENV=str(venv),
                    )
                    timed([args.uv, "venv", "-q", "--python", python, str(venv)], uv_dir, env)
                    command = [
                        args.uv,
                        "pip",
                        "sync",
                        "-q",
                        "--index-url",
                        served.index,
                        "--require-hashes",
                        "requirements.txt",
                    ]
                    sample = timed(command, uv_dir, env)
                    pair.add(tool, sample)
                    baseline.add(tool, sample)
        pair.load = baseline.load = os.getloadavg()[0]
        print(
            f"\n{args.wheels} wheels of {args.mib} MiB ({total / 2**20:.0f} MiB in all) from "
            f"127.0.0.1, {os.cpu_count()} CPUs, median of {args.rounds} cold syncs "
            f"(lockenv's cache keeping {args.cache_keep or 'what it keeps by default'}"
            f"{'; natives deflated' if args.deflate else ''}); load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
        )
        print(f"{'':<8}{'wall ms':>18}{'':>9}{'cpu ms':>19}")
        header = f"{'lockenv':>9}{'uv':>9}{'ratio':>9}"
        print(f"{'':<8}{header}{'':>1}{header}{'load':>7}")
        print(pair.row())
        if args.baseline:
            print(baseline.row())
        walls = [s[0] for s in pair.samples["lockenv"]]
        print(f"lockenv throughput: {total / statistics.median(walls) / 2**20:.0f} MiB/s")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
