"""Numba rating kernels: pure functions over the compiled catalog's int arrays.

Owns the rating arithmetic (rated usage, graduated tiers, step discounts, the one rounding)
and the lookups (prefix trie, UTC offset, band); the two batch passes (`_resolve_rows`, then
`_price_sorted`) and the scalar functions used online share these helpers, so a session
costs exactly what its CDR costs. Speed notes (measured with benchmarks/kernel_profile.py):
divisions by per-entry constants go through float reciprocals (`_fdiv`), indices known to
be >= 0 are made unsigned (`_ix`), and helpers are inlined into NRT-free kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rating.compiler import (
    D_BASIS,
    D_SERVICE,
    D_TIER_HI,
    D_TIER_LO,
    DT_CHLIM,
    DT_DEN,
    DT_FROM,
    DT_NUM,
    DT_RBIAS,
    DT_RDIV,
    E_CONNECT,
    E_FIRST,
    E_FLAT_MAX,
    E_FLAT_PRICE,
    E_NEXT,
    E_NUMLIM,
    E_PER,
    E_RBIAS,
    E_RDIV,
    E_SERVICE,
    E_TIER_HI,
    E_TIER_LO,
    E_USAGE_MAX,
    EI_NEXT,
    EI_RDIV,
    EXACT_FLOAT,
    ROUND_MUL,
    STANDING_BOUND,
    T_PARTLIM,
    T_PRICE,
    T_UPTO,
)
from rating.tz import MULTI_TRANSITION, N_DAYS

# reason codes, indices into engine.REASONS
R_MALFORMED, R_UNKNOWN_ACCOUNT, R_UNKNOWN_SERVICE = 1, 3, 4
R_NO_DESTINATION, R_NO_RATE, R_NO_OFFER, R_OVERFLOW = 5, 6, 7, 8
MAX_DIGITS = 18
# global arrays are frozen into the compiled code by numba
POW10 = np.array([10**k for k in range(19)], dtype=np.int64)
INV_POW10 = 1.0 / POW10.astype(np.float64)
ROUND_MULS = np.array(ROUND_MUL, dtype=np.int64)
_U_DAY, _U_MINUTE, _U_N_DAYS = np.uint64(86400), np.uint64(60), np.uint64(N_DAYS)

# Helpers are inlined into their callers at numba IR level: a helper that stays a call costs
# more than the work it does (its arrays travel as dozens of scalar arguments, and reference
# counting adds ~20 ns per call). Inlined into a kernel compiled with reference counting, the
# increfs/decrefs of the inlined array aliases land inside the loop, so the batch kernels,
# which allocate nothing, are compiled without NRT (`_nrt=False`, a private numba option):
# measured on the prefix lookup, 28 M/s inlined with NRT, 116 M/s as a call, 292 M/s inlined
# without NRT.
_helper = njit(cache=True, inline="always")
_batch_kernel = njit(cache=True, _nrt=False)


@_helper
def _ix(k):
    """`k` as an unsigned index: numba then skips the negative-index wrap-around (a sign test
    and a load of the array's shape) on every access; for values known to be >= 0 only."""
    return np.uint64(k)


@_helper
def _fdiv(x, d, inv):
    """floor(x / d) for 0 <= x < EXACT_FLOAT and d >= 1, with inv = 1.0 / d: the float
    estimate is off by at most 2 there, and the remainder corrects it exactly."""
    q = np.int64(x * inv)
    r = x - q * d
    while r < 0:
        q -= 1
        r += d
    while r >= d:
        q += 1
        r -= d
    return q


@_helper
def _round_parts(whole, frac, den, step, method):
    """Round the exact non-negative value ``whole + frac / den`` micro-units to a multiple of
    `step` micro-units; 0 <= frac < den. method 0 half_up, 1 up, 2 down (as money.round_div)."""
    q = whole // step
    num = (whole - q * step) * den + frac  # remainder in units of 1/den micro, < step * den
    if method == 0:
        if 2 * num >= step * den:
            q += 1
    elif method == 1:
        if num > 0:
            q += 1
    return q * step


@_helper
def _rated_usage(usage, first, nxt, inv_next):
    """Usage rounded up to the increments [first, next]; 0 stays 0. inv_next = 1.0 / nxt.
    Written without a branch on usage <= first (which voice CDRs take about half the time):
    below `first` the quotient is 0."""
    over = usage - first
    x = (over if over > 0 else 0) + nxt - 1
    q = _fdiv(x, nxt, inv_next) if x < EXACT_FLOAT else x // nxt
    return first + q * nxt if usage > 0 else 0


@_helper
def _lookup_dest(dest, dest_len, trie_child, trie_dest, max_len, head_len, head_node,
                 head_best):
    """Longest-prefix destination id of the number `dest` (`dest_len` digits), -1 none.

    trie_child: int32[n_nodes, 10] child per digit; trie_dest: int32[n_nodes] destination id
    of the prefix ending at a node (node 0 is the empty prefix); head_node/head_best:
    int32[10 ** head_len], the trie node reached after the first head_len digits (-1 when
    nothing longer can match) and the best destination within them."""
    x = dest
    n = dest_len
    best = trie_dest[0]
    node = 0
    if head_len > 0 and n >= head_len:
        k = n - head_len
        top = _fdiv(x, POW10[_ix(k)], INV_POW10[_ix(k)])  # x < 10**18: top < 10**6, exact
        best = head_best[_ix(top)]
        if max_len == head_len or k == 0:
            return best
        node = head_node[top]
        if node < 0:
            return best
        x -= top * POW10[k]
        n = k
        max_len -= head_len
    if n > max_len:  # digits beyond the longest prefix cannot change the match
        x //= POW10[n - max_len]
        n = max_len
    for k in range(n - 1, -1, -1):  # rare: numbers shorter than the head, long prefixes
        node = trie_child[node, (x // POW10[k]) % 10]
        if node < 0:
            break
        d = trie_dest[node]
        if d >= 0:
            best = d
    return best


@_helper
def _utc_offset(t, day_off, day_trans, day_after, transition_utc, offset_s):
    """UTC offset (seconds) at UTC instant `t`: O(1) through the per-day table (see tz.py),
    binary search over transition_utc/offset_s outside it or on a day with several changes."""
    d = t // 86400
    if d >= 0 and d < N_DAYS:
        tt = day_trans[d]
        if tt != MULTI_TRANSITION:
            if t < tt:
                return day_off[d]
            return day_after[d]
    lo, hi = 0, transition_utc.shape[0]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if transition_utc[mid] <= t:
            lo = mid
        else:
            hi = mid
    return offset_s[lo]


@_helper
def _band_at(t, day_trans, day_week_s, day_week_s_after, day_off, day_after, transition_utc,
             offset_s, band_of_minute):
    """Band id at UTC instant `t` from band_of_minute: int16[10080 + 1440] (local minute of
    week, monday 00:00 = 0, first day repeated); -1 when no band matches. day_week_s /
    day_week_s_after: int32[N_DAYS] local second of week at 00:00 UTC of each day before /
    after its transition, so that a day with at most one change needs no offset arithmetic."""
    if t >= 0:
        # unsigned: division by a constant without the fix-ups of Python's floor division
        # (measured 306 -> 717 M/s for this function alone)
        ut = np.uint64(t)
        d = ut // _U_DAY
        if d < _U_N_DAYS:
            tt = day_trans[d]
            if tt != MULTI_TRANSITION:
                base = np.uint64(day_week_s[d] if t < tt else day_week_s_after[d])
                return band_of_minute[(base + ut - d * _U_DAY) // _U_MINUTE]
    local = t + _utc_offset(t, day_off, day_trans, day_after, transition_utc, offset_s)
    week = (local + 3 * 86400) % (7 * 86400)  # 1970-01-01 was a thursday; monday = 0
    return band_of_minute[week // 60]


@_helper
def _charge(e, uncovered, standing, connect, entry_tab, entry_inv, tier_tab, step, method):
    """Rounded charge (micro) of `uncovered` rated units of entry row `e`, graduated from the
    accumulated `standing`; plus the connect fee when `connect`. Zero units cost nothing.

    entry_tab: int64[n_entries, E_COLS]; entry_inv: float64[n_entries, 2]; tier_tab:
    int64[n_tiers, 3] (upto exclusive, price, part limit of the fast path). Callers keep
    `uncovered` within E_USAGE_MAX, so the charge stays below CHARGE_BOUND and, with the
    catalog's price * per < 2**60 and per <= 2**40, every product below fits int64."""
    if uncovered <= 0:
        return 0
    per = entry_tab[e, E_PER]
    # fast path: the exact numerator connect * per + sum(price * part) fits a float exactly,
    # so one division by a per-entry constant rounds it
    num = entry_tab[e, E_CONNECT] * per if connect else 0
    if uncovered <= entry_tab[e, E_FLAT_MAX]:  # one flat tier, the usual case: bounds known
        x = (num + entry_tab[e, E_FLAT_PRICE] * uncovered) * ROUND_MULS[method] \
            + entry_tab[e, E_RBIAS]
        return _fdiv(x, entry_tab[e, E_RDIV], entry_inv[e, EI_RDIV]) * step
    numlim = entry_tab[e, E_NUMLIM]
    end = standing + uncovered
    prev = 0
    fast = num <= numlim
    for t in range(entry_tab[e, E_TIER_LO], entry_tab[e, E_TIER_HI]):
        if not fast:
            break
        upto = tier_tab[_ix(t), T_UPTO]
        a = standing if standing > prev else prev
        b = end if end < upto else upto
        if b > a:
            part = b - a
            if part > tier_tab[_ix(t), T_PARTLIM]:
                fast = False
            else:
                num += tier_tab[_ix(t), T_PRICE] * part  # each term < 2**53: no overflow
                fast = num <= numlim
        if upto >= end:
            break
        prev = upto
    if fast:
        x = num * ROUND_MULS[method] + entry_tab[e, E_RBIAS]
        return _fdiv(x, entry_tab[e, E_RDIV], entry_inv[e, EI_RDIV]) * step
    whole = entry_tab[e, E_CONNECT] if connect else 0
    frac = 0  # exact value = whole + frac / per, frac kept below per
    prev = 0
    for t in range(entry_tab[e, E_TIER_LO], entry_tab[e, E_TIER_HI]):
        upto = tier_tab[t, T_UPTO]
        a = standing if standing > prev else prev
        b = end if end < upto else upto
        if b > a:
            part = b - a
            price = tier_tab[t, T_PRICE]
            q = part // per
            whole += price * q  # split so that price * part never overflows
            frac += price * (part - q * per)
            if frac >= per:
                c = frac // per
                whole += c
                frac -= c * per
        if upto >= end:
            break
        prev = upto
    return _round_parts(whole, frac, per, step, method)


@_helper
def _discount_amount(d, standing, charge, disc_tab, dtier_tab, dtier_inv, step, method):
    """Rounded discount (micro) of discount row `d` on `charge`, at the percent of the tier in
    which the accumulated basis `standing` stands. disc_tab: int64[n, 4]; dtier_tab:
    int64[m, 6] (from, num, den, rounding bias, divisor, charge limit) with percent / 100 =
    num / den; dtier_inv: float64[m]. No overflow for any charge below CHARGE_BOUND: a
    percent has at most 6 decimals, so num <= den <= 10**8, b * num < 10**16 and the products
    of `_round_parts` stay below step * den <= 10**14."""
    lo = disc_tab[d, D_TIER_LO]
    t = lo
    for k in range(lo + 1, disc_tab[d, D_TIER_HI]):
        if dtier_tab[_ix(k), DT_FROM] > standing:
            break
        t = k
    tu = _ix(t)
    num = dtier_tab[tu, DT_NUM]
    if charge <= dtier_tab[tu, DT_CHLIM]:
        # no test for num == 0 or charge == 0 needed: x is then the bias, below the divisor
        x = charge * num * ROUND_MULS[method] + dtier_tab[tu, DT_RBIAS]
        return _fdiv(x, dtier_tab[tu, DT_RDIV], dtier_inv[tu]) * step
    if num == 0:
        return 0
    den = dtier_tab[tu, DT_DEN]
    a = charge // den
    b = charge - a * den
    bn = b * num
    c = bn // den
    return _round_parts(a * num + c, bn - c * den, den, step, method)


@_helper
def _fits(standing, more):
    """True when `standing` (0 <= standing < STANDING_BOUND) can grow by `more` (>= 0) and
    stay below STANDING_BOUND; written so that nothing overflows."""
    return more < STANDING_BOUND - standing


@_helper
def _cover(lo, hi, svc, t, dn, need, al_service, al_remaining, al_from, al_to, al_doff,
           al_dids, take):
    """What remains of `need` rated units after the allowance buckets lo..hi (of the CDR's
    account, in consumption order) that match service `svc`, start `t` and destination id
    `dn`; the units are taken from al_remaining only when `take`, so that a first call can
    find what a CDR would take and a second, with the same arguments, take it."""
    for j in range(lo, hi):
        if need == 0:
            break
        if al_service[j] != svc or al_remaining[j] <= 0:
            continue
        if t < al_from[j] or t >= al_to[j]:
            continue
        dlo = al_doff[j]
        dhi = al_doff[j + 1]
        if dhi > dlo:
            found = False
            for m in range(dlo, dhi):
                if al_dids[m] == dn:
                    found = True
                    break
            if not found:
                continue
        got = min(al_remaining[j], need)
        if take:
            al_remaining[j] -= got
        need -= got
    return need


@njit(cache=True)
def _price_one(e, uncovered, standing, connect, disc_ids, disc_standing,
               entry_tab, entry_inv, tier_tab, disc_tab, dtier_tab, dtier_inv, step, method):
    """Scalar price: (charge, discount, over) of one CDR; disc_ids: int64[k] discount rows
    listed for the account, disc_standing: int64[k] their accumulated bases (all standings
    within 0..STANDING_BOUND - 1). Discounts of another service do not apply; their sum never
    exceeds the charge. `over` is -1, or the standing the CDR would bring to STANDING_BOUND
    (what `_price_sorted` rejects as overflow): 0 the tier standing, 1 + k disc_standing[k]."""
    charge = _charge(e, uncovered, standing, connect, entry_tab, entry_inv, tier_tab, step,
                     method)
    svc = entry_tab[e, E_SERVICE]
    disc = 0
    over = -1 if _fits(standing, uncovered) else 0
    for k in range(disc_ids.shape[0]):
        d = disc_ids[k]
        if disc_tab[d, D_SERVICE] == svc:
            disc += _discount_amount(d, disc_standing[k], charge, disc_tab, dtier_tab,
                                     dtier_inv, step, method)
            grow = uncovered if disc_tab[d, D_BASIS] == 0 else charge
            if over < 0 and not _fits(disc_standing[k], grow):
                over = 1 + k
    return charge, min(disc, charge), over


@njit(cache=True)
def _rated_one(e, usage, entry_tab, entry_inv):
    """Scalar rated usage of `usage` units under entry row `e`."""
    return _rated_usage(usage, entry_tab[e, E_FIRST], entry_tab[e, E_NEXT], entry_inv[e, EI_NEXT])


@njit(cache=True)
def _resolve_one(tariff, svc, t, dest, dest_len, trie_child, trie_dest, max_len,
                 head_len, head_node, head_best,
                 day_off, day_trans, day_after, transition_utc, offset_s, band_of_minute,
                 day_week_s, day_week_s_after, ts_lo, ts_hi, entry_lut):
    """(reason, entry row, destination id, band id) of one CDR for a tariff row and service."""
    if svc < 0 or ts_lo[tariff, svc] == ts_hi[tariff, svc]:
        return R_UNKNOWN_SERVICE, -1, -1, -1
    dn = -1
    if dest_len > 0:
        dn = _lookup_dest(dest, dest_len, trie_child, trie_dest, max_len,
                          head_len, head_node, head_best)
        if dn < 0:
            return R_NO_DESTINATION, -1, -1, -1
    band = _band_at(t, day_trans, day_week_s, day_week_s_after, day_off, day_after,
                    transition_utc, offset_s, band_of_minute)
    e = entry_lut[tariff, svc, dn + 1, band + 1]
    return (R_NO_RATE if e < 0 else 0), e, dn, band


@_batch_kernel
def _resolve_rows(account, plan, service, start, usage, dest, dest_len, pre_reason,
                  trie_child, trie_dest, max_len, head_len, head_node, head_best,
                  day_off, day_trans, day_after, transition_utc, offset_s, band_of_minute,
                  day_week_s, day_week_s_after, ts_lo, ts_hi, entry_lut, entry_tab,
                  plan_tariff, reason, dest_name, band_out, entry):
    """First pass, in row order (no accumulator is involved): reason, destination, band and
    rate entry of every CDR. A pass of its own keeps few arrays live, so the loop runs from
    registers instead of spilled pointers.

    Inputs per CDR (length n): account int32 (accumulator row, -1 unknown), plan int32 (row
    of plan_tariff int32[p], -1 none), service int32, start int64 UTC s, usage int64, dest
    int64, dest_len int8, pre_reason int8 (kept when not 0). Catalog arrays as in
    CompiledCatalog (entry_lut gives the entry per tariff, service, destination + 1, band + 1;
    entry_tab's E_USAGE_MAX the largest usage the entry rates: beyond it the charge could
    reach CHARGE_BOUND, and the CDR is malformed). Outputs: reason int8, dest_name int32,
    band_out int32 (both -1 unless rated or no_rate), entry int32 or int64 (-1 unless rated;
    rate_batch passes its charge column, which `_price_sorted` then overwrites)."""
    for i in range(account.shape[0]):
        r = pre_reason[i]
        dn = -1
        b = -1
        e = -1
        if r == 0:
            n = dest_len[i]
            if usage[i] < 0 or n < 0 or n > MAX_DIGITS or dest[i] < 0:
                r = R_MALFORMED
            elif account[i] < 0:
                r = R_UNKNOWN_ACCOUNT
            elif plan[i] < 0:
                r = R_NO_OFFER
            else:
                svc = service[i]
                tar = _ix(plan_tariff[_ix(plan[i])])
                if svc < 0 or ts_lo[tar, _ix(svc)] == ts_hi[tar, _ix(svc)]:
                    r = R_UNKNOWN_SERVICE
                else:
                    if n > 0:
                        dn = _lookup_dest(dest[i], n, trie_child, trie_dest, max_len,
                                          head_len, head_node, head_best)
                        if dn < 0:
                            r = R_NO_DESTINATION
                    if r == 0:
                        b = _band_at(start[i], day_trans, day_week_s, day_week_s_after,
                                     day_off, day_after, transition_utc, offset_s,
                                     band_of_minute)
                        e = entry_lut[tar, _ix(svc), _ix(dn + 1), _ix(b + 1)]
                        if e < 0:
                            r = R_NO_RATE
                        elif usage[i] > entry_tab[_ix(e), E_USAGE_MAX]:
                            r = R_MALFORMED
                            dn = -1
                            b = -1
                            e = -1
        reason[i] = r
        dest_name[i] = dn
        band_out[i] = b
        entry[i] = e


@_batch_kernel
def _price_sorted(order, account, plan, service, start, usage, entry,
                  entry_tab, entry_inv, tier_tab, disc_tab, dtier_tab, dtier_inv, step, method,
                  ps_off, ps_dids, tier_usage, disc_basis,
                  al_off, al_service, al_remaining, al_from, al_to, al_doff, al_dids,
                  reason, dest_name, band, rated, covered, charge, discount, net):
    """Second pass, in rating order `order` (int64[n], rows sorted by account, start, cdr
    id; empty when the rows already are in that order, which saves reading it): allowances,
    charge and discounts of the CDRs `_resolve_rows` gave an entry (>= 0); the others get
    zeros.

    Per CDR as in `_resolve_rows`, plus its outputs reason, dest_name, band and entry.
    Discounts of the plan that apply to a service: ps_off int64[p * n_services + 1] (by plan
    * n_services + service) over ps_dids int32[...] discount rows, in the plan's order.
    Accumulators updated in place: tier_usage int64[a, n_services], disc_basis int64[a,
    n_discounts], all within 0..STANDING_BOUND - 1. Allowance buckets (CSR by account: al_off
    int64[a + 1]; per bucket al_service, al_remaining (updated), al_from, al_to, al_doff
    int64[b + 1] over al_dids destination ids, empty = any). Outputs at the CDR's own row:
    rated, covered, charge, discount, net int64; `covered` must come zero-filled (np.zeros:
    pages never written cost nothing), only the rows allowances covered are written; `entry`
    may be the `charge` array itself (each row is read before it is written).

    Every discount reads its basis as it stood before the CDR, then the bases grow. A CDR
    that would bring the tier standing or a basis to STANDING_BOUND is rejected: reason
    R_OVERFLOW, dest_name and band -1, zeros, and no accumulator or bucket changes."""
    n_services = tier_usage.shape[1]
    in_order = order.shape[0] == 0
    for k in range(account.shape[0]):
        i = _ix(k) if in_order else _ix(order[k])
        e = entry[i]
        if e < 0:
            rated[i] = 0
            charge[i] = 0
            discount[i] = 0
            net[i] = 0
            continue
        eu = _ix(e)
        acc = _ix(account[i])
        svc = _ix(service[i])
        ru = _rated_usage(usage[i], entry_tab[eu, E_FIRST], entry_tab[eu, E_NEXT],
                          entry_inv[eu, EI_NEXT])
        alo = al_off[acc]
        ahi = al_off[_ix(account[i] + 1)]
        need = _cover(alo, ahi, svc, start[i], dest_name[i], ru, al_service, al_remaining,
                      al_from, al_to, al_doff, al_dids, False)
        cov = ru - need
        standing = tier_usage[acc, svc]
        ch = _charge(eu, need, standing, cov == 0, entry_tab, entry_inv, tier_tab,
                     step, method)
        fits = _fits(standing, need)
        disc = 0
        ps = plan[i] * n_services + service[i]
        plo = ps_off[_ix(ps)]
        phi = ps_off[_ix(ps + 1)]
        for m in range(plo, phi):
            d = _ix(ps_dids[m])
            basis = disc_basis[acc, d]
            disc += _discount_amount(d, basis, ch, disc_tab, dtier_tab, dtier_inv, step,
                                     method)
            fits = fits and _fits(basis, need if disc_tab[d, D_BASIS] == 0 else ch)
        if not fits:
            reason[i] = R_OVERFLOW
            dest_name[i] = -1
            band[i] = -1
            rated[i] = 0
            charge[i] = 0
            discount[i] = 0
            net[i] = 0
            continue
        for m in range(plo, phi):
            d = _ix(ps_dids[m])
            disc_basis[acc, d] += need if disc_tab[d, D_BASIS] == 0 else ch
        if cov != 0:
            _cover(alo, ahi, svc, start[i], dest_name[i], ru, al_service, al_remaining,
                   al_from, al_to, al_doff, al_dids, True)
        disc = min(disc, ch)
        tier_usage[acc, svc] = standing + need
        rated[i] = ru
        if cov != 0:
            covered[i] = cov
        charge[i] = ch
        discount[i] = disc
        net[i] = ch - disc


@njit(cache=True)
def _is_sorted(account, start, rank):
    """True when rows are already in (account, start, rank) order."""
    for i in range(1, account.shape[0]):
        a0 = account[i - 1]
        a1 = account[i]
        if a1 > a0:
            continue
        if a1 < a0:
            return False
        if start[i] > start[i - 1]:
            continue
        if start[i] < start[i - 1] or rank[i] < rank[i - 1]:
            return False
    return True


@njit(cache=True)
def _min_max3(a, b, c):
    """(min, max) of each of three int32 arrays of the same length n > 0, in one pass."""
    alo = ahi = a[0]
    blo = bhi = b[0]
    clo = chi = c[0]
    for i in range(a.shape[0]):
        alo = min(alo, a[i])
        ahi = max(ahi, a[i])
        blo = min(blo, b[i])
        bhi = max(bhi, b[i])
        clo = min(clo, c[i])
        chi = max(chi, c[i])
    return alo, ahi, blo, bhi, clo, chi
