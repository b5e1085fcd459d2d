"""lockenv.http: page cache, credentials, ranges, downloads, errors, file:// URLs."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockenv import http as lhttp
from lockenv.errors import IndexAccessError, IntegrityError, OfflineError
from lockenv.http import HttpClient, HttpStatusError
from lockenv.urls import file_url_to_path, redact_url

# -- a tiny loopback server, also used by the pypi tests --------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    ranges: bool = True


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    port: int = 0  # the client's: one per connection


class TinyServer:
    """Serves ``routes`` (path -> Route) on 127.0.0.1 and records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[Seen], Route]] = {}
        self.requests: list[Seen] = []
        self.auth: tuple[str, str] | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, *, head: bool) -> None:
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.client_address[1],
                )
                server.requests.append(seen)
                if server.auth is not None:
                    token = base64.b64encode(":".join(server.auth).encode()).decode()
                    if seen.headers.get("authorization") != f"Basic {token}":
                        return self._send(401, {}, b"no", head)
                route = server.routes.get(self.path.split("?")[0])
                if callable(route):
                    route = route(seen)
                if route is None:
                    return self._send(404, {}, b"not found", head)
                headers = dict(route.headers)
                if route.etag:
                    headers["ETag"] = route.etag
                    if seen.headers.get("if-none-match") == route.etag:
                        return self._send(304, headers, b"", head=True)
                body = route.body
                match = re.fullmatch(r"bytes=(\d*)-(\d*)", seen.headers.get("range", ""))
                if route.status == 200 and route.ranges and match:
                    size = len(body)
                    if match[1]:
                        start = int(match[1])
                        end = min(size - 1, int(match[2])) if match[2] else size - 1
                    else:
                        start, end = max(0, size - int(match[2])), size - 1
                    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
                    return self._send(206, headers, body[start : end + 1], head)
                return self._send(route.status, headers, body, head)

            def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str, method: str = "GET") -> int:
        return sum(1 for r in self.requests if r.path == path and r.method == method)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server() -> Iterator[TinyServer]:
    srv = TinyServer()
    yield srv
    srv.close()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[HttpClient]:
    with HttpClient(tmp_path / "cache") as c:
        yield c


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lhttp, "_RETRY_BACKOFF", 0.0)


# -- redact_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@example.invalid/simple/", "https://example.invalid/simple/"),
        ("https://token@example.invalid:8443/x", "https://example.invalid:8443/x"),
        ("https://u:p%40ss@example.invalid/a?b=c#d", "https://example.invalid/a?b=c#d"),
        ("https://example.invalid/simple/", "https://example.invalid/simple/"),
        ("file:///tmp/index", "file:///tmp/index"),
        ("http://a:b@127.0.0.1:1/x@y", "http://127.0.0.1:1/x@y"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


_userinfo = st.text(alphabet=st.characters(blacklist_characters="/@?#:"), min_size=1, max_size=12)


@given(user=_userinfo, password=_userinfo, path=st.text(alphabet="abc/-_.", max_size=20))
def test_redact_url_never_leaks(user: str, password: str, path: str) -> None:
    url = f"https://{user}:{password}@example.invalid/{path}"
    redacted = redact_url(url)
    assert redacted == f"https://example.invalid/{path}"
    assert redact_url(redacted) == redacted


def test_file_url_to_path_decodes() -> None:
    assert file_url_to_path("file:///tmp/a%20b/c") == Path("/tmp/a b/c")
    assert file_url_to_path("file://localhost/tmp/x") == Path("/tmp/x")


# -- page cache ----------------------------------------------------------------------------


def test_page_without_cache_headers_is_kept_for_ttl(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/p/"] = Route(body=b"<a>1</a>", headers={"Content-Type": "text/html"})
    with HttpClient(tmp_path / "c", page_ttl=600) as c:
        first = c.get_page(server.url("/p/"), accept="text/html")
        second = c.get_page(server.url("/p/"), accept="text/html")
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.content == b"<a>1</a>" and second.content_type == "text/html"
    assert server.count("/p/") == 1
    # A new client (another process) reads the same on-disk cache.
    with HttpClient(tmp_path / "c") as c:
        assert c.get_page(server.url("/p/"), accept="text/html").from_cache
    assert server.count("/p/") == 1


def test_accept_is_part_of_the_cache_key(server: TinyServer, client: HttpClient) -> None:
    server.routes["/p/"] = Route(body=b"x")
    client.get_page(server.url("/p/"), accept="text/html")
    client.get_page(server.url("/p/"), accept="application/json")
    assert server.count("/p/") == 2


def test_ttl_expiry_and_env_override(
    server: TinyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/p/"] = Route(body=b"x")
    monkeypatch.setenv("LOCKENV_INDEX_TTL", "0")
    with HttpClient(tmp_path / "c", page_ttl=600) as c:
        assert c.page_ttl == 0
        c.get_page(server.url("/p/"), accept="*/*")
        assert not c.get_page(server.url("/p/"), accept="*/*").from_cache
    assert server.count("/p/") == 2


def test_etag_revalidation_reuses_body_on_304(server: TinyServer, client: HttpClient) -> None:
    server.routes["/p/"] = Route(body=b"v1", etag='"abc"')
    assert client.get_page(server.url("/p/"), accept="*/*").content == b"v1"
    again = client.get_page(server.url("/p/"), accept="*/*")
    assert again.from_cache and again.content == b"v1"
    assert server.requests[-1].headers["if-none-match"] == '"abc"'
    assert server.count("/p/") == 2  # validators present: always asks, cheaply
    server.routes["/p/"] = Route(body=b"v2", etag='"def"')
    changed = client.get_page(server.url("/p/"), accept="*/*")
    assert (changed.from_cache, changed.content) == (False, b"v2")


def test_last_modified_revalidation(server: TinyServer, client: HttpClient) -> None:
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def route(seen: Seen) -> Route:
        if seen.headers.get("if-modified-since") == stamp:
            return Route(status=304)
        return Route(body=b"lm", headers={"Last-Modified": stamp})

    server.routes["/p/"] = route
    client.get_page(server.url("/p/"), accept="*/*")
    assert client.get_page(server.url("/p/"), accept="*/*").from_cache
    assert server.count("/p/") == 2


@pytest.mark.parametrize(
    ("cache_control", "requests_for_two_gets"),
    [("max-age=3600", 1), ("max-age=0", 2), ("no-store", 2), ("no-cache", 2)],
)
def test_cache_control(
    server: TinyServer, client: HttpClient, cache_control: str, requests_for_two_gets: int
) -> None:
    server.routes["/p/"] = Route(body=b"x", headers={"Cache-Control": cache_control})
    client.get_page(server.url("/p/"), accept="*/*")
    client.get_page(server.url("/p/"), accept="*/*")
    assert server.count("/p/") == requests_for_two_gets


def test_refresh_bypasses_cache(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/p/"] = Route(body=b"x", headers={"Cache-Control": "max-age=3600"})
    with HttpClient(tmp_path / "c") as c:
        c.get_page(server.url("/p/"), accept="*/*")
    with HttpClient(tmp_path / "c", refresh=True) as c:
        assert not c.get_page(server.url("/p/"), accept="*/*").from_cache
    assert server.count("/p/") == 2
    assert "if-none-match" not in server.requests[-1].headers


def test_offline_uses_stale_cache_and_fails_on_miss(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/p/"] = Route(body=b"x", etag='"e"')
    with HttpClient(tmp_path / "c") as c:
        c.get_page(server.url("/p/"), accept="*/*")
    with HttpClient(tmp_path / "c", offline=True) as c:
        assert c.get_page(server.url("/p/"), accept="*/*").content == b"x"
        with pytest.raises(OfflineError, match="offline"):
            c.get_page(server.url("/other/"), accept="*/*")
        with pytest.raises(OfflineError):
            c.download(server.url("/p/"), tmp_path / "d", sha256=None, size=None)
    assert server.count("/p/") == 1


def test_damaged_cache_entry_is_a_miss(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/p/"] = Route(body=b"x")
    with HttpClient(tmp_path / "c") as c:
        c.get_page(server.url("/p/"), accept="*/*")
        for entry in (tmp_path / "c" / "http").rglob("*.json"):
            entry.write_bytes(b"garbage")
        assert not c.get_page(server.url("/p/"), accept="*/*").from_cache


def test_redirect_final_url(server: TinyServer, client: HttpClient) -> None:
    server.routes["/old/"] = Route(status=301, headers={"Location": "/new/"})
    server.routes["/new/"] = Route(body=b"here")
    page = client.get_page(server.url("/old/"), accept="*/*")
    assert page.url == server.url("/new/") and page.content == b"here"


# -- errors and retries --------------------------------------------------------------------


def test_status_error_is_redacted_with_hint(server: TinyServer, client: HttpClient) -> None:
    url = server.url("/missing/").replace("http://", "http://alice:s3cret@")
    with pytest.raises(HttpStatusError) as info:
        client.get_page(url, accept="*/*")
    assert info.value.status == 404
    assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
    assert "127.0.0.1" in str(info.value) and "check" in str(info.value)


def test_retries_5xx_then_succeeds(server: TinyServer, client: HttpClient) -> None:
    answers = iter([Route(status=503), Route(status=502), Route(body=b"ok")])
    server.routes["/flaky"] = lambda seen: next(answers)
    assert client.fetch_bytes(server.url("/flaky")) == b"ok"
    assert server.count("/flaky") == 3


def test_gives_up_after_three_5xx(server: TinyServer, client: HttpClient) -> None:
    server.routes["/down"] = Route(status=500)
    with pytest.raises(HttpStatusError) as info:
        client.fetch_bytes(server.url("/down"))
    assert info.value.status == 500 and server.count("/down") == 3


def test_connection_error_is_index_access_error(client: HttpClient) -> None:
    import socket

    # Bound but not listening: connections are refused, and no other process can take
    # the port while the test uses it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(IndexAccessError, match="after 3 tries"):
            client.get_page(f"http://u:pw@127.0.0.1:{port}/x/", accept="*/*")


# -- credentials ---------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_from_url_reach_server_and_same_host(
    server: TinyServer, client: HttpClient, tmp_path: Path
) -> None:
    server.auth = ("alice", "p@ss")
    server.routes["/simple/p/"] = Route(body=b"page")
    server.routes["/files/a.whl"] = Route(body=b"wheel")
    url = server.url("/simple/p/").replace("http://", "http://alice:p%40ss@")
    page = client.get_page(url, accept="*/*")
    assert page.content == b"page" and "alice" not in page.url
    assert server.requests[-1].headers["authorization"] == _basic("alice", "p@ss")
    # A file URL of the same host without user info reuses what the index URL gave.
    client.download(server.url("/files/a.whl"), tmp_path / "a.whl", sha256=None, size=None)
    assert (tmp_path / "a.whl").read_bytes() == b"wheel"
    for entry in (tmp_path / "cache").rglob("*"):
        if entry.is_file():
            assert b"p@ss" not in entry.read_bytes() and b"alice" not in entry.read_bytes()


def test_credentials_from_netrc(
    server: TinyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine 127.0.0.1 login bob password hunter2\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    server.auth = ("bob", "hunter2")
    server.routes["/p/"] = Route(body=b"ok")
    with HttpClient(None) as c:
        assert c.get_page(server.url("/p/"), accept="*/*").content == b"ok"
    assert server.requests[-1].headers["authorization"] == _basic("bob", "hunter2")


def test_credentials_from_env(server: TinyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKENV_HTTP_USERNAME_127_0_0_1", "carol")
    monkeypatch.setenv("LOCKENV_HTTP_PASSWORD_127_0_0_1", "pw")
    server.auth = ("carol", "pw")
    server.routes["/p/"] = Route(body=b"ok")
    with HttpClient(None) as c:
        assert c.fetch_bytes(server.url("/p/")) == b"ok"


def test_wrong_credentials_error_hint_without_secret(server: TinyServer) -> None:
    server.auth = ("alice", "right")
    server.routes["/p/"] = Route(body=b"ok")
    with HttpClient(None) as c, pytest.raises(HttpStatusError) as info:
        c.get_page(server.url("/p/").replace("http://", "http://alice:wrong@"), accept="*/*")
    assert info.value.status == 401
    assert "wrong" not in str(info.value) and "credentials" in str(info.value)


# -- ranges --------------------------------------------------------------------------------


BLOB = bytes(range(256)) * 40


def test_ranges(server: TinyServer, client: HttpClient) -> None:
    server.routes["/f"] = Route(body=BLOB)
    got = client.get_range(server.url("/f"), 10, 20)
    assert (got.data, got.start, got.total_size) == (BLOB[10:20], 10, len(BLOB))
    assert not got.is_whole_file
    tail = client.get_suffix(server.url("/f"), 100)
    assert (tail.data, tail.start, tail.total_size) == (BLOB[-100:], len(BLOB) - 100, len(BLOB))
    rest = client.get_range(server.url("/f"), len(BLOB) - 5)
    assert rest.data == BLOB[-5:]


def test_server_ignoring_range_gives_whole_file(server: TinyServer, client: HttpClient) -> None:
    server.routes["/f"] = Route(body=BLOB, ranges=False)
    got = client.get_suffix(server.url("/f"), 100)
    assert got.is_whole_file and got.data == BLOB and got.start == 0


def test_file_url_ranges_and_pages(tmp_path: Path, client: HttpClient) -> None:
    target = tmp_path / "dir with space" / "f.bin"
    target.parent.mkdir()
    target.write_bytes(BLOB)
    url = target.as_uri()
    assert "%20" in url
    assert client.get_range(url, 1, 3).data == BLOB[1:3]
    suffix = client.get_suffix(url, 10)
    assert suffix.data == BLOB[-10:] and suffix.total_size == len(BLOB)
    assert client.get_suffix(url, 10**6).is_whole_file
    assert client.content_length(url) == len(BLOB)
    assert client.fetch_bytes(url) == BLOB
    (tmp_path / "index.json").write_bytes(b"{}")
    page = client.get_page((tmp_path / "index.json").as_uri(), accept="*/*")
    assert page.content == b"{}" and "json" in page.content_type
    with pytest.raises(HttpStatusError) as info:
        client.get_page((tmp_path / "nope.html").as_uri(), accept="*/*")
    assert info.value.status == 404


def test_content_length_via_head(server: TinyServer, client: HttpClient) -> None:
    server.routes["/f"] = Route(body=BLOB)
    assert client.content_length(server.url("/f")) == len(BLOB)
    assert server.count("/f", "HEAD") == 1 and server.count("/f") == 0


# -- downloads -----------------------------------------------------------------------------


def test_download_checks_and_replaces_atomically(
    server: TinyServer, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = Route(body=BLOB)
    digest = hashlib.sha256(BLOB).hexdigest()
    dest = tmp_path / "out" / "f.whl"
    assert client.download(server.url("/f"), dest, sha256=digest, size=len(BLOB)) == (
        digest,
        len(BLOB),
    )
    assert dest.read_bytes() == BLOB
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.whl"]


@pytest.mark.parametrize(
    ("sha256", "size", "needle"),
    [("0" * 64, None, "sha256 mismatch"), (None, 5, "size mismatch")],
)
def test_download_integrity_mismatch(
    server: TinyServer,
    client: HttpClient,
    tmp_path: Path,
    sha256: str | None,
    size: int | None,
    needle: str,
) -> None:
    server.routes["/f"] = Route(body=BLOB)
    dest = tmp_path / "f.whl"
    dest.write_bytes(b"previous")
    url = server.url("/f").replace("http://", "http://u:topsecret@")
    with pytest.raises(IntegrityError, match=needle) as info:
        client.download(url, dest, sha256=sha256, size=size)
    message = str(info.value)
    assert "topsecret" not in message and server.url("/f") in message
    if sha256:
        assert sha256 in message and hashlib.sha256(BLOB).hexdigest() in message
    assert dest.read_bytes() == b"previous"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_download_file_url(tmp_path: Path, client: HttpClient) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(BLOB)
    digest, size = client.download(src.as_uri(), tmp_path / "copy", sha256=None, size=None)
    assert (digest, size) == (hashlib.sha256(BLOB).hexdigest(), len(BLOB))


def test_download_retries_5xx(server: TinyServer, client: HttpClient, tmp_path: Path) -> None:
    answers = iter([Route(status=503), Route(body=BLOB)])
    server.routes["/f"] = lambda seen: next(answers)
    client.download(server.url("/f"), tmp_path / "f", sha256=None, size=len(BLOB))
    assert (tmp_path / "f").read_bytes() == BLOB


class Recorder:
    """A `lockenv.http.Consumer` that records what it is given, and on which thread."""

    def __init__(self, log: list[tuple[str, int]], *, fail_at: int | None = None) -> None:
        self.log = log
        self.fail_at = fail_at
        self.fed = bytearray()
        self.threads: set[int] = set()

    def feed(self, chunk: bytes) -> None:
        self.threads.add(threading.get_ident())
        if self.fail_at is not None and len(self.fed) + len(chunk) > self.fail_at:
            raise RuntimeError("consumer failed")
        self.fed += chunk
        self.log.append(("feed", id(self)))

    def discard(self) -> None:
        self.log.append(("discard", id(self)))


def recorders(
    made: list[Recorder], log: list[tuple[str, int]], *, fail_at: int | None = None
) -> Callable[[], Recorder]:
    """A consumer factory for `HttpClient.download`, keeping what it made in ``made``."""

    def make() -> Recorder:
        made.append(Recorder(log, fail_at=fail_at))
        return made[-1]

    return make


def test_download_feeds_the_consumer_everything_in_order_before_returning(
    server: TinyServer, client: HttpClient, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 20_000  # ~5 MiB: several blocks
    server.routes["/f"] = Route(body=body)
    made: list[Recorder] = []
    consumer = recorders(made, [])
    digest = hashlib.sha256(body).hexdigest()
    client.download(server.url("/f"), None, sha256=digest, size=len(body), consumer=consumer)
    assert len(made) == 1 and bytes(made[0].fed) == body
    # Fed beside the download (the consumer's work overlaps with receiving), not by it.
    assert threading.get_ident() not in made[0].threads


def test_download_raises_what_the_consumer_raised_and_discards_it(
    server: TinyServer, client: HttpClient
) -> None:
    body = bytes(range(256)) * 20_000
    server.routes["/f"] = Route(body=body)
    log: list[tuple[str, int]] = []
    made: list[Recorder] = []
    consumer = recorders(made, log, fail_at=1 << 20)
    with pytest.raises(RuntimeError, match="consumer failed"):
        client.download(server.url("/f"), None, sha256=None, size=None, consumer=consumer)
    assert len(made) == 1 and log[-1] == ("discard", id(made[0]))


@pytest.mark.parametrize("size", [None, 1000])
def test_a_failed_download_discards_its_consumer_after_the_last_feed(
    server: TinyServer, client: HttpClient, size: int | None
) -> None:
    body = bytes(range(256)) * 20_000
    server.routes["/f"] = Route(body=body)
    log: list[tuple[str, int]] = []
    made: list[Recorder] = []
    consumer = recorders(made, log)
    with pytest.raises(IntegrityError):
        client.download(server.url("/f"), None, sha256="0" * 64, size=size, consumer=consumer)
    # Each attempt's consumer: fed (maybe), then discarded, and never fed after that.
    for recorder in made:
        mine = [event for event, who in log if who == id(recorder)]
        assert mine[-1] == "discard" and mine.count("discard") == 1
    assert size is None or all(len(r.fed) <= size for r in made)


def test_concurrent_pages_share_one_client(server: TinyServer, client: HttpClient) -> None:
    for i in range(20):
        server.routes[f"/p{i}/"] = Route(body=str(i).encode())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        pages = list(
            pool.map(lambda i: client.get_page(server.url(f"/p{i}/"), accept="*/*"), range(20))
        )
    assert [p.content for p in pages] == [str(i).encode() for i in range(20)]


def test_downloads_get_the_umask_modes_not_private_ones(tmp_path: Path) -> None:
    import os
    import stat

    from lockenv.http import HttpClient

    source = tmp_path / "artifact.bin"
    source.write_bytes(b"shared cache")
    mask = os.umask(0o022)
    os.umask(mask)
    with HttpClient(tmp_path / "cache") as http:
        http.download(source.as_uri(), tmp_path / "out.bin", sha256=None, size=None)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o666 & ~mask


# -- TLS: the trust store is loaded for https only -----------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and the name files.example.invalid, for
    tunnels through a proxy) and its key (made by the openssl command)."""
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: no certificate for a TLS server")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    names = "subjectAltName=IP:127.0.0.1,DNS:files.example.invalid"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", names]
    subprocess.run(
        [openssl, *request, "-keyout", str(key), "-out", str(cert), *subject],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[TinyServer]:
    import ssl

    srv = TinyServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    srv._httpd.socket = context.wrap_socket(srv._httpd.socket, server_side=True)
    srv.base = srv.base.replace("http://", "https://")
    yield srv
    srv.close()


def _counting_trust_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    loads: list[object] = []
    load = lhttp._load_trust

    def counted(ctx: object) -> None:
        loads.append(ctx)
        load(ctx)

    monkeypatch.setattr(lhttp, "_load_trust", counted)
    return loads


def test_plain_http_never_loads_the_trust_store(
    server: TinyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting_trust_loads(monkeypatch)
    server.routes["/f"] = Route(body=b"payload")
    with HttpClient(tmp_path / "cache") as client:
        _, size = client.download(server.url("/f"), tmp_path / "f", sha256=None, size=None)
    assert size == 7 and (tmp_path / "f").read_bytes() == b"payload"
    assert loads == []


def test_https_reached_by_a_redirect_is_verified(
    server: TinyServer,
    tls_server: TinyServer,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads = _counting_trust_loads(monkeypatch)
    tls_server.routes["/f"] = Route(body=b"secret payload")
    server.routes["/r"] = Route(status=302, headers={"Location": tls_server.url("/f")})
    # Not trusted: the handshake fails, nothing is downloaded.
    with (
        HttpClient(tmp_path / "cache") as client,
        pytest.raises(IndexAccessError, match="download failed"),
    ):
        client.download(server.url("/r"), tmp_path / "f", sha256=None, size=None)
    assert len(loads) == 1 and not (tmp_path / "f").exists()
    assert tls_server.requests == []
    # Trusted (a bundle named as pip and requests name it): loaded before the redirect.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with HttpClient(tmp_path / "cache") as client:
        client.download(server.url("/r"), tmp_path / "f", sha256=None, size=None)
    assert (tmp_path / "f").read_bytes() == b"secret payload"
    assert len(loads) == 2


# -- h11's receive buffer, handing whole buffers over ----------------------------------------


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.binary(max_size=40)),
            st.tuples(st.just("at_most"), st.integers(min_value=-2, max_value=60)),
            st.tuples(st.just("line"), st.none()),
            st.tuples(st.just("lines"), st.none()),
        ),
        max_size=30,
    )
)
def test_the_receive_buffer_hands_over_what_h11_would(ops: list[tuple[str, object]]) -> None:
    from h11._receivebuffer import ReceiveBuffer

    lhttp._hand_over_whole_buffers()
    if not getattr(ReceiveBuffer.maybe_extract_at_most, "_lockenv", False):
        pytest.skip("this h11 release is left as it is")
    # h11's own methods, kept by the patch.
    patched = ("__iadd__", "_extract", "maybe_extract_at_most")
    originals = {name: getattr(ReceiveBuffer, name).__wrapped__ for name in patched}
    Original = type("Original", (ReceiveBuffer,), originals)
    ours, theirs = ReceiveBuffer(), Original()
    for op, arg in ops:
        if op == "add":
            assert isinstance(arg, bytes)
            ours += arg
            theirs += arg
            continue
        if op == "at_most":
            assert isinstance(arg, int)
            got, expected = ours.maybe_extract_at_most(arg), theirs.maybe_extract_at_most(arg)
        elif op == "line":
            got, expected = ours.maybe_extract_next_line(), theirs.maybe_extract_next_line()
        else:
            got, expected = ours.maybe_extract_lines(), theirs.maybe_extract_lines()
        assert got == expected  # the same bytes (handed over as bytes, not a bytearray)
        assert bytes(ours) == bytes(theirs) and len(ours) == len(theirs)
    # A whole read is handed over as it came: not one copy.
    chunk = bytes(100)
    ours = ReceiveBuffer()
    ours += chunk
    assert ours.maybe_extract_at_most(1000) is chunk


# -- httpx imported without its command-line client ------------------------------------------

_WITHOUT_CLI = """
import importlib, sys

asked = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        asked.append(name)
        return None  # the usual finders go on

sys.meta_path.insert(0, Watch())
from lockenv.http import HttpClient, _load_httpx

_load_httpx()
import httpx

assert "httpx._main" not in asked, asked  # never even looked for
assert "httpx._main" not in sys.modules  # nor left blocked
httpx.Client().close()
try:
    importlib.import_module("httpx._main")  # later, anyone: imported as usual
except ImportError as exc:
    assert exc.name not in ("httpx._main", None), exc  # only its own missing dependencies
assert "httpx._main" in asked
print("ok")
"""


def test_httpx_is_imported_without_its_command_line_client() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_CLI], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
