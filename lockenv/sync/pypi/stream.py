"""A wheel unpacked while it downloads: fed the body as it arrives, it writes each member
from its local header on, so the archive is read once, never re-read from disk, and need
not be written at all (the cache keeping trees only).

A zip can be read this way because each member's local header gives its name, method,
CRC-32 and sizes before its bytes.  Nothing of it is trusted until the download is done:
the caller publishes the tree only once the archive's sha256 and size matched the lock,
then `WheelStream.finish` has checked that the central directory at the end (what every
other zip reader, `lockenv.sync.pypi.wheel` included, goes by) lists exactly the members
streamed, at the offsets they were seen, with the same names, methods, CRCs and sizes,
and has applied the same checks as `lockenv.sync.pypi.wheel.unpack_wheel` (paths, one
.dist-info of the locked project, WHEEL, RECORD, symlinks) to that central directory.

Whatever it is unsure of — a member written with a data descriptor (sizes after the
data), a compression other than stored/deflate, encryption, zip64 sizes without their
extra field, a member that fails its CRC or sizes, an unsafe or repeated path, bytes
that are no local header, a central directory that disagrees or is too large — it
*declines*: it stops writing at once and the caller unpacks the verified archive the
usual way (which then reports the wheel's problem in its own words).  So streaming only
ever makes a sync faster, never more permissive.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockenv.atomic import umask
from lockenv.cache import Cache
from lockenv.errors import InstallError, LockenvError, UnsafePathError
from lockenv.sync.pypi.record import check_member_path, record_hash_of_digest
from lockenv.sync.pypi.wheel import (
    _MAX_LINK_TEXT,
    FILES,
    UnpackedWheel,
    WheelFile,
    _Checked,
    _described,
    _inflate,
    _symlink_target_is_safe,
    _write_all,
    deflate_codec,
    finish_unpacked,
    inflate_errors,
    wheel_layout,
)

if TYPE_CHECKING:
    import zipfile

__all__ = ["WheelStream"]

_LOCAL = b"PK\x03\x04"
_TAIL_MAGICS = (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06")  # central directory, end records
_HEADER = struct.Struct("<4s5H3I2H")  # local file header, 30 bytes
_ZIP64_SIZES = struct.Struct("<QQ")
_MAX_TAIL = 64 << 20  # central directory and end records held in memory, at most


class _Decline(Exception):
    """The stream cannot unpack this archive safely: leave it to the usual path."""


class _Member:
    """One member being written: its header's claims and the state of its checks."""

    __slots__ = ("check", "digest", "fd", "hasher", "head", "inflater", "info", "remaining")

    def __init__(self, info: zipfile.ZipInfo, fd: int | None, filename: str) -> None:
        self.info = info
        self.fd = fd  # None: a directory entry, nothing written
        self.remaining = info.compress_size  # stored bytes still to come
        self.check = _Checked(info, filename)
        self.hasher = hashlib.sha256()
        deflated = info.compress_type == 8
        self.inflater: Any = deflate_codec().decompressobj(-15) if deflated else None
        self.head = b""
        self.digest = b""

    def take(self, data: memoryview) -> None:
        if self.fd is None:
            return
        if self.inflater is None:
            self._write(data)
            return
        if self.inflater.eof:
            return  # bytes after the end of the deflate stream: ignored, as zipfile does
        for piece in _inflate(data, self.inflater, self.info.file_size - self.check.size):
            self._write(piece)

    def _write(self, piece: bytes | memoryview) -> None:
        assert self.fd is not None  # directory entries write nothing (`take`)
        self.check.add(piece)  # InstallError past the declared size
        self.hasher.update(piece)
        _write_all(self.fd, piece)
        if len(self.head) < 8:
            self.head += bytes(piece[: 8 - len(self.head)])

    def end(self) -> None:
        if self.fd is None:
            return  # a directory entry: its bytes (if any) are ignored, as by zipfile users
        if self.inflater is not None and not self.inflater.eof:
            raise _Decline(f"member {self.info.filename!r}: the compressed data ends too early")
        self.check.finish()  # sizes and CRC-32
        self.digest = self.hasher.digest()


class WheelStream:
    """A `lockenv.http.Consumer` unpacking the wheel ``filename`` (of the locked project
    ``project``) into ``work``, a work directory of ``cache`` that it makes and `discard`
    removes.  Feed it the archive, then call `finish`."""

    def __init__(self, cache: Cache, *, filename: str, project: str) -> None:
        self._cache = cache
        self.work = cache.make_temp_dir("unpack")
        self.filename = filename
        self.project = project
        self.declined: str | None = None  # why it gave up, if it did
        self._files = self.work / FILES
        self._made_dirs: set[str] = set()
        self._position = 0  # offset in the archive of the next byte fed
        self._head = bytearray()  # a local header being gathered
        self._head_at = 0
        self._member: _Member | None = None
        self._streamed: dict[int, _Member] = {}  # by the offset of their local header
        self._paths: set[str] = set()
        self._tail: bytearray | None = None  # the central directory onwards
        self._tail_at = 0

    # -- fed as the body arrives -------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the archive (see `lockenv.http.Consumer`)."""
        if self.declined is not None:
            return
        try:
            self._take(memoryview(chunk))
        except (_Decline, LockenvError, OSError) as exc:
            self._decline(str(exc))
        except inflate_errors() as exc:
            self._decline(str(exc))

    def _take(self, data: memoryview) -> None:
        while data:
            if self._tail is not None:
                if len(self._tail) + len(data) > _MAX_TAIL:
                    raise _Decline("the central directory is larger than 64 MiB")
                self._tail += data
                self._position += len(data)
                return
            member = self._member
            if member is not None:
                n = min(member.remaining, len(data))
                member.take(data[:n])
                member.remaining -= n
                self._position += n
                data = data[n:]
                if not member.remaining:
                    self._end_member(member)
                continue
            data = self._take_header(data)

    def _take_header(self, data: memoryview) -> memoryview:
        """Gather the next local header from ``data``; what of ``data`` is left."""
        head = self._head
        if not head:
            self._head_at = self._position
        fixed = _HEADER.size
        if len(head) < fixed:
            data = self._gather(head, fixed, data)
            if len(head) >= 4 and head[:4] != _LOCAL:
                if bytes(head[:4]) in _TAIL_MAGICS:
                    # The local members are over: keep the rest for `finish`.
                    self._tail, self._tail_at, self._head = head, self._head_at, bytearray()
                    return data
                raise _Decline(f"no local header at offset {self._head_at}")
            if len(head) < fixed:
                return data
        name_len, extra_len = struct.unpack_from("<2H", head, 26)
        data = self._gather(head, fixed + name_len + extra_len, data)
        if len(head) == fixed + name_len + extra_len:
            self._head = bytearray()
            self._start_member(bytes(head))
        return data

    def _gather(self, head: bytearray, want: int, data: memoryview) -> memoryview:
        n = min(want - len(head), len(data))
        head += data[:n]
        self._position += n
        return data[n:]

    def _start_member(self, header: bytes) -> None:
        import zipfile

        _magic, _version, flags, method, _time, _date, crc, csize, usize, name_len, _extra = (
            _HEADER.unpack_from(header)
        )
        if flags & 0x1:
            raise _Decline("an encrypted member")
        if flags & 0x8:
            raise _Decline("a member with a data descriptor (sizes after its data)")
        if method not in (0, 8):
            raise _Decline(f"a member compressed with method {method}")
        raw_name = header[_HEADER.size : _HEADER.size + name_len]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
            usize, csize = _zip64_sizes(header[_HEADER.size + name_len :], name)
        info = zipfile.ZipInfo(name)
        info.compress_type, info.CRC = method, crc
        info.compress_size, info.file_size = csize, usize
        if method == 0 and csize != usize:
            raise _Decline(f"member {name!r} is stored with two different sizes")
        fd = None
        if not name.endswith("/"):
            fd = self._open(name)
        member = _Member(info, fd, self.filename)
        self._member = member
        self._streamed[self._head_at] = member
        if not member.remaining:
            self._end_member(member)

    def _open(self, name: str) -> int:
        path = check_member_path(name, wheel=self.filename)
        if path in self._paths:
            raise _Decline(f"member {path!r} appears twice")
        self._paths.add(path)
        parent = os.path.dirname(path)
        if parent not in self._made_dirs:
            os.makedirs(os.path.join(self._files, parent), exist_ok=True)
            self._made_dirs.add(parent)
        # Read-only from the start (they are hardlinked into environments); executable
        # bits come from the central directory, at the end.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        return os.open(os.path.join(self._files, path), flags, 0o444)

    def _end_member(self, member: _Member) -> None:
        self._member = None
        try:
            member.end()
        finally:
            if member.fd is not None:
                os.close(member.fd)
                member.fd = None

    def _decline(self, why: str) -> None:
        self.declined = why
        member, self._member = self._member, None
        if member is not None and member.fd is not None:
            os.close(member.fd)
            member.fd = None
        self._tail = None

    def discard(self) -> None:
        """Stop, and remove the work directory (see `lockenv.http.Consumer`)."""
        if self.declined is None:
            self._decline("discarded")
        self._cache.remove_temp_dir(self.work)

    # -- once the archive is verified ------------------------------------------------------

    def finish(self) -> tuple[UnpackedWheel, dict[str, str]] | None:
        """The unpacked wheel and its files' sha256 by path relative to the work directory
        (for its seal), once the whole archive was fed and matched the lock; None when the
        stream declined (`declined` says why; nothing of it may be used).  InstallError or
        UnsafePathError when the central directory shows a broken or hostile wheel."""
        if self.declined is None and (self._member is not None or self._tail is None):
            self._decline("the archive ends before its central directory")
        if self.declined is not None:
            return None
        try:
            infos = self._central_directory()
        except _Decline as exc:
            self._decline(str(exc))
            return None
        layout = wheel_layout(infos, filename=self.filename, project=self.project)
        by_offset = {info.header_offset: info for info in infos}
        scripts_prefix = f"{layout.data_dir}/scripts/"
        files: list[WheelFile] = []
        digests: dict[str, str] = {}
        for path, info in layout.members:
            member = self._streamed[info.header_offset]
            assert by_offset[info.header_offset] is info
            target = os.path.join(self._files, path)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                _check_link(self.filename, path, info, target)
            is_script = path.startswith(scripts_prefix)
            executable = bool(mode & 0o111) or is_script
            if executable:
                os.chmod(target, 0o555 & ~umask())  # as if created so (`_open`)
            files.append(
                WheelFile(
                    path=path,
                    hash=record_hash_of_digest(member.digest),
                    size=info.file_size,
                    executable=executable,
                    python_shebang=is_script and member.head.startswith(b"#!python"),
                )
            )
            digests[f"{FILES}/{path}"] = member.digest.hex()

        def read(name: str) -> bytes:
            path = check_member_path(name, wheel=self.filename)
            if path not in self._paths:
                raise KeyError(f"There is no item named {name!r} in the archive")
            return Path(self._files, path).read_bytes()

        described = _described(layout, read, self.filename)
        wheel = finish_unpacked(self.work, layout, described, files, filename=self.filename)
        return wheel, digests

    def _central_directory(self) -> list[zipfile.ZipInfo]:
        """The central directory's entries, checked to be exactly the members streamed."""
        import zipfile

        assert self._tail is not None
        tail = _Tail(bytes(self._tail), self._tail_at, self._position)
        try:
            with zipfile.ZipFile(tail) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise _Decline(f"the central directory is unreadable: {exc}") from None
        if len(infos) != len(self._streamed):
            raise _Decline(
                f"the central directory lists {len(infos)} members, the archive holds "
                f"{len(self._streamed)}"
            )
        for info in infos:
            member = self._streamed.get(info.header_offset)
            seen = member.info if member is not None else None
            if seen is None or (
                seen.filename,
                seen.compress_type,
                seen.CRC,
                seen.compress_size,
                seen.file_size,
            ) != (info.filename, info.compress_type, info.CRC, info.compress_size, info.file_size):
                raise _Decline(
                    f"the central directory's entry {info.filename!r} does not match the "
                    "member at its offset"
                )
        return infos


def _zip64_sizes(extra: bytes, name: str) -> tuple[int, int]:
    """(uncompressed, compressed) size from a local header's zip64 extra field."""
    while len(extra) >= 4:
        kind, length = struct.unpack_from("<2H", extra)
        if kind == 0x0001 and length >= _ZIP64_SIZES.size:
            usize, csize = _ZIP64_SIZES.unpack_from(extra, 4)
            return int(usize), int(csize)
        extra = extra[4 + length :]
    raise _Decline(f"member {name!r} has zip64 sizes without their extra field")


def _check_link(filename: str, path: str, info: zipfile.ZipInfo, target_file: str) -> None:
    # As `lockenv.sync.pypi.wheel`: a symlink member is installed as a file holding its
    # link text, but one pointing out of the wheel marks a hostile archive.
    if info.file_size > _MAX_LINK_TEXT:
        raise InstallError(
            f"{filename}: member {info.filename!r} is a symlink with a target too long; "
            "the wheel is broken or malicious"
        )
    target = Path(target_file).read_bytes().decode("utf-8", "replace")
    if not _symlink_target_is_safe(path, target):
        raise UnsafePathError(
            f"{filename}: member {path!r} is a symlink to {target!r}, outside the "
            "wheel; refusing to install this wheel (it is broken or malicious)"
        )


class _Tail(io.RawIOBase):
    """An archive of ``size`` bytes of which only ``data`` (from ``start`` on) is known,
    for `zipfile` to read its central directory from; the rest reads as zeros (no
    signature zipfile looks for is made of zeros)."""

    def __init__(self, data: bytes, start: int, size: int) -> None:
        super().__init__()
        self._data, self._start, self._size, self._at = data, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._at, self._size)[whence]
        self._at = max(0, base + offset)
        return self._at

    def tell(self) -> int:
        return self._at

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as view:
            n = max(0, min(len(view), self._size - self._at))
            known = max(self._start, self._at)
            zeros = max(0, min(known, self._at + n) - self._at)
            view[:zeros] = bytes(zeros)
            rest = n - zeros
            if rest:
                offset = known - self._start
                view[zeros:n] = self._data[offset : offset + rest]
        self._at += n
        return n
