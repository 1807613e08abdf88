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
HEAD_DIGITS = 4  # 10**4 entries per head table: small enough to stay in cache

# entry_tab columns (int64[n_entries, E_COLS])
E_SERVICE, E_DEST, E_BAND, E_PER, E_FIRST, E_NEXT, E_CONNECT, E_TIER_LO, E_TIER_HI = range(9)
E_COLS = 9
# tier_tab columns (int64[n_tiers, 2]): upto (exclusive, last = INT64 max), price micro per `per`
T_UPTO, T_PRICE = 0, 1
# disc_tab columns (int64[n_discounts, 4]); basis 0 = usage, 1 = charge
D_SERVICE, D_BASIS, D_TIER_LO, D_TIER_HI = range(4)
# dtier_tab columns (int64[n_discount_tiers, 3]): from, percent as num / den with den
# already multiplied by 100, so that discount = charge * num / den
DT_FROM, DT_NUM, DT_DEN = range(3)


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
    head_node: np.ndarray  # int32[10 ** head_len]: trie node after those digits, -1 fell off
    head_best: np.ndarray  # int32[10 ** head_len]: longest-prefix destination within them
    transition_utc: np.ndarray  # int64[n]: UTC instants of offset changes, sorted
    offset_s: np.ndarray  # int32[n]: UTC offset in force from transition_utc[i]
    day_off: np.ndarray  # int32[tz.N_DAYS]: offset at 00:00 UTC of each day since 1970
    day_trans: np.ndarray  # int64[tz.N_DAYS]: transition in the day / NO_ / MULTI_TRANSITION
    day_off_after: np.ndarray  # int32[tz.N_DAYS]: offset after that transition
    band_of_minute: np.ndarray  # int16[10080]: band id per local minute of week (mon 00:00 = 0)
    ts_lo: np.ndarray  # int32[n_tariffs, n_services]: first entry row of (tariff, service)
    ts_hi: np.ndarray  # int32[n_tariffs, n_services]: end row (exclusive); lo == hi: not listed
    entry_lut: np.ndarray  # int32[n_tariffs, n_services, n_dests + 1, n_bands + 1]: the first
    #   matching entry row per (destination id + 1, band id + 1), -1 none (no_rate)
    entry_tab: np.ndarray  # int64[n_entries, E_COLS]
    tier_tab: np.ndarray  # int64[n_tiers, 2]
    disc_tab: np.ndarray  # int64[n_discounts, 4]
    dtier_tab: np.ndarray  # int64[n_discount_tiers, 3]


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
    return node, best


def _band_table(cat: Catalog) -> np.ndarray:
    table = np.full(MINUTES_PER_WEEK, -1, dtype=np.int16)
    # fill in reverse file order so that the first matching band ends up on top
    for bid in range(len(cat.time_bands) - 1, -1, -1):
        b = cat.time_bands[bid]
        for day in b.days:
            table[day * 1440 + b.start_minute : day * 1440 + b.end_minute] = bid
    return table


def compile_catalog(cat: Catalog) -> CompiledCatalog:
    """Flatten a validated catalog into arrays (see `CompiledCatalog` for each one)."""
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
                tiers.extend((INT64_MAX if x.upto is None else x.upto, x.price) for x in e.tiers)
                rows.append((
                    s,
                    -1 if e.destination is None else destination_id[e.destination],
                    -1 if e.band is None else band_id[e.band],
                    e.per, e.first, e.next, e.connect_fee, tlo, len(tiers),
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
            dtiers.append((x.start, x.percent.numerator, x.percent.denominator * 100))
        disc_rows.append((service_id[d.service], 0 if d.basis == "usage" else 1, lo, len(dtiers)))

    def tab(rows_, cols):
        return np.array(rows_, dtype=np.int64).reshape(len(rows_), cols)

    return CompiledCatalog(
        catalog=cat,
        decimals=cat.rounding.decimals,
        method=METHOD_CODES[cat.rounding.method],
        step=10 ** (6 - cat.rounding.decimals),
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
        ts_lo=ts_lo, ts_hi=ts_hi, entry_lut=entry_lut,
        entry_tab=tab(rows, E_COLS), tier_tab=tab(tiers, 2),
        disc_tab=tab(disc_rows, 4), dtier_tab=tab(dtiers, 3),
    )
