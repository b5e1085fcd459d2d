"""Target platforms: conda subdir names mapped to what PyPI and conda need to know of them.

A lock is made for every target platform from one machine, with no interpreter of the
target at hand, so everything a resolver would normally ask the running interpreter
(marker values, compatible wheel tags) is computed here from the platform name, the
Python version the lock is made for, and the declared system requirements.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lockenv.errors import PlatformError

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet
    from packaging.tags import Tag
    from packaging.version import Version

OperatingSystem = Literal["linux", "osx", "win"]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class TargetPlatform:
    """One conda subdir, e.g. ``linux-64``, with the facts PyPI markers and tags need."""

    subdir: str
    os: OperatingSystem
    # The machine name as Python reports it on that platform (platform.machine()).
    machine: str
    # The architecture as wheel platform tags spell it.
    wheel_arch: str

    @property
    def sys_platform(self) -> str:
        return {"linux": "linux", "osx": "darwin", "win": "win32"}[self.os]

    @property
    def platform_system(self) -> str:
        return {"linux": "Linux", "osx": "Darwin", "win": "Windows"}[self.os]

    @property
    def os_name(self) -> str:
        return "nt" if self.os == "win" else "posix"


PLATFORMS: dict[str, TargetPlatform] = {
    p.subdir: p
    for p in (
        TargetPlatform(subdir="linux-64", os="linux", machine="x86_64", wheel_arch="x86_64"),
        TargetPlatform(subdir="linux-aarch64", os="linux", machine="aarch64", wheel_arch="aarch64"),
        TargetPlatform(subdir="linux-ppc64le", os="linux", machine="ppc64le", wheel_arch="ppc64le"),
        TargetPlatform(subdir="osx-64", os="osx", machine="x86_64", wheel_arch="x86_64"),
        TargetPlatform(subdir="osx-arm64", os="osx", machine="arm64", wheel_arch="arm64"),
        TargetPlatform(subdir="win-64", os="win", machine="AMD64", wheel_arch="amd64"),
    )
}

# What a target machine is assumed to provide when [system-requirements] is silent.
# The same floors pixi and uv use: glibc 2.28 (manylinux_2_28), macOS 13.
DEFAULT_GLIBC = "2.28"
DEFAULT_MACOS = "13.0"
# Oldest manylinux glibc minor a PEP 600 tag can name (manylinux1 is glibc 2.5).
_OLDEST_GLIBC_MINOR = 5
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def get_platform(name: str) -> TargetPlatform:
    """The platform called ``name``; PlatformError listing the known ones otherwise."""
    try:
        return PLATFORMS[name]
    except KeyError:
        import difflib

        known = ", ".join(PLATFORMS)
        close = difflib.get_close_matches(name, list(PLATFORMS), n=1, cutoff=0.6)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise PlatformError(f"unknown platform {name!r}: {guess}use one of {known}") from None


def current_platform() -> str:
    """The conda subdir of the machine this runs on."""
    machine = _machine().lower()
    if sys.platform.startswith("linux"):
        arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "aarch64"}
        arch["ppc64le"] = "ppc64le"
        if machine in arch:
            return f"linux-{arch[machine]}"
    elif sys.platform == "darwin":
        return "osx-arm64" if machine == "arm64" else "osx-64"
    elif sys.platform == "win32" and machine in ("amd64", "x86_64"):
        return "win-64"
    raise PlatformError(
        f"this machine ({sys.platform!r}, {machine!r}) is not a platform lockenv supports: "
        f"use one of {', '.join(PLATFORMS)}"
    )


def _machine() -> str:
    """``platform.machine()``: on POSIX straight from ``os.uname()``, as that function
    takes it, without importing ``platform`` (~4 ms of every command that reads a lock)."""
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform

    return platform.machine()


def host_system_requirements() -> tuple[str | None, str | None]:
    """``(glibc, macos)`` of this machine, as [system-requirements] would write them.

    Used for what is installed here only (build environments), never for a lock.
    """
    import platform as _platform

    glibc = macos = None
    if sys.platform.startswith("linux"):
        libc, version = _platform.libc_ver()
        if libc == "glibc" and version.count(".") >= 1:
            glibc = ".".join(version.split(".")[:2])
        else:
            glibc = "2.17"  # musl or unknown: ask only for the oldest manylinux wheels
    elif sys.platform == "darwin":
        release = _platform.mac_ver()[0]
        if release:
            parts = [*release.split("."), "0"][:2]
            macos = ".".join(parts)
    return glibc, macos


def _version_tuple(text: str, *, what: str) -> tuple[int, int]:
    parts = text.strip().split(".")
    try:
        major = int(parts[0])
        minor = int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise PlatformError(
            f"system-requirements.{what}: {text!r} is not a version like '2.28'"
        ) from None
    return major, minor


def marker_environment(target: TargetPlatform, python: Version) -> dict[str, str]:
    """The PEP 508 marker environment of CPython ``python`` on ``target``."""
    full = f"{python.major}.{python.minor}.{python.micro}"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": target.os_name,
        "platform_machine": target.machine,
        "platform_python_implementation": "CPython",
        # Unknowable without the target machine; markers on them are rare and would be
        # guesses, so they compare as empty strings (as uv does for --python-platform).
        "platform_release": "",
        "platform_version": "",
        "platform_system": target.platform_system,
        "python_full_version": full,
        "python_version": f"{python.major}.{python.minor}",
        "sys_platform": target.sys_platform,
    }


def platform_tags(target: TargetPlatform, *, glibc: str | None, macos: str | None) -> list[str]:
    """Wheel platform tags ``target`` accepts, most specific first."""
    arch = target.wheel_arch
    if target.os == "win":
        return [f"win_{arch}"]
    if target.os == "osx":
        from packaging.tags import mac_platforms

        version = _version_tuple(macos or DEFAULT_MACOS, what="macos")
        return list(mac_platforms(version, arch))
    major, newest_minor = _version_tuple(glibc or DEFAULT_GLIBC, what="glibc")
    if major != 2:
        raise PlatformError(f"system-requirements.glibc: {glibc!r} is not a glibc 2.x version")
    tags: list[str] = []
    # manylinux_2_5 .. 2_16 wheels only ever existed for x86 (manylinux1/2010).
    oldest = _OLDEST_GLIBC_MINOR if arch == "x86_64" else 17
    for minor in range(newest_minor, oldest - 1, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        legacy = _LEGACY_MANYLINUX.get(minor)
        if legacy and (minor == 17 or arch == "x86_64"):
            tags.append(f"{legacy}_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def wheel_tags(
    target: TargetPlatform, python: Version, *, glibc: str | None, macos: str | None
) -> list[Tag]:
    """Every wheel tag CPython ``python`` on ``target`` installs, most preferred first."""
    from packaging.tags import compatible_tags, cpython_tags

    version = (python.major, python.minor)
    interpreter = f"cp{python.major}{python.minor}"
    platforms = platform_tags(target, glibc=glibc, macos=macos)
    return [
        *cpython_tags(version, abis=[interpreter], platforms=platforms),
        *compatible_tags(version, interpreter=interpreter, platforms=platforms),
    ]


def python_target(requires_python: SpecifierSet | None) -> Version:
    """The Python version a PyPI-only environment is resolved for.

    The lowest ``3.x.y`` that ``requires_python`` admits (as ``uv pip compile
    --python-version`` takes the lower bound), else the Python running lockenv.
    """
    from packaging.version import Version

    if requires_python is None:
        info = sys.version_info
        return Version(f"{info.major}.{info.minor}")
    for minor in range(6, 30):
        for micro in range(0, 30):
            candidate = Version(f"3.{minor}.{micro}")
            if requires_python.contains(candidate, prereleases=False):
                return Version(f"3.{minor}") if micro == 0 else candidate
    raise PlatformError(
        f"requires-python {str(requires_python)!r} admits no Python 3 version: "
        "write a range such as '==3.12.*'"
    )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class VirtualPackage:
    """A conda virtual package (``__glibc``, ``__osx``...) a target machine provides."""

    name: str
    version: str
    build: str = "0"


# The kernel version conda reports for __linux when the target machine is unknown.
DEFAULT_LINUX_KERNEL = "4.18"
_ARCHSPEC = {
    "x86_64": "x86_64",
    "aarch64": "aarch64",
    "ppc64le": "ppc64le",
    "arm64": "arm64",
    "AMD64": "x86_64",
}


def virtual_packages(
    target: TargetPlatform,
    *,
    glibc: str | None = None,
    macos: str | None = None,
    cuda: str | None = None,
    archspec: str | None = None,
) -> list[VirtualPackage]:
    """The virtual packages a ``target`` machine with these system requirements offers.

    As pixi does, ``__cuda`` exists only when ``cuda`` is declared: a lock must not
    assume a GPU the cluster nodes may not have.
    """
    packages = [
        VirtualPackage(name="__archspec", version="1", build=archspec or _ARCHSPEC[target.machine])
    ]
    if target.os in ("linux", "osx"):
        packages.append(VirtualPackage(name="__unix", version="0"))
    if target.os == "linux":
        packages.append(VirtualPackage(name="__linux", version=DEFAULT_LINUX_KERNEL))
        packages.append(VirtualPackage(name="__glibc", version=glibc or DEFAULT_GLIBC))
    elif target.os == "osx":
        packages.append(VirtualPackage(name="__osx", version=macos or DEFAULT_MACOS))
    else:
        packages.append(VirtualPackage(name="__win", version="0"))
    if cuda:
        packages.append(VirtualPackage(name="__cuda", version=cuda))
    return packages
