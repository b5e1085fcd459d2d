"""lockenv.transport: downloads on http.client — redirects, credentials, proxies, connection
reuse, errors, threads — through `HttpClient.download`, against servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lockenv import http as lhttp
from lockenv import transport
from lockenv.errors import IndexAccessError
from lockenv.http import HttpClient, HttpStatusError

from test_http import Route, TinyServer, certificate, tls_server  # noqa: F401  (fixtures)

if TYPE_CHECKING:
    import ssl

ROOT = Path(__file__).resolve().parent.parent
BODY = bytes(range(256)) * 4096  # 1 MiB: more than one block of the transport


@pytest.fixture
def server() -> Iterator[TinyServer]:
    srv = TinyServer()
    yield srv
    srv.close()


@pytest.fixture
def other() -> Iterator[TinyServer]:
    """A second server: another origin (another port of the same host)."""
    srv = TinyServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _no_proxies_no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lhttp, "_RETRY_BACKOFF", 0.0)
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _download(client: HttpClient, url: str, dest: Path, body: bytes = BODY) -> None:
    digest = hashlib.sha256(body).hexdigest()
    assert client.download(url, dest, sha256=digest, size=len(body)) == (digest, len(body))
    assert dest.read_bytes() == body


def _basic(user: str, password: str) -> str:
    return transport.basic_authorization(user, password)


# -- what a download sends, and httpx left alone ---------------------------------------------


def test_a_download_sends_the_headers_and_never_imports_httpx(
    server: TinyServer, tmp_path: Path
) -> None:
    server.routes["/f.whl"] = Route(body=b"wheel")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from lockenv.http import HttpClient\n"
        "with HttpClient(None) as c:\n"
        f"    c.download({server.url('/f.whl')!r}, Path({str(tmp_path / 'f')!r}),"
        " sha256=None, size=5)\n"
        "print(sorted(m for m in ('httpx', 'httpcore', 'h11', 'urllib.request')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "f").read_bytes() == b"wheel"
    (seen,) = server.requests
    assert seen.method == "GET" and seen.path == "/f.whl"
    assert seen.headers["accept-encoding"] == "identity"
    assert seen.headers["user-agent"].startswith("lockenv/")
    assert seen.headers["host"] == server.base.removeprefix("http://")
    assert "authorization" not in seen.headers


def test_a_path_is_sent_percent_encoded_as_given(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/files/a%20b%2Bc.whl"] = Route(body=b"x")
    with HttpClient(None) as client:
        _download(client, server.url("/files/a b%2Bc.whl?x=1"), tmp_path / "f", b"x")
    assert server.requests[0].path == "/files/a%20b%2Bc.whl?x=1"


# -- connections -------------------------------------------------------------------------------


def test_one_connection_serves_one_download_after_another(
    server: TinyServer, tmp_path: Path
) -> None:
    for i in range(3):
        server.routes[f"/f{i}"] = Route(body=BODY)
    with HttpClient(None) as client:
        for i in range(3):
            _download(client, server.url(f"/f{i}"), tmp_path / f"f{i}")
    assert len({seen.port for seen in server.requests}) == 1


def test_a_connection_the_server_closes_is_not_reused(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/closing"] = Route(body=BODY, headers={"Connection": "close"})
    server.routes["/next"] = Route(body=BODY)
    with HttpClient(None) as client:
        _download(client, server.url("/closing"), tmp_path / "a")
        _download(client, server.url("/next"), tmp_path / "b")
    assert [seen.path for seen in server.requests] == ["/closing", "/next"]  # no retry
    assert len({seen.port for seen in server.requests}) == 2


def test_an_idle_connection_closed_by_its_server_is_seen_as_closed() -> None:
    ours, theirs = socket.socketpair()
    connection = http.client.HTTPConnection("127.0.0.1", 1)
    connection.sock = ours
    assert transport._still_open(connection)
    theirs.close()  # the server's idle timeout
    assert not transport._still_open(connection)
    connection.close()
    assert not transport._still_open(connection)


def test_downloads_from_many_threads_share_the_pool(server: TinyServer, tmp_path: Path) -> None:
    bodies = {f"/f{i}": BODY[i:] for i in range(24)}
    for path, body in bodies.items():
        server.routes[path] = Route(body=body)
    with HttpClient(None, max_connections=4) as client, ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: _download(
                    client, server.url(item[0]), tmp_path / item[0][1:], item[1]
                ),
                bodies.items(),
            )
        )
    assert sorted(seen.path for seen in server.requests) == sorted(bodies)
    # At most 4 at once, each kept for the next download: never more than 4 connections.
    assert len({seen.port for seen in server.requests}) <= 4


# -- redirects and credentials ---------------------------------------------------------------


def test_redirects_are_followed_with_credentials_kept_on_the_same_origin(
    server: TinyServer, tmp_path: Path
) -> None:
    server.auth = ("alice", "p@ss")
    server.routes["/a"] = Route(status=301, headers={"Location": "/b"})
    server.routes["/b"] = Route(status=307, headers={"Location": server.url("/files/c")})
    server.routes["/files/c"] = Route(body=BODY)
    url = server.url("/a").replace("http://", "http://alice:p%40ss@")
    with HttpClient(None) as client:
        _download(client, url, tmp_path / "c")
    assert [seen.path for seen in server.requests] == ["/a", "/b", "/files/c"]
    assert {seen.headers.get("authorization") for seen in server.requests} == {
        _basic("alice", "p@ss")
    }


def test_a_redirect_to_another_origin_drops_the_credentials(
    server: TinyServer, other: TinyServer, tmp_path: Path
) -> None:
    server.routes["/f"] = Route(status=302, headers={"Location": other.url("/f")})
    other.routes["/f"] = Route(status=302, headers={"Location": server.url("/g")})
    server.routes["/g"] = Route(body=BODY)
    with HttpClient(None) as client:
        _download(client, server.url("/f").replace("http://", "http://bob:pw@"), tmp_path / "f")
    assert server.requests[0].headers["authorization"] == _basic("bob", "pw")
    assert "authorization" not in other.requests[0].headers
    # Not sent again on the way back either: the chain left the origin once.
    assert [s.path for s in server.requests] == ["/f", "/g"]
    assert "authorization" not in server.requests[1].headers


def test_credentials_from_netrc_for_a_download(
    server: TinyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine 127.0.0.1 login bob password hunter2\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    server.auth = ("bob", "hunter2")
    server.routes["/f"] = Route(body=BODY)
    with HttpClient(None) as client:
        _download(client, server.url("/f"), tmp_path / "f")


def test_wrong_credentials_are_a_status_error_tried_once(
    server: TinyServer, tmp_path: Path
) -> None:
    server.auth = ("bob", "right")
    server.routes["/f"] = Route(body=BODY)
    with HttpClient(None) as client, pytest.raises(HttpStatusError) as info:
        client.download(
            server.url("/f").replace("http://", "http://bob:wrong@"),
            tmp_path / "f",
            sha256=None,
            size=None,
        )
    assert info.value.status == 401 and "wrong" not in str(info.value)
    assert len(server.requests) == 1 and not (tmp_path / "f").exists()


def test_a_redirect_loop_ends_with_one_line(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    with HttpClient(None) as client, pytest.raises(IndexAccessError, match="too many redirects"):
        client.download(server.url("/loop"), tmp_path / "f", sha256=None, size=None)
    assert server.count("/loop") == transport.MAX_REDIRECTS + 1  # not retried


def test_a_redirect_to_another_scheme_cannot_be_requested(
    server: TinyServer, tmp_path: Path
) -> None:
    server.routes["/f"] = Route(status=302, headers={"Location": "ftp://127.0.0.1/f"})
    with HttpClient(None) as client, pytest.raises(IndexAccessError, match="cannot be requested"):
        client.download(server.url("/f"), tmp_path / "f", sha256=None, size=None)
    assert server.count("/f") == 1


# -- errors and retries ----------------------------------------------------------------------


def test_server_errors_are_retried_then_named(server: TinyServer, tmp_path: Path) -> None:
    server.routes["/f"] = Route(status=503)
    with (
        HttpClient(None) as client,
        pytest.raises(IndexAccessError, match=r"download failed: HTTP 503 .*after 3 tries"),
    ):
        client.download(server.url("/f"), tmp_path / "f", sha256=None, size=None)
    assert server.count("/f") == 3


def test_a_refused_connection_is_retried_then_named(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        url = f"http://127.0.0.1:{s.getsockname()[1]}/f"
        with (
            HttpClient(None) as client,
            pytest.raises(IndexAccessError, match=r"ConnectionRefusedError.*after 3 tries"),
        ):
            client.download(url, tmp_path / "f", sha256=None, size=None)


@dataclass
class RawServer:
    """Answers every connection with ``answer`` (bytes, or None: nothing at all) and
    then closes it (or, with None, waits until the client gives up)."""

    answer: bytes | None
    port: int = 0
    connections: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not select.select([self._sock], [], [], 0.05)[0]:
                continue
            conn, _ = self._sock.accept()
            self.connections += 1
            with conn:
                conn.recv(65536)
                if self.answer is None:
                    conn.recv(1)  # until the client closes
                else:
                    conn.sendall(self.answer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


@pytest.mark.parametrize(
    ("answer", "timeout", "failure"),
    [
        # The body is cut short of its announced length.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10, None, "IncompleteRead"),
        (None, "0.2", "TimeoutError"),  # the server says nothing at all
    ],
)
def test_a_broken_answer_is_retried_then_named(
    answer: bytes | None,
    timeout: str | None,
    failure: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if timeout is not None:
        monkeypatch.setenv("LOCKENV_HTTP_TIMEOUT", timeout)
    raw = RawServer(answer)
    try:
        with (
            HttpClient(None) as client,
            pytest.raises(IndexAccessError, match=rf"{failure}.*after 3 tries"),
        ):
            client.download(
                f"http://127.0.0.1:{raw.port}/f", tmp_path / "f", sha256=None, size=None
            )
    finally:
        raw.close()
    assert raw.connections == 3 and not (tmp_path / "f").exists()


# -- proxies -----------------------------------------------------------------------------------


class Proxy:
    """A forward proxy on 127.0.0.1 that sends every request, whatever host it names, to
    ``upstream`` (a port on 127.0.0.1): plain GETs forwarded, CONNECT tunnelled; reached
    over TLS with ``tls`` (a server context).  It records the request lines and the
    Proxy-Authorization headers it gets."""

    def __init__(self, upstream: int, *, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.seen.append(("GET", self.path, self.headers.get("Proxy-Authorization")))
                target = http.client.HTTPConnection("127.0.0.1", upstream, timeout=10)
                parts = self.path.split("/", 3)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() != "proxy-authorization"
                }
                target.request("GET", "/" + (parts[3] if len(parts) > 3 else ""), headers=headers)
                answer = target.getresponse()
                body = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                target.close()

            def do_CONNECT(self) -> None:
                proxy.seen.append(("CONNECT", self.path, self.headers.get("Proxy-Authorization")))
                target = socket.create_connection(("127.0.0.1", upstream), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                ends = [self.connection, target]
                while True:
                    for end in select.select(ends, [], [], 10)[0]:
                        data = end.recv(65536)
                        if not data:
                            target.close()
                            self.close_connection = True
                            return
                        (target if end is self.connection else self.connection).sendall(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def proxy(server: TinyServer) -> Iterator[Proxy]:
    p = Proxy(int(server.base.rpartition(":")[2]))
    yield p
    p.close()


def test_http_goes_through_the_http_proxy_with_its_credentials(
    server: TinyServer, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://pu:pp@"))
    server.routes["/files/f"] = Route(body=BODY)
    with HttpClient(None) as client:
        _download(client, "http://files.example.invalid/files/f", tmp_path / "f")
    assert proxy.seen == [("GET", "http://files.example.invalid/files/f", _basic("pu", "pp"))]
    (seen,) = server.requests
    assert seen.headers["host"] == "files.example.invalid"
    assert "proxy-authorization" not in seen.headers


def test_loopback_and_no_proxy_hosts_are_reached_directly(
    server: TinyServer, proxy: Proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    server.routes["/f"] = Route(body=BODY)
    with HttpClient(None) as client:
        _download(client, server.url("/f"), tmp_path / "f")
    assert proxy.seen == [] and len(server.requests) == 1


def test_https_is_tunnelled_through_the_proxy_and_verified(
    tls_server: TinyServer,  # noqa: F811
    certificate: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = tls_server.base.rpartition(":")[2]
    p = Proxy(int(port))
    try:
        monkeypatch.setenv("HTTPS_PROXY", p.url.replace("http://", "http://pu:pp@"))
        tls_server.routes["/f"] = Route(body=BODY)
        url = f"https://files.example.invalid:{port}/f"  # a name the certificate holds
        with HttpClient(None) as client, pytest.raises(IndexAccessError, match="download failed"):
            client.download(url, tmp_path / "f", sha256=None, size=None)  # not trusted
        assert tls_server.requests == []
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        with HttpClient(None) as client:
            _download(client, url, tmp_path / "f")
            with pytest.raises(IndexAccessError, match="download failed"):  # not its name
                client.download(
                    f"https://other.example.invalid:{port}/f",
                    tmp_path / "g",
                    sha256=None,
                    size=None,
                )
        (seen,) = tls_server.requests
        assert seen.headers["host"] == f"files.example.invalid:{port}"
        assert {(method, auth) for method, _, auth in p.seen} == {("CONNECT", _basic("pu", "pp"))}
        assert f"files.example.invalid:{port}" in {path for _, path, _ in p.seen}
    finally:
        p.close()


def test_a_proxy_httpx_reaches_over_tls_is_left_to_httpx(
    server: TinyServer,
    certificate: tuple[Path, Path],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    p = Proxy(int(server.base.rpartition(":")[2]), tls=context)
    try:
        monkeypatch.setenv("HTTP_PROXY", p.url.replace("http://", "https://"))
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        server.routes["/files/f"] = Route(body=BODY)
        with HttpClient(None) as client:
            assert not client._downloads().handles("http://files.example.invalid/files/f")
            _download(client, "http://files.example.invalid/files/f", tmp_path / "f")
        assert [(m, path) for m, path, _ in p.seen] == [
            ("GET", "http://files.example.invalid/files/f")
        ]
    finally:
        p.close()


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("localhost", "", True),
        ("127.0.0.1", "", True),
        ("files.example.org", "", False),
        ("files.example.org", "example.org", True),
        ("example.org", "example.org", True),
        ("example.org", ".example.org", True),
        ("notexample.org", "example.org", False),
        ("files.example.org", "other.org, example.org", True),
        ("files.example.org", "*", True),
        ("files.example.org", "example.org:8080", False),  # ports are not expressible
        ("10.1.2.3", "10.0.0.0/8", False),  # nor CIDR ranges
        ("10.1.2.3", "10.1.2.3", True),
        ("1.10.1.2.3", "10.1.2.3", False),  # an address is no domain
        ("files.example.org", "EXAMPLE.org", True),
    ],
)
def test_no_proxy_entries(host: str, no_proxy: str, bypassed: bool) -> None:
    assert transport._bypassed(host, no_proxy) is bypassed


@pytest.mark.parametrize(
    ("proxies", "url", "handled"),
    [
        ({}, "https://files.example.org/f", True),
        ({"http": "http://proxy:3128"}, "http://files.example.org/f", True),
        ({"https": "https://proxy:3128"}, "https://files.example.org/f", False),
        ({"https": "socks5://proxy:1080"}, "https://files.example.org/f", False),
        ({"https": "socks5://proxy:1080"}, "http://files.example.org/f", True),
        (
            {"https": "socks5://proxy:1080", "no": "example.org"},
            "https://files.example.org/f",
            True,
        ),
        ({"http": "proxy:3128"}, "http://files.example.org/f", False),
        ({"http": "https://proxy:3128"}, "http://127.0.0.1:8000/f", True),
    ],
)
def test_proxies_other_than_plain_http_are_left_to_httpx(
    proxies: dict[str, str], url: str, handled: bool
) -> None:
    pool = transport.Transport(
        timeout=1,
        max_connections=1,
        user_agent="t",
        tls=lambda: None,
        proxies=proxies,  # type: ignore[arg-type, return-value]
    )
    assert pool.handles(url) is handled


def test_environment_proxies_match_urllib(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    assert transport.environment_proxies() == urllib.request.getproxies() == {}
    monkeypatch.setenv("https_proxy", "http://proxy:1")
    monkeypatch.setenv("NO_PROXY", "example.org")
    assert transport.environment_proxies() == urllib.request.getproxies()
    assert transport.environment_proxies()["https"] == "http://proxy:1"
