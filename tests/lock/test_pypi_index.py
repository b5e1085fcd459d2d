"""lockenv.lock.pypi.index: simple-API parsing (PEP 503/691), indexes, find-links."""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.tags import Tag
from packaging.version import Version

from lockenv.errors import IndexAccessError
from lockenv.http import HttpClient
from lockenv.lock.pypi.index import (
    DistFile,
    Link,
    PackageIndex,
    dist_file_from_link,
    parse_html_links,
    parse_json_links,
    parse_simple_page,
)

from test_http import Route, TinyServer

PAGE = "https://example.invalid/simple/demo/"
SHA = "a" * 64

# -- HTML ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        (
            '<a href="../../files/demo-1.0-py3-none-any.whl#sha256=' + SHA + '">x</a>',
            Link(
                filename="demo-1.0-py3-none-any.whl",
                url="https://example.invalid/files/demo-1.0-py3-none-any.whl",
                sha256=SHA,
            ),
        ),
        (
            '<a href="https://cdn.example.invalid/d/demo-1.0.tar.gz#md5=abc">x</a>',
            Link(filename="demo-1.0.tar.gz", url="https://cdn.example.invalid/d/demo-1.0.tar.gz"),
        ),
        (
            '<a href="demo-1.0.tar.gz" data-requires-python="&gt;=3.8,&lt;4">x</a>',
            Link(
                filename="demo-1.0.tar.gz",
                url=PAGE + "demo-1.0.tar.gz",
                requires_python=">=3.8,<4",
            ),
        ),
        (
            '<a href="demo-1.0.tar.gz" data-yanked>x</a>',
            Link(filename="demo-1.0.tar.gz", url=PAGE + "demo-1.0.tar.gz", yanked=""),
        ),
        (
            '<a href="demo-1.0.tar.gz" data-yanked="broken &amp; bad">x</a>',
            Link(filename="demo-1.0.tar.gz", url=PAGE + "demo-1.0.tar.gz", yanked="broken & bad"),
        ),
        (
            '<a href="d-1.whl" data-core-metadata="sha256=' + "B" * 64 + '">x</a>',
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata="sha256=" + "b" * 64),
        ),
        (
            '<a href="d-1.whl" data-dist-info-metadata="true">x</a>',
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata=True),
        ),
        (
            '<a href="d-1.whl" data-dist-info-metadata>x</a>',
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata=True),
        ),
        (
            '<a href="d-1.whl" data-core-metadata="md5=abc">x</a>',
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata=True),
        ),
        (
            '<a href="/x/d%2Bx-1.whl">x</a>',
            Link(filename="d+x-1.whl", url="https://example.invalid/x/d%2Bx-1.whl"),
        ),
    ],
)
def test_parse_html_anchor(anchor: str, expected: Link) -> None:
    assert parse_html_links(f"<html><body>{anchor}</body></html>".encode(), PAGE) == [expected]


def test_html_base_href_and_anchors_without_href() -> None:
    page = b'<html><head><base href="https://m.example.invalid/f/"></head><a>none</a>' + (
        b'<a href="demo-1.0.tar.gz">x</a>'
    )
    assert [link.url for link in parse_html_links(page, PAGE)] == [
        "https://m.example.invalid/f/demo-1.0.tar.gz"
    ]


@given(
    version=st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True),
    requires_python=st.text(alphabet="<>=!~,.* 0123456789&\"'", max_size=20),
    reason=st.none() | st.text(max_size=20),
)
def test_html_roundtrip_property(version: str, requires_python: str, reason: str | None) -> None:
    filename = f"demo-{version}-py3-none-any.whl"
    attrs = f' data-requires-python="{html.escape(requires_python)}"'
    if reason is not None:
        attrs += f' data-yanked="{html.escape(reason)}"'
    page = f'<a href="{filename}#sha256={SHA}"{attrs}>{filename}</a>'.encode()
    (link,) = parse_html_links(page, PAGE)
    assert link.filename == filename and link.url == PAGE + filename and link.sha256 == SHA
    assert link.requires_python == (requires_python.strip() or None)
    assert link.yanked == reason
    f = dist_file_from_link(link, index_url="x")
    assert f is not None and f.version == Version(version)


# -- JSON ----------------------------------------------------------------------------------


def _json_page(*files: dict[str, object]) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "files": files}).encode()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"filename": "demo-1.0.tar.gz", "url": "../../f/demo-1.0.tar.gz", "hashes": {}},
            Link(filename="demo-1.0.tar.gz", url="https://example.invalid/f/demo-1.0.tar.gz"),
        ),
        (
            {
                "filename": "demo-1.0.tar.gz",
                "url": "demo-1.0.tar.gz",
                "hashes": {"sha256": SHA.upper(), "md5": "x"},
                "requires-python": ">=3.9",
                "size": 123,
                "upload-time": "2024-01-02T03:04:05.123456Z",
                "yanked": "bad release",
            },
            Link(
                filename="demo-1.0.tar.gz",
                url=PAGE + "demo-1.0.tar.gz",
                sha256=SHA,
                size=123,
                requires_python=">=3.9",
                yanked="bad release",
                upload_time=datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
            ),
        ),
        (
            {"filename": "d-1.whl", "url": "d-1.whl", "hashes": {}, "yanked": True},
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", yanked=""),
        ),
        (
            {"filename": "d-1.whl", "url": "d-1.whl", "hashes": {}, "yanked": False},
            Link(filename="d-1.whl", url=PAGE + "d-1.whl"),
        ),
        (
            {"filename": "d-1.whl", "url": "d-1.whl", "hashes": {}, "core-metadata": True},
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata=True),
        ),
        (
            {"filename": "d-1.whl", "url": "d-1.whl", "hashes": {}, "core-metadata": False},
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata=False),
        ),
        (
            {
                "filename": "d-1.whl",
                "url": "d-1.whl",
                "hashes": {},
                "dist-info-metadata": {"sha256": SHA},
            },
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", core_metadata="sha256=" + SHA),
        ),
        (
            {"filename": "d-1.whl", "url": "d-1.whl#sha256=" + SHA, "hashes": {}},
            Link(filename="d-1.whl", url=PAGE + "d-1.whl", sha256=SHA),
        ),
    ],
)
def test_parse_json_entry(entry: dict[str, object], expected: Link) -> None:
    assert parse_json_links(_json_page(entry), PAGE) == [expected]


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"files": 3}'])
def test_bad_json_page(content: bytes) -> None:
    with pytest.raises(IndexAccessError, match=r"example\.invalid"):
        parse_json_links(content, PAGE)


def test_content_type_selects_parser() -> None:
    body = _json_page({"filename": "d-1.whl", "url": "d-1.whl", "hashes": {}})
    assert parse_simple_page(body, "application/vnd.pypi.simple.v1+json", PAGE)[0].filename
    assert parse_simple_page(b'<a href="d-1.whl">', "text/html; charset=utf-8", PAGE)[0].filename


# -- filenames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Demo_Pkg-1.0-py3-none-any.whl", ("demo-pkg", "1.0", True, (), "py3-none-any")),
        (
            "demo-2.0-1local-cp312-cp312-manylinux_2_17_x86_64.whl",
            ("demo", "2.0", True, (1, "local"), "cp312-cp312-manylinux_2_17_x86_64"),
        ),
        ("demo-1.0.tar.gz", ("demo", "1.0", False, (), None)),
        ("demo-1.0.zip", ("demo", "1.0", False, (), None)),
        ("demo-1.0-py2.7.egg", None),
        ("demo-1.0.win32.exe", None),
        ("demo-1.0.tar.bz2", None),
        ("not a wheel.whl", None),
    ],
)
def test_dist_file_from_link(filename: str, expected: tuple[object, ...] | None) -> None:
    f = dist_file_from_link(Link(filename=filename, url=PAGE + filename), index_url="idx")
    if expected is None:
        assert f is None
        return
    assert f is not None
    name, version, is_wheel, build, tag = expected
    assert (f.name, f.version, f.is_wheel, f.build_tag) == (
        name,
        Version(str(version)),
        is_wheel,
        build,
    )
    if tag is None:
        assert f.tags == frozenset()
    else:
        assert Tag(*str(tag).split("-")) in f.tags


# -- local and remote indexes --------------------------------------------------------------


def _wheel_bytes(name: str, version: str) -> bytes:
    return f"{name}-{version}".encode()  # content is irrelevant to listing


@pytest.fixture
def http(tmp_path: Path) -> Iterator[HttpClient]:
    with HttpClient(tmp_path / "cache") as client:
        yield client


def _local_index(root: Path, projects: dict[str, list[str]], *, kind: str) -> str:
    for project, filenames in projects.items():
        pdir = root / project
        pdir.mkdir(parents=True)
        for fn in filenames:
            (pdir / fn).write_bytes(fn.encode())
        if kind == "html":
            anchors = "".join(f'<a href="{fn}">{fn}</a>' for fn in filenames)
            (pdir / "index.html").write_text(f"<html><body>{anchors}</body></html>")
        elif kind == "json":
            files = [{"filename": fn, "url": fn, "hashes": {}} for fn in filenames]
            (pdir / "index.json").write_text(json.dumps({"files": files}))
    return root.as_uri()


@pytest.mark.parametrize("kind", ["html", "json", "listing"])
def test_file_index(tmp_path: Path, http: HttpClient, kind: str) -> None:
    url = _local_index(
        tmp_path / "idx",
        {"demo": ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "README.txt"]},
        kind=kind,
    )
    index = PackageIndex(http, [url])
    files = index.files("Demo")
    assert sorted(f.filename for f in files) == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]
    for f in files:
        assert f.url.startswith("file://") and f.index_url == url
        assert f.sha256 == hashlib.sha256(f.filename.encode()).hexdigest()
    assert index.files("unknown") == ()


def test_file_index_with_unnormalized_directory(tmp_path: Path, http: HttpClient) -> None:
    url = _local_index(tmp_path / "idx", {"Demo_Pkg": ["demo_pkg-1.0.tar.gz"]}, kind="listing")
    assert [f.filename for f in PackageIndex(http, [url]).files("demo.pkg")] == [
        "demo_pkg-1.0.tar.gz"
    ]


def test_first_index_that_knows_a_project_wins(tmp_path: Path, http: HttpClient) -> None:
    private = _local_index(tmp_path / "a", {"demo": ["demo-1.0.tar.gz"]}, kind="html")
    public = _local_index(
        tmp_path / "b",
        {"demo": ["demo-9.0.tar.gz"], "other": ["other-1.0.tar.gz"]},
        kind="html",
    )
    index = PackageIndex(http, [private, public])
    assert [f.filename for f in index.files("demo")] == ["demo-1.0.tar.gz"]
    assert [f.filename for f in index.files("other")] == ["other-1.0.tar.gz"]


def test_find_links_merged_and_filtered(tmp_path: Path, http: HttpClient) -> None:
    idx = _local_index(tmp_path / "idx", {"demo": ["demo-1.0.tar.gz"]}, kind="html")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for fn in ["demo-2.0-py3-none-any.whl", "other-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]:
        (wheels / fn).write_bytes(fn.encode())
    index = PackageIndex(http, [idx], [str(wheels)])
    files = index.files("demo")
    assert [f.filename for f in files] == ["demo-1.0.tar.gz", "demo-2.0-py3-none-any.whl"]
    fl = files[1]
    assert (
        fl.size == len(fl.filename)
        and fl.sha256 == hashlib.sha256(fl.filename.encode()).hexdigest()
    )
    # find-links alone is enough for a project no index knows
    assert [f.filename for f in index.files("other")] == ["other-1.0-py3-none-any.whl"]


def test_missing_find_links_location(tmp_path: Path, http: HttpClient) -> None:
    index = PackageIndex(http, [], [str(tmp_path / "nope")])
    with pytest.raises(IndexAccessError, match="nope"):
        index.files("demo")


def test_exclude_newer(tmp_path: Path, http: HttpClient) -> None:
    root = tmp_path / "idx" / "demo"
    root.mkdir(parents=True)
    files = [
        {
            "filename": "demo-1.0.tar.gz",
            "url": "a",
            "hashes": {},
            "upload-time": "2020-01-01T00:00:00Z",
        },
        {
            "filename": "demo-2.0.tar.gz",
            "url": "b",
            "hashes": {},
            "upload-time": "2030-01-01T00:00:00Z",
        },
        {"filename": "demo-3.0.tar.gz", "url": "c", "hashes": {}},
    ]
    (root / "index.json").write_text(json.dumps({"files": files}))
    cutoff = datetime(2025, 1, 1)  # naive: taken as UTC
    index = PackageIndex(http, [(tmp_path / "idx").as_uri()], exclude_newer=cutoff)
    assert [f.filename for f in index.files("demo")] == ["demo-1.0.tar.gz"]


def _simple_server(server: TinyServer, *, json_api: bool) -> None:
    files = [
        {
            "filename": "demo-1.0-py3-none-any.whl",
            "url": "../../files/demo-1.0-py3-none-any.whl",
            "hashes": {"sha256": SHA},
            "core-metadata": {"sha256": SHA},
            "yanked": False,
        },
        {"filename": "other-1.0.tar.gz", "url": "../../files/other-1.0.tar.gz", "hashes": {}},
    ]
    if json_api:
        server.routes["/simple/demo/"] = Route(
            body=json.dumps({"meta": {"api-version": "1.0"}, "files": files}).encode(),
            headers={"Content-Type": "application/vnd.pypi.simple.v1+json"},
        )
    else:
        anchors = "".join(
            f'<a href="{f["url"]}#sha256={SHA}" data-core-metadata="true">{f["filename"]}</a>'
            for f in files
        )
        server.routes["/simple/demo/"] = Route(
            body=anchors.encode(), headers={"Content-Type": "text/html"}
        )


@pytest.mark.parametrize("json_api", [True, False])
def test_http_index(json_api: bool, http: HttpClient) -> None:
    server = TinyServer()
    try:
        _simple_server(server, json_api=json_api)
        index = PackageIndex(http, [server.url("/simple")])
        (f,) = index.files("DEMO")  # other-1.0 on demo's page is not demo's
        assert f.url == server.url("/files/demo-1.0-py3-none-any.whl")
        assert f.sha256 == SHA and f.is_wheel and f.index_url == server.url("/simple")
        assert f.core_metadata == ("sha256=" + SHA if json_api else True)
        accept = server.requests[0].headers["accept"]
        assert accept.startswith("application/vnd.pypi.simple.v1+json")
        assert index.files("unknown") == ()
        index.files("demo")
        assert server.count("/simple/demo/") == 1  # memoised
    finally:
        server.close()


def test_http_index_credentials_kept_for_same_host_files(http: HttpClient) -> None:
    server = TinyServer()
    try:
        _simple_server(server, json_api=True)
        server.auth = ("u", "pw")
        url = server.url("/simple/").replace("http://", "http://u:pw@")
        (f,) = PackageIndex(http, [url]).files("demo")
        assert f.url.startswith("http://u:pw@127.0.0.1")
        assert f.index_url == server.url("/simple/")
    finally:
        server.close()


def test_http_index_server_error_is_raised_not_skipped(
    http: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv import http as lhttp

    monkeypatch.setattr(lhttp, "_RETRY_BACKOFF", 0.0)
    server = TinyServer()
    try:
        server.routes["/simple/demo/"] = Route(status=500)
        fallback = TinyServer()
        _simple_server(fallback, json_api=True)
        index = PackageIndex(http, [server.url("/simple/"), fallback.url("/simple/")])
        with pytest.raises(IndexAccessError, match="500"):
            index.files("demo")
        assert fallback.count("/simple/demo/") == 0
        fallback.close()
    finally:
        server.close()


def test_prefetch_is_concurrent_and_memoised(tmp_path: Path, http: HttpClient) -> None:
    projects = {f"p{i}": [f"p{i}-1.0.tar.gz"] for i in range(30)}
    url = _local_index(tmp_path / "idx", projects, kind="html")
    with PackageIndex(http, [url], workers=4) as index:
        index.prefetch(projects)
        index.prefetch(["p0", "missing"])
        for name in projects:
            assert [f.filename for f in index.files(name)] == [f"{name}-1.0.tar.gz"]
        assert index.files("missing") == ()


def test_dist_file_is_frozen() -> None:
    f = dist_file_from_link(Link(filename="d-1.0.tar.gz", url="u"), index_url="i")
    assert isinstance(f, DistFile)
    with pytest.raises(AttributeError):
        f.url = "x"  # type: ignore[misc]


# -- the fixture index (real wheels and sdists over loopback HTTP) -------------------------


def _summary(files: tuple[DistFile, ...]) -> list[tuple[str, str | None, bool]]:
    return sorted((f.filename, f.yanked, f.sha256 is not None) for f in files)


def test_fixture_index_json(index_server: Any, http: HttpClient) -> None:
    index = PackageIndex(http, [index_server.url])
    alpha = index.files("alpha")
    assert {str(f.version) for f in alpha} == {"1.0", "1.1", "2.0"}
    for f in alpha:
        assert f.sha256 and f.size and f.upload_time is not None
        assert f.url.startswith(index_server.files_url)
    wheel = next(f for f in alpha if f.is_wheel and str(f.version) == "1.0")
    assert wheel.core_metadata not in (None, False)
    assert {f.yanked for f in index.files("yankee") if str(f.version) == "1.1"} == {"broken build"}
    assert index.files("no-such-project") == ()


def test_fixture_index_html_matches_json(
    index_server: Any, make_index_server: Any, fixture_index_dir: Path, http: HttpClient
) -> None:
    html_server = make_index_server(json_api=False)
    from_json = PackageIndex(http, [index_server.url]).files("yankee")
    from_html = PackageIndex(http, [html_server.url]).files("yankee")
    from_file = PackageIndex(http, [(fixture_index_dir / "simple").as_uri()]).files("yankee")
    assert _summary(from_json) == _summary(from_html) == _summary(from_file)
    assert all(f.upload_time is None for f in from_html)  # HTML pages carry no times


def test_fixture_index_exclude_newer(index_server: Any, http: HttpClient) -> None:
    cutoff = datetime(2024, 12, 31, tzinfo=UTC)
    index = PackageIndex(http, [index_server.url], exclude_newer=cutoff)
    assert {str(f.version) for f in index.files("alpha")} == {"1.0", "1.1"}


def test_fixture_index_with_auth(make_index_server: Any, http: HttpClient) -> None:
    server = make_index_server(auth=("user", "s3cret"))
    files = PackageIndex(http, [server.url_with_auth()]).files("alpha")
    assert files and all(f.index_url == server.url for f in files)
    with HttpClient(None) as anonymous, pytest.raises(IndexAccessError) as info:
        PackageIndex(anonymous, [server.url]).files("alpha")
    assert "401" in str(info.value)


def test_fixture_index_etag_revalidation(make_index_server: Any, tmp_path: Path) -> None:
    server = make_index_server()
    for _ in range(2):
        with HttpClient(tmp_path / "shared-cache") as client:
            assert PackageIndex(client, [server.url]).files("alpha")
    page_requests = [h for _, p, h in server.requests if p == "/simple/alpha/"]
    assert len(page_requests) == 2 and "if-none-match" in page_requests[1]


@pytest.mark.parametrize(
    "filename",
    [
        "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "foo_bar-1.0-1abc-py2.py3-none-any.whl",
        "Foo.Bar-1.0.post1-py3-none-any.whl",
        "pkg-1.0-py3-none-macosx_10_9_x86_64.macosx_11_0_arm64.whl",
    ],
)
def test_memoised_wheel_filename_parse_agrees_with_packaging(filename: str) -> None:
    from packaging.utils import parse_wheel_filename

    from lockenv.lock.pypi.index import _parse_wheel_filename

    assert _parse_wheel_filename(filename) == parse_wheel_filename(filename)


@pytest.mark.parametrize(
    "filename",
    [
        "foo-1.0-py3-none.whl",
        "foo__bar-1.0-py3-none-any.whl",
        "foo-1.x.y-py3-none-any.whl",
        "foo-1.0-x-py3-none-any.whl",
        "foo-1.0-py3-none-.whl",
        "foo-1.0-py3-none-any.zip",
    ],
)
def test_memoised_wheel_filename_parse_rejects_what_packaging_rejects(filename: str) -> None:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    from lockenv.lock.pypi.index import _parse_wheel_filename

    with pytest.raises(InvalidWheelFilename):
        parse_wheel_filename(filename)
    with pytest.raises(InvalidWheelFilename):
        _parse_wheel_filename(filename)
