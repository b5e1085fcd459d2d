"""Base environments: a site's Python stack that an environment is built on top of.

``base-environment = "/opt/site/envs/ml-2025"`` makes an environment a virtual
environment over the base's Python with the base's site-packages on ``sys.path`` after
its own (as ``python -m venv --system-site-packages`` does for a Python installation).
The base is not lockenv's: a site builds and updates it.  So what it holds is read, and
recorded in the lock, from what it shows on disk, without running it:

- its Python ``X.Y`` from ``lib/pythonX.Y/site-packages`` (``Lib/site-packages`` on
  Windows) and the full version from its conda ``python`` record or ``pyvenv.cfg``
  where it has one;
- its conda packages from ``conda-meta/<name>-<version>-<build>.json`` file names;
- its Python distributions from the ``*.dist-info`` (and ``*.egg-info``) directories in
  its site-packages, conda-installed or not.

The digest is one sha256 over that package set, the same for the same set on any
machine and at any path, and cheap to compute again (two directory listings), so a
sync can tell on every run whether the base has changed since the lock was made.

Standard library only: the sync side reads it on its no-op path.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from lockenv.errors import LockfileError

__all__ = ["BaseEnvironment", "base_drift", "base_python", "read_base_environment"]

_IS_WINDOWS = sys.platform == "win32"
_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)\.dist-info$")
_EGG_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-py\d[^-]*)?\.egg-info$")


class BaseEnvironmentError(LockfileError):
    """A base environment is missing or is not a Python environment."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseEnvironment:
    """What a base environment holds, as the lock records it.

    ``conda`` entries are ``name=version=build``; ``pypi`` entries ``name==version``
    with PEP 503 names; both sorted.  ``site_packages`` is relative to ``prefix``.
    """

    prefix: str
    python: str  # "3.11.7", or "3.11" when only the directory name tells
    site_packages: str
    conda: tuple[str, ...] = ()
    pypi: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        """sha256 of the package set (not of the path): what drift is measured by."""
        text = "\n".join(
            [f"python {self.python_xy}", *(f"conda {c}" for c in self.conda)]
            + [f"pypi {p}" for p in self.pypi]
        )
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def python_xy(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def pypi_versions(self) -> dict[str, str]:
        """Normalized distribution name -> version, for every distribution it has."""
        out: dict[str, str] = {}
        for entry in self.pypi:
            name, _, version = entry.partition("==")
            out[name] = version
        return out

    def conda_records(self) -> dict[str, tuple[str, str]]:
        """Conda package name -> (version, build)."""
        out: dict[str, tuple[str, str]] = {}
        for entry in self.conda:
            name, version, build = entry.rsplit("=", 2)
            out[name] = (version, build)
        return out


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_python(prefix: Path) -> Path:
    """The base environment's interpreter (it may be a launcher: see `lockenv.sync.venv`)."""
    candidates = (
        [prefix / "python.exe", prefix / "Scripts" / "python.exe"]
        if _IS_WINDOWS
        else [prefix / "bin" / "python3", prefix / "bin" / "python"]
    )
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    raise BaseEnvironmentError(
        f"base environment {str(prefix)!r} has no Python interpreter "
        f"({' or '.join(str(c.relative_to(prefix)) for c in candidates)}); a base environment "
        "is a prefix with Python in it (a conda environment, a Python installation)"
    )


def _site_packages(prefix: Path) -> str:
    if _IS_WINDOWS:
        if (prefix / "Lib" / "site-packages").is_dir():
            return "Lib/site-packages"
    else:
        lib = prefix / "lib"
        found = sorted(
            (entry.name for entry in _scandir(lib) if re.fullmatch(r"python3\.\d+", entry.name)),
            key=lambda n: int(n.split(".")[1]),
        )
        if found and (lib / found[-1] / "site-packages").is_dir():
            return f"lib/{found[-1]}/site-packages"
    raise BaseEnvironmentError(
        f"base environment {str(prefix)!r} has no site-packages "
        f"({'Lib/site-packages' if _IS_WINDOWS else 'lib/python3.X/site-packages'}); a base "
        "environment is a prefix with Python in it (a conda environment, a Python installation)"
    )


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _conda_packages(prefix: Path) -> list[str]:
    found = []
    for entry in _scandir(prefix / "conda-meta"):
        if entry.name.endswith(".json") and entry.name.count("-") >= 2:
            name, version, build = entry.name[: -len(".json")].rsplit("-", 2)
            found.append(f"{name}={version}={build}")
    return sorted(found)


def _distributions(site_packages: Path) -> list[str]:
    found = {}
    for entry in _scandir(site_packages):
        match = _DIST_INFO.match(entry.name) or _EGG_INFO.match(entry.name)
        if match:
            found[_normalize(match["name"])] = match["version"]
    return sorted(f"{name}=={version}" for name, version in found.items())


def _windows_python_xy(prefix: Path) -> str:
    """X.Y of a Windows Python from its DLL name (python311.dll)."""
    for entry in _scandir(prefix):
        match = re.fullmatch(r"python3(\d+)\.dll", entry.name, re.IGNORECASE)
        if match:
            return f"3.{match[1]}"
    raise BaseEnvironmentError(
        f"base environment {str(prefix)!r} has no python3X.dll to tell its Python version"
    )


def _full_python_version(prefix: Path, conda: list[str], xy: str) -> str:
    for entry in conda:
        name, version, _ = entry.rsplit("=", 2)
        if name == "python" and version.startswith(xy + "."):
            return version
    try:
        for line in (prefix / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info") and value.strip().startswith(xy):
                return ".".join(value.strip().split(".")[:3])
    except (OSError, UnicodeDecodeError):
        pass
    return xy


def read_base_environment(prefix: Path) -> BaseEnvironment:
    """Read what the base environment at ``prefix`` holds (directory listings only).

    Raises `BaseEnvironmentError` when there is no such directory or no Python in it.
    """
    prefix = Path(os.path.abspath(os.path.expanduser(prefix)))
    if not prefix.is_dir():
        raise BaseEnvironmentError(
            f"base environment {str(prefix)!r} does not exist on this machine; it must be "
            "there to lock or sync an environment built on it (fix the path, or load the "
            "module that provides it)"
        )
    site_packages = _site_packages(prefix)
    xy = _windows_python_xy(prefix) if _IS_WINDOWS else site_packages.split("/")[1][6:]
    conda = _conda_packages(prefix)
    return BaseEnvironment(
        prefix=str(prefix),
        python=_full_python_version(prefix, conda, xy),
        site_packages=site_packages,
        conda=tuple(conda),
        pypi=tuple(_distributions(prefix / site_packages)),
    )


def base_drift(recorded: BaseEnvironment, current: BaseEnvironment, *, limit: int = 6) -> str:
    """What changed between the base as locked and as it is now, in one short line."""
    changes: list[str] = []
    if recorded.python_xy != current.python_xy:
        changes.append(f"Python {recorded.python} -> {current.python}")
    for kind, old, new in (
        ("conda", recorded.conda, current.conda),
        ("pypi", recorded.pypi, current.pypi),
    ):
        sep = "=" if kind == "conda" else "=="
        before = {e.split(sep, 1)[0]: e.split(sep, 1)[1] for e in old}
        after = {e.split(sep, 1)[0]: e.split(sep, 1)[1] for e in new}
        for name in sorted(before.keys() | after.keys()):
            if name not in after:
                changes.append(f"-{name} {before[name]}")
            elif name not in before:
                changes.append(f"+{name} {after[name]}")
            elif before[name] != after[name]:
                changes.append(f"{name} {before[name]} -> {after[name]}")
    shown = ", ".join(dict.fromkeys(changes[:limit]))
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return shown + more
