"""Get locked artifacts' archives into the cache, each checked against the lock's sha256
and size.

Wheels and conda archives alike, looked for in the cache, then in a bundle
(`lockenv.sync.bundle_source`: imported into the cache by hardlink or copy), then
downloaded.  Archives already in the cache are hashed again before use: a cache shared
by many machines or users is not trusted by location; neither is a bundle.  Downloads go
through `lockenv.http` (imported only when something must be downloaded, so a warm sync
never loads httpx).

A `Fetcher` gets one artifact at a time, holding that artifact's cache lock
(`lockenv.cache.Cache.artifact_lock`): of many processes that need the same archive one
downloads it and the others find it in the cache when the lock is theirs.  The sync
(`lockenv.sync.prepare`) drives it per artifact, the bundle writer through
`fetch_artifacts`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lockenv.cache import Cache, copy_hashing, hash_file
from lockenv.errors import IntegrityError, LockenvError, OfflineError
from lockenv.lockfile import Archive
from lockenv.progress import Progress, Reporter, Task, format_size, task_of
from lockenv.sync.checkpoints import checkpoint

if TYPE_CHECKING:
    from concurrent.futures import Future

    from lockenv.http import Consumer, HttpClient
    from lockenv.mirrors import Mirrors
    from lockenv.sync.bundle_source import Bundle

__all__ = [
    "FetchResult",
    "Fetcher",
    "artifact_lock",
    "collect_errors",
    "fetch_artifacts",
    "lock_wait",
    "raise_all",
]

C = TypeVar("C", bound="Consumer")
_SEQUENTIAL_BYTES = 16 << 20  # above this, hash in parallel (hashlib frees the GIL)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # never compared: cheaper to create
class FetchResult:
    """Archive paths by artifact sha256, all verified; how many were downloaded."""

    paths: dict[str, Path]
    downloaded: tuple[str, ...]  # file names
    bundled: tuple[str, ...] = ()  # file names imported from a bundle


def lock_wait(artifact: Archive) -> float:
    """How long a sync waits for another process's hold of ``artifact`` in the cache
    (`lockenv.cache.Cache.artifact_lock`), in seconds: twice what its download may take
    (`lockenv.http.transfer_budget`: the holder may download it, then unpack it).  A
    holder that is stopped or hung then ends the wait with one line naming it."""
    from lockenv.http import transfer_budget

    return 2 * transfer_budget(artifact.size)


def artifact_lock(
    cache: Cache, artifact: Archive, *, wait: bool = True
) -> contextlib.AbstractContextManager[bool]:
    """``cache``'s lock on ``artifact``, waited for at most `lock_wait`."""
    return cache.artifact_lock(
        artifact.sha256, wait=wait, deadline=lock_wait(artifact), what=artifact.filename
    )


_SYNC_HINT = (
    "run the sync once online, or make a bundle where there is network "
    "(`lockenv bundle OUT`) and sync with `--bundle OUT`"
)
# A sync leaves the archives it unpacked in the cache only with the keep policy "both"
# (`lockenv.cache.keep_policy`): an earlier sync is no reason to expect them there.
_ARCHIVES_HINT = (
    "run it where there is network, or sync with the cache keeping archives "
    "(LOCKENV_CACHE_KEEP=both) before an offline `lockenv bundle`"
)


class Fetcher:
    """Puts artifacts' archives into ``cache``, verified; thread-safe; `close` it (it may
    hold HTTP connections).

    ``bundle``: a bundle directory to take missing archives from.  ``manifest``: the
    project's manifest, whose mirrors apply (with the machine's), read only when
    something must be downloaded.  ``offline``: no network (``file://`` URLs and mirrors
    on a shared filesystem are still read).  ``connections``: the HTTP connection pool.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        offline: bool = False,
        bundle: Path | None = None,
        manifest: Path | None = None,
        progress: Progress | None = None,
        connections: int = 8,
    ) -> None:
        self.cache = cache
        self.offline = offline
        self.bundle = bundle
        self._manifest = manifest
        self._progress = progress
        self._connections = connections
        self._lock = threading.Lock()
        self._contents: Bundle | None = None
        self._mirrors: Mirrors | None = None
        self._client: HttpClient | None = None
        self._task: Task | None = None
        self.downloaded: list[str] = []  # file names, in the order they completed
        self.bundled: list[str] = []

    def close(self) -> None:
        """Close the HTTP connections, if any were opened, and the download task."""
        with self._lock:
            client, self._client = self._client, None
            task, self._task = self._task, None
        if client is not None:
            client.close()
        if task is not None:
            task.close()

    # -- where an archive comes from ---------------------------------------------------------

    def _bundle_path(self, artifact: Archive) -> Path | None:
        if self.bundle is None:
            return None
        with self._lock:
            if self._contents is None:
                from lockenv.sync.bundle_source import read_bundle

                self._contents = read_bundle(self.bundle)
            contents = self._contents
        return contents.path_of(artifact.sha256)

    def _mirror_rules(self) -> Mirrors:
        with self._lock:
            if self._mirrors is None:
                from lockenv.mirrors import load_mirrors

                self._mirrors = load_mirrors(self._manifest)
            return self._mirrors

    def check_available(self, artifacts: Sequence[Archive], *, hint: str = _SYNC_HINT) -> None:
        """Offline, raise OfflineError naming every artifact of ``artifacts`` that is
        neither in the cache nor in the bundle nor at a local location, with ``hint``
        (what to do); else nothing."""
        if not self.offline:
            return
        unavailable = [
            a
            for a in artifacts
            if not os.path.isfile(self.cache.archive_path(a.sha256, a.filename))
            and self._bundle_path(a) is None
            and not _local(a.url, self._mirror_rules())
        ]
        if unavailable:
            where = f"the cache ({self.cache.root})"
            if self.bundle is not None:
                where += f" or the bundle ({self.bundle})"
            raise OfflineError(
                f"--offline: {_count_and_size(unavailable)} not in {where}: {_names(unavailable)}"
            ).with_hint(hint)

    def expect(self, artifacts: Sequence[Archive]) -> None:
        """Open the download task (progress in files and bytes) for those of ``artifacts``
        that are neither in the cache nor in the bundle; `close` (or the next `expect`)
        closes it."""
        if not isinstance(self._progress, Reporter):
            return  # nothing would show it: spare the look at every archive
        missing = [
            a
            for a in artifacts
            if not os.path.isfile(self.cache.archive_path(a.sha256, a.filename))
            and self._bundle_path(a) is None
        ]
        if missing:
            task = task_of(
                self._progress, "download", items=len(missing), total=sum(a.size for a in missing)
            )
            with self._lock:
                previous, self._task = self._task, task
            if previous is not None:
                previous.close()  # a later batch (a sync's sdists after its wheels)

    # -- one artifact ------------------------------------------------------------------------

    def archive(self, artifact: Archive) -> Path:
        """The verified archive of ``artifact`` in the cache: checked where it already is,
        else imported from the bundle, else downloaded; under the artifact's lock."""
        path = self.cache.archive_path(artifact.sha256, artifact.filename)
        with artifact_lock(self.cache, artifact):
            if os.path.isfile(path):
                _check_cached(self.cache, artifact, path)
                _log_source(artifact, "in the cache")
                return path
            source = self._bundle_path(artifact)
            if source is not None:
                _import_from_bundle(artifact, source, path)
                _log_source(artifact, f"from the bundle {self.bundle}")
                with self._lock:
                    self.bundled.append(artifact.filename)
                return path
            self._download(artifact, path)
        return path

    def will_download(self, artifact: Archive) -> bool:
        """Whether ``artifact``'s archive is neither in the cache nor in the bundle (as
        things stand: another process may put it there meanwhile)."""
        path = self.cache.archive_path(artifact.sha256, artifact.filename)
        return not os.path.isfile(path) and self._bundle_path(artifact) is None

    def download_into(
        self, artifact: Archive, consumer: Callable[[], C], *, keep_archive: bool
    ) -> C | None:
        """Download ``artifact`` feeding its bytes to a consumer (`lockenv.http.Consumer`)
        made by ``consumer``, and return the one fed the whole body, which matched the
        lock's sha256 and size; on any failure every consumer made was discarded.  Its
        archive is kept in the cache too when ``keep_archive``.  None, and nothing done,
        when the archive is in the cache or the bundle (`archive` gets it from there).

        The caller holds the artifact's lock (`Cache.artifact_lock`)."""
        if not self.will_download(artifact):
            return None
        made: list[C] = []

        def make() -> C:
            made.append(consumer())
            return made[-1]

        path = self.cache.archive_path(artifact.sha256, artifact.filename)
        self._download(artifact, path if keep_archive else None, consumer=make)
        return made[-1]

    def _http(self) -> HttpClient:
        mirrors = self._mirror_rules()
        with self._lock:
            if self._client is None:
                from lockenv.http import HttpClient

                self._client = HttpClient(
                    self.cache.root,
                    offline=self.offline,
                    max_connections=self._connections,
                    mirrors=mirrors,
                    credential_urls=_manifest_credential_urls(self._manifest),
                )
            return self._client

    def _download(
        self,
        artifact: Archive,
        path: Path | None,
        consumer: Callable[[], Consumer] | None = None,
    ) -> None:
        from lockenv.urls import redact_url

        client = self._http()
        with self._lock:
            task = self._task or Task("download", items=0, total=0, unit="bytes")
        task.start(artifact.filename, artifact.size)
        if self._progress is not None and not isinstance(self._progress, Reporter):
            self._progress(f"download {artifact.filename}")
        try:
            _download_or_find(client, artifact, path, self._progress, task.advance, consumer)
        except IntegrityError as exc:
            raise IntegrityError(
                f"{artifact.filename}: downloaded file does not match the lock "
                f"({redact_url(artifact.url)!r}): {_detail(str(exc))}"
            ) from None
        task.done(artifact.filename)
        with self._lock:
            self.downloaded.append(artifact.filename)
        checkpoint("fetch:downloaded", artifact.filename)


def fetch_artifacts(
    artifacts: Sequence[Archive],
    cache: Cache,
    *,
    offline: bool = False,
    jobs: int = 8,
    progress: Progress | None = None,
    bundle: Path | None = None,
    manifest: Path | None = None,
) -> FetchResult:
    """Make each artifact's archive available in ``cache``, sha256 and size verified.

    Artifacts not in the cache are taken from the ``bundle`` directory when it has them,
    else downloaded, through the mirrors of the machine and of ``manifest`` (if given).
    Raises OfflineError listing every missing artifact when ``offline`` (``file://`` URLs,
    and mirrors on a shared filesystem, are local files, read even offline), and
    IntegrityError naming the artifact, the expected and the actual sha256 when any
    artifact (cached, bundled or downloaded) does not match the lock.
    """
    unique = list({a.sha256: a for a in artifacts}.values())
    for a in unique:
        # Before looking: `lockenv.cache.prune` spares what was marked in the last hour.
        cache.mark_used(a.sha256)
    paths = {a.sha256: cache.archive_path(a.sha256, a.filename) for a in unique}
    fetcher = Fetcher(
        cache,
        offline=offline,
        bundle=bundle,
        manifest=manifest,
        progress=progress,
        connections=max(1, jobs),
    )
    with contextlib.closing(fetcher):
        fetcher.check_available(unique, hint=_ARCHIVES_HINT)
        fetcher.expect(unique)
        errors: list[LockenvError] = []
        cached_bytes = sum(a.size for a in unique if os.path.isfile(paths[a.sha256]))
        if all(os.path.isfile(p) for p in paths.values()) and cached_bytes < _SEQUENTIAL_BYTES:
            # A warm fetch of small archives: hashing them in turn is quicker than a pool.
            for a in unique:
                try:
                    fetcher.archive(a)
                except LockenvError as exc:
                    errors.append(exc)
        elif unique:
            from concurrent.futures import ThreadPoolExecutor

            workers = max(1, min(jobs, len(unique)))
            with ThreadPoolExecutor(workers, thread_name_prefix="lockenv-fetch") as pool:
                futures = [pool.submit(fetcher.archive, a) for a in unique]
                errors = collect_errors(futures)
        if errors:
            raise_all(errors)
    return FetchResult(
        paths=paths, downloaded=tuple(fetcher.downloaded), bundled=tuple(fetcher.bundled)
    )


def _check_cached(cache: Cache, artifact: Archive, path: Path) -> None:
    try:
        digest, size = hash_file(path)
    except OSError as exc:
        raise IntegrityError(
            f"{artifact.filename}: cannot read the cached archive {str(path)!r}: {exc}"
        ) from None
    if size == artifact.size and digest == artifact.sha256:
        return
    # The entry is keyed by the expected hash, so its content was changed in place.
    cache.discard(path.parent)
    cache.discard(cache.unpacked_dir(artifact.sha256))
    raise IntegrityError(
        f"{artifact.filename}: the cached archive is corrupt: expected sha256 "
        f"{artifact.sha256} ({artifact.size} bytes), got sha256 {digest} ({size} bytes); the "
        f"cache entry {str(path)!r} was removed, so the next sync downloads it again"
    )


def _local(url: str, mirrors: Mirrors) -> bool:
    """True when ``url`` (or a mirror of it) is a local file, readable offline."""
    return any(location.startswith("file:") for location in mirrors.locations(url))


def _log_source(artifact: Archive, where: str) -> None:
    """-v: where an artifact comes from (logging imported only when asked for)."""
    import logging

    log = logging.getLogger("lockenv.fetch")
    if log.isEnabledFor(logging.INFO):
        log.info("%s: %s", artifact.filename, where)


_NAMED = 5  # artifacts named in a summary before "and N more"


def _count_and_size(artifacts: Sequence[Archive]) -> str:
    total = format_size(sum(a.size for a in artifacts))
    return f"{len(artifacts)} artifact{'s are' if len(artifacts) != 1 else ' is'} ({total})"


def _names(artifacts: Sequence[Archive]) -> str:
    """``a-1.whl, b-2.conda, ... and 12 more``: a line a person reads to the end."""
    names = ", ".join(a.filename for a in artifacts[:_NAMED])
    more = len(artifacts) - _NAMED
    return f"{names} and {more} more" if more > 0 else names


def _import_from_bundle(artifact: Archive, source: Path, dest: Path) -> None:
    """Put the bundle's ``source`` at ``dest`` in the cache, hashed on the way in.

    A hardlink when the bundle shares the cache's filesystem (no bytes copied), else a
    copy hashed while it is written; either way ``dest`` appears by one rename, and only
    when it matches the lock.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.urandom(6).hex()}.part"
    try:
        try:
            os.link(source, tmp)
            digest, size = hash_file(tmp)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            digest, size = copy_hashing(source, tmp, limit=artifact.size)
        if size != artifact.size or digest != artifact.sha256:
            raise IntegrityError(
                f"{artifact.filename}: the bundled archive {str(source)!r} is corrupt: "
                f"expected sha256 {artifact.sha256} ({artifact.size} bytes), got sha256 "
                f"{digest} ({size} bytes); build the bundle again with `lockenv bundle`"
            )
        os.replace(tmp, dest)
    except OSError as exc:
        raise IntegrityError(
            f"{artifact.filename}: cannot read the bundled archive {str(source)!r}: "
            f"{exc.strerror or exc}; build the bundle again with `lockenv bundle`"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _download_or_find(
    client: HttpClient,
    artifact: Archive,
    dest: Path | None,
    progress: Progress | None,
    on_bytes: Callable[[int], None] | None = None,
    consumer: Callable[[], Consumer] | None = None,
) -> None:
    """Download ``artifact`` from its URL; failing that, a wheel locked from an index is
    looked for by file name on that index (`lockenv.sync.pypi.locate`), mirrors and all.
    ``on_bytes`` hears of the bytes as they arrive (progress); ``consumer`` as for
    `lockenv.http.HttpClient.download`."""
    from lockenv.errors import IndexAccessError
    from lockenv.lockfile import PypiArtifact

    try:
        client.download(
            artifact.url,
            dest,
            sha256=artifact.sha256,
            size=artifact.size,
            on_bytes=on_bytes,
            consumer=consumer,
        )
        return
    except IndexAccessError as exc:
        if not isinstance(artifact, PypiArtifact) or not artifact.index:
            raise
        failure = exc
    from lockenv.sync.pypi.locate import find_on_index

    try:
        found = find_on_index(client, artifact.index, artifact.name, artifact.filename)
    except IndexAccessError:
        found = None
    if found is None:
        raise failure
    if progress is not None:
        progress(f"{artifact.filename}: not at its locked URL; found on {artifact.index}")
    client.download(
        found,
        dest,
        sha256=artifact.sha256,
        size=artifact.size,
        on_bytes=on_bytes,
        consumer=consumer,
    )


def _detail(message: str) -> str:
    # The HTTP client's message starts with the quoted URL: keep what follows.
    _, sep, rest = message.partition(": ")
    return rest if sep else message


def collect_errors(futures: Sequence[Future[Any]]) -> list[LockenvError]:
    """Wait for every future; the LockenvErrors they raised (anything else is re-raised:
    a bug, not a problem of one artifact)."""
    errors: list[LockenvError] = []
    for future in futures:
        exc = future.exception()
        if isinstance(exc, LockenvError):
            errors.append(exc)
        elif exc is not None:
            raise exc
    return errors


_SHOWN_ERRORS = 3  # other errors quoted after the first before "N more not shown"


def raise_all(errors: Sequence[LockenvError]) -> None:
    """Raise one error for all of ``errors``: an integrity error first (it names what to
    distrust), a few others after it, and how many more there were (-v logs them all: 80
    artifacts refused by one unreachable server are one line, not 80)."""
    integrity = [e for e in errors if isinstance(e, IntegrityError)]
    first = integrity[0] if integrity else errors[0]
    if len(errors) == 1:
        raise first
    rest = [e for e in errors if e is not first]
    others = "; ".join(str(e) for e in rest[:_SHOWN_ERRORS])
    if len(rest) > _SHOWN_ERRORS:
        others += f"; {len(rest) - _SHOWN_ERRORS} not shown (-v lists them)"
        _log_errors(rest[_SHOWN_ERRORS:])
    # The first error, same class and attributes, with the others in its message (its
    # constructor may want more than a message: HttpStatusError does).
    cls = type(first)
    combined = cls.__new__(cls)
    combined.__dict__.update(vars(first))
    combined.args = (f"{first} (and {len(errors) - 1} more: {others})",)
    raise combined from None


def _log_errors(errors: Sequence[LockenvError]) -> None:
    """-v: the errors a summary left out, one per line."""
    import logging

    log = logging.getLogger("lockenv.fetch")
    for error in errors:
        log.info("%s", error)


def _manifest_credential_urls(manifest: Path | None) -> list[str]:
    """The manifest's index and channel URLs that carry credentials or a conda token, so
    a sync downloads with what the lock was made with (read as raw TOML: the sync side
    never parses a manifest)."""
    if manifest is None:
        return []
    from lockenv.project import TOML_ERRORS, toml_may_spell

    try:
        text = manifest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if not toml_may_spell(text, "@", "/t/"):
        return []  # no URL with credentials or a token: nothing to parse
    import tomllib

    try:
        data = tomllib.loads(text)
    except TOML_ERRORS:
        return []
    table: object = data
    for key in ("tool", "lockenv") if manifest.name == "pyproject.toml" else ():
        table = table.get(key, {}) if isinstance(table, dict) else {}
    project = table.get("project", {}) if isinstance(table, dict) else {}
    if not isinstance(project, dict):
        return []
    urls = []
    for key in ("indexes", "channels", "find-links"):
        values = project.get(key, [])
        for value in values if isinstance(values, list) else []:
            if isinstance(value, str) and "://" in value and ("@" in value or "/t/" in value):
                urls.append(value)
    return urls
