"""URLs as text: where credentials sit in them, and taking them out.

Two kinds of credential travel inside a URL: user info (``https://user:token@host/...``)
and a conda token as a path segment (``https://host/t/<token>/channel/...``).  Every URL
goes through `redact_url` before it reaches a message, a lock, a bundle, a cache key or
any other file lockenv writes; `lockenv.http` splits them off (`split_credentials`) to
send them in requests only, scoped by origin (`origin_of`).  Standard library only, and
below every module that shows a URL (the mirrors, the HTTP client, both sides).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

__all__ = [
    "Origin",
    "file_url_to_path",
    "origin_of",
    "redact_text",
    "redact_url",
    "split_credentials",
    "with_token",
]

# A conda token travels in the path: ``https://host/t/<token>/channel/...``.  Tokens are
# long (anaconda.org's are 30-odd characters): a short ``/t/x`` is an ordinary path.
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9_-]{11,255}"
_CONDA_TOKEN = re.compile(rf"/t/{_TOKEN}(?=/|$)")
_CONDA_TOKEN_SPLIT = re.compile(rf"^(.*?)/t/({_TOKEN})(/.*)?$")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]]+(?:\[[^\s'\"]*)?")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host, port: the scope of a credential


def redact_url(url: str) -> str:
    """``url`` without credentials: no user info (``user:password@``) and no conda token
    (a ``/t/<token>`` path segment).  The one function every URL goes through before it
    reaches a message, a lock, a bundle, a cache key or anything else lockenv writes."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _CONDA_TOKEN.sub("", re.sub(r"//[^/@?#]*@", "//", url))
    netloc = parts.netloc.rpartition("@")[2]
    path = parts.path
    if parts.scheme.lower() in _DEFAULT_PORTS:
        path = _CONDA_TOKEN.sub("", path)
    if netloc == parts.netloc and path == parts.path:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=path))


def redact_text(text: str) -> str:
    """``text`` (a message) with `redact_url` applied to every URL in it."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda match: redact_url(match[0]), text)


def file_url_to_path(url: str) -> Path:
    """Local path of a ``file://`` URL (percent-decoded; ``file://localhost/`` accepted)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "file":
        raise ValueError(f"not a file:// URL: {redact_url(url)!r}")
    path = parts.path
    if parts.netloc not in ("", "localhost"):
        path = f"//{parts.netloc}{path}"  # Windows UNC path file://server/share/...
    if os.name == "nt":
        import nturl2path  # urllib.request (what wraps it) costs tens of ms to import

        return Path(nturl2path.url2pathname(path))
    return Path(urllib.parse.unquote(path))


def split_credentials(
    url: str,
) -> tuple[str, tuple[str, str] | None, tuple[str, str] | None]:
    """``(url without credentials, (user, password), (path prefix, conda token))``."""
    parts = urllib.parse.urlsplit(url)
    creds = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        creds = (urllib.parse.unquote(user), urllib.parse.unquote(password))
    token = None
    path = parts.path
    if parts.scheme.lower() in _DEFAULT_PORTS:
        match = _CONDA_TOKEN_SPLIT.match(path)
        if match is not None:
            token = (match[1], match[2])
            path = match[1] + (match[3] or "")
    if creds is None and token is None:
        return url, None, None
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=path)), creds, token


def origin_of(url: str) -> Origin:
    """The scope of a credential learned from ``url``: scheme, host and port."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0))


def with_token(url: str, token: tuple[str, str]) -> str:
    """``url`` with the conda token put back after its path prefix (when under it)."""
    prefix, value = token
    parts = urllib.parse.urlsplit(url)
    path = parts.path
    if path != prefix and not path.startswith(prefix + "/"):
        return url
    path = f"{prefix}/t/{value}{path[len(prefix) :]}"
    return urllib.parse.urlunsplit(parts._replace(path=path))
