"""fetch_artifacts: downloads into the content-addressed cache, every byte checked."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from fixtures.server import IndexServer
from lockenv.cache import Cache
from lockenv.errors import IndexAccessError, IntegrityError, OfflineError
from lockenv.lockfile import PypiArtifact
from lockenv.sync.fetch import fetch_artifacts, raise_all

from materializer_support import BASIC, fixture_lock


def _artifacts(index: Path, base_url: str | None = None) -> list[PypiArtifact]:
    lock = fixture_lock(index, BASIC, base_url=base_url)
    return [a for a in lock.artifacts.values() if isinstance(a, PypiArtifact)]


def test_download_then_reuse(
    tmp_path: Path, fixture_index_dir: Path, make_index_server: Callable[..., IndexServer]
) -> None:
    server = make_index_server()
    artifacts = _artifacts(fixture_index_dir, server.base)
    cache = Cache(tmp_path / "cache")
    seen: list[str] = []
    result = fetch_artifacts(artifacts, cache, jobs=3, progress=seen.append)
    assert sorted(result.downloaded) == sorted(a.filename for a in artifacts)
    assert len(seen) == len(artifacts)
    for a in artifacts:
        path = result.paths[a.sha256]
        assert path == cache.archive_path(a.sha256, a.filename)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == a.sha256
    requests = len(server.paths("GET"))
    again = fetch_artifacts(artifacts, cache)
    assert again.downloaded == ()
    assert len(server.paths("GET")) == requests  # nothing fetched twice


def test_corrupt_cache_entry(tmp_path: Path, fixture_index_dir: Path) -> None:
    artifacts = _artifacts(fixture_index_dir)
    cache = Cache(tmp_path / "cache")
    fetch_artifacts(artifacts, cache)
    victim = artifacts[0]
    path = cache.archive_path(victim.sha256, victim.filename)
    path.write_bytes(b"truncated")
    with pytest.raises(IntegrityError) as info:
        fetch_artifacts(artifacts, cache)
    message = str(info.value)
    assert victim.filename in message and victim.sha256 in message
    assert hashlib.sha256(b"truncated").hexdigest() in message
    assert "corrupt" in message and "removed" in message
    assert not path.exists()
    fetch_artifacts(artifacts, cache)  # the next fetch downloads it again
    assert path.exists()


def test_all_problems_are_reported_once(
    tmp_path: Path, fixture_index_dir: Path, make_index_server: Callable[..., IndexServer]
) -> None:
    server = make_index_server()
    artifacts = _artifacts(fixture_index_dir, server.base)
    for a in artifacts[:2]:
        server.corrupt(a.filename, b"not the wheel")
    with pytest.raises(IntegrityError) as info:
        fetch_artifacts(artifacts, Cache(tmp_path / "cache"))
    assert "1 more" in str(info.value)
    for a in artifacts[:2]:
        assert a.filename in str(info.value)


def test_many_problems_are_summed_up_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    # One unreachable server refuses every artifact of a lock: the first error and three
    # others are quoted, the rest counted (and logged for -v), not 80 quoted in one line.
    errors = [IndexAccessError(f"'pkg{i}.whl': download failed: refused") for i in range(80)]
    errors[40] = IntegrityError("'pkg40.whl': sha256 mismatch")
    with caplog.at_level("INFO", logger="lockenv.fetch"), pytest.raises(IntegrityError) as info:
        raise_all(errors)
    message = str(info.value)
    assert message.startswith("'pkg40.whl': sha256 mismatch (and 79 more: ")
    assert "'pkg0.whl'" in message and "'pkg2.whl'" in message and "'pkg3.whl'" not in message
    assert message.endswith("; 76 not shown (-v lists them))")
    assert [r.getMessage() for r in caplog.records] == [
        f"'pkg{i}.whl': download failed: refused" for i in range(3, 80) if i != 40
    ]
    # A few: every one quoted, nothing logged.
    caplog.clear()
    with caplog.at_level("INFO", logger="lockenv.fetch"), pytest.raises(IndexAccessError) as info:
        raise_all(errors[:4])
    assert str(info.value).count("download failed") == 4 and "not shown" not in str(info.value)
    assert not caplog.records


def test_offline(tmp_path: Path, fixture_index_dir: Path, index_server: IndexServer) -> None:
    cache = Cache(tmp_path / "cache")
    remote = _artifacts(fixture_index_dir, index_server.base)
    with pytest.raises(OfflineError) as info:
        fetch_artifacts(remote, cache, offline=True)
    message = str(info.value)
    assert f"--offline: {len(remote)} artifacts are (" in message
    assert all(a.filename in message for a in remote)
    assert info.value.hint is not None and "lockenv bundle" in info.value.hint
    assert "LOCKENV_CACHE_KEEP=both" in info.value.hint
    # Many missing: a summary a person reads (how many, how big, five names), not a list.
    many = [
        dataclasses.replace(remote[0], filename=f"pkg{i}-1.0-py3-none-any.whl", sha256=f"{i:064x}")
        for i in range(300)
    ]
    with pytest.raises(OfflineError) as info:
        fetch_artifacts(many, cache, offline=True)
    message = str(info.value)
    assert message.startswith("--offline: 300 artifacts are (") and "and 295 more" in message
    assert sum(a.filename in message for a in many) == 5
    assert "\n" not in message and len(message) < 500
    # file:// URLs are local files: readable offline.
    local = _artifacts(fixture_index_dir)
    assert len(fetch_artifacts(local, cache, offline=True).downloaded) == len(local)
    # Once cached, the remote lock works offline too (same content, same cache entries).
    assert fetch_artifacts(remote, cache, offline=True).downloaded == ()


@pytest.mark.parametrize(
    ("manifest", "urls"),
    [
        ('[project]\nindexes = ["https://example.invalid/simple"]\n', []),
        (
            '[project]\nindexes = ["https://u:p@example.invalid/simple"]\n',
            ["https://u:p@example.invalid/simple"],
        ),
        # An '@' written as an escape is still seen (the text is parsed then).
        (
            '[project]\nindexes = ["https://u:p\\u0040example.invalid/simple"]\n',
            ["https://u:p@example.invalid/simple"],
        ),
        (
            '[project]\nchannels = ["https://conda.invalid/t/tok/ch"]\n',
            ["https://conda.invalid/t/tok/ch"],
        ),
        ("[project\nindexes = ['https://u:p@x.invalid']\n", []),  # broken: reported elsewhere
        ('[project]\nname = "x@y"\n', []),  # an '@' that is no URL
    ],
)
def test_the_manifest_urls_that_carry_credentials(
    manifest: str, urls: list[str], tmp_path: Path
) -> None:
    from lockenv.sync.fetch import _manifest_credential_urls

    path = tmp_path / "lockenv.toml"
    path.write_text(manifest)
    assert _manifest_credential_urls(path) == urls
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(manifest.replace("[project", "[tool.lockenv.project"))
    assert _manifest_credential_urls(pyproject) == urls
