"""No credential or token reaches any output or any file lockenv writes; credentials go
only to the origin (scheme, host and port) they were given for; a sync can download with
the credentials its lock was made with.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.server import serve_index, serve_static
from lockenv.http import HttpClient
from lockenv.lockfile import LockedEnvironment, Lockfile, LockInputs, PypiArtifact, write_lockfile
from lockenv.platforms import current_platform
from lockenv.urls import redact_text, redact_url

from cli_support import lockenv, write_manifest

PLATFORM = current_platform()
SECRET = "s3cr3t-pw"
TOKEN = "tk-0123456789abcdef"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/simple/", "https://host/simple/"),
        ("https://user@host:8443/simple/", "https://host:8443/simple/"),
        (
            "https://conda.example/t/tk-123_AB-4567/conda-forge/noarch",
            "https://conda.example/conda-forge/noarch",
        ),
        ("https://u:p@h/prefix/t/tk-1234567890/chan/x.conda", "https://h/prefix/chan/x.conda"),
        ("https://h/t/short/x.whl", "https://h/t/short/x.whl"),  # not a token: too short
        ("http://[::1", "http://[::1"),
        ("file:///home/t/x", "file:///home/t/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_scrubs_every_url_in_a_message() -> None:
    text = (
        "no package on http://alice:hunter2@10.0.0.1:8080/simple/, "
        "'https://h/t/tk-9876543210/chan/linux-64/repodata.json': HTTP 404"
    )
    scrubbed = redact_text(text)
    assert "hunter2" not in scrubbed and "alice" not in scrubbed
    assert "tk-9876543210" not in scrubbed
    assert "http://10.0.0.1:8080/simple/" in scrubbed


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and TOKEN not in text, text


def _files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def _no_secret_in_files(root: Path) -> None:
    for path in _files_under(root):
        data = path.read_bytes()
        assert SECRET.encode() not in data and TOKEN.encode() not in data, path


# -- PyPI credentials ------------------------------------------------------------------


@pytest.fixture
def auth_index(make_index_server: Any) -> Any:
    return make_index_server(auth=("ci", SECRET))


def test_resolver_errors_never_print_index_credentials(
    tmp_path: Path, auth_index: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = auth_index.url.replace("http://", f"http://ci:{SECRET}@")
    monkeypatch.setenv("PIP_INDEX_URL", index)
    project = tmp_path / "p"
    project.mkdir()
    (project / "lockenv.toml").write_text(
        '[project]\nname = "demo"\nplatforms = ["linux-64"]\nrequires-python = "==3.11.*"\n'
        '\n[pypi-dependencies]\nno-such-package-xyz = "*"\n'
    )
    result = lockenv(project, "lock", check=False)
    assert result.returncode != 0
    assert "no-such-package-xyz" in result.stderr
    _no_secret(result.stdout, result.stderr)
    # Same with the index in the manifest, and with -v (the traceback too).
    monkeypatch.delenv("PIP_INDEX_URL")
    write_manifest(project, index, 'no-such-package-xyz = "*"\n')
    result = lockenv(project, "-v", "lock", check=False)
    assert result.returncode != 0
    _no_secret(result.stdout, result.stderr)


def test_sync_uses_the_credentials_lock_used(
    tmp_path: Path, auth_index: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = auth_index.url.replace("http://", f"http://ci:{SECRET}@")
    monkeypatch.setenv("PIP_INDEX_URL", index)
    project = tmp_path / "p"
    project.mkdir()
    (project / "lockenv.toml").write_text(
        '[project]\nname = "demo"\nplatforms = ["linux-64"]\n'
        f'requires-python = "=={sys.version_info.major}.{sys.version_info.minor}.*"\n'
        '\n[pypi-dependencies]\nalpha = "*"\n'
    )
    lockenv(project, "lock")
    _no_secret((project / "lockenv.lock").read_text())
    # A clean cache: every artifact is downloaded from the index host, which wants auth.
    monkeypatch.setenv("LOCKENV_CACHE_DIR", str(tmp_path / "fresh-cache"))
    result = lockenv(project, "sync", check=False)
    assert result.returncode == 0, result.stderr
    _no_secret(result.stdout, result.stderr)
    _no_secret_in_files(tmp_path / "fresh-cache")
    _no_secret_in_files(project / ".lockenv")


def _lock_over(urls: list[str], tmp_path: Path) -> Path:
    artifacts = {
        url: PypiArtifact(
            name=f"pkg{i}",
            version="1.0",
            filename=f"pkg{i}-1.0-py3-none-any.whl",
            url=url,
            sha256=hashlib.sha256(url.encode()).hexdigest(),
            size=10,
        )
        for i, url in enumerate(urls)
    }
    lock = Lockfile(
        inputs=LockInputs(platforms=(PLATFORM,)),
        environments={
            "default": LockedEnvironment(
                name="default",
                python=f"{sys.version_info.major}.{sys.version_info.minor}",
                packages={PLATFORM: tuple(artifacts)},
            )
        },
        artifacts=artifacts,
    )
    path = tmp_path / "lockenv.lock"
    write_lockfile(lock, path)
    return path


def test_offline_errors_never_print_artifact_credentials(tmp_path: Path) -> None:
    lock = _lock_over(
        [f"https://ci:{SECRET}@mirror.invalid/files/pkg0-1.0-py3-none-any.whl"], tmp_path
    )
    result = lockenv(
        tmp_path,
        "sync",
        "--lock",
        str(lock),
        "--prefix",
        str(tmp_path / "env"),
        "--offline",
        check=False,
    )
    assert result.returncode == 3 and "--offline" in result.stderr
    _no_secret(result.stdout, result.stderr)


def test_several_failed_downloads_give_one_clear_error(tmp_path: Path, index_server: Any) -> None:
    urls = [f"{index_server.files_url}missing{i}-1.0-py3-none-any.whl" for i in range(3)]
    lock = _lock_over(urls, tmp_path)
    result = lockenv(
        tmp_path, "sync", "--lock", str(lock), "--prefix", str(tmp_path / "env"), check=False
    )
    assert result.returncode == 3
    assert "internal error" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "HTTP 404" in error and "and 2 more" in error
    assert result.stderr.rstrip().endswith(error)


# -- credential scope ----------------------------------------------------------------------


def test_credentials_go_only_to_their_own_origin(fixture_index_dir: Path, tmp_path: Path) -> None:
    with (
        serve_index(fixture_index_dir, auth=("ci", SECRET)) as first,
        serve_index(fixture_index_dir) as second,
    ):
        with HttpClient(tmp_path / "cache") as client:
            with_auth = first.url.replace("http://", f"http://ci:{SECRET}@")
            client.get_page(with_auth + "alpha/", accept="text/html")
            # Same host, another port: a different origin.
            client.get_page(second.url + "alpha/", accept="text/html")
            client.get_page(first.url + "beta/", accept="text/html")
        sent_to_second = [h for _m, _p, h in second.requests]
        assert sent_to_second and all("authorization" not in h for h in sent_to_second)
        assert "authorization" in first.requests[-1][2]


# -- conda channel tokens ------------------------------------------------------------------


@pytest.fixture
def token_channel(tmp_path: Path, fixture_channel_dir: Path) -> Iterator[str]:
    """The fixture channel served only under ``/t/<TOKEN>/fixture/``: the channel alias
    ``http://127.0.0.1:PORT/t/<TOKEN>/``, as anaconda.org's token URLs look."""
    root = tmp_path / "served"
    (root / "t" / TOKEN).mkdir(parents=True)
    (root / "t" / TOKEN / "fixture").symlink_to(fixture_channel_dir)
    with serve_static(root) as server:
        yield f"{server.base}/t/{TOKEN}/"


@pytest.mark.skipif(
    PLATFORM not in ("linux-64", "linux-aarch64", "osx-arm64"),
    reason="the fixture python package exists for unix platforms",
)
def test_conda_token_never_reaches_a_file_or_output(
    tmp_path: Path, token_channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKENV_CHANNEL_ALIAS", token_channel)
    monkeypatch.setenv("LOCKENV_HOST_PYTHON", sys.executable)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOCKENV_CACHE_DIR", str(cache))
    project = tmp_path / "p"
    project.mkdir()
    (project / "lockenv.toml").write_text(
        f'[project]\nname = "demo"\nplatforms = ["{PLATFORM}"]\nchannels = ["fixture"]\n'
        '\n[dependencies]\npython = "3.11.*"\ntool-py = "*"\n'
    )
    outputs = [lockenv(project, "lock")]
    lock_text = (project / "lockenv.lock").read_text()
    _no_secret(lock_text)
    assert "/fixture/" in lock_text
    outputs.append(lockenv(project, "list", "--json"))
    # A sync from an empty cache: the token comes from the channel alias again.
    import shutil

    shutil.rmtree(cache)
    outputs.append(lockenv(project, "sync"))
    outputs.append(lockenv(project, "bundle", str(tmp_path / "bundle")))
    for result in outputs:
        _no_secret(result.stdout, result.stderr)
    _no_secret_in_files(project)
    _no_secret_in_files(cache)
    _no_secret_in_files(tmp_path / "bundle")
    record = next((project / ".lockenv/envs/default/conda-meta").glob("tool-py-*.json"))
    assert json.loads(record.read_text())["url"].startswith(token_channel.split("/t/")[0])
