"""Billing cycles: month ends, leap years, DST, and exact tiling of time."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating.cycles import cycle_bounds, cycle_dates, cycle_days, cycle_of


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_bcd_31_in_february_of_leap_year_2028():
    # Berlin is UTC+1 in winter: local midnight is 23:00 UTC the day before.
    start, end = cycle_bounds("2028-02", 31, "Europe/Berlin")
    assert start == utc(2028, 2, 28, 23)  # 29 Feb 2028 00:00 local
    assert end == utc(2028, 3, 30, 22)  # 31 Mar 2028 00:00 local (CEST, UTC+2)
    assert cycle_dates("2028-02", 31) == (
        datetime(2028, 2, 29).date(),
        datetime(2028, 3, 31).date(),
    )
    assert cycle_days("2028-02", 31, "Europe/Berlin") == 31
    assert cycle_days("2027-02", 31, "Europe/Berlin") == 31  # 28 Feb .. 31 Mar
    assert cycle_days("2028-01", 31, "Europe/Berlin") == 29  # 31 Jan .. 29 Feb
    assert cycle_days("2027-01", 31, "Europe/Berlin") == 28  # 31 Jan .. 28 Feb
    assert cycle_days("2026-04", 30, "UTC") == 30  # 30 Apr .. 30 May


def test_bcd_1_is_calendar_month():
    assert cycle_bounds("2026-11", 1, "UTC") == (utc(2026, 11, 1), utc(2026, 12, 1))
    assert cycle_bounds("2026-12", 1, "UTC") == (utc(2026, 12, 1), utc(2027, 1, 1))
    assert cycle_days("2026-12", 1, "UTC") == 31


def test_dst_cycle_lengths_in_seconds():
    # March 2026 in Berlin loses an hour (29 Mar), October gains one (25 Oct).
    s, e = cycle_bounds("2026-03", 1, "Europe/Berlin")
    assert e - s == 31 * 86400 - 3600
    s, e = cycle_bounds("2026-10", 1, "Europe/Berlin")
    assert e - s == 31 * 86400 + 3600
    # a cycle starting on the DST day itself still starts at local midnight
    s, _ = cycle_bounds("2026-03", 29, "Europe/Berlin")
    assert s == utc(2026, 3, 28, 23)


def test_midnight_skipped_by_dst_starts_at_transition():
    # America/Santiago springs forward at 00:00 local (2026-09-06): the day starts at 01:00.
    s, _ = cycle_bounds("2026-09", 6, "America/Santiago")
    assert s == utc(2026, 9, 6, 4)
    assert cycle_of(s, 6, "America/Santiago") == "2026-09"
    assert cycle_of(s - 1, 6, "America/Santiago") == "2026-08"


def test_cycle_of_edges():
    start, end = cycle_bounds("2028-02", 31, "Europe/Berlin")
    assert cycle_of(start, 31, "Europe/Berlin") == "2028-02"
    assert cycle_of(start - 1, 31, "Europe/Berlin") == "2028-01"
    assert cycle_of(end - 1, 31, "Europe/Berlin") == "2028-02"
    assert cycle_of(end, 31, "Europe/Berlin") == "2028-03"
    # 31 Dec 23:30 UTC is already January 1st in Berlin
    assert cycle_of(utc(2026, 12, 31, 23, 30), 1, "Europe/Berlin") == "2027-01"


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "UTC"])
@pytest.mark.parametrize("bcd", [1, 15, 28, 29, 30, 31])
def test_cycles_tile_time_over_years(tz, bcd):
    cycles = [f"{y}-{m:02d}" for y in range(2025, 2031) for m in range(1, 13)]
    for a, b in zip(cycles, cycles[1:], strict=False):
        start_a, end_a = cycle_bounds(a, bcd, tz)
        start_b, _ = cycle_bounds(b, bcd, tz)
        assert end_a == start_b
        assert start_a < end_a
        assert 28 <= cycle_days(a, bcd, tz) <= 31
        assert cycle_of(start_a, bcd, tz) == a
        assert cycle_of(end_a - 1, bcd, tz) == a


@settings(max_examples=300, deadline=None)
@given(
    t=st.integers(min_value=utc(2000, 1, 1), max_value=utc(2060, 1, 1)),
    bcd=st.integers(min_value=1, max_value=31),
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Kolkata", "America/Santiago"]),
)
def test_instant_lies_in_its_cycle(t, bcd, tz):
    start, end = cycle_bounds(cycle_of(t, bcd, tz), bcd, tz)
    assert start <= t < end


@pytest.mark.parametrize(
    "args,field",
    [
        (("2026-13", 1, "UTC"), "cycle"),
        (("2026-1", 1, "UTC"), "cycle"),
        (("2026-01", 0, "UTC"), "bill_cycle_day"),
        (("2026-01", 32, "UTC"), "bill_cycle_day"),
        (("2026-01", 1, "Mars/Olympus"), "tz_name"),
    ],
)
def test_bad_arguments_name_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        cycle_bounds(*args)
