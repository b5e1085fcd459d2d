"""Conda channels and their ``repodata.json``: fetching, caching, and lazy records.

A channel is read one subdir at a time (``<channel>/<subdir>/repodata.json``), trying
``repodata.json.zst``, then ``.json.bz2``, then the plain file; the variants a channel
turned out not to offer are remembered and not asked for again.  Every request goes
through `HttpClient.get_page`, so ETag / Last-Modified revalidation applies and the
on-disk cache holds the bytes as served: for a ``.zst`` channel that is the compressed
file, several times smaller than the JSON.

A large channel subdir has hundreds of thousands of records and a solve reads a few
hundred names, so nothing is parsed that a solve does not ask for:

- a channel that offers CEP 16 sharded repodata (``repodata_shards.msgpack.zst``, tried
  first) is read one package name at a time (`lockenv.lock.conda.shards`);
- otherwise the subdir's ``repodata.json`` is fetched, and the first time given bytes
  are seen its entries are grouped by the name their file names carry, records left as
  JSON text (`lockenv.lock.conda.repodata_json`), and written to the cache that way
  (`lockenv.lock.conda.subdir_store`); later locks that fetch the same bytes open that
  store and parse only the names they need.  Without a cache directory the document is
  kept in memory, grouped the same way (`parse_repodata`).

Either way ``removed`` files and a ``.tar.bz2`` whose ``.conda`` twin is listed are
dropped, and `RepodataIndex.get` turns one name's entries into `RepoRecord` objects the
first time that name is asked for.  `ChannelClient.records_by_name` returns a
`ChannelRecords` mapping over several channels and subdirs that is just as lazy;
`ChannelRecords.prefetch` fetches, concurrently, every shard a request can reach.

Channel priority is strict (conda's and pixi's default): a name is served by the first
channel, in the order given, that has it in any of the subdirs; later channels cannot add
builds of it.  This keeps a mirror or a community channel from shadowing a private one.

Credentials in a channel URL stay in `Channel.base_url` and `RepoRecord.url` (they are
needed to download), while `RepoRecord.channel` and every message are redacted; the
lockfile writer must redact ``url`` too (`lockenv.urls.redact_url`).

Not supported: JLAP incremental updates (they only make updates cheaper, never change
the result).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from lockenv.errors import IndexAccessError, ManifestError, OfflineError
from lockenv.gcpause import gc_paused
from lockenv.http import HttpClient, HttpStatusError
from lockenv.lock.conda.compressed import unbz2, unzstd
from lockenv.lock.conda.matchspec import KNOWN_SUBDIRS
from lockenv.lock.conda.repodata_json import (
    CorruptDocument,
    RawDocument,
    RawEntries,
    decode_record,
    read_document,
)
from lockenv.lock.conda.shards import SHARD_INDEX, ShardedEntries, parse_shard_index
from lockenv.lock.conda.subdir_store import Stores, SubdirStore
from lockenv.urls import file_url_to_path, redact_url

__all__ = [
    "DEFAULT_CHANNEL_ALIAS",
    "REPODATA_VARIANTS",
    "Channel",
    "ChannelClient",
    "ChannelRecords",
    "RepoRecord",
    "RepodataIndex",
    "parse_repodata",
    "split_track_features",
]

#: Where bare channel names (``conda-forge``) live, unless ``LOCKENV_CHANNEL_ALIAS`` or a
#: ``channel_alias`` argument says otherwise.  A conda channel host, not a package index.
DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org/"
CHANNEL_ALIAS_ENV = "LOCKENV_CHANNEL_ALIAS"

#: File names tried for each subdir, best first.
REPODATA_VARIANTS = ("repodata.json.zst", "repodata.json.bz2", "repodata.json")
# A local channel's plain file first: nothing to transfer, so nothing to decompress
# (rattler reads only that file of a local channel).
_LOCAL_VARIANTS = ("repodata.json", "repodata.json.zst", "repodata.json.bz2")
_ACCEPT = {
    "repodata.json.zst": "application/zstd, */*;q=0.1",
    "repodata.json.bz2": "application/x-bzip2, */*;q=0.1",
    "repodata.json": "application/json, */*;q=0.1",
}
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZ2_MAGIC = b"BZh"

# Every subdir conda knows, so that a channel URL written with one at its end
# (``https://host/channel/linux-64``) still means the channel.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_TRACK_FEATURES_SEP = re.compile(r"[\s,]+")
_SAFE_FILENAME = re.compile(r"[^/\\\x00-\x1f]+\.(conda|tar\.bz2)")
_DEPENDENCY_NAME = re.compile(r"[^\s=<>!~\[]+")
# A channel found to have no shard index is not asked again for this long.
_NO_SHARDS_SECONDS = 7 * 86400
# conda's rule: a timestamp below this is in seconds (1e11 s is the year 5138).
_SECONDS_LIMIT = 100_000_000_000

_log = logging.getLogger(__name__)


# -- channels ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    """A conda channel: how the user wrote it and the URL its subdirs live under.

    ``name`` is the text as written, redacted when it is a URL with credentials;
    ``base_url`` has no trailing slash and keeps credentials, if any.
    """

    name: str
    base_url: str

    @classmethod
    def parse(cls, text: str, *, alias: str | None = None, root: Path | None = None) -> Channel:
        """Read a channel as a manifest or command line writes it.

        Bare names (``conda-forge``, ``conda-forge/label/dev``) are joined to the channel
        alias (``alias``, else ``$LOCKENV_CHANNEL_ALIAS``, else `DEFAULT_CHANNEL_ALIAS`);
        ``http://``, ``https://`` and ``file://`` URLs are taken as they are; local paths
        (``./x``, ``../x``, ``/abs``, ``~/x``) become ``file://`` URLs, relative ones
        against ``root`` (default: the current directory).  A trailing subdir
        (``.../linux-64``) and trailing slashes are dropped.
        """
        raw = text.strip()
        if not raw:
            raise ManifestError("empty channel: use a name such as 'conda-forge' or a URL")
        scheme = _SCHEME.match(raw)
        if scheme is not None and not _is_windows_drive(raw):
            kind = scheme[1].lower()
            if kind not in ("http", "https", "file"):
                raise ManifestError(
                    f"channel {redact_url(raw)!r} has an unsupported scheme {kind!r}; "
                    "use https://, http:// or file://"
                )
            url = raw
            name = redact_url(raw)
        elif _is_local_path(raw):
            path = Path(raw).expanduser()
            if not path.is_absolute():
                path = (root if root is not None else Path.cwd()) / path
            url = Path(os.path.abspath(path)).as_uri()
            name = raw
        elif _CHANNEL_NAME.fullmatch(raw.rstrip("/")):
            name = raw.rstrip("/")
            url = _channel_alias(alias).rstrip("/") + "/" + name
        else:
            raise ManifestError(
                f"invalid channel {raw!r}: use a channel name such as 'conda-forge', an "
                "https:// or file:// URL, or a path starting with './'"
            )
        return cls(name=name, base_url=_canonical_url(url))

    def subdir_url(self, subdir: str) -> str:
        """URL of one subdir of the channel (no trailing slash)."""
        return f"{self.base_url}/{subdir}"

    @property
    def redacted_url(self) -> str:
        """``base_url`` without credentials: safe to print or write to a lockfile."""
        return redact_url(self.base_url)


def _channel_alias(alias: str | None) -> str:
    value = alias or os.environ.get(CHANNEL_ALIAS_ENV) or DEFAULT_CHANNEL_ALIAS
    match = _SCHEME.match(value)
    if match is None or match[1].lower() not in ("http", "https", "file"):
        raise ManifestError(
            f"channel alias {redact_url(value)!r} is not an https://, http:// or file:// "
            f"URL; fix the channel_alias setting or ${CHANNEL_ALIAS_ENV}"
        )
    return value


def _is_windows_drive(text: str) -> bool:
    return len(text) >= 3 and text[0].isalpha() and text[1] == ":" and text[2] in "\\/"


def _is_local_path(text: str) -> bool:
    return (
        text in (".", "..", "~")
        or text.startswith(("./", "../", "/", "~/", ".\\", "..\\", "\\\\"))
        or _is_windows_drive(text)
    )


def _canonical_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    while True:
        head, _, last = path.rpartition("/")
        if last not in KNOWN_SUBDIRS or not head:
            break
        path = head.rstrip("/")
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), parts.netloc, path, parts.query, parts.fragment)
    )


# -- records -------------------------------------------------------------------------------


class RepoRecord(NamedTuple):
    """One package file of a channel subdir, as its repodata describes it.

    ``url`` is the absolute download URL (honouring repodata v2 ``info.base_url``) and
    keeps the channel's credentials; ``channel`` is the channel's redacted base URL.
    ``timestamp`` is in milliseconds; ``noarch`` is ``"python"``, ``"generic"`` or None.

    A NamedTuple rather than a frozen dataclass, as immutable: a solve builds one per
    build of every name it reaches, tens of thousands, and a tuple is made three times
    faster than a frozen dataclass sets its seventeen fields.
    """

    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    filename: str
    url: str
    channel: str
    sha256: str | None
    md5: str | None
    size: int | None
    depends: tuple[str, ...]
    constrains: tuple[str, ...]
    track_features: tuple[str, ...]
    timestamp: int | None
    noarch: str | None
    license: str | None


def split_track_features(value: object) -> tuple[str, ...]:
    """conda's ``track_features``: a comma- and/or space-separated string (or a list)."""
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(f for f in _TRACK_FEATURES_SEP.split(value) if f)
    if isinstance(value, list | tuple):
        return tuple(
            f for item in value if isinstance(item, str) for f in split_track_features(item)
        )
    return ()


def _timestamp_ms(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        stamp = int(value)
    except (ValueError, OverflowError):  # NaN, infinity
        return None
    return stamp * 1000 if stamp < _SECONDS_LIMIT else stamp


def _noarch(value: object) -> str | None:
    if value is True:
        return "generic"  # the legacy ``noarch: true`` meant a generic package
    if isinstance(value, str) and value:
        return value
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _str_tuple(value: object) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if type(value) is list:
        try:
            "".join(value)  # a type check of every item at C speed
        except TypeError:
            return None
        return tuple(value)
    return None


class _BadRecord(Exception):
    pass


def _build_record(
    filename: str, raw: object, *, prefix: str, channel: str, subdir: str
) -> RepoRecord:
    if not isinstance(raw, dict):
        raise _BadRecord("not an object (or not valid JSON)")
    name, version, build = raw.get("name"), raw.get("version"), raw.get("build")
    if not (isinstance(name, str) and isinstance(version, str) and isinstance(build, str)):
        raise _BadRecord("name, version or build missing")
    if not _SAFE_FILENAME.fullmatch(filename) or filename.startswith("."):
        raise _BadRecord("unsafe file name")
    build_number = raw.get("build_number", 0)
    if isinstance(build_number, bool) or not isinstance(build_number, int):
        raise _BadRecord(f"build_number {build_number!r}")
    depends = _str_tuple(raw.get("depends"))
    constrains = _str_tuple(raw.get("constrains"))
    if depends is None or constrains is None:
        raise _BadRecord("depends or constrains is not a list of strings")
    size = raw.get("size")
    record_subdir = raw.get("subdir")
    sha256 = _str_or_none(raw.get("sha256"))
    md5 = _str_or_none(raw.get("md5"))
    return RepoRecord(
        name=name,
        version=version,
        build=build,
        build_number=build_number,
        subdir=record_subdir if isinstance(record_subdir, str) and record_subdir else subdir,
        filename=filename,
        url=prefix + filename,
        channel=channel,
        sha256=sha256.lower() if sha256 else None,
        md5=md5.lower() if md5 else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        depends=depends,
        constrains=constrains,
        track_features=split_track_features(raw.get("track_features")),
        timestamp=_timestamp_ms(raw.get("timestamp")),
        noarch=_noarch(raw.get("noarch")),
        license=_str_or_none(raw.get("license")),
    )


# -- one subdir ----------------------------------------------------------------------------


#: One name's entries: ``(filename, record)``, the record as parsed from JSON or msgpack
#: (a dict when valid; `RepodataIndex.get` skips anything else).
Entries = list[tuple[str, Any]]


class EntrySource(Protocol):
    """Where a subdir's raw repodata entries come from, one name at a time."""

    def names(self) -> Collection[str]: ...

    def __contains__(self, name: object) -> bool: ...

    def __len__(self) -> int: ...

    def entries(self, name: str) -> Entries: ...


class _InMemory:
    """A repodata document held in memory, grouped by name, records parsed when asked."""

    __slots__ = ("by_name", "records")

    def __init__(self, by_name: Mapping[str, RawEntries], records: int) -> None:
        self.by_name = by_name
        self.records = records

    def names(self) -> Collection[str]:
        return self.by_name.keys()

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def __len__(self) -> int:
        return self.records

    def entries(self, name: str) -> Entries:
        found = self.by_name.get(name)
        if not found:
            return []
        return [(filename, decode_record(raw)) for filename, raw in found.items()]


class RepodataIndex:
    """The packages of one channel subdir, grouped by name; records are built on demand.

    ``source`` gives a name's raw entries: parsed in memory, a by-name store on disk or
    the channel's shards.  `get` converts them into `RepoRecord` objects once and keeps
    them; entries that are not valid records (missing fields, unsafe file names) are
    skipped.  Safe to share between threads.
    """

    __slots__ = ("_built", "_lock", "_prefix", "channel", "source", "subdir", "url")

    def __init__(
        self,
        *,
        channel: Channel,
        subdir: str,
        url: str,
        source: EntrySource,
        download_prefix: str,
    ) -> None:
        self.channel = channel
        self.subdir = subdir
        self.url = url  # the repodata file read, redacted
        self.source = source
        self._prefix = download_prefix
        self._built: dict[str, tuple[RepoRecord, ...]] = {}
        self._lock = threading.Lock()

    @classmethod
    def empty(cls, channel: Channel, subdir: str) -> RepodataIndex:
        """The index of a subdir the channel does not have."""
        url = redact_url(channel.subdir_url(subdir))
        return cls(
            channel=channel, subdir=subdir, url=url, source=_InMemory({}, 0), download_prefix=""
        )

    def names(self) -> Collection[str]:
        """Every package name of the subdir (no record is built)."""
        return self.source.names()

    def __contains__(self, name: object) -> bool:
        return name in self.source

    def __len__(self) -> int:
        """Number of package files (before invalid entries are dropped); for a sharded
        subdir, the number of names."""
        return len(self.source)

    def prefetch(self, names: Iterable[str]) -> None:
        """Fetch what ``names`` need from the network at once (shards; else nothing)."""
        if isinstance(self.source, ShardedEntries):
            self.source.prefetch(names)

    def get(self, name: str) -> tuple[RepoRecord, ...]:
        """The records of ``name``, sorted by file name; ``()`` when the subdir lacks it."""
        built = self._built.get(name)
        if built is not None:
            return built
        entries = self.source.entries(name)
        if not entries:
            return ()
        channel = self.channel.redacted_url
        records = []
        for filename, raw in sorted(entries, key=lambda item: item[0]):
            try:
                record = _build_record(
                    filename, raw, prefix=self._prefix, channel=channel, subdir=self.subdir
                )
            except _BadRecord as exc:
                _log.debug("%s: skipping %r: %s", self.url, filename, exc)
                continue
            if record.name != name:
                # Grouped by the name its file name carries (or a shard's name): a record
                # that calls itself something else is not what the solve asked for.
                _log.debug("%s: skipping %r: its name is %r", self.url, filename, record.name)
                continue
            records.append(record)
        result = tuple(records)
        with self._lock:
            return self._built.setdefault(name, result)

    def all(self) -> tuple[RepoRecord, ...]:
        """Every record of the subdir, by name then file name (builds them all: slow)."""
        with gc_paused():
            return tuple(record for name in sorted(self.names()) for record in self.get(name))


def parse_repodata(
    data: bytes, *, channel: Channel, subdir: str, url: str | None = None
) -> RepodataIndex:
    """Index a subdir's repodata (plain JSON, or zstd / bzip2 compressed) by package name.

    ``url`` is where it was read (with credentials, default the subdir's
    ``repodata.json``): a relative ``info.base_url`` is resolved against it.  Raises
    `IndexAccessError` when the bytes are not a repodata document.
    """

    source = url if url is not None else f"{channel.subdir_url(subdir)}/repodata.json"
    shown = redact_url(source)
    with _one_document_at_a_time, gc_paused():
        document = _group_by_name(data, shown)
    return RepodataIndex(
        channel=channel,
        subdir=subdir,
        url=shown,
        source=_InMemory(document.by_name, document.records),
        download_prefix=_download_prefix(document.base_url, source, channel, subdir, shown),
    )


# While a document is decompressed, grouped and stored, its whole text and an object per
# entry are alive (about 1.6 times the text); the subdirs of a lock are fetched
# concurrently, and a platform's subdir and noarch grouped at once would add up.  They
# hold the GIL for most of it anyway, so one at a time costs little time.
_one_document_at_a_time = threading.Lock()


def _group_by_name(data: bytes, shown: str) -> RawDocument:
    """A repodata document's entries by package name, records left as JSON text."""
    try:
        return read_document(_decompress(data))
    except CorruptDocument as exc:
        raise _corrupt(shown, str(exc)) from None
    except (ValueError, OSError, EOFError) as exc:
        raise _corrupt(shown, f"{type(exc).__name__}: {exc}") from None


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _download_prefix(
    base_url: object, source: str, channel: Channel, subdir: str, shown: str
) -> str:
    if base_url is None or base_url == "":
        return f"{channel.subdir_url(subdir)}/"
    if not isinstance(base_url, str):
        raise _corrupt(shown, f"info.base_url is {base_url!r}, not a URL")
    # CEP 15: base_url may be relative, to the repodata file's own location.
    joined = urllib.parse.urljoin(source, base_url)
    scheme = urllib.parse.urlsplit(joined).scheme.lower()
    allowed = ("file",) if channel.base_url.startswith("file:") else ()
    if scheme not in ("http", "https", *allowed):
        raise _corrupt(shown, f"info.base_url {redact_url(base_url)!r} is not an http(s) URL")
    return joined if joined.endswith("/") else joined + "/"


def _decompress(data: bytes) -> bytes:
    # Sniffed rather than taken from the file name: a server may send a .zst already
    # decoded (Content-Encoding: zstd) and a mirror may store what it likes.
    if data[:4] == _ZSTD_MAGIC:
        return unzstd(data)
    if data[:3] == _BZ2_MAGIC:
        return unbz2(data)
    return data


def _corrupt(shown: str, reason: str) -> IndexAccessError:
    return IndexAccessError(
        f"{shown!r}: the repodata is corrupt ({reason}); retry later, or tell the channel's "
        "maintainers"
    )


# -- several channels and subdirs ------------------------------------------------------------


class ChannelRecords(Mapping[str, tuple[RepoRecord, ...]]):
    """Records by package name over several channels' subdirs, with strict priority.

    ``indexes`` holds, for each channel in priority order, its subdir indexes.  A name
    maps to the records of the first channel that has it (all of that channel's subdirs
    together); with ``strict=False`` every channel's records are merged.  Records are
    built only for the names looked up.
    """

    def __init__(self, indexes: Sequence[Sequence[RepodataIndex]], *, strict: bool = True) -> None:
        self._indexes = [list(group) for group in indexes]
        self._strict = strict
        self._memo: dict[str, tuple[RepoRecord, ...]] = {}
        self._names: frozenset[str] | None = None

    def __getitem__(self, name: str) -> tuple[RepoRecord, ...]:
        found = self._memo.get(name)
        if found is None:
            found = ()
            for group in self._indexes:
                records = tuple(r for index in group for r in index.get(name))
                if records:
                    found = records if not found else found + records
                    if self._strict:
                        break
            self._memo[name] = found  # a race only builds the same tuple twice
        if not found:
            raise KeyError(name)
        return found

    def prefetch(self, names: Iterable[str]) -> None:
        """Fetch every shard ``names`` can reach through dependencies, concurrently.

        Sharded subdirs fetch one name's records at a time: without this a solve would
        wait for each name it meets.  Walks breadth-first from ``names`` through the
        ``depends`` of every record found, as conda and rattler do; a no-op when no
        subdir is sharded.
        """
        sharded = [
            index
            for group in self._indexes
            for index in group
            if isinstance(index.source, ShardedEntries)
        ]
        if not sharded:
            return
        seen: set[str] = set()
        frontier = set(names)
        with gc_paused():
            self._walk(sharded, seen, frontier)

    def _walk(self, sharded: list[RepodataIndex], seen: set[str], frontier: set[str]) -> None:
        while frontier:
            seen |= frontier
            for index in sharded:
                index.prefetch(sorted(frontier))
            found: set[str] = set()
            for name in frontier:
                for record in self.get(name, ()):
                    found.update(_dependency_name(d) for d in record.depends)
            frontier = found - seen

    def _all_names(self) -> frozenset[str]:
        if self._names is None:
            self._names = frozenset(
                name for group in self._indexes for index in group for name in index.names()
            )
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._all_names()))

    def __len__(self) -> int:
        return len(self._all_names())

    def channel_of(self, name: str) -> Channel | None:
        """The channel that serves ``name`` (the first one that has it), if any."""
        for group in self._indexes:
            if any(name in index for index in group):
                return group[0].channel if group else None
        return None


def _store_index(store: SubdirStore, *, channel: Channel, subdir: str, url: str) -> RepodataIndex:
    shown = redact_url(url)
    return RepodataIndex(
        channel=channel,
        subdir=subdir,
        url=shown,
        source=store,
        download_prefix=_download_prefix(store.base_url, url, channel, subdir, shown),
    )


def _local_file_key(url: str) -> str | None:
    """The store key of a ``file://`` repodata: a hash of the file's identity.

    Path, size, modification and change times, inode and device: what tells a rewritten
    file from an unchanged one without reading it, so an unchanged local channel (up
    to hundreds of megabytes of JSON) costs a stat.  None for other URLs and for a file
    that cannot be looked at (then it is read, and keyed by its bytes).
    """
    if not url.startswith("file:"):
        return None
    try:
        path = file_url_to_path(url)
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    identity = f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}"
    return hashlib.sha256(b"local file\0" + os.fsencode(identity)).hexdigest()


def _variants_of(channel: Channel) -> tuple[str, ...]:
    return _LOCAL_VARIANTS if channel.base_url.startswith("file:") else REPODATA_VARIANTS


def _dependency_name(spec: str) -> str:
    """The package name a dependency string names (enough to find its shard)."""
    name = _DEPENDENCY_NAME.match(spec.rpartition("::")[2].strip())
    return name.group(0).lower() if name else ""


class ChannelClient:
    """Reads channels' repodata through a shared `HttpClient`; each subdir once.

    Thread-safe: concurrent requests for the same subdir wait for one download.
    """

    def __init__(self, http: HttpClient, *, workers: int = 8) -> None:
        self._http = http
        self._workers = max(1, workers)
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str], Future[RepodataIndex]] = {}
        # Per channel base URL: the variants still worth trying, the one that worked first.
        self._variants: dict[str, tuple[str, ...]] = {}
        self._no_shards: set[str] = set()  # channel base URLs without a shard index
        cache_dir = getattr(http, "cache_dir", None)
        self._stores = Stores(cache_dir) if cache_dir is not None else None

    def index(self, channel: Channel, subdir: str) -> RepodataIndex:
        """The lazy index of one subdir (empty when the channel lacks a non-noarch subdir).

        Raises `IndexAccessError` when ``noarch`` is missing (the URL is not a conda
        channel), on HTTP errors other than a missing file, and on corrupt repodata.
        """
        key = (channel.base_url, subdir)
        with self._lock:
            future = self._indexes.get(key)
            owner = future is None
            if future is None:
                future = self._indexes[key] = Future()
        if owner:
            try:
                future.set_result(self._load(channel, subdir))
            except BaseException as exc:
                with self._lock:
                    del self._indexes[key]  # let a later call try again
                future.set_exception(exc)
        return future.result()

    def records(self, channel: Channel, subdir: str) -> tuple[RepoRecord, ...]:
        """Every record of one subdir; ``()`` for a subdir the channel does not have."""
        return self.index(channel, subdir).all()

    def prefetch(self, channels: Sequence[Channel], subdirs: Sequence[str]) -> None:
        """Download and index every channel and subdir (plus ``noarch``) concurrently."""
        self._indexes_for(channels, subdirs)

    def records_by_name(
        self, channels: Sequence[Channel], subdirs: Sequence[str], *, strict: bool = True
    ) -> ChannelRecords:
        """Records by name over ``channels`` (priority order) and ``subdirs`` + ``noarch``.

        Fetches every channel and subdir concurrently; the mapping builds records only for
        the names looked up (see `ChannelRecords` for the channel priority).
        """
        return ChannelRecords(self._indexes_for(channels, subdirs), strict=strict)

    def _indexes_for(
        self, channels: Sequence[Channel], subdirs: Sequence[str]
    ) -> list[list[RepodataIndex]]:
        wanted = list(dict.fromkeys([*subdirs, "noarch"]))
        jobs = [(channel, subdir) for channel in channels for subdir in wanted]
        if len(jobs) <= 1 or self._workers == 1:
            results = [self.index(channel, subdir) for channel, subdir in jobs]
        else:
            with ThreadPoolExecutor(
                max_workers=min(self._workers, len(jobs)), thread_name_prefix="repodata"
            ) as pool:
                futures = [pool.submit(self.index, channel, subdir) for channel, subdir in jobs]
                # In order, so the error reported is the same from run to run.
                results = [future.result() for future in futures]
        return [results[i * len(wanted) : (i + 1) * len(wanted)] for i in range(len(channels))]

    def _load(self, channel: Channel, subdir: str) -> RepodataIndex:
        sharded = self._load_shards(channel, subdir)
        if sharded is not None:
            return sharded
        with self._lock:
            variants = self._variants.get(channel.base_url) or _variants_of(channel)
        rejected: list[str] = []
        offline: OfflineError | None = None
        last_error: HttpStatusError | None = None
        for position, variant in enumerate(variants):
            url = f"{channel.subdir_url(subdir)}/{variant}"
            local_key = _local_file_key(url) if self._stores is not None else None
            if local_key is not None and self._stores is not None:
                store = self._stores.open(local_key)
                if store is not None:  # an unchanged local file: not even read
                    if rejected:
                        self._remember(channel, variant, rejected)
                    return _store_index(store, channel=channel, subdir=subdir, url=url)
            try:
                page = self._http.get_page(url, accept=_ACCEPT[variant])
            except OfflineError as exc:
                offline = offline or exc  # maybe another variant is in the cache
                continue
            except HttpStatusError as exc:
                if exc.status is None or not 400 <= exc.status < 500:
                    raise
                last_error = exc
                if position + 1 < len(variants):
                    rejected.append(variant)
                    continue
                if exc.status in (404, 410) and offline is None:
                    break
                raise
            if rejected:
                self._remember(channel, variant, rejected)
            if local_key is not None and _local_file_key(url) != local_key:
                local_key = None  # changed while read: keyed by what was read
            return self._index(
                page.content, channel=channel, subdir=subdir, url=url, digest=local_key
            )
        if offline is not None:
            raise offline
        if subdir == "noarch":
            shown = redact_url(channel.subdir_url(subdir))
            status = last_error.status if last_error is not None else None
            raise IndexAccessError(
                f"{channel.name!r} is not a conda channel: {shown}/repodata.json (and .zst, "
                f".bz2) gave HTTP {status}; check the channel name or URL (and "
                f"${CHANNEL_ALIAS_ENV} for a bare name)"
            )
        _log.debug("%s has no %s subdir", channel.redacted_url, subdir)
        return RepodataIndex.empty(channel, subdir)

    def _index(
        self, data: bytes, *, channel: Channel, subdir: str, url: str, digest: str | None = None
    ) -> RepodataIndex:
        """The index of fetched repodata bytes: from the by-name store made the first time
        these bytes were seen, else read (and the store made for next time).

        The store is keyed by ``digest`` when given (a local file's identity), else by
        the bytes' sha256.
        """
        if self._stores is None:
            return parse_repodata(data, channel=channel, subdir=subdir, url=url)
        shown = redact_url(url)
        digest = digest or hashlib.sha256(data).hexdigest()
        store = self._stores.open(digest)
        if store is None:
            with _one_document_at_a_time, gc_paused():
                document = _group_by_name(data, shown)
                store = self._stores.publish(shown, digest, document)
            if store is None:  # the cache is not writable: keep the document
                prefix = _download_prefix(document.base_url, url, channel, subdir, shown)
                return RepodataIndex(
                    channel=channel,
                    subdir=subdir,
                    url=shown,
                    source=_InMemory(document.by_name, document.records),
                    download_prefix=prefix,
                )
            del document  # the store holds it now: free the decompressed document
        return _store_index(store, channel=channel, subdir=subdir, url=url)

    def _load_shards(self, channel: Channel, subdir: str) -> RepodataIndex | None:
        """The subdir through its CEP 16 shard index; None when the channel has none."""
        if not self._may_have_shards(channel):
            return None
        url = f"{channel.subdir_url(subdir)}/{SHARD_INDEX}"
        shown = redact_url(url)
        try:
            page = self._http.get_page(url, accept="application/octet-stream, */*;q=0.1")
        except OfflineError:
            return None  # maybe a repodata.json is in the cache
        except HttpStatusError as exc:
            # Only "not there" is remembered; any other failure of this optional file
            # falls back to repodata.json, which reports what is wrong if it fails too.
            if exc.status in (404, 410):
                self._found_no_shards(channel)
            return None
        index = parse_shard_index(page.content, url=url, shown=shown)
        cache_dir = getattr(self._http, "cache_dir", None)
        return RepodataIndex(
            channel=channel,
            subdir=subdir,
            url=shown,
            source=ShardedEntries(index, http=self._http, cache_dir=cache_dir, shown=shown),
            download_prefix=_download_prefix(index.base_url, url, channel, subdir, shown),
        )

    def _may_have_shards(self, channel: Channel) -> bool:
        if channel.base_url in self._no_shards:
            return False
        marker = self._no_shards_marker(channel)
        if marker is not None:
            with contextlib.suppress(OSError):
                if time.time() - marker.stat().st_mtime < _NO_SHARDS_SECONDS:
                    self._no_shards.add(channel.base_url)
                    return False
        return True

    def _found_no_shards(self, channel: Channel) -> None:
        with self._lock:
            self._no_shards.add(channel.base_url)
        marker = self._no_shards_marker(channel)
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(channel.redacted_url)

    def _no_shards_marker(self, channel: Channel) -> Path | None:
        # Only remote channels: a local directory is cheap to look at every time.
        if self._stores is None or channel.base_url.startswith("file:"):
            return None
        key = hashlib.sha256(channel.redacted_url.encode()).hexdigest()
        return self._stores.root / "no-shards" / key

    def _remember(self, channel: Channel, worked: str, rejected: list[str]) -> None:
        with self._lock:
            current = self._variants.get(channel.base_url) or _variants_of(channel)
            self._variants[channel.base_url] = (
                worked,
                *(v for v in current if v != worked and v not in rejected),
            )
