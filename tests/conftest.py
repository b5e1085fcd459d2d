"""Shared test fixtures: the local package index, its server, and isolation from the machine.

Tests never use the network: resolver, lock and sync tests run against the fixture index
(``fixtures/index_src`` built into real wheels and sdists) served on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Hypothesis times each example (200 ms by default) and fails a test whose example runs
# slower; on a loaded CI machine that is a failure by chance, not a finding. The tests
# assert what is computed, never how fast (issue 13), so no example has a deadline.
settings.register_profile("lockenv", deadline=None)
settings.load_profile("lockenv")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # `fixtures` is a directory of the repository, not an installed package.
    sys.path.insert(0, str(ROOT))

from fixtures.build_index import build_index  # noqa: E402
from fixtures.server import IndexServer, serve_index  # noqa: E402

NETWORK_ENV = "LOCKENV_NETWORK_TESTS"
SLURM_ENV = "LOCKENV_SLURM_TESTS"
SLOW_ENV = "LOCKENV_SLOW_TESTS"
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.network`` tests unless LOCKENV_NETWORK_TESTS=1,
    ``@pytest.mark.slurm`` tests unless LOCKENV_SLURM_TESTS=1, and ``@pytest.mark.slow``
    ones unless LOCKENV_SLOW_TESTS=1."""
    for marker, variable, why in (
        ("network", NETWORK_ENV, "uses the network"),
        ("slurm", SLURM_ENV, "starts a Slurm cluster on this machine (as root)"),
        ("slow", SLOW_ENV, "slow"),
    ):
        if os.environ.get(variable) == "1":
            continue
        skip = pytest.mark.skip(reason=f"{why}; set {variable}=1 to run")
        for item in items:
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolate_from_machine(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Keep the developer's pip config, indexes, credentials and cache out of every test."""
    for key in list(os.environ):
        if key.startswith("PIP_") or (
            key.startswith("LOCKENV_") and key not in (NETWORK_ENV, SLURM_ENV, SLOW_ENV)
        ):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    # Nor lockenv's own site settings (mirrors) from ~/.config or /etc.
    monkeypatch.setenv("LOCKENV_CONFIG", os.devnull)
    monkeypatch.setenv("LOCKENV_CACHE_DIR", str(tmp_path_factory.mktemp("lockenv-cache")))
    # A real ~/.netrc could add credentials to requests made to the fixture servers.
    monkeypatch.setenv("NETRC", str(tmp_path_factory.getbasetemp() / "no-such-netrc"))
    if request.node.get_closest_marker("network") is None:
        # A proxy from the environment would receive the requests meant for 127.0.0.1.
        for key in _PROXY_VARS:
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def fixture_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture index, built once per session (``files/`` and ``simple/`` inside)."""
    return build_index(tmp_path_factory.mktemp("fixture-index"))


@pytest.fixture(scope="session")
def index_server(fixture_index_dir: Path) -> Iterator[IndexServer]:
    """The fixture index served with every feature on; ``index_server.url`` ends in /simple/.

    Shared by the whole session: tests that corrupt files or inject failures must use
    ``make_index_server`` instead.
    """
    with serve_index(fixture_index_dir) as server:
        yield server


@pytest.fixture
def make_index_server(fixture_index_dir: Path) -> Iterator[Callable[..., IndexServer]]:
    """Factory: ``make_index_server(json_api=False, auth=("u", "p"), ...)`` starts a server
    over the fixture index (options of ``fixtures.server.serve_index``) that stops when the
    test ends."""
    with contextlib.ExitStack() as stack:

        def make(**options: Any) -> IndexServer:
            return stack.enter_context(serve_index(fixture_index_dir, **options))

        yield make


# --- the fixture conda channel ---------------------------------------------------------

from fixtures.build_channel import build_channel  # noqa: E402
from fixtures.server import StaticServer, serve_static  # noqa: E402


@pytest.fixture(scope="session")
def fixture_channel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture conda channel (``fixtures/channel_src``), built once per session.

    ``<subdir>/repodata.json`` (+ ``.zst``, ``.bz2``) and the packages beside it, for
    linux-64, linux-aarch64, osx-arm64, win-64 and noarch.  Read-only: copy it first to
    change anything.
    """
    return build_channel(tmp_path_factory.mktemp("fixture-channel"))


@pytest.fixture(scope="session")
def channel_server(fixture_channel_dir: Path) -> Iterator[StaticServer]:
    """The fixture channel over HTTP with ETag and Last-Modified; ``.url`` is the channel
    root ``http://127.0.0.1:PORT/``.  Shared by the session: tests that inject failures or
    corrupt files must start their own ``fixtures.server.serve_static``."""
    with serve_static(fixture_channel_dir) as server:
        yield server
