"""lockenv.lock.conda.repodata: channels, repodata variants, caching, records, priority."""

from __future__ import annotations

import base64
import bz2
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from lockenv import http as lhttp
from lockenv.errors import IndexAccessError, ManifestError, OfflineError
from lockenv.http import HttpClient
from lockenv.lock.conda.repodata import (
    DEFAULT_CHANNEL_ALIAS,
    REPODATA_VARIANTS,
    Channel,
    ChannelClient,
    RepodataIndex,
    parse_repodata,
    split_track_features,
)
from lockenv.lock.conda.shards import SHARD_INDEX

ALIAS = DEFAULT_CHANNEL_ALIAS.rstrip("/")


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lhttp, "_RETRY_BACKOFF", 0.0)


# -- helpers -------------------------------------------------------------------------------


def rec(name: str, version: str = "1.0", build: str = "0", **extra: Any) -> dict[str, Any]:
    """A repodata entry with the fields conda-index writes."""
    return {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": [],
        "md5": "0" * 32,
        "sha256": "a" * 64,
        "size": 10,
        "subdir": extra.pop("subdir", "linux-64"),
        **extra,
    }


def fn(name: str, version: str = "1.0", build: str = "0", ext: str = ".conda") -> str:
    return f"{name}-{version}-{build}{ext}"


def repodata(
    *records: dict[str, Any],
    tar_bz2: tuple[dict[str, Any], ...] = (),
    subdir: str = "linux-64",
    **top: Any,
) -> dict[str, Any]:
    return {
        "info": {"subdir": subdir, **top.pop("info", {})},
        "packages": {fn(r["name"], r["version"], r["build"], ".tar.bz2"): r for r in tar_bz2},
        "packages.conda": {fn(r["name"], r["version"], r["build"]): r for r in records},
        "repodata_version": 1,
        **top,
    }


def encode(doc: dict[str, Any], variant: str = "repodata.json") -> bytes:
    data = json.dumps(doc).encode()
    if variant.endswith(".zst"):
        return zstandard.ZstdCompressor().compress(data)
    if variant.endswith(".bz2"):
        return bz2.compress(data)
    return data


def write_channel(
    root: Path,
    subdirs: dict[str, dict[str, Any]],
    variants: tuple[str, ...] = ("repodata.json",),
) -> Path:
    for subdir, doc in subdirs.items():
        (root / subdir).mkdir(parents=True, exist_ok=True)
        for variant in variants:
            (root / subdir / variant).write_bytes(encode(doc, variant))
    return root


CH = Channel(name="test", base_url="https://user:secret@host.example.invalid/ch")


@dataclass
class Served:
    body: bytes
    etag: str | None = None


@dataclass
class Server:
    """A stdlib HTTP server on 127.0.0.1 serving ``files`` (path -> Served)."""

    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)
    auth: tuple[str, str] | None = None
    status_override: int | None = None
    base: str = ""

    def serve_dir(self, root: Path, prefix: str = "/ch") -> None:
        for path in root.rglob("*"):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                self.files[f"{prefix}/{rel}"] = Served(path.read_bytes(), etag=f'"{rel}-1"')

    def statuses(self, suffix: str = "") -> list[tuple[str, int]]:
        return [(p, s) for p, s, _ in self.requests if p.endswith(suffix)]


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, extra = self._answer(headers)
            state.requests.append((self.path, status, headers))
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
            if state.auth is not None:
                token = base64.b64encode(":".join(state.auth).encode()).decode()
                if headers.get("authorization") != f"Basic {token}":
                    return 401, b"", {}
            if state.status_override is not None:
                return state.status_override, b"", {}
            served = state.files.get(self.path)
            if served is None:
                return 404, b"", {}
            extra = {"ETag": served.etag} if served.etag else {}
            if served.etag and headers.get("if-none-match") == served.etag:
                return 304, b"", extra
            return 200, served.body, extra

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02})
    thread.daemon = True
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def http(tmp_path: Path) -> Iterator[HttpClient]:
    with HttpClient(tmp_path / "cache") as client:
        yield client


# -- Channel.parse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "alias", "name", "base_url"),
    [
        ("conda-forge", None, "conda-forge", f"{ALIAS}/conda-forge"),
        (" conda-forge/ ", None, "conda-forge", f"{ALIAS}/conda-forge"),
        ("conda-forge/label/dev", None, "conda-forge/label/dev", f"{ALIAS}/conda-forge/label/dev"),
        (
            "bioconda",
            "https://mirror.example.invalid/conda/",
            "bioconda",
            "https://mirror.example.invalid/conda/bioconda",
        ),
        (
            "https://host.example.invalid/ch/",
            None,
            "https://host.example.invalid/ch/",
            "https://host.example.invalid/ch",
        ),
        (
            "HTTPS://host.example.invalid/ch/linux-64",
            None,
            "HTTPS://host.example.invalid/ch/linux-64",
            "https://host.example.invalid/ch",
        ),
        ("http://127.0.0.1:8080/ch", None, "http://127.0.0.1:8080/ch", "http://127.0.0.1:8080/ch"),
        (
            "https://user:tok@host.example.invalid/ch",
            None,
            "https://host.example.invalid/ch",
            "https://user:tok@host.example.invalid/ch",
        ),
        ("file:///srv/channel/", None, "file:///srv/channel/", "file:///srv/channel"),
        ("file:///srv/channel/noarch", None, "file:///srv/channel/noarch", "file:///srv/channel"),
        ("/srv/channel", None, "/srv/channel", "file:///srv/channel"),
        ("./local/ch", None, "./local/ch", "file:///project/local/ch"),
        ("../ch", None, "../ch", "file:///ch"),
    ],
)
def test_channel_parse(text: str, alias: str | None, name: str, base_url: str) -> None:
    channel = Channel.parse(text, alias=alias, root=Path("/project"))
    assert (channel.name, channel.base_url) == (name, base_url)


def test_channel_alias_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKENV_CHANNEL_ALIAS", "http://127.0.0.1:9/mirror")
    assert Channel.parse("conda-forge").base_url == "http://127.0.0.1:9/mirror/conda-forge"
    # The argument wins over the environment.
    assert Channel.parse("x", alias="file:///a/").base_url == "file:///a/x"


def test_channel_redacted_and_subdir_url() -> None:
    assert CH.redacted_url == "https://host.example.invalid/ch"
    assert CH.subdir_url("noarch") == "https://user:secret@host.example.invalid/ch/noarch"


@pytest.mark.parametrize(
    ("text", "alias", "message"),
    [
        ("", None, "empty channel"),
        ("   ", None, "empty channel"),
        ("s3://bucket/ch", None, "unsupported scheme 's3'"),
        ("ftp://u:pw@host.example.invalid/ch", None, "unsupported scheme 'ftp'"),
        ("bad name!", None, "invalid channel 'bad name!'"),
        ("conda-forge", "mirror.example.invalid", "channel alias"),
    ],
)
def test_channel_parse_rejects(text: str, alias: str | None, message: str) -> None:
    with pytest.raises(ManifestError, match=message) as info:
        Channel.parse(text, alias=alias)
    assert "pw" not in str(info.value)


_segment = st.from_regex(r"[a-z0-9_][a-z0-9_.-]{0,10}", fullmatch=True)


@given(st.lists(_segment, min_size=1, max_size=4))
def test_channel_parse_round_trip(segments: list[str]) -> None:
    """Parsing a channel's own base URL gives the same channel URL back."""
    channel = Channel.parse("/".join(segments), alias="https://mirror.example.invalid/")
    again = Channel.parse(channel.base_url)
    assert again.base_url == channel.base_url
    assert not channel.base_url.endswith("/")


# -- track_features ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        (None, ()),
        ("mkl", ("mkl",)),
        ("mkl nomkl", ("mkl", "nomkl")),
        ("mkl,nomkl", ("mkl", "nomkl")),
        (" mkl , nomkl\tblas ", ("mkl", "nomkl", "blas")),
        (["a b", "c"], ("a", "b", "c")),
        (7, ()),
    ],
)
def test_split_track_features(value: object, expected: tuple[str, ...]) -> None:
    assert split_track_features(value) == expected


@given(
    st.lists(st.from_regex(r"[A-Za-z0-9_.-]{1,8}", fullmatch=True), max_size=6),
    st.lists(st.sampled_from([",", " ", ", ", " ,", "\t", ",,"]), min_size=6, max_size=6),
)
def test_split_track_features_property(features: list[str], seps: list[str]) -> None:
    text = "".join(f + seps[i] for i, f in enumerate(features))
    assert split_track_features(text) == tuple(features)
    assert split_track_features(" , " + text) == tuple(features)


# -- parse_repodata ------------------------------------------------------------------------


def parse(doc: dict[str, Any], channel: Channel = CH, subdir: str = "linux-64") -> RepodataIndex:
    return parse_repodata(json.dumps(doc).encode(), channel=channel, subdir=subdir)


def test_conda_preferred_over_tar_bz2() -> None:
    index = parse(
        repodata(
            rec("a", "1.0"),
            tar_bz2=(rec("a", "1.0"), rec("a", "0.9"), rec("b")),
        )
    )
    assert [r.filename for r in index.get("a")] == ["a-0.9-0.tar.bz2", "a-1.0-0.conda"]
    assert [r.filename for r in index.get("b")] == ["b-1.0-0.tar.bz2"]
    assert index.get("missing") == ()
    assert sorted(index.names()) == ["a", "b"]


def test_removed_entries_skipped() -> None:
    doc = repodata(rec("a", "1.0"), rec("a", "2.0"), removed=["a-2.0-0.conda"])
    assert [r.version for r in parse(doc).get("a")] == ["1.0"]


def test_record_fields_and_credentials() -> None:
    doc = repodata(
        rec(
            "numpy",
            "1.26.4",
            "py312h0_0",
            build_number=3,
            depends=["python >=3.12,<3.13", "libblas"],
            constrains=["numpy-base <0a0"],
            track_features="mkl, blas",
            timestamp=1700000000,
            noarch=None,
            license="BSD-3-Clause",
            sha256="A" * 64,
        )
    )
    (record,) = parse(doc).get("numpy")
    assert record.build_number == 3
    assert record.depends == ("python >=3.12,<3.13", "libblas")
    assert record.constrains == ("numpy-base <0a0",)
    assert record.track_features == ("mkl", "blas")
    assert record.timestamp == 1700000000000
    assert record.noarch is None
    assert record.license == "BSD-3-Clause"
    assert record.sha256 == "a" * 64
    assert record.size == 10
    assert record.subdir == "linux-64"
    # Downloads need the credentials; the channel field is what gets shown and locked.
    assert record.url == (
        "https://user:secret@host.example.invalid/ch/linux-64/numpy-1.26.4-py312h0_0.conda"
    )
    assert record.channel == "https://host.example.invalid/ch"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000000, 1700000000000),  # seconds
        (1700000000123, 1700000000123),  # already milliseconds
        (1700000000.5, 1700000000000),
        (None, None),
        ("yesterday", None),
        (True, None),
    ],
)
def test_timestamp_normalised_to_ms(value: object, expected: int | None) -> None:
    (record,) = parse(repodata(rec("a", timestamp=value))).get("a")
    assert record.timestamp == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, "generic"), ("generic", "generic"), ("python", "python"), (None, None), (False, None)],
)
def test_noarch_normalised(value: object, expected: str | None) -> None:
    (record,) = parse(repodata(rec("a", noarch=value))).get("a")
    assert record.noarch == expected


@pytest.mark.parametrize(
    ("base_url", "expected_prefix"),
    [
        ("https://cdn.example.invalid/pkgs/", "https://cdn.example.invalid/pkgs/"),
        ("https://cdn.example.invalid/pkgs", "https://cdn.example.invalid/pkgs/"),
        ("./", "https://user:secret@host.example.invalid/ch/linux-64/"),
        ("../files/", "https://user:secret@host.example.invalid/ch/files/"),
        ("", "https://user:secret@host.example.invalid/ch/linux-64/"),
    ],
)
def test_repodata_v2_base_url(base_url: str, expected_prefix: str) -> None:
    doc = repodata(rec("a"), info={"base_url": base_url}, repodata_version=2)
    (record,) = parse(doc).get("a")
    assert record.url == expected_prefix + "a-1.0-0.conda"
    assert record.channel == "https://host.example.invalid/ch"


def test_base_url_with_local_scheme_from_remote_channel_rejected() -> None:
    doc = repodata(rec("a"), info={"base_url": "file:///etc/"}, repodata_version=2)
    with pytest.raises(IndexAccessError, match=r"corrupt.*base_url"):
        parse(doc)


def test_invalid_records_are_skipped() -> None:
    bad_version = rec("a", "1.0")
    del bad_version["version"]
    doc = repodata(rec("a", "2.0"), rec("a", "3.0", depends="python"))
    doc["packages.conda"]["a-1.0-0.conda"] = bad_version
    doc["packages.conda"]["../../a-9-0.conda"] = rec("a", "9")
    doc["packages.conda"]["a-8-0.whl"] = rec("a", "8")
    doc["packages.conda"]["a-7-0.conda"] = rec("a", "7", build_number="x")
    doc["packages.conda"]["noname-1-0.conda"] = {"version": "1"}
    assert [r.version for r in parse(doc).get("a")] == ["2.0"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "JSONDecodeError"),
        (b"[]", "top level is a list"),
        (b'{"packages": []}', "bad type"),
        (b'{"packages": {"a-1-0.tar.bz2": {}}, "removed": {}}', "bad type"),
        (b'{"info": []}', "bad type"),
        (b'"repodata"', "top level is a str"),
        (b"\x28\xb5\x2f\xfd garbage", "zstd"),
        (b"BZh9 garbage", "OSError"),
        (b'{"info": {"a": "\xff"}}', "UTF-8"),
        (b'{"packages": {"a-1-0.tar.bz2": {}} trailing', "JSONDecodeError"),
        (b'{"packages": {"a-1-0.tar.bz2": {"depends": [}}}', "JSONDecodeError"),
    ],
)
def test_corrupt_repodata(data: bytes, reason: str) -> None:
    with pytest.raises(IndexAccessError, match="corrupt") as info:
        parse_repodata(data, channel=CH, subdir="noarch")
    message = str(info.value)
    assert reason in message
    assert "https://host.example.invalid/ch/noarch/repodata.json" in message
    assert "secret" not in message


@pytest.mark.parametrize(
    "entry",
    [
        b"3",
        b'{"name": 3, "version": "1", "build": "0"}',
        b'{"name": "b", "version": "1", "build": "0"}',  # not the name its file name carries
        b'{"name": "a", "version": "\xff", "build": "0"}',
    ],
)
def test_damaged_record_is_skipped_when_its_name_is_reached(entry: bytes) -> None:
    # Records are read only for the names a solve reaches (as rattler does): a damaged
    # one is then skipped like any invalid record; its neighbours stay.
    good = json.dumps({"name": "a", "version": "2", "build": "0"}).encode()
    data = b'{"packages": {"a-1-0.tar.bz2": ' + entry + b', "a-2-0.tar.bz2": ' + good + b"}}"
    index = parse_repodata(data, channel=CH, subdir="noarch")
    assert [r.version for r in index.get("a")] == ["2"]
    assert index.get("b") == ()


@pytest.mark.parametrize("variant", REPODATA_VARIANTS)
def test_parse_compressed(variant: str) -> None:
    index = parse_repodata(encode(repodata(rec("a")), variant), channel=CH, subdir="linux-64")
    assert [r.name for r in index.all()] == ["a"]


def test_multi_frame_zstd() -> None:
    data = json.dumps(repodata(rec("a"))).encode()
    half = len(data) // 2
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    frames = cctx.compress(data[:half]) + cctx.compress(data[half:])
    assert parse_repodata(frames, channel=CH, subdir="linux-64").get("a")


# -- ChannelClient over file:// ------------------------------------------------------------


def test_file_channel(tmp_path: Path, http: HttpClient) -> None:
    root = write_channel(
        tmp_path / "ch",
        {
            "linux-64": repodata(rec("a", "1.0"), tar_bz2=(rec("a", "1.0"),)),
            "noarch": repodata(rec("b", noarch="python", subdir="noarch"), subdir="noarch"),
        },
    )
    channel = Channel.parse("./ch", root=tmp_path)
    client = ChannelClient(http)
    (record,) = client.records(channel, "linux-64")
    assert record.url == f"{root.as_uri()}/linux-64/a-1.0-0.conda"
    assert record.channel == root.as_uri()
    assert client.records(channel, "osx-arm64") == ()  # a subdir the channel lacks
    records = client.records_by_name([channel], ["linux-64", "osx-arm64"])
    assert sorted(records) == ["a", "b"]
    assert records["b"][0].noarch == "python"
    assert records.get("zzz") is None


def test_missing_noarch_is_not_a_channel(tmp_path: Path, http: HttpClient) -> None:
    (tmp_path / "nothing").mkdir()
    channel = Channel.parse(str(tmp_path / "nothing"))
    client = ChannelClient(http)
    assert client.records(channel, "linux-64") == ()
    with pytest.raises(IndexAccessError, match=r"is not a conda channel.*HTTP 404"):
        client.records_by_name([channel], ["linux-64"])


@pytest.mark.parametrize("variant", REPODATA_VARIANTS)
def test_file_channel_with_one_variant(tmp_path: Path, http: HttpClient, variant: str) -> None:
    write_channel(
        tmp_path,
        {"noarch": repodata(rec("n", subdir="noarch"), subdir="noarch")},
        variants=(variant,),
    )
    records = ChannelClient(http).records_by_name([Channel.parse(tmp_path.as_uri())], [])
    assert [r.name for r in records["n"]] == ["n"]


def test_local_channel_reads_the_plain_file_first(tmp_path: Path, http: HttpClient) -> None:
    # Nothing to transfer from a local channel, so nothing worth decompressing; the
    # compressed files are read only when the plain one is absent.
    doc = repodata(rec("n", "1.0", subdir="noarch"), subdir="noarch")
    write_channel(tmp_path, {"noarch": doc}, variants=("repodata.json.zst",))
    write_channel(
        tmp_path,
        {"noarch": repodata(rec("n", "2.0", subdir="noarch"), subdir="noarch")},
        variants=("repodata.json",),
    )
    channel = Channel.parse(tmp_path.as_uri())
    assert [r.version for r in ChannelClient(http).records(channel, "noarch")] == ["2.0"]
    (tmp_path / "noarch" / "repodata.json").unlink()
    assert [r.version for r in ChannelClient(http).records(channel, "noarch")] == ["1.0"]


def test_strict_channel_priority(tmp_path: Path, http: HttpClient) -> None:
    first = write_channel(
        tmp_path / "first",
        {
            "linux-64": repodata(rec("a", "1.0")),
            "noarch": repodata(rec("c", "1.0", subdir="noarch"), subdir="noarch"),
        },
    )
    second = write_channel(
        tmp_path / "second",
        {
            "linux-64": repodata(rec("a", "2.0"), rec("b", "1.0")),
            "noarch": repodata(rec("c", "2.0", subdir="noarch"), subdir="noarch"),
        },
    )
    channels = [Channel.parse(first.as_uri()), Channel.parse(second.as_uri())]
    client = ChannelClient(http, workers=4)
    strict = client.records_by_name(channels, ["linux-64"])
    assert [r.version for r in strict["a"]] == ["1.0"]
    assert [r.version for r in strict["c"]] == ["1.0"]
    assert [r.channel for r in strict["b"]] == [second.as_uri()]
    assert strict.channel_of("a") == channels[0]
    assert strict.channel_of("b") == channels[1]
    assert len(strict) == 3
    merged = client.records_by_name(channels, ["linux-64"], strict=False)
    assert sorted(r.version for r in merged["a"]) == ["1.0", "2.0"]


def test_records_memoised(tmp_path: Path, http: HttpClient) -> None:
    path = tmp_path / "noarch" / "repodata.json"
    write_channel(tmp_path, {"noarch": repodata(rec("a", subdir="noarch"), subdir="noarch")})
    channel = Channel.parse(tmp_path.as_uri())
    client = ChannelClient(http)
    assert client.index(channel, "noarch") is client.index(channel, "noarch")
    path.write_text("{broken")  # not read again by the same client
    assert [r.name for r in client.records(channel, "noarch")] == ["a"]
    with pytest.raises(IndexAccessError, match="corrupt"):
        ChannelClient(http).records(channel, "noarch")


# -- ChannelClient over HTTP ---------------------------------------------------------------


def _http_channel(server: Server, tmp_path: Path, variants: tuple[str, ...]) -> Channel:
    root = write_channel(
        tmp_path / "src",
        {
            "linux-64": repodata(rec("a")),
            "osx-arm64": repodata(rec("a", subdir="osx-arm64"), subdir="osx-arm64"),
            "noarch": repodata(rec("n", subdir="noarch"), subdir="noarch"),
        },
        variants=variants,
    )
    server.serve_dir(root)
    return Channel.parse(f"{server.base}/ch")


@pytest.mark.parametrize("variant", REPODATA_VARIANTS)
def test_http_variant_fallback_is_remembered(
    server: Server, tmp_path: Path, http: HttpClient, variant: str
) -> None:
    channel = _http_channel(server, tmp_path, (variant,))
    client = ChannelClient(http, workers=1)
    records = client.records_by_name([channel], ["linux-64"])
    assert [r.name for r in records["a"]] == ["a"]
    before = len(server.requests)
    assert client.records(channel, "osx-arm64")
    assert client.records(channel, "win-64") == ()
    later = [path for path, _, _ in server.requests[before:]]
    # Once a variant worked, the ones that failed before it are not asked for again; the
    # ones after it still are for a missing subdir (a mirror may lack some compressed files).
    after = REPODATA_VARIANTS[REPODATA_VARIANTS.index(variant) + 1 :]
    assert later == [
        f"/ch/osx-arm64/{variant}",
        f"/ch/win-64/{variant}",
        *(f"/ch/win-64/{v}" for v in after),
    ]


def test_http_prefers_zst(server: Server, tmp_path: Path, http: HttpClient) -> None:
    channel = _http_channel(server, tmp_path, REPODATA_VARIANTS)
    ChannelClient(http).prefetch([channel], ["linux-64"])
    paths = [p for p, _, _ in server.requests]
    # The shard index is asked for first (CEP 16); the channel has none.
    probes = [p for p in paths if p.endswith(SHARD_INDEX)]
    assert sorted(p for p in paths if p not in probes) == [
        "/ch/linux-64/repodata.json.zst",
        "/ch/noarch/repodata.json.zst",
    ]
    assert 1 <= len(probes) <= 2  # subdirs load concurrently: the second may not know yet
    # Once found missing, a channel is not asked for shards again for a week.
    before = len(server.requests)
    ChannelClient(http).prefetch([channel], ["osx-arm64"])
    assert not any(p.endswith(SHARD_INDEX) for p, _, _ in server.requests[before:])


def test_http_etag_revalidation(server: Server, tmp_path: Path, http: HttpClient) -> None:
    channel = _http_channel(server, tmp_path, ("repodata.json.zst",))
    first = ChannelClient(http).records_by_name([channel], ["linux-64"])["a"]
    assert server.statuses("linux-64/repodata.json.zst") == [
        ("/ch/linux-64/repodata.json.zst", 200)
    ]
    # A new client (a new lock run) revalidates the cached copy: 304, no body sent again.
    second = ChannelClient(http).records_by_name([channel], ["linux-64"])["a"]
    assert second == first
    _, status, headers = server.requests[-1]
    assert status == 304
    assert headers["if-none-match"].startswith('"')
    # The cache keeps the bytes as served: compressed.
    cached = [p for p in (tmp_path / "cache").rglob("*.json") if p.is_file()]
    assert cached
    assert all(b"\x28\xb5\x2f\xfd" in p.read_bytes() for p in cached)


def test_http_credentials(server: Server, tmp_path: Path, http: HttpClient) -> None:
    _http_channel(server, tmp_path, ("repodata.json",))
    server.auth = ("user", "s3cret")
    channel = Channel.parse(f"http://user:s3cret@{server.base.removeprefix('http://')}/ch")
    (record,) = ChannelClient(http).records(channel, "linux-64")
    assert "user:s3cret@" in record.url
    assert "s3cret" not in record.channel
    assert record.channel == f"{server.base}/ch"


def test_http_auth_failure_reported(server: Server, tmp_path: Path, http: HttpClient) -> None:
    _http_channel(server, tmp_path, ("repodata.json",))
    server.auth = ("user", "right")
    channel = Channel.parse(f"http://user:wrong@{server.base.removeprefix('http://')}/ch")
    with pytest.raises(IndexAccessError, match="HTTP 401") as info:
        ChannelClient(http).records(channel, "linux-64")
    assert f"{server.base}/ch/linux-64/repodata.json" in str(info.value)
    assert "wrong" not in str(info.value)


def test_http_server_error_not_taken_as_missing(
    server: Server, tmp_path: Path, http: HttpClient
) -> None:
    channel = _http_channel(server, tmp_path, ("repodata.json",))
    server.status_override = 503
    with pytest.raises(IndexAccessError, match=r"repodata\.json\.zst.*HTTP 503"):
        ChannelClient(http).records(channel, "linux-64")


def test_offline_uses_cached_variant(server: Server, tmp_path: Path) -> None:
    channel = _http_channel(server, tmp_path, ("repodata.json.bz2",))
    with HttpClient(tmp_path / "cache") as online:
        ChannelClient(online).prefetch([channel], ["linux-64"])
    count = len(server.requests)
    with HttpClient(tmp_path / "cache", offline=True) as offline:
        client = ChannelClient(offline)
        assert [r.name for r in client.records_by_name([channel], ["linux-64"])["a"]] == ["a"]
        with pytest.raises(OfflineError):
            client.records(channel, "osx-arm64")
    assert len(server.requests) == count


# -- the fixture channel (fixtures/build_channel.py, tests/conftest.py) ------------------------

PLATFORM_SUBDIRS = ["linux-64", "linux-aarch64", "osx-arm64", "win-64"]


def test_fixture_channel_over_file(fixture_channel_dir: Path, tmp_path: Path) -> None:
    channel = Channel.parse(fixture_channel_dir.as_uri())
    with HttpClient(tmp_path / "cache") as http:
        records = ChannelClient(http).records_by_name([channel], PLATFORM_SUBDIRS)
    assert len(records) > 0
    for name in records:
        for record in records[name]:
            assert record.filename.endswith(".conda")  # every package has both formats
            assert record.url == f"{channel.base_url}/{record.subdir}/{record.filename}"
            assert (fixture_channel_dir / record.subdir / record.filename).is_file()
            assert record.sha256 and record.md5 and record.size


@pytest.mark.parametrize("subdir", [*PLATFORM_SUBDIRS, "noarch"])
def test_fixture_channel_variants_agree(fixture_channel_dir: Path, subdir: str) -> None:
    channel = Channel.parse(fixture_channel_dir.as_uri())
    by_variant = [
        parse_repodata(
            (fixture_channel_dir / subdir / variant).read_bytes(), channel=channel, subdir=subdir
        ).all()
        for variant in REPODATA_VARIANTS
    ]
    assert by_variant[0] == by_variant[1] == by_variant[2]


def test_fixture_channel_over_http(
    fixture_channel_dir: Path, channel_server: Any, tmp_path: Path
) -> None:
    remote = Channel.parse(channel_server.url)
    local = Channel.parse(fixture_channel_dir.as_uri())
    seen = len(channel_server.requests)
    with HttpClient(tmp_path / "cache") as http:
        over_http = ChannelClient(http).records_by_name([remote], ["linux-64"])
        from_file = ChannelClient(http).records_by_name([local], ["linux-64"])
        assert sorted(over_http) == sorted(from_file)
        for name in from_file:
            assert [r.filename for r in over_http[name]] == [r.filename for r in from_file[name]]
            assert all(r.channel == remote.base_url for r in over_http[name])
        repodata = [p for p in channel_server.paths()[seen:] if not p.endswith(SHARD_INDEX)]
        assert sorted(repodata) == ["/linux-64/repodata.json.zst", "/noarch/repodata.json.zst"]
        seen = len(channel_server.requests)
        # A second lock run revalidates instead of downloading again.
        again = ChannelClient(http).records_by_name([remote], ["linux-64"])
        assert sorted(again) == sorted(over_http)
    revalidations = channel_server.requests[seen:]
    assert len(revalidations) == 2
    assert all("if-none-match" in {k.lower() for k in r[2]} for r in revalidations)


def test_parsing_leaves_the_garbage_collector_as_it_was() -> None:
    import gc

    data = encode(repodata(rec("a")))
    assert gc.isenabled()
    parse_repodata(data, channel=CH, subdir="linux-64").all()
    assert gc.isenabled()
    gc.disable()
    try:
        parse_repodata(data, channel=CH, subdir="linux-64").all()
        assert not gc.isenabled()
    finally:
        gc.enable()


# -- by-name stores (lockenv.lock.conda.subdir_store) ------------------------------------------


def _two_subdirs(root: Path, *extra: dict[str, Any]) -> Path:
    return write_channel(
        root,
        {
            "linux-64": repodata(rec("a"), rec("b", depends=["a >=1"]), *extra),
            "noarch": repodata(rec("n", subdir="noarch"), subdir="noarch"),
        },
        variants=("repodata.json.zst",),
    )


def _stores(cache: Path) -> list[Path]:
    return sorted((cache / "conda-repodata").glob("*.byname"))


def test_store_made_once_then_opened_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.lock.conda import repodata as repodata_module

    channel = Channel.parse(_two_subdirs(tmp_path / "src").as_uri())
    with HttpClient(tmp_path / "cache") as http:
        first = ChannelClient(http).records_by_name([channel], ["linux-64"])
        before = {name: first[name] for name in ("a", "b", "n")}
    assert len(_stores(tmp_path / "cache")) == 2  # linux-64 and noarch

    def no_parsing(*args: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(repodata_module, "_group_by_name", no_parsing)
    with HttpClient(tmp_path / "cache") as http:
        second = ChannelClient(http).records_by_name([channel], ["linux-64"])
        assert {name: second[name] for name in ("a", "b", "n")} == before
        assert sorted(second) == ["a", "b", "n"]


def test_unchanged_local_channel_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local file's store is keyed by the file's identity (path, size, times, inode):
    # a later lock finds it with a stat, without reading or hashing the file.
    channel = Channel.parse(_two_subdirs(tmp_path / "src").as_uri())
    with HttpClient(tmp_path / "cache") as http:
        before = ChannelClient(http).records_by_name([channel], ["linux-64"])["b"]

    get_page = HttpClient.get_page

    def no_reading(self: HttpClient, url: str, **kwargs: Any) -> Any:
        assert not url.endswith("/repodata.json.zst"), "read again"  # the file it has
        return get_page(self, url, **kwargs)

    monkeypatch.setattr(HttpClient, "get_page", no_reading)
    with HttpClient(tmp_path / "cache") as http:
        records = ChannelClient(http).records_by_name([channel], ["linux-64"])
        assert records["b"] == before


def test_changed_repodata_gets_a_new_store_that_replaces_the_old(tmp_path: Path) -> None:
    source = _two_subdirs(tmp_path / "src")
    channel = Channel.parse(source.as_uri())
    with HttpClient(tmp_path / "cache") as http:
        assert "c" not in ChannelClient(http).records_by_name([channel], ["linux-64"])
    old = _stores(tmp_path / "cache")
    write_channel(  # linux-64 changed (its bytes hash differently), noarch did not
        source,
        {"linux-64": repodata(rec("a"), rec("b", depends=["a >=1"]), rec("c"))},
        variants=("repodata.json.zst",),
    )
    with HttpClient(tmp_path / "cache") as http:
        records = ChannelClient(http).records_by_name([channel], ["linux-64"])
        assert [r.name for r in records["c"]] == ["c"]
    new = _stores(tmp_path / "cache")
    assert len(new) == 2 and len(set(new) - set(old)) == 1  # one per subdir, never more


def test_store_holds_no_credentials(server: Server, tmp_path: Path, http: HttpClient) -> None:
    _http_channel(server, tmp_path, ("repodata.json",))
    server.auth = ("user", "s3cret")
    channel = Channel.parse(f"http://user:s3cret@{server.base.removeprefix('http://')}/ch")
    (record,) = ChannelClient(http).records(channel, "linux-64")
    assert "user:s3cret@" in record.url  # needed to download
    stores = _stores(tmp_path / "cache")
    assert stores
    assert not any(b"s3cret" in store.read_bytes() for store in stores)


def test_lock_without_a_writable_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lockenv.lock.conda.subdir_store import Stores

    monkeypatch.setattr(Stores, "publish", lambda *args, **kwargs: None)
    channel = Channel.parse(_two_subdirs(tmp_path / "src").as_uri())
    with HttpClient(tmp_path / "cache") as http:
        records = ChannelClient(http).records_by_name([channel], ["linux-64"])
        assert [r.name for r in records["b"]] == ["b"]


def test_store_keeps_records_as_the_repodata_wrote_them(tmp_path: Path) -> None:
    # Copied as JSON text, not re-encoded: a record with invalid UTF-8 in a value is
    # skipped when its name is reached (first lock and later ones alike), its
    # neighbours stay, and a record under another name's file name is not served.
    good = json.dumps(rec("a", "2.0")).encode()
    bad = json.dumps(rec("a", "3.0", license="X")).encode().replace(b'"X"', b'"\xff"')
    other = json.dumps(rec("b", "1.0")).encode()
    doc = (
        b'{"packages.conda": {"a-2.0-0.conda": '
        + good
        + b', "a-3.0-0.conda": '
        + bad
        + b', "a-4.0-0.conda": '
        + other
        + b"}}"
    )
    (tmp_path / "src" / "noarch").mkdir(parents=True)
    (tmp_path / "src" / "noarch" / "repodata.json").write_bytes(doc)
    channel = Channel.parse((tmp_path / "src").as_uri())
    for _ in range(2):  # the first makes the store, the second reads it
        with HttpClient(tmp_path / "cache") as http:
            records = ChannelClient(http).records_by_name([channel], [])
            assert [r.version for r in records["a"]] == ["2.0"]
            assert "b" not in records
    assert len(_stores(tmp_path / "cache")) == 1


def test_damaged_store_is_made_again(tmp_path: Path) -> None:
    channel = Channel.parse(_two_subdirs(tmp_path / "src").as_uri())
    with HttpClient(tmp_path / "cache") as http:
        ChannelClient(http).records_by_name([channel], ["linux-64"])
    for store in _stores(tmp_path / "cache"):
        store.write_bytes(b"garbage")
    with HttpClient(tmp_path / "cache") as http:
        records = ChannelClient(http).records_by_name([channel], ["linux-64"])
        assert [r.name for r in records["a"]] == ["a"]
    assert all(s.read_bytes().startswith(b"LOCKENV-BYNAME") for s in _stores(tmp_path / "cache"))


# -- CEP 16 sharded repodata (lockenv.lock.conda.shards) ---------------------------------------


@pytest.fixture
def sharded_channel(fixture_channel_dir: Path, tmp_path: Path) -> Path:
    """The fixture channel's repodata (no packages) with shards beside it."""
    from fixtures.shard_channel import shard_channel

    root = tmp_path / "sharded"
    for subdir in fixture_channel_dir.iterdir():
        if subdir.is_dir():
            (root / subdir.name).mkdir(parents=True)
            for variant in REPODATA_VARIANTS:
                data = (subdir / variant).read_bytes()
                (root / subdir.name / variant).write_bytes(data)
    shard_channel(root)
    return root


def _reachable(records: Any, name: str) -> set[str]:
    from lockenv.lock.conda.solver import parse_spec

    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for record in records.get(current, ()):
            todo += [parse_spec(d).name for d in record.depends]
    return seen


def test_sharded_channel_fetches_only_what_a_request_reaches(
    sharded_channel: Path, fixture_channel_dir: Path, tmp_path: Path
) -> None:
    from fixtures.server import serve_static

    plain = Channel.parse(fixture_channel_dir.as_uri())
    with serve_static(sharded_channel) as server, HttpClient(tmp_path / "cache") as http:
        channel = Channel.parse(server.url)
        records = ChannelClient(http).records_by_name([channel], ["linux-64"])
        records.prefetch(["numpy-lite"])
        fetched = [p for p in server.paths() if "/shards/" in p]
        assert not [p for p in server.paths() if "repodata.json" in p]
        expected = ChannelClient(http).records_by_name([plain], ["linux-64"])
        reachable = _reachable(expected, "numpy-lite")
        assert len(fetched) == len(set(fetched))  # each shard once
        assert 2 < len(fetched) <= 2 * len(reachable)  # linux-64 and noarch: no more
        for name in reachable:
            got = records.get(name, ())
            want = expected.get(name, ())
            assert [(r.filename, r.sha256, r.md5, r.depends) for r in got] == [
                (r.filename, r.sha256, r.md5, r.depends) for r in want
            ]
            assert all(r.url.startswith(server.url) for r in got)
        # A second lock revalidates the shard index; shards come from the cache.
        seen = len(server.paths())
        again = ChannelClient(http).records_by_name([channel], ["linux-64"])
        again.prefetch(["numpy-lite"])
        assert again["numpy-lite"] == records["numpy-lite"]
        assert all(p.endswith(SHARD_INDEX) for p in server.paths()[seen:])


def test_shard_that_does_not_match_its_hash_is_refused(
    sharded_channel: Path, tmp_path: Path
) -> None:
    for shard in (sharded_channel / "linux-64" / "shards").iterdir():
        shard.write_bytes(shard.read_bytes() + b"\0")
    channel = Channel.parse(sharded_channel.as_uri())
    with HttpClient(tmp_path / "cache") as http:
        records = ChannelClient(http).records_by_name([channel], ["linux-64"])
        with pytest.raises(IndexAccessError, match="does not have the sha256 the index gives"):
            records.prefetch(["numpy-lite"])


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        (b"not zstd", "bad zstd data"),
        ("msgpack", "'info' or 'shards' is missing"),
    ],
)
def test_corrupt_shard_index(tmp_path: Path, index: bytes | str, reason: str) -> None:
    import msgspec

    root = _two_subdirs(tmp_path / "src")
    data = (
        index
        if isinstance(index, bytes)
        else zstandard.ZstdCompressor().compress(msgspec.msgpack.encode({"version": 1}))
    )
    (root / "linux-64" / SHARD_INDEX).write_bytes(data)
    with HttpClient(tmp_path / "cache") as http, pytest.raises(IndexAccessError, match=reason):
        ChannelClient(http).records(Channel.parse(root.as_uri()), "linux-64")
