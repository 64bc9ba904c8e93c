"""Time for the library: ISO parsing and the search window of a user's ``when``.

:func:`parse_iso` is the one lenient ISO 8601 reader (STAC item datetimes, cached provenance);
:func:`resolve_when` turns a user's ``when`` into the ``(start, end)`` window every search uses.
All datetimes leaving this module are timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import InvalidInputError, shown
from .sensors import S2_FIRST_DATE
from .settings import Settings

__all__ = ["iso_z", "parse_iso", "resolve_when", "utc"]

_FUTURE_SLACK = timedelta(minutes=5)  # clock skew tolerated before a window counts as future


def utc(dt: datetime) -> datetime:
    """``dt`` as aware UTC (a naive datetime is taken to be UTC).

    OverflowError when the conversion leaves the datetime range (year 1 east of UTC, year 9999 west).
    """
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _earlier(dt: datetime, span: timedelta) -> datetime:
    """``dt - span``, held at the first representable instant instead of overflowing (year 1)."""
    try:
        return dt - span
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _parse_point(value: Any, name: str, *, end: bool) -> datetime:
    """A date/datetime/ISO string as an aware UTC datetime (a date: start or end of that day)."""
    if isinstance(value, datetime):
        try:
            return utc(value)
        except (OverflowError, ValueError):  # e.g. 0001-01-01T00:00+05:00 is before the first UTC instant
            raise InvalidInputError(
                f"{name} {value.isoformat()} lies outside the dates UTC can hold; pass a date between "
                f"{S2_FIRST_DATE} and now"
            ) from None
    if isinstance(value, date):
        return datetime.combine(value, time.max if end else time.min, tzinfo=UTC)
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise InvalidInputError(f"{name} is an empty string; pass an ISO date such as '2024-07-01'")
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
                return _parse_point(date.fromisoformat(s), name, end=end)
            parsed = datetime.fromisoformat(s.replace("z", "Z"))
        except ValueError:
            raise InvalidInputError(
                f"{name} {shown(value)} is not an ISO date or datetime; use e.g. '2024-07-01' or '2024-07-01T15:30:00Z'"
            ) from None
        return _parse_point(parsed, name, end=end)
    raise InvalidInputError(
        f"{name} must be a date, datetime or ISO string, got {type(value).__name__} {shown(value)}"
    )


def resolve_when(when: Any, settings: Settings | None = None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The search window ``(start, end)``, aware UTC datetimes, for a user's ``when``.

    ``when`` may be:

    - ``None``: the last ``settings.recency_days`` days up to now, with the end rounded up to
      the next whole hour (so repeated calls share cache keys for an hour);
    - a ``date``, ``datetime`` or ISO string: the ``recency_days`` ending then (a date means
      the end of that day, UTC; naive datetimes are UTC);
    - ``"start/end"`` (ISO; either side may be ``..`` for open) or a ``(start, end)`` pair.

    A window ending in the future is cut at ``now``. Raises InvalidInputError for a window
    that starts in the future, ends before it starts, ends before Sentinel-2 existed
    (2015-06-23), or a value that is not a date.
    """
    s = Settings.resolve(settings)
    now_ = utc(now) if now is not None else datetime.now(UTC)
    span = timedelta(days=s.recency_days)
    if when is None:
        end_ = now_.replace(minute=0, second=0, microsecond=0)
        if end_ < now_:
            end_ += timedelta(hours=1)
        return end_ - span, end_
    if isinstance(when, str) and "/" in when:
        parts = when.split("/")
        if len(parts) != 2:
            raise InvalidInputError(f"date range {when!r} must be 'start/end'")
        when = tuple(None if p.strip() in ("", "..") else p.strip() for p in parts)
    if isinstance(when, (tuple, list)):
        if len(when) != 2:
            raise InvalidInputError(f"a date range needs exactly (start, end), got {len(when)} values")
        a, b = when
        if a is None and b is None:
            raise InvalidInputError("a date range needs at least one of start and end")
        end = now_ if b is None else _parse_point(b, "end of the date range", end=True)
        start = _earlier(end, span) if a is None else _parse_point(a, "start of the date range", end=False)
        if start > now_ + _FUTURE_SLACK:
            raise InvalidInputError(
                f"the date range starts in the future ({start:%Y-%m-%d %H:%M} UTC, now {now_:%Y-%m-%d %H:%M} UTC); "
                "pass a range that starts in the past"
            )
        if end < start:
            raise InvalidInputError(
                f"the date range is reversed: end {end:%Y-%m-%d %H:%M} is before start {start:%Y-%m-%d %H:%M}; "
                "swap start and end"
            )
        if end == start:
            raise InvalidInputError(f"the date range {start.isoformat()} .. {end.isoformat()} is empty; widen it")
    else:
        end = _parse_point(when, "when", end=True)
        is_day = isinstance(when, date) and not isinstance(when, datetime) or (
            isinstance(when, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", when) is not None)
        first_instant = end.replace(hour=0, minute=0, second=0, microsecond=0) if is_day else end
        if first_instant > now_ + _FUTURE_SLACK:
            raise InvalidInputError(
                f"`when` lies in the future ({first_instant:%Y-%m-%d %H:%M} UTC, now {now_:%Y-%m-%d %H:%M} UTC); "
                "pass a past date, or None for the newest imagery"
            )
        start = _earlier(end, span)
    end = min(end, now_)
    if end.date() < S2_FIRST_DATE:
        raise InvalidInputError(
            f"the date window ends {end.date().isoformat()}, before Sentinel-2 data begins ({S2_FIRST_DATE}); "
            "pass a later date"
        )
    return start, end


def parse_iso(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string (``Z`` or an offset; naive is UTC).

    None when ``value`` is empty or not ISO 8601: callers treat an unreadable date as absent.
    """
    if not value:
        return None
    try:
        return utc(datetime.fromisoformat(str(value).strip().replace("z", "Z")))
    except (ValueError, OverflowError):
        return None


def iso_z(dt: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, to the second."""
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")
