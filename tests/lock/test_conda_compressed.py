"""Bounded decompression of what a channel serves (lockenv/lock/conda/compressed.py)."""

from __future__ import annotations

import bz2

import pytest
import zstandard

from lockenv.lock.conda.compressed import unbz2, unzstd

DATA = b'{"packages": {}}' * 4096  # 64 KiB


def _zstd(data: bytes, *, sized: bool) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=sized).compress(data)


def _zstd_unsized_stream(data: bytes) -> bytes:
    # A streamed frame: no content size in its header, as `zstd` writes from a pipe.
    out = zstandard.ZstdCompressor().compressobj()
    return out.compress(data) + out.flush()


@pytest.mark.parametrize(
    "compressed",
    [
        _zstd(DATA, sized=True),
        _zstd_unsized_stream(DATA),
        _zstd(DATA[:1000], sized=True) + _zstd(DATA[1000:], sized=True),
        _zstd(DATA[:1000], sized=True) + _zstd_unsized_stream(DATA[1000:]),
    ],
    ids=["sized", "unsized", "two-frames", "sized-then-unsized"],
)
def test_unzstd_within_and_past_the_limit(compressed: bytes) -> None:
    assert unzstd(compressed, limit=len(DATA)) == DATA
    with pytest.raises(ValueError, match="more than"):
        unzstd(compressed, limit=len(DATA) - 1)


def test_unzstd_refuses_damaged_data() -> None:
    with pytest.raises(ValueError, match="bad zstd data"):
        unzstd(_zstd(DATA, sized=True)[:-10], limit=len(DATA))


def test_a_zstd_bomb_stops_at_the_limit_not_at_its_size() -> None:
    # 256 MiB of zeros in a few kilobytes, size not declared: refused after the limit.
    out = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = bytes(1 << 20)
    bomb = b"".join(out.compress(zeros) for _ in range(256)) + out.flush()
    assert len(bomb) < 1 << 20
    with pytest.raises(ValueError, match="more than 1 MiB"):
        unzstd(bomb, limit=1 << 20)


def test_unbz2_within_and_past_the_limit() -> None:
    two_streams = bz2.compress(DATA[:1000]) + bz2.compress(DATA[1000:])
    for compressed in (bz2.compress(DATA), two_streams):
        assert unbz2(compressed, limit=len(DATA)) == DATA
        with pytest.raises(ValueError, match="more than"):
            unbz2(compressed, limit=len(DATA) - 1)
    with pytest.raises(ValueError, match="ends too early"):
        unbz2(bz2.compress(DATA)[:-10], limit=len(DATA))
