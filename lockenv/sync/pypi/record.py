"""RECORD files (the wheel spec's list of installed files) and the path checks they need.

A RECORD row is ``path,sha256=<urlsafe base64, no padding>,size``.  In a wheel the paths
are relative to the wheel root; in an installed ``.dist-info`` they are relative to
site-packages and may climb out of it (``../../../bin/tool``) but never out of the prefix.

Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from lockenv.errors import UnsafePathError

__all__ = [
    "RecordRow",
    "check_member_path",
    "parse_record",
    "record_hash",
    "record_hash_of_digest",
    "render_record",
    "render_record_rows",
    "resolve_installed_path",
]

_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow:
    """One RECORD line; ``hash`` is ``sha256=...`` or empty (RECORD itself, bytecode)."""

    path: str
    hash: str = ""
    size: int | None = None


def record_hash(data: bytes) -> str:
    """The RECORD hash field of ``data``."""
    return record_hash_of_digest(hashlib.sha256(data).digest())


def record_hash_of_digest(digest: bytes) -> str:
    """The RECORD hash field of a raw sha256 digest."""
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_member_path(path: str, *, wheel: str) -> str:
    """Return ``path`` (an archive member or wheel RECORD path) normalized, if it is safe.

    Safe means relative, no drive letter, no backslash, no NUL, and no ``..`` component, so
    that joining it to any directory stays inside that directory.  UnsafePathError names
    the wheel and the member otherwise.
    """
    problem = None
    if not path or "\0" in path:
        problem = "is empty or contains NUL"
    elif path.startswith("/") or _DRIVE.match(path) or "\\" in path:
        problem = "is absolute or not a POSIX path"
    else:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts:
            problem = "names no file"
        elif ".." in parts:
            problem = "climbs out of its directory with '..'"
    if problem is not None:
        raise UnsafePathError(
            f"{wheel}: member {path!r} {problem}; refusing to install this wheel "
            "(it is broken or malicious)"
        )
    return "/".join(parts)


def resolve_installed_path(path: str, site_packages_rel: str) -> str | None:
    """The prefix-relative POSIX path of an installed RECORD entry, or None if it escapes.

    ``site_packages_rel`` is site-packages relative to the prefix (``lib/python3.11/...``).
    """
    if not path or "\0" in path or "\\" in path or _DRIVE.match(path) or path.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(site_packages_rel, path))
    if joined == ".." or joined.startswith("../") or joined in ("", "."):
        return None
    return joined


def parse_record(text: str) -> list[RecordRow]:
    """Rows of a RECORD file (malformed size fields become None)."""
    import csv  # here: a sync that only links renders RECORDs, without csv (below)

    rows: list[RecordRow] = []
    for fields in csv.reader(io.StringIO(text)):
        if not fields or not fields[0]:
            continue
        hash_ = fields[1] if len(fields) > 1 else ""
        size_text = fields[2] if len(fields) > 2 else ""
        size = int(size_text) if size_text.isdigit() else None
        rows.append(RecordRow(path=fields[0], hash=hash_, size=size))
    return rows


def render_record(rows: Iterable[RecordRow]) -> bytes:
    """RECORD bytes for ``rows``, sorted by path as pip writes them."""
    return render_record_rows((r.path, r.hash, r.size) for r in rows)


def render_record_rows(rows: Iterable[tuple[str, str, int | None]]) -> bytes:
    """RECORD bytes for ``(path, hash, size)`` tuples, sorted by path."""
    ordered = sorted(rows)
    text = "".join([f"{p},{h},{'' if s is None else s}\n" for p, h, s in ordered])
    # Nothing to quote (the common case: a field with a comma, a quote or a line break
    # would add one of them): what the csv writer would write, without its cost per row
    # (every sync that links a wheel renders its RECORD).  Counted over the whole text,
    # not searched for in each row.
    if (
        text.count(",") == 2 * len(ordered)
        and text.count("\n") == len(ordered)
        and '"' not in text
        and "\r" not in text
    ):
        return text.encode("utf-8")
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows((p, h, "" if s is None else s) for p, h, s in ordered)
    return buf.getvalue().encode("utf-8")
