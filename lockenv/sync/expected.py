"""What each file of an environment should be, from the lock's own knowledge.

An environment's records (RECORD, ``conda-meta``) live in the environment: whoever can
edit a file there can edit its record row too.  The lock pins every artifact by sha256,
and the cache keeps each artifact unpacked under that sha256, sealed when it was made
(`lockenv.cache`): from it, `expected_files` derives, for one installed package, every
path it placed and what it should be — the sha256, size and executable bit of each
file (with the environment's prefix put in where the package has a placeholder, and
``#!python`` rewritten), the target of each symlink, the content of each launcher.
`lockenv.sync.verify` checks the environment against that first and against the
records only for what the cache cannot say (RECORD itself, INSTALLER...).

Standard library only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lockenv.cache import Cache
from lockenv.errors import LockenvError
from lockenv.sync.plan import EnvState, InstalledPackage
from lockenv.sync.venv import EnvLayout

__all__ = ["Expected", "expected_files", "layout_of"]


@dataclass(frozen=True, slots=True)
class Expected:
    """What one prefix-relative path should be: a file (``sha256`` hex, ``size``, whether
    it is executable) or a symlink (``target``)."""

    sha256: str = ""
    size: int = -1
    executable: bool | None = None
    target: str | None = None  # a symlink's text


def layout_of(prefix: Path, state: EnvState) -> EnvLayout:
    """The layout the environment at ``prefix`` was synced with (from its state)."""
    xy = ".".join(state.python_version.split(".")[:2])
    return EnvLayout(
        root=prefix,
        prefix=prefix,
        python_version=xy,
        conda=state.kind == "conda",
        python_site_packages_path=state.site_packages,
    )


def _digest(data: bytes) -> Expected:
    return Expected(sha256=hashlib.sha256(data).hexdigest(), size=len(data), executable=True)


def expected_files(
    cache: Cache, package: InstalledPackage, layout: EnvLayout
) -> dict[str, Expected] | None:
    """Every path ``package`` placed (prefix-relative) and what it should be, from its
    artifact unpacked in ``cache``; None when the cache has no trustworthy entry for it
    (cleaned, or changed since it was sealed)."""
    entry, state = cache.trusted_entry(package.sha256)
    if state != "ok":
        return None
    try:
        if package.kind == "conda":
            return _conda_files(entry, layout)
        return _wheel_files(entry, layout)
    except (OSError, LockenvError, ValueError):
        return None


def _wheel_files(entry: Path, layout: EnvLayout) -> dict[str, Expected] | None:
    from lockenv.sync.launchers import python_shebang_chunks
    from lockenv.sync.pypi.wheel import load_unpacked, wheel_destinations, wheel_launchers

    wheel = load_unpacked(entry)
    if wheel is None:
        return None
    found: dict[str, Expected] = {}
    for f, dest in wheel_destinations(wheel, layout):
        if f.python_shebang:
            digest, size = hashlib.sha256(), 0
            with open(wheel.files_dir / f.path, "rb") as fh:
                for piece in python_shebang_chunks(fh, layout.prefix_python):
                    digest.update(piece)
                    size += len(piece)
            found[dest] = Expected(sha256=digest.hexdigest(), size=size, executable=True)
            continue
        found[dest] = Expected(
            sha256=_hex_of_record_hash(f.hash), size=f.size, executable=f.executable
        )
    for dest, content in wheel_launchers(wheel, layout):
        found[dest] = _digest(content)
    return found


def _hex_of_record_hash(value: str) -> str:
    """``sha256=<urlsafe base64>`` (RECORD form) as hex."""
    import base64

    algorithm, _, encoded = value.partition("=")
    if algorithm != "sha256":
        return ""
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).hex()


def _conda_files(entry: Path, layout: EnvLayout) -> dict[str, Expected] | None:
    from lockenv.sync.conda.install import (
        conda_destinations,
        conda_launchers,
        digest_in_prefix,
        load_unpacked_conda,
    )

    pkg = load_unpacked_conda(entry)
    if pkg is None:
        return None
    found: dict[str, Expected] = {}
    for item, dest in conda_destinations(pkg, layout):
        if item.path_type == "softlink":
            found[dest] = Expected(target=item.target)
        elif item.path_type == "directory":
            continue
        elif item.placeholder:
            sha256, size = digest_in_prefix(item, pkg.directory / item.path, layout, pkg.filename)
            found[dest] = Expected(sha256=sha256, size=size, executable=item.executable)
        else:
            found[dest] = Expected(sha256=item.sha256, size=item.size, executable=item.executable)
    for dest, content in conda_launchers(pkg, layout):
        found[dest] = _digest(content)
    return found
