"""Finding a locked PyPI file by name on its index, when its locked URL does not serve it.

A lock names each artifact by URL, but only its sha256 and size are trusted.  When the URL
fails (its host is unreachable from here, or moved its files), a wheel locked from an
index (`lockenv.lockfile.PypiArtifact.index`) is looked for by file name on that
index, through the same mirrors as everything else: a site's mirror of an index keeps
files under its own layout (pypiserver: ``/packages/<file>``; the origin may nest them
by hash), and its project page says where.  What is downloaded from there is checked
against the lock like any download.

Standard library only (``html.parser``, ``json``): imported only when a download failed.
"""

from __future__ import annotations

import json
import urllib.parse
from html.parser import HTMLParser
from typing import TYPE_CHECKING

from lockenv.limits import MAX_PAGE

if TYPE_CHECKING:
    from lockenv.http import HttpClient

__all__ = ["find_on_index"]

# PEP 691 JSON first, PEP 503 HTML else (what a plain web server serves).
_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
)


def find_on_index(client: HttpClient, index: str, name: str, filename: str) -> str | None:
    """The URL ``index``'s page for project ``name`` gives ``filename``; None when the
    index does not list it (or does not know the project)."""
    from lockenv.http import HttpStatusError

    page_url = index.rstrip("/") + f"/{name}/"
    try:
        page = client.get_page(page_url, accept=_ACCEPT, most=MAX_PAGE)
    except HttpStatusError as exc:
        if exc.status in (404, 410):
            return None
        raise
    if "json" in page.content_type:
        links = _json_links(page.content)
    else:
        links = _html_links(page.content.decode("utf-8", errors="replace"))
    base = page.url
    for href in links:
        url = urllib.parse.urljoin(base, href).partition("#")[0]
        path = urllib.parse.urlsplit(url).path
        if urllib.parse.unquote(path.rpartition("/")[2]) == filename:
            return url
    return None


def _json_links(content: bytes) -> list[str]:
    try:
        files = json.loads(content).get("files", [])
    except (ValueError, AttributeError):
        return []
    return [f["url"] for f in files if isinstance(f, dict) and isinstance(f.get("url"), str)]


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if href is None:
            return
        if tag == "a":
            self.hrefs.append(href)
        elif tag == "base" and self.base is None:
            self.base = href


def _html_links(text: str) -> list[str]:
    parser = _Anchors()
    parser.feed(text)
    if parser.base is None:
        return parser.hrefs
    return [urllib.parse.urljoin(parser.base, href) for href in parser.hrefs]
