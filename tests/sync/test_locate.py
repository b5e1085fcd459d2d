"""Finding a locked file by name on its index's project page (PEP 691 JSON, PEP 503 HTML)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockenv.http import HttpClient
from lockenv.sync.pypi.locate import find_on_index

from test_http import Route, TinyServer

WHEEL = "alpha-2.0-py3-none-any.whl"
QUOTED = WHEEL.replace("-", "%2D", 1)
LISTING = f"<a href='/packages/{WHEEL}#sha256=0'>x</a><a href='/packages/b.whl'>b</a>"


@pytest.fixture
def server() -> Iterator[TinyServer]:
    srv = TinyServer()
    yield srv
    srv.close()


@pytest.mark.parametrize(
    ("route", "found"),
    [
        pytest.param(
            Route(
                body=json.dumps(
                    {"files": [{"filename": WHEEL, "url": "../../files/ab/" + WHEEL + "#sha256=0"}]}
                ).encode(),
                headers={"Content-Type": "application/vnd.pypi.simple.v1+json"},
            ),
            "/files/ab/" + WHEEL,
            id="json-relative",
        ),
        pytest.param(
            Route(
                body=LISTING.encode(),
                headers={"Content-Type": "text/html"},
            ),
            "/packages/" + WHEEL,
            id="html-absolute-path",
        ),
        pytest.param(
            Route(
                body=f"<base href='/mirror/'><a href='f/{QUOTED}'>x</a>".encode(),
                headers={"Content-Type": "text/html"},
            ),
            "/mirror/f/" + QUOTED,
            id="html-base-and-quoting",
        ),
        pytest.param(
            Route(
                body=b"<a href='/packages/other.whl'>o</a>", headers={"Content-Type": "text/html"}
            ),
            None,
            id="not-listed",
        ),
    ],
)
def test_find_on_index(server: TinyServer, tmp_path: Path, route: Route, found: str | None) -> None:
    server.routes["/simple/alpha/"] = route
    with HttpClient(tmp_path / "c") as client:
        url = find_on_index(client, server.url("/simple/"), "alpha", WHEEL)
    assert url == (server.url(found) if found else None)


def test_unknown_project(server: TinyServer, tmp_path: Path) -> None:
    with HttpClient(tmp_path / "c") as client:
        assert find_on_index(client, server.url("/simple"), "alpha", WHEEL) is None
