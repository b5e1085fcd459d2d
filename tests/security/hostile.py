"""Helpers for the security regression tests: hostile packages, locks, and a sandbox
whose every byte outside the environment is compared before and after.

A sandbox is a directory holding the project (``proj/``, whose environment is
``proj/.lockenv/envs/default``), a victim tree beside it (``outside/``) and the cache
(``cache/``).  `outside_snapshot` records everything in it but the environment and the
sync's own staging directories, so a test asserts that a sync, however it ended,
created or changed nothing outside the prefix.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixtures.build_channel import PayloadFile
from lockenv.lockfile import Artifact, CondaArtifact, LockedEnvironment, Lockfile, LockInputs
from lockenv.platforms import current_platform
from lockenv.sync.materialize import SyncOptions, SyncReport, sync_environment

from materializer_support import conda_artifact as fixture_conda
from materializer_support import custom_conda_package, lock_sha

PLATFORM = current_platform()
PYTHON_XY = f"{sys.version_info.major}.{sys.version_info.minor}"

__all__ = [
    "PLATFORM",
    "PayloadFile",
    "Sandbox",
    "conda_package",
    "fixture_conda",
    "lock_of",
    "outside_snapshot",
    "sync",
]


@dataclass(frozen=True)
class Sandbox:
    root: Path

    @property
    def project(self) -> Path:
        return self.root / "proj"

    @property
    def prefix(self) -> Path:
        return self.project / ".lockenv" / "envs" / "default"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @classmethod
    def make(cls, root: Path) -> Sandbox:
        box = cls(root)
        box.prefix.parent.mkdir(parents=True)
        box.outside.mkdir()
        (box.outside / "keep.txt").write_text("precious\n")
        (box.project / "victim_dir").mkdir()
        (box.project / "victim_dir" / "existing.txt").write_text("mine\n")
        return box


def outside_snapshot(box: Sandbox) -> dict[str, tuple[int, str]]:
    """Every entry of the sandbox outside the environment, its staging directories and
    the cache: mode and content hash (symlinks: their target)."""
    skip_dir = box.prefix.parent
    found: dict[str, tuple[int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(box.root):
        here = Path(dirpath)
        if here == box.cache or box.cache in here.parents:
            dirnames[:] = []
            continue
        if here == skip_dir:
            dirnames[:] = [d for d in dirnames if not d.startswith((".default.", "default"))]
            filenames = [f for f in filenames if not f.startswith(".default.")]
        for name in dirnames + filenames:
            path = here / name
            if path == box.cache:
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                value = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                value = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                value = ""
            found[str(path.relative_to(box.root))] = (st.st_mode, value)
    return found


def conda_package(
    directory: Path,
    name: str,
    files: Sequence[PayloadFile],
    *,
    depends: Iterable[str] = (),
    fmt: str = ".conda",
    version: str = "1.0",
) -> CondaArtifact:
    """A hand-made noarch conda package, locked by file URL (depends order its linking)."""
    return custom_conda_package(directory, name, files, depends=depends, fmt=fmt, version=version)


def lock_of(artifacts: Sequence[Artifact], *, python: str | None = None) -> Lockfile:
    """A one-environment lock pinning ``artifacts`` on this platform."""
    return Lockfile(
        inputs=LockInputs(platforms=(PLATFORM,)),
        environments={
            "default": LockedEnvironment(
                name="default",
                python=python,
                packages={PLATFORM: tuple(a.url for a in artifacts)},
            )
        },
        artifacts={a.url: a for a in artifacts},
    )


def sync(lock: Lockfile, box: Sandbox, *, prefix: Path | None = None, **options: Any) -> SyncReport:
    """Sync ``lock``'s default environment into the sandbox's prefix (or ``prefix``),
    with the sandbox's cache."""
    options.setdefault("cache_dir", box.cache)
    return sync_environment(
        lock, lock_sha(lock), "default", prefix or box.prefix, SyncOptions(**options)
    )
