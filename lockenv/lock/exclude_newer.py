"""``exclude-newer``: a moment, or a span of time back from now.

The manifest may name a moment (``"2025-06-01T00:00:00Z"``, ``"2025-06-01"``, a TOML
datetime) or a duration, in the two forms uv accepts for its relative cutoffs: friendly
(``"14 days"``, ``"2 weeks"``, ``"1 week 3 days"``, ``"36h"``) and ISO 8601 (``"P14D"``,
``"P2W"``, ``"PT36H"``, ``"P1DT12H"``).  Units are weeks, days, hours, minutes and
seconds; months and years are refused, since they have no fixed length.

A duration is evaluated when the lock is made (now, minus the span, to the second) and
the lock records both the moment used and the span, written canonically (`format_span`:
``"14 days"`` and ``"P2W"`` are both ``"2 weeks"``).  Staleness compares spans, never
moments, so a lock does not go stale because time passed; only ``lockenv lock`` (when it
has to solve) moves the moment forward, and the previous pins stay preferred.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["format_span", "parse_span", "span_cutoff"]

_UNITS: dict[str, int] = {
    "w": 7 * 86400,
    "wk": 7 * 86400,
    "wks": 7 * 86400,
    "week": 7 * 86400,
    "weeks": 7 * 86400,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
}
_CALENDAR_UNITS = frozenset({"mo", "mos", "month", "months", "y", "yr", "yrs", "year", "years"})
_FRIENDLY_PART = re.compile(r"\s*(\d+)\s*([A-Za-z]+)\s*,?")
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?",
    re.IGNORECASE,
)
# Largest first: the canonical text uses the largest unit that divides the span exactly.
_CANONICAL = (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


class SpanError(ValueError):
    """``text`` looks like a duration but is not one lockenv accepts (the reason why)."""


def parse_span(text: str) -> timedelta | None:
    """The duration ``text`` names; None when it is not written as a duration at all.

    Raises `SpanError` for a duration lockenv refuses (months, years, zero, unknown
    units), so the caller can say why instead of "not a date".
    """
    stripped = text.strip()
    if not stripped:
        return None
    if stripped[0] in "Pp" and len(stripped) > 1:
        return _parse_iso(stripped)
    if not stripped[0].isdigit() or _looks_like_date(stripped):
        return None
    seconds = 0
    position = 0
    while position < len(stripped):
        match = _FRIENDLY_PART.match(stripped, position)
        if match is None or match.end() == position:
            raise SpanError(f"cannot read {stripped[position:]!r} as '<number> <unit>'")
        unit = match[2].lower()
        if unit in _CALENDAR_UNITS:
            raise SpanError(f"{match[2]!r} has no fixed length; use days or weeks")
        if unit not in _UNITS:
            raise SpanError(
                f"unknown unit {match[2]!r} (use weeks, days, hours, minutes or seconds)"
            )
        seconds += int(match[1]) * _UNITS[unit]
        position = match.end()
    return _positive(seconds)


def _looks_like_date(text: str) -> bool:
    return bool(re.match(r"\d{4}-\d", text))


def _parse_iso(text: str) -> timedelta:
    match = _ISO.fullmatch(text)
    if match is None or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        if re.search(r"\d+[YM]", text.upper().split("T")[0]):
            raise SpanError("months and years have no fixed length; use days (D) or weeks (W)")
        raise SpanError("not an ISO 8601 duration such as 'P14D', 'P2W' or 'PT36H'")
    seconds = sum(
        int(match[key] or 0) * factor
        for key, factor in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    )
    return _positive(seconds)


def _positive(seconds: int) -> timedelta:
    if seconds <= 0:
        raise SpanError("a zero duration excludes nothing; remove exclude-newer instead")
    return timedelta(seconds=seconds)


def format_span(span: timedelta) -> str:
    """The canonical text of ``span``: a whole number of its largest exact unit."""
    seconds = int(span.total_seconds())
    for unit, size in _CANONICAL:
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


def span_cutoff(span: timedelta, now: datetime | None = None) -> datetime:
    """``now`` (default: the current time) minus ``span``, in UTC, to the whole second."""
    moment = (now or datetime.now(UTC)).astimezone(UTC) - span
    return moment.replace(microsecond=0)
