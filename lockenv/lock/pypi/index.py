"""The files of a project, from simple-API indexes (PEP 691 JSON, PEP 503 HTML) and find-links.

The first index that knows a project is the only one used for it (no merging across
indexes), so a name registered on a later index can never shadow a private one:
dependency-confusion safe, like uv's ``first-index`` strategy.  Find-links files are
added to whatever the index gave.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from packaging.tags import InvalidTag, Tag, parse_tag
from packaging.utils import (
    BuildTag,
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version

from lockenv.errors import IndexAccessError
from lockenv.http import HttpClient, HttpStatusError
from lockenv.limits import MAX_PAGE, read_capped
from lockenv.urls import file_url_to_path, redact_url

__all__ = [
    "SIMPLE_ACCEPT",
    "DistFile",
    "Link",
    "PackageIndex",
    "dist_file_from_link",
    "local_file_sha256",
    "parse_html_links",
    "parse_json_links",
    "parse_simple_page",
]

SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
_JSON_TYPES = ("application/vnd.pypi.simple.v1+json", "application/json")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DistFile:
    """One downloadable file of a project (a wheel or an sdist) as an index lists it."""

    name: NormalizedName
    version: Version
    filename: str
    url: str  # absolute URL used to fetch (may carry the index URL's credentials)
    index_url: str  # the index (redacted) or find-links location this came from
    sha256: str | None
    size: int | None
    requires_python: str | None
    yanked: str | None  # None = not yanked, else the reason ("" if none given)
    upload_time: datetime | None
    core_metadata: str | bool | None  # PEP 658/714: None unknown, False absent, True/"sha256=…"
    is_wheel: bool
    tags: frozenset[Tag]  # wheel tags (empty for sdists)
    build_tag: tuple[int, str] | tuple[()]

    @property
    def metadata_sha256(self) -> str | None:
        """The advertised sha256 of the PEP 658 ``.metadata`` file, if any."""
        if isinstance(self.core_metadata, str) and self.core_metadata.startswith("sha256="):
            return self.core_metadata.removeprefix("sha256=")
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A raw entry of a simple-API page, before its filename is parsed."""

    filename: str
    url: str  # absolute, fragment removed
    sha256: str | None = None
    size: int | None = None
    requires_python: str | None = None
    yanked: str | None = None
    upload_time: datetime | None = None
    core_metadata: str | bool | None = None


# -- page parsing --------------------------------------------------------------------------


def parse_simple_page(content: bytes, content_type: str, page_url: str) -> list[Link]:
    """Parse a project page (PEP 691 JSON or PEP 503 HTML, chosen by content type)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or (not media and content.lstrip()[:1] == b"{"):
        return parse_json_links(content, page_url)
    return parse_html_links(content, page_url)


def parse_json_links(content: bytes, page_url: str) -> list[Link]:
    """Parse a PEP 691 JSON project page; relative file URLs resolve against ``page_url``."""
    shown = redact_url(page_url)
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise IndexAccessError(f"{shown!r}: not a valid JSON simple page: {exc}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise IndexAccessError(f"{shown!r}: JSON simple page has no 'files' list")
    links: list[Link] = []
    for entry in files:
        if not isinstance(entry, dict):
            continue
        filename, href = entry.get("filename"), entry.get("url")
        if not isinstance(filename, str) or not isinstance(href, str):
            continue
        # Most indexes give absolute URLs: urljoin (slow, per file) only when needed.
        absolute = href.startswith(("https://", "http://", "file://"))
        url, fragment_hash = _split_fragment(
            href if absolute else urllib.parse.urljoin(page_url, href)
        )
        hashes = entry.get("hashes")
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        core = entry.get("core-metadata", entry.get("dist-info-metadata"))
        rp = entry.get("requires-python")
        size = entry.get("size")
        links.append(
            Link(
                filename=filename,
                url=url,
                sha256=_clean_sha256(sha) or fragment_hash,
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
                requires_python=rp.strip() or None if isinstance(rp, str) else None,
                yanked=_json_yanked(entry.get("yanked")),
                upload_time=_parse_time(entry.get("upload-time")),
                core_metadata=_json_core_metadata(core),
            )
        )
    return links


def parse_html_links(content: bytes, page_url: str) -> list[Link]:
    """Parse a PEP 503 HTML page (anchors; ``<base href>`` honoured)."""
    parser = _AnchorParser()
    parser.feed(content.decode("utf-8", errors="replace"))
    parser.close()
    base = urllib.parse.urljoin(page_url, parser.base) if parser.base else page_url
    links: list[Link] = []
    for attrs in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, sha = _split_fragment(urllib.parse.urljoin(base, href.strip()))
        path = urllib.parse.urlsplit(url).path
        filename = urllib.parse.unquote(path.rsplit("/", 1)[-1])
        if not filename:
            continue
        rp = attrs.get("data-requires-python")
        core: str | bool | None = None
        for key in ("data-core-metadata", "data-dist-info-metadata"):
            if key in attrs:
                core = _html_core_metadata(attrs[key])
                break
        yanked = attrs.get("data-yanked", None) if "data-yanked" in attrs else None
        links.append(
            Link(
                filename=filename,
                url=url,
                sha256=sha,
                requires_python=html.unescape(rp).strip() or None if rp else None,
                yanked=None if "data-yanked" not in attrs else (yanked or ""),
                core_metadata=core,
            )
        )
    return links


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))
        elif tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")


def _split_fragment(url: str) -> tuple[str, str | None]:
    base, _, fragment = url.partition("#")
    sha = None
    for part in fragment.split("&"):
        algo, _, value = part.partition("=")
        if algo.lower() == "sha256":
            sha = _clean_sha256(value)
    return base, sha


def _clean_sha256(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if _SHA256.fullmatch(value) else None


def _json_yanked(value: object) -> str | None:
    if value is True:
        return ""
    if isinstance(value, str):
        return value
    return None


def _json_core_metadata(value: object) -> str | bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        sha = _clean_sha256(value.get("sha256"))
        return f"sha256={sha}" if sha else True
    return None


def _html_core_metadata(value: str | None) -> str | bool | None:
    value = (value or "").strip()
    if value.lower() in ("", "true"):
        return True
    if value.lower() == "false":
        return False
    algo, sep, digest = value.partition("=")
    if not sep:
        return None
    sha = _clean_sha256(digest) if algo.lower() == "sha256" else None
    return f"sha256={sha}" if sha else True


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_WHEEL_NAME = re.compile(r"^[\w._]+\Z", re.UNICODE)
_BUILD_TAG = re.compile(r"(\d+)(.*)", re.ASCII)


@functools.lru_cache(maxsize=8192)
def _tag_set(text: str) -> frozenset[Tag]:
    return parse_tag(text)


@functools.lru_cache(maxsize=8192)
def _version(text: str) -> Version:
    return Version(text)


def _parse_wheel_filename(
    filename: str,
) -> tuple[NormalizedName, Version, BuildTag, frozenset[Tag]]:
    """`packaging.utils.parse_wheel_filename`'s rules, with the costly parts memoised.

    A project page lists the same tag sets and versions over and over (numpy: 4,000
    files, a few dozen tag sets), and a lock parses every file of every page it reads.
    """
    stem = filename[:-4]
    dashes = stem.count("-")
    if not filename.endswith(".whl") or dashes not in (4, 5):
        raise InvalidWheelFilename(f"invalid wheel filename: {filename!r}")
    parts = stem.split("-", dashes - 2)
    if "__" in parts[0] or _WHEEL_NAME.match(parts[0]) is None:
        raise InvalidWheelFilename(f"invalid project name: {filename!r}")
    build: BuildTag = ()
    if dashes == 5:
        match = _BUILD_TAG.match(parts[2])
        if match is None:
            raise InvalidWheelFilename(f"invalid build number: {filename!r}")
        build = (int(match.group(1)), match.group(2))
    try:
        return canonicalize_name(parts[0]), _version(parts[1]), build, _tag_set(parts[-1])
    except (InvalidVersion, InvalidTag) as exc:
        raise InvalidWheelFilename(f"invalid wheel filename: {filename!r}") from exc


def dist_file_from_link(link: Link, *, index_url: str) -> DistFile | None:
    """Parse a link's filename into a DistFile; None for files lockenv cannot use."""
    filename = link.filename
    try:
        if filename.endswith(".whl"):
            name, version, build, tags = _parse_wheel_filename(filename)
            is_wheel = True
        elif filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            build, tags, is_wheel = (), frozenset(), False
        else:
            return None  # .egg, .exe, .tar.bz2, ...: not installable without pip
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return DistFile(
        name=name,
        version=version,
        filename=filename,
        url=link.url,
        index_url=index_url,
        sha256=link.sha256,
        size=link.size,
        requires_python=link.requires_python,
        yanked=link.yanked,
        upload_time=link.upload_time,
        core_metadata=link.core_metadata,
        is_wheel=is_wheel,
        tags=frozenset(tags),
        build_tag=build,
    )


# -- the index client ----------------------------------------------------------------------


class PackageIndex:
    """Lists the files of projects across indexes and find-links; memoised, thread-safe."""

    def __init__(
        self,
        http: HttpClient,
        index_urls: Sequence[str],
        find_links: Sequence[str] = (),
        *,
        exclude_newer: datetime | None = None,
        workers: int = 16,
    ) -> None:
        self.http = http
        self.index_urls = tuple(index_urls)
        self.find_links = tuple(find_links)
        if exclude_newer is not None and exclude_newer.tzinfo is None:
            exclude_newer = exclude_newer.replace(tzinfo=UTC)
        self.exclude_newer = exclude_newer
        self._workers = workers
        self._lock = threading.Lock()
        self._futures: dict[NormalizedName, Future[tuple[DistFile, ...]]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._find_links_cache: dict[str, Future[tuple[DistFile, ...]]] = {}
        self._local_dirs: dict[Path, dict[NormalizedName, str]] = {}

    def __enter__(self) -> PackageIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the prefetch threads (pending prefetches are abandoned)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def files(self, name: str) -> tuple[DistFile, ...]:
        """All usable files of project ``name``; ``()`` when no index or find-links has it.

        Raises IndexAccessError when an index cannot be read (other than 404: unknown).
        """
        key = canonicalize_name(name)
        future, owner = self._future_for(key)
        if owner:
            self._run(key, future)
        return future.result()

    def prefetch(self, names: Iterable[str]) -> None:
        """Start fetching the pages of ``names`` in the background; never blocks or raises."""
        for name in names:
            key = canonicalize_name(name)
            future, owner = self._future_for(key)
            if owner:
                with self._lock:
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(
                            max_workers=self._workers, thread_name_prefix="lockenv-index"
                        )
                    executor = self._executor
                executor.submit(self._run, key, future)

    def _future_for(self, key: NormalizedName) -> tuple[Future[tuple[DistFile, ...]], bool]:
        with self._lock:
            future = self._futures.get(key)
            if future is not None:
                return future, False
            future = Future()
            self._futures[key] = future
            return future, True

    def _run(self, key: NormalizedName, future: Future[tuple[DistFile, ...]]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(self._collect(key))
        except BaseException as exc:
            future.set_exception(exc)

    def _collect(self, name: NormalizedName) -> tuple[DistFile, ...]:
        found: list[DistFile] = []
        for index_url in self.index_urls:
            files = self._from_index(index_url, name)
            if files is not None:
                found.extend(files)
                break
        for location in self.find_links:
            found.extend(f for f in self._from_find_links(location) if f.name == name)
        seen: set[str] = set()
        result: list[DistFile] = []
        for f in found:
            if f.filename in seen or not self._allowed(f):
                continue
            seen.add(f.filename)
            if f.sha256 is None and f.url.startswith("file:"):
                # Local files are cheap to hash, and only this project's files get here.
                f = dataclasses.replace(f, sha256=local_file_sha256(file_url_to_path(f.url)))
            result.append(f)
        return tuple(result)

    def _allowed(self, f: DistFile) -> bool:
        if self.exclude_newer is None:
            return True
        return f.upload_time is not None and f.upload_time <= self.exclude_newer

    # -- one index -----------------------------------------------------------------------

    def _from_index(self, index_url: str, name: NormalizedName) -> list[DistFile] | None:
        """Files of ``name`` on one index, or None when the index does not know it."""
        shown = redact_url(index_url)
        if index_url.startswith("file:"):
            links = self._local_index_links(index_url, name)
            if links is None:
                return None
        else:
            page_url = index_url.rstrip("/") + f"/{name}/"
            try:
                page = self.http.get_page(page_url, accept=SIMPLE_ACCEPT, most=MAX_PAGE)
            except HttpStatusError as exc:
                if exc.status in (404, 410):
                    return None
                raise
            links = parse_simple_page(page.content, page.content_type, page.url)
            links = [_with_credentials(link, index_url) for link in links]
        return _to_files(links, shown, name)

    def _local_index_links(self, index_url: str, name: NormalizedName) -> list[Link] | None:
        root = file_url_to_path(index_url)
        project = root / name
        if not project.is_dir():
            project = self._find_local_project_dir(root, name) or project
        for filename, content_type in (
            ("index.json", "application/vnd.pypi.simple.v1+json"),
            ("index.html", "text/html"),
        ):
            page = project / filename
            if page.is_file():
                try:
                    content = read_capped(page, MAX_PAGE, "index page", regular_only=True)
                except OSError as exc:
                    raise IndexAccessError(f"{str(page)!r}: cannot read: {exc}") from None
                return parse_simple_page(content, content_type, page.as_uri())
        if project.is_dir():
            return list(_local_dir_links(project))
        return None

    def _find_local_project_dir(self, root: Path, name: NormalizedName) -> Path | None:
        with self._lock:
            table = self._local_dirs.get(root)
        if table is None:
            table = {}
            try:
                for entry in os.scandir(root):
                    if entry.is_dir():
                        table.setdefault(canonicalize_name(entry.name), entry.name)
            except OSError:
                pass
            with self._lock:
                self._local_dirs[root] = table
        found = table.get(name)
        return root / found if found else None

    # -- find-links ----------------------------------------------------------------------

    def _from_find_links(self, location: str) -> tuple[DistFile, ...]:
        with self._lock:
            future = self._find_links_cache.get(location)
            owner = future is None
            if future is None:
                future = Future()
                self._find_links_cache[location] = future
        if owner:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._read_find_links(location))
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def _read_find_links(self, location: str) -> tuple[DistFile, ...]:
        shown = redact_url(location)
        if "://" not in location:
            path = Path(location)
        elif location.startswith("file:"):
            path = file_url_to_path(location)
        else:
            page = self.http.get_page(location, accept="text/html", most=MAX_PAGE)
            links = parse_simple_page(page.content, page.content_type, page.url)
            links = [_with_credentials(link, location) for link in links]
            return tuple(_to_files(links, shown, None))
        if path.is_dir():
            return tuple(_to_files(_local_dir_links(path), shown, None))
        if path.is_file():
            page_content = path.read_bytes()
            links = parse_simple_page(page_content, "text/html", path.as_uri())
            return tuple(_to_files(links, shown, None))
        raise IndexAccessError(f"find-links location {shown!r} does not exist; fix or remove it")


def _to_files(links: Iterable[Link], index_url: str, name: str | None) -> list[DistFile]:
    files = []
    for link in links:
        f = dist_file_from_link(link, index_url=index_url)
        if f is not None and (name is None or f.name == name):
            files.append(f)
    return files


def _local_dir_links(directory: Path) -> Iterator[Link]:
    """Links for the files of a plain directory (sizes from stat; hashed later, if chosen)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise IndexAccessError(f"{str(directory)!r}: cannot list: {exc}") from None
    for entry in entries:
        if not entry.is_file() or entry.name.endswith(".metadata"):
            continue
        yield Link(filename=entry.name, url=Path(entry.path).as_uri(), size=entry.stat().st_size)


_HASH_MEMO: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def local_file_sha256(path: Path) -> str | None:
    """sha256 of a local file, memoised by (path, size, mtime); None if it is unreadable."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_MEMO:
            return _HASH_MEMO[key]
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 16):
                hasher.update(chunk)
    except OSError:
        return None
    digest = hasher.hexdigest()
    with _HASH_LOCK:
        _HASH_MEMO[key] = digest
    return digest


def _with_credentials(link: Link, source_url: str) -> Link:
    """Give a file URL on the same host as its index the index URL's user info."""
    source = urllib.parse.urlsplit(source_url)
    if "@" not in source.netloc:
        return link
    target = urllib.parse.urlsplit(link.url)
    if "@" in target.netloc or target.netloc != source.netloc.rpartition("@")[2]:
        return link
    netloc = source.netloc.rpartition("@")[0] + "@" + target.netloc
    return dataclasses.replace(link, url=urllib.parse.urlunsplit(target._replace(netloc=netloc)))
