"""ISO parsing and the search window of a user's ``when`` (terramind_nyc.dates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from terramind_nyc.dates import iso_z, parse_iso, resolve_when, utc
from terramind_nyc.errors import InvalidInputError
from terramind_nyc.settings import Settings

NOW = datetime(2024, 8, 15, 12, 0, tzinfo=UTC)


def test_parse_iso_is_lenient_and_always_utc():
    assert parse_iso("2024-07-01T15:30:00Z") == datetime(2024, 7, 1, 15, 30, tzinfo=UTC)
    assert parse_iso("2024-07-01t15:30:00z") == datetime(2024, 7, 1, 15, 30, tzinfo=UTC)
    assert parse_iso("2024-07-01T17:30:00+02:00") == datetime(2024, 7, 1, 15, 30, tzinfo=UTC)
    assert parse_iso("2024-07-01T15:30:00") == datetime(2024, 7, 1, 15, 30, tzinfo=UTC)  # naive is UTC
    assert parse_iso(" 2024-07-01 ") == datetime(2024, 7, 1, tzinfo=UTC)
    for bad in (None, "", "yesterday", "2024-13-01", 0):
        assert parse_iso(bad) is None


def test_utc_and_iso_z():
    east = datetime(2024, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=3)))
    assert utc(east) == datetime(2024, 7, 1, 9, 0, tzinfo=UTC) and utc(east).tzinfo is UTC
    assert iso_z(east) == "2024-07-01T09:00:00Z"
    assert iso_z(datetime(2024, 7, 1, 9, 0, 0, 999999)) == "2024-07-01T09:00:00Z"


def test_when_none_is_the_recencywindow() -> None:
    s = Settings(recency_days=30)
    start, end = resolve_when(None, s, now=NOW)
    assert end == NOW and start == NOW - timedelta(days=30)
    assert start.tzinfo is not None and end.tzinfo is not None
    # within the hour the window is the same (cache keys are stable); it ends at the next hour
    later = NOW + timedelta(minutes=17, seconds=3)
    assert resolve_when(None, s, now=later) == (NOW + timedelta(hours=1) - timedelta(days=30), NOW + timedelta(hours=1))
    assert resolve_when(None, s, now=later) == resolve_when(None, s, now=later + timedelta(minutes=30))


def test_when_forms() -> None:
    s = Settings(recency_days=10)
    start, end = resolve_when(date(2024, 7, 1), s, now=NOW)
    assert end == datetime(2024, 7, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert start == end - timedelta(days=10)
    assert resolve_when("2024-07-01", s, now=NOW) == (start, end)
    naive = datetime(2024, 7, 1, 12, 0)
    assert resolve_when(naive, s, now=NOW) == (datetime(2024, 6, 21, 12, tzinfo=UTC), datetime(2024, 7, 1, 12, tzinfo=UTC))
    other_tz = datetime(2024, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=-4)))
    assert resolve_when(other_tz, s, now=NOW)[1] == datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert resolve_when("2024-07-01T12:00:00Z", s, now=NOW)[1] == datetime(2024, 7, 1, 12, tzinfo=UTC)
    a, b = resolve_when("2024-05-01/2024-07-31", s, now=NOW)
    assert a == datetime(2024, 5, 1, tzinfo=UTC) and b.date() == date(2024, 7, 31) and b.hour == 23
    assert resolve_when(("2024-05-01", "2024-07-31"), s, now=NOW) == (a, b)
    assert resolve_when([date(2024, 5, 1), date(2024, 7, 31)], s, now=NOW) == (a, b)
    # open ends: '..' start -> recency_days before the end; '..' end -> now
    a2, b2 = resolve_when("../2024-07-31", s, now=NOW)
    assert b2 == b and a2 == b - timedelta(days=10)
    assert resolve_when("2024-05-01/..", s, now=NOW) == (a, NOW)


def test_when_ending_in_the_future_is_cut_at_now() -> None:
    start, end = resolve_when(("2024-08-01", "2024-12-31"), Settings(), now=NOW)
    assert end == NOW and start == datetime(2024, 8, 1, tzinfo=UTC)
    # today (a date) is fine: its window ends now
    assert resolve_when(NOW.date(), Settings(), now=NOW)[1] == NOW


@pytest.mark.parametrize("when, match", [
    (date(2024, 9, 1), "future"),
    ("2025-01-01T00:00:00Z", "future"),
    (("2024-09-01", "2024-10-01"), "starts in the future"),
    ("2024-07-31/2024-05-01", "reversed"),
    ((datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)), "reversed"),
    ((datetime(2024, 7, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC)), "empty"),
    ("last tuesday", "not an ISO date"),
    ("", "empty string"),
    (12345, "must be a date"),
    (("2024-01-01", "2024-02-01", "2024-03-01"), "exactly"),
    ("2024-01-01/2024-02-01/2024-03-01", "start/end"),
    ((None, None), "at least one"),
    ("2014-01-01", "before Sentinel-2"),
])
def test_when_rejects_bad_windows(when: Any, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        resolve_when(when, Settings(), now=NOW)


# ----------------------------------------------------------------------------------------
# The ends of the calendar: never an OverflowError
# ----------------------------------------------------------------------------------------
EAST, WEST = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (datetime(1, 1, 1), "before Sentinel-2 data begins (2015-06-23)"),
        (datetime.min, "the date window ends 0001-01-01"),
        ("0001-01-01", "pass a later date"),
        (date(1, 1, 1), "pass a later date"),
        (date.min, "pass a later date"),
        (datetime(1, 1, 1, tzinfo=EAST), "lies outside the dates UTC can hold"),
        ("0001-01-01T00:00+05:00", "pass a date between 2015-06-23 and now"),
        (datetime(9999, 12, 31, 23, tzinfo=WEST), "lies outside the dates UTC can hold"),
        ("9999-12-31", "lies in the future"),
        (date.max, "lies in the future"),
        (datetime.max, "lies in the future"),
        (("0001-01-02", "0001-01-01"), "reversed"),
        ((None, "0001-01-01"), "before Sentinel-2"),
        (("9999-12-31", None), "starts in the future"),
        pytest.param(10**5000, "got int <unprintable int>", id="int-too-long-to-print"),
        ([datetime(2024, 1, 1)], "exactly (start, end)"),
    ],
)
def test_extreme_dates_are_input_errors(when: Any, message: str):
    with pytest.raises(InvalidInputError) as e:
        resolve_when(when, Settings(recency_days=36_500), now=NOW)
    assert message in str(e.value)


def test_the_longest_window_from_the_first_days_is_held_at_year_1():
    start, end = resolve_when(("0001-01-01", "2024-01-01"), now=NOW)
    assert start == datetime(1, 1, 1, tzinfo=UTC) and end == datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)
    start, end = resolve_when("2016-01-01", Settings(recency_days=36_500), now=NOW)
    assert start.year == 1916 and end.date() == date(2016, 1, 1)


def test_parse_iso_of_an_instant_outside_utc_is_none():
    assert parse_iso("0001-01-01T00:00:00+05:00") is None
    assert parse_iso("9999-12-31T23:59:59-05:00") is None
