"""RECORD rows and the path checks on archive members and installed RECORD entries."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockenv.errors import UnsafePathError
from lockenv.sync.pypi.record import (
    RecordRow,
    check_member_path,
    parse_record,
    record_hash,
    render_record,
    render_record_rows,
    resolve_installed_path,
)


@pytest.mark.parametrize(
    ("path", "normalized"),
    [("a/b.py", "a/b.py"), ("./a//b.py", "a/b.py"), ("a.dist-info/RECORD", "a.dist-info/RECORD")],
)
def test_safe_member_paths(path: str, normalized: str) -> None:
    assert check_member_path(path, wheel="w.whl") == normalized


@pytest.mark.parametrize(
    "path", ["", "/abs", "../up", "a/../../up", "a/..", "C:/x", "c:x", "a\\b", "a\0b", ".", "./"]
)
def test_unsafe_member_paths(path: str) -> None:
    with pytest.raises(UnsafePathError, match=r"w\.whl"):
        check_member_path(path, wheel="w.whl")


@given(st.text(alphabet="ab./\\:C\0", max_size=12))
def test_accepted_member_paths_stay_inside(path: str) -> None:
    try:
        safe = check_member_path(path, wheel="w.whl")
    except UnsafePathError:
        return
    joined = posixpath.normpath(posixpath.join("/base/dir", safe))
    assert joined.startswith("/base/dir/")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("alpha/__init__.py", "lib/python3.11/site-packages/alpha/__init__.py"),
        ("../../../bin/clicky", "bin/clicky"),
        ("../../../../etc/passwd", None),
        ("/etc/passwd", None),
        ("../../..", None),
    ],
)
def test_resolve_installed_path(path: str, expected: str | None) -> None:
    assert resolve_installed_path(path, "lib/python3.11/site-packages") == expected


def test_record_round_trip() -> None:
    rows = [
        RecordRow(path="b,with comma.py", hash=record_hash(b"x"), size=1),
        RecordRow(path="a.dist-info/RECORD"),
    ]
    text = render_record(rows).decode()
    assert text.splitlines()[0] == "a.dist-info/RECORD,,"
    assert sorted(parse_record(text), key=lambda r: r.path) == sorted(rows, key=lambda r: r.path)


@given(
    st.lists(
        st.tuples(
            st.text(st.sampled_from('ab/.,"\r\n é'), min_size=1, max_size=8),
            st.one_of(
                st.sampled_from(["", record_hash(b"x")]),
                st.text(st.sampled_from('a=,"\r\n'), max_size=4),  # never so, but rendered right
            ),
            st.one_of(st.none(), st.integers(0, 10**9)),
        ),
        max_size=6,
        unique_by=lambda row: row[0],  # a RECORD lists a path once
    )
)
def test_record_rows_render_as_the_csv_writer_writes_them(
    rows: list[tuple[str, str, int | None]],
) -> None:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        (p, h, "" if s is None else s) for p, h, s in sorted(rows)
    )
    assert render_record_rows(rows) == buf.getvalue().encode("utf-8")


def test_record_hash_format() -> None:
    assert record_hash(b"") == "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
