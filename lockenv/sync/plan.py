"""What a synced environment records about itself, and the lock-versus-environment comparison.

Every environment lockenv builds carries ``.lockenv-state.json`` at its root, written
last into the staging tree and swapped in with it, so its presence means "complete".
It records the lock (sha256 of its bytes), environment, platform, final prefix,
interpreter, and for each installed package the artifact (sha256, file name) it came
from.  The no-op check compares that record with a listing of site-packages and, in a
conda environment, of ``conda-meta/`` (``os.listdir``: notices packages added or removed
by hand) — nothing is hashed.

Two kinds of environment: ``venv`` (a virtual environment on a host Python, PyPI
wheels only) and ``conda`` (a conda prefix: conda packages, and PyPI wheels installed
into the conda Python's site-packages).  A PyPI package is known by its ``.dist-info``
directory, a conda package by its ``conda-meta/<name>-<version>-<build>.json`` record.

Standard library only: this module is on the no-op fast path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lockenv.limits import MAX_METADATA, read_capped

__all__ = [
    "STATE_FILE",
    "EnvState",
    "InstalledPackage",
    "SyncPlan",
    "conda_meta_names",
    "dist_info_names",
    "plan_sync",
    "read_state",
    "write_state",
]

STATE_FILE = ".lockenv-state.json"
STATE_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledPackage:
    """One installed package and the locked artifact it was installed from.

    ``dist_info`` is what marks it installed: the ``.dist-info`` directory name of a PyPI
    package, the ``conda-meta`` record file name of a conda package (``kind="conda"``).
    """

    name: str  # normalized
    version: str
    sha256: str  # of the artifact; for a source tree, its identity (``path:.``, git+URL@commit)
    filename: str
    dist_info: str
    kind: str = "pypi"  # "pypi" | "conda"
    # sha256 of the package's record as the sync wrote it (RECORD, conda-meta/*.json):
    # verify finds a record edited to hide an edited file.
    record_sha256: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvState:
    """The contents of ``.lockenv-state.json``."""

    lock_sha256: str
    environment: str
    platform: str
    prefix: str
    lockenv_version: str
    python_executable: str
    python_version: str
    site_packages: str  # relative to the prefix, POSIX; "" in a conda env without Python
    link_mode: str
    bytecode: bool
    packages: tuple[InstalledPackage, ...] = field(default=())
    kind: str = "venv"  # "venv" | "conda"
    conda_dist_infos: tuple[str, ...] = ()  # dist-info dirs that conda packages shipped
    # Link mode "symlink": the cache entries the environment's files point into.
    cache_entries: tuple[str, ...] = ()
    base_prefix: str = ""  # the base environment it is built on ("" for none)
    base_digest: str = ""  # that base's package-set digest when it was built
    # Path dependencies: absolute directory -> fingerprint of its build files when built.
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def dist_infos(self) -> list[str]:
        """Sorted dist-info directory names the environment's site-packages should have."""
        own = [p.dist_info for p in self.packages if p.kind == "pypi"]
        return sorted([*own, *self.conda_dist_infos])

    @property
    def conda_records(self) -> list[str]:
        """Sorted ``conda-meta`` record file names the environment should have."""
        return sorted(p.dist_info for p in self.packages if p.kind == "conda")

    def to_json(self) -> str:
        data = {
            "format": STATE_FORMAT,
            "lock_sha256": self.lock_sha256,
            "environment": self.environment,
            "platform": self.platform,
            "prefix": self.prefix,
            "lockenv_version": self.lockenv_version,
            "python": {"executable": self.python_executable, "version": self.python_version},
            "site_packages": self.site_packages,
            "link_mode": self.link_mode,
            "bytecode": self.bytecode,
            "kind": self.kind,
            "conda_dist_infos": sorted(self.conda_dist_infos),
            "cache_entries": sorted(self.cache_entries),
            "base": {"prefix": self.base_prefix, "digest": self.base_digest},
            "sources": dict(sorted(self.sources.items())),
            "packages": [
                {
                    "name": p.name,
                    "version": p.version,
                    "sha256": p.sha256,
                    "filename": p.filename,
                    "dist_info": p.dist_info,
                    "kind": p.kind,
                    "record_sha256": p.record_sha256,
                }
                for p in sorted(self.packages, key=lambda p: (p.kind, p.name))
            ],
        }
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EnvState | None:
        """The state in ``text``, or None when it is not a state this version understands."""
        try:
            data = json.loads(text)
            if data.get("format") != STATE_FORMAT:
                return None
            return cls(
                lock_sha256=str(data["lock_sha256"]),
                environment=str(data["environment"]),
                platform=str(data["platform"]),
                prefix=str(data["prefix"]),
                lockenv_version=str(data["lockenv_version"]),
                python_executable=str(data["python"]["executable"]),
                python_version=str(data["python"]["version"]),
                site_packages=str(data["site_packages"]),
                link_mode=str(data["link_mode"]),
                bytecode=bool(data["bytecode"]),
                packages=tuple(
                    InstalledPackage(
                        name=str(p["name"]),
                        version=str(p["version"]),
                        sha256=str(p["sha256"]),
                        filename=str(p["filename"]),
                        dist_info=str(p["dist_info"]),
                        kind=str(p.get("kind", "pypi")),
                        record_sha256=str(p.get("record_sha256", "")),
                    )
                    for p in data["packages"]
                ),
                kind=str(data.get("kind", "venv")),
                conda_dist_infos=tuple(str(d) for d in data.get("conda_dist_infos", ())),
                cache_entries=tuple(str(d) for d in data.get("cache_entries", ())),
                base_prefix=str(data.get("base", {}).get("prefix", "")),
                base_digest=str(data.get("base", {}).get("digest", "")),
                sources={str(k): str(v) for k, v in data.get("sources", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def read_state(prefix: Path) -> EnvState | None:
    """The state of the environment at ``prefix``; None if there is none (or it is unreadable)."""
    try:
        text = read_capped(prefix / STATE_FILE, MAX_METADATA, "state file").decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return EnvState.from_json(text)


def write_state(root: Path, state: EnvState) -> None:
    """Write ``state`` into the environment tree at ``root`` (atomically: a new file
    renamed over the old, never written through whatever is at the path)."""
    from lockenv.atomic import write_atomic

    # Not fsynced: no file of the environment is (a crash loses the sync, not the state).
    write_atomic(root / STATE_FILE, state.to_json(), mode=0o644, durable=False)


def dist_info_names(site_packages: Path | str) -> list[str]:
    """Sorted ``*.dist-info`` directory names in ``site_packages`` (empty if it is missing)."""
    try:
        return sorted(n for n in os.listdir(site_packages) if n.endswith(".dist-info"))
    except OSError:
        return []


def conda_meta_names(prefix: Path | str) -> list[str]:
    """Sorted conda package record names (``*.json``) in ``<prefix>/conda-meta``."""
    try:
        return sorted(
            n for n in os.listdir(os.path.join(prefix, "conda-meta")) if n.endswith(".json")
        )
    except OSError:
        return []


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class WantedPackage:
    """A package the lock wants: what `plan_sync` needs of an artifact."""

    name: str
    version: str
    sha256: str
    kind: str = "pypi"  # "pypi" | "conda"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class SyncPlan:
    """How the lock differs from what is installed ("name==version" entries, sorted)."""

    installed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def changes(self) -> bool:
        return bool(self.installed or self.removed)


def _split_dist_info(dist_info: str) -> tuple[str, str, str]:
    """(kind, name, version) of a dist-info directory or conda-meta record name."""
    if dist_info.endswith(".json"):  # conda-meta/<name>-<version>-<build>.json
        name, version, _build = [*dist_info[: -len(".json")].rsplit("-", 2), "", ""][:3]
        return "conda", name, version
    name, _, version = dist_info[: -len(".dist-info")].rpartition("-")
    return "pypi", name.replace("_", "-").replace(".", "-").lower(), version


def plan_sync(
    wanted: Iterable[WantedPackage], state: EnvState | None, on_disk: Iterable[str]
) -> SyncPlan:
    """Compare the locked packages with the environment (its state and on-disk listing).

    ``on_disk`` holds the dist-info directory names in site-packages and, in a conda
    environment, the ``conda-meta`` record names.  A package whose artifact changes is
    both removed (old) and installed (new).  Packages installed by hand (a dist-info or
    record the state does not list) count as removed; packages deleted by hand count as
    installed again.
    """
    present = set(on_disk)
    previous: dict[tuple[str, str], InstalledPackage] = {}
    shipped: set[str] = set()
    if state is not None:
        previous = {(p.kind, p.name): p for p in state.packages if p.dist_info in present}
        shipped = set(state.conda_dist_infos)
    known = {p.dist_info for p in previous.values()} | shipped
    foreign: Mapping[tuple[str, str], str] = {
        (kind, name): version
        for kind, name, version in map(_split_dist_info, sorted(present - known))
    }
    installed, unchanged = [], []
    kept: set[tuple[str, str]] = set()
    for w in wanted:
        key = (w.kind, w.name)
        old = previous.get(key)
        entry = f"{w.name}=={w.version}"
        if old is not None and old.sha256 == w.sha256 and key not in foreign:
            unchanged.append(entry)
            kept.add(key)
        else:
            installed.append(entry)
    # An upgrade is the old version removed and the new one installed, as uv reports it.
    removed = [f"{p.name}=={p.version}" for k, p in previous.items() if k not in kept]
    removed += [f"{name}=={v}" for (_kind, name), v in foreign.items()]
    return SyncPlan(
        installed=tuple(sorted(installed)),
        removed=tuple(sorted(set(removed))),
        unchanged=tuple(sorted(unchanged)),
    )
