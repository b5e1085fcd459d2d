"""A ``repodata.json`` document read without parsing its records, grouped by name.

A channel subdir's repodata holds up to hundreds of thousands of records (conda-forge's
``linux-64``: over 800,000) and a solve reads a few hundred names.  Parsing the whole
document into Python objects costs seconds and several times the document in memory, so
`read_document` decodes only its frame: msgspec walks each record in C and keeps its
JSON text (a `msgspec.Raw`, a view of the document) instead of building a dict.  Entries
are grouped by the package name their *file name* carries, as rattler does: a conda file
is named ``<name>-<version>-<build>.<ext>`` and neither a version nor a build string
holds a ``-``, so the name is what comes before the last two.  A record's own ``name``
is read, and checked against that, only when a solve asks for the name
(`lockenv.lock.conda.repodata.RepodataIndex.get`), together with every other field.

So a damaged *record* (not an object, a name that is not a string, invalid UTF-8 in a
value) is found and skipped when its name is reached, like any other invalid record;
a document that is not JSON, or whose ``packages``, ``packages.conda``, ``removed`` or
``info`` has the wrong type, is refused at once.

A name's entries stay JSON: `encode_entries` writes them as one JSON object
(``{filename: record}``) without re-serializing a record, `decode_entries` reads such an
object back.  The by-name store (`lockenv.lock.conda.subdir_store`) is made of these.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter, methodcaller
from typing import Any

import msgspec

__all__ = [
    "CorruptDocument",
    "RawDocument",
    "RawEntries",
    "decode_entries",
    "decode_record",
    "encode_entries",
    "read_document",
]

#: One name's entries: file name -> the record's JSON text.
RawEntries = dict[str, msgspec.Raw]

# What a type mismatch at the top level says, in the words of Python's json module.
_JSON_TYPES = {"array": "list", "str": "str", "int": "int", "float": "float", "null": "None"}
_GOT = re.compile(r"got `(\w+)`")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_SPLIT_NAME = methodcaller("rsplit", "-", 2)  # [name, version, build.ext]


class CorruptDocument(ValueError):
    """The bytes are not a repodata document; the message says why."""


class _Document(msgspec.Struct):
    # Absent and null mean empty; anything else of the wrong type is refused.
    info: dict[str, Any] | None = None
    packages: dict[str, msgspec.Raw] | None = None
    packages_conda: dict[str, msgspec.Raw] | None = msgspec.field(
        default=None, name="packages.conda"
    )
    removed: list[Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawDocument:
    """A repodata document's entries by package name, records still JSON text.

    ``by_name`` drops ``removed`` files and every ``.tar.bz2`` whose ``.conda`` twin is
    listed (smaller and faster to extract); ``base_url`` is ``info.base_url`` as given
    (None when absent); ``records`` counts the entries kept.
    """

    by_name: dict[str, RawEntries]
    base_url: object
    records: int


def read_document(text: bytes) -> RawDocument:
    """Group a (decompressed) ``repodata.json`` by name; `CorruptDocument` if it is not one.

    Keeps views of ``text``: it stays in memory as long as the result does.
    """
    try:
        document = msgspec.json.decode(text, type=_Document)
    except msgspec.ValidationError as exc:
        if " - at `$" in str(exc):
            raise CorruptDocument(
                f"'packages', 'packages.conda', 'removed' or 'info' has a bad type ({exc})"
            ) from None
        got = _GOT.search(str(exc))
        kind = _JSON_TYPES.get(got[1], got[1]) if got else "value"
        raise CorruptDocument(f"the top level is a {kind}, not an object") from None
    except msgspec.DecodeError as exc:
        # Named as Python's json module names the same failure.
        raise CorruptDocument(f"JSONDecodeError: {exc}") from None
    except RecursionError as exc:
        raise CorruptDocument(f"RecursionError: {exc}") from None
    conda_packages = document.packages_conda or {}
    bz2_packages = document.packages or {}
    removed = frozenset(f for f in document.removed or () if isinstance(f, str))
    by_name: dict[str, RawEntries] = {}
    for packages, is_bz2 in ((conda_packages, False), (bz2_packages, True)):
        items: Collection[tuple[str, msgspec.Raw]] = packages.items()
        if removed:
            items = [(f, raw) for f, raw in items if f not in removed]
        if is_bz2 and conda_packages:
            # A .tar.bz2's .conda twin is smaller and faster to extract.
            items = [(f, raw) for f, raw in items if f[:-8] + ".conda" not in conda_packages]
        # The hot loop of a first lock on a large channel: in C but for one step per
        # run of entries of the same name (a document lists its files sorted).
        names = map(_FIRST, map(_SPLIT_NAME, map(_FIRST, items)))
        for name, run in groupby(zip(names, items, strict=True), key=_FIRST):
            entries = dict(map(_SECOND, run))
            found = by_name.get(name)
            if found is None:
                by_name[name] = entries
            else:
                found.update(entries)
    records = sum(map(len, by_name.values()))
    info = document.info or {}
    return RawDocument(by_name=by_name, base_url=info.get("base_url"), records=records)


def encode_entries(entries: Mapping[str, msgspec.Raw]) -> bytes:
    """One name's entries as a JSON object ``{filename: record}``, records copied as is."""
    return msgspec.json.encode(entries)


def decode_record(raw: msgspec.Raw) -> Any:
    """One record's JSON text parsed; None when it is not valid JSON or UTF-8."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


def decode_entries(chunk: bytes) -> list[tuple[str, Any]]:
    """``[(filename, record)]`` from an `encode_entries` object.

    A record that cannot be parsed (invalid UTF-8 in one of its strings) comes back as
    None, its neighbours parsed: the caller skips it as an invalid record.
    """
    try:
        decoded: dict[str, Any] = msgspec.json.decode(chunk, type=dict[str, Any])
    except (msgspec.DecodeError, RecursionError):
        raws = msgspec.json.decode(chunk, type=dict[str, msgspec.Raw])
        return [(filename, decode_record(raw)) for filename, raw in raws.items()]
    return list(decoded.items())
