"""Read and unpack conda package archives: ``.conda`` (v2) and ``.tar.bz2`` (v1).

A ``.conda`` file is a STORED zip holding ``metadata.json``
(``{"conda_pkg_format_version": 2}``), ``pkg-<stem>.tar.zst`` (the payload) and
``info-<stem>.tar.zst`` (``info/``).  A ``.tar.bz2`` is one bzip2 tar holding both.
Either way the unpacked tree is the same: ``info/`` plus the payload, side by side.

Members are streamed (zip member → zstd stream → tar in ``r|`` mode), never buffered
whole.  Every member is checked before it touches the disk, because a package is input
from outside: no absolute paths, no ``..``, no writing through a symlink, links whose
targets stay inside the destination, and nothing but regular files, directories and
links.  A refusal raises :class:`~lockenv.errors.UnsafePathError` naming the archive
and the member; the destination is then only fit for removal (the cache unpacks into
a temporary directory and discards it).

Standard library plus zstandard (imported only for ``.conda``): this module is on the
sync path.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Collection, Generator
from pathlib import Path
from typing import IO, Any

from lockenv.errors import InstallError, MetadataError, UnsafePathError
from lockenv.limits import MAX_METADATA

__all__ = ["extract_package", "package_format", "read_index_json", "read_info_files"]

_CHUNK = 1 << 20
_MAX_INFO_FILE = MAX_METADATA  # what one info/ file read into memory may be
_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors of a damaged or truncated archive, whichever layer notices first.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    OSError,
    ValueError,
)


def _read_errors() -> tuple[type[BaseException], ...]:
    # zstandard is imported lazily; its error type only matters once it was imported.
    zstd = sys.modules.get("zstandard")
    extra: tuple[type[BaseException], ...] = (zstd.ZstdError,) if zstd is not None else ()
    return _READ_ERRORS + extra


def package_format(archive: Path) -> str:
    """``".conda"`` or ``".tar.bz2"`` from the file name; anything else is an error."""
    name = Path(archive).name
    for suffix in (".conda", ".tar.bz2"):
        if name.endswith(suffix):
            return suffix
    raise InstallError(
        f"{name!r} is not a conda package: expected a '.conda' or '.tar.bz2' file name"
    )


def extract_package(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` (``.conda`` or ``.tar.bz2``) into ``dest``: ``info/`` and payload.

    ``dest`` is created if needed and should be empty.  Raises ``UnsafePathError`` for a
    member that would land outside ``dest`` (absolute path, ``..``, a path through a
    symlink, a link whose target escapes) or is a device, FIFO or other special file;
    ``InstallError`` when the archive is damaged.
    """
    archive = Path(archive)
    fmt = package_format(archive)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Extractor(archive, dest)
    try:
        with contextlib.ExitStack() as stack:
            tars = stack.enter_context(contextlib.closing(_tars(archive, fmt, info_only=False)))
            for tar in tars:
                for member in tar:
                    writer.add(tar, member)
    except (UnsafePathError, InstallError):
        raise
    except _read_errors() as exc:
        raise InstallError(
            f"cannot unpack {archive.name!r} into {str(dest)!r}: {exc}; if the file is "
            "damaged, remove it from the cache (lockenv cache clean) and sync again"
        ) from exc
    writer.finish()


def read_info_files(archive: Path, names: Collection[str]) -> dict[str, bytes]:
    """The bytes of the given ``info/...`` members (those present) of ``archive``.

    Reads only the info part: for ``.conda`` the ``info-*.tar.zst`` member alone; for
    ``.tar.bz2`` the stream stops once every name was seen (``info/`` comes first).
    """
    archive = Path(archive)
    fmt = package_format(archive)
    wanted = {_clean_member_name(n) for n in names}
    found: dict[str, bytes] = {}
    try:
        with contextlib.ExitStack() as stack:
            tars = stack.enter_context(contextlib.closing(_tars(archive, fmt, info_only=True)))
            for tar in tars:
                for member in tar:
                    name = _clean_member_name(member.name)
                    if name in wanted and member.isreg():
                        if member.size > _MAX_INFO_FILE:
                            raise MetadataError(
                                f"{archive.name}: {name!r} is {member.size} bytes, more than "
                                f"the {_MAX_INFO_FILE >> 20} MiB an info file may be; the "
                                "package is broken or malicious"
                            )
                        handle = tar.extractfile(member)
                        if handle is not None:
                            found[name] = handle.read(_MAX_INFO_FILE)
                    if len(found) == len(wanted):
                        return found
    except (UnsafePathError, InstallError):
        raise
    except _read_errors() as exc:
        raise MetadataError(
            f"cannot read {sorted(wanted)!r} from {archive.name!r}: {exc}; the file is "
            "damaged or not a conda package"
        ) from exc
    return found


def read_index_json(archive: Path) -> dict[str, Any]:
    """The package's ``info/index.json`` as a dict, read from the info part only."""
    data = read_info_files(archive, ["info/index.json"]).get("info/index.json")
    if data is None:
        raise MetadataError(f"{Path(archive).name!r} has no info/index.json")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise MetadataError(f"{Path(archive).name!r}: info/index.json is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MetadataError(f"{Path(archive).name!r}: info/index.json is not a JSON object")
    return doc


# --- reading --------------------------------------------------------------------------


def _tars(archive: Path, fmt: str, *, info_only: bool) -> Generator[tarfile.TarFile, None, None]:
    """The tar streams of the package, in archive order, opened in streaming mode."""
    if fmt == ".tar.bz2":
        with tarfile.open(archive, mode="r|bz2") as tar:
            yield tar
        return
    import zstandard  # only .conda needs it; keeps the .tar.bz2 path light

    with zipfile.ZipFile(archive) as outer:
        names = outer.namelist()
        if "metadata.json" in names:
            _check_format_version(archive, outer.read("metadata.json"))
        prefixes = ("info-",) if info_only else ("pkg-", "info-")
        components = [
            n for n in names if n.endswith(".tar.zst") and n.startswith(prefixes) and "/" not in n
        ]
        if not any(n.startswith("info-") for n in components):
            raise InstallError(
                f"{archive.name!r} is not a valid .conda package: no info-*.tar.zst member "
                f"(members: {names!r})"
            )
        for name in components:
            with outer.open(name) as raw:
                reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
                with reader, tarfile.open(fileobj=reader, mode="r|") as tar:
                    yield tar


def _check_format_version(archive: Path, data: bytes) -> None:
    try:
        version = json.loads(data).get("conda_pkg_format_version")
    except (ValueError, AttributeError):
        version = None
    if version != 2:
        raise InstallError(
            f"{archive.name!r}: unsupported .conda format (metadata.json says "
            f"conda_pkg_format_version {version!r}, lockenv reads 2); "
            "upgrade lockenv or use the .tar.bz2 of this package"
        )


# --- writing --------------------------------------------------------------------------


def _clean_member_name(name: str) -> str:
    """A member name without ``./`` or empty components (tar writers vary)."""
    return "/".join(p for p in name.split("/") if p not in ("", "."))


class _Extractor:
    """Places checked members under one destination directory."""

    def __init__(self, archive: Path, dest: Path) -> None:
        self.archive = archive
        self.root = os.path.realpath(dest)
        self.dirs: set[str] = {""}  # relative directories known to be real (not links)
        self.links: list[tuple[str, str]] = []  # (member name, absolute link path)

    def refuse(self, member: str, why: str) -> UnsafePathError:
        return UnsafePathError(
            f"refusing to unpack {self.archive.name!r}: member {member!r} {why}; "
            "the package is malformed or malicious, do not install it"
        )

    def parts(self, name: str, member: str) -> list[str]:
        """Path components of an archive path, refusing anything that could escape."""
        if "\x00" in name:
            raise self.refuse(member, "has a NUL byte in its path")
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            raise self.refuse(member, "has an absolute path")
        # A backslash is a separator on Windows: judge '..' by both separators everywhere.
        if ".." in re.split(r"[/\\]", name):
            raise self.refuse(member, "has a '..' component in its path")
        return [p for p in name.split("/") if p not in ("", ".")]

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = self.parts(member.name, member.name)
        if not parts:
            if member.isdir():
                return  # the archive root itself, './'
            raise self.refuse(member.name, "has an empty path")
        if member.isdir():
            self.ensure_dir(parts, member.name)
            return
        if not (member.isreg() or member.issym() or member.islnk()):
            raise self.refuse(member.name, "is a device, FIFO or other special file")
        self.ensure_dir(parts[:-1], member.name)
        target = os.path.join(self.root, *parts)
        self.clear(target, member.name)
        if member.issym():
            self.symlink(parts, member, target)
        elif member.islnk():
            self.hardlink(member, target)
        else:
            self.write(tar, member, target)

    def ensure_dir(self, parts: list[str], member: str) -> None:
        """Create ``parts`` under the root, refusing any component that is not a real dir."""
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            if rel in self.dirs:
                continue
            path = os.path.join(self.root, *parts[:depth])
            if os.path.islink(path):
                raise self.refuse(member, f"would be written through the symlink {rel!r}")
            if not os.path.lexists(path):
                os.mkdir(path, 0o755)
            elif not os.path.isdir(path):
                raise self.refuse(member, f"needs {rel!r} as a directory, it is a file")
            self.dirs.add(rel)

    def clear(self, target: str, member: str) -> None:
        """Make room for a file or link: a later member of the same name replaces it."""
        if os.path.lexists(target):
            if os.path.isdir(target) and not os.path.islink(target):
                raise self.refuse(member, "would replace a directory")
            os.unlink(target)

    def symlink(self, parts: list[str], member: tarfile.TarInfo, target: str) -> None:
        link = member.linkname
        if not link:
            raise self.refuse(member.name, "is a symlink with an empty target")
        if "\x00" in link or link.startswith(("/", "\\")) or _DRIVE.match(link):
            raise self.refuse(member.name, f"is a symlink to the absolute path {link!r}")
        resolved = posixpath.normpath(posixpath.join(*parts[:-1], link) if parts[:-1] else link)
        if "\\" in link:
            raise self.refuse(member.name, f"is a symlink with a backslash in {link!r}")
        if resolved == ".." or resolved.startswith("../"):
            raise self.refuse(member.name, f"is a symlink to {link!r}, outside the package")
        os.symlink(link, target)
        self.links.append((member.name, target))

    def hardlink(self, member: tarfile.TarInfo, target: str) -> None:
        parts = self.parts(member.linkname, member.name)
        if not parts:
            raise self.refuse(member.name, "is a hard link with an empty target")
        source = os.path.join(self.root, *parts)
        parent = "/".join(parts[:-1])
        # The source was written by an earlier member, so its directories are known real.
        if parent not in self.dirs or os.path.islink(source) or not os.path.isfile(source):
            raise self.refuse(
                member.name,
                f"is a hard link to {member.linkname!r}, which is not an earlier file member",
            )
        try:
            os.link(source, target)
        except OSError:  # a filesystem without hard links
            shutil.copy2(source, target)

    def write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            raise self.refuse(member.name, "has no data")
        # Executable bits survive; set-id, sticky and group/other write bits do not.
        mode = 0o755 if member.mode & 0o111 else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(target, flags, mode)
        with os.fdopen(fd, "wb") as out:
            _copy(source, out)
        os.utime(target, (member.mtime, member.mtime))

    def finish(self) -> None:
        """Check every symlink again, now that all of them exist: a chain can escape."""
        for member, path in self.links:
            real = os.path.realpath(path)
            if real != self.root and not real.startswith(self.root.rstrip(os.sep) + os.sep):
                raise self.refuse(member, "is a symlink that resolves outside the package")


def _copy(source: IO[bytes], out: IO[bytes]) -> None:
    while chunk := source.read(_CHUNK):
        out.write(chunk)
