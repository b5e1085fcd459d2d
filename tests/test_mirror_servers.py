"""End to end: lock and sync through mirror servers a site would run.

The origins are the fixture index and channel on 127.0.0.1, each logging every request
it gets; the mirrors are pypiserver (a PEP 503 index with its own file layout,
``/packages/<file>``) and nginx serving the channel directory.  Through the mirrors,
the origin must see no request at all, the lock must name only origin URLs, and a sync
elsewhere without the mirrors must then work from the origin alone.  Skipped, with the
reason, where a server is not installed (``.ci/run`` installs nginx when it can).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.mirror_servers import RunningServer, Unavailable, serve_nginx, serve_pypiserver
from fixtures.server import IndexServer, serve_index, serve_static
from lockenv.platforms import current_platform

from cli_support import lockenv, write_manifest

PLATFORM = current_platform()


@contextmanager
def _or_skip(server: Any) -> Iterator[RunningServer]:
    try:
        with server as running:
            yield running
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def refused_port() -> Iterator[int]:
    # Bound, never listening: a mirror that is down (connections refused).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _lock_urls(root: Path) -> tuple[list[str], list[str]]:
    data = yaml.safe_load((root / "lockenv.lock").read_text())
    return [p["url"] for p in data["packages"]], [p.get("index", "") for p in data["packages"]]


def test_pypi_index_mirror_served_by_pypiserver(
    tmp_path: Path,
    fixture_index_dir: Path,
    make_index_server: Any,
    refused_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    origin: IndexServer = make_index_server()
    with _or_skip(serve_pypiserver(fixture_index_dir / "files", tmp_path / "pypiserver")) as pps:
        root = tmp_path / "project"
        root.mkdir()
        down = f"http://127.0.0.1:{refused_port}"
        (root / "lockenv.toml").write_text(
            "[project]\n"
            'name = "mirrored"\n'
            f'platforms = ["{PLATFORM}", "win-64"]\n'
            f'indexes = ["{origin.url}"]\n'
            'requires-python = "==3.11.*"\n'
            "\n[pypi-dependencies]\n"
            'alpha = "*"\nclicky = "*"\n'
            "\n[mirrors]\n"
            # The first mirror is down: every read falls back to pypiserver.
            f'"{origin.base}/simple" = ["{down}/simple", "{pps.base}/simple"]\n'
            f'"{origin.base}/files" = ["{pps.base}/packages"]\n'
        )
        lockenv(root, "lock")
        assert origin.requests == [], "the lock asked the origin"
        urls, indexes = _lock_urls(root)
        assert urls and all(u.startswith(origin.files_url) for u in urls), urls
        assert set(indexes) == {origin.url}
        assert "/simple/alpha/" in pps.paths()

        # A cluster node: the lock alone, the site's mirror from the environment.
        monkeypatch.setenv("LOCKENV_MIRRORS", f"{origin.base}/files={down}/x,{pps.base}/packages")
        prefix = tmp_path / "env"
        lockenv(root, "sync", "--lock", "lockenv.lock", "--prefix", str(prefix))
        assert origin.requests == [], "the sync asked the origin"
        fetched = [p for p in pps.paths() if p.endswith(".whl")]
        assert "/packages/alpha-2.0-py3-none-any.whl" in fetched
        lockenv(root, "verify", "--lock", "lockenv.lock", "--prefix", str(prefix))

    # Elsewhere, no mirrors, an empty cache: the lock's origin URLs are the real ones.
    monkeypatch.delenv("LOCKENV_MIRRORS")
    monkeypatch.setenv("LOCKENV_CACHE_DIR", str(tmp_path / "other-cache"))
    lockenv(root, "sync", "--lock", "lockenv.lock", "--prefix", str(tmp_path / "env2"))
    assert "/files/alpha-2.0-py3-none-any.whl" in origin.paths("GET")


def test_a_wheel_is_found_by_name_on_a_mirror_of_its_index(
    tmp_path: Path, fixture_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locked elsewhere from an origin that is now gone; the site mirrors the index only
    (pypiserver, its own file layout): each wheel is found on the mirror's project page."""
    root = tmp_path / "project"
    root.mkdir()
    with serve_index(fixture_index_dir) as origin:
        write_manifest(root, origin.url, 'alpha = "*"\n', platforms=f'["{PLATFORM}"]')
        lockenv(root, "lock")
    with _or_skip(serve_pypiserver(fixture_index_dir / "files", tmp_path / "pypiserver")) as pps:
        monkeypatch.setenv("LOCKENV_MIRRORS", f"{origin.url}={pps.base}/simple/")
        result = lockenv(root, "sync", "--frozen")
        assert "alpha-2.0-py3-none-any.whl: not at its locked URL; found on" in result.stderr
        assert "/packages/alpha-2.0-py3-none-any.whl" in pps.paths()
    lockenv(root, "run", "--frozen", "--", "python", "-c", "import alpha, beta")
    assert lockenv(root, "verify").returncode == 0


@pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="the fixture python package exists for unix platforms",
)
def test_conda_channel_mirror_served_by_nginx(
    tmp_path: Path, fixture_channel_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)
    with (
        serve_static(fixture_channel_dir) as origin,
        _or_skip(serve_nginx(fixture_channel_dir, tmp_path / "nginx")) as nginx,
    ):
        root = tmp_path / "project"
        root.mkdir()
        channel = origin.url.rstrip("/")
        (root / "lockenv.toml").write_text(
            "[project]\n"
            'name = "mirrored"\n'
            f'platforms = ["{PLATFORM}"]\n'
            f'channels = ["{channel}"]\n'
            "\n[dependencies]\n"
            'python = "3.11.*"\ntool-py = "*"\nlibzlib = "*"\n'
        )
        # The site's mirror, in its configuration file.
        config = tmp_path / "site-config.toml"
        config.write_text(f'[mirrors]\n"{channel}" = ["{nginx.base}"]\n')
        monkeypatch.setenv("LOCKENV_CONFIG", str(config))
        lockenv(root, "lock")
        assert origin.requests == [], "the lock asked the origin"
        urls, _ = _lock_urls(root)
        assert urls and all(u.startswith(origin.url) for u in urls), urls
        assert any(p.startswith("/noarch/repodata.json") for p in nginx.paths())

        lockenv(root, "sync")
        assert origin.requests == [], "the sync asked the origin"
        fetched = {os.path.basename(p) for p in nginx.paths()}
        assert {os.path.basename(u) for u in urls} <= fetched
        assert lockenv(root, "run", "--", "tool-py").stdout.strip() == "tool-py 2.1.0"
        listed = json.loads(lockenv(root, "list", "--json").stdout)
        assert {row["url"] for row in listed} == set(urls)
