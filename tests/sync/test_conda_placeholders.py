"""The streamed placeholder rewrite (lockenv.sync.conda.placeholders) gives what
replacing in the whole file gives, for placeholders anywhere across chunk boundaries."""

from __future__ import annotations

import io
import posixpath
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockenv.sync.conda.placeholders import PrefixRewrite

PH = b"/placeholder/prefix/of/thirty-two"


# -- the reference: the whole file in memory, as conda's own replacement reads -------------


def _reference_text(data: bytes, placeholder: bytes, prefix: bytes, scan: int) -> bytes:
    end = data.find(b"\n")
    first = data if end < 0 else data[: end + 1]
    new_first = first.replace(placeholder, prefix)
    rest = data[len(first) :].replace(placeholder, prefix)
    if placeholder in first and len(first) <= scan and new_first.startswith(b"#!"):
        body = new_first.rstrip(b"\n")
        match = re.match(rb"^#!\s*(\S+)(.*)$", body)
        if len(body) > 127 and match is not None:
            new_first = (
                b"#!/usr/bin/env "
                + posixpath.basename(match[1])
                + match[2]
                + new_first[len(body) :]
            )
    return new_first + rest


def _reference_binary(data: bytes, placeholder: bytes, prefix: bytes) -> bytes:
    def pad(match: re.Match[bytes]) -> bytes:
        string = match[0]
        replaced = string.replace(placeholder, prefix)
        return replaced + b"\0" * (len(string) - len(replaced))

    return re.sub(re.escape(placeholder) + rb"[^\0]*\0", pad, data)


def _streamed(data: bytes, placeholder: bytes, prefix: bytes, mode: str, chunk: int) -> bytes:
    rewrite = PrefixRewrite(placeholder, prefix, mode, chunk_size=chunk, shebang_scan=64)
    out = b"".join(rewrite.chunks(io.BytesIO(data)))
    assert rewrite.changed == (out != data)
    return out


# -- table ---------------------------------------------------------------------------------

D = len(PH) - len(b"/new")


@pytest.mark.parametrize("chunk", [1, 2, 5, len(PH) - 1, len(PH), len(PH) + 1, 1 << 20])
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"x" + PH + b"/lib\0rest", b"x/new/lib\0" + b"\0" * D + b"rest"),
        (PH + b"\0" + PH + b"/a\0", b"/new\0" + b"\0" * D + b"/new/a\0" + b"\0" * D),
        (PH + b":" + PH + b"/b\0z", b"/new:/new/b\0" + b"\0" * (2 * D) + b"z"),
        (b"no placeholder\0", b"no placeholder\0"),
        (b"unterminated " + PH, b"unterminated " + PH),
        (
            PH + b"\0ok\0" + PH + b"/no-end" + PH,
            b"/new\0" + b"\0" * D + b"ok\0" + PH + b"/no-end" + PH,
        ),
        (b"", b""),
    ],
)
def test_binary(data: bytes, expected: bytes, chunk: int) -> None:
    assert _streamed(data, PH, b"/new", "binary", chunk) == expected


@pytest.mark.parametrize("chunk", [1, 3, len(PH) - 1, len(PH), 1 << 20])
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"prefix=" + PH + b"\n", b"prefix=/new\n"),
        (b"#!" + PH + b"/bin/python -E\nx" + PH + b"\n", b"#!/new/bin/python -E\nx/new\n"),
        (b"nothing\n", b"nothing\n"),
        (PH + PH + PH, b"/new/new/new"),
        (b"#!/bin/sh\n" + PH, b"#!/bin/sh\n/new"),
    ],
)
def test_text(data: bytes, expected: bytes, chunk: int) -> None:
    assert _streamed(data, PH, b"/new", "text", chunk) == expected


def test_a_long_shebang_becomes_env() -> None:
    out = _streamed(b"#!" + PH + b"/bin/python3.11 -E\nbody\n", PH, b"/very" * 30, "text", 4)
    assert out == b"#!/usr/bin/env python3.11 -E\nbody\n"


def test_a_first_line_past_the_scan_is_not_a_shebang() -> None:
    data = b"#!" + PH + b"/bin/python" + b" -x" * 40 + b"\n"  # longer than the test's 64
    assert _streamed(data, PH, b"/very" * 30, "text", 7) == data.replace(PH, b"/very" * 30)


@pytest.mark.parametrize(
    ("placeholder", "prefix", "mode"),
    [
        (b"", b"/p", "text"),
        (b"/a\0b", b"/p", "binary"),
        (b"/a\nb", b"/p", "text"),
        (b"/ph", b"/longer", "binary"),
        (b"/ph", b"/p", "octal"),
    ],
)
def test_unusable_arguments_are_refused(placeholder: bytes, prefix: bytes, mode: str) -> None:
    with pytest.raises(ValueError):
        PrefixRewrite(placeholder, prefix, mode)


# -- properties ----------------------------------------------------------------------------

_SMALL_PH = b"/ph/ab"
_pieces = st.lists(
    st.one_of(
        st.sampled_from([_SMALL_PH, b"\0", b"\n", b"#!", b"/ph/a", b"b/", b" "]),
        st.binary(max_size=5),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(_pieces, st.sampled_from([b"", b"/q", b"/ph/ab", b"/pp/xy"]), st.integers(1, 9))
def test_binary_stream_equals_whole_file(parts: list[bytes], prefix: bytes, chunk: int) -> None:
    data = b"".join(parts)
    out = _streamed(data, _SMALL_PH, prefix, "binary", chunk)
    assert out == _reference_binary(data, _SMALL_PH, prefix)
    assert len(out) == len(data)


@settings(max_examples=200, deadline=None)
@given(
    _pieces,
    st.sampled_from([b"", b"/q", b"/a/much/longer/prefix" * 8, b"/ph/ab"]),
    st.integers(1, 9),
)
def test_text_stream_equals_whole_file(parts: list[bytes], prefix: bytes, chunk: int) -> None:
    data = b"".join(parts)
    out = _streamed(data, _SMALL_PH, prefix, "text", chunk)
    assert out == _reference_text(data, _SMALL_PH, prefix, 64)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 9), st.lists(st.integers(0, 200), max_size=6))
def test_placeholders_at_random_offsets(filler: bytes, chunk: int, offsets: list[int]) -> None:
    data = bytearray(filler)
    for offset in sorted(offsets, reverse=True):
        data[offset:offset] = _SMALL_PH
    whole = bytes(data)
    assert _streamed(whole, _SMALL_PH, b"/q", "binary", chunk) == _reference_binary(
        whole, _SMALL_PH, b"/q"
    )
    assert _streamed(whole, _SMALL_PH, b"/q/r/s/t", "text", chunk) == _reference_text(
        whole, _SMALL_PH, b"/q/r/s/t", 64
    )
