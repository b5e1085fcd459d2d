"""CEP 16 sharded repodata: one small file per package name, fetched as a solve needs it.

A channel that offers ``<subdir>/repodata_shards.msgpack.zst`` (the shard index) serves
each package name's records as a separate file, named by the sha256 of its bytes::

    index  = zstd(msgpack({"version": 1,
                           "info": {"base_url": ..., "shards_base_url": ..., "subdir": ...},
                           "shards": {name: sha256 (32 bytes, or 64 hex digits)}}))
    shard  = zstd(msgpack({"packages": {filename: record}, "packages.conda": {...},
                           "removed": [filename, ...]}))
    at     <shards_base_url, relative to the index><sha256 hex>.msgpack.zst

The index is fetched like ``repodata.json`` (ETag / Last-Modified revalidation); a shard
is immutable, so it is kept in the cache under its hash (``<cache>/conda-shards/``) and
never asked for again.  Every shard is checked against the hash the index gives before
it is used or kept.  A record's ``sha256`` and ``md5`` may be raw bytes in a shard: they
are turned into hex as in ``repodata.json``.

`ShardedEntries.prefetch` fetches many shards concurrently; `ChannelRecords.prefetch`
(in `lockenv.lock.conda.repodata`) walks from the requested names through every
dependency, as conda and rattler do, so a solve then finds every shard it can reach in
memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import urllib.parse
from collections.abc import Iterable, KeysView
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from lockenv.errors import IndexAccessError
from lockenv.lock.conda.compressed import unzstd

if TYPE_CHECKING:
    from lockenv.http import HttpClient

__all__ = ["SHARD_INDEX", "ShardIndex", "ShardedEntries", "parse_shard_index"]

SHARD_INDEX = "repodata_shards.msgpack.zst"
_HEX = frozenset("0123456789abcdef")

Entries = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardIndex:
    """A parsed shard index: where shards and packages live, and each name's shard."""

    url: str  # the index URL (with credentials, when the channel has them)
    base_url: str | None  # info.base_url: where package files live
    shards_base_url: str  # absolute, ends with "/"
    shards: dict[str, str]  # name -> sha256 hex of its shard


def parse_shard_index(data: bytes, *, url: str, shown: str) -> ShardIndex:
    """Read a ``repodata_shards.msgpack.zst``; IndexAccessError when it is not one."""
    try:
        document = msgspec.msgpack.decode(unzstd(data))
    except (ValueError, RecursionError) as exc:  # msgspec's DecodeError is a ValueError
        raise _corrupt(shown, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(document, dict):
        raise _corrupt(shown, "the top level is not a map")
    info = document.get("info") or {}
    shards = document.get("shards")
    if not isinstance(info, dict) or not isinstance(shards, dict):
        raise _corrupt(shown, "'info' or 'shards' is missing or has a bad type")
    by_name: dict[str, str] = {}
    for name, digest in shards.items():
        hexdigest = digest.hex() if isinstance(digest, bytes) else digest
        if not (isinstance(name, str) and isinstance(hexdigest, str)):
            raise _corrupt(shown, f"the shard of {name!r} is not a sha256")
        hexdigest = hexdigest.lower()
        if len(hexdigest) != 64 or not set(hexdigest) <= _HEX:
            raise _corrupt(shown, f"the shard of {name!r} is not a sha256")
        by_name[name] = hexdigest
    base = info.get("shards_base_url") or ""
    if not isinstance(base, str):
        raise _corrupt(shown, "info.shards_base_url is not a URL")
    shards_base = urllib.parse.urljoin(url, base)
    if not shards_base.endswith("/"):
        shards_base += "/"
    base_url = info.get("base_url")
    return ShardIndex(
        url=url,
        base_url=base_url if isinstance(base_url, str) and base_url else None,
        shards_base_url=shards_base,
        shards=by_name,
    )


class ShardedEntries:
    """The records of a sharded subdir by name, each name's shard fetched once."""

    def __init__(
        self, index: ShardIndex, *, http: HttpClient, cache_dir: Path | None, shown: str
    ) -> None:
        self.index = index
        self.http = http
        self.cache_dir = cache_dir / "conda-shards" if cache_dir is not None else None
        self.shown = shown
        self._entries: dict[str, Entries] = {}
        self._lock = threading.Lock()

    def names(self) -> KeysView[str]:
        return self.index.shards.keys()

    def __contains__(self, name: object) -> bool:
        return name in self.index.shards

    def __len__(self) -> int:
        """Number of names (the number of files is only known shard by shard)."""
        return len(self.index.shards)

    def entries(self, name: str) -> Entries:
        """``[(filename, record)]`` of ``name``, from the cache or the channel."""
        found = self._entries.get(name)
        if found is None:
            digest = self.index.shards.get(name)
            found = [] if digest is None else self._load(name, digest)
            with self._lock:
                found = self._entries.setdefault(name, found)
        return found

    def prefetch(self, names: Iterable[str], *, workers: int = 8) -> None:
        """Fetch the shards of ``names`` (those the subdir has) concurrently."""
        wanted = [n for n in dict.fromkeys(names) if n in self.index.shards]
        wanted = [n for n in wanted if n not in self._entries]
        if len(wanted) <= 1 or workers <= 1:
            for name in wanted:
                self.entries(name)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(wanted))) as pool:
            # list(): the first failure is raised here, in order.
            list(pool.map(self.entries, wanted))

    def _load(self, name: str, digest: str) -> Entries:
        data = self._cached(digest)
        if data is None:
            url = f"{self.index.shards_base_url}{digest}.msgpack.zst"
            data = self.http.fetch_bytes(url)
            if hashlib.sha256(data).hexdigest() != digest:
                raise _corrupt(
                    self.shown, f"the shard of {name!r} does not have the sha256 the index gives"
                )
            self._keep(digest, data)
        return _shard_entries(data, name, self.shown)

    def _cached(self, digest: str) -> bytes | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / digest[:2] / f"{digest}.msgpack.zst"
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # in use: `cache prune` keeps it
        # Checked again: a damaged cache file is fetched anew, never trusted.
        return data if hashlib.sha256(data).hexdigest() == digest else None

    def _keep(self, digest: str, data: bytes) -> None:
        if self.cache_dir is None:
            return
        directory = self.cache_dir / digest[:2]
        with contextlib.suppress(OSError):  # a read-only or full cache must not break a lock
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".shard-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, directory / f"{digest}.msgpack.zst")
            except OSError:
                os.unlink(tmp)
                raise


def _shard_entries(data: bytes, name: str, shown: str) -> Entries:
    """A shard's records, as ``repodata.json`` gives them (removed and twins dropped)."""
    try:
        document = msgspec.msgpack.decode(unzstd(data))
    except (ValueError, RecursionError) as exc:
        raise _corrupt(shown, f"the shard of {name!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(document, dict):
        raise _corrupt(shown, f"the shard of {name!r} is not a map")
    conda = document.get("packages.conda") or {}
    bz2 = document.get("packages") or {}
    removed = set(document.get("removed") or ())
    if not isinstance(conda, dict) or not isinstance(bz2, dict):
        raise _corrupt(shown, f"the shard of {name!r} has no package maps")
    entries: Entries = []
    for packages, is_bz2 in ((conda, False), (bz2, True)):
        for filename, raw in packages.items():
            if not isinstance(filename, str) or not isinstance(raw, dict):
                raise _corrupt(shown, f"the shard of {name!r} has a malformed entry")
            if filename in removed or (is_bz2 and filename[:-8] + ".conda" in conda):
                continue
            if raw.get("name") != name:
                continue  # a shard only speaks for its own name
            for key in ("sha256", "md5"):
                value = raw.get(key)
                if isinstance(value, bytes):
                    raw[key] = value.hex()
            entries.append((filename, raw))
    return entries


def _corrupt(shown: str, reason: str) -> IndexAccessError:
    return IndexAccessError(
        f"{shown!r}: the sharded repodata is corrupt ({reason}); retry later, or tell the "
        "channel's maintainers"
    )
