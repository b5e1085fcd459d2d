"""The fixture conda channel: deterministic real packages, honest repodata, a static server."""

from __future__ import annotations

import bz2
import email.utils
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

from fixtures.build_channel import (
    PLATFORM_SUBDIRS,
    SUBDIRS,
    build_channel,
    load_packages,
    placeholder_prefix,
)
from fixtures.server import StaticServer, serve_static
from lockenv.sync.conda.archive import extract_package, read_index_json

PLACEHOLDER = placeholder_prefix()


def _repodata(channel: Path, subdir: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((channel / subdir / "repodata.json").read_bytes())
    return doc


def _records(channel: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(subdir, filename, record) for every package of every subdir."""
    out = []
    for subdir in SUBDIRS:
        doc = _repodata(channel, subdir)
        for key in ("packages", "packages.conda"):
            out += [(subdir, fn, rec) for fn, rec in doc[key].items()]
    return out


def _client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


# --- build ----------------------------------------------------------------------------


def test_build_is_byte_identical(tmp_path: Path) -> None:
    first = build_channel(tmp_path / "one")
    second = build_channel(tmp_path / "two")
    one = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    two = {p.relative_to(second): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    assert one.keys() == two.keys()
    assert [k for k in one if one[k] != two[k]] == []


def test_rebuild_into_same_dir_replaces_stale_files(tmp_path: Path) -> None:
    build_channel(tmp_path)
    stale = tmp_path / "noarch" / "stale-1.0-0.conda"
    stale.write_bytes(b"x")
    build_channel(tmp_path)
    assert not stale.exists()


def test_every_subdir_has_repodata_in_three_encodings(fixture_channel_dir: Path) -> None:
    for subdir in SUBDIRS:
        raw = (fixture_channel_dir / subdir / "repodata.json").read_bytes()
        zst = (fixture_channel_dir / subdir / "repodata.json.zst").read_bytes()
        bz = (fixture_channel_dir / subdir / "repodata.json.bz2").read_bytes()
        assert zstandard.ZstdDecompressor().decompress(zst) == raw
        assert bz2.decompress(bz) == raw
        doc = json.loads(raw)
        assert doc["info"] == {"subdir": subdir}
        assert doc["repodata_version"] == 1
        assert doc["removed"] == []


def test_repodata_hashes_and_sizes_match_files(fixture_channel_dir: Path) -> None:
    records = _records(fixture_channel_dir)
    assert len(records) > 50
    for subdir, filename, record in records:
        data = (fixture_channel_dir / subdir / filename).read_bytes()
        assert record["sha256"] == hashlib.sha256(data).hexdigest(), filename
        assert record["md5"] == hashlib.md5(data).hexdigest(), filename
        assert record["size"] == len(data), filename
        assert record["subdir"] == subdir
        assert filename.removesuffix(".conda").removesuffix(".tar.bz2") == (
            f"{record['name']}-{record['version']}-{record['build']}"
        )
        assert isinstance(record["timestamp"], int) and record["timestamp"] > 10**12  # ms


def test_every_package_exists_in_both_formats(fixture_channel_dir: Path) -> None:
    for subdir in SUBDIRS:
        doc = _repodata(fixture_channel_dir, subdir)
        stems = {fn.removesuffix(".tar.bz2") for fn in doc["packages"]}
        assert stems == {fn.removesuffix(".conda") for fn in doc["packages.conda"]}
        on_disk = {p.name for p in (fixture_channel_dir / subdir).iterdir()}
        assert on_disk == {"repodata.json", "repodata.json.zst", "repodata.json.bz2"} | {
            s + ext for s in stems for ext in (".conda", ".tar.bz2")
        }
        for stem in stems:
            tar_rec = dict(doc["packages"][stem + ".tar.bz2"])
            conda_rec = dict(doc["packages.conda"][stem + ".conda"])
            for rec in (tar_rec, conda_rec):
                for key in ("md5", "sha256", "size"):
                    del rec[key]
            assert tar_rec == conda_rec


def test_repodata_record_is_index_json_plus_hashes(fixture_channel_dir: Path) -> None:
    for subdir, filename, record in _records(fixture_channel_dir):
        index = read_index_json(fixture_channel_dir / subdir / filename)
        assert {k: v for k, v in record.items() if k not in ("md5", "sha256", "size")} == index


def _find(channel: Path, subdir: str, name: str, version: str) -> list[dict[str, Any]]:
    doc = _repodata(channel, subdir)
    return [
        r for r in doc["packages.conda"].values() if r["name"] == name and r["version"] == version
    ]


EXPECTED = [
    # name, version, build, subdirs
    ("python", "3.11.7", "h_lockenv_0", PLATFORM_SUBDIRS),
    ("python", "3.12.1", "h_lockenv_0", PLATFORM_SUBDIRS),
    ("python_abi", "3.11", "5_cp311", PLATFORM_SUBDIRS),
    ("python_abi", "3.12", "5_cp312", PLATFORM_SUBDIRS),
    ("libzlib", "1.2.13", "h_lockenv_0", PLATFORM_SUBDIRS),
    ("libzlib", "1.3.1", "h_lockenv_0", PLATFORM_SUBDIRS),
    ("zlib", "1.3.1", "h_lockenv_0", PLATFORM_SUBDIRS),
    ("numpy-lite", "1.26.4", "h_lockenv_0", ("linux-64", "osx-arm64", "win-64")),
    ("numpy-lite", "2.0.0", "h_lockenv_0", ("linux-64", "osx-arm64", "win-64")),
    ("tool-py", "2.1.0", "pyh_lockenv_0", ("noarch",)),
    ("delta", "1.0", "pyh_lockenv_0", ("noarch",)),
    ("needs-glibc", "1.0", "h_lockenv_0", ("linux-64", "linux-aarch64")),
    ("needs-cuda", "1.0", "h_lockenv_0", ("linux-64", "win-64")),
    ("mac-only", "1.0", "h_lockenv_0", ("osx-arm64",)),
    ("win-thing", "1.0", "h_lockenv_0", ("win-64",)),
    ("constrained", "1.0", "h_lockenv_0", ("noarch",)),
    ("blas", "1.0", "mkl", PLATFORM_SUBDIRS),
    ("blas", "1.0", "openblas", PLATFORM_SUBDIRS),
    ("app", "1.0", "h_lockenv_0", ("noarch",)),
    ("app", "2.0", "h_lockenv_0", ("noarch",)),
    ("lib-a", "1.0", "h_lockenv_0", ("noarch",)),
    ("lib-a", "1.1", "h_lockenv_0", ("noarch",)),
    ("lib-a", "2.0", "h_lockenv_0", ("noarch",)),
    ("lib-a", "2.1", "h_lockenv_0", ("noarch",)),
    ("lib-b", "1.0", "h_lockenv_0", ("noarch",)),
    ("lib-b", "2.0", "h_lockenv_0", ("noarch",)),
    ("multi-build", "1.0", "h0_0", ("noarch",)),
    ("multi-build", "1.0", "h0_1", ("noarch",)),
    ("twin-builds", "1.0", "ha_0", ("noarch",)),
    ("twin-builds", "1.0", "hb_0", ("noarch",)),
]


def test_package_list_is_what_the_tests_expect(fixture_channel_dir: Path) -> None:
    expected = {
        (subdir, f"{name}-{version}-{build}.conda")
        for name, version, build, subdirs in EXPECTED
        for subdir in subdirs
    }
    actual = {
        (subdir, fn)
        for subdir in SUBDIRS
        for fn in _repodata(fixture_channel_dir, subdir)["packages.conda"]
    }
    assert actual == expected


@pytest.mark.parametrize(
    ("subdir", "name", "version", "key", "value"),
    [
        ("linux-64", "python", "3.11.7", "depends", ["__unix"]),
        ("linux-64", "python", "3.11.7", "constrains", ["python_abi 3.11.* *_cp311"]),
        ("osx-arm64", "python", "3.12.1", "depends", ["__unix"]),
        ("win-64", "python", "3.12.1", "depends", []),
        ("linux-64", "zlib", "1.3.1", "depends", ["libzlib 1.3.1 *_0"]),
        ("linux-64", "numpy-lite", "1.26.4", "depends", ["libzlib >=1.2", "python >=3.11,<3.13"]),
        ("win-64", "numpy-lite", "2.0.0", "depends", ["libzlib >=1.2", "python >=3.12,<3.13"]),
        ("noarch", "tool-py", "2.1.0", "noarch", "python"),
        ("noarch", "tool-py", "2.1.0", "depends", ["python >=3.8"]),
        ("noarch", "constrained", "1.0", "constrains", ["libzlib <1.3"]),
        ("noarch", "constrained", "1.0", "noarch", "generic"),
        ("linux-64", "needs-glibc", "1.0", "depends", ["__glibc >=2.17"]),
        ("win-64", "needs-cuda", "1.0", "depends", ["__cuda >=12"]),
        ("osx-arm64", "mac-only", "1.0", "depends", ["__osx >=11.0"]),
        ("win-64", "win-thing", "1.0", "depends", ["__win"]),
        ("noarch", "app", "2.0", "depends", ["lib-a 2.*", "lib-b"]),
        ("noarch", "lib-b", "2.0", "depends", ["lib-a >=3"]),
        ("linux-64", "python", "3.11.7", "arch", "x86_64"),
        ("linux-aarch64", "python", "3.11.7", "arch", "aarch64"),
        ("osx-arm64", "python", "3.11.7", "platform", "osx"),
        ("noarch", "app", "1.0", "arch", None),
    ],
)
def test_record_fields(
    fixture_channel_dir: Path, subdir: str, name: str, version: str, key: str, value: object
) -> None:
    (record,) = _find(fixture_channel_dir, subdir, name, version)
    assert record.get(key, []) == value


def test_track_features_is_a_space_separated_string(fixture_channel_dir: Path) -> None:
    records = {r["build"]: r for r in _find(fixture_channel_dir, "linux-64", "blas", "1.0")}
    assert records["mkl"]["track_features"] == "mkl_tf"
    assert "track_features" not in records["openblas"]
    # Only the track_features penalty can make a solver prefer openblas.
    assert records["mkl"]["timestamp"] > records["openblas"]["timestamp"]
    assert records["mkl"]["build_number"] == records["openblas"]["build_number"] == 0


def test_builds_differ_by_build_number_or_timestamp(fixture_channel_dir: Path) -> None:
    multi = {r["build"]: r for r in _find(fixture_channel_dir, "noarch", "multi-build", "1.0")}
    assert (multi["h0_0"]["build_number"], multi["h0_1"]["build_number"]) == (0, 1)
    twins = {r["build"]: r for r in _find(fixture_channel_dir, "noarch", "twin-builds", "1.0")}
    assert twins["ha_0"]["build_number"] == twins["hb_0"]["build_number"]
    assert twins["hb_0"]["timestamp"] > twins["ha_0"]["timestamp"]


def test_optional_keys_are_left_out_as_conda_index_does(fixture_channel_dir: Path) -> None:
    (record,) = _find(fixture_channel_dir, "noarch", "lib-a", "1.0")
    assert "constrains" not in record and "track_features" not in record
    (record,) = _find(fixture_channel_dir, "linux-64", "libzlib", "1.3.1")
    assert "noarch" not in record


def test_conda_archive_layout(fixture_channel_dir: Path) -> None:
    path = fixture_channel_dir / "linux-64" / "libzlib-1.3.1-h_lockenv_0.conda"
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [
            "metadata.json",
            "pkg-libzlib-1.3.1-h_lockenv_0.tar.zst",
            "info-libzlib-1.3.1-h_lockenv_0.tar.zst",
        ]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert json.loads(archive.read("metadata.json")) == {"conda_pkg_format_version": 2}


# --- package contents -----------------------------------------------------------------


def _unpack(channel: Path, subdir: str, filename: str, dest: Path) -> Path:
    extract_package(channel / subdir / filename, dest)
    return dest


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_libzlib_has_text_and_binary_placeholders(
    fixture_channel_dir: Path, tmp_path: Path
) -> None:
    root = _unpack(fixture_channel_dir, "linux-64", "libzlib-1.3.1-h_lockenv_0.conda", tmp_path)
    paths = {p["_path"]: p for p in _json(root / "info/paths.json")["paths"]}
    assert paths["etc/libzlib.conf"]["file_mode"] == "text"
    assert paths["lib/libzlib.so.1"]["file_mode"] == "binary"
    assert paths["lib/libzlib.so"]["path_type"] == "softlink"
    for key in ("etc/libzlib.conf", "lib/libzlib.so.1"):
        assert paths[key]["prefix_placeholder"] == PLACEHOLDER
    blob = (root / "lib/libzlib.so.1").read_bytes()
    assert blob.startswith(b"\x7fELF")
    assert PLACEHOLDER.encode() + b"/lib\x00" in blob  # NUL-terminated C string
    assert f"prefix={PLACEHOLDER}\n" in (root / "etc/libzlib.conf").read_text()
    assert (root / "info/has_prefix").read_text().splitlines() == [
        f"{PLACEHOLDER} text etc/libzlib.conf",
        f"{PLACEHOLDER} binary lib/libzlib.so.1",
    ]
    assert os.readlink(root / "lib/libzlib.so") == "libzlib.so.1"
    assert len(PLACEHOLDER) == 252 and PLACEHOLDER.startswith("/opt/lockenv_build_env")


def test_tool_py_is_noarch_python(fixture_channel_dir: Path, tmp_path: Path) -> None:
    root = _unpack(fixture_channel_dir, "noarch", "tool-py-2.1.0-pyh_lockenv_0.conda", tmp_path)
    assert _json(root / "info/link.json") == {
        "noarch": {"entry_points": ["tool-py = tool_py:main"], "type": "python"},
        "package_metadata_version": 1,
    }
    files = (root / "info/files").read_text().splitlines()
    assert "site-packages/tool_py/__init__.py" in files
    assert "python-scripts/tool-py-helper" in files
    assert all(f.startswith(("site-packages/", "python-scripts/")) for f in files)
    helper = (root / "python-scripts/tool-py-helper").read_text()
    assert helper.startswith(f"#!{PLACEHOLDER}/bin/python\n")
    assert os.access(root / "python-scripts/tool-py-helper", os.X_OK)
    assert _json(root / "info/index.json")["noarch"] == "python"


def test_zlib_marks_no_link_file(fixture_channel_dir: Path, tmp_path: Path) -> None:
    root = _unpack(fixture_channel_dir, "linux-64", "zlib-1.3.1-h_lockenv_0.tar.bz2", tmp_path)
    paths = {p["_path"]: p for p in _json(root / "info/paths.json")["paths"]}
    assert paths["share/zlib/copied-not-linked.txt"]["no_link"] is True
    assert "no_link" not in paths["include/zlib.h"]
    assert (root / "info/no_link").read_text() == "share/zlib/copied-not-linked.txt\n"


def test_python_package_layout(fixture_channel_dir: Path, tmp_path: Path) -> None:
    unix = _unpack(
        fixture_channel_dir, "osx-arm64", "python-3.12.1-h_lockenv_0.conda", tmp_path / "u"
    )
    paths = {p["_path"]: p for p in _json(unix / "info/paths.json")["paths"]}
    assert paths["bin/python3.12"]["file_mode"] == "text"
    assert paths["include/python3.12"] == {"_path": "include/python3.12", "path_type": "directory"}
    assert (unix / "include/python3.12").is_dir()
    assert os.readlink(unix / "bin/python") == "python3.12"
    win = _unpack(fixture_channel_dir, "win-64", "python-3.12.1-h_lockenv_0.conda", tmp_path / "w")
    assert (win / "python.bat").read_text().count(PLACEHOLDER) == 1
    assert (win / "Lib/site-packages/README.txt").is_file()
    assert not (win / "bin").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="the unix launcher is a /bin/sh script")
@pytest.mark.parametrize("host_from", ["LOCKENV_HOST_PYTHON", "PATH"])
def test_python_launcher_runs_the_host_interpreter(
    fixture_channel_dir: Path, tmp_path: Path, host_from: str
) -> None:
    prefix = tmp_path / "env"
    _unpack(fixture_channel_dir, "linux-64", "python-3.11.7-h_lockenv_0.conda", prefix)
    launcher = prefix / "bin/python3.11"
    # What the materializer does for a text placeholder.
    launcher.write_text(launcher.read_text().replace(PLACEHOLDER, str(prefix)))
    host_bin = tmp_path / "host-bin"
    host_bin.mkdir()
    (host_bin / "python3").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The environment's own bin/ comes first, as in an activated shell: no self-exec loop.
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{host_bin}{os.pathsep}{env.get('PATH', '')}"
    if host_from == "LOCKENV_HOST_PYTHON":
        env["LOCKENV_HOST_PYTHON"] = sys.executable
    else:
        env.pop("LOCKENV_HOST_PYTHON", None)
    code = "import sys; print(sys.path)"
    out = subprocess.run(
        [str(prefix / "bin/python"), "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert str(prefix / "lib/python3.11/site-packages") in out


def test_numpy_lite_ships_a_module_per_python(fixture_channel_dir: Path, tmp_path: Path) -> None:
    old = _unpack(
        fixture_channel_dir, "linux-64", "numpy-lite-1.26.4-h_lockenv_0.conda", tmp_path / "a"
    )
    files = (old / "info/files").read_text().splitlines()
    assert files == [
        "lib/python3.11/site-packages/numpy_lite/__init__.py",
        "lib/python3.12/site-packages/numpy_lite/__init__.py",
    ]
    new = _unpack(
        fixture_channel_dir, "win-64", "numpy-lite-2.0.0-h_lockenv_0.tar.bz2", tmp_path / "b"
    )
    text = (new / "Lib/site-packages/numpy_lite/__init__.py").read_text()
    assert '__version__ = "2.0.0"' in text


def test_sources_load_with_one_spec_per_subdir() -> None:
    specs = load_packages()
    assert len({(s.subdir, s.stem) for s in specs}) == len(specs)
    assert {s.subdir for s in specs} == set(SUBDIRS)


# --- serving --------------------------------------------------------------------------


def test_channel_server_serves_repodata_with_validators(
    channel_server: StaticServer, fixture_channel_dir: Path
) -> None:
    assert channel_server.url.endswith("/") and channel_server.url.startswith("http://127.0.0.1:")
    url = channel_server.url + "linux-64/repodata.json"
    with _client() as client:
        first = client.get(url)
        assert first.status_code == 200
        assert first.content == (fixture_channel_dir / "linux-64/repodata.json").read_bytes()
        assert first.headers["content-type"] == "application/json"
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        mtime = (fixture_channel_dir / "linux-64/repodata.json").stat().st_mtime
        assert email.utils.parsedate_to_datetime(modified).timestamp() == int(mtime)

        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag

        since = client.get(url, headers={"If-Modified-Since": modified})
        assert since.status_code == 304
        older = email.utils.formatdate(int(mtime) - 3600, usegmt=True)
        assert client.get(url, headers={"If-Modified-Since": older}).status_code == 200
        # An ETag that does not match wins over a date that does (RFC 9110).
        both = client.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
        assert both.status_code == 200


def test_channel_server_serves_packages_and_ranges(
    channel_server: StaticServer, fixture_channel_dir: Path
) -> None:
    name = "noarch/tool-py-2.1.0-pyh_lockenv_0.conda"
    data = (fixture_channel_dir / name).read_bytes()
    with _client() as client:
        assert client.get(channel_server.url + name).content == data
        part = client.get(channel_server.url + name, headers={"Range": "bytes=-22"})
        assert part.status_code == 206 and part.content == data[-22:]
        assert client.head(channel_server.url + name).headers["content-length"] == str(len(data))


@pytest.mark.parametrize(
    "path",
    ["linux-64/nope.conda", "linux-64/", "linux-64", "", "linux-64/../noarch/repodata.json"],
)
def test_channel_server_404(channel_server: StaticServer, path: str) -> None:
    # http.client sends the path as written; httpx would normalize '..' away.
    host, port = channel_server.base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/" + path)
        assert connection.getresponse().status == 404
    finally:
        connection.close()


def test_static_server_fault_injection(fixture_channel_dir: Path, tmp_path: Path) -> None:
    channel = tmp_path / "channel"
    shutil.copytree(fixture_channel_dir, channel)
    with serve_static(channel, last_modified=False) as server, _client() as client:
        server.fail("/noarch/repodata.json", 503)
        assert client.get(server.url + "noarch/repodata.json").status_code == 503
        assert client.get(server.url + "noarch/repodata.json").status_code == 200
        server.corrupt("noarch/repodata.json", b"{}")
        response = client.get(server.url + "noarch/repodata.json")
        assert response.content == b"{}" and "last-modified" not in response.headers
        assert server.paths("GET").count("/noarch/repodata.json") == 3
