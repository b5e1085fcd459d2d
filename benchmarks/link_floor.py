"""The least a Python process can do to rebuild an environment from its cache's files.

    python benchmarks/link_floor.py PLAN.json TARGET

``PLAN.json`` (made by `write_plan`) lists an environment's directories and, for each of
its files that is a hard link to a file of a cache, the cache file and the path in the
environment.  This script makes the directories under ``TARGET``, then ``lstat``s and
hard-links every cache file, in one loop, nothing else: no lock to read, no plan, no
check of what it links, no RECORD to write.  `fast_paths.py` times it, start-up
included, beside ``lockenv sync`` and ``uv sync`` of the same environment: what any
Python tool pays for that environment's system calls, the floor under lockenv's warm
sync.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def write_plan(environment: Path, cache: Path, plan: Path) -> int:
    """Write ``plan`` for rebuilding ``environment`` from the files under ``cache`` it
    hard-links; the number of files it leaves out (written, not linked, by the tool)."""
    by_inode = {}
    for top, _, names in os.walk(os.path.abspath(cache)):
        for name in names:
            path = os.path.join(top, name)
            by_inode[os.lstat(path).st_ino] = path
    dirs: list[str] = []
    links: list[tuple[str, str]] = []
    left_out = 0
    for top, _, names in os.walk(environment):
        rel = os.path.relpath(top, environment)
        dirs.append(rel)
        for name in names:
            source = by_inode.get(os.lstat(os.path.join(top, name)).st_ino)
            if source is None:
                left_out += 1
            else:
                links.append((source, os.path.join(rel, name)))
    plan.write_text(json.dumps({"dirs": dirs, "links": links}))
    return left_out


def rebuild(plan: Path, target: Path) -> None:
    """Make ``plan``'s directories under ``target`` and link its files there."""
    data = json.loads(plan.read_text())
    for rel in data["dirs"]:
        os.makedirs(os.path.join(target, rel), exist_ok=True)
    for source, rel in data["links"]:
        os.lstat(source)
        os.link(source, os.path.join(target, rel))


if __name__ == "__main__":
    rebuild(Path(sys.argv[1]), Path(sys.argv[2]))
