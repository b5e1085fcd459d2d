"""lockenv.lock.pypi.metadata: parsing core metadata; PEP 658, range requests, sdists, caching."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from lockenv import http as lhttp
from lockenv.errors import IntegrityError, MetadataError
from lockenv.http import HttpClient
from lockenv.lock.pypi.index import DistFile, Link, dist_file_from_link
from lockenv.lock.pypi.metadata import (
    MetadataFetcher,
    fetch_artifact_info,
    parse_core_metadata,
)

from test_http import Route, TinyServer

METADATA = b"""Metadata-Version: 2.3
Name: Demo_Pkg
Version: 1.0
Requires-Python: >=3.9
Requires-Dist: requests>=2
Requires-Dist: rich; extra == "Fancy"
Provides-Extra: Fancy

A long description that is not a header: Requires-Dist: nope
"""

# -- parsing -------------------------------------------------------------------------------


def test_parse_core_metadata() -> None:
    meta = parse_core_metadata(METADATA, source="demo")
    assert meta.name == "demo-pkg" and meta.version == Version("1.0")
    assert meta.requires_dist == (Requirement("requests>=2"), Requirement('rich; extra == "Fancy"'))
    assert meta.requires_python == SpecifierSet(">=3.9")
    assert meta.provides_extra == ("fancy",)
    assert meta.dynamic == () and meta.metadata_version == "2.3"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (">=3.8", ">=3.8"),
        (">=3.6.*", ">=3.6"),
        ("3.7", "==3.7"),
        (">=2.7, !=3.0.*", ">=2.7,!=3.0.*"),
    ],
)
def test_requires_python_forms(raw: str, expected: str) -> None:
    data = f"Metadata-Version: 2.1\nName: a\nVersion: 1\nRequires-Python: {raw}\n".encode()
    assert parse_core_metadata(data, source="s").requires_python == SpecifierSet(expected)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"Metadata-Version: 2.1\nVersion: 1\n", "no Name"),
        (b"Metadata-Version: 2.1\nName: a\n", "no Version"),
        (b"Name: a\nVersion: not-a-version\n", "'not-a-version'"),
        (b"Name: a\nVersion: 1\nRequires-Dist: foo >= >= 1\n", "'foo >= >= 1'"),
        (b"Name: a\nVersion: 1\nRequires-Python: banana\n", "'banana'"),
    ],
)
def test_bad_metadata(data: bytes, needle: str) -> None:
    with pytest.raises(MetadataError, match=needle) as info:
        parse_core_metadata(data, source="a-1.whl (u)")
    assert "a-1.whl" in str(info.value)


def test_folded_header_and_latin1() -> None:
    data = "Name: a\nVersion: 1\nRequires-Dist: foo\n  >=1\nAuthor: J\xe9r\xf4me\n".encode(
        "latin-1"
    )
    assert parse_core_metadata(data, source="s").requires_dist == (Requirement("foo >=1"),)


# -- building test artifacts ---------------------------------------------------------------


def make_wheel(
    name: str = "demo_pkg",
    version: str = "1.0",
    *,
    metadata: bytes = METADATA,
    padding: int = 300_000,
    zip64: bool = False,
) -> bytes:
    """A wheel whose METADATA sits at the front, far from the tail a range read starts with."""
    buf = io.BytesIO()
    rng = random.Random(0)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(f"{name}-{version}.dist-info/METADATA", "w", force_zip64=zip64) as fh:
            fh.write(metadata)
        zf.writestr(zipfile.ZipInfo(f"{name}/blob.bin"), rng.randbytes(padding))
        zf.writestr(f"{name}-{version}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        for i in range(50):
            zf.writestr(f"{name}/m{i}.py", f"X = {i}\n")
        zf.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return buf.getvalue()


def make_sdist(pkg_info: bytes, *, fmt: str = "tar.gz", top: str = "demo_pkg-1.0") -> bytes:
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"{top}/setup.py", "")
            zf.writestr(f"{top}/PKG-INFO", pkg_info)
        return buf.getvalue()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for member, data in ((f"{top}/src/x.py", b"x"), (f"{top}/PKG-INFO", pkg_info)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def dist(
    filename: str, url: str, *, sha256: str | None = None, core: str | bool | None = None
) -> DistFile:
    f = dist_file_from_link(
        Link(filename=filename, url=url, sha256=sha256, core_metadata=core), index_url="idx"
    )
    assert f is not None
    return f


WHEEL = make_wheel()
WHEEL_FN = "demo_pkg-1.0-py3-none-any.whl"
WHEEL_SHA = hashlib.sha256(WHEEL).hexdigest()


@pytest.fixture
def server() -> Iterator[TinyServer]:
    srv = TinyServer()
    yield srv
    srv.close()


@pytest.fixture
def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpClient]:
    monkeypatch.setattr(lhttp, "_RETRY_BACKOFF", 0.0)
    with HttpClient(tmp_path / "cache") as client:
        yield client


def _wheel_gets(server: TinyServer) -> list[str | None]:
    return [
        r.headers.get("range")
        for r in server.requests
        if r.path == f"/f/{WHEEL_FN}" and r.method == "GET"
    ]


# -- wheels --------------------------------------------------------------------------------


def test_range_requests_read_only_the_metadata(server: TinyServer, http: HttpClient) -> None:
    server.routes[f"/f/{WHEEL_FN}"] = Route(body=WHEEL)
    fetcher = MetadataFetcher(http, None)
    meta = fetcher.get(dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}")))
    assert meta.name == "demo-pkg" and meta.requires_python == SpecifierSet(">=3.9")
    ranges = _wheel_gets(server)
    assert ranges and all(r is not None for r in ranges)  # never the whole wheel
    assert len(ranges) <= 3
    assert server.count(f"/f/{WHEEL_FN}.metadata") == 1  # the unadvertised try


def test_range_requests_zip64_member(server: TinyServer, http: HttpClient) -> None:
    wheel = make_wheel(zip64=True)
    server.routes[f"/f/{WHEEL_FN}"] = Route(body=wheel)
    meta = MetadataFetcher(http, None).get(dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), core=False))
    assert meta.version == Version("1.0")
    assert all(r is not None for r in _wheel_gets(server))


def test_server_ignoring_range(server: TinyServer, http: HttpClient) -> None:
    server.routes[f"/f/{WHEEL_FN}"] = Route(body=WHEEL, ranges=False)
    meta = MetadataFetcher(http, None).get(dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), core=False))
    assert meta.name == "demo-pkg"
    assert len(_wheel_gets(server)) == 1  # the full answer to the first range request is used


def test_range_not_satisfiable_falls_back_to_download(server: TinyServer, http: HttpClient) -> None:
    def route(seen: object) -> Route:
        if getattr(seen, "headers", {}).get("range"):
            return Route(status=416)
        return Route(body=WHEEL)

    server.routes[f"/f/{WHEEL_FN}"] = route
    f = dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), sha256=WHEEL_SHA, core=False)
    assert MetadataFetcher(http, None).get(f).name == "demo-pkg"
    assert _wheel_gets(server)[-1] is None


def test_pep658_advertised_with_hash(server: TinyServer, http: HttpClient) -> None:
    server.routes[f"/f/{WHEEL_FN}.metadata"] = Route(body=METADATA)
    core = "sha256=" + hashlib.sha256(METADATA).hexdigest()
    meta = MetadataFetcher(http, None).get(dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), core=core))
    assert meta.provides_extra == ("fancy",)
    assert _wheel_gets(server) == []


def test_pep658_hash_mismatch(server: TinyServer, http: HttpClient) -> None:
    server.routes[f"/f/{WHEEL_FN}.metadata"] = Route(body=METADATA)
    f = dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), core="sha256=" + "0" * 64)
    with pytest.raises(IntegrityError, match=r"0{64}"):
        MetadataFetcher(http, None).get(f)


def test_unadvertised_metadata_file_is_used(server: TinyServer, http: HttpClient) -> None:
    server.routes[f"/f/{WHEEL_FN}.metadata"] = Route(body=METADATA)
    assert MetadataFetcher(http, None).get(dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"))).name
    assert _wheel_gets(server) == []


def test_explicitly_absent_metadata_file_is_not_asked_for(
    server: TinyServer, http: HttpClient
) -> None:
    server.routes[f"/f/{WHEEL_FN}"] = Route(body=WHEEL)
    MetadataFetcher(http, None).get(dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), core=False))
    assert server.count(f"/f/{WHEEL_FN}.metadata") == 0


def test_stops_guessing_metadata_urls_on_a_host_without_them(
    server: TinyServer, http: HttpClient
) -> None:
    fetcher = MetadataFetcher(http, None)
    for version in range(1, 6):
        fn = f"demo_pkg-{version}.0-py3-none-any.whl"
        server.routes[f"/f/{fn}"] = Route(
            body=make_wheel(
                version=f"{version}.0",
                metadata=METADATA.replace(b"1.0", f"{version}.0".encode()),
                padding=10,
            )
        )
        fetcher.get(dist(fn, server.url(f"/f/{fn}")))
    guesses = [r.path for r in server.requests if r.path.endswith(".metadata")]
    assert len(guesses) == 3


def test_local_wheel(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / WHEEL_FN
    path.write_bytes(WHEEL)
    assert MetadataFetcher(http, None).get(dist(WHEEL_FN, path.as_uri())).name == "demo-pkg"


def test_name_or_version_mismatch(server: TinyServer, http: HttpClient) -> None:
    fn = "other-1.0-py3-none-any.whl"
    server.routes[f"/f/{fn}.metadata"] = Route(body=METADATA)
    with pytest.raises(MetadataError, match=r"demo-pkg 1\.0.*other 1\.0"):
        MetadataFetcher(http, None).get(dist(fn, server.url(f"/f/{fn}"), core=True))


def test_wheel_without_metadata(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / WHEEL_FN
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("demo_pkg/__init__.py", "")
    with pytest.raises(MetadataError, match=r"no \.dist-info/METADATA"):
        MetadataFetcher(http, None).get(dist(WHEEL_FN, path.as_uri()))


def test_disk_and_memory_cache(server: TinyServer, tmp_path: Path, http: HttpClient) -> None:
    server.routes[f"/f/{WHEEL_FN}"] = Route(body=WHEEL)
    f = dist(WHEEL_FN, server.url(f"/f/{WHEEL_FN}"), sha256=WHEEL_SHA)
    first = MetadataFetcher(http, tmp_path / "c")
    meta = first.get(f)
    assert first.get(f) is meta
    assert (tmp_path / "c" / "metadata" / f"{WHEEL_SHA}.metadata").read_bytes() == METADATA
    seen = len(server.requests)
    assert MetadataFetcher(http, tmp_path / "c").get(f) == meta
    assert len(server.requests) == seen


def test_prefetch(server: TinyServer, http: HttpClient) -> None:
    files = []
    for version in range(1, 9):
        fn = f"demo_pkg-{version}.0-py3-none-any.whl"
        server.routes[f"/f/{fn}.metadata"] = Route(
            body=METADATA.replace(b"1.0", f"{version}.0".encode())
        )
        files.append(dist(fn, server.url(f"/f/{fn}"), core=True))
    with MetadataFetcher(http, None, workers=4) as fetcher:
        fetcher.prefetch(files)
        fetcher.prefetch(files)
        assert [fetcher.get(f).version for f in files] == [Version(f"{v}.0") for v in range(1, 9)]
    assert len([r for r in server.requests if r.path.endswith(".metadata")]) == 8


# -- sdists --------------------------------------------------------------------------------

STATIC = (
    b"Metadata-Version: 2.2\nName: demo_pkg\nVersion: 1.0\nRequires-Dist: six\nDynamic: Summary\n"
)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_static_sdist(server: TinyServer, http: HttpClient, fmt: str) -> None:
    fn = f"demo_pkg-1.0.{fmt}"
    server.routes[f"/f/{fn}"] = Route(body=make_sdist(STATIC, fmt=fmt))
    meta = MetadataFetcher(http, None).get(dist(fn, server.url(f"/f/{fn}")))
    assert meta.requires_dist == (Requirement("six"),)


@pytest.mark.parametrize(
    ("pkg_info", "needle"),
    [
        (STATIC.replace(b"Summary", b"Requires-Dist"), "Dynamic: requires-dist"),
        (STATIC.replace(b"Summary", b"requires-python"), "Dynamic: requires-python"),
        (STATIC.replace(b"2.2", b"2.1"), "Metadata-Version 2.1 < 2.2"),
    ],
)
def test_dynamic_sdist_is_refused(
    tmp_path: Path, http: HttpClient, pkg_info: bytes, needle: str
) -> None:
    path = tmp_path / "demo_pkg-1.0.tar.gz"
    path.write_bytes(make_sdist(pkg_info))
    with pytest.raises(MetadataError, match="has dynamic metadata") as info:
        MetadataFetcher(http, None).get(dist(path.name, path.as_uri()))
    assert needle in str(info.value) and "demo_pkg-1.0.tar.gz" in str(info.value)
    assert "only a build can tell" in str(info.value)


def test_sdist_without_pkg_info(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / "demo_pkg-1.0.tar.gz"
    path.write_bytes(make_sdist(STATIC, top="a/b"))
    with pytest.raises(MetadataError, match="no PKG-INFO"):
        MetadataFetcher(http, None).get(dist(path.name, path.as_uri()))


class RecordingBuilder:
    """A MetadataBuilder that answers with fixed METADATA and records what it was asked."""

    def __init__(self, metadata: bytes) -> None:
        self.metadata = metadata
        self.calls: list[tuple[Path, str]] = []

    def sdist_metadata(self, archive: Path, *, filename: str) -> bytes:
        self.calls.append((archive, filename))
        assert archive.is_file()
        return self.metadata


BUILT = b"Metadata-Version: 2.1\nName: demo-pkg\nVersion: 1.0\nRequires-Dist: attrs>=22\n"


@pytest.mark.parametrize(
    "pkg_info", [STATIC.replace(b"Summary", b"Requires-Dist"), STATIC.replace(b"2.2", b"2.1")]
)
def test_dynamic_sdist_asks_the_builder_once(
    server: TinyServer, tmp_path: Path, http: HttpClient, pkg_info: bytes
) -> None:
    body = make_sdist(pkg_info)
    sha = hashlib.sha256(body).hexdigest()
    server.routes["/f/demo_pkg-1.0.tar.gz"] = Route(body=body)
    f = dataclasses.replace(
        dist("demo_pkg-1.0.tar.gz", server.url("/f/demo_pkg-1.0.tar.gz")), sha256=sha
    )
    builder = RecordingBuilder(BUILT)
    meta = MetadataFetcher(http, tmp_path, builder=builder).get(f)
    assert meta.requires_dist == (Requirement("attrs>=22"),)
    # The sdist was downloaded into the artifact cache, where a sync finds it.
    ((archive, filename),) = builder.calls
    assert filename == "demo_pkg-1.0.tar.gz" and archive.read_bytes() == body
    assert sha in archive.parts
    # Built metadata is cached by the sdist's sha256: a new fetcher does not build again.
    again = MetadataFetcher(http, tmp_path, builder=builder).get(f)
    assert again.requires_dist == meta.requires_dist and len(builder.calls) == 1


def test_static_sdist_never_asks_the_builder(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / "demo_pkg-1.0.tar.gz"
    path.write_bytes(make_sdist(STATIC))
    builder = RecordingBuilder(BUILT)
    meta = MetadataFetcher(http, None, builder=builder).get(dist(path.name, path.as_uri()))
    assert meta.requires_dist == (Requirement("six"),) and builder.calls == []


def test_sdist_without_pkg_info_asks_the_builder(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / "demo_pkg-1.0.tar.gz"
    path.write_bytes(make_sdist(STATIC, top="a/b"))
    builder = RecordingBuilder(BUILT)
    meta = MetadataFetcher(http, None, builder=builder).get(dist(path.name, path.as_uri()))
    assert meta.requires_dist == (Requirement("attrs>=22"),) and len(builder.calls) == 1


def test_built_metadata_must_name_the_sdist(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / "demo_pkg-1.0.tar.gz"
    path.write_bytes(make_sdist(STATIC.replace(b"2.2", b"2.1")))
    builder = RecordingBuilder(BUILT.replace(b"Version: 1.0", b"Version: 2.0"))
    with pytest.raises(MetadataError, match=r"metadata says demo-pkg 2.0.*demo-pkg 1.0"):
        MetadataFetcher(http, None, builder=builder).get(dist(path.name, path.as_uri()))


# -- artifact info -------------------------------------------------------------------------


def test_fetch_artifact_info(server: TinyServer, tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / WHEEL_FN
    path.write_bytes(WHEEL)
    assert fetch_artifact_info(http, dist(WHEEL_FN, path.as_uri())) == (WHEEL_SHA, len(WHEEL))
    server.routes[f"/f/{WHEEL_FN}"] = Route(body=WHEEL)
    url = server.url(f"/f/{WHEEL_FN}")
    assert fetch_artifact_info(http, dist(WHEEL_FN, url, sha256=WHEEL_SHA)) == (
        WHEEL_SHA,
        len(WHEEL),
    )
    assert server.count(f"/f/{WHEEL_FN}", "HEAD") == 1 and not _wheel_gets(server)
    assert fetch_artifact_info(http, dist(WHEEL_FN, url)) == (WHEEL_SHA, len(WHEEL))
    f = dataclasses.replace(dist(WHEEL_FN, url), size=len(WHEEL), sha256=WHEEL_SHA)
    gets = len(server.requests)
    assert fetch_artifact_info(http, f) == (WHEEL_SHA, len(WHEEL))
    assert len(server.requests) == gets


# -- the fixture index (real wheels and sdists over loopback HTTP) -------------------------


def _fixture_file(server: Any, http: HttpClient, project: str, *, wheel: bool) -> DistFile:
    from lockenv.lock.pypi.index import PackageIndex

    files = PackageIndex(http, [server.url_with_auth()]).files(project)
    return max((f for f in files if f.is_wheel == wheel), key=lambda f: f.version)


def _file_gets(server: Any, f: DistFile) -> list[str | None]:
    path = "/files/" + f.filename
    return [h.get("range") for m, p, h in server.requests if p == path and m == "GET"]


@pytest.mark.parametrize(
    ("options", "expect"),
    [
        ({}, "pep658"),
        ({"advertise_metadata": False}, "pep658"),  # served but not advertised
        ({"advertise_metadata": False, "metadata_files": False}, "ranges"),
        ({"metadata_files": False, "range_requests": False, "json_api": False}, "download"),
        ({"auth": ("u", "p"), "advertise_metadata": False, "metadata_files": False}, "ranges"),
    ],
)
def test_fixture_wheel_metadata(
    make_index_server: Any, http: HttpClient, options: dict[str, Any], expect: str
) -> None:
    server = make_index_server(**options)
    f = _fixture_file(server, http, "alpha", wheel=True)
    server.reset()
    meta = MetadataFetcher(http, None).get(f)
    assert (meta.name, str(meta.version)) == ("alpha", "2.0")
    assert meta.requires_dist == (Requirement("beta>=1"),)
    gets = _file_gets(server, f)
    if expect == "pep658":
        assert gets == []
    elif expect == "ranges":
        assert gets and all(r is not None for r in gets)
    else:
        assert len(gets) == 1


def test_fixture_sdists(index_server: Any, http: HttpClient) -> None:
    fetcher = MetadataFetcher(http, None)
    static = fetcher.get(_fixture_file(index_server, http, "sdistonly", wheel=False))
    assert static.requires_dist == (Requirement("alpha"),)
    dynamic = _fixture_file(index_server, http, "dynsdist", wheel=False)
    with pytest.raises(MetadataError, match=r"dynsdist 1.0 \(dynsdist-1.0.tar.gz\) has dynamic"):
        fetcher.get(dynamic)


def test_fixture_artifact_info(index_server: Any, http: HttpClient) -> None:
    f = _fixture_file(index_server, http, "alpha", wheel=True)
    bare = dataclasses.replace(f, sha256=None, size=None)
    assert fetch_artifact_info(http, bare) == (f.sha256, f.size)
