"""One HTTP client for every index and channel: caching, credentials, retries, file:// URLs.

Credentials, first match wins:

1. user info in the URL (``https://user:token@host/simple``); once seen, the client also
   uses it for other URLs of the same origin (scheme, host and port: never another port
   of the same host), as file URLs on an index page rarely carry it.  URLs seen this way
   include, before the first request, pip's configured index (``PIP_INDEX_URL``,
   pip.conf), the conda channel alias (``LOCKENV_CHANNEL_ALIAS``) and the URLs the
   client was given (``credential_urls``: the manifest's indexes and channels), so a
   sync downloads with the credentials the lock was made with;
2. ``.netrc`` (``$NETRC``, else ``~/.netrc``), the ``machine`` entry for the host;
3. ``LOCKENV_HTTP_USERNAME_<HOST>`` / ``LOCKENV_HTTP_PASSWORD_<HOST>``, where ``<HOST>`` is
   the host name upper-cased with every non-alphanumeric character turned into ``_``.

A conda token (``https://host/t/<token>/channel``) is a credential too: learned the same
way for its origin and put back into the path of requests under the same prefix.

Credentials travel only in requests (user info in the ``Authorization`` header): never in
cache keys, messages, or anything written to disk (`redact_url`, `redact_text`).
Redirects to another origin drop the header.

Mirrors (`lockenv.mirrors`): a URL a rule covers is fetched from the rule's mirrors in
order, the next one tried when one does not have it (HTTP 404/410, another 4xx or 5xx,
no connection, bytes that fail the expected sha256 or size); a mirror that could not be
reached is tried last for the rest of the client's life.  The client never rewrites what
it returns: a page's ``url`` is where it was actually read (so its relative links
resolve), and `HttpClient.origin_of` names it as its origin would.

Index pages are cached on disk under ``<cache_dir>/http/``: revalidated with ETag /
Last-Modified, kept for ``max-age`` when the server says so, never stored on ``no-store``,
and kept ``page_ttl`` seconds (``LOCKENV_INDEX_TTL``) when the server gives no caching
header at all.

Two transports, one behaviour: downloads (`HttpClient.download`, what a sync does) go
through `lockenv.transport` on the standard library's ``http.client``, which a cold sync
imports in a fraction of httpx's time; pages, ranges and sizes (the lock side) through
httpx, imported when first needed; so do downloads through a proxy that is not a plain
``http://`` one.  Both send the same headers and credentials, share the TLS context,
follow redirects the same way, and honour the same proxies and timeouts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lockenv.errors import IndexAccessError, IntegrityError, LockenvError, OfflineError
from lockenv.limits import open_regular, read_capped, size_text
from lockenv.urls import (
    Origin,
    file_url_to_path,
    origin_of,
    redact_url,
    split_credentials,
    with_token,
)

_log = logging.getLogger("lockenv.http")  # -v: every request and cache decision

if TYPE_CHECKING:
    import netrc
    import ssl
    from collections.abc import Callable

    import httpx

    from lockenv.mirrors import Mirrors
    from lockenv.transport import Transport

    T = TypeVar("T")

__all__ = [
    "MAX_DOCUMENT",
    "ByteRange",
    "Consumer",
    "HttpClient",
    "HttpStatusError",
    "Page",
    "http_timeout",
    "transfer_budget",
]

_RETRIES = 3
TIMEOUT_ENV = "LOCKENV_HTTP_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
# A transfer has ``timeout`` plus the time its size needs at this rate, retries included:
# a server that trickles bytes (one every few seconds never trips a read timeout) ends
# there rather than never.
_MIN_RATE = 32 * 1024  # bytes per second
_UNKNOWN_SIZE = 32 << 20  # what a body of unannounced length is budgeted as
#: The most bytes of one document lockenv holds in memory unless the caller says less: a
#: conda repodata file (decompressed too, `lockenv.lock.conda.compressed`), a shard.  The
#: largest real ones (a big channel's repodata.json) are a few hundred MB; a hostile or
#: broken server or mirror gets an error here instead of all the memory there is.  PyPI
#: pages and metadata files ask for `lockenv.limits.MAX_PAGE`.
MAX_DOCUMENT = 1 << 30
_RETRY_BACKOFF = 0.2  # seconds, doubled after every failed try
_CHUNK = 1 << 20  # file:// downloads read in blocks as large as a socket's (`_READ_BLOCK`)
_FEED_AHEAD = 8  # blocks (up to 1 MiB each, `_READ_BLOCK`) read ahead of a slow consumer
_CACHE_FORMAT = 1
_CACHE_HEADER = 64 << 10  # room for a cached page's JSON header line


class Consumer(Protocol):
    """What `HttpClient.download` feeds a body to as it arrives (see there)."""

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body (not yet verified: the hash is checked at the
        end).  Never raises for bad content: it notes it and ignores the rest."""

    def discard(self) -> None:
        """Undo what was done with the bytes fed so far: the attempt failed."""


class HttpStatusError(IndexAccessError):
    """The server answered with an error status (``status``; 404 for a missing file://)."""

    def __init__(self, message: str, *, url: str, status: int | None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """A fetched page: the final URL (after redirects, redacted) and its body."""

    url: str
    content_type: str
    content: bytes
    from_cache: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ByteRange:
    """Bytes ``data`` found at offset ``start`` of a file of ``total_size`` bytes.

    A server that ignores ``Range`` sends the whole file: then ``start == 0`` and
    `is_whole_file` is true, and the caller should use it rather than ask again.
    """

    data: bytes
    start: int
    total_size: int | None

    @property
    def is_whole_file(self) -> bool:
        """True when ``data`` is the complete file."""
        return self.start == 0 and self.total_size == len(self.data)


def http_timeout(default: float = DEFAULT_TIMEOUT) -> float:
    """The seconds a request may stay silent: ``$LOCKENV_HTTP_TIMEOUT``, else ``default``."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return default
    try:
        timeout = float(value)
        if not timeout > 0:
            raise ValueError(value)
    except ValueError:
        raise IndexAccessError(
            f"{TIMEOUT_ENV}={value!r} is not a number of seconds; fix or unset it"
        ) from None
    return timeout


def transfer_budget(size: int | None, timeout: float | None = None) -> float:
    """The deadline, in seconds, of a whole transfer of ``size`` bytes (None: not
    announced), retries included: ``timeout`` (default `http_timeout`) plus the time the
    size needs at the slowest rate accepted."""
    base = http_timeout() if timeout is None else timeout
    return base + (size if size is not None else _UNKNOWN_SIZE) / _MIN_RATE


def _host_env_suffix(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", host).upper()


def _parse_cache_control(value: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for item in value.split(","):
        name, sep, arg = item.strip().partition("=")
        if name:
            directives[name.strip().lower()] = arg.strip().strip('"') if sep else None
    return directives


def _guess_file_content_type(path: Path) -> str:
    if path.suffix == ".json":
        return (
            "application/vnd.pypi.simple.v1+json"
            if path.name == "index.json"
            else ("application/json")
        )
    if path.suffix in (".html", ".htm"):
        return "text/html"
    return "application/octet-stream"


def _hint(status: int) -> str:
    if status in (401, 403):
        return "check your credentials (.netrc or LOCKENV_HTTP_USERNAME_/PASSWORD_<HOST>)"
    if status == 404:
        return "check the index or channel URL"
    if status >= 500:
        return "the server failed; try again later"
    return "check the index URL or your credentials"


class HttpClient:
    """A thread-safe HTTP(S) and file:// client shared by every index and channel client.

    Use as a context manager (or call `close`).  ``offline=True`` serves index pages from
    the cache only and refuses network downloads (`OfflineError`); ``refresh=True`` ignores
    cached pages (they are still rewritten).  ``mirrors``: the rules to fetch through
    (default: the machine's, `lockenv.mirrors.site_mirrors`, read at the first request).
    """

    def __init__(
        self,
        cache_dir: Path | None,
        *,
        offline: bool = False,
        refresh: bool = False,
        page_ttl: float = 600.0,
        max_connections: int = 16,
        timeout: float = DEFAULT_TIMEOUT,
        mirrors: Mirrors | None = None,
        credential_urls: Sequence[str] = (),
    ) -> None:
        self.cache_dir = cache_dir
        self._mirrors = mirrors
        self._unreachable: set[str] = set()  # mirror prefixes that could not be reached
        self.offline = offline
        self.refresh = refresh
        env_ttl = os.environ.get("LOCKENV_INDEX_TTL")
        if env_ttl:
            try:
                page_ttl = float(env_ttl)
            except ValueError:
                raise IndexAccessError(
                    f"LOCKENV_INDEX_TTL={env_ttl!r} is not a number of seconds; fix or unset it"
                ) from None
        self.page_ttl = page_ttl
        self._max_connections = max_connections
        self._timeout = http_timeout(timeout)
        self._client: httpx.Client | None = None
        self._transport: Transport | None = None  # downloads (`lockenv.transport`)
        self._trust: _LazyTrust | None = None
        self._lock = threading.Lock()
        # Credentials and conda tokens seen in URLs, each for its origin only.
        self._learned: dict[Origin, tuple[str, str]] = {}
        self._tokens: dict[Origin, tuple[str, str]] = {}  # origin -> (path prefix, token)
        self._credential_urls = tuple(credential_urls)
        self._seeded = False
        self._seed_lock = threading.Lock()
        self._netrc: netrc.netrc | bool | None = False  # False = not read yet

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pools."""
        with self._lock:
            client, self._client = self._client, None
            transport, self._transport = self._transport, None
        if client is not None:
            client.close()
        if transport is not None:
            transport.close()

    def _lazy_trust(self) -> _LazyTrust:
        """The one TLS context of both transports (the caller holds ``_lock``)."""
        if self._trust is None:
            self._trust = _LazyTrust()
        return self._trust

    def _httpx(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                _load_httpx()
                import httpx

                _read_larger_blocks()
                trust = self._lazy_trust()
                self._client = httpx.Client(
                    follow_redirects=True,
                    timeout=httpx.Timeout(self._timeout),
                    limits=httpx.Limits(
                        max_connections=self._max_connections,
                        max_keepalive_connections=self._max_connections,
                    ),
                    verify=trust.context,
                    event_hooks={"request": [trust.before_request]},
                    # Credentials and proxies are our own business: no implicit netrc.
                    trust_env=False,
                    mounts=_proxy_mounts(),
                    headers={"User-Agent": _user_agent()},
                )
            return self._client

    def _downloads(self) -> Transport:
        with self._lock:
            if self._transport is None:
                from lockenv.transport import Transport, environment_proxies

                self._transport = Transport(
                    timeout=self._timeout,
                    max_connections=self._max_connections,
                    user_agent=_user_agent(),
                    tls=self._lazy_trust().loaded,
                    proxies=environment_proxies(),
                )
            return self._transport

    # -- mirrors ---------------------------------------------------------------------------

    @property
    def mirrors(self) -> Mirrors:
        """The mirror rules this client fetches through."""
        if self._mirrors is None:
            from lockenv.mirrors import site_mirrors

            mirrors = site_mirrors()
            with self._lock:
                if self._mirrors is None:
                    self._mirrors = mirrors
        assert self._mirrors is not None
        return self._mirrors

    def origin_of(self, url: str) -> str:
        """``url`` named as its origin would name it (unchanged when no mirror serves it)."""
        return self.mirrors.origin_of(url) if self.mirrors else url

    def _via_mirrors(self, url: str, fetch: Callable[[str], T]) -> T:
        """``fetch`` from the first location of ``url`` that has it (see the module doc)."""
        rule = self.mirrors.rule_for(url) if self.mirrors else None
        if rule is None:
            return fetch(url)
        rest = redact_url(url)[len(rule.origin) :]
        if len(rule.mirrors) == 1:
            return fetch(rule.mirrors[0] + rest)
        with self._lock:
            # Stable: the order of the rule, with mirrors found unreachable moved last.
            prefixes = sorted(rule.mirrors, key=lambda m: m in self._unreachable)
        failures: list[tuple[str, Exception]] = []
        for prefix in prefixes:
            try:
                return fetch(prefix + rest)
            except (HttpStatusError, IntegrityError, OfflineError) as exc:
                failures.append((prefix + rest, exc))
            except IndexAccessError as exc:  # no connection, after the retries
                failures.append((prefix + rest, exc))
                with self._lock:
                    self._unreachable.add(prefix)
        raise _no_location(redact_url(url), failures)

    # -- credentials -----------------------------------------------------------------------

    def learn_credentials(self, url: str) -> None:
        """Remember the credentials and conda token in ``url`` for its origin (scheme,
        host and port), unless that origin has some already."""
        try:
            clean, creds, token = split_credentials(url)
        except ValueError:
            return
        origin = origin_of(clean)
        with self._lock:
            if creds is not None:
                self._learned.setdefault(origin, creds)
            if token is not None:
                self._tokens.setdefault(origin, token)

    def _seed(self) -> None:
        """Learn, once, the credentials a lock was made with: URLs given to the client,
        pip's configured index (``PIP_INDEX_URL``, pip.conf) and the conda channel alias
        (``LOCKENV_CHANNEL_ALIAS``), so a sync downloads with them too."""
        if self._seeded:
            return
        with self._seed_lock:  # downloads start in several threads at once
            if self._seeded:
                return
            urls = list(self._credential_urls)
            from lockenv.errors import LockenvError
            from lockenv.pipconfig import configured_index_url

            # An unreadable pip.conf is reported where the index itself is needed.
            with contextlib.suppress(LockenvError):
                urls.append(configured_index_url() or "")
            urls.append(os.environ.get("LOCKENV_CHANNEL_ALIAS", ""))
            for url in urls:
                if "@" in url or "/t/" in url:
                    self.learn_credentials(url)
            self._seeded = True

    def _prepare(self, url: str) -> tuple[str, tuple[str, str] | None]:
        """Return (the URL to request, the user and password to send or None): user info
        moved out of the URL (into the ``Authorization`` header), a conda token kept in
        (or put back into) the path, both only for the origin they were given for."""
        self._seed()
        self.learn_credentials(url)
        try:
            clean, creds, token = split_credentials(url)
        except ValueError as exc:
            raise IndexAccessError(f"{redact_url(url)!r} is not a valid URL ({exc})") from None
        origin = origin_of(clean)
        with self._lock:
            creds = creds or self._learned.get(origin)
            token = token or self._tokens.get(origin)
        if creds is None:
            creds = self._credentials_for(origin[1])
        if token is not None:
            clean = with_token(clean, token)
        return clean, creds

    def _credentials_for(self, host: str) -> tuple[str, str] | None:
        rc = self._read_netrc()
        if rc is not None:
            entry = rc.authenticators(host)
            if entry is not None:
                login, account, secret = entry
                return (login or account or "", secret or "")
        suffix = _host_env_suffix(host)
        user = os.environ.get(f"LOCKENV_HTTP_USERNAME_{suffix}")
        password = os.environ.get(f"LOCKENV_HTTP_PASSWORD_{suffix}")
        if user is not None or password is not None:
            return (user or "", password or "")
        return None

    def _read_netrc(self) -> netrc.netrc | None:
        import netrc

        if self._netrc is False:
            path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
            parsed: netrc.netrc | None = None
            if Path(path).is_file():
                try:
                    parsed = netrc.netrc(path)
                except (netrc.NetrcParseError, OSError) as exc:
                    # The exception text may quote a password: name the file only.
                    raise IndexAccessError(
                        f"netrc file {path!r} is unreadable (line "
                        f"{getattr(exc, 'lineno', '?')}); fix it or set NETRC"
                    ) from None
            self._netrc = parsed
        return self._netrc if isinstance(self._netrc, netrc.netrc) else None

    # -- requests --------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        ok_statuses: tuple[int, ...] = (200,),
        most: int | None = None,
    ) -> httpx.Response:
        """Send with retries; return the response (body read, at most ``most`` bytes) if
        its status is acceptable."""
        _load_httpx()
        import httpx

        clean, creds = self._prepare(url)
        auth = None if creds is None else httpx.BasicAuth(*creds)
        shown = redact_url(url)
        client = self._httpx()
        begun = time.monotonic()  # the deadline covers the retries too
        last: Exception | None = None
        for attempt in range(_RETRIES):
            if attempt:
                time.sleep(_RETRY_BACKOFF * 2 ** (attempt - 1))
            started = time.monotonic()
            try:
                with (
                    _request_errors(shown),
                    client.stream(method, clean, headers=headers, auth=auth) as streamed,
                ):
                    length = streamed.headers.get("content-length", "")
                    size = int(length) if length.isdigit() else None
                    pieces = self._chunks(
                        streamed.iter_bytes(), shown, begun, size, most=most or MAX_DOCUMENT
                    )
                    body = b"".join(pieces)
                    response = _loaded(streamed, body)
            except httpx.TransportError as exc:
                _log.info("%s %s: %s", method, shown, type(exc).__name__)
                last = exc
                continue
            _log.info(
                "%s %s -> %d (%.0f ms)",
                method,
                shown,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            if response.status_code >= 500 and attempt + 1 < _RETRIES:
                continue
            if response.status_code in ok_statuses:
                return response
            raise HttpStatusError(
                f"{shown!r}: HTTP {response.status_code} {response.reason_phrase}; "
                f"{_hint(response.status_code)}",
                url=shown,
                status=response.status_code,
            )
        raise IndexAccessError(
            f"{shown!r}: {type(last).__name__}: {last} (after {_RETRIES} tries); "
            "check the URL and your network or proxy settings"
        )

    def _check_online(self, url: str, what: str) -> None:
        if self.offline:
            raise OfflineError(
                f"{redact_url(url)!r} is needed ({what}) but --offline forbids the network "
                "and it is not in the cache; run once online or use a bundle"
            )

    # -- pages -----------------------------------------------------------------------------

    def get_page(self, url: str, *, accept: str, most: int | None = None) -> Page:
        """GET an index page (``Accept: accept``), through the on-disk cache; a page of
        more than ``most`` bytes is refused (IndexAccessError) while it is read."""
        cap = most or MAX_DOCUMENT
        return self._via_mirrors(url, lambda location: self._get_page(location, accept, cap))

    def _get_page(self, url: str, accept: str, most: int) -> Page:
        if url.startswith("file:"):
            return self._get_file_page(url, most)
        entry_path = self._cache_path(url, accept)
        cached = None if entry_path is None else _read_cache_entry(entry_path, most)
        now = time.time()
        if self.offline and cached is not None:
            _log.info("cache (offline): %s", redact_url(url))
            return cached.page(from_cache=True)
        self._check_online(url, "index page")
        if cached is not None and not self.refresh and cached.is_fresh(now, self.page_ttl):
            _log.info("cache hit: %s", redact_url(url))
            return cached.page(from_cache=True)

        headers = {"Accept": accept}
        if cached is not None and not self.refresh:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        response = self._request("GET", url, headers, ok_statuses=(200, 304), most=most)
        if response.status_code == 304 and cached is not None:
            _log.info("cache revalidated: %s", redact_url(url))
            entry = cached.revalidated(response, now)
            if entry_path is not None:
                _write_cache_entry(entry_path, entry)
            return entry.page(from_cache=True)
        entry = _CacheEntry.from_response(response, now)
        if entry_path is not None and not entry.no_store:
            _write_cache_entry(entry_path, entry)
        return entry.page(from_cache=False)

    def _get_file_page(self, url: str, most: int) -> Page:
        path = file_url_to_path(url)
        if path.is_dir():
            path = path / "index.html"
        try:
            content = read_capped(path, most, "index page", regular_only=True)
        except FileNotFoundError:
            raise HttpStatusError(
                f"{redact_url(url)!r}: no such file; check the index URL",
                url=redact_url(url),
                status=404,
            ) from None
        except OSError as exc:
            raise IndexAccessError(f"{redact_url(url)!r}: cannot read: {exc}") from None
        return Page(
            url=url, content_type=_guess_file_content_type(path), content=content, from_cache=False
        )

    def _cache_path(self, url: str, accept: str) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{redact_url(url)}\0{accept}".encode()).hexdigest()
        return self.cache_dir / "http" / key[:2] / f"{key}.json"

    def fetch_bytes(self, url: str, *, most: int | None = None) -> bytes:
        """GET a small file (e.g. a ``.metadata`` file) without the page cache; more than
        ``most`` bytes is refused (IndexAccessError) while it is read."""
        cap = most or MAX_DOCUMENT
        return self._via_mirrors(url, lambda location: self._fetch_bytes(location, cap))

    def _fetch_bytes(self, url: str, most: int) -> bytes:
        if url.startswith("file:"):
            path = file_url_to_path(url)
            try:
                return read_capped(path, most, "document", regular_only=True)
            except FileNotFoundError:
                shown = redact_url(url)
                raise HttpStatusError(f"{shown!r}: no such file", url=shown, status=404) from None
            except OSError as exc:
                raise IndexAccessError(f"{redact_url(url)!r}: cannot read: {exc}") from None
        self._check_online(url, "download")
        return self._request("GET", url, most=most).content

    # -- ranges ----------------------------------------------------------------------------

    def get_range(self, url: str, start: int, end: int | None = None) -> ByteRange:
        """Bytes ``[start, end)`` of a file (to its end when ``end`` is None)."""
        return self._via_mirrors(url, lambda location: self._get_range(location, start, end))

    def _get_range(self, url: str, start: int, end: int | None) -> ByteRange:
        if url.startswith("file:"):
            return _local_range(file_url_to_path(url), start, end)
        self._check_online(url, "partial download")
        spec = f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"
        return self._range_request(url, spec)

    def get_suffix(self, url: str, n: int) -> ByteRange:
        """The last ``n`` bytes of a file (all of it when it is shorter)."""
        return self._via_mirrors(url, lambda location: self._get_suffix(location, n))

    def _get_suffix(self, url: str, n: int) -> ByteRange:
        if url.startswith("file:"):
            path = file_url_to_path(url)
            size = _stat_size(path, url)
            return _local_range(path, max(0, size - n), None)
        self._check_online(url, "partial download")
        return self._range_request(url, f"bytes=-{n}")

    def _range_request(self, url: str, spec: str) -> ByteRange:
        headers = {"Range": spec, "Accept-Encoding": "identity"}
        response = self._request("GET", url, headers, ok_statuses=(200, 206))
        data = response.content
        if response.status_code == 200:
            return ByteRange(data=data, start=0, total_size=len(data))
        match = re.fullmatch(
            r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", response.headers.get("content-range", "")
        )
        if match is None:
            raise IndexAccessError(
                f"{redact_url(url)!r}: HTTP 206 without a usable Content-Range "
                f"({response.headers.get('content-range')!r})"
            )
        total = None if match[3] == "*" else int(match[3])
        return ByteRange(data=data, start=int(match[1]), total_size=total)

    def content_length(self, url: str) -> int | None:
        """Size of a file from a HEAD request (or stat for file://); None if not given."""
        return self._via_mirrors(url, self._content_length)

    def _content_length(self, url: str) -> int | None:
        if url.startswith("file:"):
            return _stat_size(file_url_to_path(url), url)
        self._check_online(url, "size check")
        response = self._request("HEAD", url, {"Accept-Encoding": "identity"})
        value = response.headers.get("content-length")
        return int(value) if value and value.isdigit() else None

    # -- downloads -------------------------------------------------------------------------

    def download(
        self,
        url: str,
        dest: Path | None,
        *,
        sha256: str | None,
        size: int | None,
        on_bytes: Callable[[int], None] | None = None,
        consumer: Callable[[], Consumer] | None = None,
    ) -> tuple[str, int]:
        """Download ``url`` to ``dest`` atomically, checking ``size`` and ``sha256`` if given.

        The body is hashed while it streams into a temporary file beside ``dest``, which
        replaces ``dest`` only when it matches.  Returns ``(sha256, size)``.  Through
        mirrors, a mirror whose bytes do not match is passed over for the next.
        ``on_bytes`` hears of each chunk's size as it arrives (a progress display); a
        retry, or a mirror passed over, first takes back what it counted.

        ``consumer``: makes, for each attempt, a `Consumer` that is fed the body as it
        arrives (a wheel unpacked while it downloads); an attempt that fails, the integrity
        check included, discards its consumer.  When this returns, the last one made was
        fed the whole, verified body.  ``dest`` None: the body is not kept (a consumer
        takes it).
        """
        return self._via_mirrors(
            url,
            lambda location: self._download(
                location, dest, sha256=sha256, size=size, on_bytes=on_bytes, consumer=consumer
            ),
        )

    def _download(
        self,
        url: str,
        dest: Path | None,
        *,
        sha256: str | None,
        size: int | None,
        on_bytes: Callable[[int], None] | None,
        consumer: Callable[[], Consumer] | None = None,
    ) -> tuple[str, int]:
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
        shown = redact_url(url)
        started = time.monotonic()
        _log.info("download %s (%s bytes)", shown, size if size is not None else "?")
        last: Exception | None = None
        counted = [0]

        def count(n: int) -> None:
            counted[0] += n
            if on_bytes is not None:
                on_bytes(n)

        def take_back() -> None:
            if on_bytes is not None and counted[0]:
                on_bytes(-counted[0])
            counted[0] = 0

        for attempt in range(_RETRIES):
            if attempt:
                time.sleep(_RETRY_BACKOFF * 2 ** (attempt - 1))
            fed = consumer() if consumer is not None else None
            try:
                if dest is None:
                    digest, written = self._stream_into(url, None, size, count, started, fed)
                    _check_integrity(shown, sha256, size, digest, written)
                    return digest, written
                with _temp_beside(dest) as (tmp, fh):
                    digest, written = self._stream_into(url, fh, size, count, started, fed)
                    fh.close()
                    _check_integrity(shown, sha256, size, digest, written)
                    os.replace(tmp, dest)
                return digest, written
            except _Retryable as exc:
                _log.info("download %s: %s; trying again", shown, exc)
                take_back()
                if fed is not None:
                    fed.discard()
                last = exc
            except BaseException:
                take_back()
                if fed is not None:
                    fed.discard()
                raise
        raise IndexAccessError(
            f"{shown!r}: download failed: {last} (after {_RETRIES} tries); check the URL and "
            "your network"
        )

    def _stream_into(
        self,
        url: str,
        fh: Any,
        limit: int | None,
        count: Callable[[int], None],
        started: float,
        consumer: Consumer | None = None,
    ) -> tuple[str, int]:
        hasher = hashlib.sha256()
        written = 0
        feeder = _Feeder(consumer) if consumer is not None else None
        try:
            for chunk in self._chunks(self._iter_bytes(url), redact_url(url), started, limit):
                hasher.update(chunk)
                if fh is not None:
                    fh.write(chunk)
                written += len(chunk)
                count(len(chunk))
                if limit is not None and written > limit:
                    break  # already wrong: no need to fetch the rest (nor to feed it on)
                if feeder is not None:
                    feeder.feed(chunk)
        except BaseException:
            if feeder is not None:
                feeder.stop()
            raise
        if feeder is not None:
            feeder.close()
        return hasher.hexdigest(), written

    def _iter_bytes(self, url: str) -> Iterator[bytes]:
        if url.startswith("file:"):
            path = file_url_to_path(url)
            try:
                src = open_regular(path)
            except FileNotFoundError:
                raise HttpStatusError(
                    f"{redact_url(url)!r}: no such file", url=redact_url(url), status=404
                ) from None
            except OSError as exc:
                raise IndexAccessError(f"{redact_url(url)!r}: cannot read: {exc}") from None
            with src:
                while chunk := src.read(_CHUNK):
                    yield chunk
            return
        self._check_online(url, "download")
        clean, creds = self._prepare(url)
        shown = redact_url(url)
        downloads = self._downloads()
        if not downloads.handles(clean):
            yield from self._iter_bytes_httpx(clean, creds, shown)
            return
        from http.client import HTTPException

        from lockenv.transport import BadRequestURL, TooManyRedirects, basic_authorization

        authorization = None if creds is None else basic_authorization(*creds)
        try:
            with downloads.get(
                clean, authorization=authorization, headers={"Accept-Encoding": "identity"}
            ) as response:
                _check_download_status(shown, response.status, response.reason)
                # As the socket gives them, up to 1 MiB (`_READ_BLOCK`): one allocation
                # each, filled by the socket; the deadline is checked between them.
                yield from response.blocks(_READ_BLOCK)
        except TooManyRedirects:
            raise _too_many_redirects(shown) from None
        except BadRequestURL as exc:
            raise IndexAccessError(f"{shown!r} cannot be requested: {exc}") from None
        except (OSError, HTTPException) as exc:
            raise _Retryable.of(exc) from exc

    def _iter_bytes_httpx(
        self, clean: str, creds: tuple[str, str] | None, shown: str
    ) -> Iterator[bytes]:
        """A download through httpx: where a proxy is not a plain http one."""
        _load_httpx()
        import httpx

        auth = None if creds is None else httpx.BasicAuth(*creds)
        try:
            with (
                _request_errors(shown),
                self._httpx().stream(
                    "GET", clean, auth=auth, headers={"Accept-Encoding": "identity"}
                ) as response,
            ):
                _check_download_status(shown, response.status_code, response.reason_phrase)
                # As the blocks come (`_read_larger_blocks`): re-chunking only copies; the
                # deadline is checked between them (`_chunks`).
                yield from response.iter_raw()
        except httpx.TransportError as exc:
            raise _Retryable.of(exc) from exc

    def _chunks(
        self,
        chunks: Iterator[bytes],
        shown: str,
        started: float,
        size: int | None,
        *,
        most: int | None = None,
    ) -> Iterator[bytes]:
        """``chunks`` until the transfer's deadline (`_MIN_RATE`), then IndexAccessError;
        IndexAccessError too once more than ``most`` bytes came (or were announced)."""
        if most is not None and size is not None and size > most:
            raise _too_large(shown, most)
        budget = transfer_budget(size, self._timeout)
        received = 0
        for chunk in chunks:
            received += len(chunk)
            if most is not None and received > most:
                raise _too_large(shown, most)
            yield chunk
            if time.monotonic() - started > budget:
                raise IndexAccessError(
                    f"{shown!r}: too slow: the deadline of {budget:.0f} s passed with "
                    f"{received} bytes received; the server stalls (set {TIMEOUT_ENV}, in "
                    "seconds, to wait longer)"
                )


def _check_download_status(shown: str, status: int, reason: str) -> None:
    """Nothing for a 200; `_Retryable` for a server error, else HttpStatusError."""
    if status >= 500:
        raise _Retryable(f"HTTP {status} {reason}")
    if status != 200:
        raise HttpStatusError(
            f"{shown!r}: HTTP {status} {reason}; {_hint(status)}", url=shown, status=status
        )


def _too_many_redirects(shown: str) -> IndexAccessError:
    return IndexAccessError(
        f"{shown!r}: too many redirects (the server redirects in a loop); check the URL "
        "or the server"
    )


def _too_large(shown: str, most: int) -> IndexAccessError:
    return IndexAccessError(
        f"{shown!r}: the response is larger than {size_text(most)}, more than any page or "
        "repodata lockenv reads whole; the server or mirror is broken or hostile"
    )


@contextlib.contextmanager
def _request_errors(shown: str) -> Iterator[None]:
    """httpx's errors that retrying cannot fix, as one-line IndexAccessErrors."""
    import httpx

    try:
        yield
    except httpx.TooManyRedirects:
        raise _too_many_redirects(shown) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise IndexAccessError(f"{shown!r} cannot be requested: {exc}") from None


def _loaded(streamed: httpx.Response, body: bytes) -> httpx.Response:
    """A plain response holding ``body`` (already decoded), for the callers of
    `HttpClient._request`: same status, headers and request (so its final URL)."""
    import httpx

    # The body is decoded: its encoding, and the length of the encoded form, no longer hold.
    dropped = {"content-encoding", "transfer-encoding"}
    if "content-encoding" in streamed.headers:
        dropped.add("content-length")
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in dropped]
    return httpx.Response(
        streamed.status_code, headers=headers, content=body, request=streamed.request
    )


_HTTPX_CLI = "httpx._main"
_httpx_loading = threading.Lock()


def _load_httpx() -> None:
    """Import httpx without its command-line client.

    httpx's ``__init__`` imports ``httpx._main`` (the ``httpx`` command) whenever rich and
    click are installed, as they often are beside lockenv: that is most of the cost of
    importing httpx (measured: 0.10 of 0.23 s, paid by every sync that downloads), for
    a command lockenv never runs.  A None in ``sys.modules`` makes that import fail the
    way httpx expects when the command's dependencies are missing (it then defines a
    stub); the None is removed again at once, so an ``import httpx._main`` later, by
    anyone, works as usual.
    """
    import sys

    if "httpx" in sys.modules:
        return
    with _httpx_loading:
        if "httpx" in sys.modules:
            return
        blocked = _HTTPX_CLI not in sys.modules
        if blocked:
            sys.modules[_HTTPX_CLI] = None  # type: ignore[assignment]
        try:
            import httpx  # noqa: F401
        finally:
            if blocked and sys.modules.get(_HTTPX_CLI, 0) is None:
                del sys.modules[_HTTPX_CLI]


_READ_BLOCK = 1 << 20


def _read_larger_blocks() -> None:
    """Have httpcore read the socket up to 1 MiB at a time instead of 64 KiB.

    Every block read passes through several layers of Python (httpcore, h11, httpx):
    at 64 KiB that is most of a large download's CPU (measured: 0.43 s of user CPU per
    200 MiB from a loopback server, 0.13 s with 1 MiB reads; hashing it takes 0.1 s).
    httpcore has no public setting for it; when its class attribute is not there (another
    httpcore), nothing changes but speed.
    """
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:
        return
    if getattr(HTTP11Connection, "READ_NUM_BYTES", _READ_BLOCK) < _READ_BLOCK:
        HTTP11Connection.READ_NUM_BYTES = _READ_BLOCK
    _hand_over_whole_buffers()


# The h11 releases whose ReceiveBuffer `_hand_over_whole_buffers` was checked against.
_H11_CHECKED = ("0.14.", "0.15.", "0.16.")


def _hand_over_whole_buffers() -> None:
    """Have h11 hand a body's received bytes over as they were read, not copied.

    h11's ReceiveBuffer copies each read into its bytearray, slices it twice to extract
    it, and httpcore copies the result into ``bytes``: four copies of every byte of a
    download (measured: 0.8 s of CPU per 800 MiB, a fifth of a cold sync of large
    wheels).  Patched here: a read arriving in an empty buffer is kept as it is (bytes),
    the extraction of a whole buffer (the usual case: each read is taken at once) hands it
    over (so httpcore's ``bytes()`` is no copy either), and the buffer is made a bytearray
    again only where h11 edits it in place (`ReceiveBuffer._extract`: headers, lines,
    part of a read).  Only for the h11 releases checked (`_H11_CHECKED`), whose
    ReceiveBuffer keeps the state this relies on; another h11 is left as it is (slower).
    """
    try:
        import h11
        from h11._receivebuffer import ReceiveBuffer
    except ImportError:
        return
    if not str(getattr(h11, "__version__", "")).startswith(_H11_CHECKED):
        return
    state = ("_data", "_next_line_search", "_multiple_lines_search")
    if not all(hasattr(ReceiveBuffer(), name) for name in state):
        return
    if getattr(ReceiveBuffer.maybe_extract_at_most, "_lockenv", False):
        return
    original = {
        name: getattr(ReceiveBuffer, name)
        for name in ("__iadd__", "_extract", "maybe_extract_at_most")
    }

    def add(self: Any, data: bytes | bytearray) -> Any:
        if not self._data and type(data) is bytes:
            self._data = data  # kept, not copied: bytes never change
        elif type(self._data) is bytes:
            self._data = bytearray(self._data) + data
        else:
            self._data += data
        return self

    def extract(self: Any, count: int) -> bytearray:
        if type(self._data) is bytes:
            self._data = bytearray(self._data)  # edited in place from here on
        return original["_extract"](self, count)  # type: ignore[no-any-return]

    def maybe_extract_at_most(self: Any, count: int) -> bytes | bytearray | None:
        data = self._data
        if not data or count < len(data):
            # As h11 does (a slice's rules: a negative count leaves that many bytes).
            return extract(self, count) if range(len(data))[:count] else None
        self._data = bytearray()
        self._next_line_search = 0
        self._multiple_lines_search = 0
        return data  # type: ignore[no-any-return]

    replacements: dict[str, Any] = {
        "__iadd__": add,
        "_extract": extract,
        "maybe_extract_at_most": maybe_extract_at_most,
    }
    for name, replacement in replacements.items():
        replacement._lockenv = True
        replacement.__wrapped__ = original[name]
        setattr(ReceiveBuffer, name, replacement)


class _Feeder:
    """Feeds a `Consumer` on a thread of its own, so that what it does with each block
    (a wheel unpacked while it downloads: each member's CRC-32 and sha256, the writes)
    overlaps with receiving and hashing the next blocks, instead of following them.
    hashlib, zlib and ``os.write`` release the GIL on large buffers, so with two cores a
    large download costs about the longer of the two halves, not their sum (measured:
    one 400 MiB wheel from a loopback server, see benchmarks/big_downloads.py).

    At most `_FEED_AHEAD` blocks wait for the consumer: a slow disk slows the download
    down rather than filling the memory.  The blocks reach the consumer in order, all of
    them before `close` returns; an exception the consumer raises is raised again by the
    next `feed` or by `close`."""

    def __init__(self, consumer: Consumer) -> None:
        import queue

        self._consumer = consumer
        self._blocks: queue.Queue[bytes | None] = queue.Queue(_FEED_AHEAD)
        self._failed: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lockenv-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._blocks.get()) is not None:
            if self._failed is not None or self._stopping:
                continue  # drained, not fed: the attempt is over
            try:
                self._consumer.feed(block)
            except BaseException as exc:  # raised again on the download's thread
                self._failed = exc

    def feed(self, block: bytes) -> None:
        """Queue the next block for the consumer (waits while `_FEED_AHEAD` do)."""
        self._raise_failure()
        self._blocks.put(block)

    def close(self) -> None:
        """Wait until the consumer has taken every block queued."""
        self._blocks.put(None)
        self._thread.join()
        self._raise_failure()

    def stop(self) -> None:
        """The download failed: feed nothing more, and wait for the thread to end (so the
        consumer is idle when it is discarded)."""
        self._stopping = True
        self._blocks.put(None)
        self._thread.join()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed


class _Retryable(Exception):
    """A download's attempt failed in a way a new attempt may fix (a broken connection,
    a timeout, a server error); its text is said if every try fails."""

    @classmethod
    def of(cls, exc: Exception) -> _Retryable:
        return cls(f"{type(exc).__name__}: {exc}")


def _no_location(shown: str, failures: list[tuple[str, Exception]]) -> LockenvError:
    """One error for a URL no mirror could serve, of the kind callers act on: a 404 when
    every mirror that answered said it has no such file, an integrity error when one
    served wrong bytes, else the first failure."""
    tried = "; ".join(f"{redact_url(loc)}: {_reason(exc)}" for loc, exc in failures)
    message = f"{shown!r}: no mirror could serve it ({tried}); check the mirrors' settings"
    integrity = [exc for _, exc in failures if isinstance(exc, IntegrityError)]
    if integrity:
        return IntegrityError(message)
    statuses = [exc.status for _, exc in failures if isinstance(exc, HttpStatusError)]
    if statuses and all(status in (404, 410) for status in statuses):
        return HttpStatusError(message, url=shown, status=statuses[0])
    first = failures[0][1]
    if isinstance(first, HttpStatusError):
        return HttpStatusError(message, url=shown, status=first.status)
    if isinstance(first, OfflineError):
        return first
    return IndexAccessError(message)


def _reason(exc: Exception) -> str:
    if isinstance(exc, HttpStatusError) and exc.status is not None:
        return f"HTTP {exc.status}"
    if isinstance(exc, IntegrityError):
        return "sha256 or size mismatch"
    text = str(exc)
    return text.rpartition(": ")[2] if ": " in text else text


def _check_integrity(
    shown: str, sha256: str | None, size: int | None, digest: str, written: int
) -> None:
    if size is not None and written != size:
        raise IntegrityError(
            f"{shown!r}: size mismatch: expected {size} bytes, got "
            f"{'more than ' if written > size else ''}{written}; the file changed on the "
            "server or the lock is wrong (re-lock, or check the mirror)"
        )
    if sha256 is not None and digest != sha256.lower():
        raise IntegrityError(
            f"{shown!r}: sha256 mismatch: expected {sha256.lower()}, got {digest}; the file "
            "changed on the server or the lock is wrong (re-lock, or check the mirror)"
        )


@contextlib.contextmanager
def _temp_beside(dest: Path) -> Iterator[tuple[Path, Any]]:
    # A downloaded file gets the modes any other new file would (umask), not mkstemp's
    # private 0600, so a cache shared by a group of cluster users stays readable; the
    # partial file is removed whatever happens, a full disk included.
    from lockenv.atomic import new_file_mode, temp_file_beside

    with temp_file_beside(dest, suffix=".part", mode=new_file_mode()) as (tmp, fh):
        yield tmp, fh


def _stat_size(path: Path, url: str) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise HttpStatusError(
            f"{redact_url(url)!r}: no such file", url=redact_url(url), status=404
        ) from None


def _local_range(path: Path, start: int, end: int | None) -> ByteRange:
    url = path.as_uri()
    size = _stat_size(path, url)
    stop = size if end is None else min(end, size)
    try:
        fh = open_regular(path)
    except OSError as exc:
        raise IndexAccessError(f"{redact_url(url)!r}: cannot read: {exc}") from None
    with fh:
        fh.seek(start)
        data = fh.read(max(0, stop - start))
    return ByteRange(data=data, start=start, total_size=size)


# -- on-disk page cache --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _CacheEntry:
    """One cached HTTP response, with what decides whether it is still fresh."""

    url: str
    content_type: str
    content: bytes
    stored_at: float
    etag: str | None
    last_modified: str | None
    max_age: float | None  # from Cache-Control / Expires
    no_cache: bool  # must revalidate before use
    no_store: bool

    @classmethod
    def from_response(cls, response: httpx.Response, now: float) -> _CacheEntry:
        headers = response.headers
        cc = _parse_cache_control(headers.get("cache-control", ""))
        return cls(
            url=redact_url(str(response.url)),
            content_type=headers.get("content-type", ""),
            content=response.content,
            stored_at=now,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
            max_age=_max_age(cc, headers.get("expires"), now),
            no_cache="no-cache" in cc,
            no_store="no-store" in cc,
        )

    def revalidated(self, response: httpx.Response, now: float) -> _CacheEntry:
        headers = response.headers
        cc = _parse_cache_control(headers.get("cache-control", ""))
        return _CacheEntry(
            url=self.url,
            content_type=self.content_type,
            content=self.content,
            stored_at=now,
            etag=headers.get("etag") or self.etag,
            last_modified=headers.get("last-modified") or self.last_modified,
            max_age=_max_age(cc, headers.get("expires"), now)
            if headers.get("cache-control") or headers.get("expires")
            else self.max_age,
            no_cache="no-cache" in cc if headers.get("cache-control") else self.no_cache,
            no_store=False,
        )

    def is_fresh(self, now: float, ttl: float) -> bool:
        age = now - self.stored_at
        if age < 0 or self.no_cache:
            return False
        if self.max_age is not None:
            return age < self.max_age
        if self.etag or self.last_modified:
            return False  # cheap to revalidate: always ask
        return age < ttl

    def page(self, *, from_cache: bool) -> Page:
        return Page(
            url=self.url,
            content_type=self.content_type,
            content=self.content,
            from_cache=from_cache,
        )


def _max_age(cc: dict[str, str | None], expires: str | None, now: float) -> float | None:
    for key in ("s-maxage", "max-age"):
        value = cc.get(key)
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return 0.0
    if expires:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(expires).timestamp() - now)
        except (TypeError, ValueError):
            return 0.0
    return None


def _read_cache_entry(path: Path, most: int) -> _CacheEntry | None:
    try:
        raw = read_capped(path, most + _CACHE_HEADER, "cached page")
        header, _, body = raw.partition(b"\n")
        meta = json.loads(header)
        if meta.get("format") != _CACHE_FORMAT or meta.get("length") != len(body):
            return None
        return _CacheEntry(
            url=meta["url"],
            content_type=meta["content_type"],
            content=body,
            stored_at=float(meta["stored_at"]),
            etag=meta.get("etag"),
            last_modified=meta.get("last_modified"),
            max_age=meta.get("max_age"),
            no_cache=bool(meta.get("no_cache")),
            no_store=False,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a missing or damaged entry is just a miss


def _write_cache_entry(path: Path, entry: _CacheEntry) -> None:
    meta = {
        "format": _CACHE_FORMAT,
        "url": entry.url,
        "content_type": entry.content_type,
        "stored_at": entry.stored_at,
        "etag": entry.etag,
        "last_modified": entry.last_modified,
        "max_age": entry.max_age,
        "no_cache": entry.no_cache,
        "length": len(entry.content),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _temp_beside(path) as (tmp, fh):
            fh.write(json.dumps(meta, sort_keys=True).encode() + b"\n" + entry.content)
            fh.close()
            os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full cache must not break a lock


# -- transport setup -----------------------------------------------------------------------


class _LazyTrust:
    """An SSL context whose trust store (`_load_trust`) is loaded before the first https
    request, redirects included (an httpx request hook), not when the client is made: a
    sync from plain http:// (a site mirror, a loopback index) never pays for reading the
    system's certificates (~50 ms).  Until then it trusts nothing, so nothing is ever sent
    over TLS unverified."""

    def __init__(self) -> None:
        import ssl

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies hosts and chains
        self._loaded = False
        self._lock = threading.Lock()

    def before_request(self, request: httpx.Request) -> None:
        if request.url.scheme == "https":
            self.loaded()

    def loaded(self) -> ssl.SSLContext:
        """The context, its trust store loaded (the first time)."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    _load_trust(self.context)
                    self._loaded = True
        return self.context


def _ssl_context() -> Any:
    """Trust the system store (else certifi's), plus a bundle named like pip or requests do."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load_trust(ctx)
    return ctx


def _load_trust(ctx: Any) -> None:
    """Load into ``ctx`` what `_ssl_context` trusts."""
    import ssl

    ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    keylog = os.environ.get("SSLKEYLOGFILE")  # as ssl.create_default_context does
    if keylog and hasattr(ctx, "keylog_filename"):
        with contextlib.suppress(OSError):
            ctx.keylog_filename = keylog
    # certifi only where the system has no CA store (minimal containers): loading it on
    # top of a full system store costs ~45 ms of every cold sync and adds nothing.
    if not ctx.cert_store_stats().get("x509_ca"):
        with contextlib.suppress(ImportError, OSError):
            import certifi

            ctx.load_verify_locations(cafile=certifi.where())
    loaded = {os.path.realpath(p) for p in (ssl.get_default_verify_paths().cafile,) if p}
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"):
        bundle = os.environ.get(var)
        if bundle and Path(bundle).is_file() and os.path.realpath(bundle) not in loaded:
            loaded.add(os.path.realpath(bundle))
            with contextlib.suppress(ssl.SSLError, OSError):
                ctx.load_verify_locations(cafile=bundle)


def _proxy_mounts() -> dict[str, Any] | None:
    """Honour HTTP(S)_PROXY / NO_PROXY (trust_env is off so netrc stays ours)."""
    import httpx

    from lockenv.transport import direct_hosts, environment_proxies

    proxies = environment_proxies()
    mounts: dict[str, Any] = {}
    for scheme in ("http", "https"):
        proxy = proxies.get(scheme)
        if proxy:
            mounts[f"{scheme}://"] = httpx.HTTPTransport(proxy=proxy, verify=_ssl_context())
    # Loopback servers (test indexes, local mirrors) are never reached through a proxy.
    hosts = direct_hosts(proxies.get("no", ""))
    if not mounts or hosts is None:
        return None
    for host, domain in hosts:
        mounts[f"all://{host}"] = None
        if domain:
            mounts[f"all://*.{host}"] = None
    return mounts


def _user_agent() -> str:
    from lockenv import __version__

    return f"lockenv/{__version__}"
