"""Catalog compiler: a validated `Catalog` to the flat int arrays the rating kernels read.

Owns the array layout (column constants below are shared with `rating.kernels`), the digit
trie for longest-prefix match, the timezone day table and the minute-of-week band table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rating import tz
from rating.model import Catalog

INT64_MAX = np.iinfo(np.int64).max
METHOD_CODES = {"half_up": 0, "up": 1, "down": 2}
MINUTES_PER_WEEK = 7 * 1440
# 10**6 entries per head table (8 MB): one read resolves the first six digits of a number,
# which holds every prefix of a usual catalog; measured 44 -> 340 M lookups/s against 4 digits
# and a trie walk, since the Zipf-popular regions of the table stay cached
HEAD_DIGITS = 6
# Below this bound a float64 holds an integer exactly, so x / d can be computed through a
# precomputed reciprocal and corrected exactly (kernels._fdiv): several times faster than idiv.
EXACT_FLOAT = 2**53
# A rated CDR's charge stays below this many micro-units (about 9e9 currency units, the bound
# the accounts layer keeps on balances), and its rated usage below this many units: every sum
# and product the kernels form from them then fits int64. A CDR that would go beyond is
# malformed (E_USAGE_MAX).
CHARGE_BOUND = 2**53
# Standings (a tier accumulator, a discount basis: units, or micro-units for basis=charge)
# stay below this: a CDR whose accumulation would bring one to it is rejected as `overflow`
# and changes nothing, so a standing is never a wrapped-around int64 and always fits a
# double exactly (the online node keeps them in Redis).
STANDING_BOUND = 2**53

# entry_tab columns (int64[n_entries, E_COLS]). The rounded charge of an exact numerator `num`
# (value num / per micro) is ((num * rmul + E_RBIAS) // E_RDIV) * step, rmul = ROUND_MUL[method];
# E_NUMLIM bounds num so that this stays below EXACT_FLOAT (the fast path). An entry of one
# flat tier (no `upto`) has its price in E_FLAT_PRICE and in E_FLAT_MAX the most units whose
# numerator, connect fee included, stays within E_NUMLIM; other entries have E_FLAT_MAX -1.
# E_USAGE_MAX is the largest usage the entry rates (see `usage_limit`): a larger one is
# malformed, so that the kernel pays one compare for the overflow rule.
E_SERVICE, E_DEST, E_BAND, E_PER, E_FIRST, E_NEXT, E_CONNECT, E_TIER_LO, E_TIER_HI = range(9)
E_RBIAS, E_RDIV, E_NUMLIM, E_FLAT_PRICE, E_FLAT_MAX, E_USAGE_MAX = 9, 10, 11, 12, 13, 14
E_COLS = 15
# entry_inv columns (float64[n_entries, 2]): 1 / next, 1 / E_RDIV
EI_NEXT, EI_RDIV = 0, 1
# tier_tab columns (int64[n_tiers, 3]): upto (exclusive, last = INT64 max), price micro per
# `per`, and the largest part of a tier whose price * part stays below EXACT_FLOAT
T_UPTO, T_PRICE, T_PARTLIM = 0, 1, 2
# disc_tab columns (int64[n_discounts, 4]); basis 0 = usage, 1 = charge
D_SERVICE, D_BASIS, D_TIER_LO, D_TIER_HI = range(4)
# dtier_tab columns (int64[n_discount_tiers, 6]): from, percent as num / den with den
# already multiplied by 100, so that discount = charge * num / den; then as for entries the
# rounding of charge * num: ((charge * num * rmul + DT_RBIAS) // DT_RDIV) * step, valid while
# charge <= DT_CHLIM. dtier_inv: float64[n_discount_tiers] = 1 / DT_RDIV.
DT_FROM, DT_NUM, DT_DEN, DT_RBIAS, DT_RDIV, DT_CHLIM = range(6)
# rounding as one floor division: half_up (2a + S) // 2S, up (a + S - 1) // S, down a // S
ROUND_MUL = (2, 1, 1)


@dataclass(frozen=True)
class EntryInfo:
    tariff: str
    service: str
    index: int  # position of the entry in the catalog's list for (tariff, service)


@dataclass
class CompiledCatalog:
    """Arrays for the kernels plus the name <-> id maps the Python layer needs."""

    catalog: Catalog
    decimals: int
    method: int  # METHOD_CODES value
    step: int  # 10 ** (6 - decimals): micro-units per smallest rounded unit
    service_id: dict[str, int]
    service_names: list[str]
    tariff_id: dict[str, int]
    tariff_names: list[str]
    discount_id: dict[str, int]
    discount_names: list[str]
    destination_id: dict[str, int]
    destination_names: list[str]
    band_id: dict[str, int]
    band_names: list[str]
    entries: list[EntryInfo]
    trie_child: np.ndarray  # int32[n_nodes, 10]: child node per digit, -1 none; node 0 = root
    trie_dest: np.ndarray  # int32[n_nodes]: destination id of the prefix ending here, -1 none
    max_prefix_len: int
    head_len: int  # digits resolved at once by the head tables: min(max_prefix_len, HEAD_DIGITS)
    head_node: np.ndarray  # int32[10 ** head_len]: trie node after those digits, -1 when it
    #   fell off the trie or no longer prefix continues from there (head_best is then final)
    head_best: np.ndarray  # int16 (int32 beyond 32767 destinations)[10 ** head_len]: the
    #   longest-prefix destination within them; narrow so that more of the table stays cached
    transition_utc: np.ndarray  # int64[n]: UTC instants of offset changes, sorted
    offset_s: np.ndarray  # int32[n]: UTC offset in force from transition_utc[i]
    day_off: np.ndarray  # int32[tz.N_DAYS]: offset at 00:00 UTC of each day since 1970
    day_trans: np.ndarray  # int64[tz.N_DAYS]: transition in the day / NO_ / MULTI_TRANSITION
    day_off_after: np.ndarray  # int32[tz.N_DAYS]: offset after that transition
    band_of_minute: np.ndarray  # int16[10080 + 1440]: band id per local minute of week (mon
    #   00:00 = 0), its first day repeated at the end so that a week start plus up to a day
    #   of minutes needs no modulo
    day_week_s: np.ndarray  # int32[tz.N_DAYS]: local second of the week at 00:00 UTC of the
    #   day, under day_off; day_week_s_after: the same under day_off_after
    day_week_s_after: np.ndarray
    ts_lo: np.ndarray  # int32[n_tariffs, n_services]: first entry row of (tariff, service)
    ts_hi: np.ndarray  # int32[n_tariffs, n_services]: end row (exclusive); lo == hi: not listed
    entry_lut: np.ndarray  # int32[n_tariffs, n_services, n_dests + 1, n_bands + 1]: the first
    #   matching entry row per (destination id + 1, band id + 1), -1 none (no_rate)
    entry_tab: np.ndarray  # int64[n_entries, E_COLS]
    entry_inv: np.ndarray  # float64[n_entries, 2]
    tier_tab: np.ndarray  # int64[n_tiers, 3]
    disc_tab: np.ndarray  # int64[n_discounts, 4]
    dtier_tab: np.ndarray  # int64[n_discount_tiers, 6]
    dtier_inv: np.ndarray  # float64[n_discount_tiers]


def _build_trie(prefixes: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, int]:
    child = [[-1] * 10]
    dest = [-1]
    for digits, did in prefixes:
        node = 0
        for ch in digits:
            d = ord(ch) - 48
            if child[node][d] < 0:
                child[node][d] = len(child)
                child.append([-1] * 10)
                dest.append(-1)
            node = child[node][d]
        dest[node] = did
    maxlen = max((len(p) for p, _ in prefixes), default=0)
    return np.array(child, dtype=np.int32), np.array(dest, dtype=np.int32), maxlen


def _head_tables(child: np.ndarray, dest: np.ndarray, head_len: int):
    """Walk the trie once for every `head_len`-digit string, so that a kernel resolves the
    first digits of a number with one table read instead of a digit-by-digit walk."""
    node = np.zeros(10**head_len, dtype=np.int32)
    best = np.full(10**head_len, dest[0], dtype=np.int32)
    for k in range(head_len):
        digit = (np.arange(10**head_len) // 10 ** (head_len - 1 - k)) % 10
        alive = node >= 0
        node[alive] = child[node[alive], digit[alive]]
        alive = node >= 0
        here = np.where(alive, dest[np.maximum(node, 0)], -1)
        best = np.where(here >= 0, here, best).astype(np.int32)
    leaf = np.all(child < 0, axis=1)  # nodes no longer prefix continues from
    node[node >= 0] = np.where(leaf[node[node >= 0]], -1, node[node >= 0])
    return node, best


def _week_seconds(day_offset: np.ndarray) -> np.ndarray:
    """Local second of the week (monday 00:00 = 0) at 00:00 UTC of each day of the day table
    under the given offsets; 1970-01-01 was a thursday, 3 days after a monday."""
    utc = (np.arange(len(day_offset), dtype=np.int64) + tz.FIRST_DAY) * 86400
    return ((utc + day_offset + 3 * 86400) % (7 * 86400)).astype(np.int32)


def _band_table(cat: Catalog) -> np.ndarray:
    table = np.full(MINUTES_PER_WEEK, -1, dtype=np.int16)
    # fill in reverse file order so that the first matching band ends up on top
    for bid in range(len(cat.time_bands) - 1, -1, -1):
        b = cat.time_bands[bid]
        for day in b.days:
            table[day * 1440 + b.start_minute : day * 1440 + b.end_minute] = bid
    return np.concatenate([table, table[:1440]])


def _rounding(den: int, step: int, method: int) -> tuple[int, int, int]:
    """(bias, divisor, numerator limit) that round num / den micro-units to a multiple of
    `step` as one floor division: ((num * ROUND_MUL[method] + bias) // divisor) * step, exact
    through a float reciprocal while num <= limit (see kernels._fdiv)."""
    s = den * step
    mul = ROUND_MUL[method]
    bias = (s, s - 1, 0)[method]
    return bias, mul * s, max((EXACT_FLOAT - 1 - bias) // mul, 0)


def usage_limit(per: int, first: int, nxt: int, connect_fee: int, max_price: int, step: int,
                method: int) -> int:
    """The largest usage an entry rates: its rated usage stays below CHARGE_BOUND units and
    its charge at the entry's highest tier price `max_price`, connect fee included, rounded
    as the catalog rounds, below CHARGE_BOUND micro-units. It is itself a rated usage (0,
    first, first + k * next), so usage <= limit exactly when rated usage <= limit.

    The rounded charge of rated r is round_div(connect * per + max_price * r, per * step) *
    step; it is below the bound exactly when that quotient is at most q = (bound - 1) //
    step, i.e. when the numerator is at most `top` below (per method)."""
    m, q = per * step, (CHARGE_BOUND - 1) // step
    top = ((m * (2 * q + 1) - 1) // 2, m * q, m * (q + 1) - 1)[method]  # half_up, up, down
    room = top - connect_fee * per
    rated_max = CHARGE_BOUND - 1
    if room < 0:
        rated_max = 0
    elif max_price > 0:
        rated_max = min(rated_max, room // max_price)
    if rated_max < first:
        return 0
    return first + (rated_max - first) // nxt * nxt


def _inverses(divisors: np.ndarray) -> np.ndarray:
    return 1.0 / np.maximum(divisors, 1).astype(np.float64)


def compile_catalog(cat: Catalog) -> CompiledCatalog:
    """Flatten a validated catalog into arrays (see `CompiledCatalog` for each one)."""
    method = METHOD_CODES[cat.rounding.method]
    step = 10 ** (6 - cat.rounding.decimals)
    service_names = list(cat.services)
    service_id = {n: i for i, n in enumerate(service_names)}
    tariff_names = list(cat.tariffs)
    tariff_id = {n: i for i, n in enumerate(tariff_names)}
    discount_names = list(cat.discounts)
    discount_id = {n: i for i, n in enumerate(discount_names)}
    destination_names = list(cat.destinations)
    destination_id = {n: i for i, n in enumerate(destination_names)}
    band_names = [b.name for b in cat.time_bands]
    band_id = {n: i for i, n in enumerate(band_names)}

    trie_child, trie_dest, maxlen = _build_trie(
        [(p, destination_id[name]) for name, ps in cat.destinations.items() for p in ps]
    )
    head_len = min(maxlen, HEAD_DIGITS)
    head_node, head_best = _head_tables(trie_child, trie_dest, head_len)
    if len(destination_names) < 2**15:
        head_best = head_best.astype(np.int16)
    trans, offs = tz.transitions(cat.timezone)
    day_off, day_trans, day_after = tz.day_table(trans, offs)

    ts_lo = np.zeros((len(tariff_names), len(service_names)), dtype=np.int32)
    ts_hi = np.zeros_like(ts_lo)
    rows, tiers, infos = [], [], []
    for tname, by_service in cat.tariffs.items():
        for sname, entries in by_service.items():
            t, s = tariff_id[tname], service_id[sname]
            ts_lo[t, s] = len(rows)
            for k, e in enumerate(entries):
                tlo = len(tiers)
                tiers.extend((INT64_MAX if x.upto is None else x.upto, x.price,
                              EXACT_FLOAT // max(x.price, 1)) for x in e.tiers)
                bias, div, lim = _rounding(e.per, step, method)
                flat_price, flat_max = 0, -1
                if len(e.tiers) == 1:
                    flat_price = e.tiers[0].price
                    room = lim - e.connect_fee * e.per
                    if room >= 0:
                        flat_max = room // flat_price if flat_price else INT64_MAX
                rows.append((
                    s,
                    -1 if e.destination is None else destination_id[e.destination],
                    -1 if e.band is None else band_id[e.band],
                    e.per, e.first, e.next, e.connect_fee, tlo, len(tiers), bias, div, lim,
                    flat_price, flat_max,
                    usage_limit(e.per, e.first, e.next, e.connect_fee,
                                max(x.price for x in e.tiers), step, method),
                ))
                infos.append(EntryInfo(tname, sname, k))
            ts_hi[t, s] = len(rows)
    # first-match entry per (destination, band) computed once, so a kernel never scans entries
    entry_lut = np.full((len(tariff_names), len(service_names), len(destination_names) + 1,
                         len(band_names) + 1), -1, dtype=np.int32)
    for t in range(len(tariff_names)):
        for s in range(len(service_names)):
            for e in range(ts_hi[t, s] - 1, ts_lo[t, s] - 1, -1):  # reversed: first wins
                d, b = rows[e][1], rows[e][2]
                ds = slice(None) if d == -1 else d + 1
                bs = slice(None) if b == -1 else b + 1
                entry_lut[t, s, ds, bs] = e
    disc_rows, dtiers = [], []
    for d in cat.discounts.values():
        lo = len(dtiers)
        for x in d.tiers:
            num, den = x.percent.numerator, x.percent.denominator * 100
            bias, div, lim = _rounding(den, step, method)
            dtiers.append((x.start, num, den, bias, div, lim // max(num, 1)))
        disc_rows.append((service_id[d.service], 0 if d.basis == "usage" else 1, lo, len(dtiers)))

    def tab(rows_, cols):
        return np.array(rows_, dtype=np.int64).reshape(len(rows_), cols)

    entry_tab = tab(rows, E_COLS)
    dtier_tab = tab(dtiers, 6)

    return CompiledCatalog(
        catalog=cat,
        decimals=cat.rounding.decimals, method=method, step=step,
        service_id=service_id, service_names=service_names,
        tariff_id=tariff_id, tariff_names=tariff_names,
        discount_id=discount_id, discount_names=discount_names,
        destination_id=destination_id, destination_names=destination_names,
        band_id=band_id, band_names=band_names,
        entries=infos,
        trie_child=trie_child, trie_dest=trie_dest, max_prefix_len=maxlen,
        head_len=head_len, head_node=head_node, head_best=head_best,
        transition_utc=trans, offset_s=offs,
        day_off=day_off, day_trans=day_trans, day_off_after=day_after,
        band_of_minute=_band_table(cat),
        day_week_s=_week_seconds(day_off), day_week_s_after=_week_seconds(day_after),
        ts_lo=ts_lo, ts_hi=ts_hi, entry_lut=entry_lut,
        entry_tab=entry_tab, entry_inv=_inverses(entry_tab[:, [E_NEXT, E_RDIV]]),
        tier_tab=tab(tiers, 3), disc_tab=tab(disc_rows, 4),
        dtier_tab=dtier_tab, dtier_inv=_inverses(dtier_tab[:, DT_RDIV]),
    )
