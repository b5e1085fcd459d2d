"""Isolated build environments, made by lockenv itself from both of its sides.

A build needs its ``build-system.requires`` (and what the backend's
``get_requires_for_build_*`` hook adds) installed beside nothing else.  The lock side
resolves them for this machine and the build's interpreter (wheels only: a build
backend that itself needs a build is refused, as the manifest's ``no-build`` would), and
the sync side installs the pins as a virtual environment out of the shared cache (files
hardlinked, every archive hash-checked).  The environment lives in a throwaway
directory; only the cache outlives it, so a second build with the same requirements
costs links, not downloads.

Build requirements are resolved at build time, not locked (as pip and uv do).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lockenv.errors import BuildError, ResolutionError

if TYPE_CHECKING:
    from lockenv.http import HttpClient
    from lockenv.lock.pypi.index import PackageIndex
    from lockenv.lock.pypi.metadata import MetadataFetcher
    from lockenv.mirrors import Mirrors
    from lockenv.sync.venv import Interpreter

__all__ = ["BuildEnvironments", "Progress"]

Progress = Callable[[str], None]


class BuildEnvironments:
    """Makes build environments; holds the index clients they share (thread-safe)."""

    def __init__(
        self,
        *,
        cache_dir: Path,
        index_urls: Sequence[str],
        find_links: Sequence[str] = (),
        offline: bool = False,
        mirrors: Mirrors | None = None,
        manifest: Path | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        self.manifest = manifest  # whose [mirrors] downloads go through
        self.index_urls = tuple(index_urls)
        self.find_links = tuple(find_links)
        self.offline = offline
        self.mirrors = mirrors
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._clients: tuple[HttpClient, PackageIndex, MetadataFetcher] | None = None

    def close(self) -> None:
        """Close the index clients (if any were opened)."""
        with self._lock:
            stack, self._stack, self._clients = self._stack, None, None
        if stack is not None:
            stack.close()

    def _index(self) -> tuple[HttpClient, PackageIndex, MetadataFetcher]:
        with self._lock:
            if self._clients is None:
                from lockenv.http import HttpClient
                from lockenv.lock.pypi.index import PackageIndex
                from lockenv.lock.pypi.metadata import MetadataFetcher

                stack = contextlib.ExitStack()
                http = stack.enter_context(
                    HttpClient(self.cache_dir, offline=self.offline, mirrors=self.mirrors)
                )
                index = stack.enter_context(PackageIndex(http, self.index_urls, self.find_links))
                metadata = stack.enter_context(MetadataFetcher(http, self.cache_dir))
                self._stack, self._clients = stack, (http, index, metadata)
            return self._clients

    def create(
        self,
        requirements: Sequence[str],
        *,
        interpreter: Interpreter,
        prefix: Path,
        label: str,
    ) -> Path:
        """Make (or remake) at ``prefix`` a virtual environment on ``interpreter`` holding
        ``requirements`` and what they need; return its Python.

        BuildError names ``label`` when the requirements cannot be met with wheels.
        """
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.version import Version

        from lockenv.lock.manifest import PypiOptions
        from lockenv.lock.resolve import resolve_pypi
        from lockenv.lockfile import LockedEnvironment, Lockfile, LockInputs, sequence_of_urls
        from lockenv.platforms import current_platform, host_system_requirements
        from lockenv.sync.materialize import SyncOptions, sync_environment

        parsed = []
        for text in requirements:
            try:
                parsed.append(Requirement(text))
            except InvalidRequirement as exc:
                raise BuildError(
                    f"{label}: build requirement {text!r} is not PEP 508 ({exc})"
                ) from None
        platform = current_platform()
        glibc, macos = host_system_requirements()
        http, index, metadata = self._index()
        try:
            artifacts, _ = resolve_pypi(
                parsed,
                index=index,
                metadata=metadata,
                http=http,
                platform=platform,
                python=Version(interpreter.version),
                glibc=glibc,
                macos=macos,
                options=PypiOptions(no_build=True),
                what=f"the build environment of {label}",
            )
        except ResolutionError as exc:
            raise BuildError(
                f"{label}: its build requirements ({', '.join(requirements)}) cannot be "
                f"installed: {exc}"
            ) from None
        urls = sequence_of_urls(artifacts)
        lock = Lockfile(
            inputs=LockInputs(
                platforms=(platform,), indexes=self.index_urls, find_links=self.find_links
            ),
            environments={
                "build": LockedEnvironment(
                    name="build", python=interpreter.major_minor, packages={platform: urls}
                )
            },
            artifacts={a.key: a for a in artifacts},
        )
        identity = hashlib.sha256("\n".join(urls).encode()).hexdigest()
        sync_environment(
            lock,
            identity,
            "build",
            prefix,
            SyncOptions(
                python=interpreter.executable,
                cache_dir=self.cache_dir,
                offline=self.offline,
                manifest=self.manifest,
            ),
        )
        from lockenv.sync.venv import layout_for

        return Path(layout_for(prefix, interpreter.major_minor).prefix_python)
