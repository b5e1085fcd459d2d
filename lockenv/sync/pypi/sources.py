"""Sources at sync time: the builder a sync is handed, and the check of what it built.

A lock may pin an sdist (no wheel for the platform) or a source tree (a path or git
dependency).  The sync verifies the sdist like any artifact, then asks a `WheelBuilder`
(`lockenv.build`, wired in by `lockenv.workspace`; the sync side never imports it) for a
wheel built in an isolated build environment with the environment's own interpreter,
checks that wheel's metadata against the lock, and installs it like any wheel.  Package
code runs only inside that build, never at install.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lockenv.errors import BuildError

if TYPE_CHECKING:
    from email.message import Message

    from lockenv.lockfile import PypiArtifact, PypiSource

__all__ = [
    "BUILD_FILES",
    "BuildRequest",
    "WheelBuilder",
    "built_wheel_artifact",
    "check_built_wheel",
    "git_checkout_request",
    "tree_fingerprint",
]

# What decides how a source tree builds and what its metadata says; code edits do not
# (an editable install shows them anyway).
BUILD_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def tree_fingerprint(tree: Path) -> str:
    """A hash of a source tree's build files: a path dependency whose fingerprint changed
    is installed again, though the lock did not change.  Standard library only: the
    no-op sync computes it."""
    digest = hashlib.sha256()
    for name in BUILD_FILES:
        try:
            with open(tree / name, "rb") as fh:
                file_digest = hashlib.file_digest(fh, "sha256").digest()
        except OSError:
            file_digest = hashlib.sha256(b"\0missing").digest()
        digest.update(name.encode() + b"\0" + file_digest)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    """One wheel to build for one interpreter.

    Exactly one of ``archive`` (an sdist, already checked against the lock's sha256)
    and ``tree`` (a source directory) is set.
    """

    name: str  # normalized
    version: str
    python: Path  # the interpreter the environment runs (its build environment's base)
    python_version: str  # "3.11.7"
    archive: Path | None = None
    archive_sha256: str | None = None
    tree: Path | None = None
    source_id: str = ""  # a git commit, for the cache key of a tree's wheel
    editable: bool = False  # PEP 660
    in_place: bool = False  # build in ``tree`` itself (the user's own), not in a copy

    @property
    def label(self) -> str:
        """How messages name what is built."""
        if self.archive is not None:
            return f"{self.name} {self.version} ({self.archive.name})"
        return f"{self.name} {self.version} ({self.tree})"


class WheelBuilder(Protocol):
    """Builds wheels from sdists and source trees (implemented by `lockenv.build`)."""

    def build_wheel(self, request: BuildRequest) -> Path:
        """A wheel built from the request's sdist or tree; BuildError on failure."""
        ...


def git_checkout_request(
    request: BuildRequest, source: PypiSource, cache_root: Path
) -> BuildRequest:
    """``request`` for the git dependency ``source``: its locked commit checked out in the
    cache; the built wheel is cached by commit (and subdirectory), the same tree anywhere."""
    from dataclasses import replace

    from lockenv.git import checkout

    assert source.git is not None and source.commit is not None
    tree = checkout(source.git, source.commit, cache_root)
    sub = source.subdirectory
    source_id = source.commit + (f"-{sub}" if sub else "")
    return replace(request, tree=tree / sub if sub else tree, source_id=source_id.replace("/", "_"))


def built_wheel_artifact(name: str, version: str, wheel: Path) -> PypiArtifact:
    """A wheel built on this machine as an artifact: its own sha256 and size, its path as
    a ``file://`` URL (the cache keys its unpacked tree by that sha256)."""
    from lockenv.cache import hash_file
    from lockenv.lockfile import PypiArtifact

    digest, size = hash_file(wheel)
    return PypiArtifact(
        name=name,
        version=version,
        filename=wheel.name,
        url=wheel.as_uri(),
        sha256=digest,
        size=size,
    )


_DIST_INFO_METADATA = re.compile(r"[^/]+\.dist-info/METADATA")


def _wheel_metadata(wheel: Path, label: str) -> Message:
    import email.parser
    import email.policy
    import zipfile

    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if _DIST_INFO_METADATA.fullmatch(n)]
            if len(names) != 1:
                raise BuildError(f"{label}: the built wheel {wheel.name} has no single METADATA")
            data = zf.read(names[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise BuildError(f"{label}: the built wheel {wheel.name} is unreadable: {exc}") from None
    text = data.decode("utf-8", errors="replace")
    return email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)


def check_built_wheel(
    wheel: Path,
    *,
    name: str,
    version: str,
    requires_dist: tuple[str, ...],
    requires_python: str | None,
    label: str,
) -> None:
    """Refuse a built wheel whose metadata is not what the lock was made from.

    The lock's pins were chosen from the metadata it records; a wheel that names
    another project or version, or requires other things, would install an environment
    the lock never described.  Requirements compare as parsed PEP 508 (spelling aside).
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    meta = _wheel_metadata(wheel, label)
    built_name, built_version = str(meta.get("Name", "")), str(meta.get("Version", ""))
    try:
        same_version = Version(built_version) == Version(version)
    except InvalidVersion:
        same_version = False
    if canonicalize_name(built_name) != name or not same_version:
        raise BuildError(
            f"{label}: the build made {built_name} {built_version}, but the lock pins "
            f"{name} {version}; refusing to install it"
        )

    def normalized(texts: list[str]) -> set[str]:
        out = set()
        for text in texts:
            try:
                out.add(str(Requirement(" ".join(text.split()))))
            except InvalidRequirement:
                out.add(text)
        return out

    built = normalized([str(v) for v in meta.get_all("Requires-Dist") or []])
    locked = normalized(list(requires_dist))
    if built != locked:
        missing = ", ".join(sorted(locked - built)) or "nothing"
        extra = ", ".join(sorted(built - locked)) or "nothing"
        raise BuildError(
            f"{label}: the built wheel's dependencies differ from the metadata the lock "
            f"was made from (the build adds {extra}; drops {missing}); refusing to install "
            "it: the package's published metadata and its build disagree; pin another "
            f"version, or re-lock it (`lockenv lock --update {name}`) if the lock was made "
            "on another kind of machine"
        )
    built_python = meta.get("Requires-Python")
    if built_python and requires_python:
        try:
            differs = SpecifierSet(str(built_python)) != SpecifierSet(requires_python)
        except InvalidSpecifier:
            differs = False
        if differs:
            raise BuildError(
                f"{label}: the built wheel requires Python {built_python}, the lock recorded "
                f"{requires_python}; refusing to install it: run `lockenv lock --update {name}`"
            )
