"""exclude-newer durations: parsing, canonical text, evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockenv.lock.exclude_newer import SpanError, format_span, parse_span, span_cutoff

DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("14 days", 14 * DAY),
        ("14days", 14 * DAY),
        ("1 day", DAY),
        ("2 weeks", 14 * DAY),
        ("2w", 14 * DAY),
        ("1 week 3 days", 10 * DAY),
        ("1 week, 3 days", 10 * DAY),
        ("1w3d", 10 * DAY),
        ("36h", timedelta(hours=36)),
        ("36 Hours", timedelta(hours=36)),
        ("90 minutes", timedelta(minutes=90)),
        ("30 s", timedelta(seconds=30)),
        ("  7 days  ", 7 * DAY),
        ("P14D", 14 * DAY),
        ("p14d", 14 * DAY),
        ("P2W", 14 * DAY),
        ("PT36H", timedelta(hours=36)),
        ("P1DT12H", timedelta(hours=36)),
        ("PT90M", timedelta(minutes=90)),
        ("PT45S", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, span: timedelta) -> None:
    assert parse_span(text) == span


@pytest.mark.parametrize(
    "text", ["2025-06-01", "2025-06-01T00:00:00Z", "yesterday", "", "now", "-3 days", "P"]
)
def test_not_a_duration(text: str) -> None:
    assert parse_span(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("3 months", "no fixed length"),
        ("1 year", "no fixed length"),
        ("P1M", "no fixed length"),
        ("P1Y", "no fixed length"),
        ("0 days", "zero duration"),
        ("PT0S", "zero duration"),
        ("14 fortnights", "unknown unit 'fortnights'"),
        ("14 days ago", "cannot read 'ago'"),
        ("14", "cannot read '14'"),
        ("PT", "ISO 8601 duration"),
        ("P1DT", "ISO 8601 duration"),
        ("P1.5D", "ISO 8601 duration"),
    ],
)
def test_refused_durations(text: str, why: str) -> None:
    with pytest.raises(SpanError, match=why):
        parse_span(text)


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (14 * DAY, "2 weeks"),
        (7 * DAY, "1 week"),
        (10 * DAY, "10 days"),
        (DAY, "1 day"),
        (timedelta(hours=36), "36 hours"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(seconds=61), "61 seconds"),
        (timedelta(seconds=1), "1 second"),
    ],
)
def test_canonical_text(span: timedelta, text: str) -> None:
    assert format_span(span) == text


@given(st.integers(min_value=1, max_value=10**9))
def test_canonical_text_reads_back(seconds: int) -> None:
    span = timedelta(seconds=seconds)
    assert parse_span(format_span(span)) == span


@given(
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=50),
)
def test_iso_and_friendly_agree(weeks: int, days: int, hours: int) -> None:
    if weeks == days == hours == 0:
        return
    iso = "P" + (f"{weeks}W" if weeks else "") + (f"{days}D" if days else "")
    iso += f"T{hours}H" if hours else ""
    friendly = f"{weeks} weeks {days} days {hours} hours"
    assert parse_span(iso) == parse_span(friendly)


def test_cutoff_is_whole_seconds_in_utc() -> None:
    now = datetime(2025, 6, 15, 12, 30, 45, 999_999, tzinfo=UTC)
    assert span_cutoff(14 * DAY, now) == datetime(2025, 6, 1, 12, 30, 45, tzinfo=UTC)
    assert span_cutoff(DAY).tzinfo is UTC
