"""Prefix placeholders replaced while a file is copied, a chunk at a time.

A conda package marks the files that name the prefix it was built in (``paths.json``'s
``prefix_placeholder`` and ``file_mode``); linking replaces that placeholder by the
environment's prefix.  Such files can be large (a shared library of hundreds of MB with
the prefix in its strings), so the rewrite streams: memory stays within a few chunks,
whatever the file's size, and the result is byte for byte what replacing in the whole
file would give:

- **text**: every placeholder is replaced.  Each chunk keeps its last
  ``len(placeholder) - 1`` bytes back for the next one, so a placeholder split between
  two chunks is found; a longer tail cannot hold a whole placeholder that the chunk did
  not.  A ``#!`` first line the replacement made longer than the kernel reads becomes
  ``#!/usr/bin/env <program>`` (conda does the same); that line is read whole when it is
  at most `SHEBANG_SCAN` bytes (longer ones are not shebangs anything runs).
- **binary**: conda replaces inside C strings: each NUL-terminated string starting at a
  placeholder has every placeholder in it replaced, and keeps its length by NUL padding
  after its terminator, so offsets in the binary do not move.  A string whose terminator
  is not in the chunk is followed further into the file first (reading ahead, then
  seeking back), because a string that never ends (no NUL before the end of the file)
  is left as it is, as conda's pattern leaves it.

Placeholders hold neither NUL nor newline (unpacking refuses them), so neither a C
string's end nor the first line's end can fall inside one.
"""

from __future__ import annotations

import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

__all__ = [
    "CHUNK",
    "SHEBANG_SCAN",
    "PrefixRewrite",
    "Replace",
    "replace_binary_prefix",
    "replace_text_prefix",
]

#: Bytes read at a time.
CHUNK = 1 << 20
#: A first line longer than this (with its newline) is never shortened.
SHEBANG_SCAN = 1 << 16
# Linux reads 127 bytes of a shebang line before kernel 5.1.
_MAX_SHEBANG = 127
_IS_WINDOWS = sys.platform == "win32"


class PrefixRewrite:
    """Replaces ``placeholder`` by ``prefix`` in ``mode`` ("text" or "binary") in the
    files given to `chunks`; `replaced` counts the replacements made so far.

    ValueError when the placeholder is empty or holds a NUL or newline, or, in binary
    mode, when ``prefix`` is longer than ``placeholder`` (it cannot fit in the strings).
    """

    def __init__(
        self,
        placeholder: bytes,
        prefix: bytes,
        mode: str,
        *,
        chunk_size: int = CHUNK,
        shebang_scan: int = SHEBANG_SCAN,
    ) -> None:
        if not placeholder or b"\0" in placeholder or b"\n" in placeholder:
            raise ValueError(f"unusable placeholder {placeholder!r}")
        if mode not in ("text", "binary"):
            raise ValueError(f"unknown placeholder mode {mode!r}")
        if mode == "binary" and len(prefix) > len(placeholder):
            raise ValueError("the prefix is longer than the placeholder")
        self.placeholder = placeholder
        self.prefix = prefix
        self.mode = mode
        self.replaced = 0
        self._chunk = max(chunk_size, 1)
        self._shebang_scan = shebang_scan

    @property
    def changed(self) -> bool:
        """Whether what was streamed so far differs from its source."""
        return self.replaced > 0 and self.prefix != self.placeholder

    def chunks(self, src: BinaryIO) -> Iterator[bytes]:
        """The content of ``src`` (a seekable file, read from its current position) with
        the placeholder replaced, in pieces of about `CHUNK` bytes."""
        pieces = self._binary(src) if self.mode == "binary" else self._text_file(src)
        pending: list[bytes] = []
        size = 0
        for piece in pieces:
            if piece:
                pending.append(piece)
                size += len(piece)
                if size >= self._chunk:
                    yield b"".join(pending)
                    pending, size = [], 0
        if pending:
            yield b"".join(pending)

    # -- text ---------------------------------------------------------------------------

    def _text_file(self, src: BinaryIO) -> Iterator[bytes]:
        start = src.tell()
        head = src.readline(self._shebang_scan + 1)
        if (
            not _IS_WINDOWS
            and len(head) <= self._shebang_scan
            and self.placeholder in head
            and (new := head.replace(self.placeholder, self.prefix)).startswith(b"#!")
        ):
            self.replaced += head.count(self.placeholder)
            yield _shorten_shebang(new)
        else:
            src.seek(start)
        yield from self._text(lambda: src.read(self._chunk))

    def _text(self, read: Callable[[], bytes]) -> Iterator[bytes]:
        replace = Replace(self.placeholder, self.prefix)
        yield from replace(iter(read, b""))
        self.replaced += replace.count

    # -- binary -------------------------------------------------------------------------

    def _binary(self, src: BinaryIO) -> Iterator[bytes]:
        placeholder, prefix = self.placeholder, self.prefix
        keep = len(placeholder) - 1
        padding = len(placeholder) - len(prefix)
        offset = src.tell()  # where buf starts in the file
        buf = b""
        eof = False
        while True:
            found = buf.find(placeholder)
            if found < 0:
                if eof:
                    yield buf
                    return
                cut = max(0, len(buf) - keep)
                yield buf[:cut]
                buf, offset = buf[cut:], offset + cut
                data = src.read(self._chunk)
                eof = not data
                buf += data
                continue
            # A string starts at the placeholder: replace up to its NUL.
            yield buf[:found]
            buf, offset = buf[found:], offset + found
            end = buf.find(b"\0")
            if end >= 0:
                string = buf[:end]
                count = string.count(placeholder)
                self.replaced += count
                yield string.replace(placeholder, prefix)
                yield b"\0" * (1 + count * padding)
                buf, offset = buf[end + 1 :], offset + end + 1
                continue
            nul = _find_nul(src, offset + len(buf), self._chunk)
            src.seek(offset)
            if nul < 0:  # never terminated: left as it is
                while data := src.read(self._chunk):
                    yield data
                return
            before = self.replaced
            yield from self._text(_bounded_reader(src, nul - offset, self._chunk))
            yield b"\0" * (1 + (self.replaced - before) * padding)
            offset = nul + 1
            src.seek(offset)
            buf, eof = b"", False


class Replace:
    """Every ``old`` replaced by ``new`` in a stream of chunks, as ``bytes.replace`` would
    in their concatenation; `count` says how many were replaced once it is consumed.

    Each chunk's last ``len(old) - 1`` bytes wait for the next one, so an ``old`` split
    between two chunks is found; a longer tail cannot hold a whole one the chunk did not.
    """

    def __init__(self, old: bytes, new: bytes) -> None:
        if not old:
            raise ValueError("nothing to replace")
        self.old = old
        self.new = new
        self.count = 0

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The replaced stream of ``chunks``."""
        old, new = self.old, self.new
        keep = len(old) - 1
        tail = b""
        for data in chunks:
            buf = tail + data
            pos = 0
            while (found := buf.find(old, pos)) >= 0:
                yield buf[pos:found]
                self.count += 1
                yield new
                pos = found + len(old)
            cut = max(pos, len(buf) - keep)
            yield buf[pos:cut]
            tail = buf[cut:]
        yield tail


def _find_nul(src: BinaryIO, position: int, chunk: int) -> int:
    """The file offset of the first NUL at or after ``position``, or -1."""
    src.seek(position)
    while data := src.read(chunk):
        found = data.find(b"\0")
        if found >= 0:
            return position + found
        position += len(data)
    return -1


def _bounded_reader(src: BinaryIO, length: int, chunk: int) -> Callable[[], bytes]:
    """A reader of the next ``length`` bytes of ``src`` (then b"")."""
    left = length

    def read() -> bytes:
        nonlocal left
        if left <= 0:
            return b""
        data = src.read(min(chunk, left))
        left -= len(data)
        return data

    return read


def _shorten_shebang(line: bytes) -> bytes:
    """``line`` (a first line, with its newline if any) as ``#!/usr/bin/env <program>``
    when it is longer than the kernel reads."""
    body = line[:-1] if line.endswith(b"\n") else line
    if len(body) <= _MAX_SHEBANG:
        return line
    match = re.match(rb"^#!\s*(\S+)(.*)$", body)
    if match is None:
        return line
    program = posixpath.basename(match[1])
    return b"#!/usr/bin/env " + program + match[2] + line[len(body) :]


# -- whole contents ----------------------------------------------------------------------------


def _whole(data: bytes, placeholder: bytes, prefix: bytes, mode: str) -> bytes:
    import io

    return b"".join(PrefixRewrite(placeholder, prefix, mode).chunks(io.BytesIO(data)))


def replace_text_prefix(data: bytes, placeholder: bytes, prefix: bytes) -> bytes:
    """``data`` with every ``placeholder`` replaced by ``prefix`` (lengths may differ);
    a ``#!`` line made too long becomes ``#!/usr/bin/env <program>``."""
    return _whole(data, placeholder, prefix, "text")


def replace_binary_prefix(data: bytes, placeholder: bytes, prefix: bytes) -> bytes:
    """``data`` with ``placeholder`` replaced by ``prefix`` inside NUL-terminated strings,
    each keeping its length (NUL padding).  ValueError when ``prefix`` is longer."""
    return _whole(data, placeholder, prefix, "binary")
