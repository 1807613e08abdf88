"""The bill run end to end on a real redis-server and real databases (SQLite and PostgreSQL),
with every amount worked out by hand from BILL_CATALOG.

BILL_CATALOG: voice to DE_MOBILE 0.0500 connect + 0.1200/min in 60 s increments, to DE_FIXED
0.0200/min by the second; SMS 0.0900. Rating rounds to 4 decimals, bills to 2 (half_up).
Offers: smart (tariff std, 10.00/cycle, activation 5.00, 120 s to DE_MOBILE, account discount
big), plain (std, 3.00), addon (no tariff, 1.00, two SMS). big: 10% from 50.00, cap 3.00.
VAT 19%. Cycle 2026-11 with bill cycle day 1: 2026-11-01 .. 2026-11-30, 30 days.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from accounts.store import AccountStore
from billing import billrun
from billing.billrun import BillRunError
from billing.models import Base
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.billing import db_fixtures

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url
EUR = 1_000_000

BILL_CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  DE_MOBILE: ["49151"]
  DE_FIXED: ["49"]
time_bands:
  always: {}
tariffs:
  std:
    voice:
      - {destination: DE_MOBILE, price: "0.1200", per: 60, increments: [60, 60], connect_fee: "0.0500"}
      - {destination: DE_FIXED, price: "0.0200", per: 60, increments: [1, 1]}
    sms:
      - {price: "0.0900"}
offers:
  smart:
    tariff: std
    recurring: "10.00"
    one_time:
      - {name: activation, amount: "5.00"}
    allowances:
      - {name: voice_120, service: voice, units: 120, destinations: [DE_MOBILE]}
    account_discount: big
  plain:
    tariff: std
    recurring: "3.00"
  addon:
    recurring: "1.00"
    allowances:
      - {name: sms_2, service: sms, units: 2}
account_discounts:
  big: {min_total: "50.00", percent: "10", cap: "3.00"}
tax: {name: VAT, percent: "19"}
billing: {decimals: 2, due_days: 14, grace_days: 10}
"""
MOBILE, FIXED = "4915112345678", "4930123456"
NOW = int(datetime(2026, 12, 2, 9, tzinfo=UTC).timestamp())  # the run: after the cycle


@pytest.fixture(scope="module")
def cat():
    catalog = parse_catalog(BILL_CATALOG)
    return catalog, compile_catalog(catalog)


@pytest.fixture
def store(redis_client, cat):
    return AccountStore(redis_client, cat[0], clock=lambda: NOW)


def _account(store, account_id, subs, *, prepaid=False, parent=None, bcd=1):
    store.create(account_id, credit_limit=0 if prepaid else None, parent=parent,
                 bill_cycle_day=bcd)
    for i, (offer, start, end) in enumerate(subs):
        store.subscribe(account_id, offer, op_id=f"sub:{account_id}:{i}", from_date=start,
                        to_date=end)


def _cdrs(tmp_path, rows, name="cdrs.csv"):
    path = tmp_path / name
    path.write_text("cdr_id,account,service,start,usage,destination\n"
                    + "".join(",".join(r) + "\n" for r in rows))
    return path


def _run(db, store, cat, files=(), cycle="2026-11"):
    catalog, compiled = cat
    return billrun.run(db, store, catalog, compiled, cycle=cycle, cdr_files=files)


def _bill(db, account, cycle="2026-11"):
    t = Base.metadata.tables["bills"]
    with db.connect() as conn:
        raw = conn.execute(sa.select(t.c.export).where(t.c.account == account,
                                                       t.c.cycle == cycle)).scalar()
    return None if raw is None else json.loads(raw)


def _lines(bill):
    return [(ln["kind"], ln["name"], ln["account"], ln["amount"]) for ln in bill["lines"]]


def test_offline_cdrs_allowance_by_destination_in_rating_order(db, store, cat, tmp_path):
    _account(store, "P1", [("smart", "2026-10-15", None)])
    files = [_cdrs(tmp_path, [
        # in the file c2 comes first, but c1 starts earlier and takes the allowance first
        ("c2", "P1", "voice", "2026-11-04T10:00:00Z", "30", MOBILE),
        ("c1", "P1", "voice", "2026-11-03T10:00:00Z", "90", MOBILE),
        ("c3", "P1", "voice", "2026-11-02T10:00:00Z", "100", FIXED),
        ("c4", "P1", "sms", "2026-11-05T10:00:00Z", "1", ""),
    ])]
    summary = _run(db, store, cat, files)
    assert (summary.cdrs_rated, summary.cdrs_rejected, summary.accounts_billed) == (4, {}, 1)
    bill = _bill(db, "P1")
    # c3 DE_FIXED 100 s: 0.02 * 100 / 60 = 0.0333 (the allowance is DE_MOBILE only);
    # c1 90 s -> 120 s rated, all 120 s of voice_120: 0 (covered: no connect fee either);
    # c2 30 s -> 60 s, nothing left: 0.05 + 0.12 = 0.17. voice 0.2033 -> 0.20, sms 0.09;
    # smart 10.00 (all 30 days; its activation was in October). 10.29 < 50: no discount.
    # VAT 19% of 10.29 = 1.9551 -> 1.96; total 12.25
    assert _lines(bill) == [
        ("usage", "sms", "", "0.09"), ("usage", "voice", "", "0.20"),
        ("recurring", "smart", "", "10.00"), ("tax", "VAT", "", "1.96")]
    assert (bill["subtotal"], bill["tax"], bill["total"], bill["amount_due"]) == (
        "10.29", "1.96", "12.25", "12.25")
    assert (bill["type"], bill["status"], bill["period_start"], bill["period_end"],
            bill["due_date"]) == ("invoice", "draft", "2026-11-01", "2026-11-30", "2026-12-14")


def test_base_offer_switched_mid_cycle_rates_each_cdr_by_its_start(db, store, cat, tmp_path):
    _account(store, "P2", [("plain", "2026-10-01", None)])
    store.unsubscribe("P2", "plain", op_id="u1", on_date="2026-11-16")
    store.subscribe("P2", "smart", op_id="s2", from_date="2026-11-16")
    _account(store, "P3", [("addon", "2026-10-01", None)])  # no base offer at all
    files = [_cdrs(tmp_path, [
        ("a", "P2", "voice", "2026-11-10T10:00:00Z", "60", MOBILE),  # plain: no allowance
        ("b", "P2", "voice", "2026-11-20T10:00:00Z", "60", MOBILE),  # smart: covered
        ("c", "P3", "sms", "2026-11-20T10:00:00Z", "1", ""),
    ])]
    summary = _run(db, store, cat, files)
    assert (summary.cdrs_rated, summary.cdrs_rejected) == (2, {"no_offer": 1})
    # plain 15 days (1..15): 3.00 * 15 / 30 = 1.50; smart 15 days: 5.00, activation 5.00;
    # voice: a 0.17, b 0 (60 of smart's 120 s). subtotal 11.67, VAT 2.2173 -> 2.22
    assert _lines(_bill(db, "P2")) == [
        ("usage", "voice", "", "0.17"), ("recurring", "plain", "", "1.50"),
        ("recurring", "smart", "", "5.00"), ("one_time", "smart:activation", "", "5.00"),
        ("tax", "VAT", "", "2.22")]
    assert _bill(db, "P2")["total"] == "13.89"
    # P3: addon 1.00 + VAT 0.19; its SMS was rejected (no_offer), not billed
    assert _lines(_bill(db, "P3")) == [("recurring", "addon", "", "1.00"), ("tax", "VAT", "", "0.19")]


def test_subscribe_and_cancel_on_one_day_bills_the_activation_only(db, store, cat):
    _account(store, "S1", [("plain", "2026-10-01", None), ("smart", "2026-11-10", "2026-11-10")])
    _run(db, store, cat)
    # smart: 0 days, no fee; its activation is of the cycle holding `from`. 3.00 + 5.00 = 8.00
    assert _lines(_bill(db, "S1")) == [
        ("recurring", "plain", "", "3.00"), ("one_time", "smart:activation", "", "5.00"),
        ("tax", "VAT", "", "1.52")]


def test_a_parent_with_two_children_and_a_capped_account_discount(db, store, cat, tmp_path):
    _account(store, "F", [("smart", "2026-01-01", None)])
    _account(store, "K1", [("plain", "2026-01-01", None)], parent="F")
    _account(store, "K2", [("plain", "2026-01-01", None)], parent="F")
    files = [_cdrs(tmp_path, [("k", "K1", "voice", "2026-11-07T10:00:00Z", "150000", FIXED)])]
    summary = _run(db, store, cat, files)
    assert summary.accounts_billed == 1 and _bill(db, "K1") is None
    # K1: 0.02 * 150000 / 60 = 50.00 and plain 3.00; K2 plain 3.00; F smart 10.00.
    # subtotal 66.00 >= 50: 10% = 6.60, capped at 3.00; VAT 19% of 63.00 = 11.97
    bill = _bill(db, "F")
    assert _lines(bill) == [
        ("recurring", "smart", "", "10.00"),
        ("usage", "voice", "K1", "50.00"), ("recurring", "plain", "K1", "3.00"),
        ("recurring", "plain", "K2", "3.00"),
        ("account_discount", "big", "", "-3.00"), ("tax", "VAT", "", "11.97")]
    assert (bill["subtotal"], bill["account_discount"], bill["total"]) == (
        "66.00", "-3.00", "74.97")


def test_prepaid_statement_fees_debited_once_across_three_reruns(db, store, cat):
    _account(store, "PP", [("smart", "2026-11-01", None)], prepaid=True)
    store.topup("PP", 20 * EUR, op_id="t1")
    for _ in range(3):
        summary = _run(db, store, cat)
    bill = _bill(db, "PP")
    assert (bill["type"], bill["total"], bill["amount_due"]) == ("statement", "17.85", "0.00")
    # 10.00 + 5.00 debited once: 20.00 - 15.00 = 5.00
    assert store.get_account("PP").balance == 5 * EUR
    assert summary.fees_debited == 0  # the third run found both postings
    with db.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(
            Base.metadata.tables["fee_postings"])).scalar()
    assert n == 2


def test_reruns_are_byte_identical_and_a_file_imported_twice_is_billed_once(db, store, cat,
                                                                            tmp_path):
    _account(store, "R", [("plain", "2026-10-01", None)])
    path = _cdrs(tmp_path, [("x", "R", "voice", "2026-11-07T10:00:00Z", "60", FIXED)])
    _run(db, store, cat, [path])
    first = _bill(db, "R")
    again = _run(db, store, cat, [path])
    assert again.files_skipped == [str(path)] and again.cdrs_rated == 0
    assert _bill(db, "R") == first
    t = Base.metadata.tables["bills"]
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 1
        exports = conn.execute(sa.select(t.c.export)).scalars().all()
    _run(db, store, cat)
    with db.connect() as conn:
        assert conn.execute(sa.select(t.c.export)).scalars().all() == exports
    # voice 0.02 + plain 3.00 = 3.02; VAT 0.5738 -> 0.57
    assert first["total"] == "3.59"


def test_a_late_cdr_after_finalisation_is_an_adjustment_of_the_next_cycle(db, store, cat,
                                                                         tmp_path):
    _account(store, "L", [("smart", "2026-10-01", None)])
    on_time = _cdrs(tmp_path, [("o", "L", "voice", "2026-10-05T10:00:00Z", "60", MOBILE)], "a.csv")
    _run(db, store, cat, [on_time], cycle="2026-10")
    assert billrun.finalize(db, "2026-10") == 1
    october = _bill(db, "L", "2026-10")
    with pytest.raises(BillRunError, match="final"):
        _run(db, store, cat, cycle="2026-10")
    late = _cdrs(tmp_path, [
        # October's allowance: 60 s used by "o", 60 s left: covers 60 of these 120 s, and a
        # covered CDR pays no connect fee: 0.12
        ("late1", "L", "voice", "2026-10-20T10:00:00Z", "120", MOBILE),
        ("nov", "L", "voice", "2026-11-03T10:00:00Z", "60", MOBILE),  # November's: covered
    ], "b.csv")
    _run(db, store, cat, [late], cycle="2026-11")
    assert _bill(db, "L", "2026-10") == october  # a final bill never changes
    nov = _bill(db, "L")
    # November: smart 10.00, voice 0 (covered), the late October CDR 0.12; VAT 1.9228 -> 1.92
    assert _lines(nov) == [
        ("usage", "voice", "", "0.00"), ("recurring", "smart", "", "10.00"),
        ("adjustment", "late:2026-10:voice", "", "0.12"), ("tax", "VAT", "", "1.92")]


def test_an_unknown_file_and_a_malformed_cycle_are_refused_before_anything(db, store, cat,
                                                                          tmp_path):
    with pytest.raises(BillRunError, match="--cycle"):
        _run(db, store, cat, cycle="2026-13")
    bad = tmp_path / "not.csv"
    bad.write_text("hello,world\n1,2\n")
    _account(store, "E", [("plain", "2026-10-01", None)])
    with pytest.raises(BillRunError, match="--cdrs"):
        _run(db, store, cat, [bad])
    with db.connect() as conn:  # no file, no run, no cycle: nothing written
        for name in ("cdr_files", "bill_runs", "cycles", "bills"):
            t = Base.metadata.tables[name]
            assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() == 0, name


def test_online_and_offline_together(db, redis_client, cat, tmp_path):
    """Sessions through the node, then the bill run: the online part of the bill is the sum of
    the node's charges, and offline CDRs get the allowance online usage left."""
    from charging import charge as C

    catalog, compiled = cat
    t = {"now": int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp())}
    store = AccountStore(redis_client, catalog, clock=lambda: t["now"])
    _account(store, "ON", [("smart", "2026-10-01", None)])
    node = C.Charger(store, catalog, compiled, validity_s=300, clock=lambda: t["now"])
    start = t["now"]

    def session(sid, dest, used):
        charged = 0
        for kind, n, unit in (("INITIAL", 0, C.UnitRequest(1, "voice", dest, 300, 0)),
                              ("TERMINATE", 1, C.UnitRequest(1, "voice", dest, None, used))):
            a = node.charge(C.Request(sid, kind, n, "ON", start, None, (unit,)))
            assert a.result_code == 2001
            charged += a.charged
        return charged

    # 60 s to DE_MOBILE: covered by 60 of the 120 s of voice_120, no connect fee: 0;
    # 90 s to DE_FIXED: 0.02 * 90 / 60 = 0.03
    online = session("m", MOBILE, 60) + session("f", FIXED, 90)
    assert online == 30_000
    t["now"] = NOW
    files = [_cdrs(tmp_path, [("off", "ON", "voice", "2026-11-20T10:00:00Z", "120", MOBILE)])]
    _run(db, store, cat, files)
    # offline 120 s to DE_MOBILE: the 60 s online left cover half, and a covered CDR pays no
    # connect fee: 0.12 * 60 / 60 = 0.12. voice = 0.03 online + 0.12 offline = 0.15
    bill = _bill(db, "ON")
    assert _lines(bill) == [("usage", "voice", "", "0.15"), ("recurring", "smart", "", "10.00"),
                            ("tax", "VAT", "", "1.93")]  # 10.15 * 19% = 1.9285
    # online only (no file): the bill's usage is exactly the node's charges
    _account(store, "ON2", [("smart", "2026-10-01", None)])
    t["now"] = start
    node2 = C.Charger(store, catalog, compiled, validity_s=300, clock=lambda: t["now"])
    charged = 0
    for kind, n, used in (("INITIAL", 0, 0), ("UPDATE", 1, 100), ("TERMINATE", 2, 50)):
        a = node2.charge(C.Request("x", kind, n, "ON2", start, None,
                                   (C.UnitRequest(1, "voice", FIXED, 60, used),)))
        charged += a.charged
    t["now"] = NOW
    _run(db, store, cat)
    assert charged == 50_000  # 150 s at 0.02/min = 0.05
    assert _lines(_bill(db, "ON2"))[0] == ("usage", "voice", "", "0.05")


def test_partitions_bill_every_family_once(db, store, cat, tmp_path):
    catalog, compiled = cat
    for i in range(12):
        _account(store, f"H{i}", [("plain", "2026-10-01", None)])
    _account(store, "HK", [("plain", "2026-10-01", None)], parent="H3")  # H3's family
    path = _cdrs(tmp_path, [("k", "HK", "voice", "2026-11-07T10:00:00Z", "60", FIXED)])
    billed = []
    for k in (1, 2, 3):
        s = billrun.run(db, store, catalog, compiled, cycle="2026-11", cdr_files=[path],
                        partition=(k, 3))
        billed.append(s.accounts_billed)
    t = Base.metadata.tables["bills"]
    with db.connect() as conn:
        accounts = sorted(conn.execute(sa.select(t.c.account)).scalars())
    assert accounts == sorted(f"H{i}" for i in range(12)) and sum(billed) == 12
    # the file was imported once (by the first partition run), its CDR billed on H3's bill
    assert ("usage", "voice", "HK", "0.02") in _lines(_bill(db, "H3"))
    with pytest.raises(BillRunError, match="--partition"):
        billrun.parse_partition("0/3")


@pytest.mark.postgres
def test_the_same_run_on_sqlite_and_postgresql_gives_the_same_bytes(store, cat, tmp_path,
                                                                    pg_module_url):
    from billing.db import open_database

    _account(store, "X1", [("smart", "2026-11-05", None)])
    _account(store, "X2", [("plain", "2026-10-01", None), ("addon", "2026-11-20", None)],
             bcd=31)
    _account(store, "XK", [("plain", "2026-10-01", None)], parent="X1")
    path = _cdrs(tmp_path, [
        ("1", "X1", "voice", "2026-11-06T10:00:00Z", "200", MOBILE),
        # bill cycle day 31: cycle 2026-10 is 2026-10-31 .. 2026-11-29 and 2026-11 starts on
        # 2026-11-30 00:00 Berlin (23:00Z the day before)
        ("2", "X2", "sms", "2026-11-29T22:59:59Z", "1", ""),  # 23:59:59 Berlin: 2026-10
        ("3", "X2", "sms", "2026-11-29T23:00:00Z", "1", ""),  # 00:00 Berlin: 2026-11
        ("4", "XK", "voice", "2026-11-06T10:00:00Z", "61", FIXED),
    ])
    exports = []
    engines = [open_database(f"sqlite:///{tmp_path / 'a.db'}"), open_database(pg_module_url)]
    for engine in engines:
        with engine.begin() as conn:  # the module's PostgreSQL database may hold rows
            for t in reversed(Base.metadata.sorted_tables):
                conn.execute(t.delete())
        _run(engine, store, cat, [path])
        t = Base.metadata.tables["bills"]
        with engine.connect() as conn:
            exports.append(conn.execute(sa.select(t.c.id, t.c.export).order_by(t.c.id)).all())
        engine.dispose()
    assert exports[0] == exports[1] and len(exports[0]) == 2
    x2 = json.loads(dict(exports[0])["X2/2026-11"])
    assert (x2["period_start"], x2["period_end"], x2["cycle_days"]) == (
        "2026-11-30", "2026-12-30", 31)
    # only SMS 3 is of this cycle, covered by addon's sms_2: 0.00; plain 3.00 and addon 1.00
    # for all 31 days; VAT 0.76
    assert _lines(x2) == [("usage", "sms", "", "0.00"), ("recurring", "plain", "", "3.00"),
                          ("recurring", "addon", "", "1.00"), ("tax", "VAT", "", "0.76")]
