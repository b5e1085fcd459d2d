"""Wheels unpacked while they download (lockenv.sync.pypi.stream, through
lockenv.sync.prepare): the same tree as unpacking the archive, nothing published from
bytes that do not match the lock, and every doubt left to the usual path."""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.server import StaticServer, serve_static
from lockenv.cache import Cache, check_entry
from lockenv.errors import InstallError, IntegrityError, UnsafePathError
from lockenv.lockfile import Lockfile, PypiArtifact
from lockenv.sync import prepare
from lockenv.sync.fetch import Fetcher
from lockenv.sync.pypi import wheel
from lockenv.sync.pypi.record import record_hash
from lockenv.sync.pypi.stream import WheelStream
from lockenv.sync.pypi.wheel import load_unpacked, unpack_wheel

_INFO = "big-1.0.dist-info"
_PAYLOAD = {
    "big/_native.so": os.urandom(300_001),  # stored: incompressible
    "big/data.py": b"x = 1\n" * 60_000,  # deflated, many pieces out per piece in
    "big/__init__.py": b"",
    "big-1.0.data/scripts/tool": b"#!python\nprint('tool')\n",
}


def _wheel_bytes(
    payload: dict[str, bytes] | None = None, *, descriptors: bool = False, name: str = "big"
) -> bytes:
    """A wheel of ``payload``: ``*.so`` stored, the rest deflated; ``descriptors``: written
    to a stream that cannot seek, so that every member has a data descriptor."""
    members = dict(_PAYLOAD if payload is None else payload)
    members[f"{_INFO}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    members[f"{_INFO}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{p},{record_hash(d)},{len(d)}\n" for p, d in members.items())
    members[f"{_INFO}/RECORD"] = (record + f"{_INFO}/RECORD,,\n").encode()
    out = io.BytesIO()
    target: io.BytesIO | _Unseekable = _Unseekable(out) if descriptors else out
    with zipfile.ZipFile(target, "w") as zf:  # type: ignore[arg-type]
        # A directory entry, deflated (two bytes of an empty stream): ignored.
        zf.writestr(zipfile.ZipInfo("big/", (1980, 1, 1, 0, 0, 0)), b"", zipfile.ZIP_DEFLATED)
        for member, data in members.items():
            info = zipfile.ZipInfo(member, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if member.endswith("tool") else 0o100644) << 16
            method = zipfile.ZIP_STORED if member.endswith(".so") else zipfile.ZIP_DEFLATED
            zf.writestr(info, data, method)
    return out.getvalue()


class _Unseekable(io.RawIOBase):
    def __init__(self, out: io.BytesIO) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self._out.write(data)

    def flush(self) -> None:
        pass


def _artifact(data: bytes, url: str, filename: str = "big-1.0-py3-none-any.whl") -> PypiArtifact:
    return PypiArtifact(
        name="big",
        version="1.0",
        filename=filename,
        url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


def _chunks(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)] if sizes else len(data)
        yield data[at : at + n]
        at, i = at + n, i + 1


def _streamed(cache: Cache, data: bytes, sizes: list[int]) -> WheelStream:
    stream = WheelStream(cache, filename="big-1.0-py3-none-any.whl", project="big")
    for chunk in _chunks(data, sizes):
        stream.feed(chunk)
    return stream


def _tree(files: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(files)): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(files.rglob("*"))
        if p.is_file()
    }


_WHEEL = _wheel_bytes()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=6))
def test_any_chunking_unpacks_what_the_archive_unpacks(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    root = tmp_path_factory.mktemp("stream")
    archive = root / "big-1.0-py3-none-any.whl"
    archive.write_bytes(_WHEEL)
    (root / "classic").mkdir()
    expected = unpack_wheel(archive, root / "classic", filename=archive.name, project="big")
    stream = _streamed(Cache(root / "cache"), _WHEEL, sizes)
    result = stream.finish()
    assert stream.declined is None and result is not None
    wheel, digests = result
    assert wheel.files == expected.files
    assert (wheel.name, wheel.version, wheel.data_dir) == (
        expected.name,
        expected.version,
        expected.data_dir,
    )
    assert _tree(stream.work / "files") == _tree(root / "classic" / "files")
    assert (stream.work / "manifest.json").read_bytes() == (
        root / "classic" / "manifest.json"
    ).read_bytes()
    for path, digest in digests.items():
        assert hashlib.sha256((stream.work / path).read_bytes()).hexdigest() == digest
    stream.discard()
    assert not stream.work.exists()


def _local_header(data: bytes, name: str) -> int:
    """Where the local header of the member ``name`` starts in the archive ``data``."""
    at = data.index(b"PK\x03\x04")
    while True:
        name_len = int.from_bytes(data[at + 26 : at + 28], "little")
        if data[at + 30 : at + 30 + name_len] == name.encode():
            return at
        at = data.index(b"PK\x03\x04", at + 4)


def _local_name_changed(data: bytes, old: str, new: str) -> bytes:
    """``data`` with the member ``old`` renamed ``new`` in its local header only."""
    assert len(old) == len(new)
    start = _local_header(data, old) + 30
    return data[:start] + new.encode() + data[start + len(old) :]


def _local_size_changed(data: bytes, name: str, size: int) -> bytes:
    """``data`` with the uncompressed size of ``name`` in its local header made ``size``."""
    at = _local_header(data, name) + 22
    return data[:at] + size.to_bytes(4, "little") + data[at + 4 :]


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("descriptors", "data descriptor"),
        ("hidden member", "does not match"),
        ("unsafe path", "climbs out"),
        ("truncated", "ends before"),
        ("bad crc", "CRC-32"),
        ("bomb", "inflates past the size its header declares (1000 bytes)"),
    ],
)
def test_doubtful_archives_are_declined_and_nothing_is_kept(
    tmp_path: Path, case: str, why: str
) -> None:
    data = _WHEEL
    if case == "descriptors":
        data = _wheel_bytes(descriptors=True)
    elif case == "hidden member":
        data = _local_name_changed(data, "big/__init__.py", "big/__evil__.py")
    elif case == "unsafe path":
        data = _local_name_changed(data, "big/__init__.py", "../../../etc/xy")
    elif case == "truncated":
        data = data[: len(data) // 2]
    elif case == "bomb":  # 64 MiB behind a claim of 1000 bytes: never inflated
        bomb = _wheel_bytes({**_PAYLOAD, "big/zeros.bin": bytes(64 << 20)})
        data = _local_size_changed(bomb, "big/zeros.bin", 1000)
    elif case == "bad crc":
        at = data.index(_PAYLOAD["big/_native.so"][:64])
        data = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    cache = Cache(tmp_path / "cache")
    stream = _streamed(cache, data, [65_536])
    assert stream.finish() is None
    assert stream.declined is not None and why in stream.declined
    stream.discard()
    assert not stream.work.exists()
    assert not (tmp_path / "etc").exists() and not (cache.root / "etc").exists()


# -- through a sync's preparation, from a server ------------------------------------------


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StaticServer]:
    monkeypatch.setattr(prepare, "_STREAM_UNPACK_BYTES", 0)  # the fixture wheels are small
    root = tmp_path / "served"
    root.mkdir()
    with serve_static(root) as server:
        yield server


def _prepare(cache: Cache, artifact: PypiArtifact, keep_archives: bool) -> prepare.Prepared:
    fetcher = Fetcher(cache)
    try:
        return prepare.prepare_artifacts([artifact], fetcher, keep_archives=keep_archives)
    finally:
        fetcher.close()


def _cache_files(cache: Cache) -> list[str]:
    return sorted(
        str(p.relative_to(cache.root))
        for p in cache.root.rglob("*")
        if p.is_file() and p.name != "artifacts.lock" and "environments" not in p.parts
    )


@pytest.mark.parametrize("keep_archives", [True, False])
def test_a_streamed_wheel_is_sealed_and_published(
    tmp_path: Path, served: StaticServer, keep_archives: bool
) -> None:
    (served.root / "big.whl").write_bytes(_WHEEL)
    artifact = _artifact(_WHEEL, served.url + "big.whl")
    cache = Cache(tmp_path / "cache")
    prepared = _prepare(cache, artifact, keep_archives)
    entry = cache.unpacked_dir(artifact.sha256)
    assert check_entry(entry) == "ok"
    wheel = load_unpacked(entry)
    assert wheel is not None and prepared.unpacked[artifact.sha256] == wheel
    assert (entry / "files" / "big" / "_native.so").read_bytes() == _PAYLOAD["big/_native.so"]
    archive = cache.archive_path(artifact.sha256, artifact.filename)
    assert archive.is_file() == keep_archives
    assert served.paths("GET") == ["/big.whl"]  # one download, unpacked on the way
    assert not list((cache.root / "tmp").iterdir())


def test_a_large_transfer_sets_the_allocator_first(
    tmp_path: Path, served: StaticServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockenv.sync import allocator

    calls: list[int] = []
    monkeypatch.setattr(allocator, "keep_freed_buffers", lambda: bool(calls.append(1)))
    (served.root / "big.whl").write_bytes(_WHEEL)
    artifact = _artifact(_WHEEL, served.url + "big.whl")
    monkeypatch.setattr(prepare, "_KEEP_BUFFERS_BYTES", len(_WHEEL) + 1)
    _prepare(Cache(tmp_path / "small"), artifact, False)
    assert calls == []  # a small transfer does not load ctypes for it
    monkeypatch.setattr(prepare, "_KEEP_BUFFERS_BYTES", len(_WHEEL))
    _prepare(Cache(tmp_path / "large"), artifact, False)
    assert calls == [1]


@pytest.mark.parametrize("keep_archives", [True, False])
def test_bytes_corrupted_mid_way_are_refused_and_nothing_is_cached(
    tmp_path: Path, served: StaticServer, keep_archives: bool
) -> None:
    (served.root / "big.whl").write_bytes(_WHEEL)
    artifact = _artifact(_WHEEL, served.url + "big.whl")
    middle = len(_WHEEL) // 2
    served.corrupt(
        "big.whl", _WHEEL[:middle] + bytes([_WHEEL[middle] ^ 0xFF]) + _WHEEL[middle + 1 :]
    )
    cache = Cache(tmp_path / "cache")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        _prepare(cache, artifact, keep_archives)
    assert _cache_files(cache) == []
    assert not cache.unpacked_dir(artifact.sha256).exists()


@pytest.mark.parametrize("keep_archives", [True, False])
def test_a_wheel_with_data_descriptors_falls_back_to_the_archive(
    tmp_path: Path, served: StaticServer, keep_archives: bool
) -> None:
    data = _wheel_bytes(descriptors=True)
    (served.root / "big.whl").write_bytes(data)
    artifact = _artifact(data, served.url + "big.whl")
    cache = Cache(tmp_path / "cache")
    _prepare(cache, artifact, keep_archives)
    entry = cache.unpacked_dir(artifact.sha256)
    assert check_entry(entry) == "ok"
    assert (entry / "files" / "big" / "data.py").read_bytes() == _PAYLOAD["big/data.py"]
    assert cache.archive_path(artifact.sha256, artifact.filename).is_file() == keep_archives
    # Keeping the archive, the stream's download serves the usual path; keeping only
    # trees, there is no archive to fall back on: it is downloaded again.
    assert len(served.paths("GET")) == (1 if keep_archives else 2)


def test_an_unsafe_member_path_is_refused_by_the_usual_path(
    tmp_path: Path, served: StaticServer
) -> None:
    import zipfile as zf_mod

    out = io.BytesIO()
    with zf_mod.ZipFile(out, "w") as zf:
        zf.writestr("../escape.py", b"x")
        zf.writestr(f"{_INFO}/WHEEL", b"Wheel-Version: 1.0\n")
    data = out.getvalue()
    (served.root / "big.whl").write_bytes(data)
    artifact = _artifact(data, served.url + "big.whl")
    cache = Cache(tmp_path / "cache")
    with pytest.raises(UnsafePathError):
        _prepare(cache, artifact, False)
    assert not (tmp_path / "escape.py").exists()
    assert not any((cache.root / "tmp").rglob("escape.py"))
    assert not cache.unpacked_dir(artifact.sha256).exists()


# -- a sync killed while it streams --------------------------------------------------------


def _lock_of(artifact: PypiArtifact) -> Lockfile:
    from lockenv.lockfile import LockedEnvironment, LockInputs
    from lockenv.platforms import current_platform

    from materializer_support import PYTHON_XY

    platform = current_platform()
    return Lockfile(
        inputs=LockInputs(platforms=(platform,)),
        environments={
            "default": LockedEnvironment(
                name="default", python=PYTHON_XY, packages={platform: (artifact.url,)}
            )
        },
        artifacts={artifact.url: artifact},
    )


@pytest.mark.parametrize("keep", ["both", "trees"])
@pytest.mark.parametrize("stage", ["fetch:downloaded", "unpack:working"])
def test_a_sync_killed_while_a_wheel_streams_leaves_nothing_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: str, stage: str
) -> None:
    from lockenv.lockfile import write_lockfile

    from materializer_support import artifact_for, build_wheel, kill_sync_at, sync_worker

    served = tmp_path / "served"
    # Above the size from which a sync unpacks wheels as they download.
    native = os.urandom(prepare._STREAM_UNPACK_BYTES + 4096)
    wheel = build_wheel(served, "big", "1.0", {"big/_native.so": native, "big/__init__.py": b""})
    with serve_static(served) as server:
        artifact = artifact_for(wheel, f"{server.url}{wheel.name}", index=None)
        lock_path = tmp_path / "lockenv.lock"
        write_lockfile(_lock_of(artifact), lock_path)
        cache = Cache(tmp_path / "cache")
        prefix = tmp_path / "env"
        monkeypatch.setenv("LOCKENV_CACHE_KEEP", keep)  # the workers' environment
        kill_sync_at(lock_path, prefix, stage, cache_dir=cache.root)
        # Killed mid-way: the tree is not published (a killed stream's work directory
        # is left for the next sync to clean), the archive only once verified.
        assert not cache.unpacked_dir(artifact.sha256).exists()
        archive = cache.archive_path(artifact.sha256, artifact.filename)
        assert not archive.exists() or hashlib.sha256(archive.read_bytes()).hexdigest() == (
            artifact.sha256
        )
        assert not prefix.exists()
        proc = sync_worker(lock_path, prefix, env={"LOCKENV_CACHE_DIR": str(cache.root)})
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        assert check_entry(cache.unpacked_dir(artifact.sha256)) == "ok"
        installed = next(prefix.glob("lib/python*/site-packages/big/_native.so"))
        assert installed.read_bytes() == native
        assert archive.exists() == (keep == "both")
        assert not list((cache.root / "tmp").glob("unpack-*"))


# -- the deflate codec ----------------------------------------------------------------------


def _first_data_byte(data: bytes, name: str) -> int:
    """Where the (compressed) data of the member ``name`` starts in the archive ``data``."""
    at = _local_header(data, name)
    name_len = int.from_bytes(data[at + 26 : at + 28], "little")
    extra_len = int.from_bytes(data[at + 28 : at + 30], "little")
    return at + 30 + name_len + extra_len


@pytest.mark.parametrize("codec", ["zlib_ng", "zlib"])
def test_either_codec_unpacks_the_same_and_reports_a_broken_deflate_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str
) -> None:
    if codec == "zlib":
        monkeypatch.setitem(sys.modules, "zlib_ng", None)  # as if not installed
    else:
        pytest.importorskip("zlib_ng")
    wheel.deflate_codec.cache_clear()
    try:
        assert wheel.deflate_codec().__name__.endswith(codec)
        archive = tmp_path / "big-1.0-py3-none-any.whl"
        archive.write_bytes(_WHEEL)
        (tmp_path / "classic").mkdir()
        expected = unpack_wheel(archive, tmp_path / "classic", filename=archive.name, project="big")
        stream = _streamed(Cache(tmp_path / "cache"), _WHEEL, [100_000])
        result = stream.finish()
        assert result is not None and result[0].files == expected.files
        assert _tree(stream.work / "files") == _tree(tmp_path / "classic" / "files")
        stream.discard()
        # A deflate stream that starts with a reserved block type: the codec's own error,
        # caught on both paths (zlib-ng's is not the standard library's zlib.error).
        at = _first_data_byte(_WHEEL, "big/data.py")
        broken = _WHEEL[:at] + b"\xff" + _WHEEL[at + 1 :]
        stream = _streamed(Cache(tmp_path / "cache"), broken, [100_000])
        assert stream.finish() is None
        assert stream.declined is not None and "invalid block type" in stream.declined
        stream.discard()
        archive.write_bytes(broken)
        (tmp_path / "broken").mkdir()
        with pytest.raises(InstallError, match=r"big/data\.py.*is damaged.*invalid block type"):
            unpack_wheel(archive, tmp_path / "broken", filename=archive.name, project="big")
    finally:
        wheel.deflate_codec.cache_clear()
