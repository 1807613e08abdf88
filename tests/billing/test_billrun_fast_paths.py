"""The bill run's fast paths give what the plain ones give: the bill export written without the
generic JSON encoder is byte for byte `render.bill_json`; the rating order, plan and cycle of
every CDR computed by the run's kernels are those of `rating.engine.rating_order`,
`accounts.plans.plan_at` and `rating.cycles.cycle_months`; bulk inserts and deletes of
`billing.db` write and remove exactly the rows asked for, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from accounts.plans import plan_at
from billing import bill as B
from billing import billrun, offline, render
from billing.db import delete_in, insert_rows
from billing.models import Base
from rating.catalog import load_catalog
from rating.cycles import cycle_bounds, cycle_months
from rating.engine import CdrBatch, rating_order
from rating.money import parse_money
from tests.billing import db_fixtures

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url
CATALOG = load_catalog(Path(__file__).parents[2] / "docs" / "examples" / "catalog.yaml")
T = Base.metadata.tables


def _bill(**changes) -> dict:
    owner = B.Section("P1", {"voice": 1_234_567, "sms": 90_000},
                      [{"offer": "smart_m", "from": "2026-11-10", "to": None}], {})
    child = B.Section("K1", {"data": 5_000_000}, [{"offer": "roam_pack", "from": "2026-01-01"}],
                      {"late:2026-10:voice": 120_000})
    bill = B.build_bill(CATALOG, owner=owner, children=[child], period=B.Period.of("2026-11", 1),
                        status="draft", prepaid=False, currency="EUR")
    bill.update(changes)
    return bill


def _export(bill) -> str:
    return billrun._bill_export(bill, lambda text: parse_money(text))


@pytest.mark.parametrize("changes", [
    {},
    {"lines": []},
    {"type": "statement", "amount_due": "0.00"},
    {"account": "Zürich \"Nord\"\\\t\u2028 ☎"},  # escapes and non-ASCII as json.dumps writes them
    {"currency": "EUR", "extra": [1, {"b": None}]},  # an extra key: written by bill_json itself
], ids=["invoice", "no-lines", "statement", "escapes", "extra-key"])
def test_the_fast_export_is_byte_for_byte_bill_json(changes):
    bill = _bill(**changes)
    assert _export(bill) == render.bill_json(bill).decode()


@pytest.mark.parametrize("changes, field", [
    ({"total": "12.3.4"}, "total"),
    ({"type": "statement"}, "amount_due"),  # a statement with an amount due
    ({"cycle_days": True}, "cycle_days"),
    ({"status": "paid"}, "status"),
])
def test_a_bill_the_checks_refuse_is_refused_by_the_fast_export_too(changes, field):
    with pytest.raises(render.BillFormatError) as e:
        _export(_bill(**changes))
    assert e.value.field == field


def test_a_line_the_checks_refuse_is_refused_by_the_fast_export_too():
    bill = _bill()
    bill["lines"][0] = dict(bill["lines"][0], account="P1")  # the owner's own id as a section
    with pytest.raises(render.BillFormatError, match=r"lines\[0\]\.account"):
        _export(bill)


def _batch(rng, n, n_accounts):
    start = 1_709_251_200 + rng.integers(0, 40, n) * 3600  # many ties in start
    return CdrBatch(
        account=rng.integers(0, n_accounts, n).astype(np.int32), plan=np.zeros(n, np.int32),
        service=np.zeros(n, np.int32), start=start.astype(np.int64),
        usage=np.ones(n, np.int64), dest=np.zeros(n, np.int64), dest_len=np.zeros(n, np.int8),
        cdr_rank=rng.permutation(n).astype(np.int64), pre_reason=np.zeros(n, np.int8))


def test_rating_rows_is_the_engines_rating_order():
    rng = np.random.default_rng(5)
    b = _batch(rng, 20_000, 300)
    rows = np.flatnonzero(rng.random(20_000) < 0.7)  # a cycle's rows: a subset
    subset = CdrBatch(**{f: getattr(b, f)[rows] for f in b.__dataclass_fields__})
    assert np.array_equal(offline.rating_rows(b, rows, 300), rows[rating_order(subset)])


class _Facts:
    def __init__(self, i, subs, bcd):
        self.id, self.subscriptions, self.bill_cycle_day = f"a{i}", subs, bcd


def _subs(rng, tz):
    from datetime import date

    from rating.cycles import local_midnight_utc

    out = []
    for offer, day in (("smart_m", int(rng.integers(1, 28))), ("roam_pack", 3)):
        start = date(2024, 3, day)
        to = date(2024, 3, min(28, day + int(rng.integers(0, 20))))
        out.append({"offer": offer, "from": start.isoformat(), "to": to.isoformat(),
                    "from_utc": local_midnight_utc(start, tz), "to_utc": local_midnight_utc(to, tz)})
    if rng.random() < 0.5:
        out.append({"offer": "flat_l", "from": out[0]["to"], "to": None,
                    "from_utc": out[0]["to_utc"], "to_utc": None})
    return out


def test_plan_and_cycle_of_every_cdr_are_plan_at_and_cycle_months():
    rng = np.random.default_rng(7)
    tz = CATALOG.timezone
    facts = [_Facts(i, _subs(rng, tz), int(rng.choice([1, 15, 29, 30, 31]))) for i in range(60)]
    index = offline.AccountIndex.build(CATALOG, facts)
    n = 5_000
    account = rng.integers(-1, 60, n).astype(np.int32)  # -1: an unknown account
    lo, hi = cycle_bounds("2024-02", 1, tz)[0], cycle_bounds("2024-05", 1, tz)[1]
    start = rng.integers(lo, hi, n).astype(np.int64)  # across the end of DST in March
    plans = index.plan_of(account, start)
    for a, s, p in zip(account.tolist(), start.tolist(), plans.tolist(), strict=True):
        want = plan_at(CATALOG, facts[a].subscriptions, s) if a >= 0 else None
        if want is None or want.tariff is None:
            assert p == -1
        else:
            assert (index.plans[p].tariff, index.plans[p].discounts) == (want.tariff,
                                                                          want.discounts)
    usable = (account >= 0) & (rng.random(n) < 0.9)
    months = index.months_of(account, start, usable, tz)
    assert np.all(months[~usable] == -1)
    for bcd in {f.bill_cycle_day for f in facts}:
        rows = usable & (index.bcd[np.maximum(account, 0)] == bcd)
        assert np.array_equal(months[rows],
                              cycle_months(start[rows], np.ones(int(rows.sum()), bool), tz, bcd))


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["copy", "executemany"])
def test_insert_rows_and_delete_in_write_and_remove_exactly_the_rows_asked(db, threshold):
    lines = T["bill_lines"]
    bill = db_fixtures.add_bill(db, "A1", "2026-10", 10 * db_fixtures.EUR)
    with db.begin() as conn:
        # 'account' left out: its default '' (the owner); 'id' left out: the sequence
        assert insert_rows(conn, lines, ["bill_id", "position", "kind", "name", "amount"],
                           [(bill, i, "usage", f"s{i}", i) for i in range(6_000)],
                           copy_threshold=threshold) == 6_000
        assert insert_rows(conn, lines, ["bill_id"], []) == 0
    with db.begin() as conn:
        delete_in(conn, lines, lines.c.name, [f"s{i}" for i in range(0, 6_000, 2)] + ["none"],
                  where=lines.c.bill_id == bill)
    with db.connect() as conn:
        got = conn.execute(sa.select(sa.func.count(), sa.func.sum(lines.c.amount),
                                     sa.func.min(lines.c.account), sa.func.max(lines.c.id))
                           .select_from(lines)).one()
    # the odd positions 1, 3, ..., 5999 are left: 3,000 rows summing to 3000^2 = 9,000,000
    assert (got[0], int(got[1]), got[2], got[3]) == (3_000, 9_000_000, "", 6_000)


@pytest.mark.parametrize("values", [
    np.random.default_rng(3).integers(0, 2**63, 50_000, dtype=np.int64).view(np.uint64),
    np.random.default_rng(4).integers(-5, 40, 50_000).astype(np.int32),
    np.array([24_291] * 1_000 + [24_290], np.int64),
    np.zeros(0, np.int32),
], ids=["digests", "small-range", "months", "empty"])
def test_distinct_is_np_unique(values):
    got, want = offline.distinct(values), np.unique(values)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_distinct_of_a_few_large_digests():
    values = np.array([2**64 - 1, 2**64 - 3, 2**64 - 1], np.uint64)
    assert offline.distinct(values).tolist() == [2**64 - 3, 2**64 - 1]


def test_standing_states_are_the_json_of_their_accumulators_and_buckets():
    from rating.compiler import compile_catalog
    from rating.engine import Accumulators, AllowanceTable

    compiled = compile_catalog(CATALOG)
    rng = np.random.default_rng(9)
    n, ns, nd = 50, len(compiled.service_names), len(compiled.discount_names)
    acc = Accumulators.zeros(compiled, n)
    acc.tier_usage[:] = rng.integers(0, 3, (n, ns)) * rng.integers(1, 10**12, (n, ns))
    acc.discount_basis[:] = rng.integers(0, 2, (n, nd)) * rng.integers(1, 10**9, (n, nd))
    counts = rng.integers(0, 4, n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    m = int(offsets[-1])
    ids = [f'allowance:ö{int(x)}/"q"\\:2024-03' for x in rng.integers(0, 10**6, m)]
    table = AllowanceTable(offsets, np.zeros(m, np.int32), rng.integers(0, 10**10, m),
                           np.zeros(m, np.int64), np.zeros(m, np.int64),
                           np.zeros(m + 1, np.int64), np.zeros(0, np.int32))
    standing = offline.Standing(acc, table, ids)
    rows = [int(r) for r in rng.permutation(n)]
    svc, disc = compiled.service_names, compiled.discount_names
    want = [json.dumps({
        "tier": {s: int(v) for s, v in zip(svc, acc.tier_usage[r], strict=True) if v},
        "disc": {d: int(v) for d, v in zip(disc, acc.discount_basis[r], strict=True) if v},
        "allow": {ids[j]: int(table.remaining[j]) for j in range(offsets[r], offsets[r + 1])},
    }, sort_keys=True, separators=(",", ":")) for r in rows]
    assert standing.states(rows, compiled) == want
