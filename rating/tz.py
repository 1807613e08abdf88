"""UTC offset tables read from the real tz database (TZif files), for the rating kernels.

Owns reading TZif data (system zoneinfo or the `tzdata` package, in zoneinfo's own search order),
expanding its POSIX footer rule up to 2100, and flattening the result into arrays a kernel can
look up in O(1): a per-UTC-day table with at most one transition per day.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import importlib.resources
import os
import re
import struct
import zoneinfo

import numpy as np

LAST_YEAR = 2100
FIRST_DAY = 0  # 1970-01-01, epoch day 0: the day table starts here
N_DAYS = (_dt.date(LAST_YEAR + 1, 1, 1) - _dt.date(1970, 1, 1)).days
NO_TRANSITION = np.iinfo(np.int64).max  # day_trans value: no transition on that day
MULTI_TRANSITION = -1  # day_trans value: several transitions that day, binary search instead
_BEFORE_ALL = -(2**62)


def tzif_bytes(name: str) -> bytes:
    """The TZif file of IANA zone `name`, searched like `zoneinfo` does (TZPATH, then tzdata)."""
    if not name or name.startswith(("/", ".")) or ".." in name.split("/"):
        raise ValueError(f"invalid timezone name {name!r}")
    for root in zoneinfo.TZPATH:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    parts = name.split("/")
    try:
        res = importlib.resources.files("tzdata.zoneinfo")
        for p in parts:
            res = res / p
        return res.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        raise ValueError(f"unknown timezone {name!r}") from e


def _parse_tzif(data: bytes) -> tuple[list[int], list[int], int, str]:
    """Return (transition times, offset after each, initial offset, POSIX footer)."""
    if data[:4] != b"TZif":
        raise ValueError("not a TZif file")
    version = data[4]

    def header(pos: int) -> tuple[int, ...]:
        return struct.unpack(">6l", data[pos + 20 : pos + 44])

    isut, isstd, leap, timecnt, typecnt, charcnt = header(0)
    pos, tsize = 44, 4
    if version >= ord("2"):
        # skip the 32-bit block; the 64-bit one follows with its own header
        pos += timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
        isut, isstd, leap, timecnt, typecnt, charcnt = header(pos)
        pos, tsize = pos + 44, 8
    fmt = f">{timecnt}{'q' if tsize == 8 else 'l'}"
    times = list(struct.unpack(fmt, data[pos : pos + timecnt * tsize]))
    pos += timecnt * tsize
    idx = list(data[pos : pos + timecnt])
    pos += timecnt
    types = [struct.unpack(">lBB", data[pos + 6 * i : pos + 6 * i + 6])[0] for i in range(typecnt)]
    pos += typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut
    footer = ""
    if tsize == 8:
        tail = data[pos:].split(b"\n")
        if len(tail) >= 2:
            footer = tail[1].decode("ascii")
    offsets = [types[i] for i in idx]
    return times, offsets, types[0] if types else 0, footer


_OFF = r"[+-]?\d{1,3}(?::\d{1,2}(?::\d{1,2})?)?"
_NAME = r"(?:<[^>]+>|[A-Za-z]{3,})"
_POSIX = re.compile(
    rf"^{_NAME}(?P<std>{_OFF})(?:(?P<dstname>{_NAME})(?P<dst>{_OFF})?(?:,(?P<start>[^,]+),(?P<end>[^,]+))?)?$"
)


def _hms(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")]
    parts += [0] * (3 - len(parts))
    return sign * (parts[0] * 3600 + parts[1] * 60 + parts[2])


def _rule_day(rule: str, year: int) -> tuple[_dt.date, int]:
    """Date and local time-of-day (seconds) of a POSIX rule such as ``M3.5.0/3`` in `year`."""
    when, _, at = rule.partition("/")
    secs = _hms(at) if at else 7200
    if when.startswith("M"):
        m, w, d = (int(x) for x in when[1:].split("."))
        first = _dt.date(year, m, 1)
        day = 1 + ((d - 1) % 7 - first.weekday()) % 7 + (w - 1) * 7
        last = calendar.monthrange(year, m)[1]
        while day > last:
            day -= 7
        return _dt.date(year, m, day), secs
    if when.startswith("J"):
        n = int(when[1:])  # 1..365, February 29 never counted
        if calendar.isleap(year) and n >= 60:
            n += 1
        return _dt.date(year, 1, 1) + _dt.timedelta(days=n - 1), secs
    return _dt.date(year, 1, 1) + _dt.timedelta(days=int(when)), secs


def _expand_posix(footer: str, first_year: int, last_year: int) -> list[tuple[int, int]]:
    """(utc, offset) transitions of a POSIX TZ rule for the years given, sorted."""
    m = _POSIX.match(footer)
    if not m:
        return []
    std = -_hms(m["std"])
    if m["dstname"] is None:
        return []  # a fixed offset: nothing to expand
    dst = -_hms(m["dst"]) if m["dst"] else std + 3600
    start, end = m["start"] or "M3.2.0", m["end"] or "M11.1.0"
    out = []
    for year in range(first_year, last_year + 1):
        d1, s1 = _rule_day(start, year)
        d2, s2 = _rule_day(end, year)
        epoch = _dt.date(1970, 1, 1)
        out.append(((d1 - epoch).days * 86400 + s1 - std, dst))  # start given in standard time
        out.append(((d2 - epoch).days * 86400 + s2 - dst, std))  # end given in daylight time
    out.sort()
    return out


def transitions(name: str, last_year: int = LAST_YEAR) -> tuple[np.ndarray, np.ndarray]:
    """All UTC offset changes of zone `name` up to the end of `last_year`.

    Returns ``transition_utc: int64[n]`` (sorted; the first is a sentinel far in the past) and
    ``offset_s: int32[n]``, the UTC offset in seconds in force from that instant on.
    """
    times, offsets, initial, footer = _parse_tzif(tzif_bytes(name))
    utc = [_BEFORE_ALL] + times
    off = [initial] + offsets
    last_explicit = times[-1] if times else _BEFORE_ALL
    first_year = max(1970, _dt.datetime.fromtimestamp(max(last_explicit, 0), _dt.UTC).year)
    for t, o in _expand_posix(footer, first_year, last_year):
        if t > last_explicit:
            utc.append(t)
            off.append(o)
    # drop entries that change nothing, so day tables see real changes only
    keep_t, keep_o = [utc[0]], [off[0]]
    for t, o in zip(utc[1:], off[1:], strict=True):
        if o != keep_o[-1]:
            keep_t.append(t)
            keep_o.append(o)
    return np.array(keep_t, dtype=np.int64), np.array(keep_o, dtype=np.int32)


def day_table(
    transition_utc: np.ndarray, offset_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per UTC day from 1970-01-01 to 2100-12-31: offset at 00:00 UTC, the transition instant
    inside the day (NO_TRANSITION, or MULTI_TRANSITION when there are several) and the offset
    after it. Returns ``(day_off: int32[N_DAYS], day_trans: int64[N_DAYS], day_off_after)``."""
    starts = (np.arange(N_DAYS, dtype=np.int64) + FIRST_DAY) * 86400
    i0 = np.searchsorted(transition_utc, starts, side="right") - 1
    i1 = np.searchsorted(transition_utc, starts + 86399, side="right") - 1
    day_off = offset_s[i0].astype(np.int32)
    day_after = offset_s[i1].astype(np.int32)
    day_trans = np.full(N_DAYS, NO_TRANSITION, dtype=np.int64)
    one = i1 == i0 + 1
    day_trans[one] = transition_utc[i1[one]]
    day_trans[i1 > i0 + 1] = MULTI_TRANSITION
    return day_off, day_trans, day_after
