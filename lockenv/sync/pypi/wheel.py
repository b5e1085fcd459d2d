"""Wheels: unpacked once into the cache, then linked into environments as pip installs them.

Unpacking checks every member path (no absolute paths, drive letters, ``..`` or symlinks
pointing out of the wheel), hashes each file while it is written, and records what an
install needs in ``manifest.json`` beside the files, so installing a cached wheel is
links plus a few small generated files: launchers, rewritten ``#!python`` scripts,
RECORD, INSTALLER, REQUESTED and (for direct URLs) ``direct_url.json``.

Where files go (the wheel spec, for a virtual environment)::

    <root of wheel>            site-packages (purelib or platlib: the same in a venv)
    <name>.data/purelib|platlib site-packages
    <name>.data/scripts        bin/   (``#!python`` rewritten to the environment's python)
    <name>.data/headers        include/site/pythonX.Y/<project>/
    <name>.data/data           the prefix
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lockenv import __version__
from lockenv.errors import InstallError, UnsafePathError
from lockenv.limits import MAX_METADATA, TooLargeError, read_capped, size_text
from lockenv.sync.guard import PrefixGuard
from lockenv.sync.launchers import (
    EntryPoint,
    launcher_script,
    parse_entry_points,
    rewrite_python_shebang,
)
from lockenv.sync.pypi.record import (
    check_member_path,
    parse_record,
    record_hash,
    record_hash_of_digest,
    render_record_rows,
)
from lockenv.sync.venv import EnvLayout

if TYPE_CHECKING:
    import zipfile

__all__ = [
    "InstalledDist",
    "UnpackedWheel",
    "WheelFile",
    "WheelInstall",
    "apply_wheel_install",
    "apply_wheel_installs",
    "install_wheel",
    "load_unpacked",
    "plan_key",
    "plan_wheel_install",
    "unpack_wheel",
]

MANIFEST = "manifest.json"
FILES = "files"
_MANIFEST_FORMAT = 1
INSTALLER_NAME = b"lockenv\n"
# Written by the installer, never taken from the wheel.
_GENERATED = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
_SCHEMES = ("purelib", "platlib", "scripts", "headers", "data")
_new_tuple = tuple.__new__


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


class WheelFile(NamedTuple):
    """One regular file of an unpacked wheel.

    A NamedTuple rather than a frozen dataclass: a warm sync loads one per installed file
    (thousands), and tuples are built several times faster.
    """

    path: str  # wheel-relative, POSIX
    hash: str  # RECORD form, sha256=...
    size: int
    executable: bool
    python_shebang: bool  # a .data/scripts file starting with #!python


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackedWheel:
    """A wheel unpacked in the cache: its files under ``files_dir`` and what they are."""

    filename: str
    files_dir: Path
    name: str  # as the dist-info directory spells it
    project_name: str  # as METADATA spells it ("gui-app"): names the headers directory
    version: str
    dist_info: str
    data_dir: str | None
    root_is_purelib: bool
    files: tuple[WheelFile, ...]
    entry_points: tuple[EntryPoint, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledDist:
    """What installing one wheel produced."""

    dist_info: str
    name: str
    version: str
    files: int  # RECORD rows written


# -- unpacking ---------------------------------------------------------------------------


def _dist_info_dir(members: Sequence[str], wheel: str, expected: str) -> tuple[str, str, str]:
    tops = {m.split("/", 1)[0] for m in members if "/" in m}
    infos = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(infos) != 1:
        found = ", ".join(infos) or "none"
        raise InstallError(
            f"{wheel}: a wheel has exactly one .dist-info directory, found {found}; "
            "the wheel is broken"
        )
    dist_info = infos[0]
    name, sep, version = dist_info[: -len(".dist-info")].rpartition("-")
    if not sep or not name or not version:
        raise InstallError(f"{wheel}: .dist-info directory {dist_info!r} is not NAME-VERSION")
    if normalize_name(name) != expected:
        raise InstallError(
            f"{wheel}: contains {dist_info!r}, not the locked project {expected!r}; the "
            "artifact does not match the lock"
        )
    return dist_info, name, version


def _parse_wheel_metadata(text: str, wheel: str) -> bool:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    version = fields.get("wheel-version", "")
    if version.split(".")[0] != "1":
        raise InstallError(
            f"{wheel}: Wheel-Version {version!r} is not supported (only 1.x); "
            "this wheel needs a newer installer"
        )
    return fields.get("root-is-purelib", "").lower() == "true"


def _metadata_name(read: Callable[[str], bytes], member: str) -> str | None:
    try:
        head = read(member)[:4096].decode("utf-8", "replace")
    except KeyError:
        return None
    for line in head.splitlines():
        if not line.strip():
            break  # end of the headers
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "name":
            name = value.strip()
            # It names a directory: the same rules as any member path component.
            if name and "/" not in name and "\\" not in name and name not in (".", ".."):
                return name
            return None
    return None


def _symlink_target_is_safe(member: str, target: str) -> bool:
    if not target or target.startswith("/") or "\\" in target or re.match(r"^[A-Za-z]:", target):
        return False
    depth = len(member.split("/")) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header, 30 bytes
# Members above this are streamed (hashed and written a block at a time, in one pass):
# a multi-GB shared library never sits in memory whole.
_IN_MEMORY_LIMIT = 16 << 20
_BLOCK = 4 << 20
_MAX_LINK_TEXT = 4096


def _member_error(filename: str, info: zipfile.ZipInfo, why: str) -> InstallError:
    return InstallError(
        f"{filename}: member {info.filename!r} {why}; the wheel is broken or malicious"
    )


def _member_span(view: mmap.mmap, info: zipfile.ZipInfo, filename: str) -> tuple[int, int]:
    """Where the member's stored (compressed) bytes are in the mapped archive."""
    offset = info.header_offset
    try:
        magic, _ver, flags, _method, _t, _d, _crc, _cs, _us, name_len, extra_len = (
            _LOCAL_HEADER.unpack_from(view, offset)
        )
    except struct.error:
        magic, flags, name_len, extra_len = b"", 0, 0, 0
    if magic != b"PK\x03\x04" or flags & 0x1:
        raise _member_error(filename, info, "is damaged or encrypted")
    start = int(offset + _LOCAL_HEADER.size + name_len + extra_len)
    if start + info.compress_size > len(view):
        raise _member_error(filename, info, "runs past the end of the archive")
    if info.compress_type == 0 and info.compress_size != info.file_size:
        raise _member_error(filename, info, "is stored with two different sizes")
    return start, info.compress_size


@functools.cache
def deflate_codec() -> Any:
    """The zlib API that inflates and CRCs wheel members: zlib-ng's when it is installed
    (a dependency: the same functions and semantics, CRC-32 4x and inflate 1.7x faster
    than the standard library's zlib 1.2 here, measured on 200 MiB; both release the GIL),
    else the standard library's.  Imported when first needed, not with this module (the
    warm sync never unpacks)."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib
    return zlib_ng


def inflate_errors() -> tuple[type[Exception], ...]:
    """What a damaged deflate stream raises, whichever `deflate_codec` is used (zlib-ng's
    error is not the standard library's)."""
    return (zlib.error, deflate_codec().error)


def _inflate(data: bytes | memoryview, inflater: Any, room: int) -> Iterator[bytes]:
    """``data`` fed to ``inflater``, output in pieces of at most _BLOCK, never more than
    ``room`` bytes in all (one more, and the caller sees it is too many)."""
    while True:
        want = min(_BLOCK, room + 1)
        piece = inflater.decompress(data, want)
        yield piece
        room -= len(piece)
        data = inflater.unconsumed_tail
        # A full piece may leave output pending even when all input was taken: ask again.
        if inflater.eof or room < 0 or (not data and len(piece) < want):
            return


class _Checked:
    """Counts and CRCs the pieces of one member against what its header declares: a
    member that would inflate past its declared size (a "zip bomb" behind a small claim)
    is refused at the first piece too many, so memory stays bounded; a bad CRC-32 (a lock
    may pin a corrupt archive, hashed as it was served) is refused at the end."""

    def __init__(self, info: zipfile.ZipInfo, filename: str) -> None:
        self.info = info
        self.filename = filename
        self.size = 0
        self.crc = 0
        self._crc32 = deflate_codec().crc32

    def add(self, piece: bytes | memoryview) -> None:
        self.size += len(piece)
        if self.size > self.info.file_size:
            raise _member_error(
                self.filename,
                self.info,
                f"inflates past the size its header declares ({self.info.file_size} bytes)",
            )
        self.crc = self._crc32(piece, self.crc)

    def finish(self) -> None:
        if self.size != self.info.file_size:
            raise _member_error(
                self.filename,
                self.info,
                f"holds {self.size} bytes, its header says {self.info.file_size}",
            )
        if self.crc != self.info.CRC:
            raise _member_error(self.filename, self.info, "fails its CRC-32 check (corrupt bytes)")


def _member_bytes(
    zf: zipfile.ZipFile, view: mmap.mmap, info: zipfile.ZipInfo, filename: str
) -> bytes:
    """The content of one (small) member, read straight from the mapped archive; sizes
    and CRC checked (`_Checked`).

    Much cheaper per member than ``ZipFile.open`` (thousands of small files per wheel).
    """
    import zipfile  # imported already by `unpack_wheel`, the only caller

    check = _Checked(info, filename)
    try:
        if info.compress_type == 0:
            start, length = _member_span(view, info, filename)
            data = view[start : start + length]
            check.add(data)
        elif info.compress_type == 8:
            start, length = _member_span(view, info, filename)
            inflater = deflate_codec().decompressobj(-15)
            pieces = []
            for piece in _inflate(view[start : start + length], inflater, info.file_size):
                check.add(piece)
                pieces.append(piece)
            if not inflater.eof:
                raise zlib.error("the compressed data ends too early")
            data = b"".join(pieces)
        else:
            # Unusual compression: zipfile decodes it, a block at a time (it stops at the
            # declared size and checks the CRC itself).
            pieces = []
            with zf.open(info) as fh:
                while piece := fh.read(_BLOCK):
                    check.add(piece)
                    pieces.append(piece)
            data = b"".join(pieces)
    except (EOFError, OSError, zipfile.BadZipFile) as exc:
        raise _member_error(filename, info, f"is damaged ({exc})") from None
    except inflate_errors() as exc:
        raise _member_error(filename, info, f"is damaged ({exc})") from None
    check.finish()
    return data


def _stream_member(
    view: mmap.mmap, source_fd: int, info: zipfile.ZipInfo, filename: str, out: int
) -> tuple[bytes, bytes]:
    """Write one large (stored or deflated) member to the descriptor ``out``, a block at a
    time; return its sha256 digest and its first bytes.  Sizes and CRC checked as for
    `_member_bytes`.

    A stored member is hashed where it is mapped (no copy) and copied by the kernel
    (``copy_file_range``: no pass through Python, a reflink on filesystems that share
    blocks); a deflated one is inflated block by block.
    """
    start, length = _member_span(view, info, filename)
    hasher = hashlib.sha256()
    check = _Checked(info, filename)
    head = b""
    with memoryview(view) as mapped:
        if info.compress_type == 0:
            for at in range(start, start + length, _BLOCK):
                # Each slice released at once: the archive's mapping is closed after.
                with mapped[at : min(at + _BLOCK, start + length)] as block:
                    check.add(block)
                    hasher.update(block)
                    head = head or bytes(block[:8])
            if _copy_range(source_fd, start, length, out) != length:
                raise _member_error(filename, info, "could not be copied whole")
        else:
            inflater = deflate_codec().decompressobj(-15)
            try:
                for at in range(start, start + length, _BLOCK):
                    with mapped[at : min(at + _BLOCK, start + length)] as block:
                        for piece in _inflate(block, inflater, info.file_size - check.size):
                            check.add(piece)
                            hasher.update(piece)
                            _write_all(out, piece)
                            head = head or piece[:8]
                    if inflater.eof:
                        break
                if not inflater.eof:
                    raise zlib.error("the compressed data ends too early")
            except inflate_errors() as exc:
                raise _member_error(filename, info, f"is damaged ({exc})") from None
    check.finish()
    return hasher.digest(), head


def _copy_range(source_fd: int, start: int, length: int, out: int) -> int:
    """Copy ``length`` bytes at ``start`` of ``source_fd`` to ``out``; return how many."""
    copied = 0
    copy_file_range = getattr(os, "copy_file_range", None)
    while copy_file_range is not None and copied < length:
        try:
            n = copy_file_range(source_fd, out, min(length - copied, 1 << 30), start + copied)
        except OSError:
            break  # not supported between these files: copy in Python below
        if n == 0:
            break
        copied += n
    while copied < length:
        block = os.pread(source_fd, min(_BLOCK, length - copied), start + copied)
        if not block:
            break
        copied += _write_all(out, block)
    return copied


def _write_all(fd: int, data: bytes | memoryview) -> int:
    written = 0
    with memoryview(data) as remaining:
        while written < len(remaining):
            written += os.write(fd, remaining[written:])
    return written


def _extract_member(
    zf: zipfile.ZipFile,
    view: mmap.mmap,
    source_fd: int,
    info: zipfile.ZipInfo,
    path: str,
    files_dir: str,
    filename: str,
    scripts_prefix: str,
) -> WheelFile:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode) and info.file_size > _MAX_LINK_TEXT:
        raise _member_error(filename, info, "is a symlink with a target too long")
    stream = (
        info.file_size > _IN_MEMORY_LIMIT
        and info.compress_type in (0, 8)
        and not stat.S_ISLNK(mode)
    )
    data = b"" if stream else _member_bytes(zf, view, info, filename)
    if stat.S_ISLNK(mode):
        # Installed as a file holding the link text, as pip does, but a link that points
        # out of the wheel marks a hostile archive.
        target = data.decode("utf-8", "replace")
        if not _symlink_target_is_safe(path, target):
            raise UnsafePathError(
                f"{filename}: member {path!r} is a symlink to {target!r}, outside the "
                "wheel; refusing to install this wheel (it is broken or malicious)"
            )
    is_script = path.startswith(scripts_prefix)
    executable = bool(mode & 0o111) or is_script
    fd = os.open(
        os.path.join(files_dir, path),
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
        0o555 if executable else 0o444,
    )
    try:
        if stream:
            digest, data = _stream_member(view, source_fd, info, filename, fd)
        else:
            _write_all(fd, data)
            digest = hashlib.sha256(data).digest()
    finally:
        os.close(fd)
    return WheelFile(
        path=path,
        hash=record_hash_of_digest(digest),
        size=info.file_size,
        executable=executable,
        python_shebang=is_script and data.startswith(b"#!python"),  # (its head if streamed)
    )


def unpack_wheel(archive: Path, work: Path, *, filename: str, project: str) -> UnpackedWheel:
    """Unpack the (already hash-checked) wheel ``archive`` into the empty dir ``work``.

    Writes ``work/files/...`` (read-only files: they are hardlinked into environments)
    and ``work/manifest.json``.  ``project`` is the locked, normalized project name.
    """
    import zipfile  # not needed to install a wheel that is already unpacked

    files_dir = work / FILES
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InstallError(f"{filename}: not a readable zip archive: {exc}") from None
    with zf:
        layout = wheel_layout(zf.infolist(), filename=filename, project=project)
        described = _described(layout, zf.read, filename)
        scripts_prefix = f"{layout.data_dir}/scripts/"
        for parent in sorted({os.path.dirname(p) for p in layout.names}):
            os.makedirs(os.path.join(files_dir, parent), exist_ok=True)
        with open(archive, "rb") as fh:
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

            def extract(item: tuple[str, zipfile.ZipInfo]) -> WheelFile:
                path, info = item
                return _extract_member(
                    zf, view, fh.fileno(), info, path, str(files_dir), filename, scripts_prefix
                )

            try:
                files = [extract(item) for item in layout.members]
            finally:
                view.close()
    return finish_unpacked(work, layout, described, files, filename=filename)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class WheelLayout:
    """A wheel's members as its central directory lists them, checked: safe paths, no
    duplicates, no file that is also a directory, one .dist-info of the locked project."""

    members: list[tuple[str, zipfile.ZipInfo]]  # (normalized path, its entry); no dirs
    names: list[str]
    dist_info: str
    name: str
    version: str
    data_dir: str  # <name>-<version>.data, whether the wheel has one or not


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class _Described:
    """What a wheel's WHEEL, METADATA and entry_points.txt say of it (`_described`)."""

    root_is_purelib: bool
    project_name: str
    entry_points: list[EntryPoint]


def wheel_layout(infos: Sequence[zipfile.ZipInfo], *, filename: str, project: str) -> WheelLayout:
    """Check the central directory's ``infos`` of the wheel ``filename`` (see `WheelLayout`);
    InstallError (UnsafePathError for a path leaving the wheel) when they fail."""
    seen: set[str] = set()
    members: list[tuple[str, zipfile.ZipInfo]] = []
    for info in infos:
        if info.filename.endswith("/"):
            continue
        path = check_member_path(info.filename, wheel=filename)
        if path in seen:
            raise InstallError(f"{filename}: member {path!r} appears twice; the wheel is broken")
        seen.add(path)
        members.append((path, info))
    names = [p for p, _ in members]
    parents = {p[:i] for p in names for i, c in enumerate(p) if c == "/"}
    clash = sorted(parents & seen)
    if clash:
        raise InstallError(
            f"{filename}: {clash[0]!r} is both a file and a directory in the wheel; "
            "the wheel is broken"
        )
    dist_info, name, version = _dist_info_dir(names, filename, project)
    for path, info in members:
        # Read whole (`_described`): refused by the size they declare, which bounds what
        # inflating them can produce.
        in_dist_info = path.startswith(f"{dist_info}/") and path.count("/") == 1
        if in_dist_info and info.file_size > MAX_METADATA:
            raise InstallError(
                f"{filename}: {path!r} is {info.file_size} bytes, more than the "
                f"{size_text(MAX_METADATA)} any real one is; the wheel is broken or malicious"
            )
    return WheelLayout(
        members=members,
        names=names,
        dist_info=dist_info,
        name=name,
        version=version,
        data_dir=f"{dist_info[: -len('.dist-info')]}.data",
    )


def _described(layout: WheelLayout, read: Callable[[str], bytes], filename: str) -> _Described:
    """What the wheel's WHEEL, RECORD, METADATA and entry_points.txt say, checked;
    ``read(member)`` gives a member's bytes (KeyError when there is none)."""
    dist_info = layout.dist_info
    try:
        wheel_text = read(f"{dist_info}/WHEEL").decode("utf-8")
        record_text = read(f"{dist_info}/RECORD").decode("utf-8")
    except KeyError as exc:
        raise InstallError(f"{filename}: {exc.args[0]} is missing; the wheel is broken") from None
    except UnicodeDecodeError:
        raise InstallError(f"{filename}: WHEEL or RECORD is not UTF-8") from None
    root_is_purelib = _parse_wheel_metadata(wheel_text, filename)
    project_name = _metadata_name(read, f"{dist_info}/METADATA") or layout.name
    for row in parse_record(record_text):
        check_member_path(row.path, wheel=filename)
    entry_points: list[EntryPoint] = []
    if f"{dist_info}/entry_points.txt" in layout.names:
        text = read(f"{dist_info}/entry_points.txt").decode("utf-8", "replace")
        entry_points = parse_entry_points(text, wheel=filename)
    return _Described(
        root_is_purelib=root_is_purelib, project_name=project_name, entry_points=entry_points
    )


def finish_unpacked(
    work: Path,
    layout: WheelLayout,
    described: _Described,
    files: Sequence[WheelFile],
    *,
    filename: str,
) -> UnpackedWheel:
    """The wheel unpacked in ``work`` (its ``files``), its manifest written beside them."""
    data_dir = layout.data_dir
    wheel = UnpackedWheel(
        filename=filename,
        files_dir=work / FILES,
        name=layout.name,
        project_name=described.project_name,
        version=layout.version,
        dist_info=layout.dist_info,
        data_dir=data_dir if any(p.startswith(f"{data_dir}/") for p in layout.names) else None,
        root_is_purelib=described.root_is_purelib,
        files=tuple(files),
        entry_points=tuple(described.entry_points),
    )
    _write_manifest(work / MANIFEST, wheel)
    return wheel


def _write_manifest(path: Path, wheel: UnpackedWheel) -> None:
    data = {
        "format": _MANIFEST_FORMAT,
        "filename": wheel.filename,
        "name": wheel.name,
        "project_name": wheel.project_name,
        "version": wheel.version,
        "dist_info": wheel.dist_info,
        "data_dir": wheel.data_dir,
        "root_is_purelib": wheel.root_is_purelib,
        "files": [
            [f.path, f.hash, f.size, int(f.executable), int(f.python_shebang)] for f in wheel.files
        ],
        "entry_points": [list(ep) for ep in wheel.entry_points],
    }
    path.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")


def load_unpacked(directory: Path) -> UnpackedWheel | None:
    """The wheel unpacked in ``directory``, or None when the entry is absent or unusable."""
    try:
        data = json.loads(read_capped(directory / MANIFEST, MAX_METADATA, "cache manifest"))
        if data.get("format") != _MANIFEST_FORMAT:
            return None
        rows = data["files"]
        return UnpackedWheel(
            filename=data["filename"],
            files_dir=directory / FILES,
            name=data["name"],
            project_name=data["project_name"],
            version=data["version"],
            dist_info=data["dist_info"],
            data_dir=data["data_dir"],
            root_is_purelib=bool(data["root_is_purelib"]),
            # ``tuple.__new__`` as `WheelFile._make` does, without a Python call per file
            # (a warm sync loads thousands); the flags are written as 0 or 1.  The manifest
            # is sealed with the tree: what `_write_manifest` wrote.
            files=tuple(
                [_new_tuple(WheelFile, (p, h, s, x == 1, sb == 1)) for p, h, s, x, sb in rows]
            ),
            entry_points=tuple((g, n, r) for g, n, r in data["entry_points"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- installing ----------------------------------------------------------------------------


def wheel_destinations(wheel: UnpackedWheel, layout: EnvLayout) -> list[tuple[WheelFile, str]]:
    """Where each file of ``wheel`` goes, prefix-relative (the wheel spec's schemes),
    leaving out the files the installer writes itself (RECORD, INSTALLER...)."""
    sp_rel = layout.site_packages_rel
    scheme_dirs = {
        "purelib": sp_rel,
        "platlib": sp_rel,
        "scripts": layout.scripts_rel,
        "headers": f"{layout.include_rel}/{wheel.project_name}",
        "data": "",
    }
    data_prefix = f"{wheel.data_dir}/" if wheel.data_dir else None
    sp_prefix = sp_rel + "/"

    def destination(path: str) -> str:
        if data_prefix is not None and path.startswith(data_prefix):
            scheme, _, rest = path[len(data_prefix) :].partition("/")
            if scheme not in scheme_dirs or not rest:
                raise InstallError(
                    f"{wheel.filename}: {path!r} is in no known .data scheme "
                    f"({', '.join(_SCHEMES)}); the wheel is broken"
                )
            base = scheme_dirs[scheme]
            return f"{base}/{rest}" if base else rest
        return sp_prefix + path

    written = _installer_written(wheel)
    return [(f, destination(f.path)) for f in wheel.files if f.path not in written]


def _installer_written(wheel: UnpackedWheel) -> frozenset[str]:
    """The wheel paths of the files the installer writes itself: a wheel's own are left out."""
    return frozenset(f"{wheel.dist_info}/{name}" for name in _GENERATED)


def wheel_launchers(wheel: UnpackedWheel, layout: EnvLayout) -> list[tuple[str, bytes]]:
    """``(prefix-relative path, content)`` of the entry-point launchers ``wheel`` gets."""
    return [
        (f"{layout.scripts_rel}/{script}", launcher_script(layout.prefix_python, reference))
        for _group, script, reference in wheel.entry_points
    ]


def record_row_path(dest: str, site_packages_rel: str) -> str:
    """The RECORD path of the prefix-relative ``dest``: relative to site-packages."""
    head = site_packages_rel + "/"
    if dest.startswith(head):
        return dest[len(head) :]
    return "../" * len(site_packages_rel.split("/")) + dest


@dataclass(frozen=True, slots=True, kw_only=True)
class WheelInstall:
    """What installing an unpacked wheel puts where, computed without touching the
    environment: `plan_wheel_install`, applied by `install_wheel` (or compared with a
    tree that may already hold it: `lockenv.sync.reuse`).

    ``entries``: prefix-relative path -> a cache file to link (``str``) or the bytes of a
    file the installer writes (``bytes``), with its executable bit; in installation order
    (a later entry with the same path replaces an earlier one).
    """

    dist: InstalledDist
    dirs: tuple[str, ...]  # parent directories, sorted (parents first)
    entries: tuple[tuple[str, str | bytes, bool], ...]


def plan_wheel_install(
    wheel: UnpackedWheel,
    layout: EnvLayout,
    *,
    requested: bool,
    direct_url: Mapping[str, object] | None = None,
) -> WheelInstall:
    """What `install_wheel` will create for ``wheel`` in ``layout`` (see there)."""
    launchers = wheel_launchers(wheel, layout)
    sp_rel = layout.site_packages_rel

    def record_path(dest: str) -> str:
        return record_row_path(dest, sp_rel)

    entries: list[tuple[str, str | bytes, bool]]
    rows: list[tuple[str, str, int | None]]
    if wheel.data_dir is None and not any(f.python_shebang for f in wheel.files):
        # Every file goes to site-packages as it lies in the wheel, where its RECORD row
        # names it as the wheel does, and none is a script to rewrite (those are in the
        # .data directory): a few passes in C over the files (a warm sync plans thousands).
        head = sp_rel + "/"
        src_head = f"{wheel.files_dir}/"
        written = _installer_written(wheel)
        kept = [f for f in wheel.files if f.path not in written]
        entries = [(head + f.path, src_head + f.path, f.executable) for f in kept]
        rows = [(f.path, f.hash, f.size) for f in kept]
        parents = {dest.rpartition("/")[0] for dest, _src, _x in entries}
    else:
        entries, rows, parents = _plan_files(wheel, layout)
    parents.update(dest.rpartition("/")[0] for dest, _content in launchers)
    parents.add(f"{sp_rel}/{wheel.dist_info}")
    parents.discard("")

    for dest, content in launchers:
        entries.append((dest, content, True))
        rows.append((record_path(dest), record_hash(content), len(content)))

    generated: dict[str, bytes] = {"INSTALLER": INSTALLER_NAME}
    if requested:
        generated["REQUESTED"] = b""
    if direct_url is not None:
        generated["direct_url.json"] = json.dumps(direct_url, sort_keys=True).encode("utf-8")
    dist_info_dir = f"{sp_rel}/{wheel.dist_info}"
    for name, content in generated.items():
        entries.append((f"{dist_info_dir}/{name}", content, False))
        rows.append((f"{wheel.dist_info}/{name}", record_hash(content), len(content)))
    rows.append((f"{wheel.dist_info}/RECORD", "", None))
    entries.append((f"{dist_info_dir}/RECORD", render_record_rows(rows), False))
    dist = InstalledDist(
        dist_info=wheel.dist_info, name=wheel.name, version=wheel.version, files=len(rows)
    )
    return WheelInstall(dist=dist, dirs=tuple(sorted(parents)), entries=tuple(entries))


# Part of every `plan_key`: bump it when `plan_wheel_install` makes something else of the
# same inputs (a tree's record takes a package with an unchanged key as placed).
_PLAN_FORMAT = 1


def plan_key(
    wheel: UnpackedWheel,
    layout: EnvLayout,
    *,
    requested: bool,
    direct_url: Mapping[str, object] | None,
    entry: bytes,
) -> str:
    """A digest of all that `plan_wheel_install` of ``wheel`` in ``layout`` depends on, and
    of the cache files its plan links: ``entry``, the identity of ``wheel``'s cache entry
    as this sync's seal check saw it (`lockenv.sync.prepare.Prepared.entries`: its
    files' inodes in the seal's order, and the seal's own).  Two plans with one key put
    the same paths in a tree, write the same bytes, and link the same inodes
    (`lockenv.sync.reuse`).  The manifest the plan is made from is a file of the entry,
    checked by the same seal: the entry's identity and lockenv's version stand for it."""
    h = hashlib.blake2b(digest_size=16)
    for part in (
        f"{_PLAN_FORMAT}",
        __version__,
        str(wheel.files_dir),
        wheel.filename,
        layout.site_packages_rel,
        layout.scripts_rel,
        layout.include_rel,
        layout.prefix_python,
        "requested" if requested else "",
        json.dumps(direct_url, sort_keys=True),
    ):
        data = part.encode("utf-8", "surrogateescape")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(entry)
    return h.hexdigest()


def _plan_files(
    wheel: UnpackedWheel, layout: EnvLayout
) -> tuple[list[tuple[str, str | bytes, bool]], list[tuple[str, str, int | None]], set[str]]:
    """The entries, RECORD rows and parent directories of ``wheel``'s own files (any
    wheel: `plan_wheel_install` has a shorter way for those without a .data directory)."""
    placed = wheel_destinations(wheel, layout)
    sp_rel = layout.site_packages_rel
    python = layout.prefix_python
    parents = {dest.rpartition("/")[0] for _f, dest in placed}
    entries: list[tuple[str, str | bytes, bool]] = []
    rows: list[tuple[str, str, int | None]] = []
    files_dir = str(wheel.files_dir)
    head = sp_rel + "/"
    cut = len(head)
    for f, dest in placed:
        src = f"{files_dir}/{f.path}"
        if f.python_shebang:
            # Held in the plan (`lockenv.sync.reuse` compares it): a script, never larger
            # than the metadata cap.
            try:
                script = read_capped(src, MAX_METADATA, "#!python script")
            except TooLargeError as exc:
                raise InstallError(f"{wheel.filename}: {f.path!r}: {exc}") from None
            rewritten = rewrite_python_shebang(script, python)
            assert rewritten is not None
            entries.append((dest, rewritten, True))
            rows.append((record_row_path(dest, sp_rel), record_hash(rewritten), len(rewritten)))
            continue
        entries.append((dest, src, f.executable))
        # Inline for the common case (most files are in site-packages): once per file.
        row_path = dest[cut:] if dest.startswith(head) else record_row_path(dest, sp_rel)
        rows.append((row_path, f.hash, f.size))
    return entries, rows, parents


def install_wheel(
    wheel: UnpackedWheel,
    layout: EnvLayout,
    guard: PrefixGuard,
    *,
    requested: bool,
    direct_url: Mapping[str, object] | None = None,
) -> InstalledDist:
    """Install the unpacked ``wheel`` into ``layout.root`` (for ``layout.prefix``).

    Every file is created through ``guard`` (rooted at ``layout.root``), which keeps it
    inside the tree whatever symlinks earlier packages placed, and refuses to replace
    the interpreter or lockenv's own records.  ``direct_url`` is the PEP 610
    ``direct_url.json`` of a package that came from no index (an archive URL, a
    directory, a git commit).  Returns the RECORD written.
    """
    plan = plan_wheel_install(wheel, layout, requested=requested, direct_url=direct_url)
    apply_wheel_install(plan, guard, what=wheel.filename)
    return plan.dist


def apply_wheel_install(
    plan: WheelInstall,
    guard: PrefixGuard,
    *,
    what: str,
    skip: frozenset[str] = frozenset(),
) -> None:
    """`apply_wheel_installs` of one wheel's plan (``what`` names the wheel)."""
    apply_wheel_installs([(plan, what)], guard, skip=skip)


def apply_wheel_installs(
    plans: Sequence[tuple[WheelInstall, str]],
    guard: PrefixGuard,
    *,
    skip: frozenset[str] = frozenset(),
) -> None:
    """Create the directories and entries of ``plans`` (each with the name of its wheel,
    for messages) through ``guard``, in order, except the entries whose paths are in
    ``skip`` (already in place).  Of entries with one path, in one plan or in several,
    only the last is made (it would replace the others).

    Every plan's directories first, together (`lockenv.sync.guard.PrefixGuard.makedirs_all`:
    the new ones by a few threads, a subtree each); then the cache files of all the plans
    together, so that a few threads link them whichever wheel they come from
    (`lockenv.sync.guard.PrefixGuard.place_files`; most wheels are too small to be worth
    threads of their own); then the files the installer writes, together too
    (`lockenv.sync.guard.PrefixGuard.write_files`).
    """
    guard.makedirs_all([(parent, what) for plan, what in plans for parent in plan.dirs])
    # From the last entry back, so that the first seen of a path is the one made: one
    # set lookup per entry (a sync's whole environment, when most of it is skipped).
    seen: set[str] = set()
    files: list[tuple[str, str, bool]] = []
    owners: list[str] = []
    written: list[list[tuple[str, bytes, bool]]] = []
    for plan, what in reversed(plans):
        mine: list[tuple[str, bytes, bool]] = []
        for dest, source, executable in reversed(plan.entries):
            if dest in seen:
                continue
            seen.add(dest)
            if dest in skip:
                continue
            if isinstance(source, str):
                files.append((source, dest, executable))
                owners.append(what)
            else:
                mine.append((dest, source, executable))
        mine.reverse()
        written.append(mine)
    files.reverse()
    owners.reverse()
    written.reverse()
    guard.place_files(files, what=plans[0][1] if plans else "", owners=owners)
    guard.write_files(
        [
            (dest, content, executable, what)
            for (_plan, what), mine in zip(plans, written, strict=True)
            for dest, content, executable in mine
        ]
    )
