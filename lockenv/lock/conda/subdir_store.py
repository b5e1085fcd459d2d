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

Format (version 2), one file written whole and renamed into place::

    b"LOCKENV-BYNAME\x00\x02"   16-byte magic and version
    8 + 8 bytes, little-endian  offset and length of the header
    data                        per name, the JSON object {filename: record, ...}
    header                      JSON {"base_url": info.base_url or null,
                                      "names": {name: [offset, length]}, "records": n}

The data comes first so that it is written as it is made, one name at a time, never
held whole in memory; the header, which needs every offset, follows it.  Each record is
the repodata's own JSON text, copied without being parsed or re-encoded (see
`lockenv.lock.conda.repodata_json`).

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
from collections.abc import KeysView
from pathlib import Path
from typing import Any

import msgspec

from lockenv.lock.conda.repodata_json import RawDocument, decode_entries, encode_entries

__all__ = ["Stores", "SubdirStore"]

_MAGIC = b"LOCKENV-BYNAME\x00\x02"
_SPAN = struct.Struct("<QQ")
Entries = list[tuple[str, Any]]


class SubdirStore:
    """One by-name store, memory-mapped: `entries` parses one name's records."""

    __slots__ = ("_map", "_names", "base_url", "path", "records")

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if self._map[: len(_MAGIC)] != _MAGIC:
                raise ValueError("not a by-name store")
            start, length = _SPAN.unpack(self._map[len(_MAGIC) : len(_MAGIC) + _SPAN.size])
            header = msgspec.json.decode(self._map[start : start + length], type=_Header)
            end = start
            if any(o < 0 or n < 0 or o + n > end for o, n in header.names.values()):
                raise ValueError("a name's records lie outside the store")
            self._names = header.names
            self.base_url: Any = header.base_url
            self.records: int = header.records
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
        span = self._names.get(name)
        if span is None:
            return []
        return decode_entries(self._map[span[0] : span[0] + span[1]])


class _Header(msgspec.Struct):
    base_url: Any
    names: dict[str, tuple[int, int]]
    records: int


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
            return None  # absent or damaged (msgspec's errors are ValueErrors): made again
        with contextlib.suppress(OSError):
            os.utime(path)  # in use: `cache prune` keeps it
        return store

    def publish(self, url: str, digest: str, document: RawDocument) -> SubdirStore | None:
        """Write the store of ``document`` (the repodata fetched from ``url``, hashing to
        ``digest``) and open it; None when the cache is not writable.

        The store it replaces for ``url`` is removed: a process still reading it keeps
        its mapping (on Windows the file stays until it is released).
        """
        path = self.root / f"{digest}.byname"
        names: dict[str, tuple[int, int]] = {}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".byname-", dir=self.root)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(_MAGIC + _SPAN.pack(0, 0))
                    offset = len(_MAGIC) + _SPAN.size
                    for name in sorted(document.by_name):
                        chunk = encode_entries(document.by_name[name])
                        fh.write(chunk)
                        names[name] = (offset, len(chunk))
                        offset += len(chunk)
                    header = msgspec.json.encode(
                        _Header(base_url=document.base_url, names=names, records=document.records)
                    )
                    fh.write(header)
                    fh.seek(len(_MAGIC))
                    fh.write(_SPAN.pack(offset, len(header)))
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
