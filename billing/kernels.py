"""Numba kernels for CDR files: parsing and checking string columns, writing the rated CSV.

Pure functions over the raw buffers of Arrow string arrays (int32 or int64 `offsets`, n + 1,
into a uint8 `data` buffer) and preallocated outputs; `billing.cdrs` prepares and calls them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# The years a CDR start may have: a cycle either side of any such instant, in any timezone,
# stays inside the years 1..9999 that cycle arithmetic (`rating.cycles`, Python's calendar)
# can compute with; beyond them a start is malformed, not a crash.
MIN_YEAR, MAX_YEAR = 2, 9998

# Every kernel is nogil: `ccs rate` runs them on two threads at once, and on one thread while
# another does GIL-bound work; none touches a Python object. The small writers are inlined
# into the row loop (`inline="always"`): a call per field cost more than the field.


@njit(cache=True, nogil=True)
def _parse_starts(offsets, data, epoch, nanos, ok):
    """ISO 8601 starts with an offset or Z -> UTC epoch seconds and the fraction of a second.

    offsets: int[n + 1] (int32 or int64), data: uint8[...]: the strings. epoch: int64[n] out,
    whole seconds (0 when invalid); nanos: int64[n] out, the fraction in nanoseconds, 0..10^9-1
    (0 when none or invalid): the instant is epoch + nanos / 10^9; ok: bool[n] out. Accepted:
    `YYYY-MM-DD`, `T`/`t`/space, `HH:MM:SS`, optional `.` and 1..9 fraction digits, then
    `Z`/`z`, `+HH`, `+HHMM` or `+HH:MM` (or `-`); the year MIN_YEAR..MAX_YEAR. Returns True
    when some valid start has a nonzero fraction.
    """
    n = len(offsets) - 1
    any_fraction = False
    for i in range(n):
        epoch[i] = 0
        nanos[i] = 0
        ok[i] = False
        s = offsets[i]
        length = offsets[i + 1] - s
        if length < 20 or length > 35:
            continue
        good = True
        for p in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18):
            c = data[s + p]
            if c < 48 or c > 57:
                good = False
        sep = data[s + 10]
        if not good or data[s + 4] != 45 or data[s + 7] != 45:
            continue
        if data[s + 13] != 58 or data[s + 16] != 58:
            continue
        if sep != 84 and sep != 116 and sep != 32:
            continue
        year = (np.int64(data[s]) - 48) * 1000 + (np.int64(data[s + 1]) - 48) * 100 \
            + (np.int64(data[s + 2]) - 48) * 10 + (np.int64(data[s + 3]) - 48)
        month = (np.int64(data[s + 5]) - 48) * 10 + (np.int64(data[s + 6]) - 48)
        day = (np.int64(data[s + 8]) - 48) * 10 + (np.int64(data[s + 9]) - 48)
        hour = (np.int64(data[s + 11]) - 48) * 10 + (np.int64(data[s + 12]) - 48)
        minute = (np.int64(data[s + 14]) - 48) * 10 + (np.int64(data[s + 15]) - 48)
        second = (np.int64(data[s + 17]) - 48) * 10 + (np.int64(data[s + 18]) - 48)
        tz = 19
        frac = np.int64(0)
        if data[s + 19] == 46:  # '.': 1..9 fraction digits
            run = 0
            while run < 9 and 20 + run < length and 48 <= data[s + 20 + run] <= 57:
                frac = frac * 10 + (np.int64(data[s + 20 + run]) - 48)
                run += 1
            if run == 0:
                continue
            for _ in range(run, 9):
                frac *= 10
            tz = 20 + run
        tzlen = length - tz
        t = s + tz
        offset = np.int64(0)
        if tzlen == 1 and (data[t] == 90 or data[t] == 122):
            offset = 0
        elif tzlen == 3 or tzlen == 5 or tzlen == 6:
            sign = data[t]
            if sign != 43 and sign != 45:
                continue
            h1 = np.int64(data[t + 1]) - 48
            h2 = np.int64(data[t + 2]) - 48
            if h1 < 0 or h1 > 9 or h2 < 0 or h2 > 9:
                continue
            off_m = np.int64(0)
            if tzlen >= 5:
                m0 = t + 3 if tzlen == 5 else t + 4
                if tzlen == 6 and data[t + 3] != 58:
                    continue
                m1 = np.int64(data[m0]) - 48
                m2 = np.int64(data[m0 + 1]) - 48
                if m1 < 0 or m1 > 9 or m2 < 0 or m2 > 9:
                    continue
                off_m = m1 * 10 + m2
            off_h = h1 * 10 + h2
            if off_h > 23 or off_m > 59:
                continue
            offset = off_h * 3600 + off_m * 60
            if sign == 45:
                offset = -offset
        else:
            continue
        leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
        if month < 1 or month > 12 or year < MIN_YEAR or year > MAX_YEAR or day < 1:
            continue
        if month == 2:
            dim = 29 if leap else 28
        elif month == 4 or month == 6 or month == 9 or month == 11:
            dim = 30
        else:
            dim = 31
        if day > dim or hour > 23 or minute > 59 or second > 59:
            continue
        # days since 1970-01-01 (H. Hinnant's days_from_civil)
        y = year - 1 if month <= 2 else year
        era = y // 400
        yoe = y - era * 400
        mp = (month + 9) % 12
        doy = (153 * mp + 2) // 5 + day - 1
        doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
        days = era * 146097 + doe - 719468
        epoch[i] = days * 86400 + hour * 3600 + minute * 60 + second - offset
        nanos[i] = frac
        ok[i] = True
        if frac:
            any_fraction = True
    return any_fraction


@njit(cache=True, nogil=True)
def _parse_digits(offsets, data, min_len, max_len, value, length, ok):
    """Strings of min_len..max_len ASCII digits -> integers.

    offsets: int[n + 1] (int32 or int64), data: uint8[...]: the strings. value: int64[n] out
    (0 when invalid or empty); length: int8[n] out, digit count (0 when invalid); ok: bool[n] out.
    """
    n = len(offsets) - 1
    for i in range(n):
        s = offsets[i]
        k = offsets[i + 1] - s
        v = np.int64(0)
        good = min_len <= k <= max_len
        if good:
            for p in range(s, s + k):
                c = np.int64(data[p]) - 48
                if c < 0 or c > 9:
                    good = False
                    break
                v = v * 10 + c
        value[i] = v if good else 0
        length[i] = k if good else 0
        ok[i] = good


@njit(cache=True, nogil=True)
def _duplicates_and_rank(order, offsets, data, good, rank, duplicate):
    """Rank of every id and which good rows repeat an earlier good row's id.

    order: int64[n], a stable sort of the ids (equal ids stay in file order); offsets: int[n + 1],
    data: uint8[...]: the ids; good: bool[n], rows that may count (well formed). rank: int64[n]
    out, position of the row in `order`; duplicate: bool[n] out, a good row whose id an earlier
    good row already has.
    """
    n = len(order)
    have = False  # a good row was seen in the current run of equal ids
    for j in range(n):
        r = order[j]
        rank[r] = j
        duplicate[r] = False
        if j > 0:
            q = order[j - 1]
            a, b = offsets[r], offsets[q]
            k = offsets[r + 1] - a
            same = k == offsets[q + 1] - b
            if same:
                for p in range(k):
                    if data[a + p] != data[b + p]:
                        same = False
                        break
            if not same:
                have = False
        if good[r]:
            if have:
                duplicate[r] = True
            have = True


@njit(cache=True, nogil=True)
def _has_special(data, lo, hi):
    """True when data[lo:hi] (uint8) holds a comma, double quote, CR or LF: CSV must quote."""
    for p in range(lo, hi):
        c = data[p]
        if c == 44 or c == 34 or c == 13 or c == 10:
            return True
    return False


@njit(cache=True, nogil=True)
def _amounts_fit(reason, charge, discount, net_charge, step):
    """True when every rated row's amounts (int64[n] micro-units; reason int8[n], 0 rated)
    are whole multiples of `step` micro-units, i.e. fit the catalog's decimals."""
    for i in range(len(reason)):
        if reason[i] == 0 and (charge[i] % step or discount[i] % step or net_charge[i] % step):
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _put_int(buf, pos, v):
    """Write int64 `v` in decimal at buf[pos:]; return the position after it."""
    if v < 0:
        buf[pos] = 45
        pos += 1
        v = -v
    k = 1
    x = v // 10
    while x > 0:
        k += 1
        x //= 10
    x = v
    for p in range(pos + k - 1, pos - 1, -1):
        buf[p] = 48 + x % 10
        x //= 10
    return pos + k


@njit(cache=True, nogil=True, inline="always")
def _put_money(buf, pos, micro, decimals):
    """Write int64 micro-units with exactly `decimals` places (format_money) at buf[pos:]."""
    if micro < 0:
        buf[pos] = 45
        pos += 1
        micro = -micro
    pos = _put_int(buf, pos, micro // 1_000_000)
    if decimals > 0:
        buf[pos] = 46
        frac = (micro % 1_000_000) // 10 ** (6 - decimals)
        for p in range(pos + decimals, pos, -1):
            buf[p] = 48 + frac % 10
            frac //= 10
        pos += decimals + 1
    return pos


@njit(cache=True, nogil=True, inline="always")
def _put_bytes(buf, pos, data, a, b):
    """Copy data[a:b] to buf[pos:]; return the position after it.

    Copies 16 bytes when it can (a fixed trip count the compiler unrolls, and no branch on the
    length of short fields): `buf` needs 16 bytes of slack, and the bytes past the field are
    overwritten by what comes next.
    """
    # unsigned indices: numba then skips its negative-index wrap-around test on every byte
    pu = np.uint64(pos)
    au = np.uint64(a)
    if a + 16 <= len(data):
        for p in range(16):
            buf[pu + np.uint64(p)] = data[au + np.uint64(p)]
        for p in range(16, b - a):
            buf[pu + np.uint64(p)] = data[au + np.uint64(p)]
    else:
        for p in range(b - a):
            buf[pu + np.uint64(p)] = data[au + np.uint64(p)]
    return pos + b - a


@njit(cache=True, nogil=True)
def _stage_column(offsets, data, lo, hi, col, chunk_offsets, chunk_data, at):
    """Copy rows lo..hi-1 of one string column next to the other columns of a chunk.

    offsets: int[n + 1], data: uint8[...]: the column. chunk_offsets: int64[hi - lo + 1, k]
    out, column `col` gets where each string starts in chunk_data (uint8 out), from `at` on.
    Returns the position in chunk_data after the copied bytes.
    """
    a = offsets[lo]
    size = offsets[hi] - a
    chunk_data[at:at + size] = data[a:a + size]
    for i in range(lo, hi + 1):
        chunk_offsets[i - lo, col] = offsets[i] - a + at
    return at + size


@njit(cache=True, nogil=True)
def _write_rows(buf, chunk_offsets, chunk_data, lo, reason, malformed_column, dest_name, band,
                rated_usage, charge, discount, net_charge, label_offsets, label_data,
                n_dest, n_band, n_reasons, n_labels, duplicate, no_rate, decimals):
    """Write rated CSV rows lo.. (no quoting) into buf; return the bytes written.

    buf: uint8 out, large enough plus 16 bytes. chunk_offsets: int64[m + 1, k], chunk_data:
    uint8: the k input fields of rows lo..lo+m-1 (`_stage_column`). Per row i of the file:
    reason int8 (0 rated), malformed_column int8 (-1 none), dest_name, band int32 (-1 none),
    rated_usage, charge, discount, net_charge int64 (micro-units). label_offsets (int64[L + 1])
    / label_data (uint8): every `status,reason,destination_name,band,` text a row can have:
    first rated then no_rate rows by destination (n_dest names, then none) and band (n_band,
    then none); then the others by status (0 rated, 1 duplicate, 2 rejected) and reason label
    (n_labels: the n_reasons reason codes, then `malformed:<column>` by column). Rows not
    rated show zero amounts; rated amounts must fit `decimals` places (`_amounts_fit`).
    """
    m = chunk_offsets.shape[0] - 1
    k = chunk_offsets.shape[1]
    located_labels = 2 * (n_dest + 1) * (n_band + 1)
    pos = 0
    for r in range(m):
        i = lo + r
        for c in range(k):
            pos = _put_bytes(buf, pos, chunk_data, chunk_offsets[r, c], chunk_offsets[r + 1, c])
            buf[pos] = 44
            pos += 1
        why = reason[i]
        if (why == 0 or why == no_rate) and malformed_column[i] < 0:
            d = dest_name[i] if dest_name[i] >= 0 else n_dest
            b = band[i] if band[i] >= 0 else n_band
            j = ((0 if why == 0 else 1) * (n_dest + 1) + d) * (n_band + 1) + b
        else:
            status = 0 if why == 0 else (1 if why == duplicate else 2)
            label = n_reasons + malformed_column[i] if malformed_column[i] >= 0 else why
            j = located_labels + status * n_labels + label
        pos = _put_bytes(buf, pos, label_data, label_offsets[j], label_offsets[j + 1])
        ok = why == 0
        pos = _put_int(buf, pos, rated_usage[i] if ok else 0)
        for v in (charge[i], discount[i], net_charge[i]):
            buf[pos] = 44
            pos = _put_money(buf, pos + 1, v if ok else 0, decimals)
        buf[pos] = 10
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def _utf8_length(data, i):
    """Length (1..4) of the well-formed UTF-8 sequence at data[i] (uint8), 0 when ill-formed
    (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF, cut short)."""
    n = len(data)
    c = data[i]
    if c < 128:
        return 1
    if c < 0xC2 or c > 0xF4:
        return 0
    k = 2 if c < 0xE0 else (3 if c < 0xF0 else 4)
    if i + k > n:
        return 0
    lo, hi = 0x80, 0xBF  # the range of the first continuation byte
    if c == 0xE0:
        lo = 0xA0
    elif c == 0xED:
        hi = 0x9F
    elif c == 0xF0:
        lo = 0x90
    elif c == 0xF4:
        hi = 0x8F
    if data[i + 1] < lo or data[i + 1] > hi:
        return 0
    for p in range(i + 2, i + k):
        if data[p] < 0x80 or data[p] > 0xBF:
            return 0
    return k


def _byte_classes(specials: bytes) -> np.ndarray:
    """uint8[256]: 1 for the bytes listed and every byte >= 0x80, 0 for the others."""
    table = np.zeros(256, np.uint8)
    table[128:] = 1
    table[list(specials)] = 1
    return table


# What ends a run of plain text outside quotes, and inside them (`_scan_lines`).
_OUTSIDE = _byte_classes(b',"\n\r')
_INSIDE = _byte_classes(b'"\n\r')


@njit(cache=True, nogil=True)
def _scan_lines(data, lo, width, bad_row, bad_start, bad_stop, bad_next, counts):
    """Split CSV text into physical lines and find the lines that are not one plain row.

    data: uint8[...], the file; lines start at `lo` (after the header line). A line ends at
    LF, CR LF or CR, also inside quotes: a quoted field (one that starts with `"`; `""` in it
    is a quote; after its closing quote the rest of the field is plain text) that does not
    close on its line makes the line bad. An empty line is blank, not a row. A row is bad
    when it is cut by an open quote or has other than `width` fields. For the first
    len(bad_row) bad rows: bad_row int64 out, the row's index among rows (blank lines not
    counted); bad_start / bad_stop / bad_next int64 out: where its text starts, ends (before
    the line end) and where the next line starts. counts int64[6] out: rows, physical lines,
    bad rows (all of them), and for the first byte that is not UTF-8 (then the scan stops):
    its position (-1: none), its line (0 = the first after `lo`) and field (0-based).
    """
    n = len(data)
    cap = len(bad_row)
    rows = 0
    lines = 0
    bad = 0
    counts[3] = -1
    counts[4] = -1
    counts[5] = -1
    i = lo
    while i < n:
        start = i
        fields = 1
        quoted = False
        field_start = True
        stop = n
        nxt = n
        while True:
            # runs of plain text first: one table look-up per byte
            if quoted:
                while i < n and _INSIDE[data[i]] == 0:
                    i += 1
            else:
                j = i
                while j < n and _OUTSIDE[data[j]] == 0:
                    j += 1
                if j > i:
                    field_start = False
                    i = j
            if i >= n:
                break
            c = data[i]
            if c >= 128:
                k = _utf8_length(data, i)
                if k == 0:
                    counts[0] = rows
                    counts[1] = lines
                    counts[2] = bad
                    counts[3] = i
                    counts[4] = lines
                    counts[5] = fields - 1
                    return
                i += k
                field_start = False
            elif c == 10 or c == 13:
                stop = i
                nxt = i + 2 if c == 13 and i + 1 < n and data[i + 1] == 10 else i + 1
                break
            elif c == 34:
                if quoted:
                    if i + 1 < n and data[i + 1] == 34:
                        i += 1
                    else:
                        quoted = False
                elif field_start:
                    quoted = True
                field_start = False
                i += 1
            else:  # a comma outside quotes
                fields += 1
                field_start = True
                i += 1
        lines += 1
        if stop > start:
            if quoted or fields != width:
                if bad < cap:
                    bad_row[bad] = rows
                    bad_start[bad] = start
                    bad_stop[bad] = stop
                    bad_next[bad] = nxt
                bad += 1
            rows += 1
        i = nxt
    counts[0] = rows
    counts[1] = lines
    counts[2] = bad


@njit(cache=True, nogil=True)
def _copy_spans(data, starts, stops, out):
    """Copy data[starts[k]:stops[k]] (uint8; int64 bounds) one after the other into out."""
    at = 0
    for k in range(len(starts)):
        m = stops[k] - starts[k]
        out[at:at + m] = data[starts[k]:stops[k]]
        at += m
    return at
