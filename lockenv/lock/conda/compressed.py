"""Decompressing what a channel serves (repodata, shard indexes, shards) within a bound.

zstd and bzip2 reach ratios above a thousand to one: a few megabytes from a hostile or
broken mirror could otherwise inflate to more memory than the machine has.  Both
functions stop as soon as the output would pass ``limit`` (`lockenv.http.MAX_DOCUMENT`
by default) and raise ValueError, as they do for damaged data; callers turn that into
their one-line "corrupt repodata" error.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from lockenv.http import MAX_DOCUMENT
from lockenv.limits import size_text

if TYPE_CHECKING:
    import zstandard

__all__ = ["unbz2", "unzstd"]

_PIECE = 16 << 20  # what a frame of undeclared size is read by


def _too_large(limit: int) -> ValueError:
    return ValueError(f"it decompresses to more than {size_text(limit)}")


def unzstd(data: bytes, *, limit: int = MAX_DOCUMENT) -> bytes:
    """``data`` (one or more zstd frames) decompressed, at most ``limit`` bytes of it."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        declared = -1  # reported below
    if 0 <= declared <= limit:
        # One frame that declares its size (what channels serve): decoded in one call
        # into a buffer of that size, a quarter faster than a decompression object on a
        # large repodata.  Anything else (several frames, damaged data) goes the careful
        # way below, which also words the error.
        with contextlib.suppress(zstandard.ZstdError):
            result: bytes = decompressor.decompress(data, allow_extra_data=False)
            return result
    frames: list[bytes] = []
    total = 0
    try:
        while data:
            declared = zstandard.frame_content_size(data)
            if declared < 0:
                # The size is not in the header: read in pieces, counting.
                frames.append(_read_counted(decompressor, data, limit - total, limit))
                break
            total += declared
            if total > limit:
                raise _too_large(limit)
            # Frame by frame: a decompression object per frame is a third faster than a
            # stream reader, and libzstd refuses a frame that produces more than its
            # header declares.
            frame = decompressor.decompressobj()
            frames.append(frame.decompress(data))
            if not frame.eof:
                raise zstandard.ZstdError("truncated data")
            data = frame.unused_data
    except zstandard.ZstdError as exc:
        raise ValueError(f"bad zstd data: {exc}") from None
    return b"".join(frames)


def _read_counted(
    decompressor: zstandard.ZstdDecompressor, data: bytes, room: int, limit: int
) -> bytes:
    pieces: list[bytes] = []
    got = 0
    with decompressor.stream_reader(data, read_across_frames=True) as reader:
        while piece := reader.read(_PIECE):
            got += len(piece)
            if got > room:
                raise _too_large(limit)
            pieces.append(piece)
    return b"".join(pieces)


def unbz2(data: bytes, *, limit: int = MAX_DOCUMENT) -> bytes:
    """``data`` (one or more bzip2 streams) decompressed, at most ``limit`` bytes of it."""
    import bz2

    pieces: list[bytes] = []
    total = 0
    while data:
        decompressor = bz2.BZ2Decompressor()
        piece = decompressor.decompress(data, max_length=limit - total + 1)
        total += len(piece)
        if total > limit:
            raise _too_large(limit)
        if not decompressor.eof:
            raise ValueError("bad bz2 data: the stream ends too early")
        pieces.append(piece)
        data = decompressor.unused_data
    return b"".join(pieces)
