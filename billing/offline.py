"""Offline CDRs for the bill run: each CDR rated with the base offer active at its start, in the
cycle of its account's bill cycle day, after what online usage left (billing.md).

Columnar throughout: a file of 10M CDRs is a handful of arrays, never 10M Python objects.
Python loops run per account (plans, allowances) and per cycle found in a file, not per CDR.
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from billing import cdrs
from billing.run_kernels import (
    _fnv1a_rows,
    _group_sums_sorted,
    _month_rows,
    _plan_rows,
    _rating_rows,
    _rows_span,
)
from rating.cycles import cycle_bounds, cycle_months, cycle_name, cycle_of, month_number
from rating.engine import REASONS, Accumulators, AllowanceTable, CdrBatch, Plan, rate_batch

DUPLICATE = REASONS.index("duplicate")
_EARLIEST = -62135510400  # 0001-01-02T00:00Z: before any start a CDR may have (years 2..)
_MONTHS_LISTED = 1200  # months_of lists every cycle start of a file spanning up to this many


@contextmanager
def paused_gc():
    """The cyclic garbage collector paused (when it was on): the bill run's loops make
    millions of small acyclic objects (tuples, ints, dicts per account), and every full
    collection they trigger walks all live objects, 100,000 accounts' facts among them.
    Nothing is lost: reference counting frees them as before, the collector resumes after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def distinct(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` of an integer array (sorted, each value once), without numpy 2.4's
    hashing unique, which took 20.9 s of CPU for 10M distinct uint64 (0.19 s for 10M equal
    int64): a count per value when they span less than 2^16, else a sort and a compare
    (0.03 s and 0.8 s for the same arrays)."""
    if len(values) == 0:
        return np.unique(values)
    lo, hi = values.min(), values.max()
    if int(hi) - int(lo) < 1 << 16:
        present = np.flatnonzero(np.bincount((values - lo).astype(np.int64)))
        return present.astype(values.dtype) + lo
    s = np.sort(values)
    keep = np.empty(len(s), np.bool_)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _utc(sub: dict, key: str) -> int | None:
    v = sub.get(key)
    return None if v is None else int(v)


@dataclass
class AccountIndex:
    """The accounts of a run, one row each, and the plans their subscriptions give."""

    facts: list  # AccountFacts (accounts.snapshot), row order
    row: dict[str, int]
    names: pa.Array
    bcd: np.ndarray  # int32 per row
    plans: list[Plan]
    seg_first: np.ndarray  # int64[rows + 1]: row r's segments are seg_first[r]..seg_first[r+1]
    seg_start: np.ndarray  # int64 per segment: UTC s it starts (ascending within a row)
    seg_plan: np.ndarray  # int32: plan index of the segment, -1 none (no_offer)

    @classmethod
    @paused_gc()
    def build(cls, catalog, facts: list) -> AccountIndex:
        from accounts.plans import active_on, plan_at
        from rating.cycles import local_date

        plan_ids: dict[tuple, int] = {}
        plans: list[Plan] = []
        starts: list[int] = []
        seg_plan: list[int] = []
        first = [0]
        days: dict[int, str] = {}  # UTC s -> its local date (accounts share their dates)
        # plan_at's answer depends only on which offers are active that day, in order
        by_active: dict[tuple, int] = {}
        for f in facts:
            subs = list(f.subscriptions)
            cuts = {_EARLIEST}
            for s in subs:
                for k in ("from_utc", "to_utc"):
                    t = _utc(s, k)
                    if t is not None:
                        cuts.add(t)
            for t in sorted(cuts):
                pid = -1
                if subs:
                    day = days.get(t)
                    if day is None:
                        day = days[t] = local_date(t, catalog.timezone).isoformat()
                    active = tuple(s["offer"] for s in subs if active_on(s, day))
                    pid = by_active.get(active)
                    if pid is None:
                        p = plan_at(catalog, subs, t)
                        pid = -1
                        if p.tariff is not None:
                            pid = plan_ids.setdefault((p.tariff, p.discounts), len(plans))
                            if pid == len(plans):
                                plans.append(Plan(p.tariff, p.discounts))
                        by_active[active] = pid
                starts.append(t)
                seg_plan.append(pid)
            first.append(len(starts))
        return cls(
            facts=facts,
            row={f.id: r for r, f in enumerate(facts)},
            names=pa.array([f.id for f in facts], pa.string()),
            bcd=np.array([f.bill_cycle_day for f in facts], np.int32),
            plans=plans or [Plan(next(iter(catalog.tariffs)))],
            seg_first=np.array(first, np.int64),
            seg_start=np.array(starts, np.int64),
            seg_plan=np.array(seg_plan, np.int32),
        )

    def plan_of(self, account: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The plan index of every (account row, start): the base offer active at the start's
        local date; -1 for an unknown account or when no base offer is active."""
        out = np.empty(len(account), np.int32)
        _plan_rows(account, start, self.seg_first, self.seg_start, self.seg_plan, out)
        return out

    def months_of(self, account: np.ndarray, start: np.ndarray, usable: np.ndarray,
                  timezone: str) -> np.ndarray:
        """The cycle (a month number) of every CDR by its account's bill cycle day; -1 for
        rows not usable. The cycle starts of each bill cycle day over the file's span are
        listed once (`rating.cycles`), then each row is looked up among its day's."""
        out = np.full(len(start), -1, np.int64)
        if not usable.any():
            return out
        s = start[usable]
        lo, hi = int(s.min()), int(s.max())
        days = distinct(self.bcd[account[usable]]).tolist()
        span = {d: (month_number(cycle_of(lo, d, timezone)),
                    month_number(cycle_of(hi, d, timezone))) for d in days}
        if max(b - a for a, b in span.values()) > _MONTHS_LISTED:
            bcd = np.where(account >= 0, self.bcd[np.maximum(account, 0)], 0)
            for day in days:
                rows = usable & (bcd == day)
                out[rows] = cycle_months(start[rows], np.ones(int(rows.sum()), bool),
                                         timezone, int(day))
            return out
        day_first = np.zeros(33, np.int64)
        day_base = np.zeros(32, np.int64)
        starts: list[int] = []
        for d in range(32):
            if d in span:
                a, b = span[d]
                day_base[d] = a
                starts.extend(cycle_bounds(cycle_name(m), d, timezone)[0]
                              for m in range(a, b + 1))
            day_first[d + 1] = len(starts)
        _month_rows(account, start, usable, self.bcd, day_first,
                    np.array(starts, np.int64), day_base, out)
        return out


class _Bucket(NamedTuple):
    """An allowance bucket as the bill run rates from it (what `consumption_key` reads)."""

    id: str
    service: str | None
    remaining: int
    valid_from: int
    valid_to: int | None
    priority: int
    dest: tuple[str, ...] | None


@dataclass
class Standing:
    """The state a cycle's offline CDRs are rated from, and left in: accumulators and the
    allowance buckets (remaining units), every account of the run."""

    acc: Accumulators
    allowances: AllowanceTable
    bucket_ids: list[str]  # per allowance bucket, in table order

    def state_of(self, row: int, compiled) -> str:
        return self.states([row], compiled)[0]

    def states(self, rows: list[int], compiled) -> list[str]:
        """The state JSON of each account row of `rows`: its accumulators (non-zero ones) and
        its allowance buckets' remaining units."""
        tiers = self.acc.tier_usage[rows].tolist()
        discs = self.acc.discount_basis[rows].tolist()
        offsets = self.allowances.offsets.tolist()
        remaining = self.allowances.remaining.tolist()
        ids = self.bucket_ids
        # json.dumps({"allow": .., "disc": .., "tier": ..}, sort_keys=True,
        # separators=(",", ":")) written out: keys in sorted order, names escaped as it does
        enc = json.encoder.encode_basestring_ascii
        tier_keys = _sorted_keys(compiled.service_names)
        disc_keys = _sorted_keys(compiled.discount_names)
        out = []
        for k, row in enumerate(rows):
            lo, hi = offsets[row], offsets[row + 1]
            allow = ",".join(f"{enc(i)}:{v}" for i, v in sorted(
                dict(zip(ids[lo:hi], remaining[lo:hi], strict=True)).items()))
            t, d = tiers[k], discs[k]
            tier = ",".join(f"{name}:{t[j]}" for j, name in tier_keys if t[j])
            disc = ",".join(f"{name}:{d[j]}" for j, name in disc_keys if d[j])
            out.append(f'{{"allow":{{{allow}}},"disc":{{{disc}}},"tier":{{{tier}}}}}')
        return out


def _sorted_keys(names) -> list[tuple[int, str]]:
    """(index, JSON text) of each name, in the order json.dumps(sort_keys=True) writes them."""
    enc = json.encoder.encode_basestring_ascii
    return [(j, enc(name)) for j, name in sorted(enumerate(names), key=lambda x: x[1])]


def initial_standing(catalog, compiled, index: AccountIndex, cycle: str,
                     saved: dict[str, str]) -> Standing:
    """The standing of `cycle` before this file: an account's saved state (an earlier file of
    the cycle, `saved`: account -> state JSON) or else what online usage left: the cycle's
    counters and allowance buckets in Redis, the catalog's full allowances where online usage
    never touched them. Buckets in consumption order: soonest expiry, then offer position (the
    Lua scripts' rule, `accounts.snapshot.consumption_order`)."""
    from accounts.snapshot import allowance_buckets, consumption_key

    n = len(index.facts)
    acc = Accumulators.zeros(compiled, n)
    offsets = [0]
    service, remaining, vfrom, vto, doff, dids, ids = [], [], [], [], [0], [], []
    tz = catalog.timezone
    service_id, discount_id = compiled.service_id, compiled.discount_id
    dest_ids: dict[tuple, list[int]] = {}  # a bucket's destination names -> their ids
    for r, f in enumerate(index.facts):
        raw = saved.get(f.id)
        state = None if raw is None else json.loads(raw)
        if state is not None:
            for s, v in state["tier"].items():
                if s in service_id:
                    acc.tier_usage[r, service_id[s]] = v
            for d, v in state["disc"].items():
                if d in discount_id:
                    acc.discount_basis[r, discount_id[d]] = v
        else:
            for k, v in f.counters.items():
                c, _, rest = k.partition("|")
                if c != cycle:
                    continue
                kind, _, name = rest.partition("|")
                if kind == "tier" and name in service_id:
                    acc.tier_usage[r, service_id[name]] = int(v)
                elif kind == "disc" and name in discount_id:
                    acc.discount_basis[r, discount_id[name]] = int(v)
        online = None
        mine = []
        for b in allowance_buckets(f.subscriptions, cycle, f.bill_cycle_day, tz):
            left, vf, vt = b.remaining, b.valid_from, b.valid_to
            if state is not None:
                left = state["allow"].get(b.id, left)
            else:
                if online is None:
                    online = {x.id: x for x in f.buckets}
                held = online.get(b.id)
                if held is not None:  # what online usage left (units held count as used)
                    left, vf, vt = held.remaining - held.reserved, held.valid_from, held.valid_to
            mine.append(_Bucket(b.id, b.service, left, vf, vt, b.priority, b.dest))
        if len(mine) > 1:
            mine.sort(key=consumption_key)  # accounts.snapshot.consumption_order
        for b in mine:
            known = None
            if b.dest is not None:
                known = dest_ids.get(b.dest)
                if known is None:
                    known = dest_ids[b.dest] = [compiled.destination_id[d] for d in b.dest
                                                if d in compiled.destination_id]
                if not known:
                    # a destination list naming nothing (or only names the catalog lost)
                    # covers nothing, as in the Lua scripts; the kernel reads an empty
                    # range as "any", so the bucket is left out
                    continue
            ids.append(b.id)
            service.append(service_id.get(b.service, -2))
            remaining.append(max(0, b.remaining))
            vfrom.append(b.valid_from)
            vto.append(b.valid_to)
            if known:
                dids.extend(known)
            doff.append(len(dids))
        offsets.append(len(ids))
    table = AllowanceTable(
        offsets=np.array(offsets, np.int64), service=np.array(service, np.int32),
        remaining=np.array(remaining, np.int64), valid_from=np.array(vfrom, np.int64),
        valid_to=np.array(vto, np.int64), dest_offsets=np.array(doff, np.int64),
        dest_ids=np.array(dids, np.int32))
    return Standing(acc, table, ids)


@dataclass
class CycleUsage:
    """What one cycle's CDRs of a file add up to, per account and service (rated rows)."""

    cycle: str
    late: bool  # the cycle was final: its CDRs become adjustments of a later cycle
    group_row: np.ndarray  # int32 account row of each (account, service) group, ascending
    group_service: np.ndarray  # int32 service id (ascending within an account)
    group_sums: np.ndarray  # int64[groups, 5]: cdrs, usage, rated_usage, covered, net_charge
    late_rows: list[tuple[str, int, int, int]]  # (cdr_id, row, service id, net) for late ones
    touched: np.ndarray  # account rows with rated CDRs in the cycle, ascending
    standing: Standing
    saved: frozenset  # accounts whose state of the cycle was saved before this file
    digests: np.ndarray  # uint64, sorted, unique: the cdr ids of the rated rows (FNV-1a)

    @property
    def groups(self) -> dict[tuple[int, int], tuple[int, int, int, int, int]]:
        """(row, service id) -> (cdrs, usage, rated_usage, covered, net_charge)."""
        return {(r, s): tuple(v) for r, s, v in zip(
            self.group_row.tolist(), self.group_service.tolist(), self.group_sums.tolist(),
            strict=True)}


@dataclass
class FileRating:
    rows: int
    rated: int
    rejected: dict[str, int]  # reason -> count (ids rated by an earlier file not counted)
    cycles: list[CycleUsage]
    seen_before: int = 0  # rows whose id an earlier file (or import of this one) rated

    @property
    def retry(self) -> int:
        """Rejected rows that a later run may rate (once the account, subscription, service
        or rate exists)."""
        return sum(self.rejected.get(r, 0) for r in RETRYABLE)


RETRYABLE = ("unknown_account", "unknown_service", "no_destination", "no_rate", "no_offer")


def _take_sorted(batch, rows: np.ndarray, *, in_place: bool):
    """The usable rows `rows` of `batch`, in that order (rating order), as a batch: in place
    (each column replaced in turn, so that no second copy of the batch is ever whole) or as a
    new one. Their cdr ranks become 0, 1, 2, ... (the order they are in: the engine only
    orders by them) and their pre-reasons 0 (they are usable): two columns not gathered."""
    out = batch if in_place else CdrBatch(**{f: None for f in batch.__dataclass_fields__})
    for f in batch.__dataclass_fields__:
        if f == "cdr_rank":
            value = np.arange(len(rows), dtype=np.int64)
        elif f == "pre_reason":
            value = np.zeros(len(rows), np.int8)
        else:
            value = getattr(batch, f)[rows]
        setattr(out, f, value)
    return out


def rating_rows(batch, rows: np.ndarray, n_accounts: int) -> np.ndarray:
    """`rows` of `batch` (all with an account row) in rating order: account, start, cdr rank
    (`rating.engine.rating_order`)."""
    rows = rows.astype(np.int64, copy=False)
    if len(rows) == 0:
        return rows
    s_lo, s_hi, r_lo, r_hi = (int(v) for v in _rows_span(rows, batch.start, batch.cdr_rank))
    span = r_hi + 1
    if r_lo < 0 or (s_hi - s_lo + 1) * span >= 1 << 62:
        order = np.lexsort((batch.cdr_rank[rows], batch.start[rows], batch.account[rows]))
        return rows[order]
    out = np.empty(len(rows), np.int64)
    _rating_rows(rows, batch.account, batch.start, batch.cdr_rank, n_accounts, s_lo, span, out)
    return out


@paused_gc()
def rate_file(catalog, compiled, index: AccountIndex, table: pa.Table, *, cycle_status,
              saved_states, seen_digests=None) -> FileRating:
    """Rate one CDR table for the bill run. `cycle_status(cycle) -> 'final' | other`,
    `saved_states(cycle) -> {account: state JSON}` and `seen_digests(cycle) -> sorted uint64`
    (the digests of the cdr ids earlier files rated in the cycle: a CDR with one of them is
    a duplicate, rating.md) read the database.

    Each cycle's rows are taken once, in rating order, so the engine reads them in place
    (nothing sorted or gathered in it) and the sums per account are runs of rows."""
    names = index.names
    parsed = cdrs.parse_cdrs(
        table, compiled,
        accounts=cdrs.AccountPlans(names, np.zeros(len(names), np.int32), index.plans))
    b = parsed.batch
    b.plan = index.plan_of(b.account, b.start)
    usable = (b.pre_reason == 0) & (b.account >= 0)
    months = index.months_of(b.account, b.start, usable, catalog.timezone)
    del usable
    reasons = np.bincount(b.pre_reason[b.pre_reason != 0].astype(np.int64),
                          minlength=len(REASONS)).astype(np.int64)
    reasons[0] = 0
    out: list[CycleUsage] = []
    n_services = len(compiled.service_names)
    n_accounts = len(index.facts)
    found = distinct(months[months >= 0]).tolist()
    id_off, id_data = cdrs._string_buffers(parsed.table.column("cdr_id"))
    seen_before = 0
    for m in found:
        rows = rating_rows(b, np.flatnonzero(months == m), n_accounts)
        cycle = cycle_name(int(m))
        digest = np.empty(len(rows), np.uint64)
        _fnv1a_rows(id_off, id_data, rows, digest)
        seen = seen_digests(cycle) if seen_digests is not None else None
        if seen is not None and len(seen):
            at = np.minimum(np.searchsorted(seen, digest), len(seen) - 1)
            dup = seen[at] == digest
            if dup.any():
                seen_before += int(dup.sum())
                rows, digest = rows[~dup], digest[~dup]
        late = cycle_status(cycle) == "final"
        saved = saved_states(cycle)
        standing = initial_standing(catalog, compiled, index, cycle, saved)
        last = m == found[-1]
        if last:  # the file's batch is not needed after this one
            del months
        sub = _take_sorted(b, rows, in_place=last)
        rated = rate_batch(compiled, sub, index.plans, standing.acc, standing.allowances)
        reasons += np.bincount(rated.reason.astype(np.int64), minlength=len(REASONS))
        reasons[0] = 0  # rated rows are counted from the groups
        size = min(len(rows), n_accounts * n_services)
        g_row, g_service = np.empty(size, np.int32), np.empty(size, np.int32)
        g_sums = np.empty((size, 5), np.int64)
        n = _group_sums_sorted(sub.account, sub.service, rated.reason, sub.usage,
                               rated.rated_usage, rated.covered, rated.net_charge, n_services,
                               g_row, g_service, g_sums)
        if n < 0:
            raise cdrs.CdrFileError("a sum of usage or charges per account reaches 2^62: "
                                    "the file is refused")
        late_rows = []
        if late:
            ok = np.flatnonzero(rated.reason == 0)
            ids = parsed.table.column("cdr_id").take(pa.array(rows[ok])).to_pylist()
            late_rows = [(cid, int(sub.account[k]), int(sub.service[k]),
                          int(rated.net_charge[k])) for cid, k in zip(ids, ok, strict=True)]
        digests = distinct(digest[rated.reason == 0])
        del sub, rated, rows, digest
        touched = distinct(g_row[:n])
        out.append(CycleUsage(cycle, late, g_row[:n].copy(), g_service[:n].copy(),
                              g_sums[:n].copy(), late_rows, touched, standing,
                              frozenset(saved), digests))
    n_rated = sum(int(c.group_sums[:, 0].sum()) for c in out)
    rejected = {REASONS[k]: int(v) for k, v in enumerate(reasons.tolist()) if k and v}
    if seen_before:
        rejected["duplicate"] = rejected.get("duplicate", 0) + seen_before
    return FileRating(table.num_rows, n_rated, rejected, out, seen_before)


def warm_up(catalog, compiled) -> None:
    """Load every numba kernel that rating a file for the bill run uses (from numba's on-disk
    cache; compiled there on the first run after an install or a change of the kernels'
    files, several seconds) by rating two made-up CDRs of a made-up account on the catalog's
    first base offer. Reads and writes nothing."""
    from datetime import date

    from accounts.snapshot import AccountFacts
    from rating.cycles import local_midnight_utc

    base = next((o.name for o in catalog.offers.values() if o.tariff is not None), None)
    since = local_midnight_utc(date(2000, 1, 1), catalog.timezone)
    subs = [] if base is None else [{"offer": base, "from": "2000-01-01", "to": None,
                                     "from_utc": since, "to_utc": None, "base": True,
                                     "allow": []}]
    facts = [AccountFacts("w", catalog.currency, "active", None, 0, 0, 1, None, subs, (), {})]
    service = compiled.service_names[0] if compiled.service_names else ""
    rows = {"cdr_id": ["w1", "w2"], "account": ["w", "w"], "service": [service, service],
            "start": ["2024-01-02T00:00:00Z", "2024-01-02T00:00:00Z"], "usage": ["1", "2"],
            "destination": ["", ""]}
    table = pa.table({c: pa.array(v, pa.string()) for c, v in rows.items()})
    rate_file(catalog, compiled, AccountIndex.build(catalog, facts), table,
              cycle_status=lambda c: None, saved_states=lambda c: {},
              seen_digests=lambda c: np.zeros(1, np.uint64))


__all__ = ["AccountIndex", "CycleUsage", "FileRating", "Standing", "initial_standing",
           "distinct", "month_number", "paused_gc", "rate_file", "warm_up"]
