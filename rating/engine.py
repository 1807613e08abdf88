"""The rating engine API: columnar batches and scalar price look-ups over a compiled catalog.

Owns input validation and conversion (names to ids, destinations to digits, sorting into
rating order); the arithmetic itself lives in `rating.kernels`, shared by both paths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rating import kernels as K
from rating.compiler import CHARGE_BOUND, D_SERVICE, E_USAGE_MAX, STANDING_BOUND, CompiledCatalog
from rating.money import format_money

REASONS = ("", "malformed", "duplicate", "unknown_account", "unknown_service",
           "no_destination", "no_rate", "no_offer", "overflow")  # reason code = index; 0 = rated
assert REASONS.index("overflow") == K.R_OVERFLOW
MAX_DIGITS = K.MAX_DIGITS


@dataclass
class CdrBatch:
    """Columnar CDRs, all arrays of the same length n (see the field comments for dtypes)."""

    account: np.ndarray  # int32 row into the accumulators, -1 unknown
    plan: np.ndarray  # int32 index into the `plans` list passed to rate_batch, -1 none
    service: np.ndarray  # int32 compiled service id, -1 unknown service name
    start: np.ndarray  # int64 UTC epoch seconds
    usage: np.ndarray  # int64 >= 0
    dest: np.ndarray  # int64 destination digits as integer (0 when empty)
    dest_len: np.ndarray  # int8 number of digits, 0 = empty destination
    cdr_rank: np.ndarray  # int64 tie-break of CDRs starting in the same whole second: the
    #   rank of (fraction of the second, cdr_id), the id in lexicographic order
    pre_reason: np.ndarray  # int8 reason found by the caller; 0 = none; left alone


@dataclass
class Plan:
    tariff: str
    discounts: tuple[str, ...] = ()


@dataclass
class Accumulators:
    """Per-cycle accumulators; rows = accounts."""

    tier_usage: np.ndarray  # int64[n_accounts, n_services] uncovered rated usage so far
    discount_basis: np.ndarray  # int64[n_accounts, n_discounts] basis so far (units or micro)

    @classmethod
    def zeros(cls, compiled: CompiledCatalog, n_accounts: int) -> Accumulators:
        return cls(
            np.zeros((n_accounts, len(compiled.service_names)), dtype=np.int64),
            np.zeros((n_accounts, len(compiled.discount_names)), dtype=np.int64),
        )


@dataclass
class AllowanceTable:
    """Unit buckets for a bill run, CSR by account row, each account's in consumption order."""

    offsets: np.ndarray  # int64[n_accounts + 1]
    service: np.ndarray  # int32[n]
    remaining: np.ndarray  # int64[n], updated in place by rate_batch
    valid_from: np.ndarray  # int64[n] UTC seconds; a CDR start in [from, to) may use it
    valid_to: np.ndarray  # int64[n]
    dest_offsets: np.ndarray  # int64[n + 1] ranges of dest_ids; an empty range = any
    dest_ids: np.ndarray  # int32 destination-name ids


@dataclass
class RatedBatch:
    """Results in the same order as the input batch."""

    reason: np.ndarray  # int8 (0 rated)
    dest_name: np.ndarray  # int32 destination-name id, -1 none
    band: np.ndarray  # int32 band id, -1 none
    rated_usage: np.ndarray  # int64
    covered: np.ndarray  # int64 units taken from allowances
    charge: np.ndarray  # int64 micro, rounded
    discount: np.ndarray  # int64 micro, rounded
    net_charge: np.ndarray  # int64 micro


@dataclass(frozen=True)
class Resolution:
    reason: int
    entry: int
    dest_name: int
    band: int


@dataclass(frozen=True)
class Price:
    charge: int
    discount: int
    net: int


@dataclass(frozen=True)
class Quote:
    reason: str
    destination_name: str | None
    band: str | None
    rated_usage: int
    charge: str
    discount: str
    net_charge: str


_BATCH_DTYPES = {
    "account": np.int32, "plan": np.int32, "service": np.int32, "start": np.int64,
    "usage": np.int64, "dest": np.int64, "dest_len": np.int8, "cdr_rank": np.int64,
    "pre_reason": np.int8,
}
_ALLOWANCE_DTYPES = {
    "offsets": np.int64, "service": np.int32, "remaining": np.int64, "valid_from": np.int64,
    "valid_to": np.int64, "dest_offsets": np.int64, "dest_ids": np.int32,
}


def _check(obj, name: str, field: str, dtype, shape=None) -> np.ndarray:
    a = getattr(obj, field)
    if not isinstance(a, np.ndarray) or a.dtype != dtype:
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name}.{field}: expected a numpy {np.dtype(dtype).name} array, got {got}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}.{field}: expected shape {shape}, got {a.shape}")
    return a


def encode_destination(digits: str) -> tuple[int, int] | None:
    """``"0049151"`` -> (49151, 7); ``""`` -> (0, 0); None when not 0..18 ASCII digits."""
    if digits == "":
        return 0, 0
    if len(digits) > MAX_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits), len(digits)


def compile_plans(compiled: CompiledCatalog, plans: list[Plan]):
    """Plans to (plan_tariff int32[p], plan_doff int64[p+1], plan_dids int32[...])."""
    tariff = np.empty(len(plans), dtype=np.int32)
    doff = np.zeros(len(plans) + 1, dtype=np.int64)
    dids: list[int] = []
    for i, p in enumerate(plans):
        if p.tariff not in compiled.tariff_id:
            raise ValueError(f"plans[{i}].tariff: unknown tariff {p.tariff!r}")
        tariff[i] = compiled.tariff_id[p.tariff]
        for k, name in enumerate(p.discounts):
            if name not in compiled.discount_id:
                raise ValueError(f"plans[{i}].discounts: unknown discount {name!r}")
            if name in p.discounts[:k]:
                raise ValueError(f"plans[{i}].discounts: discount {name!r} listed twice")
            dids.append(compiled.discount_id[name])
        doff[i + 1] = len(dids)
    return tariff, doff, np.array(dids, dtype=np.int32)


def _discounts_by_service(compiled: CompiledCatalog, doff: np.ndarray, dids: np.ndarray):
    """CSR of each plan's discounts per service: (offsets int64[p * n_services + 1] by
    plan * n_services + service, discount rows int32[...]), so the kernel never looks at a
    discount of another service."""
    ns = len(compiled.service_names)
    dsvc = compiled.disc_tab[:, D_SERVICE]
    off = [0]
    rows: list[int] = []
    for p in range(len(doff) - 1):
        mine = dids[doff[p]:doff[p + 1]]
        for s in range(ns):
            rows.extend(int(d) for d in mine if dsvc[d] == s)
            off.append(len(rows))
    return np.array(off, dtype=np.int64), np.array(rows, dtype=np.int32)


def _lookup_args(c: CompiledCatalog):
    return (c.trie_child, c.trie_dest, c.max_prefix_len, c.head_len, c.head_node, c.head_best,
            c.day_off, c.day_trans, c.day_off_after, c.transition_utc, c.offset_s,
            c.band_of_minute, c.day_week_s, c.day_week_s_after, c.ts_lo, c.ts_hi, c.entry_lut)


def _price_args(c: CompiledCatalog):
    return (c.entry_tab, c.entry_inv, c.tier_tab, c.disc_tab, c.dtier_tab, c.dtier_inv,
            c.step, c.method)


def rating_order(batch: CdrBatch) -> np.ndarray:
    """Row indices in rating order: account, then start, then cdr id rank."""
    if K._is_sorted(batch.account, batch.start, batch.cdr_rank):
        return np.arange(len(batch.account), dtype=np.int64)
    return _sort_order(batch)


def _sort_order(batch: CdrBatch) -> np.ndarray:
    """The rating order of rows known not to be in it already."""
    if len(batch.account) == 0:
        return np.zeros(0, dtype=np.int64)
    # One argsort over a packed (account, start, rank) key is several times faster than a
    # three-key lexsort; it applies whenever the three ranges fit in 63 bits together.
    acc = batch.account.astype(np.int64) + 1  # -1 (unknown) sorts first, as in lexsort
    start_lo, start_hi = int(batch.start.min()), int(batch.start.max())
    rank_lo, rank_hi = int(batch.cdr_rank.min()), int(batch.cdr_rank.max())
    bits_start = max(1, (start_hi - start_lo).bit_length())
    bits_rank = max(1, (rank_hi - rank_lo).bit_length())
    if int(acc.max()).bit_length() + bits_start + bits_rank <= 63:
        key = acc << np.int64(bits_start + bits_rank)
        key |= (batch.start - np.int64(start_lo)) << np.int64(bits_rank)
        key |= batch.cdr_rank - np.int64(rank_lo)
        # equal keys only come from rows sharing a cdr_id rank (duplicates, which the kernel
        # skips), so an unstable sort cannot change any rated result
        return np.argsort(key).astype(np.int64, copy=False)
    return np.lexsort((batch.cdr_rank, batch.start, batch.account)).astype(np.int64)


def rate_batch(compiled: CompiledCatalog, batch: CdrBatch, plans: list[Plan],
               acc: Accumulators, allowances: AllowanceTable | None = None) -> RatedBatch:
    """Rate a batch; results come back in input order. `acc` (and `allowances.remaining`)
    are updated in place. The result never depends on the order of the input rows."""
    n = len(batch.account) if isinstance(batch.account, np.ndarray) else -1
    for f, dt in _BATCH_DTYPES.items():
        _check(batch, "batch", f, dt, (n,) if n >= 0 else None)
    n_acc = acc.tier_usage.shape[0] if isinstance(acc.tier_usage, np.ndarray) else 0
    _check(acc, "acc", "tier_usage", np.int64, (n_acc, len(compiled.service_names)))
    _check(acc, "acc", "discount_basis", np.int64, (n_acc, len(compiled.discount_names)))
    for f in ("tier_usage", "discount_basis"):
        a = getattr(acc, f)
        if a.size and (a.min() < 0 or a.max() >= STANDING_BOUND):
            raise ValueError(f"acc.{f}: standings must be within 0..{STANDING_BOUND - 1}")
    alo, ahi, plo, phi, slo, shi = K._min_max3(batch.account, batch.plan, batch.service) if n \
        else (0, -1, 0, -1, 0, -1)
    if ahi >= n_acc or alo < -1:
        raise ValueError(f"batch.account: rows must be -1 or within 0..{n_acc - 1}")
    if phi >= len(plans) or plo < -1:
        raise ValueError(f"batch.plan: indices must be -1 or within 0..{len(plans) - 1}")
    if shi >= len(compiled.service_names) or slo < -1:
        raise ValueError("batch.service: ids must be -1 or compiled service ids")
    plan_tariff, plan_doff, plan_dids = compile_plans(compiled, plans)
    al = allowances if allowances is not None else empty_allowances(n_acc)
    _check(al, "allowances", "offsets", np.int64, (n_acc + 1,))
    nb = int(al.offsets[-1])
    for f in ("service", "remaining", "valid_from", "valid_to"):
        _check(al, "allowances", f, _ALLOWANCE_DTYPES[f], (nb,))
    _check(al, "allowances", "dest_offsets", np.int64, (nb + 1,))
    _check(al, "allowances", "dest_ids", np.int32, (int(al.dest_offsets[-1]),))

    out = RatedBatch(
        reason=np.empty(n, np.int8), dest_name=np.empty(n, np.int32),
        band=np.empty(n, np.int32), rated_usage=np.empty(n, np.int64),
        covered=np.zeros(n, np.int64), charge=np.empty(n, np.int64),
        discount=np.empty(n, np.int64), net_charge=np.empty(n, np.int64),
    )
    # the resolve pass leaves each row's rate entry in the charge column, which the price pass
    # reads before it writes the charge there: one array less to allocate and fill
    entry = out.charge
    b = batch
    K._resolve_rows(b.account, b.plan, b.service, b.start, b.usage, b.dest, b.dest_len,
                    b.pre_reason, *_lookup_args(compiled), compiled.entry_tab, plan_tariff,
                    out.reason, out.dest_name, out.band, entry)
    ps_off, ps_dids = _discounts_by_service(compiled, plan_doff, plan_dids)
    if K._is_sorted(b.account, b.start, b.cdr_rank):
        order = np.zeros(0, np.int64)  # the kernel reads the rows in place
    else:
        order = _sort_order(b)
    K._price_sorted(
        order, b.account, b.plan, b.service, b.start, b.usage, entry,
        *_price_args(compiled), ps_off, ps_dids, acc.tier_usage, acc.discount_basis,
        al.offsets, al.service, al.remaining, al.valid_from, al.valid_to,
        al.dest_offsets, al.dest_ids, out.reason, out.dest_name, out.band,
        out.rated_usage, out.covered, out.charge, out.discount, out.net_charge,
    )
    return out


def empty_allowances(n_accounts: int) -> AllowanceTable:
    """An allowance table with no bucket for any of `n_accounts` accounts."""
    z64 = np.zeros(0, np.int64)
    return AllowanceTable(np.zeros(n_accounts + 1, np.int64), np.zeros(0, np.int32), z64.copy(),
                          z64.copy(), z64.copy(), np.zeros(1, np.int64), np.zeros(0, np.int32))


# -- scalar path (online node, price enquiries) ---------------------------------------------

def resolve(compiled: CompiledCatalog, tariff: str, service: str, start_utc: int,
            destination: str) -> Resolution:
    """Destination, band and rate entry of one CDR; reason 0 when it can be rated."""
    if tariff not in compiled.tariff_id:
        raise ValueError(f"tariff: unknown tariff {tariff!r}")
    enc = encode_destination(destination)
    if enc is None:
        return Resolution(1, -1, -1, -1)
    svc = compiled.service_id.get(service, -1)
    c = compiled
    r, e, dn, b = K._resolve_one(
        c.tariff_id[tariff], svc, int(start_utc), enc[0], enc[1], c.trie_child, c.trie_dest,
        c.max_prefix_len, c.head_len, c.head_node, c.head_best, c.day_off, c.day_trans,
        c.day_off_after, c.transition_utc, c.offset_s, c.band_of_minute, c.day_week_s,
        c.day_week_s_after, c.ts_lo, c.ts_hi, c.entry_lut,
    )
    return Resolution(int(r), int(e), int(dn), int(b))


def _entry(compiled: CompiledCatalog, entry: int) -> int:
    if not 0 <= entry < len(compiled.entries):
        raise ValueError(f"entry: no rate entry {entry}")
    return entry


def usage_limit(compiled: CompiledCatalog, entry: int) -> int:
    """The largest usage rate entry row `entry` rates (and the largest rated usage it
    prices): beyond it the charge at the entry's highest price, connect fee included, would
    reach CHARGE_BOUND (2**53) micro-units, and `rate_batch` rejects the CDR as malformed."""
    return int(compiled.entry_tab[_entry(compiled, entry), E_USAGE_MAX])


def _check_limit(compiled: CompiledCatalog, e: int, units: int, field: str) -> None:
    limit = int(compiled.entry_tab[e, E_USAGE_MAX])
    if units > limit:
        raise ValueError(f"{field}: {units} is beyond the {limit} units this rate entry can "
                         f"charge below {CHARGE_BOUND} micro-units (a malformed CDR)")


def rated_usage(compiled: CompiledCatalog, entry: int, usage: int) -> int:
    """`usage` rounded up to the increments of rate entry row `entry`. ValueError naming
    `usage` when it is negative or beyond `usage_limit` (a CDR `rate_batch` calls malformed)."""
    e = _entry(compiled, entry)
    if usage < 0:
        raise ValueError("usage: must not be negative")
    _check_limit(compiled, e, usage, "usage")
    return int(K._rated_one(e, int(usage), compiled.entry_tab, compiled.entry_inv))


def _standing(value: int, field: str) -> int:
    if not 0 <= value < STANDING_BOUND:
        raise ValueError(f"{field}{value} is outside 0..{STANDING_BOUND - 1}")
    return int(value)


def _price(compiled: CompiledCatalog, entry: int, rated: int, tier_standing: int,
           discounts: list[tuple[int, int]], connect_fee: bool) -> tuple[Price, str]:
    """`price` and, when the CDR would bring a standing to 2**53 (what `rate_batch` rejects
    as overflow), the field naming that standing ("" when none)."""
    e = _entry(compiled, entry)
    if rated < 0:
        raise ValueError("rated: must not be negative")
    _standing(tier_standing, "tier_standing: ")
    _check_limit(compiled, e, rated, "rated")
    ids = [d for d, _ in discounts]
    for k, (d, s) in enumerate(discounts):
        if not 0 <= d < len(compiled.discount_names):
            raise ValueError("discounts: unknown discount id")
        if d in ids[:k]:
            raise ValueError(f"discounts: discount id {d} listed twice")
        _standing(s, f"discounts[{k}]: standing ")
    standing = np.array([s for _, s in discounts], dtype=np.int64)
    c = compiled
    ch, disc, over = K._price_one(
        e, int(rated), int(tier_standing), bool(connect_fee), np.array(ids, dtype=np.int64),
        standing, c.entry_tab, c.entry_inv, c.tier_tab, c.disc_tab, c.dtier_tab, c.dtier_inv,
        c.step, c.method)
    field = ("" if over < 0 else f"tier_standing: {tier_standing}" if over == 0
             else f"discounts[{over - 1}]: standing {discounts[over - 1][1]}")
    return Price(int(ch), int(disc), int(ch - disc)), field


def price(compiled: CompiledCatalog, entry: int, rated: int, tier_standing: int,
          discounts: list[tuple[int, int]], connect_fee: bool = True) -> Price:
    """Charge of `rated` (uncovered) units of entry row `entry` with the account's tier
    standing; `discounts` lists (discount id, basis standing) of the discounts listed for the
    account (others' services are ignored), each at most once. Pass connect_fee=False when
    allowances covered part of the CDR. Micro-units, rounded as the batch kernel rounds.
    ValueError naming `rated` when it is beyond `usage_limit` (the charge could reach 2**53
    micro-units), naming a standing when it is outside 0..2**53 - 1 or when this CDR would
    bring it to 2**53 (a CDR `rate_batch` rejects as overflow)."""
    p, over = _price(compiled, entry, rated, tier_standing, discounts, connect_fee)
    if over:
        raise ValueError(f"{over} would pass 2^53 with {rated} more units (overflow)")
    return p


def price_enquiry(compiled: CompiledCatalog, plan: Plan, service: str, start_utc: int,
                  destination: str, usage: int, tier_standing: int = 0,
                  discount_standing: dict[str, int] | None = None) -> Quote:
    """What `usage` would cost now under `plan`, money as decimal strings. Answers as
    `rate_batch` would: a usage beyond the entry's `usage_limit` gives reason `malformed`
    (no destination, band or amounts), like any other rejection; a negative one is a
    ValueError naming `usage`."""
    compile_plans(compiled, [plan])  # validates the names
    standing = discount_standing or {}
    for name, value in standing.items():
        if name not in compiled.discount_id:
            raise ValueError(f"discount_standing: unknown discount {name!r}")
        _standing(value, f"discount_standing: {name}: standing ")
    res = resolve(compiled, plan.tariff, service, start_utc, destination)
    dname = compiled.destination_names[res.dest_name] if res.dest_name >= 0 else None
    bname = compiled.band_names[res.band] if res.band >= 0 else None
    zero = format_money(0, compiled.decimals)
    if res.reason:
        return Quote(REASONS[res.reason], dname, bname, 0, zero, zero, zero)
    if usage < 0:
        raise ValueError("usage: must not be negative")
    if usage > compiled.entry_tab[res.entry, E_USAGE_MAX]:
        return Quote("malformed", None, None, 0, zero, zero, zero)
    ru = rated_usage(compiled, res.entry, usage)
    p, over = _price(compiled, res.entry, ru, tier_standing,
                     [(compiled.discount_id[d], standing.get(d, 0)) for d in plan.discounts], True)
    if over:
        return Quote("overflow", None, None, 0, zero, zero, zero)
    f = compiled.decimals
    return Quote("", dname, bname, ru, format_money(p.charge, f), format_money(p.discount, f),
                 format_money(p.net, f))
