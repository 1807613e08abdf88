"""Engine API: rate_batch and the scalar path, with hand-computed amounts in comments."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from rating.engine import (
    REASONS,
    Accumulators,
    AllowanceTable,
    CdrBatch,
    Plan,
    encode_destination,
    price,
    price_enquiry,
    rate_batch,
    rated_usage,
    resolve,
)
from rating.money import format_money

CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
services:
  mms: {unit: events}
destinations:
  DE_MOBILE: ["49151", "49160"]
  DE_FIXED: ["49"]
  UK: ["44"]
  ZERO: ["0049"]
time_bands:
  peak: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}
  late: {from: "20:00", to: "24:00"}
  deep: {from: "02:00", to: "03:00"}
tariffs:
  std:
    voice:
      - {destination: DE_MOBILE, band: peak, price: "0.1200", per: 60, increments: [60, 30], connect_fee: "0.0500"}
      - {destination: DE_MOBILE, price: "0.0600", per: 60, increments: [60, 1]}
      - {destination: DE_FIXED, band: late, price: "0.0100", per: 60, increments: [1, 1]}
      - {destination: DE_FIXED, price: "0.0200", per: 60, increments: [1, 1]}
      - {destination: ZERO, price: "1.0000", per: 60}
    sms:
      - {destination: UK, price: "0.2000"}
      - {price: "0.0900"}
    data:
      - per: 1048576
        increments: [1024, 1024]
        tiers:
          - {upto: 2097152, price: "0.0100"}
          - {price: "0.0020"}
discounts:
  loyal_voice:
    service: voice
    tiers:
      - {from: 0, percent: "0"}
      - {from: 120, percent: "10"}
      - {from: 300, percent: "25"}
  data_money:
    service: data
    basis: charge
    tiers:
      - {from: "0", percent: "0"}
      - {from: "0.0100", percent: "50"}
"""

MIB = 1048576


def utc(*args) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


TUE_10 = utc(2024, 1, 9, 9, 0)  # Tuesday 10:00 in Berlin (CET, UTC+1): peak


@pytest.fixture(scope="module")
def compiled():
    return compile_catalog(parse_catalog(CATALOG))


def make_batch(compiled, rows) -> CdrBatch:
    """rows: dicts with account, service, start, usage, dest and optional plan, rank, pre."""
    enc = [encode_destination(r.get("dest", "")) for r in rows]
    return CdrBatch(
        account=np.array([r.get("account", 0) for r in rows], np.int32),
        plan=np.array([r.get("plan", 0) for r in rows], np.int32),
        service=np.array([compiled.service_id.get(r["service"], -1) for r in rows], np.int32),
        start=np.array([r.get("start", TUE_10) for r in rows], np.int64),
        usage=np.array([r["usage"] for r in rows], np.int64),
        dest=np.array([e[0] for e in enc], np.int64),
        dest_len=np.array([e[1] for e in enc], np.int8),
        cdr_rank=np.array([r.get("rank", i) for i, r in enumerate(rows)], np.int64),
        pre_reason=np.array([r.get("pre", 0) for r in rows], np.int8),
    )


FULL_PLAN = Plan("std", ("loyal_voice", "data_money"))


def rate(compiled, rows, plans=(FULL_PLAN,), n_accounts=2, allowances=None, acc=None):
    acc = acc if acc is not None else Accumulators.zeros(compiled, n_accounts)
    out = rate_batch(compiled, make_batch(compiled, rows), list(plans), acc, allowances)
    return out, acc


def money(a) -> list[str]:
    return [format_money(int(x), 4) for x in a]


@pytest.mark.parametrize("decimals,method,usage,expected", [
    (4, "half_up", 7, "0.002300"),  # 0.02 * 7 / 60 = 0.0023333...
    (4, "up", 7, "0.002400"),
    (4, "down", 7, "0.002300"),
    (2, "half_up", 45, "0.020000"),  # 0.015 exactly: the tie goes up
    (2, "down", 45, "0.010000"),
    (2, "half_up", 44, "0.010000"),  # 0.014666...
    (2, "up", 44, "0.020000"),
    (0, "up", 1, "1.000000"),  # 0.000333... up to a whole euro
    (0, "half_up", 1, "0.000000"),
    (6, "half_up", 7, "0.002333"),
    (6, "up", 7, "0.002334"),
])
def test_rounding_methods(decimals, method, usage, expected):
    cat = parse_catalog(CATALOG.replace("{decimals: 4, method: half_up}",
                                        f"{{decimals: {decimals}, method: {method}}}"))
    c = compile_catalog(cat)
    out, _ = rate(c, [{"service": "voice", "usage": usage, "dest": "4930123"}], plans=[Plan("std")])
    assert out.reason[0] == 0 and out.rated_usage[0] == usage
    assert format_money(int(out.charge[0]), 6) == expected


@pytest.mark.parametrize("usage,rated,charge", [
    (0, 0, "0.0000"),  # nothing used: no charge, not even the connect fee
    (1, 60, "0.1700"),  # first increment 60: 0.05 + 0.12 * 60 / 60
    (60, 60, "0.1700"),
    (61, 90, "0.2300"),  # then by 30: 0.05 + 0.12 * 90 / 60
    (90, 90, "0.2300"),
    (91, 120, "0.2900"),
])
def test_increments_and_connect_fee(compiled, usage, rated, charge):
    out, _ = rate(compiled, [{"service": "voice", "usage": usage, "dest": "4915112345"}])
    assert (out.reason[0], out.rated_usage[0]) == (0, rated)
    assert money(out.charge) == [charge] and money(out.net_charge) == [charge]
    assert compiled.destination_names[out.dest_name[0]] == "DE_MOBILE"
    assert compiled.band_names[out.band[0]] == "peak"


def test_tier_crossed_inside_one_cdr_and_charge_based_discount(compiled):
    rows = [
        {"service": "data", "usage": 3 * MIB // 2, "start": TUE_10},  # 1.5 MiB at 0.01
        {"service": "data", "usage": MIB, "start": TUE_10 + 60},  # 0.5 MiB at 0.01, 0.5 at 0.002
    ]
    out, acc = rate(compiled, rows)
    # 0.015; then 0.005 + 0.001 = 0.006
    assert money(out.charge) == ["0.0150", "0.0060"]
    # data_money stands at 0 before the first CDR (0 %), at 0.015 >= 0.01 before the second (50 %)
    assert money(out.discount) == ["0.0000", "0.0030"]
    assert money(out.net_charge) == ["0.0150", "0.0030"]
    assert list(out.dest_name) == [-1, -1]
    data = compiled.service_id["data"]
    assert acc.tier_usage[0, data] == 5 * MIB // 2
    assert acc.discount_basis[0, compiled.discount_id["data_money"]] == 21_000


def test_discount_tier_changes_between_cdrs(compiled):
    # DE_FIXED at peak: 0.02 per minute by the second
    rows = [{"service": "voice", "usage": u, "dest": "4930123", "start": TUE_10 + 600 * k}
            for k, u in enumerate([120, 60, 150, 30])]
    out, acc = rate(compiled, rows)
    assert money(out.charge) == ["0.0400", "0.0200", "0.0500", "0.0100"]
    # standing before each CDR: 0 (0 %), 120 (10 %), 180 (10 %), 330 (25 %: 0.0025)
    assert money(out.discount) == ["0.0000", "0.0020", "0.0050", "0.0025"]
    assert money(out.net_charge) == ["0.0400", "0.0180", "0.0450", "0.0075"]
    assert acc.discount_basis[0, compiled.discount_id["loyal_voice"]] == 360


def test_discount_not_listed_in_plan_does_not_apply(compiled):
    rows = [{"service": "voice", "usage": 400, "dest": "4930123"},
            {"service": "voice", "usage": 60, "dest": "4930123", "start": TUE_10 + 999}]
    out, _ = rate(compiled, rows, plans=[Plan("std", ("data_money",))])
    assert money(out.discount) == ["0.0000", "0.0000"]


@pytest.mark.parametrize("local,band", [
    ((2024, 1, 9, 7, 59, 59), None),  # Tuesday before 08:00: no band
    ((2024, 1, 9, 8, 0, 0), "peak"),  # from is inclusive
    ((2024, 1, 9, 19, 59, 59), "peak"),
    ((2024, 1, 9, 20, 0, 0), "late"),  # to is exclusive
    ((2024, 1, 9, 23, 59, 59), "late"),  # to "24:00" covers the last second
    ((2024, 1, 10, 0, 0, 0), None),
    ((2024, 1, 13, 10, 0, 0), None),  # Saturday: peak is weekdays only
])
def test_band_edges(compiled, local, band):
    start = utc(*local) - 3600  # CET
    out, _ = rate(compiled, [{"service": "voice", "usage": 60, "dest": "4930123", "start": start}])
    got = compiled.band_names[out.band[0]] if out.band[0] >= 0 else None
    assert got == band
    assert money(out.charge) == ["0.0100" if band == "late" else "0.0200"]


@pytest.mark.parametrize("start,band", [
    (utc(2024, 3, 31, 18, 30), "late"),  # 20:30 CEST, the day summer time starts
    (utc(2024, 3, 30, 18, 30), None),  # 19:30 CET the day before
    (utc(2024, 3, 31, 0, 59, 59), None),  # 01:59:59 CET; 02:00-03:00 never happens that day
    (utc(2024, 3, 31, 1, 0, 0), None),  # 03:00 CEST
    (utc(2024, 10, 27, 0, 30), "deep"),  # 02:30 CEST, the day summer time ends
    (utc(2024, 10, 27, 1, 30), "deep"),  # 02:30 CET: the hour happens twice
    (utc(2024, 10, 27, 2, 0), None),  # 03:00 CET
    (utc(2024, 10, 27, 18, 30), None),  # 19:30 CET
    (utc(2024, 10, 27, 19, 0), "late"),  # 20:00 CET
    (utc(2024, 10, 26, 18, 0), "late"),  # 20:00 CEST the day before
])
def test_dst_change_days_in_berlin(compiled, start, band):
    res = resolve(compiled, "std", "voice", start, "4930123")
    assert (compiled.band_names[res.band] if res.band >= 0 else None) == band


@pytest.mark.parametrize("dest,name", [
    ("4915112345", "DE_MOBILE"),  # 49151 beats 49
    ("4916", "DE_FIXED"),  # 49160 not reached: the number is shorter
    ("49160", "DE_MOBILE"),
    ("0049301234", "ZERO"),  # leading zeros survive
    ("49301234", "DE_FIXED"),
])
def test_longest_prefix(compiled, dest, name):
    assert compiled.destination_names[resolve(compiled, "std", "voice", TUE_10, dest).dest_name] == name


def test_empty_prefix_matches_any_number():
    c = compile_catalog(parse_catalog(CATALOG.replace('  ZERO: ["0049"]', '  ZERO: [""]')))
    assert c.destination_names[resolve(c, "std", "voice", TUE_10, "3312345").dest_name] == "ZERO"
    assert c.destination_names[resolve(c, "std", "voice", TUE_10, "4912").dest_name] == "DE_FIXED"


def test_reasons_and_empty_destination(compiled):
    rows = [
        {"service": "sms", "usage": 1, "dest": ""},  # empty: skips the UK entry, 0.09
        {"service": "sms", "usage": 2, "dest": "447700900"},  # UK entry: 2 * 0.20
        {"service": "data", "usage": 1, "dest": ""},  # 1024 B of 0.01/MiB = 0.0000098
        {"service": "voice", "usage": 60, "dest": "33123"},  # no prefix matches
        {"service": "voice", "usage": 60, "dest": "44123"},  # UK has no voice entry
        {"service": "voice", "usage": 60, "dest": ""},  # voice entries all name a destination
        {"service": "mms", "usage": 1, "dest": ""},  # a service the tariff does not list
        {"service": "fax", "usage": 1, "dest": ""},  # a service nobody knows
        {"service": "voice", "usage": 60, "dest": "4930", "account": -1},
        {"service": "voice", "usage": 60, "dest": "4930", "plan": -1},
        {"service": "voice", "usage": 60, "dest": "4930", "pre": 2},  # duplicate, left alone
        {"service": "voice", "usage": -5, "dest": "4930"},
    ]
    out, acc = rate(compiled, rows)
    assert [REASONS[r] for r in out.reason] == [
        "", "", "", "no_destination", "no_rate", "no_rate", "unknown_service", "unknown_service",
        "unknown_account", "no_offer", "duplicate", "malformed",
    ]
    assert money(out.charge[:3]) == ["0.0900", "0.4000", "0.0000"]
    assert out.rated_usage[2] == 1024
    assert list(out.dest_name[:5]) == [-1, compiled.destination_id["UK"], -1, -1,
                                       compiled.destination_id["UK"]]
    assert not out.charge[3:].any() and not out.rated_usage[3:].any()
    assert acc.tier_usage[0, compiled.service_id["voice"]] == 0


def allowance_table(compiled, buckets, n_accounts=2) -> AllowanceTable:
    """buckets: (account, service, units, valid_from, valid_to, [destination names])."""
    buckets = sorted(buckets, key=lambda b: b[0])  # stable: keeps each account's order
    offsets = np.searchsorted([b[0] for b in buckets], np.arange(n_accounts + 1)).astype(np.int64)
    ids = [[compiled.destination_id[d] for d in b[5]] for b in buckets]
    return AllowanceTable(
        offsets=offsets,
        service=np.array([compiled.service_id[b[1]] for b in buckets], np.int32),
        remaining=np.array([b[2] for b in buckets], np.int64),
        valid_from=np.array([b[3] for b in buckets], np.int64),
        valid_to=np.array([b[4] for b in buckets], np.int64),
        dest_offsets=np.cumsum([0] + [len(x) for x in ids]).astype(np.int64),
        dest_ids=np.array([i for x in ids for i in x], np.int32),
    )


def test_allowances_cover_fully_then_partly_without_connect_fee(compiled):
    day = TUE_10 - 3600
    al = allowance_table(compiled, [
        (0, "voice", 1000, day + 86400, day + 2 * 86400, []),  # not yet valid: skipped
        (0, "voice", 100, day, day + 86400, ["DE_MOBILE"]),
        (1, "voice", 100, day, day + 86400, []),
    ])
    rows = [
        {"service": "voice", "usage": 61, "dest": "4915112345", "start": TUE_10},  # 90 covered
        {"service": "voice", "usage": 70, "dest": "4915112345", "start": TUE_10 + 60},
        {"service": "voice", "usage": 50, "dest": "4915112345", "start": TUE_10 + 120},
        {"service": "voice", "usage": 30, "dest": "4930123", "start": TUE_10 + 180},  # not DE_MOBILE
    ]
    out, acc = rate(compiled, rows, plans=[Plan("std")], allowances=al)
    assert list(out.rated_usage) == [90, 90, 60, 30]
    assert list(out.covered) == [90, 10, 0, 0]
    # 0 (fully covered); 80 s uncovered at 0.12/min, no connect fee = 0.16;
    # 0.05 + 0.12 = 0.17; 30 s of DE_FIXED at 0.02/min = 0.01
    assert money(out.charge) == ["0.0000", "0.1600", "0.1700", "0.0100"]
    assert list(al.remaining) == [1000, 0, 100]
    assert acc.tier_usage[0, compiled.service_id["voice"]] == 80 + 60 + 30


def random_rows(rng, n):
    dests = ["4915112345", "4930123", "0049301", "44123", "33123", ""]
    services = ["voice", "voice", "sms", "data", "mms"]
    rows = []
    for i in range(n):
        s = services[rng.integers(len(services))]
        rows.append({
            "account": int(rng.integers(3)), "service": s, "rank": i,
            "start": TUE_10 + int(rng.integers(0, 7 * 86400)) // 600 * 600,  # ties on purpose
            "usage": int(rng.integers(0, 4 * MIB if s == "data" else 400)),
            "dest": "" if s == "data" else dests[rng.integers(len(dests))],
        })
    return rows


def test_shuffled_input_gives_identical_output(compiled):
    rng = np.random.default_rng(7)
    rows = random_rows(rng, 400)
    al_rows = [(a, "voice", 500, 0, 2**40, []) for a in range(3)]
    out1, acc1 = rate(compiled, rows, n_accounts=3, allowances=allowance_table(compiled, al_rows, 3))
    perm = rng.permutation(len(rows))
    out2, acc2 = rate(compiled, [rows[i] for i in perm], n_accounts=3,
                      allowances=allowance_table(compiled, al_rows, 3))
    for f in ("reason", "dest_name", "band", "rated_usage", "covered", "charge", "discount", "net_charge"):
        assert np.array_equal(getattr(out1, f)[perm], getattr(out2, f)), f
    assert np.array_equal(acc1.tier_usage, acc2.tier_usage)
    assert np.array_equal(acc1.discount_basis, acc2.discount_basis)
    assert out1.charge.sum() > 0 and (out1.discount > 0).any() and (out1.covered > 0).any()


def test_scalar_path_equals_rate_batch(compiled):
    rows = random_rows(np.random.default_rng(11), 300)
    plan = Plan("std", ("loyal_voice", "data_money"))
    out, _ = rate(compiled, rows, plans=[plan], n_accounts=3)
    tiers: dict = {}
    basis: dict = {}
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["account"], rows[i]["start"], i))
    for i in order:
        r = rows[i]
        a = r["account"]
        res = resolve(compiled, "std", r["service"], r["start"], r["dest"])
        assert (res.reason, res.dest_name, res.band) == (out.reason[i], out.dest_name[i], out.band[i])
        if res.reason:
            continue
        ru = rated_usage(compiled, res.entry, r["usage"])
        standing = tiers.get((a, r["service"]), 0)
        std = {d: basis.get((a, d), 0) for d in plan.discounts}
        p = price(compiled, res.entry, ru, standing, [(compiled.discount_id[d], std[d]) for d in plan.discounts])
        q = price_enquiry(compiled, plan, r["service"], r["start"], r["dest"], r["usage"], standing, std)
        assert (ru, p.charge, p.discount, p.net) == (
            out.rated_usage[i], out.charge[i], out.discount[i], out.net_charge[i])
        assert (q.rated_usage, q.charge, q.discount, q.net_charge) == (
            ru, format_money(p.charge, 4), format_money(p.discount, 4), format_money(p.net, 4))
        tiers[(a, r["service"])] = standing + ru
        for d in plan.discounts:
            if compiled.catalog.discounts[d].service == r["service"]:
                basis[(a, d)] = std[d] + (ru if compiled.catalog.discounts[d].basis == "usage" else p.charge)


def test_price_enquiry_quote(compiled):
    q = price_enquiry(compiled, Plan("std", ("loyal_voice",)), "voice", TUE_10, "4915112345", 61,
                      discount_standing={"loyal_voice": 300})
    # 0.05 + 0.12 * 90 / 60 = 0.23; 25 % = 0.0575
    assert q == type(q)("", "DE_MOBILE", "peak", 90, "0.2300", "0.0575", "0.1725")
    q = price_enquiry(compiled, Plan("std"), "voice", TUE_10, "44123", 61)
    assert (q.reason, q.destination_name, q.charge) == ("no_rate", "UK", "0.0000")
    assert price_enquiry(compiled, Plan("std"), "voice", TUE_10, "49x", 1).reason == "malformed"
    # no connect fee when allowances covered part of the CDR: 0.12 * 30 / 60
    assert price(compiled, 0, 30, 0, [], connect_fee=False).charge == 60_000


def test_bad_input_is_refused_naming_the_field(compiled):
    b = make_batch(compiled, [{"service": "voice", "usage": 1, "dest": "49"}])
    acc = Accumulators.zeros(compiled, 1)
    with pytest.raises(ValueError, match=r"plans\[0\]\.tariff: unknown tariff 'gold'"):
        rate_batch(compiled, b, [Plan("gold")], acc)
    with pytest.raises(ValueError, match=r"plans\[0\]\.discounts: unknown discount"):
        rate_batch(compiled, b, [Plan("std", ("nope",))], acc)
    b.usage = b.usage.astype(np.int32)
    with pytest.raises(ValueError, match=r"batch\.usage: expected a numpy int64 array"):
        rate_batch(compiled, b, [Plan("std")], acc)
    b = make_batch(compiled, [{"service": "voice", "usage": 1, "dest": "49", "account": 5}])
    with pytest.raises(ValueError, match=r"batch\.account"):
        rate_batch(compiled, b, [Plan("std")], acc)
    with pytest.raises(ValueError, match=r"tariff: unknown tariff"):
        resolve(compiled, "gold", "voice", TUE_10, "49")


def test_worked_example_of_docs_catalog_md():
    from rating.catalog import load_catalog

    c = compile_catalog(load_catalog(Path(__file__).resolve().parents[2] / "docs/examples/catalog.yaml"))
    plan = Plan("std", ("loyal_voice",))
    q1 = price_enquiry(c, plan, "voice", TUE_10, "4915112345", 61, 0, {"loyal_voice": 5940})
    assert (q1.destination_name, q1.band, q1.rated_usage, q1.charge, q1.discount, q1.net_charge) == (
        "DE_MOBILE", "peak", 90, "0.2300", "0.0000", "0.2300")
    q2 = price_enquiry(c, plan, "voice", utc(2024, 1, 9, 20, 15), "4930123456", 100, 0,
                       {"loyal_voice": 6030})
    assert (q2.destination_name, q2.band, q2.charge, q2.discount, q2.net_charge) == (
        "DE_FIXED", "offpeak", "0.0333", "0.0033", "0.0300")
    q3 = price_enquiry(c, plan, "data", TUE_10, "", 1_500_000, tier_standing=1_073_000_000)
    assert (q3.rated_usage, q3.charge, q3.net_charge) == (1_500_160, "0.0085", "0.0085")


def test_empty_batch(compiled):
    out, acc = rate(compiled, [])
    assert out.reason.shape == (0,) and out.charge.dtype == np.int64
    assert not acc.tier_usage.any()


def test_rating_order_packed_key_equals_a_three_key_lexsort():
    import numpy as np

    from rating.engine import CdrBatch, rating_order

    rng = np.random.default_rng(7)
    n = 20_000
    account = rng.integers(-1, 300, n).astype(np.int32)
    start = rng.integers(1_709_251_200, 1_709_251_200 + 40, n).astype(np.int64)  # many ties
    rank = rng.permutation(n).astype(np.int64)
    zeros = np.zeros(n, np.int64)
    batch = CdrBatch(account, np.zeros(n, np.int32), np.zeros(n, np.int32), start, zeros,
                     zeros, np.zeros(n, np.int8), rank, np.zeros(n, np.int8))
    expected = np.lexsort((rank, start, account))
    assert (rating_order(batch) == expected).all()
    # ranges too wide to pack into 63 bits fall back to the lexsort and agree too
    wide_start = rng.integers(0, 1 << 50, n).astype(np.int64)  # 9 + 50 + 15 bits > 63
    wide = CdrBatch(account, batch.plan, batch.service, wide_start, zeros, zeros,
                    batch.dest_len, rank, batch.pre_reason)
    assert (rating_order(wide) == np.lexsort((rank, wide.start, account))).all()
