"""Numba kernels of the bill run: pure functions over arrays and preallocated outputs."""

from __future__ import annotations

import numpy as np
from numba import njit

SUM_BOUND = 1 << 62  # a group sum at or past this is refused before int64 could wrap


@njit(cache=True, nogil=True)
def _rating_rows(rows, account, start, rank, n_accounts, start_lo, rank_span, out):
    """`rows` (indices of rows with accounts 0..n_accounts-1) into `out` in rating order:
    account, then start, then cdr rank (`rating.engine.rating_order`). A counting sort by
    account, then each account's rows sorted by the packed key (start - start_lo) *
    rank_span + rank, which the caller has checked fits in int64 (ranks are distinct: no
    two rows compare equal)."""
    first = np.zeros(n_accounts + 1, np.int64)
    for k in range(len(rows)):
        first[account[rows[k]] + 1] += 1
    for a in range(n_accounts):
        first[a + 1] += first[a]
    at = first[:-1].copy()
    for k in range(len(rows)):
        a = account[rows[k]]
        out[at[a]] = rows[k]
        at[a] += 1
    for a in range(n_accounts):
        lo, hi = first[a], first[a + 1]
        if hi - lo < 2:
            continue
        seg = out[lo:hi]
        key = np.empty(hi - lo, np.int64)
        for j in range(hi - lo):
            i = seg[j]
            key[j] = (start[i] - start_lo) * rank_span + rank[i]
        perm = np.argsort(key)
        sorted_rows = seg[perm]
        out[lo:hi] = sorted_rows


@njit(cache=True, nogil=True)
def _group_sums_sorted(account, service, reason, usage, rated, covered, net, n_services,
                       g_row, g_service, g_sums):
    """Add up rated rows (reason 0) of a batch in rating order (rows of an account together)
    per (account, service) into compact groups, by account then service id: g_row[j],
    g_service[j], g_sums[j] = (cdrs, usage, rated_usage, covered, net_charge). Returns the
    number of groups, or -1 when a sum reached SUM_BOUND."""
    acc = np.zeros((n_services, 5), np.int64)
    used = np.zeros(n_services, np.bool_)
    n = 0
    current = -1
    for i in range(len(account) + 1):
        a = account[i] if i < len(account) else -1
        if a != current:
            for s in range(n_services):
                if used[s]:
                    g_row[n] = current
                    g_service[n] = s
                    for c in range(5):
                        g_sums[n, c] = acc[s, c]
                        acc[s, c] = 0
                    used[s] = False
                    n += 1
            current = a
        if i == len(account) or reason[i] != 0:
            continue
        s = service[i]
        used[s] = True
        acc[s, 0] += 1
        acc[s, 1] += usage[i]
        acc[s, 2] += rated[i]
        acc[s, 3] += covered[i]
        acc[s, 4] += net[i]
        if (acc[s, 1] >= SUM_BOUND or acc[s, 2] >= SUM_BOUND or acc[s, 4] >= SUM_BOUND
                or acc[s, 4] <= -SUM_BOUND):
            return -1
    return n


@njit(cache=True, nogil=True)
def _plan_rows(account, start, seg_first, seg_start, seg_plan, out):
    """The plan of every (account row, start): that of the account's last segment starting
    at or before the start (segments by start within an account, from seg_first[a] to
    seg_first[a + 1]); -1 for an unknown account (-1) or before its first segment."""
    for i in range(len(account)):
        a = account[i]
        p = -1
        if a >= 0:
            s = start[i]
            for j in range(seg_first[a], seg_first[a + 1]):
                if seg_start[j] > s:
                    break
                p = seg_plan[j]
        out[i] = p


@njit(cache=True, nogil=True)
def _month_rows(account, start, usable, account_bcd, day_first, day_starts, day_base, out):
    """The cycle (a month number) of every usable row by its account's bill cycle day d:
    day_base[d] + the index of the last of day_starts[day_first[d]:day_first[d + 1]] (the
    cycle starts of d, ascending) at or before the start; -1 for rows not usable."""
    for i in range(len(account)):
        if not usable[i]:
            out[i] = -1
            continue
        d = account_bcd[account[i]]
        lo, hi = day_first[d], day_first[d + 1]
        s = start[i]
        while hi - lo > 1:  # day_starts[lo] <= s < day_starts[hi] (the last: past the end)
            mid = (lo + hi) // 2
            if day_starts[mid] <= s:
                lo = mid
            else:
                hi = mid
        out[i] = day_base[d] + lo - day_first[d]


@njit(cache=True, nogil=True)
def _rows_span(rows, start, rank):
    """(min start, max start, min rank, max rank) over `rows` (at least one)."""
    s_lo = s_hi = start[rows[0]]
    r_lo = r_hi = rank[rows[0]]
    for k in range(1, len(rows)):
        i = rows[k]
        s, r = start[i], rank[i]
        if s < s_lo:
            s_lo = s
        elif s > s_hi:
            s_hi = s
        if r < r_lo:
            r_lo = r
        elif r > r_hi:
            r_hi = r
    return s_lo, s_hi, r_lo, r_hi


@njit(cache=True, nogil=True)
def _fnv1a_rows(offsets, data, rows, out):
    """64-bit FNV-1a of the strings `rows` of an Arrow string array (offsets, data) into out
    (uint64, len(rows)): the digest of a CDR id, to find ids seen in earlier files."""
    for k in range(len(rows)):
        i = rows[k]
        h = np.uint64(14695981039346656037)
        for j in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[j])) * np.uint64(1099511628211)
        out[k] = h
