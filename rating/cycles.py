"""Billing-cycle arithmetic: which cycle an instant belongs to, and a cycle's UTC bounds.

Pure functions over (cycle "YYYY-MM", bill_cycle_day, IANA timezone); cycles start at local
midnight and tile time exactly (each cycle ends where the next one starts).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

_CYCLE = re.compile(r"^(\d{4})-(\d{2})$")


def _zone(tz_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"tz_name: unknown timezone {tz_name!r}") from exc


def _check_bcd(bill_cycle_day: int) -> int:
    if (
        isinstance(bill_cycle_day, bool)
        or not isinstance(bill_cycle_day, int)
        or not (1 <= bill_cycle_day <= 31)
    ):
        raise ValueError(f"bill_cycle_day: expected an integer in 1..31, got {bill_cycle_day!r}")
    return bill_cycle_day


def parse_cycle(cycle: str) -> tuple[int, int]:
    """Split ``"YYYY-MM"`` into (year, month); a clear ValueError naming ``cycle`` otherwise."""
    m = _CYCLE.match(cycle) if isinstance(cycle, str) else None
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise ValueError(f"cycle: expected 'YYYY-MM', got {cycle!r}")
    return int(m.group(1)), int(m.group(2))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _prev_month(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def _start_date(year: int, month: int, bcd: int) -> date:
    return date(year, month, min(bcd, calendar.monthrange(year, month)[1]))


def _local_midnight_utc(d: date, zone: ZoneInfo) -> int:
    # fold=0: a midnight skipped by DST maps to the transition instant (the day's first
    # moment), a repeated midnight to its first occurrence; both are where the day begins.
    local = datetime(d.year, d.month, d.day, tzinfo=zone)
    return int(local.astimezone(UTC).timestamp())


def cycle_dates(cycle: str, bill_cycle_day: int) -> tuple[date, date]:
    """Local calendar dates (first day, first day of the next cycle) of ``cycle``."""
    year, month = parse_cycle(cycle)
    bcd = _check_bcd(bill_cycle_day)
    return _start_date(year, month, bcd), _start_date(*_next_month(year, month), bcd)


@lru_cache(maxsize=4096)
def cycle_bounds(cycle: str, bill_cycle_day: int, tz_name: str) -> tuple[int, int]:
    """UTC seconds ``(start, end)`` of ``cycle``; ``end`` is exclusive and is the next start."""
    zone = _zone(tz_name)
    first, after = cycle_dates(cycle, bill_cycle_day)
    return _local_midnight_utc(first, zone), _local_midnight_utc(after, zone)


def cycle_of(utc_s: int, bill_cycle_day: int, tz_name: str) -> str:
    """The cycle ``"YYYY-MM"`` that contains the instant ``utc_s`` (UTC seconds)."""
    zone = _zone(tz_name)
    bcd = _check_bcd(bill_cycle_day)
    local = datetime.fromtimestamp(int(utc_s), tz=UTC).astimezone(zone)
    year, month = local.year, local.month
    # A cycle named after month M starts inside M, so the answer is M or the month before.
    if int(utc_s) < cycle_bounds(f"{year:04d}-{month:02d}", bcd, tz_name)[0]:
        year, month = _prev_month(year, month)
    return f"{year:04d}-{month:02d}"


def cycle_days(cycle: str, bill_cycle_day: int, tz_name: str) -> int:
    """Number of local calendar days in ``cycle`` (28..31)."""
    _zone(tz_name)
    first, after = cycle_dates(cycle, bill_cycle_day)
    return (after - first).days


def local_date(utc_s: int, tz_name: str) -> date:
    """The local calendar date of the instant ``utc_s`` in ``tz_name``."""
    return datetime.fromtimestamp(int(utc_s), tz=UTC).astimezone(_zone(tz_name)).date()


def local_midnight_utc(d: date, tz_name: str) -> int:
    """UTC seconds of the first moment of local date ``d`` in ``tz_name``."""
    return _local_midnight_utc(d, _zone(tz_name))


def month_number(cycle: str) -> int:
    """``"YYYY-MM"`` as a month count (year * 12 + month - 1), the inverse of `cycle_name`."""
    year, month = parse_cycle(cycle)
    return year * 12 + month - 1


def cycle_name(month: int) -> str:
    """The cycle named by a month count of `month_number`."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def cycle_starts(timezone: str, bill_cycle_day: int, first: int, last: int) -> np.ndarray:
    """UTC epochs of consecutive cycle starts covering the instants first..last: element 0 is
    the start of the cycle containing `first`, each next one the end of the one before."""
    year, month = parse_cycle(cycle_of(first, bill_cycle_day, timezone))
    out = [cycle_bounds(f"{year:04d}-{month:02d}", bill_cycle_day, timezone)[0]]
    while True:  # one step per cycle (month) spanned, not per instant
        start, end = cycle_bounds(f"{year:04d}-{month:02d}", bill_cycle_day, timezone)
        out.append(end)
        if end > last:
            return np.array(out, np.int64)
        year, month = _next_month(year, month)


_MONTHS_STEPPED = 1200


def cycle_months(start: np.ndarray, usable: np.ndarray, timezone: str,
                 bill_cycle_day: int) -> np.ndarray:
    """The cycle (as a `month_number`) of every instant of `start` (int64 UTC s) for one bill
    cycle day; rows not `usable` get -1. One step per month from the first instant to the
    last; when they lie more than `_MONTHS_STEPPED` months apart, one step per cycle that
    holds an instant instead."""
    out = np.full(len(start), -1, np.int64)
    if not usable.any():
        return out
    s = start[usable]
    first, last = int(s.min()), int(s.max())
    base = month_number(cycle_of(first, bill_cycle_day, timezone))
    if last - first <= _MONTHS_STEPPED * 28 * 86400:
        starts = cycle_starts(timezone, bill_cycle_day, first, last)
        idx = np.searchsorted(starts, start, side="right") - 1
        return np.where(usable, idx + base, -1)
    s = np.unique(s)  # sorted; the instants span centuries: a sort is the cheap part now
    lows, months = [], []
    k = 0
    while k < len(s):
        name = cycle_of(int(s[k]), bill_cycle_day, timezone)
        low, end = cycle_bounds(name, bill_cycle_day, timezone)
        lows.append(low)
        months.append(month_number(name))
        k = int(np.searchsorted(s, end, side="left"))  # the first instant of a later cycle
    at = np.searchsorted(np.array(lows, np.int64), start, side="right") - 1
    return np.where(usable, np.array(months, np.int64)[np.maximum(at, 0)], -1)


__all__ = [
    "cycle_bounds",
    "cycle_months",
    "cycle_name",
    "cycle_starts",
    "cycle_dates",
    "cycle_days",
    "cycle_of",
    "local_date",
    "local_midnight_utc",
    "month_number",
    "parse_cycle",
]
