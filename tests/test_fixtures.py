"""The fixture package index: deterministic real artifacts and a server that speaks the APIs."""

from __future__ import annotations

import base64
import email.parser
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import parse_sdist_filename, parse_wheel_filename

from fixtures.build_index import build_index, load_releases
from fixtures.server import JSON_TYPE, IndexServer, _byte_span

MakeServer = Callable[..., IndexServer]


def _files(index: Path) -> list[Path]:
    return sorted((index / "files").iterdir())


def _wheels(index: Path) -> list[Path]:
    """The wheels build_index.py makes (not the vendored third-party ones)."""
    return [
        p
        for p in _files(index)
        if p.suffix == ".whl" and not p.name.startswith(("flit_core-", "setuptools-"))
    ]


def _sdists(index: Path) -> list[Path]:
    return [p for p in _files(index) if p.name.endswith(".tar.gz")]


def _parse_metadata(data: bytes) -> Message:
    return email.parser.BytesParser().parsebytes(data)


def _page(index: Path, project: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((index / "simple" / project / "index.json").read_text())
    return doc


def _client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


# --- build ----------------------------------------------------------------------------


def test_build_is_byte_identical(tmp_path: Path) -> None:
    first = build_index(tmp_path / "one")
    second = build_index(tmp_path / "two")
    one = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    two = {p.relative_to(second): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []


def test_rebuild_into_same_dir_replaces_stale_files(tmp_path: Path) -> None:
    build_index(tmp_path)
    (tmp_path / "files" / "stale-0.1-py3-none-any.whl").write_bytes(b"x")
    build_index(tmp_path)
    assert not (tmp_path / "files" / "stale-0.1-py3-none-any.whl").exists()


EXPECTED_VERSIONS = [
    ("alpha", ["1.0", "1.1", "2.0"]),
    ("beta", ["1.0", "1.5", "2.0b1"]),
    ("gamma", ["1.0"]),
    ("delta", ["1.0", "1.1"]),
    ("epsilon", ["0.9"]),
    ("colorish", ["1.0"]),
    ("clicky", ["8.0"]),
    ("numfast", ["1.0", "2.0"]),
    ("sdistonly", ["1.0"]),
    ("dynsdist", ["1.0"]),
    ("yankee", ["1.0", "1.1"]),
    ("prerel", ["1.0a1", "1.0b2"]),
    ("shared", ["1.0", "1.5", "2.0"]),
    ("conflict-a", ["1.0", "2.0"]),
    ("conflict-b", ["1.0"]),
    ("direct-a", ["1.0", "2.0", "3.0"]),
    ("direct-b", ["1.0"]),
    ("trans", ["1.0", "2.0"]),
    ("gui-app", ["1.0"]),
    ("markers-pkg", ["1.0"]),
    ("oldpy", ["1.0", "2.0"]),
    ("unsat-x", ["1.0"]),
    ("sourcy", ["1.0", "2.0"]),
    ("macnew", ["1.0", "2.0"]),
    ("tinybackend", ["1.0"]),
    ("tinysdist", ["1.0"]),
    ("tinydyn", ["1.0"]),
    ("flitsdist", ["1.0"]),
    ("brokensdist", ["1.0"]),
    ("nobackend", ["1.0"]),
    ("liarsdist", ["1.0"]),
    # Real wheels of build backends (fixtures/index_src/wheels, see PROVENANCE.md).
    ("flit-core", ["4.1.0"]),
    ("setuptools", ["84.0.0"]),
]


@pytest.mark.parametrize(("project", "versions"), EXPECTED_VERSIONS)
def test_project_versions(fixture_index_dir: Path, project: str, versions: list[str]) -> None:
    assert _page(fixture_index_dir, project)["versions"] == versions


EXPECTED_REQUIRES = [
    ("alpha-1.0-py3-none-any.whl", []),
    ("alpha-2.0-py3-none-any.whl", ["beta>=1"]),
    (
        "gamma-1.0-py3-none-any.whl",
        ['delta>=1.1; extra == "fast"', 'delta; extra == "all"', 'epsilon; extra == "all"'],
    ),
    ("clicky-8.0-py3-none-any.whl", ['colorish; platform_system == "Windows"']),
    ("conflict_a-2.0-py3-none-any.whl", ["shared<2"]),
    ("conflict_a-1.0-py3-none-any.whl", ["shared>=1"]),
    ("conflict_b-1.0-py3-none-any.whl", ["shared>=2"]),
    ("direct_a-3.0-py3-none-any.whl", ["trans<2"]),
    ("direct_a-2.0-py3-none-any.whl", ["trans"]),
    ("direct_b-1.0-py3-none-any.whl", ["trans"]),
    (
        "markers_pkg-1.0-py3-none-any.whl",
        [
            'delta; sys_platform == "darwin"',
            'epsilon; python_version < "3.12"',
            'colorish; os_name == "nt"',
        ],
    ),
    ("unsat_x-1.0-py3-none-any.whl", ["shared>=3"]),
]


@pytest.mark.parametrize(("filename", "requires"), EXPECTED_REQUIRES)
def test_wheel_requires_dist(fixture_index_dir: Path, filename: str, requires: list[str]) -> None:
    meta = _parse_metadata((fixture_index_dir / "files" / f"{filename}.metadata").read_bytes())
    assert meta.get_all("Requires-Dist", []) == requires


def test_gamma_provides_extras(fixture_index_dir: Path) -> None:
    meta = _parse_metadata(
        (fixture_index_dir / "files/gamma-1.0-py3-none-any.whl.metadata").read_bytes()
    )
    assert meta.get_all("Provides-Extra") == ["all", "fast"]


@pytest.mark.parametrize(
    ("filename", "requires_python"),
    [
        ("oldpy-1.0-py3-none-any.whl", ">=3.8"),
        ("oldpy-2.0-py3-none-any.whl", "<3.8"),
        ("numfast-2.0-cp311-cp311-win_amd64.whl", ">=3.12"),
        ("numfast-1.0-cp311-cp311-win_amd64.whl", None),
    ],
)
def test_requires_python(
    fixture_index_dir: Path, filename: str, requires_python: str | None
) -> None:
    meta = _parse_metadata((fixture_index_dir / "files" / f"{filename}.metadata").read_bytes())
    assert meta.get("Requires-Python") == requires_python


def test_alpha_upload_times(fixture_index_dir: Path) -> None:
    files = _page(fixture_index_dir, "alpha")["files"]
    times = {f["filename"]: f["upload-time"] for f in files}
    assert times["alpha-1.0-py3-none-any.whl"] == "2024-01-01T00:00:00Z"
    assert times["alpha-1.1.tar.gz"] == "2024-06-01T00:00:00Z"
    assert times["alpha-2.0-py3-none-any.whl"] == "2025-06-01T00:00:00Z"
    assert _page(fixture_index_dir, "beta")["files"][0]["upload-time"] == "2024-03-01T00:00:00Z"


def test_numfast_is_platform_wheels_only(fixture_index_dir: Path) -> None:
    names = [p.name for p in _files(fixture_index_dir) if p.name.startswith("numfast-")]
    wheels = [n for n in names if n.endswith(".whl")]
    assert len(wheels) == 2 * 3 * 5
    assert not [n for n in names if n.endswith(".tar.gz")]
    assert "numfast-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" in wheels
    assert "numfast-2.0-cp312-cp312-macosx_11_0_arm64.whl" in wheels
    with zipfile.ZipFile(fixture_index_dir / "files" / wheels[0]) as archive:
        wheel = archive.read("numfast-1.0.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false" in wheel


def test_sdist_only_projects(fixture_index_dir: Path) -> None:
    names = {p.name for p in _files(fixture_index_dir)}
    assert "sdistonly-1.0.tar.gz" in names and "dynsdist-1.0.tar.gz" in names
    assert not [n for n in names if n.startswith(("sdistonly-", "dynsdist-")) and ".whl" in n]
    static = _pkg_info(fixture_index_dir / "files" / "sdistonly-1.0.tar.gz")
    assert static["Metadata-Version"] == "2.2"
    assert static.get_all("Dynamic") is None
    assert static.get_all("Requires-Dist") == ["alpha"]
    dynamic = _pkg_info(fixture_index_dir / "files" / "dynsdist-1.0.tar.gz")
    assert dynamic["Metadata-Version"] == "2.2"
    assert dynamic.get_all("Dynamic") == ["Requires-Dist"]


def test_yanked_version(fixture_index_dir: Path) -> None:
    files = _page(fixture_index_dir, "yankee")["files"]
    assert {f["filename"]: f["yanked"] for f in files} == {
        "yankee-1.0-py3-none-any.whl": False,
        "yankee-1.0.tar.gz": False,
        "yankee-1.1-py3-none-any.whl": "broken build",
        "yankee-1.1.tar.gz": "broken build",
    }
    page = (fixture_index_dir / "simple/yankee/index.html").read_text()
    assert page.count('data-yanked="broken build"') == 2


def test_html_escapes_requires_python(fixture_index_dir: Path) -> None:
    page = (fixture_index_dir / "simple/oldpy/index.html").read_text()
    assert 'data-requires-python="&lt;3.8"' in page
    assert 'data-requires-python="&gt;=3.8"' in page


def test_json_pages_match_files(fixture_index_dir: Path) -> None:
    root = json.loads((fixture_index_dir / "simple/index.json").read_text())
    projects = [p["name"] for p in root["projects"]]
    assert projects == sorted(name for name, _ in EXPECTED_VERSIONS)
    for project in projects:
        page = _page(fixture_index_dir, project)
        assert page["meta"] == {"api-version": "1.1"}
        assert page["name"] == project
        for entry in page["files"]:
            data = (fixture_index_dir / "simple" / project / entry["url"]).resolve().read_bytes()
            assert entry["hashes"] == {"sha256": hashlib.sha256(data).hexdigest()}
            assert entry["size"] == len(data)
            if entry["filename"].endswith(".whl"):
                meta = (fixture_index_dir / "files" / f"{entry['filename']}.metadata").read_bytes()
                digest = {"sha256": hashlib.sha256(meta).hexdigest()}
                assert entry["core-metadata"] == entry["dist-info-metadata"] == digest
            else:
                assert entry["core-metadata"] is False


VENDORED = {"flit-core", "setuptools"}  # real third-party wheels, copied as they are


def test_every_release_is_in_the_index(fixture_index_dir: Path) -> None:
    pairs = {(r.project, r.version) for r in load_releases()}
    expected = {(p, v) for p, versions in EXPECTED_VERSIONS for v in versions}
    assert pairs == {(p, v) for p, v in expected if p not in VENDORED}


def test_vendored_wheels_are_copied_byte_for_byte(fixture_index_dir: Path) -> None:
    source = Path(__file__).resolve().parent.parent / "fixtures" / "index_src" / "wheels"
    wheels = sorted(source.glob("*.whl"))
    assert {parse_wheel_filename(w.name)[0] for w in wheels} == VENDORED
    for wheel in wheels:
        assert (fixture_index_dir / "files" / wheel.name).read_bytes() == wheel.read_bytes()
        provenance = (source / "PROVENANCE.md").read_text()
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in provenance


# --- artifacts are real -----------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_wheels_are_valid(fixture_index_dir: Path) -> None:
    wheels = _wheels(fixture_index_dir)
    assert len(wheels) > 50
    for path in wheels:
        name, version, _, tags = parse_wheel_filename(path.name)
        dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            members = {info.filename: archive.read(info) for info in infos}
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in infos), path.name
        assert [i.filename for i in infos][-1] == f"{dist_info}/RECORD"

        record = members[f"{dist_info}/RECORD"].decode().splitlines()
        rows = [line.rsplit(",", 2) for line in record]
        assert {row[0] for row in rows} == set(members), path.name
        for member, digest, size in rows:
            if member == f"{dist_info}/RECORD":
                assert (digest, size) == ("", "")
            else:
                assert digest == _record_hash(members[member]), (path.name, member)
                assert int(size) == len(members[member])

        meta = _parse_metadata(members[f"{dist_info}/METADATA"])
        assert meta["Metadata-Version"] in ("2.1", "2.2", "2.3", "2.4")
        assert meta["Version"] == str(version)
        assert meta["Name"].replace("-", "_") == name.replace("-", "_")
        assert (fixture_index_dir / "files" / f"{path.name}.metadata").read_bytes() == members[
            f"{dist_info}/METADATA"
        ]

        wheel = _parse_metadata(members[f"{dist_info}/WHEEL"])
        assert wheel["Wheel-Version"] == "1.0"
        assert {str(t) for t in tags} == set(wheel.get_all("Tag", []))
        pure = wheel["Root-Is-Purelib"] == "true"
        assert pure == (str(next(iter(tags))) == "py3-none-any")

        init = members[f"{name.replace('-', '_')}/__init__.py"].decode()
        namespace: dict[str, object] = {}
        exec(init, namespace)
        assert namespace["__version__"] == str(version)


def test_sdists_are_valid(fixture_index_dir: Path) -> None:
    for path in _sdists(fixture_index_dir):
        name, version = parse_sdist_filename(path.name)
        top = f"{name.replace('-', '_')}-{version}"
        data = path.read_bytes()
        assert data[4:8] == b"\0\0\0\0"  # gzip mtime 0
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as archive:
            members = archive.getmembers()
        assert all(m.name.startswith(f"{top}/") and m.isfile() for m in members)
        assert all(m.uid == 0 and m.uname == "" and m.mtime == 315532800 for m in members)
        assert f"{top}/PKG-INFO" in {m.name for m in members}
        assert _pkg_info(path)["Version"] == str(version)


def _pkg_info(sdist: Path) -> Message:
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        handle = archive.extractfile(f"{top}/PKG-INFO")
        assert handle is not None
        return _parse_metadata(handle.read())


def test_gui_app_wheel_layout(fixture_index_dir: Path) -> None:
    with zipfile.ZipFile(fixture_index_dir / "files/gui_app-1.0-py3-none-any.whl") as archive:
        names = set(archive.namelist())
        script = archive.read("gui_app-1.0.data/scripts/gui-app-tool")
        entry_points = archive.read("gui_app-1.0.dist-info/entry_points.txt").decode()
        mode = archive.getinfo("gui_app-1.0.data/scripts/gui-app-tool").external_attr >> 16
    assert {
        "gui_app-1.0.data/headers/gui_app.h",
        "gui_app-1.0.data/data/share/gui-app/readme.txt",
    } <= names
    assert script.startswith(b"#!python\n")
    assert mode & 0o777 == 0o755
    assert "[gui_scripts]\ngui-app = gui_app:main\n" in entry_points
    assert "[console_scripts]\n" in entry_points


def test_clicky_entry_point_runs(fixture_index_dir: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(fixture_index_dir / "files/clicky-8.0-py3-none-any.whl") as archive:
        assert (
            "clicky = clicky.cli:main"
            in archive.read("clicky-8.0.dist-info/entry_points.txt").decode()
        )
        archive.extractall(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", "import clicky.cli as c; raise SystemExit(c.main())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "clicky ok\n")


# --- server -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "json_api", "expected"),
    [
        (JSON_TYPE, True, "json"),
        ("application/vnd.pypi.simple.latest+json", True, "json"),
        (f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01", True, "json"),
        (f"text/html, {JSON_TYPE};q=0.5", True, "html"),
        (f"text/html, {JSON_TYPE}", True, "json"),
        (f"{JSON_TYPE};q=0", True, "html"),
        ("text/html", True, "html"),
        ("*/*", True, "html"),
        (None, True, "html"),
        (JSON_TYPE, False, "html"),
    ],
)
def test_content_negotiation(
    make_index_server: MakeServer, accept: str | None, json_api: bool, expected: str
) -> None:
    server = make_index_server(json_api=json_api)
    headers = {} if accept is None else {"Accept": accept}
    with _client() as client:
        response = client.get(server.url + "alpha/", headers=headers)
    assert response.status_code == 200
    if expected == "json":
        assert response.headers["content-type"] == JSON_TYPE
        assert response.json()["name"] == "alpha"
    else:
        assert response.headers["content-type"].startswith("text/html")
        assert "alpha-1.0-py3-none-any.whl" in response.text


def test_root_listing_and_unknown_project(index_server: IndexServer) -> None:
    with _client() as client:
        assert 'href="alpha/"' in client.get(index_server.url).text
        root = client.get(index_server.url, headers={"Accept": JSON_TYPE}).json()
        assert {"name": "numfast"} in root["projects"]
        assert client.get(index_server.url + "no-such-project/").status_code == 404
        assert client.get(index_server.base + "/files/nope.whl").status_code == 404


@pytest.mark.parametrize("path", ["Conflict_A/", "conflict.a", "conflict-a"])
def test_redirect_to_normalized_name(index_server: IndexServer, path: str) -> None:
    with _client() as client:
        response = client.get(index_server.url + path)
    assert response.status_code == 301
    assert response.headers["location"] == "/simple/conflict-a/"


def test_etag_and_if_none_match(make_index_server: MakeServer) -> None:
    server = make_index_server()
    url = server.files_url + "alpha-1.0-py3-none-any.whl"
    with _client() as client:
        first = client.get(url)
        etag = first.headers["etag"]
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        page = client.get(server.url + "alpha/", headers={"Accept": JSON_TYPE})
        cached = client.get(
            server.url + "alpha/",
            headers={"Accept": JSON_TYPE, "If-None-Match": page.headers["etag"]},
        )
        assert cached.status_code == 304
    without = make_index_server(etag=False)
    with _client() as client:
        response = client.get(
            without.files_url + "alpha-1.0-py3-none-any.whl", headers={"If-None-Match": etag}
        )
    assert response.status_code == 200 and "etag" not in response.headers


@pytest.mark.parametrize(
    ("range_header", "status", "piece"),
    [
        ("bytes=0-9", 206, slice(0, 10)),
        ("bytes=10-", 206, slice(10, None)),
        ("bytes=-22", 206, slice(-22, None)),
        ("bytes=0-0,5-6", 200, slice(None)),
        ("bytes=999999-", 416, slice(0, 0)),
    ],
)
def test_range_requests(
    index_server: IndexServer, fixture_index_dir: Path, range_header: str, status: int, piece: slice
) -> None:
    filename = "beta-1.5-py3-none-any.whl"
    data = (fixture_index_dir / "files" / filename).read_bytes()
    with _client() as client:
        response = client.get(index_server.files_url + filename, headers={"Range": range_header})
    assert response.status_code == status
    assert response.content == data[piece]
    if status == 206:
        start = piece.start % len(data) if piece.start is not None else 0
        end = start + len(data[piece]) - 1
        assert response.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"


def test_range_requests_disabled(make_index_server: MakeServer, fixture_index_dir: Path) -> None:
    server = make_index_server(range_requests=False)
    filename = "beta-1.5-py3-none-any.whl"
    with _client() as client:
        response = client.get(server.files_url + filename, headers={"Range": "bytes=-10"})
    assert response.status_code == 200
    assert response.content == (fixture_index_dir / "files" / filename).read_bytes()
    assert "accept-ranges" not in response.headers


def test_head_has_length_and_no_body(index_server: IndexServer, fixture_index_dir: Path) -> None:
    filename = "gamma-1.0-py3-none-any.whl"
    with _client() as client:
        response = client.head(index_server.files_url + filename)
    assert response.status_code == 200
    assert (
        int(response.headers["content-length"])
        == (fixture_index_dir / "files" / filename).stat().st_size
    )
    assert response.content == b""


def test_metadata_file_equals_wheel_metadata(
    index_server: IndexServer, fixture_index_dir: Path
) -> None:
    filename = "gamma-1.0-py3-none-any.whl"
    with zipfile.ZipFile(fixture_index_dir / "files" / filename) as archive:
        expected = archive.read("gamma-1.0.dist-info/METADATA")
    with _client() as client:
        page = client.get(index_server.url + "gamma/", headers={"Accept": JSON_TYPE}).json()
        response = client.get(index_server.files_url + filename + ".metadata")
    assert response.content == expected
    entry = next(f for f in page["files"] if f["filename"] == filename)
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(expected).hexdigest()}


def test_metadata_options(make_index_server: MakeServer) -> None:
    hidden = make_index_server(advertise_metadata=False, metadata_files=False)
    with _client() as client:
        page = client.get(hidden.url + "gamma/", headers={"Accept": JSON_TYPE}).json()
        html = client.get(hidden.url + "gamma/").text
        missing = client.get(hidden.files_url + "gamma-1.0-py3-none-any.whl.metadata")
    assert all("core-metadata" not in f and "dist-info-metadata" not in f for f in page["files"])
    assert "metadata=" not in html and "#sha256=" in html
    assert missing.status_code == 404


def test_basic_auth(make_index_server: MakeServer) -> None:
    server = make_index_server(auth=("user", "s3cret"))
    with _client() as client:
        denied = client.get(server.url + "alpha/")
        wrong = client.get(server.url + "alpha/", auth=("user", "nope"))
        allowed = client.get(server.url + "alpha/", auth=("user", "s3cret"))
        file_denied = client.get(server.files_url + "alpha-1.0-py3-none-any.whl")
    assert denied.status_code == wrong.status_code == file_denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Basic ")
    assert allowed.status_code == 200
    assert server.url_with_auth().startswith("http://user:s3cret@127.0.0.1:")


def test_corrupt_fail_and_request_log(make_index_server: MakeServer) -> None:
    server = make_index_server()
    filename = "alpha-1.0-py3-none-any.whl"
    server.corrupt(filename, b"not a wheel")
    server.fail("/simple/alpha/", status=503, times=1)
    with _client() as client:
        assert client.get(server.files_url + filename).content == b"not a wheel"
        assert client.get(server.url + "alpha/").status_code == 503
        assert client.get(server.url + "alpha/", headers={"Accept": JSON_TYPE}).status_code == 200
    method, path, headers = server.requests[-1]
    assert (method, path, headers["accept"]) == ("GET", "/simple/alpha/", JSON_TYPE)
    assert server.paths() == [f"/files/{filename}", "/simple/alpha/", "/simple/alpha/"]
    server.reset()
    assert server.requests == []


def test_paths_cannot_escape_the_index(index_server: IndexServer) -> None:
    with _client() as client:
        for path in (
            "/files/..%2Fsimple%2Findex.html",
            "/files/%2E%2E",
            "/simple/..%2F..%2F/",
            "/etc/passwd",
        ):
            assert client.get(index_server.base + path).status_code == 404, path


@given(
    size=st.integers(0, 300),
    first=st.integers(0, 400) | st.none(),
    last=st.integers(0, 400) | st.none(),
)
def test_byte_span_property(size: int, first: int | None, last: int | None) -> None:
    if first is None and last is None:
        return
    span = _byte_span("" if first is None else str(first), "" if last is None else str(last), size)
    data = bytes(range(256)) * 2
    body = data[:size]
    if span is None:
        return
    start, end = span
    assert 0 <= start <= end < size
    expected = (
        body[-last:] if first is None and last else body[first : None if last is None else last + 1]
    )
    assert body[start : end + 1] == expected


# --- isolation -----------------------------------------------------------------------------


def test_environment_is_isolated() -> None:
    assert os.environ["PIP_CONFIG_FILE"] == os.devnull
    assert "PIP_INDEX_URL" not in os.environ
    assert not Path(os.environ["NETRC"]).exists()
    assert Path(os.environ["LOCKENV_CACHE_DIR"]).is_dir()


@pytest.mark.network
def test_network_tests_only_run_when_enabled() -> None:
    assert os.environ.get("LOCKENV_NETWORK_TESTS") == "1"
