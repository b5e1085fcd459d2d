"""No data loss and bounded resources: every file lockenv writes survives a full disk,
archives cannot make it use unbounded memory, locks cannot make it loop, downloads have a
deadline, killed syncs leave nothing behind for long, and every refusal is one line."""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import resource
import signal
import socketserver
import struct
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockenv.errors import InstallError
from lockenv.lockfile import write_lockfile

from cli_support import lockenv
from hostile import PYTHON_XY, Sandbox, conda_package, lock_of, sync
from materializer_support import ROOT, artifact_for, build_wheel, kill_sync_at

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")


def _run(
    cwd: Path,
    *args: str,
    limit_bytes: int | None = None,
    memory: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The real `lockenv` command, optionally with files limited to ``limit_bytes`` (a
    full disk, as far as the process can tell: writes past it fail with EFBIG) and its
    address space to ``memory`` bytes."""

    def limits() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "lockenv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=limits,
    )


def _sync_lock(cwd: Path, prefix: Path | str, **options: Any) -> subprocess.CompletedProcess[str]:
    """`lockenv sync` of ``cwd/lockenv.lock`` into ``prefix`` (`_run`'s ``options``)."""
    return _run(cwd, "sync", "--lock", "lockenv.lock", "--prefix", str(prefix), **options)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode not in (0, 3) or "internal error" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- full disks ----------------------------------------------------------------------------


def _project(root: Path, index_url: str, deps: str) -> Path:
    root.mkdir()
    (root / "lockenv.toml").write_text(
        '[project]\nname = "demo"\nplatforms = ["linux-64"]\n'
        f'indexes = ["{index_url}"]\nrequires-python = "=={PYTHON_XY}.*"\n'
        f"\n[pypi-dependencies]\n{deps}"
    )
    return root


def test_disk_full_during_add_keeps_the_manifest(tmp_path: Path, index_server: Any) -> None:
    project = _project(tmp_path / "p", index_server.url, 'alpha = "*"\n')
    manifest = project / "lockenv.toml"
    os.chmod(manifest, 0o640)
    before = manifest.read_bytes()
    # The edited manifest no longer fits: the write fails half-way.
    long = "beta" + "[" + ",".join(f"extra{i}" for i in range(40)) + "]"
    result = _run(project, "add", "--no-lock", "--pypi", long, limit_bytes=len(before) + 64)
    assert result.returncode != 0
    _one_line_error(result)
    assert manifest.read_bytes() == before
    assert os.stat(manifest).st_mode & 0o777 == 0o640
    assert [p.name for p in project.iterdir()] == ["lockenv.toml"]  # no temporary file left


def test_a_failed_lock_undoes_remove_without_truncating(tmp_path: Path, index_server: Any) -> None:
    project = _project(tmp_path / "p", index_server.url, 'alpha = "*"\nbeta = "*"\n')
    lockenv(project, "lock")
    manifest = project / "lockenv.toml"
    lock = project / "lockenv.lock"
    lock_before = lock.read_bytes()
    # The manifest fits, the new lock does not: the lock fails and the edit is undone.
    result = _run(project, "remove", "beta", limit_bytes=len(manifest.read_bytes()) + 16)
    assert result.returncode != 0
    _one_line_error(result)
    tomllib.loads(manifest.read_text())  # whole, whichever version
    assert lock.read_bytes() == lock_before
    # No temporary file beside the manifest or the lock (.lockenv/ is lockenv's own).
    assert [p.name for p in project.iterdir() if p.name.startswith(".")] == [".lockenv"]


def test_disk_full_during_a_download_leaves_no_part_file(tmp_path: Path, index_server: Any) -> None:
    wheel = next((Path(index_server.root) / "files").glob("numfast-*.whl"))
    lock = lock_of([artifact_for(wheel, f"{index_server.files_url}{wheel.name}")], python=PYTHON_XY)
    write_lockfile(lock, tmp_path / "lockenv.lock")
    cache = tmp_path / "cache"
    result = _sync_lock(
        tmp_path,
        tmp_path / "env",
        limit_bytes=wheel.stat().st_size // 2,
        env={"LOCKENV_CACHE_DIR": str(cache)},
    )
    assert result.returncode != 0
    _one_line_error(result)
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".part")]
    assert leftovers == []


# -- archives that lie -----------------------------------------------------------------------


def _raw_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand: (name, stored data, method, declared size, declared crc)."""
    out = io.BytesIO()
    central = []
    for name, data, method, size, crc in members:
        offset = out.tell()
        encoded = name.encode()
        out.write(
            struct.pack(
                "<4s5H3I2H",
                b"PK\x03\x04",
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
            )
        )
        out.write(encoded + data)
        central.append(
            struct.pack(
                "<4s6H3I5H2I",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0o644 << 16,
                offset,
            )
            + encoded
        )
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(
        struct.pack(
            "<4s4H2IH",
            b"PK\x05\x06",
            0,
            0,
            len(central),
            len(central),
            out.tell() - start,
            start,
            0,
        )
    )
    return out.getvalue()


def _bomb_wheel(directory: Path, *, inflated: int, declared: int = 10) -> Path:
    """A valid little wheel plus one deflated member that says it is ``declared`` bytes
    and inflates to ``inflated`` bytes of zeros."""
    honest = build_wheel(directory / "honest", "bomb", "1.0", {"bomb/__init__.py": b""})
    members = []
    with zipfile.ZipFile(honest) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            members.append((info.filename, data, 0, len(data), zlib.crc32(data)))
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    # A full flush forgets the history, so every MiB of zeros deflates to the same bytes:
    # one piece repeated (compressing the whole GiB took ~10 s of the suite per wheel).
    piece = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    stream = piece * (inflated >> 20) + packer.flush()
    crc = 0
    for start in range(0, declared, 1 << 20):
        crc = zlib.crc32(chunk[: min(1 << 20, declared - start)], crc)
    members.insert(0, ("bomb/data.bin", stream, 8, declared, crc))
    path = directory / "bomb-1.0-py3-none-any.whl"
    path.write_bytes(_raw_zip(members))
    return path


@pytest.mark.parametrize(
    "declared",
    [10, 20 << 20],  # read in memory, or streamed to the file (above 16 MiB)
    ids=["small-claim", "streamed-claim"],
)
def test_a_member_lying_about_its_size_is_never_inflated(tmp_path: Path, declared: int) -> None:
    # 1 GiB behind the claim
    wheel = _bomb_wheel(tmp_path, inflated=1 << 30, declared=declared)
    lock = lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY)
    write_lockfile(lock, tmp_path / "lockenv.lock")
    result = _sync_lock(
        tmp_path,
        tmp_path / "env",
        memory=768 << 20,
        env={"LOCKENV_CACHE_DIR": str(tmp_path / "cache")},
    )
    line = _one_line_error(result)
    assert "bomb/data.bin" in line and "size" in line
    assert not (tmp_path / "env").exists()


def test_an_honest_big_member_is_unpacked_in_bounded_memory(tmp_path: Path) -> None:
    # Held whole (and copied) it would need twice its 384 MiB, past the limit.
    size = 384 << 20
    wheel = _bomb_wheel(tmp_path, inflated=size, declared=size)
    lock = lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY)
    write_lockfile(lock, tmp_path / "lockenv.lock")
    prefix = tmp_path / "env"
    env = {"LOCKENV_CACHE_DIR": str(tmp_path / "cache")}
    result = _sync_lock(
        tmp_path,
        prefix,
        memory=768 << 20,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (data,) = prefix.glob("lib/python*/site-packages/bomb/data.bin")
    assert data.stat().st_size == size


def test_a_member_with_a_bad_crc_is_refused(tmp_path: Path) -> None:
    good = build_wheel(tmp_path / "w", "crc", "1.0", {"crc/__init__.py": b"VALUE = 1\n"})
    members = []
    with zipfile.ZipFile(good) as zf:
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename == "crc/__init__.py":
                members.append((info.filename, b"VALUE = 2\n", 0, len(data), zlib.crc32(data)))
            else:
                members.append((info.filename, data, 0, len(data), zlib.crc32(data)))
    bad = tmp_path / "crc-1.0-py3-none-any.whl"
    bad.write_bytes(_raw_zip(members))
    box = Sandbox.make(tmp_path / "box")
    with pytest.raises(InstallError, match=r"crc/__init__\.py.*CRC"):
        sync(lock_of([artifact_for(bad, bad.as_uri(), index=None)], python=PYTHON_XY), box)


# -- locks that lie ----------------------------------------------------------------------------


def _bad_lock(tmp_path: Path, text: str | bytes) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "lockenv.lock"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return _run(
        tmp_path,
        "sync",
        "--lock",
        str(path),
        "--prefix",
        str(tmp_path / "env"),
        memory=1 << 30,
        timeout=120,
    )


BOMB = (
    "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "environments: *i\n"
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (BOMB, "alias"),
        ("version: 1\nlockenv-version: &v 0.1.0\ninputs: {platforms: [*v]}\n", "alias"),
        ("version: 1\n? [1, 2]\n: x\n", "key"),
        ("version: 1\nx: " + "[" * 5000 + "]" * 5000 + "\n", "nest"),
        (b"version: 1\n# caf\xe9\n", "UTF-8"),
        (
            "version: 1\npackages:\n- {kind: pypi, name: \"a\\0b\", version: '1', filename: a.whl, "
            "url: 'file:///a.whl', sha256: '" + "0" * 64 + "', size: 1}\n",
            "",
        ),
    ],
    ids=["alias-bomb", "anchor", "unhashable-key", "deep", "not-utf8", "nul-name"],
)
def test_a_hostile_lock_is_one_line_and_bounded(
    tmp_path: Path, text: str | bytes, says: str
) -> None:
    result = _bad_lock(tmp_path, text)
    assert result.returncode == 2, result.stderr
    assert says in _one_line_error(result)


def test_a_non_utf8_lock_is_one_line_for_bundle_too(tmp_path: Path) -> None:
    (tmp_path / "lockenv.lock").write_bytes(b"version: 1\n# caf\xe9\n")
    result = _run(tmp_path, "bundle", str(tmp_path / "out"), "--lock", "lockenv.lock")
    assert result.returncode == 2
    assert "UTF-8" in _one_line_error(result)


# -- manifests and URLs that lie ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("project_lines", "says"),
    [
        ('indexes = ["http://[::1"]', "[::1"),
        ('channels = ["http://[::1"]', "[::1"),
        ("x = " + "[" * 3000 + "]" * 3000, "lockenv.toml"),
        ("x = " + "9" * 5000, "lockenv.toml"),
    ],
    ids=["index-ipv6", "channel-ipv6", "deep", "huge-int"],
)
def test_a_hostile_manifest_is_one_line(tmp_path: Path, project_lines: str, says: str) -> None:
    (tmp_path / "lockenv.toml").write_text(
        f'[project]\nname = "demo"\nplatforms = ["linux-64"]\n{project_lines}\n'
        'requires-python = "==3.11.*"\n\n[pypi-dependencies]\nalpha = "*"\n'
    )
    result = _run(tmp_path, "lock")
    assert result.returncode == 2, result.stderr
    assert says in _one_line_error(result)


class _Quiet(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    block_on_close = False


@pytest.fixture
def odd_server() -> Iterator[str]:
    """/loop redirects to itself; /slow/<name> sends one byte every 0.2 s; /big/... sends
    2 MiB."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/big"):
                # 2 MiB: with its length announced, or (HTTP/1.0) until the connection ends.
                self.send_response(200)
                if self.path == "/big/announced":
                    self.send_header("Content-Length", str(2 << 20))
                self.end_headers()
                with contextlib.suppress(OSError):
                    for _ in range(32):
                        self.wfile.write(bytes(64 << 10))
                return
            if self.path.startswith("/loop"):
                self.send_response(302)
                self.send_header("Location", self.path)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass

    server = _Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _url_lock(tmp_path: Path, url: str) -> None:
    from lockenv.lockfile import PypiArtifact

    artifact = PypiArtifact(
        name="slow",
        version="1.0",
        filename="slow-1.0-py3-none-any.whl",
        url=url,
        sha256="0" * 64,
        size=100000,
    )
    write_lockfile(lock_of([artifact], python=PYTHON_XY), tmp_path / "lockenv.lock")


def test_a_redirect_loop_is_one_line(tmp_path: Path, odd_server: str) -> None:
    _url_lock(tmp_path, f"{odd_server}/loop/slow-1.0-py3-none-any.whl")
    result = _sync_lock(tmp_path, tmp_path / "env")
    assert result.returncode == 3
    assert "redirect" in _one_line_error(result)


def test_a_stalled_download_ends_at_its_deadline(tmp_path: Path, odd_server: str) -> None:
    # One byte every 0.2 s never trips a read timeout; the deadline (LOCKENV_HTTP_TIMEOUT
    # plus the time the size needs at the slowest acceptable rate) ends it.
    _url_lock(tmp_path, f"{odd_server}/slow/slow-1.0-py3-none-any.whl")
    result = _sync_lock(
        tmp_path,
        tmp_path / "env",
        env={"LOCKENV_HTTP_TIMEOUT": "2"},
        timeout=90,
    )
    assert result.returncode == 3
    line = _one_line_error(result)
    assert "deadline" in line and "LOCKENV_HTTP_TIMEOUT" in line


@pytest.mark.parametrize("path", ["/big/announced", "/big/until-closed"])
def test_a_document_past_the_limit_is_refused_while_read(
    tmp_path: Path, odd_server: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv import http
    from lockenv.errors import IndexAccessError

    monkeypatch.setattr(http, "MAX_DOCUMENT", 1 << 20)
    with (
        http.HttpClient(tmp_path / "cache") as client,
        pytest.raises(IndexAccessError, match="larger than 1 MiB"),
    ):
        client.fetch_bytes(odd_server + path)


# -- leftovers of killed syncs ----------------------------------------------------------------


def test_killed_syncs_leave_nothing_a_no_op_sync_does_not_clean(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    from materializer_support import fixture_lock

    cache = tmp_path / "cache"
    old = fixture_lock(fixture_index_dir, ["alpha-1.0-py3-none-any.whl"])
    new = fixture_lock(fixture_index_dir)
    other = fixture_lock(fixture_index_dir, ["colorish-1.0-py3-none-any.whl"])
    write_lockfile(old, tmp_path / "old.lock")
    write_lockfile(new, tmp_path / "new.lock")
    write_lockfile(other, tmp_path / "other.lock")
    prefix = tmp_path / "envs" / "default"
    env = {"LOCKENV_CACHE_DIR": str(cache)}
    assert (
        _run(tmp_path, "sync", "--lock", "old.lock", "--prefix", str(prefix), env=env).returncode
        == 0
    )
    # A sync of this environment killed with its staging tree half made; then a sync of
    # another environment (cold for its one package) killed while unpacking.
    kill_sync_at(tmp_path / "new.lock", prefix, "staging:linked", cache_dir=cache)
    kill_sync_at(
        tmp_path / "other.lock", tmp_path / "envs" / "other", "unpack:working", cache_dir=cache
    )
    assert list((cache / "tmp").iterdir())
    assert [p for p in prefix.parent.iterdir() if ".staging-" in p.name]
    result = _run(tmp_path, "sync", "--lock", "old.lock", "--prefix", str(prefix), env=env)
    assert "up to date" in result.stderr, result.stderr
    assert [p for p in prefix.parent.iterdir() if ".staging-" in p.name] == []
    assert [p for p in (cache / "tmp").iterdir() if not p.name.endswith(".lock")] == []


def test_a_running_syncs_work_is_left_alone(tmp_path: Path) -> None:
    from lockenv.cache import Cache

    cache = Cache(tmp_path / "cache")
    work = cache.make_temp_dir("unpack")  # held by this (live) process, however old
    old = time.time() - 3 * 24 * 3600
    os.utime(work, (old, old))
    assert cache.clean_stale_temp() == (0, 0)
    assert work.is_dir()
    cache.remove_temp_dir(work)
    assert list((cache.root / "tmp").iterdir()) == []


def _cache_user(cache: Path, code: str, *args: str) -> subprocess.Popen[str]:
    """Another process running ``code`` with ``cache`` (a `lockenv.cache.Cache` at the
    path) and ``args``; its stdout is a pipe."""
    preamble = (
        "import sys, time\nfrom pathlib import Path\nfrom lockenv.cache import Cache\n"
        "cache, args = Cache(Path(sys.argv[1])), sys.argv[2:]\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", preamble + code, str(cache), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_warm_sync_removes_what_a_killed_cold_sync_left(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    from materializer_support import fixture_lock

    cache = tmp_path / "cache"
    warm = fixture_lock(fixture_index_dir, ["alpha-1.0-py3-none-any.whl"])
    cold = fixture_lock(fixture_index_dir, ["colorish-1.0-py3-none-any.whl"])
    write_lockfile(warm, tmp_path / "warm.lock")
    write_lockfile(cold, tmp_path / "cold.lock")
    env = {"LOCKENV_CACHE_DIR": str(cache)}

    def sync_into(lock: str, name: str) -> None:
        prefix = str(tmp_path / "envs" / name)
        assert _run(tmp_path, "sync", "--lock", lock, "--prefix", prefix, env=env).returncode == 0

    sync_into("warm.lock", "one")
    kill_sync_at(
        tmp_path / "cold.lock", tmp_path / "envs" / "cold", "unpack:working", cache_dir=cache
    )
    assert [p for p in (cache / "tmp").iterdir() if not p.name.endswith(".lock")]
    # A new environment from what the cache holds: nothing to unpack, nothing written to
    # the cache, but the dead sync's work directory goes.
    sync_into("warm.lock", "two")
    assert list((cache / "tmp").iterdir()) == []


def test_another_processs_work_is_left_alone(tmp_path: Path) -> None:
    from lockenv.cache import Cache

    holder = _cache_user(
        tmp_path / "cache", "print(cache.make_temp_dir('unpack'), flush=True)\ntime.sleep(600)\n"
    )
    try:
        assert holder.stdout is not None
        work = Path(holder.stdout.readline().strip())
        old = time.time() - 3 * 24 * 3600
        os.utime(work, (old, old))
        cache = Cache(tmp_path / "cache")
        assert cache.clean_stale_temp() == (0, 0)
        mine = cache.make_temp_dir("unpack")  # a cache write: cleans once, not this one
        assert work.is_dir()
        cache.remove_temp_dir(mine)
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone, the directory is abandoned: the next clean removes it.
    assert cache.clean_stale_temp()[0] == 1
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


# -- locks that contradict themselves or their artifacts ---------------------------------------


def test_two_versions_of_one_package_are_refused(tmp_path: Path, fixture_index_dir: Path) -> None:
    files = fixture_index_dir / "files"
    one = artifact_for(
        files / "alpha-1.0-py3-none-any.whl", (files / "alpha-1.0-py3-none-any.whl").as_uri()
    )
    two = artifact_for(
        files / "alpha-2.0-py3-none-any.whl", (files / "alpha-2.0-py3-none-any.whl").as_uri()
    )
    box = Sandbox.make(tmp_path / "box")
    with pytest.raises(InstallError, match=r"alpha.*1\.0.*2\.0"):
        sync(lock_of([one, two], python=PYTHON_XY), box)
    c1 = conda_package(tmp_path / "c1", "dup", [], version="1.0")
    c2 = conda_package(tmp_path / "c2", "dup", [], version="2.0")
    with pytest.raises(InstallError, match=r"dup.*1\.0.*2\.0"):
        sync(lock_of([c1, c2]), box)


def test_a_wheel_whose_version_differs_from_the_lock_is_refused(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    from dataclasses import replace

    wheel = fixture_index_dir / "files" / "alpha-2.0-py3-none-any.whl"
    lying = replace(artifact_for(wheel, wheel.as_uri()), version="3.0")
    box = Sandbox.make(tmp_path / "box")
    with pytest.raises(InstallError, match=r"alpha.*2\.0.*3\.0"):
        sync(lock_of([lying], python=PYTHON_XY), box)


# -- --compile runs no package code ------------------------------------------------------------


def test_compile_runs_no_pth_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    wheel = build_wheel(
        tmp_path / "w",
        "pthy",
        "1.0",
        {"pthy/__init__.py": b"", "pthy.pth": f"import os; open({str(marker)!r}, 'w')\n".encode()},
    )
    box = Sandbox.make(tmp_path / "box")
    sync(
        lock_of([artifact_for(wheel, wheel.as_uri(), index=None)], python=PYTHON_XY),
        box,
        compile_bytecode=True,
    )
    assert not marker.exists()
    assert list(box.prefix.rglob("pthy/__pycache__/*.pyc"))


def test_compile_help_says_which_interpreter_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lockenv", "sync", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    text = " ".join(result.stdout.split())
    assert "the environment's own interpreter" in text and "isolated (-I -S" in text


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_an_info_file_past_its_limit_is_never_read_into_memory(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.errors import MetadataError
    from lockenv.sync.conda import archive

    artifact = conda_package(tmp_path, "big-info", [], fmt=fmt)
    path = Path(artifact.url.removeprefix("file://"))
    assert archive.read_index_json(path)["name"] == "big-info"
    monkeypatch.setattr(archive, "_MAX_INFO_FILE", 16)  # index.json is larger than that
    with pytest.raises(MetadataError, match=r"more than the .* MiB an info file"):
        archive.read_index_json(path)


# -- prefix placeholders in big files ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["text", "binary"])
def test_a_big_placeholder_file_is_rewritten_in_bounded_memory(tmp_path: Path, mode: str) -> None:
    import tracemalloc

    from fixtures.build_channel import PayloadFile, placeholder_prefix

    placeholder = placeholder_prefix().encode()
    size = 64 << 20
    block = b"x" * ((1 << 20) - len(placeholder) - 5) + placeholder + b"/lib\0"
    data = block * (size // len(block))
    artifact = conda_package(
        tmp_path / "pkgs",
        "bigph",
        [PayloadFile(path="lib/big.so", kind="hardlink", data=data, placeholder=mode)],
    )
    del data
    box = Sandbox.make(tmp_path / "box")
    tracemalloc.start()
    try:
        sync(lock_of([artifact]), box)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = box.prefix / "lib" / "big.so"
    with open(written, "rb") as fh:
        head = fh.read(len(block))
    prefix = str(box.prefix).encode()
    assert placeholder not in head and prefix + b"/lib\0" in head
    if mode == "binary":
        assert written.stat().st_size == len(block) * (size // len(block))
    # The whole file held once would be 64 MiB, rewritten twice that.
    assert peak < 16 << 20, f"peak {peak >> 20} MiB"


# -- waiting on another sync's artifact --------------------------------------------------------


def test_a_stopped_holder_of_an_artifact_ends_the_wait_in_one_line(
    tmp_path: Path, fixture_index_dir: Path
) -> None:
    wheel = fixture_index_dir / "files" / "alpha-1.0-py3-none-any.whl"
    artifact = artifact_for(wheel, wheel.as_uri())
    write_lockfile(lock_of([artifact], python=PYTHON_XY), tmp_path / "lockenv.lock")
    cache = tmp_path / "cache"
    env = {"LOCKENV_CACHE_DIR": str(cache), "LOCKENV_CACHE_LOCK_TIMEOUT": "1"}

    def sync_once() -> subprocess.CompletedProcess[str]:
        prefix = str(tmp_path / "env")
        return _sync_lock(tmp_path, prefix, env=env)

    # Another sync holding the artifact, then stopped (a suspended job).
    holder = _cache_user(
        cache,
        "with cache.artifact_lock(args[0]):\n    print('held', flush=True)\n    time.sleep(600)\n",
        artifact.sha256,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        os.kill(holder.pid, signal.SIGSTOP)
        result = sync_once()
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 3
    line = _one_line_error(result)
    assert artifact.filename in line and f"pid {holder.pid}" in line, line
    assert "LOCKENV_CACHE_LOCK_TIMEOUT" in line and f"kill {holder.pid}" in line
    assert not (tmp_path / "env").exists()
    # Once the holder is gone, the same sync goes through.
    assert sync_once().returncode == 0


def test_the_wait_for_an_artifact_is_bounded_by_its_size() -> None:
    from lockenv.sync.fetch import lock_wait

    small = artifact_for_size(1 << 10)
    big = artifact_for_size(1 << 30)
    assert 60 < lock_wait(small) < 300
    assert lock_wait(big) > 2 * (1 << 30) / (32 * 1024)  # a whole download at the slowest rate


def artifact_for_size(size: int) -> Any:
    from lockenv.lockfile import PypiArtifact

    return PypiArtifact(
        name="x",
        version="1",
        filename="x-1-py3-none-any.whl",
        url="file:///x",
        sha256="0" * 64,
        size=size,
    )


# -- documents read whole: each kind has a cap ---------------------------------------------------


def test_a_lock_past_its_cap_is_one_line(tmp_path: Path) -> None:
    from lockenv.limits import MAX_LOCK

    line = b"# " + b"x" * 1021 + b"\n"
    (tmp_path / "big.lock").write_bytes(line * (MAX_LOCK // len(line) + 1))
    result = _run(tmp_path, "sync", "--lock", "big.lock", "--prefix", str(tmp_path / "env"))
    assert result.returncode == 2
    assert "larger than 16 MiB, more than any real lockfile" in _one_line_error(result)


def test_a_manifest_past_its_cap_is_one_line(tmp_path: Path) -> None:
    from lockenv.limits import MAX_MANIFEST

    (tmp_path / "lockenv.toml").write_text(
        '[project]\nname = "demo"\nplatforms = ["linux-64"]\n' + "#" * MAX_MANIFEST + "\n"
    )
    result = _run(tmp_path, "lock")
    assert result.returncode == 2
    assert "larger than 4 MiB, more than any real manifest" in _one_line_error(result)


def test_documents_are_capped_over_http_and_file_urls(tmp_path: Path, odd_server: str) -> None:
    from lockenv import http
    from lockenv.errors import IndexAccessError

    page = tmp_path / "page.html"
    page.write_bytes(b"<a>" * (1 << 20))
    with http.HttpClient(tmp_path / "cache") as client:
        for fetch in (
            lambda: client.get_page(page.as_uri(), accept="text/html", most=1 << 20),
            lambda: client.fetch_bytes(page.as_uri(), most=1 << 20),
            lambda: client.get_page(odd_server + "/big/announced", accept="*/*", most=1 << 20),
        ):
            with pytest.raises(IndexAccessError, match="larger than 1 MiB"):
                fetch()


def test_pypi_pages_are_read_with_the_page_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv import http
    from lockenv.errors import IndexAccessError
    from lockenv.lock.pypi import index

    project = tmp_path / "simple" / "demo"
    project.mkdir(parents=True)
    (project / "index.html").write_text('<a href="demo-1.0.tar.gz">demo-1.0.tar.gz</a>\n' * 100)
    monkeypatch.setattr(index, "MAX_PAGE", 1024)
    with (
        http.HttpClient(tmp_path / "cache") as client,
        pytest.raises(IndexAccessError, match="larger than 1 KiB"),
    ):
        index.PackageIndex(client, [(tmp_path / "simple").as_uri()]).files("demo")


def _fifo_reader_ends(tmp_path: Path, read: Any) -> BaseException | None:
    """Run ``read(fifo)``; it must end by itself (with an error) while no writer comes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            read(fifo)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # hung in open(): let it go, then fail
        with open(fifo, "wb"):
            pass
        thread.join(30)
        pytest.fail("reading a FIFO at a file:// URL hung")
    return outcome[0]


def test_a_fifo_at_a_file_url_is_refused_not_waited_for(tmp_path: Path) -> None:
    from lockenv import http
    from lockenv.errors import IndexAccessError

    with http.HttpClient(tmp_path / "cache") as client:
        error = _fifo_reader_ends(
            tmp_path, lambda fifo: client.get_page(fifo.as_uri(), accept="text/html")
        )
        assert isinstance(error, IndexAccessError) and "not a regular file" in str(error)
        (tmp_path / "dl").mkdir()
        error = _fifo_reader_ends(
            tmp_path / "dl",
            lambda fifo: client.download(fifo.as_uri(), tmp_path / "out", sha256=None, size=10),
        )
        assert isinstance(error, IndexAccessError) and "not a regular file" in str(error)


def test_a_locked_artifact_at_a_fifo_is_one_line(tmp_path: Path) -> None:
    from lockenv.lockfile import PypiArtifact

    fifo = tmp_path / "alpha-1.0-py3-none-any.whl"
    os.mkfifo(fifo)
    artifact = PypiArtifact(
        name="alpha", version="1.0", filename=fifo.name, url=fifo.as_uri(), sha256="0" * 64, size=10
    )
    write_lockfile(lock_of([artifact], python=PYTHON_XY), tmp_path / "lockenv.lock")
    env = {"LOCKENV_CACHE_DIR": str(tmp_path / "cache")}
    result = _sync_lock(tmp_path, tmp_path / "env", env=env, timeout=60)
    assert result.returncode == 3
    assert "not a regular file" in _one_line_error(result)


# -- metadata files read after unpacking ---------------------------------------------------------


def test_a_conda_info_file_past_its_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fixtures.build_channel import PayloadFile
    from lockenv.sync.conda import install

    files = [PayloadFile(path=f"share/f{i}.txt", kind="hardlink", data=b"x") for i in range(3)]
    artifact = conda_package(tmp_path / "pkgs", "wide", files)
    monkeypatch.setattr(install, "MAX_METADATA", 256)  # paths.json is larger than that
    with pytest.raises(InstallError, match=r"paths\.json is unreadable: it is larger than 256"):
        sync(lock_of([artifact]), Sandbox.make(tmp_path / "box"))


@pytest.mark.parametrize("member", ["RECORD", "entry_points.txt"])
def test_a_wheel_metadata_file_past_its_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: str
) -> None:
    from lockenv.sync.pypi import wheel as wheel_module

    # The member under test is the largest metadata file; the cap lets every other pass.
    many = 40
    files = {f"wide/m{i}.py": b"" for i in range(many if member == "RECORD" else 1)}
    scripts = many if member == "entry_points.txt" else 1
    entry_points = "[console_scripts]\n" + "".join(f"t{i} = wide:main\n" for i in range(scripts))
    built = build_wheel(tmp_path / "w", "wide", "1.0", files, entry_points=entry_points)
    with zipfile.ZipFile(built) as zf:
        sizes = {i.filename.rpartition("/")[2]: i.file_size for i in zf.infolist()}
    cap = max(size for name, size in sizes.items() if name != member and not name.endswith(".py"))
    assert sizes[member] > cap
    monkeypatch.setattr(wheel_module, "MAX_METADATA", cap)
    with pytest.raises(InstallError, match=rf"{member}' is \d+ bytes, more than the {cap} bytes"):
        sync(
            lock_of([artifact_for(built, built.as_uri(), index=None)], python=PYTHON_XY),
            Sandbox.make(tmp_path / "box"),
        )


def test_a_python_script_past_the_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A #!python script is held in memory to be rewritten: never more than the cap.
    from lockenv.sync.pypi import wheel as wheel_module

    body = b"#!python\n" + b"x = 1\n" * 1000  # larger than the cache entry's manifest
    built = build_wheel(
        tmp_path / "w", "bigscript", "1.0", {"bigscript-1.0.data/scripts/big": body}
    )
    lock = lock_of([artifact_for(built, built.as_uri(), index=None)], python=PYTHON_XY)
    monkeypatch.setattr(wheel_module, "MAX_METADATA", 4096)
    with pytest.raises(InstallError, match=r"scripts/big'.*larger than 4 KiB"):
        sync(lock, Sandbox.make(tmp_path / "box"))
