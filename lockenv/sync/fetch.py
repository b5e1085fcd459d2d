"""Get every locked artifact into the cache, each checked against the lock's sha256 and size.

Wheels and conda archives alike, looked for in the cache, then in a bundle
(`lockenv.sync.bundle_source`: imported into the cache by hardlink or copy), then
downloaded.  Archives already in the
cache are hashed again before use: a cache shared by many machines or users is not
trusted by location; neither is a bundle.  Downloads go
through `lockenv.http` (imported only when something must be downloaded, so a warm sync
never loads httpx), in a bounded pool of threads.  Every artifact is checked before
anything is installed: the first problem aborts the sync with the environment untouched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lockenv.cache import Cache, copy_hashing, hash_file
from lockenv.errors import IntegrityError, LockenvError, OfflineError
from lockenv.lockfile import Archive
from lockenv.sync.checkpoints import checkpoint

if TYPE_CHECKING:
    from lockenv.http import HttpClient
    from lockenv.mirrors import Mirrors

__all__ = ["FetchResult", "fetch_artifacts"]

Progress = Callable[[str], None]
_SEQUENTIAL_BYTES = 16 << 20  # above this, hash in parallel (hashlib frees the GIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """Archive paths by artifact sha256, all verified; how many were downloaded."""

    paths: dict[str, Path]
    downloaded: tuple[str, ...]  # file names
    bundled: tuple[str, ...] = ()  # file names imported from a bundle


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
    IntegrityError
    naming the artifact, the expected and the actual sha256 when any artifact (cached,
    bundled or downloaded) does not match the lock.
    """
    unique = list({a.sha256: a for a in artifacts}.values())
    for a in unique:
        # Before looking: `lockenv.cache.prune` spares what was marked in the last hour.
        cache.mark_used(a.sha256)
    paths = {a.sha256: cache.archive_path(a.sha256, a.filename) for a in unique}
    cached = [a for a in unique if os.path.isfile(paths[a.sha256])]
    missing = [a for a in unique if a not in cached]
    bundled: dict[str, Path] = {}
    if missing and bundle is not None:
        from lockenv.sync.bundle_source import read_bundle

        contents = read_bundle(bundle)
        for a in missing:
            source = contents.path_of(a.sha256)
            if source is not None:
                bundled[a.sha256] = source
        missing = [a for a in missing if a.sha256 not in bundled]
    mirrors: Mirrors | None = None
    if missing:
        from lockenv.mirrors import load_mirrors

        mirrors = load_mirrors(manifest)
    if offline and mirrors is not None:
        unavailable = [a for a in missing if not _local(a.url, mirrors)]
        if unavailable:
            listed = "; ".join(f"{a.filename} ({a.url})" for a in unavailable)
            where = f"the cache ({cache.root})"
            if bundle is not None:
                where += f" or the bundle ({bundle})"
            raise OfflineError(
                f"--offline: {len(unavailable)} artifact(s) are not in {where}: {listed}; "
                "run the sync once online or use a bundle that has them (`lockenv bundle`)"
            )
    from_bundle = [a for a in unique if a.sha256 in bundled]
    errors: list[LockenvError] = []
    cached_bytes = sum(a.size for a in cached)
    if not missing and not from_bundle and cached_bytes < _SEQUENTIAL_BYTES:
        # A warm sync of small archives: hashing them in turn is quicker than a pool.
        for a in cached:
            try:
                _check_cached(cache, a, paths[a.sha256])
            except LockenvError as exc:
                errors.append(exc)
    else:
        imports = [(a, bundled[a.sha256]) for a in from_bundle]
        errors = _fetch_in_pool(
            cached, imports, missing, cache, paths, offline, jobs, progress, mirrors
        )
    if errors:
        _raise_all(errors)
    return FetchResult(
        paths=paths,
        downloaded=tuple(a.filename for a in missing),
        bundled=tuple(a.filename for a in from_bundle),
    )


def _local(url: str, mirrors: Mirrors) -> bool:
    """True when ``url`` (or a mirror of it) is a local file, readable offline."""
    return any(location.startswith("file:") for location in mirrors.locations(url))


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
            digest, size = copy_hashing(source, tmp)
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


def _fetch_in_pool(
    cached: list[Archive],
    imports: list[tuple[Archive, Path]],
    missing: list[Archive],
    cache: Cache,
    paths: dict[str, Path],
    offline: bool,
    jobs: int,
    progress: Progress | None,
    mirrors: Mirrors | None,
) -> list[LockenvError]:
    from concurrent.futures import Future, ThreadPoolExecutor

    errors: list[LockenvError] = []
    workers = max(1, min(jobs, len(cached) + len(imports) + len(missing)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lockenv-fetch") as pool:
        futures: list[Future[None]] = [
            pool.submit(_check_cached, cache, a, paths[a.sha256]) for a in cached
        ]
        futures += [
            pool.submit(_import_from_bundle, a, source, paths[a.sha256]) for a, source in imports
        ]
        with contextlib.ExitStack() as stack:
            if missing:
                from lockenv.http import HttpClient, redact_url

                client = stack.enter_context(
                    HttpClient(
                        cache.root, offline=offline, max_connections=workers, mirrors=mirrors
                    )
                )

                def download(artifact: Archive) -> None:
                    if progress is not None:
                        progress(f"download {artifact.filename}")
                    try:
                        _download_or_find(client, artifact, paths[artifact.sha256], progress)
                    except IntegrityError as exc:
                        raise IntegrityError(
                            f"{artifact.filename}: downloaded file does not match the lock "
                            f"({redact_url(artifact.url)!r}): {_detail(str(exc))}"
                        ) from None
                    checkpoint("fetch:downloaded")

                futures += [pool.submit(download, a) for a in missing]
            for future in futures:
                exc = future.exception()
                if isinstance(exc, LockenvError):
                    errors.append(exc)
                elif exc is not None:
                    raise exc
    return errors


def _download_or_find(
    client: HttpClient, artifact: Archive, dest: Path, progress: Progress | None
) -> None:
    """Download ``artifact`` from its URL; failing that, a wheel locked from an index is
    looked for by file name on that index (`lockenv.sync.pypi.locate`), mirrors and all."""
    from lockenv.errors import IndexAccessError
    from lockenv.lockfile import PypiArtifact

    try:
        client.download(artifact.url, dest, sha256=artifact.sha256, size=artifact.size)
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
    client.download(found, dest, sha256=artifact.sha256, size=artifact.size)


def _detail(message: str) -> str:
    # The HTTP client's message starts with the quoted URL: keep what follows.
    _, sep, rest = message.partition(": ")
    return rest if sep else message


def _raise_all(errors: list[LockenvError]) -> None:
    integrity = [e for e in errors if isinstance(e, IntegrityError)]
    first = integrity[0] if integrity else errors[0]
    if len(errors) == 1:
        raise first
    others = "; ".join(str(e) for e in errors if e is not first)
    raise type(first)(f"{first} (and {len(errors) - 1} more: {others})")
