"""Streaming HTTP/1.1 GETs on the standard library's ``http.client``: the downloads of
`lockenv.http.HttpClient`.

A cold sync pays for its HTTP stack before its first byte: httpx and httpcore cost
~150 ms of imports (of a ~0.7 s sync of two 20 MiB wheels), ``http.client`` ~30 ms (it
is most of what httpx imports from the standard library anyway).  So the client streams
its downloads through this module and keeps httpx for pages, ranges and sizes (the lock
side, where the index dominates).  What a download gets here is what it got from the
client's httpx set-up:

- connections kept alive and reused per origin (and proxy), thread-safe, at most
  ``max_connections`` in use at once (a request waits up to the timeout for one); an idle
  connection the server has closed meanwhile is not reused, and a request that fails on
  a reused connection before any answer is sent again on a new one (a GET, safe to
  repeat);
- redirects (301, 302, 303, 307, 308) followed, at most `MAX_REDIRECTS`; the
  ``Authorization`` header is dropped once one leads to another origin (kept for an
  upgrade from http to https of the same host on the default ports, as httpx does);
- proxies from the environment (`environment_proxies`), as the client's httpx mounts
  apply them: ``http_proxy`` for http URLs, ``https_proxy`` for https ones (tunnelled
  with CONNECT), credentials in the proxy URL sent as ``Proxy-Authorization``; loopback
  hosts and the hosts and domains of ``no_proxy`` reached directly (``*``: every host);
  a proxy that is not a plain ``http://`` one makes `Transport.handles` say no, and the
  client uses httpx;
- TLS with the context given (the client's trust store), host names verified;
- one timeout for connecting, for each read and for waiting for a connection.

No cookies are kept between requests (httpx's client kept a jar; an index or mirror
that needs one for its files is not known to lockenv, nor is uv's client keeping one).
Failures of the network come out as OSError (timeouts, refused connections, TLS) or
``http.client.HTTPException`` (a broken answer, a body cut short): the caller retries
them.  `BadRequestURL` and `TooManyRedirects` are not worth retrying.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.client import (
    HTTPConnection,
    HTTPException,
    HTTPResponse,
    HTTPSConnection,
    IncompleteRead,
)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = [
    "MAX_REDIRECTS",
    "BadRequestURL",
    "Response",
    "TooManyRedirects",
    "Transport",
    "direct_hosts",
    "environment_proxies",
]

MAX_REDIRECTS = 20  # as httpx
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_DRAIN = 64 << 10  # a redirect's body read to keep its connection; a larger one closes it
# What may stay as it is in a request target; anything else (spaces, non-ASCII) is
# percent-encoded, as httpx does.  '%' stays: a URL's escapes are already escapes.
_SAFE = "!#$%&'()*+,/:;=?@[]~"


class BadRequestURL(Exception):
    """A URL this transport cannot request (not http/https, no host, a bad port)."""


class TooManyRedirects(Exception):
    """More than `MAX_REDIRECTS` redirects."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Proxy:
    """The proxy a connection goes through."""

    host: str
    port: int
    authorization: str | None  # the Proxy-Authorization value, from the proxy URL


# A connection is keyed by what it leads to: scheme, host, port, and the proxy (or None).
_Key = tuple[str, str, int, _Proxy | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    """Where a request goes: its origin and the request line's target."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, percent-encoded

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def absolute(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}{'' if default else f':{self.port}'}{self.path}"


def environment_proxies() -> dict[str, str]:
    """The proxies the environment names, by scheme: ``urllib.request.getproxies()``,
    without importing ``urllib.request`` (~20 ms) where that is sure to find none (no
    ``*_proxy`` variable, and a system whose only proxy settings are those)."""
    if sys.platform in ("darwin", "win32") or any(
        name.lower().endswith("_proxy") for name in os.environ
    ):
        import urllib.request

        return urllib.request.getproxies()
    return {}


def _parse_proxy(url: str) -> _Proxy | None:
    """``url`` as a plain http proxy; None for any other kind (https, socks, no scheme)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 80
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    authorization = None
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        authorization = basic_authorization(user, password)
    return _Proxy(host=parts.hostname, port=port, authorization=authorization)


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic authentication (UTF-8, as httpx sends)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def direct_hosts(no_proxy: str) -> list[tuple[str, bool]] | None:
    """The hosts reached without a proxy, each with whether its sub-hosts are too (a
    domain, not an IP address): loopback and what ``no_proxy`` names; None when it says
    ``*`` (every host).  Entries with a port, CIDR ranges and IPv6 literals are left out:
    an httpx mount cannot say them (`lockenv.http` mounts these, this module matches
    them, so both clients reach the same hosts directly)."""
    hosts: list[tuple[str, bool]] = []
    for entry in ("localhost", "127.0.0.1", *no_proxy.split(",")):
        name = entry.strip().lstrip(".").lower()
        if name == "*":
            return None
        if name and ":" not in name and "/" not in name:
            hosts.append((name, not name.replace(".", "").isdigit()))
    return hosts


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``host`` is reached without a proxy (`direct_hosts`)."""
    hosts = direct_hosts(no_proxy)
    return hosts is None or any(
        host == name or (domain and host.endswith("." + name)) for name, domain in hosts
    )


def _target(url: str) -> _Target:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadRequestURL(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadRequestURL(f"Request URL has an unsupported protocol '{scheme}://'.")
    host = (parts.hostname or "").lower()
    if not host:
        raise BadRequestURL("Request URL is missing an 'http://' or 'https://' protocol.")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BadRequestURL(f"Invalid host name {host!r}: {exc}") from None
    path = urllib.parse.quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe=_SAFE)
    return _Target(scheme=scheme, host=host, port=port or _DEFAULT_PORTS[scheme], path=path)


def _same_origin_or_upgrade(old: _Target, new: _Target) -> bool:
    """Whether credentials sent to ``old`` may go to ``new`` (httpx's rule)."""
    if old.origin == new.origin:
        return True
    return (
        old.host == new.host
        and (old.scheme, old.port) == ("http", 80)
        and (new.scheme, new.port) == ("https", 443)
    )


class Response:
    """An answer being received: status, reason, headers, the final URL (after
    redirects) and its body, read by `blocks`."""

    def __init__(self, answer: HTTPResponse, url: str) -> None:
        self._answer = answer
        self.status = answer.status
        self.reason = answer.reason
        self.headers = answer.headers
        self.url = url

    def blocks(self, size: int) -> Iterator[bytes]:
        """The body as it arrives: each block what one read of the socket gave, up to
        ``size`` bytes (never waiting to fill one: the caller's deadline is checked
        between blocks, and a server sending a byte at a time must not hold it off).  A
        body cut short of its announced length raises ``http.client.IncompleteRead``."""
        answer = self._answer
        while block := answer.read1(size):
            yield block
        if answer.length:  # bytes announced that never came: the connection broke
            raise IncompleteRead(b"", answer.length)
        answer.read()  # nothing left: marks the answer read, so the connection may serve again


class Transport:
    """A pool of ``http.client`` connections streaming GETs (see the module doc);
    thread-safe.  ``tls`` gives the SSL context for https (called for each new TLS
    connection: it may load the trust store the first time); ``proxies`` as
    `environment_proxies` gives them."""

    def __init__(
        self,
        *,
        timeout: float,
        max_connections: int,
        user_agent: str,
        tls: Callable[[], ssl.SSLContext],
        proxies: Mapping[str, str],
    ) -> None:
        self._timeout = timeout
        self._user_agent = user_agent
        self._tls = tls
        self._max_idle = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: dict[_Key, list[HTTPConnection]] = {}
        self._closed = False
        self._no_proxy = proxies.get("no", "")
        self._proxy_urls = {s: proxies[s] for s in _DEFAULT_PORTS if proxies.get(s)}
        self._proxies = {s: _parse_proxy(url) for s, url in self._proxy_urls.items()}

    def handles(self, url: str) -> bool:
        """Whether this transport can GET ``url``: an http(s) URL whose proxy, if it has
        one, is a plain http proxy.  (A URL it cannot request at all is its to refuse,
        with `BadRequestURL`.)"""
        scheme = url.partition("://")[0].lower()
        if scheme not in self._proxy_urls or self._proxies[scheme] is not None:
            return True
        try:
            host = (urllib.parse.urlsplit(url).hostname or "").lower()
        except ValueError:
            return True
        return _bypassed(host, self._no_proxy)

    def _proxy_for(self, target: _Target) -> _Proxy | None:
        if target.scheme not in self._proxy_urls or _bypassed(target.host, self._no_proxy):
            return None
        proxy = self._proxies[target.scheme]
        if proxy is None:  # `handles` said no: the caller was to use another client
            raise BadRequestURL(f"the proxy {self._proxy_urls[target.scheme]!r} is not http://")
        return proxy

    @contextlib.contextmanager
    def get(
        self,
        url: str,
        *,
        authorization: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[Response]:
        """GET ``url``, following redirects; the answer to read while the block lasts.
        ``authorization``: the ``Authorization`` header, for ``url``'s origin only."""
        if not self._slots.acquire(timeout=self._timeout):
            raise TimeoutError(f"no connection free within {self._timeout:.0f} s")
        try:
            target = _target(url)
            for _ in range(MAX_REDIRECTS + 1):
                key, connection, answer = self._send(target, authorization, headers)
                location = answer.getheader("location")
                if answer.status not in _REDIRECTS or location is None:
                    break
                self._finish(key, connection, answer, drain=True)
                following = _target(urllib.parse.urljoin(target.absolute, location.strip()))
                if authorization is not None and not _same_origin_or_upgrade(target, following):
                    authorization = None
                target = following
            else:
                raise TooManyRedirects(f"Exceeded maximum allowed redirects ({MAX_REDIRECTS}).")
            try:
                yield Response(answer, target.absolute)
            except BaseException:
                connection.close()
                raise
            self._finish(key, connection, answer, drain=False)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections, and those in use as their answers end."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    # -- connections -----------------------------------------------------------------------

    def _send(
        self, target: _Target, authorization: str | None, extra: Mapping[str, str] | None
    ) -> tuple[_Key, HTTPConnection, HTTPResponse]:
        proxy = self._proxy_for(target)
        key: _Key = (target.scheme, target.host, target.port, proxy)
        headers = {"Accept": "*/*", "Accept-Encoding": "identity", "User-Agent": self._user_agent}
        headers.update(extra or {})
        if authorization is not None:
            headers["Authorization"] = authorization
        # Through an http proxy a plain request names the whole URL; https is tunnelled.
        path = target.path
        if proxy is not None and target.scheme == "http":
            path = target.absolute
            if proxy.authorization is not None:
                headers["Proxy-Authorization"] = proxy.authorization
        connection = self._checkout(key)
        reused = connection is not None
        while True:
            if connection is None:
                connection = self._connect(target, proxy)
            try:
                connection.request("GET", path, headers=headers)
                return key, connection, connection.getresponse()
            except BaseException as exc:
                connection.close()
                if not reused or not isinstance(exc, OSError | HTTPException):
                    raise
                # The server closed the kept-alive connection as we reused it: once more
                # on a new one.
                connection, reused = None, False

    def _connect(self, target: _Target, proxy: _Proxy | None) -> HTTPConnection:
        host, port = (target.host, target.port) if proxy is None else (proxy.host, proxy.port)
        if target.scheme == "http":
            return HTTPConnection(host, port, timeout=self._timeout)
        connection = HTTPSConnection(host, port, timeout=self._timeout, context=self._tls())
        if proxy is not None:
            tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
            connection.set_tunnel(target.host, target.port, headers=tunnel)
        return connection

    def _checkout(self, key: _Key) -> HTTPConnection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                connection = idle.pop() if idle else None
            if connection is None or _still_open(connection):
                return connection
            connection.close()

    def _finish(
        self, key: _Key, connection: HTTPConnection, answer: HTTPResponse, *, drain: bool
    ) -> None:
        """Keep ``connection`` for the next request to ``key`` if its answer was read to
        the end (``drain``: read a small rest first) and the server keeps it open."""
        if drain and not answer.isclosed():
            with contextlib.suppress(OSError, HTTPException):
                answer.read(_DRAIN)
        if not answer.isclosed() or answer.will_close:
            connection.close()
            return
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append(connection)
                return
        connection.close()


def _still_open(connection: HTTPConnection) -> bool:
    """Whether an idle kept-alive connection may be used: its server has not closed it.
    Nothing may be readable on it between answers: an end of stream, or stray bytes,
    mean it is done."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        poll = getattr(select, "poll", None)
        if poll is not None:
            poller = poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False
