"""`SourceBuilder`: metadata of sdists for the lock, wheels from sdists for the sync.

One object serves both sides, each through the protocol it declares (the lock's
`lockenv.lock.pypi.metadata.MetadataBuilder`, the sync's
`lockenv.sync.pypi.sources.WheelBuilder`); `lockenv.workspace` hands it over, so neither
side imports this stage.  A build, for either purpose:

    unpack the sdist (member paths checked) → read [build-system] → make an isolated
    build environment with its requires (`lockenv.build.environment`) → ask the backend
    for more (get_requires_for_build_*) and add them → call the hook (prepare metadata,
    build_wheel or build_editable) through pyproject_hooks, output to a build log.

Built wheels are cached under ``<cache>/built/<sdist sha256>/<interpreter>-<platform>/``
with a record of their sha256, so every later sync on this machine (or any machine
sharing the cache and platform) installs the same bytes without building again; the
wheel is re-hashed against that record before each use.  Work directories live in the
cache's ``tmp/`` and are removed afterwards; the log of a failed build is kept under
``<cache>/build-logs/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lockenv.build.backend import Backend
from lockenv.build.environment import BuildEnvironments, Progress
from lockenv.build.source_tree import read_build_system, unpack_sdist
from lockenv.errors import BuildError

if TYPE_CHECKING:
    from lockenv.cache import Cache
    from lockenv.mirrors import Mirrors
    from lockenv.sync.pypi.sources import BuildRequest
    from lockenv.sync.venv import Interpreter

__all__ = ["SourceBuilder", "cache_key"]

_RECORD = "built.json"


class SourceBuilder:
    """Builds sdists and source trees in isolated build environments; thread-safe."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        index_urls: Sequence[str],
        find_links: Sequence[str] = (),
        offline: bool = False,
        progress: Progress | None = None,
        mirrors: Mirrors | None = None,
        manifest: Path | None = None,
        bundle: Path | None = None,
    ) -> None:
        from lockenv.cache import Cache

        self.cache: Cache = Cache(cache_dir)
        self.progress = progress
        self.bundle = bundle  # a bundle that may carry the wheels built here before
        self.environments = BuildEnvironments(
            cache_dir=cache_dir,
            index_urls=index_urls,
            find_links=find_links,
            offline=offline,
            mirrors=mirrors,
            manifest=manifest,
        )

    def __enter__(self) -> SourceBuilder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the index clients build environments were resolved with."""
        self.environments.close()

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    # -- the lock side: metadata ------------------------------------------------------

    def sdist_metadata(self, archive: Path, *, filename: str) -> bytes:
        """Core metadata of the wheel the sdist ``archive`` would build (PEP 517
        ``prepare_metadata_for_build_wheel``; the backend may build a wheel instead),
        asked with the Python running lockenv."""
        from lockenv.sync.venv import find_interpreter

        interpreter = find_interpreter(_running_major_minor())
        self._say(f"asking the build backend of {filename} for its metadata")
        with self._work(filename) as work:
            tree = unpack_sdist(archive, work / "src", label=filename)
            return self._prepared_metadata(tree, interpreter, work, label=filename)

    def tree_metadata(self, tree: Path, *, label: str, in_place: bool) -> bytes:
        """Core metadata of the source tree ``tree`` (a path or git dependency) as its
        build backend tells it; built in a copy unless ``in_place`` (the user's own)."""
        from lockenv.sync.venv import find_interpreter

        interpreter = find_interpreter(_running_major_minor())
        self._say(f"asking the build backend of {label} for its metadata")
        with self._work(label) as work:
            if not in_place:
                tree = _copy_tree(tree, work / "src")
            return self._prepared_metadata(tree, interpreter, work, label=label)

    def _prepared_metadata(
        self, tree: Path, interpreter: Interpreter, work: Path, *, label: str
    ) -> bytes:
        """The METADATA the backend of ``tree`` writes from
        ``prepare_metadata_for_build_wheel``, in ``work``."""
        backend = self._backend(tree, interpreter, work, label=label, editable=False)
        (work / "meta").mkdir()
        dist_info = backend.call("prepare_metadata_for_build_wheel", str(work / "meta"))
        try:
            return (work / "meta" / str(dist_info) / "METADATA").read_bytes()
        except OSError as exc:
            raise BuildError(
                f"{label}: the build backend wrote no {dist_info}/METADATA ({exc})"
            ) from None

    # -- the sync side: wheels --------------------------------------------------------

    def build_wheel(self, request: BuildRequest) -> Path:
        """A wheel of the request's sdist for its interpreter: from the built-wheel cache
        when this sdist was built here before for the same interpreter and platform."""
        from lockenv.sync.venv import Interpreter

        interpreter = Interpreter(executable=request.python, version=request.python_version)
        key = cache_key(request, interpreter)
        entry = None if key is None else self.cache.root / "built" / key[0][:2] / "/".join(key)
        if entry is not None:
            cached = _cached_wheel(entry)
            if cached is not None:
                return cached
            self.cache.discard(entry)  # damaged or half-written: built again below
            assert key is not None
            bundled = self._from_bundle(key)
            if bundled is not None:
                return _publish(self.cache, bundled, entry, copy=True)
        self._say(f"building {request.label} from source")
        with self._work(request.name) as work:
            if request.archive is not None:
                tree = unpack_sdist(request.archive, work / "src", label=request.label)
            else:
                assert request.tree is not None
                tree = request.tree if request.in_place else _copy_tree(request.tree, work / "src")
            backend = self._backend(
                tree, interpreter, work, label=request.label, editable=request.editable
            )
            out = work / "wheel"
            out.mkdir()
            hook = "build_editable" if request.editable else "build_wheel"
            name = backend.call(hook, str(out))
            built = out / str(name)
            if not built.is_file() or not built.name.endswith(".whl"):
                raise BuildError(f"{request.label}: the build backend returned no wheel ({name!r})")
            if entry is None:
                # Not cacheable (an editable or a local tree): the caller's to use now.
                keep = self.cache.make_temp_dir("built") / built.name
                shutil.move(built, keep)
                return keep
            return _publish(self.cache, built, entry)

    # -- shared steps -----------------------------------------------------------------

    def _backend(
        self, tree: Path, interpreter: Interpreter, work: Path, *, label: str, editable: bool
    ) -> Backend:
        """The tree's backend in a fresh build environment holding everything it asks for."""
        system = read_build_system(tree, label)
        python = self.environments.create(
            system.requires, interpreter=interpreter, prefix=work / "env", label=label
        )
        backend = Backend(tree, system, python=python, log=work / "build.log", label=label)
        hook = "get_requires_for_build_editable" if editable else "get_requires_for_build_wheel"
        more = [r for r in backend.call(hook) if r not in system.requires]
        if more:
            self.environments.create(
                [*system.requires, *more], interpreter=interpreter, prefix=work / "env", label=label
            )
        return backend

    @contextlib.contextmanager
    def _work(self, label: str) -> Iterator[Path]:
        """A work directory in the cache's tmp/; its build log is kept if the build fails."""
        work = self.cache.make_temp_dir("build")
        try:
            yield work
        except BuildError as exc:
            log = work / "build.log"
            if log.is_file():
                kept = _keep_log(self.cache, log, label)
                exc.args = (str(exc).replace(str(log), str(kept)),)
            raise
        finally:
            self.cache.remove_temp_dir(work)  # and its hold (`lockenv.cache`)

    def _from_bundle(self, key: tuple[str, str]) -> Path | None:
        """The wheel a bundle carries for this source and target (hash-checked later)."""
        if self.bundle is None:
            return None
        from lockenv.sync.bundle_source import read_bundle

        bundle = read_bundle(self.bundle)
        sha256 = bundle.built.get("/".join(key))
        wheel = None if sha256 is None else bundle.path_of(sha256)
        if wheel is None:
            return None
        from lockenv.cache import hash_file
        from lockenv.errors import IntegrityError

        digest, _ = hash_file(wheel)
        if digest != sha256:
            raise IntegrityError(
                f"{wheel.name}: the bundled built wheel is corrupt: expected sha256 {sha256}, "
                f"got {digest}; build the bundle again with `lockenv bundle --built-wheels`"
            )
        return wheel


def cache_key(request: BuildRequest, interpreter: Interpreter) -> tuple[str, str] | None:
    """``(source, target)`` a built wheel is cached (and bundled) under: the sdist's sha256
    or the git source, and ``<implementation>-<X.Y>-<platform>``; None when the wheel is
    not reusable (an editable, or a local tree whose content is not hashed)."""
    if request.editable:
        return None  # points at one checkout on one machine
    if request.archive_sha256 is not None:
        key = request.archive_sha256
    elif request.source_id:
        key = f"{request.name}-{request.source_id}"
    else:
        return None
    from lockenv.platforms import current_platform

    target = f"{interpreter.implementation}-{interpreter.major_minor}-{current_platform()}"
    return key, target


def _copy_tree(tree: Path, dest: Path) -> Path:
    """A copy of ``tree`` to build in (a build writes into its tree; the cache's git
    checkouts stay as they were).  Symlinks are copied as links."""
    shutil.copytree(tree, dest, symlinks=True)
    return dest


def _running_major_minor() -> str:
    import sys

    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _cached_wheel(entry: Path) -> Path | None:
    """The wheel recorded in ``entry``, if its bytes still match the record."""
    from lockenv.cache import hash_file

    try:
        record = json.loads((entry / _RECORD).read_text(encoding="utf-8"))
        wheel = entry / str(record["filename"])
        digest, size = hash_file(wheel)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if digest != record.get("sha256") or size != record.get("size"):
        return None
    return wheel


def _publish(cache: Cache, built: Path, entry: Path, *, copy: bool = False) -> Path:
    """Move (or ``copy``) ``built`` into the cache entry ``entry`` (one rename) and return
    its path.

    When another process published the entry first, its wheel is used: built from the
    same sdist for the same interpreter and platform, it is as good as ours.
    """
    from lockenv.cache import hash_file

    digest, size = hash_file(built)
    staged = cache.make_temp_dir("built")
    if copy:
        shutil.copyfile(built, staged / built.name)
    else:
        shutil.move(built, staged / built.name)
    record = {"filename": built.name, "sha256": digest, "size": size}
    (staged / _RECORD).write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    cache.publish_dir(staged, entry)
    wheel = _cached_wheel(entry)
    if wheel is None:
        cache.discard(entry)
        raise BuildError(
            f"{built.name}: the built-wheel cache entry {str(entry)!r} was damaged and is "
            "removed; sync again to build it anew"
        )
    return wheel


def _keep_log(cache: Cache, log: Path, label: str) -> Path:
    logs = cache.root / "build-logs"
    logs.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:80]
    kept = logs / f"{safe}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    shutil.copyfile(log, kept)
    return kept
