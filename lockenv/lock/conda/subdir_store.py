"""A channel subdir's repodata on disk, split by package name, opened without parsing.

A solve reads a few hundred names of a subdir that has tens of thousands (conda-forge's
``linux-64`` has over 800,000 records).  Parsing the whole ``repodata.json`` on every lock
costs seconds and a gigabyte of memory, so the first lock that fetches a given
``repodata.json`` writes it out once more, grouped by name, to
``<cache>/conda-repodata/<sha256 of the fetched bytes>.byname``; every later lock that
fetches the same bytes (an unchanged channel: a 304 Not Modified, or the same file)
memory-maps that file, reads its table of names, and unpacks only the names the solve
asks for.  The key is the hash of the bytes as fetched, so a changed channel can never
be answered from an old store.

Format (version 1), one file written whole and renamed into place::

    b"LOCKENV-BYNAME\\x00\\x01"   16-byte magic and version
    8 bytes, little-endian      length H of the header
    H bytes                     msgpack {"base_url": info.base_url or None,
                                         "names": {name: [offset, length]}}
    data                        per name, msgpack [[filename, record], ...]

Records are kept whole, as the repodata has them (leaving out the fields a lock does not
read would cost more time than the disk it saves).  ``base_url`` is kept as the
repodata said it, so the download URLs (which may hold credentials) are made from the
channel URL in use when the store is opened, never stored.  Only the newest store of
each repodata URL is kept (`Stores.publish` removes the one it replaces), so the cache
does not grow with every update of a channel; `lockenv cache prune` removes stores
unused for its period.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import tempfile
from collections.abc import KeysView, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Stores", "SubdirStore"]

_MAGIC = b"LOCKENV-BYNAME\x00\x01"
_LENGTH = struct.Struct("<Q")
Entries = list[tuple[str, dict[str, Any]]]


class SubdirStore:
    """One by-name store, memory-mapped: `entries` unpacks one name's records."""

    __slots__ = ("_data", "_map", "_names", "base_url", "path", "records")

    def __init__(self, path: Path) -> None:
        import msgpack

        self.path = path
        with open(path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if self._map[: len(_MAGIC)] != _MAGIC:
                raise ValueError("not a by-name store")
            start = len(_MAGIC) + _LENGTH.size
            (length,) = _LENGTH.unpack(self._map[len(_MAGIC) : start])
            header = msgpack.unpackb(self._map[start : start + length])
            self._names: dict[str, list[int]] = header["names"]
            self.base_url: str | None = header["base_url"]
            self.records: int = header["records"]
            self._data = start + length
        except Exception:
            self._map.close()
            raise

    def names(self) -> KeysView[str]:
        """Every package name of the subdir."""
        return self._names.keys()

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        """Number of package files."""
        return self.records

    def entries(self, name: str) -> Entries:
        """``[(filename, record)]`` of ``name`` (``[]`` when the subdir lacks it)."""
        import msgpack

        span = self._names.get(name)
        if span is None:
            return []
        start = self._data + span[0]
        found: list[list[Any]] = msgpack.unpackb(self._map[start : start + span[1]])
        return [(filename, record) for filename, record in found]


class Stores:
    """The by-name stores under one cache directory."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "conda-repodata"

    def open(self, digest: str) -> SubdirStore | None:
        """The store of the repodata whose bytes hash to ``digest``, if one was made."""
        path = self.root / f"{digest}.byname"
        try:
            store = SubdirStore(path)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or damaged: made again
        with contextlib.suppress(OSError):
            os.utime(path)  # in use: `cache prune` keeps it
        return store

    def publish(
        self,
        url: str,
        digest: str,
        by_name: Mapping[str, Sequence[tuple[str, Mapping[str, Any]]]],
        base_url: str | None,
    ) -> SubdirStore | None:
        """Write the store of ``by_name`` (the records of the repodata fetched from
        ``url``, hashing to ``digest``) and open it; None when the cache is not writable.

        The store it replaces for ``url`` is removed: a process still reading it keeps
        its mapping (on Windows the file stays until it is released).
        """
        import msgpack

        path = self.root / f"{digest}.byname"
        names: dict[str, list[int]] = {}
        chunks: list[bytes] = []
        offset = records = 0
        for name in sorted(by_name):
            entries = by_name[name]
            chunk = msgpack.packb(entries)  # records whole: filtering them costs more
            names[name] = [offset, len(chunk)]
            chunks.append(chunk)
            offset += len(chunk)
            records += len(entries)
        header = msgpack.packb({"base_url": base_url, "names": names, "records": records})
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".byname-", dir=self.root)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_MAGIC + _LENGTH.pack(len(header)) + header)
                    fh.writelines(chunks)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._replace_latest(url, digest)
        except OSError:
            return None  # a read-only or full cache must not break a lock
        return self.open(digest)

    def _replace_latest(self, url: str, digest: str) -> None:
        """Point ``url`` at ``digest``; remove the store it pointed at before."""
        key = hashlib.sha256(url.encode()).hexdigest()
        pointer = self.root / "latest" / key
        previous = None
        with contextlib.suppress(OSError):
            previous = pointer.read_text().strip()
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_name(f".{key}.{os.getpid()}")
        tmp.write_text(digest)
        os.replace(tmp, pointer)
        if previous and previous != digest and all(c in "0123456789abcdef" for c in previous):
            with contextlib.suppress(OSError):
                (self.root / f"{previous}.byname").unlink()
