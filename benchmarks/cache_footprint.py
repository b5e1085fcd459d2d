"""Benchmark: what the cache takes on disk (bytes and inodes) for a set of environments,
lockenv beside uv.

    python benchmarks/cache_footprint.py [--uv PATH] [--pins 80] [--files 12000]

A generated stack (`benchmarks.synthetic.make_stack`) is served on 127.0.0.1; three
projects ask for overlapping parts of it (the first two thirds of the top packages, the
last two thirds, all of them with the changed package at 1.1).  Each tool locks and syncs
all three into environments beside their projects, with its own empty cache (hard links
from the cache, as both do by default on one filesystem).  Then each cache is measured
as quotas count it: allocated bytes and inodes (files, links and directories, each
inode once), beside uv's:

- lockenv keeping both (the default: archives and unpacked trees);
- lockenv with ``LOCKENV_CACHE_KEEP=trees`` (archives dropped once their trees are sealed);
- lockenv's both-cache after ``cache prune --keep archives`` (its entries aged by two
  hours first, as a prune run later would see them: prune never takes what a sync used
  in the last hour).

Ratios are lockenv / uv (goal: at most 1.2 on each, with the policy that fits).
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import synthetic  # noqa: E402
from fast_paths import PYTHON, clean_env, project_manifests, timed  # noqa: E402

from lockenv.platforms import current_platform  # noqa: E402


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(allocated bytes, inodes, regular files) under ``root``, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    used = inodes = files = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(dirpath, name) if name else dirpath
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if name in dirnames or (st.st_dev, st.st_ino) in seen:
                continue  # directories are counted when walked into
            seen.add((st.st_dev, st.st_ino))
            used += st.st_blocks * 512
            inodes += 1
            files += int(stat.S_ISREG(st.st_mode))
    return used, inodes, files


def projects(stack: synthetic.Stack) -> list[list[str]]:
    third = len(stack.top) // 3
    return [
        stack.top[: 2 * third],
        stack.top[third:],
        [*stack.top, f"{stack.changed}==1.1"],
    ]


def write_projects(base: Path, wanted: list[str], index: str) -> tuple[Path, Path]:
    le_dir, uv_dir = base / "lockenv", base / "uv"
    le_dir.mkdir(parents=True)
    uv_dir.mkdir(parents=True)
    lockenv_toml, pyproject_toml = project_manifests(wanted, index)
    (le_dir / "lockenv.toml").write_text(lockenv_toml)
    (uv_dir / "pyproject.toml").write_text(pyproject_toml)
    return le_dir, uv_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uv", default=shutil.which("uv") or "/work/peers/bin/uv")
    parser.add_argument("--lockenv", help="a lockenv command (default: this checkout's)")
    parser.add_argument("--pins", type=int, default=80)
    parser.add_argument("--files", type=int, default=12000)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    lockenv = [args.lockenv] if args.lockenv else [sys.executable, "-m", "lockenv"]
    python = shutil.which(f"python{PYTHON}") or sys.executable

    work = Path(tempfile.mkdtemp(prefix="lockenv-cache-footprint-"))
    try:
        stack = synthetic.indexed_stack(work, pins=args.pins, files=args.files)
        caches = {
            "both": work / "cache-both",
            "trees": work / "cache-trees",
            "uv": work / "cache-uv",
        }
        envs = 0
        sync_time = {name: [0.0, 0.0] for name in caches}
        with synthetic.serve(work / "index") as served:
            for i, wanted in enumerate(projects(stack)):
                le_dir, uv_dir = write_projects(work / f"project{i}", wanted, served.index)
                for policy in ("both", "trees"):
                    env = clean_env(
                        LOCKENV_CACHE_DIR=str(caches[policy]), LOCKENV_CACHE_KEEP=policy
                    )
                    # Each cache also holds what locking fetched (index pages, metadata).
                    (le_dir / "lockenv.lock").unlink(missing_ok=True)
                    timed([*lockenv, "lock"], le_dir, env)
                    wall, cpu = timed([*lockenv, "sync", "-q", "--frozen"], le_dir, env)
                    sync_time[policy][0] += wall
                    sync_time[policy][1] += cpu
                    shutil.move(le_dir / ".lockenv", le_dir / f".lockenv-{policy}")
                uv_env = clean_env(UV_CACHE_DIR=str(caches["uv"]), UV_LINK_MODE="hardlink")
                timed([args.uv, "lock", "-q", "--python", python], uv_dir, uv_env)
                wall, cpu = timed(
                    [args.uv, "sync", "-q", "--frozen", "--python", python], uv_dir, uv_env
                )
                sync_time["uv"][0] += wall
                sync_time["uv"][1] += cpu
                envs += 1
            # The prune a user runs later: entries aged past prune's one-hour guard.
            archives = work / "cache-archives"
            shutil.copytree(caches["both"], archives, symlinks=True, copy_function=os.link)
            then = time.time() - 2 * 3600
            for part in ("archives", "unpacked"):
                for shard in (archives / part).iterdir():
                    for entry in shard.iterdir():
                        os.utime(entry, (then, then))
            env = clean_env(LOCKENV_CACHE_DIR=str(archives))
            timed([*lockenv, "cache", "prune", "--keep", "archives"], work, env)
            caches["archives"] = archives

        # Measured apart from every environment: the hard links they share with a cache
        # are counted in the cache.
        uv = disk_usage(caches["uv"])
        print(
            f"\n{envs} environments from a {args.pins}-pin stack ({args.files} files), "
            f"{current_platform()}, {os.cpu_count()} CPUs"
        )
        print(
            f"{'cache':<22}{'MiB':>9}{'inodes':>9}{'files':>9}"
            f"{'bytes/uv':>10}{'inodes/uv':>11}{'files/uv':>10}"
        )
        rows = [
            ("uv", caches["uv"]),
            ("lockenv (both)", caches["both"]),
            ("lockenv (trees)", caches["trees"]),
            ("lockenv (archives)", caches["archives"]),
        ]
        for label, root in rows:
            used, inodes, files = disk_usage(root)
            print(
                f"{label:<22}{used / 2**20:>9.1f}{inodes:>9}{files:>9}"
                f"{used / uv[0]:>9.2f}x{inodes / uv[1]:>10.2f}x{files / uv[2]:>9.2f}x"
            )
        print("\ncold syncs of the three environments (sum, seconds):")
        for name in ("both", "trees", "uv"):
            label = "uv" if name == "uv" else f"lockenv ({name})"
            wall, cpu = sync_time[name]
            print(f"  {label:<20}wall {wall:6.2f}  cpu {cpu:6.2f}")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
