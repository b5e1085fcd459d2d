"""Core metadata of a distribution file, fetched as cheaply as the index allows.

Order of attempts for a wheel: the PEP 658 ``<url>.metadata`` file (tried even when not
advertised, since some mirrors serve it silently), then ``*.dist-info/METADATA`` read out
of the remote wheel with HTTP range requests (the zip's central directory, then the one
member), then a full download.  An sdist (the resolver first looks for a wheel of the same version,
see `lockenv.lock.pypi.provider`) is downloaded into the cache and its ``PKG-INFO`` used
when the metadata is static (PEP 643); otherwise a `MetadataBuilder` asks the sdist's
build backend (PEP 517 ``prepare_metadata_for_build_wheel``, in an isolated build
environment).  Metadata is cached by the file's sha256, built metadata included.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import io
import os
import re
import tarfile
import tempfile
import threading
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from lockenv.errors import IndexAccessError, IntegrityError, MetadataError
from lockenv.http import ByteRange, HttpClient, HttpStatusError
from lockenv.limits import MAX_PAGE
from lockenv.lock.pypi.index import DistFile, local_file_sha256
from lockenv.urls import file_url_to_path, redact_url

__all__ = [
    "CoreMetadata",
    "MetadataBuilder",
    "MetadataFetcher",
    "artifact_info",
    "fetch_artifact_info",
    "parse_core_metadata",
]

_MAX_METADATA = 16 << 20  # no honest METADATA is this big: refuse zip bombs
_TAIL = 64 * 1024 + 22  # EOCD + the largest possible zip comment
_MIN_BLOCK = 32 * 1024
_GIVE_UP_AFTER = 3  # unadvertised .metadata 404s on a host before we stop asking it


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreMetadata:
    """The parts of core metadata the resolver needs."""

    name: NormalizedName
    version: Version
    requires_dist: tuple[Requirement, ...]
    requires_python: SpecifierSet | None
    provides_extra: tuple[NormalizedName, ...]
    dynamic: tuple[str, ...]
    metadata_version: str = ""


def parse_core_metadata(data: bytes, *, source: str) -> CoreMetadata:
    """Parse METADATA / PKG-INFO bytes; ``source`` names the file in error messages."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # very old sdists; field names are ASCII anyway
    msg: Message = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)

    def values(field: str) -> list[str]:
        return [" ".join(str(v).split()) for v in msg.get_all(field) or []]

    def single(field: str) -> str | None:
        found = values(field)
        return found[0] if found else None

    raw_name, raw_version = single("Name"), single("Version")
    if not raw_name or not raw_version:
        raise MetadataError(
            f"{source}: metadata has no {'Name' if not raw_name else 'Version'} field; "
            "the file is broken, ask for another version"
        )
    try:
        version = Version(raw_version)
    except InvalidVersion:
        raise MetadataError(f"{source}: invalid Version {raw_version!r} in metadata") from None
    requirements = []
    for value in values("Requires-Dist"):
        try:
            requirements.append(Requirement(value))
        except InvalidRequirement as exc:
            raise MetadataError(
                f"{source}: invalid Requires-Dist {value!r}: {exc}; ask for another version"
            ) from None
    raw_rp = single("Requires-Python")
    return CoreMetadata(
        name=canonicalize_name(raw_name),
        version=version,
        requires_dist=tuple(requirements),
        requires_python=_requires_python(raw_rp, source) if raw_rp else None,
        provides_extra=tuple(dict.fromkeys(canonicalize_name(e) for e in values("Provides-Extra"))),
        dynamic=tuple(values("Dynamic")),
        metadata_version=single("Metadata-Version") or "",
    )


def _requires_python(value: str, source: str) -> SpecifierSet:
    try:
        return SpecifierSet(value)
    except InvalidSpecifier:
        pass
    # Old uploads wrote ">=3.6.*" or "3.6": keep their evident meaning rather than fail.
    fixed = ",".join(
        re.sub(r"^(>=|<=|>|<|~=)\s*([\d.]+)\.\*$", r"\1\2", part.strip())
        if not re.match(r"^\d", part.strip())
        else f"=={part.strip()}"
        for part in value.split(",")
        if part.strip()
    )
    try:
        return SpecifierSet(fixed)
    except InvalidSpecifier:
        raise MetadataError(
            f"{source}: invalid Requires-Python {value!r}; ask for another version"
        ) from None


class MetadataBuilder(Protocol):
    """Learns what a source distribution requires by asking its build backend.

    Implemented by `lockenv.build` (which runs package code, in an isolated build
    environment) and handed to the lock by `lockenv.workspace`: the lock side never
    imports the build stage.
    """

    def sdist_metadata(self, archive: Path, *, filename: str) -> bytes:
        """The core metadata of the wheel the sdist ``archive`` (hash-checked) builds."""
        ...

    def tree_metadata(self, tree: Path, *, label: str, in_place: bool) -> bytes:
        """The core metadata of the source tree ``tree`` (a path or git dependency);
        built in a copy of the tree unless ``in_place``."""
        ...


def _dynamic_reason(meta: CoreMetadata) -> str | None:
    """Why an sdist's PKG-INFO cannot be trusted for its dependencies (PEP 643), or None."""
    try:
        too_old = Version(meta.metadata_version or "0") < Version("2.2")
    except InvalidVersion:
        too_old = True
    if too_old:
        return f"Metadata-Version {meta.metadata_version or 'missing'!s} < 2.2"
    dynamic = {d.lower() for d in meta.dynamic}
    if dynamic & {"requires-dist", "requires-python"}:
        return f"Dynamic: {', '.join(sorted(dynamic))}"
    return None


class MetadataFetcher:
    """Gets (and caches) the core metadata of distribution files; thread-safe.

    Metadata of a file with a known sha256 is cached on disk for good under
    ``<cache_dir>/metadata/<sha256>.metadata`` and in memory for the process.
    """

    def __init__(
        self,
        http: HttpClient,
        cache_dir: Path | None,
        *,
        workers: int = 8,
        builder: MetadataBuilder | None = None,
    ) -> None:
        self.http = http
        self.cache_dir = cache_dir
        self.builder = builder
        self._workers = workers
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, str | None], Future[CoreMetadata]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._host_misses: dict[str, int] = {}
        self._host_hits: set[str] = set()

    def __enter__(self) -> MetadataFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the prefetch threads."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def get(self, file: DistFile) -> CoreMetadata:
        """The metadata of ``file``; MetadataError if it is broken, dynamic or mismatched."""
        future, owner = self._future_for(file)
        if owner:
            self._run(file, future)
        return future.result()

    def prefetch(self, files: Iterable[DistFile]) -> None:
        """Start fetching metadata of ``files`` in the background; never blocks or raises."""
        for file in files:
            future, owner = self._future_for(file)
            if owner:
                with self._lock:
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(
                            max_workers=self._workers, thread_name_prefix="lockenv-metadata"
                        )
                    executor = self._executor
                executor.submit(self._run, file, future)

    def _future_for(self, file: DistFile) -> tuple[Future[CoreMetadata], bool]:
        key = (redact_url(file.url), file.sha256)
        with self._lock:
            future = self._futures.get(key)
            if future is not None:
                return future, False
            future = Future()
            self._futures[key] = future
            return future, True

    def _run(self, file: DistFile, future: Future[CoreMetadata]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(self._load(file))
        except BaseException as exc:
            future.set_exception(exc)

    def _load(self, file: DistFile) -> CoreMetadata:
        source = f"{file.filename} ({redact_url(file.url)})"
        cache_path = self._cache_path(file)
        data = None
        if cache_path is not None:
            with contextlib.suppress(OSError):
                data = cache_path.read_bytes()
        if data is None:
            data = self._fetch(file) if file.is_wheel else self._sdist_metadata(file)
            if cache_path is not None:
                _write_atomic(cache_path, data)
        meta = parse_core_metadata(data, source=source)
        if meta.name != file.name or meta.version != file.version:
            raise MetadataError(
                f"{source}: metadata says {meta.name} {meta.version}, the file name says "
                f"{file.name} {file.version}; the index serves a broken file"
            )
        return meta

    def _cache_path(self, file: DistFile) -> Path | None:
        if self.cache_dir is None or file.sha256 is None:
            return None
        # An sdist's entry holds the metadata accepted for it (static or built), never a
        # dynamic PKG-INFO: a separate name, so entries of older versions are not read.
        suffix = ".metadata" if file.is_wheel else ".sdist-metadata"
        return self.cache_dir / "metadata" / f"{file.sha256}{suffix}"

    # -- wheels --------------------------------------------------------------------------

    def _fetch(self, file: DistFile) -> bytes:
        data = self._pep658(file)
        if data is not None:
            return data
        if file.url.startswith("file:"):
            return _metadata_from_wheel_path(file_url_to_path(file.url), file)
        try:
            return _metadata_from_remote_wheel(self.http, file)
        except _RangeUnsupported:
            pass
        with tempfile.TemporaryDirectory(prefix="lockenv-meta-") as tmp:
            path = Path(tmp, "wheel.whl")
            self.http.download(file.url, path, sha256=file.sha256, size=file.size)
            return _metadata_from_wheel_path(path, file)

    def _pep658(self, file: DistFile) -> bytes | None:
        if file.core_metadata is False:
            return None
        url = file.url + ".metadata"
        host = urllib.parse.urlsplit(file.url).netloc.rpartition("@")[2]
        advertised = file.core_metadata is not None
        if not advertised:
            if not file.url.startswith(("http:", "https:")):
                return None
            with self._lock:
                if host not in self._host_hits and self._host_misses.get(host, 0) >= (
                    _GIVE_UP_AFTER
                ):
                    return None
        try:
            data = self.http.fetch_bytes(url, most=MAX_PAGE)
        except HttpStatusError:
            if not advertised:
                with self._lock:
                    self._host_misses[host] = self._host_misses.get(host, 0) + 1
            return None  # advertised but missing: the wheel itself still has it
        except IndexAccessError:
            if advertised:
                raise
            return None
        if not advertised:
            with self._lock:
                self._host_hits.add(host)
        expected = file.metadata_sha256
        if expected is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise IntegrityError(
                    f"{redact_url(url)!r}: sha256 mismatch: expected {expected}, got {actual}; "
                    "the index serves a corrupt metadata file"
                )
        return data

    # -- sdists --------------------------------------------------------------------------

    def _sdist_metadata(self, file: DistFile) -> bytes:
        """Static PKG-INFO, else what the build backend says (PEP 517)."""
        with self._sdist_archive(file) as path:
            pkg_info = _pkg_info_from_sdist(path, file)
            reason = "no PKG-INFO at the top of the sdist"
            if pkg_info is not None:
                meta = parse_core_metadata(pkg_info, source=file.filename)
                reason = _dynamic_reason(meta) or ""
                if not reason:
                    return pkg_info
            if self.builder is None:
                raise MetadataError(
                    f"{file.name} {file.version} ({file.filename}) has dynamic metadata "
                    f"(PEP 643, {reason}): only a build can tell its dependencies, and "
                    "building is not possible here"
                )
            return self.builder.sdist_metadata(path, filename=file.filename)

    @contextlib.contextmanager
    def _sdist_archive(self, file: DistFile) -> Iterator[Path]:
        """The sdist on disk, hash-checked: in the artifact cache when its sha256 is known
        (a sync on this machine finds it there), else in a temporary directory."""
        if file.url.startswith("file:"):
            yield file_url_to_path(file.url)
            return
        if self.cache_dir is not None and file.sha256 is not None:
            from lockenv.cache import Cache, hash_file

            path = Cache(self.cache_dir).archive_path(file.sha256, file.filename)
            try:
                digest, size = hash_file(path)
            except OSError:
                digest, size = "", -1
            if digest != file.sha256 or (file.size is not None and size != file.size):
                self.http.download(file.url, path, sha256=file.sha256, size=file.size)
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="lockenv-sdist-") as tmp:
            path = Path(tmp, file.filename)
            self.http.download(file.url, path, sha256=file.sha256, size=file.size)
            yield path


def fetch_artifact_info(http: HttpClient, file: DistFile) -> tuple[str, int]:
    """``(sha256, size)`` of a file whose index did not give both."""
    return artifact_info(http, file.url, sha256=file.sha256, size=file.size)


def artifact_info(
    http: HttpClient, url: str, *, sha256: str | None, size: int | None
) -> tuple[str, int]:
    """``(sha256, size)`` of the artifact at ``url``, completing what an index gave.

    Local files are hashed in place; a remote file with a known hash is sized with HEAD;
    anything else is downloaded to a temporary file (hashing while streaming).  Used for
    wheels and sdists and for conda records alike.
    """
    if url.startswith("file:"):
        path = file_url_to_path(url)
        digest = local_file_sha256(path)
        if digest is None:
            raise IndexAccessError(f"{redact_url(url)!r}: cannot read the file")
        return digest, path.stat().st_size
    if sha256 is not None and size is not None:
        return sha256, size
    if sha256 is not None:
        length = http.content_length(url)
        if length is not None:
            return sha256, length
    with tempfile.TemporaryDirectory(prefix="lockenv-hash-") as tmp:
        return http.download(url, Path(tmp, "artifact"), sha256=sha256, size=size)


# -- reading archives ----------------------------------------------------------------------


def _metadata_member(names: Iterable[str], file: DistFile) -> str:
    candidates = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
    if len(candidates) > 1:
        own = [
            n
            for n in candidates
            if canonicalize_name(n.split("/", 1)[0].rsplit("-", 1)[0].removesuffix(".dist-info"))
            == file.name
        ]
        candidates = own or candidates
    if not candidates:
        raise MetadataError(
            f"{file.filename} ({redact_url(file.url)}): no .dist-info/METADATA in the wheel"
        )
    return sorted(candidates)[0]


def _read_member(zf: zipfile.ZipFile, file: DistFile) -> bytes:
    try:
        info = zf.getinfo(_metadata_member(zf.namelist(), file))
        if info.file_size > _MAX_METADATA:
            raise MetadataError(f"{file.filename}: METADATA is {info.file_size} bytes; refused")
        return zf.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise MetadataError(f"{file.filename}: not a readable wheel ({exc})") from None


def _metadata_from_wheel_path(path: Path, file: DistFile) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_member(zf, file)
    except FileNotFoundError:
        raise IndexAccessError(f"{redact_url(file.url)!r}: no such file") from None
    except zipfile.BadZipFile as exc:
        raise MetadataError(f"{file.filename}: not a readable wheel ({exc})") from None


class _RangeUnsupported(Exception):
    pass


def _metadata_from_remote_wheel(http: HttpClient, file: DistFile) -> bytes:
    try:
        tail = http.get_suffix(file.url, _TAIL)
    except HttpStatusError as exc:
        if exc.status in (405, 416, 501):
            raise _RangeUnsupported from None
        raise
    if tail.is_whole_file:
        with zipfile.ZipFile(io.BytesIO(tail.data)) as zf:
            return _read_member(zf, file)
    if tail.total_size is None:
        raise _RangeUnsupported
    remote = _RangeFile(http, file.url, tail)
    try:
        with zipfile.ZipFile(remote) as zf:
            return _read_member(zf, file)
    except _RangeUnsupported:
        raise
    except HttpStatusError as exc:
        if exc.status in (405, 416, 501):
            raise _RangeUnsupported from None
        raise


class _RangeFile(io.RawIOBase):
    """A read-only seekable view of a remote file that fetches the bytes it is asked for."""

    def __init__(self, http: HttpClient, url: str, tail: ByteRange) -> None:
        super().__init__()
        assert tail.total_size is not None
        self._http = http
        self._url = url
        self._size = tail.total_size
        self._pos = 0
        self._spans: list[tuple[int, bytes]] = [(tail.start, tail.data)]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        data = self._get(self._pos, end)
        self._pos += len(data)
        return data

    def _get(self, start: int, end: int) -> bytes:
        for span_start, span in self._spans:
            if span_start <= start and end <= span_start + len(span):
                return span[start - span_start : end - span_start]
        want_end = min(self._size, max(end, start + _MIN_BLOCK))
        got = self._http.get_range(self._url, start, want_end)
        if got.is_whole_file:
            self._spans.append((0, got.data))
        elif got.start != start:
            raise _RangeUnsupported
        else:
            self._spans.append((got.start, got.data))
        return self._get_cached(start, end)

    def _get_cached(self, start: int, end: int) -> bytes:
        for span_start, span in self._spans:
            if span_start <= start and end <= span_start + len(span):
                return span[start - span_start : end - span_start]
        raise _RangeUnsupported  # the server sent less than asked


def _pkg_info_from_sdist(path: Path, file: DistFile) -> bytes | None:
    """The sdist's top-level PKG-INFO, or None when it has none."""
    source = f"{file.filename} ({redact_url(file.url)})"
    try:
        if file.filename.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if _is_top_pkg_info(info.filename):
                        if info.file_size > _MAX_METADATA:
                            break
                        return zf.read(info)
        else:
            with tarfile.open(path, "r:*") as tf:
                for member in _iter_tar(tf):
                    if _is_top_pkg_info(member.name) and member.isfile():
                        if member.size > _MAX_METADATA:
                            break
                        fh: IO[bytes] | None = tf.extractfile(member)
                        if fh is not None:
                            return fh.read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise MetadataError(f"{source}: not a readable sdist ({exc})") from None
    return None


def _iter_tar(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    member = tf.next()
    while member is not None:
        yield member
        member = tf.next()


def _is_top_pkg_info(name: str) -> bool:
    parts = name.strip("/").split("/")
    return len(parts) == 2 and parts[1] == "PKG-INFO" and parts[0] not in ("", ".", "..")


def _write_atomic(path: Path, data: bytes) -> None:
    from lockenv.atomic import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, durable=False)  # a cache: speed over durability
    except OSError:
        pass  # an unwritable cache only costs speed
