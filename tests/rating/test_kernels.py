"""Kernel arithmetic and lookups against plain references (money.round_div, Fraction, zoneinfo)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import kernels as K
from rating import tz
from rating.catalog import parse_catalog
from rating.compiler import E_FLAT_MAX, E_NUMLIM, T_PARTLIM, compile_catalog
from rating.engine import (
    REASONS,
    Accumulators,
    AllowanceTable,
    CdrBatch,
    Plan,
    price,
    price_enquiry,
    rate_batch,
    rated_usage,
    usage_limit,
)
from rating.money import round_div

METHODS = ["half_up", "up", "down"]


@settings(max_examples=300, deadline=None)
@given(whole=st.integers(0, 2**50), den=st.integers(1, 2**40), frac_seed=st.integers(0, 2**62),
       decimals=st.integers(0, 6), method=st.integers(0, 2))
def test_round_parts_equals_money_round_div(whole, den, frac_seed, decimals, method):
    frac = frac_seed % den
    got = K._round_parts(whole, frac, den, 10 ** (6 - decimals), method)
    assert got == round_div(whole * den + frac, den, decimals, METHODS[method])


@pytest.mark.parametrize("usage,first,nxt,rated", [
    (0, 60, 30, 0), (1, 60, 30, 60), (60, 60, 30, 60), (61, 60, 30, 90), (90, 60, 30, 90),
    (91, 60, 30, 120), (5, 1, 1, 5), (1025, 1024, 1024, 2048),
])
def test_rated_usage(usage, first, nxt, rated):
    assert K._rated_usage(usage, first, nxt, 1.0 / nxt) == rated


TIERED = """\
currency: EUR
timezone: UTC
rounding: {decimals: %d, method: %s}
tariffs:
  t:
    data:
      - per: %d
        increments: [1, 1]
        connect_fee: "0.0300"
        tiers:
          - {upto: 1000, price: "%s"}
          - {upto: 5000, price: "0.000700"}
          - {price: "12.5"}
discounts:
  d: {service: data, tiers: [{from: 0, percent: "33.333333"}, {from: 10, percent: 100}]}
"""


@settings(max_examples=200, deadline=None)
@given(decimals=st.integers(0, 6), method=st.sampled_from(METHODS),
       per=st.integers(1, 2**30), price1=st.integers(0, 10**9),
       standing=st.integers(0, 7000), uncovered=st.integers(0, 7 * 10**11), connect=st.booleans(),
       disc_standing=st.integers(0, 20))
def test_charge_and_discount_equal_exact_fractions(decimals, method, per, price1, standing,
                                                   uncovered, connect, disc_standing):
    # uncovered <= 7e11 units at 12.5 per unit keeps the charge itself inside int64
    text = TIERED % (decimals, method, per, f"{price1 // 10**6}.{price1 % 10**6:06d}")
    c = compile_catalog(parse_catalog(text))
    # reference: each tier's part of [standing, standing + uncovered) at its price, exactly
    bounds = [(0, 1000, price1), (1000, 5000, 700), (5000, None, 12_500_000)]
    exact = Fraction(0)
    if uncovered:
        exact += 30_000 if connect else 0
        for lo, hi, p in bounds:
            a, b = max(lo, standing), standing + uncovered if hi is None else min(hi, standing + uncovered)
            if b > a:
                exact += Fraction(p * (b - a), per)
    want = round_div(exact.numerator, exact.denominator, decimals, method)
    charge, disc, _ = K._price_one(0, uncovered, standing, connect, np.array([0]), np.array([disc_standing]),
                                c.entry_tab, c.entry_inv, c.tier_tab, c.disc_tab, c.dtier_tab,
                                c.dtier_inv, c.step, c.method)
    assert charge == want
    pct = Fraction(33333333, 100_000_000) if disc_standing < 10 else Fraction(1)
    d = pct * charge
    assert disc == round_div(d.numerator, d.denominator, decimals, method)


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Europe/Dublin",
         "America/Santiago", "Asia/Kolkata", "Pacific/Chatham", "UTC"]


@pytest.fixture(scope="module")
def zone_tables():
    out = {}
    for name in ZONES:
        t, o = tz.transitions(name)
        out[name] = (t, o, *tz.day_table(t, o))
    return out


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ZONES), t=st.integers(-(2**31), 4102444799))
def test_utc_offset_equals_zoneinfo(zone_tables, zone, t):
    trans, offs, day_off, day_trans, day_after = zone_tables[zone]
    want = dt.datetime.fromtimestamp(t, dt.UTC).astimezone(zoneinfo.ZoneInfo(zone)).utcoffset()
    assert K._utc_offset(t, day_off, day_trans, day_after, trans, offs) == want.total_seconds()


def test_utc_offset_at_every_berlin_transition_until_2100(zone_tables):
    trans, offs, day_off, day_trans, day_after = zone_tables["Europe/Berlin"]
    z = zoneinfo.ZoneInfo("Europe/Berlin")
    assert trans[-1] > 4102444800 - 86400 * 366  # the POSIX rule was expanded to 2100
    for t in trans[1:]:
        for s in (int(t) - 1, int(t)):
            want = dt.datetime.fromtimestamp(s, dt.UTC).astimezone(z).utcoffset().total_seconds()
            assert K._utc_offset(s, day_off, day_trans, day_after, trans, offs) == want


def test_lookup_dest_longest_prefix_with_leading_zeros():
    cat = parse_catalog("""\
currency: EUR
timezone: UTC
destinations: {A: ["0"], B: ["00"], C: ["0049"], D: ["49"], E: ["491"], F: ["123456789012345678"]}
tariffs: {t: {sms: [{price: "1"}]}}
""")
    c = compile_catalog(cat)

    def look(s):
        d = K._lookup_dest(int(s or 0), len(s), c.trie_child, c.trie_dest, c.max_prefix_len,
                           c.head_len, c.head_node, c.head_best)
        return c.destination_names[d] if d >= 0 else None

    assert [look(s) for s in ["0", "01", "00", "0048", "004915", "4", "49", "4915", "5", ""]] == [
        "A", "A", "B", "B", "C", None, "D", "E", None, None]
    assert look("123456789012345678") == "F" and look("12345678901234567") is None


FDIV_DIVISORS = [1, 2, 3, 7, 60, 100, 10**6, 2**26 + 1, 2**40 - 3, 2**52 + 1, 2**53 - 1]


@pytest.mark.parametrize("d", FDIV_DIVISORS)
def test_fdiv_exact_at_edges(d):
    # floor division through a float reciprocal is exact for every x < 2**53 (the fast path)
    top = 2**53 - 1
    xs = {0, 1, d - 1, d, d + 1, top, top - 1, (top // d) * d, (top // d) * d - 1}
    xs |= {k * d + r for k in (1, 2, 3, 2**20, top // d - 1) for r in (-1, 0, 1)}
    for x in sorted(v for v in xs if 0 <= v <= top):
        assert K._fdiv(x, d, 1.0 / d) == x // d, (x, d)


@settings(max_examples=500, deadline=None)
@given(x=st.integers(0, 2**53 - 1), d=st.integers(1, 2**53 - 1))
def test_fdiv_equals_floor_division(x, d):
    assert K._fdiv(x, d, 1.0 / d) == x // d


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
def test_charge_at_the_fast_path_limit(method, delta):
    # third tier at 12.5 per `per` units: a part of ~2**53 / 12.5e6 units crosses the bound up
    # to which price * part is summed exactly in a float; both sides must round identically
    c = compile_catalog(parse_catalog(TIERED % (4, method, 7, "0.000001")))
    # the largest part still on the fast path: T_PARTLIM of the tier, E_NUMLIM of the entry
    fast_max = min(int(c.tier_tab[2, T_PARTLIM]),
                   (int(c.entry_tab[0, E_NUMLIM]) - 30_000 * 7) // 12_500_000)
    part = fast_max + delta
    standing = 5000
    exact = Fraction(30_000) + Fraction(12_500_000 * part, 7)
    want = round_div(exact.numerator, exact.denominator, 4, method)
    charge, disc, _ = K._price_one(0, part, standing, True, np.array([0]), np.array([0]),
                                c.entry_tab, c.entry_inv, c.tier_tab, c.disc_tab, c.dtier_tab,
                                c.dtier_inv, c.step, c.method)
    assert charge == want
    d = Fraction(33333333, 100_000_000) * charge  # large charge: the discount's slow path
    assert disc == round_div(d.numerator, d.denominator, 4, method)


def test_lookup_dest_beyond_the_head_table():
    # prefixes longer than the 6-digit head table continue in the trie; shorter numbers walk it
    cat = parse_catalog("""\
currency: EUR
timezone: UTC
destinations: {X: ["491"], Y: ["4915123"], Z: ["4915123456"]}
tariffs: {t: {sms: [{price: "1"}]}}
""")
    c = compile_catalog(cat)

    def look(s):
        d = K._lookup_dest(int(s), len(s), c.trie_child, c.trie_dest, c.max_prefix_len,
                           c.head_len, c.head_node, c.head_best)
        return c.destination_names[d] if d >= 0 else None

    assert [look(s) for s in ["49", "491", "49151", "491512", "4915124", "4915123",
                              "491512345", "4915123456", "49151234567", "4915199999"]] == [
        None, "X", "X", "X", "X", "Y", "Y", "Z", "Z", "X"]


FLAT = """\
currency: EUR
timezone: UTC
rounding: {decimals: 2, method: %s}
tariffs:
  t:
    voice: [{price: "987.654321", per: 7, increments: [1, 1], connect_fee: "0.05"}]
"""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("delta", [-1, 0, 1, 2])
@pytest.mark.parametrize("connect", [True, False])
def test_flat_charge_at_the_fast_path_limit(method, delta, connect):
    # one flat tier: up to E_FLAT_MAX units take the single-division path, beyond it the
    # general one; both must give the exact rounding of 0.05 + 987.654321 * units / 7
    c = compile_catalog(parse_catalog(FLAT % method))
    units = int(c.entry_tab[0, E_FLAT_MAX]) + delta
    exact = Fraction(50_000 if connect else 0) + Fraction(987_654_321 * units, 7)
    want = round_div(exact.numerator, exact.denominator, 2, method)
    charge, _, _ = K._price_one(0, units, 0, connect, np.zeros(0, np.int64), np.zeros(0, np.int64),
                             c.entry_tab, c.entry_inv, c.tier_tab, c.disc_tab, c.dtier_tab,
                             c.dtier_inv, c.step, c.method)
    assert charge == want


BANDS = """\
currency: EUR
timezone: %s
time_bands:
  early: {days: [mon, tue], from: "00:00", to: "00:01"}
  late: {days: [sun], from: "23:59", to: "24:00"}
  day: {days: [mon, tue, wed, thu, fri], from: "08:30", to: "17:45"}
  weekend: {days: [sat, sun]}
tariffs: {t: {sms: [{price: "1"}]}}
"""


@pytest.fixture(scope="module")
def band_catalogs():
    return {z: compile_catalog(parse_catalog(BANDS % z)) for z in ZONES}


def _band_by_zoneinfo(c, zone: str, t: int) -> int:
    local = dt.datetime.fromtimestamp(t, dt.UTC).astimezone(zoneinfo.ZoneInfo(zone))
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    return int(c.band_of_minute[minute])


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ZONES), t=st.integers(-(2**31), 4102444799))
def test_band_at_equals_zoneinfo(band_catalogs, zone, t):
    # the per-day week-second tables, and the fallback before 1970 (the tables end with 2100)
    c = band_catalogs[zone]
    got = K._band_at(t, c.day_trans, c.day_week_s, c.day_week_s_after, c.day_off,
                     c.day_off_after, c.transition_utc, c.offset_s, c.band_of_minute)
    assert got == _band_by_zoneinfo(c, zone, t)


def test_band_at_around_every_berlin_transition(band_catalogs):
    c = band_catalogs["Europe/Berlin"]
    for tr in c.transition_utc[1:]:
        for t in (int(tr) - 61, int(tr) - 1, int(tr), int(tr) + 59, int(tr) + 60):
            got = K._band_at(t, c.day_trans, c.day_week_s, c.day_week_s_after, c.day_off,
                             c.day_off_after, c.transition_utc, c.offset_s, c.band_of_minute)
            assert got == _band_by_zoneinfo(c, "Europe/Berlin", t), t


# -- the 2^53 bound on charges and rated usage (docs/catalog.md "Limits") --------------------

BOUND = 2**53


def _rate_one(c, usage: int, service: str = "sms", plan: Plan | None = None):
    """rate_batch (both kernel passes) on one CDR of `usage` units, empty destination."""
    one = np.ones(1, np.int64)
    batch = CdrBatch(
        account=np.zeros(1, np.int32), plan=np.zeros(1, np.int32),
        service=np.array([c.service_id[service]], np.int32), start=one * 1_700_000_000,
        usage=one * usage, dest=one * 0, dest_len=np.zeros(1, np.int8), cdr_rank=one * 0,
        pre_reason=np.zeros(1, np.int8))
    r = rate_batch(c, batch, [plan or Plan("t")], Accumulators.zeros(c, 1))
    return (REASONS[r.reason[0]], int(r.rated_usage[0]), int(r.charge[0]), int(r.discount[0]),
            int(r.net_charge[0]))


def test_charge_of_2_pow_53_minus_1_micro_is_rated_one_more_unit_is_malformed():
    c = compile_catalog(parse_catalog("""\
currency: EUR
timezone: UTC
rounding: {decimals: 6, method: half_up}
tariffs: {t: {sms: [{price: "0.000001"}]}}
discounts: {d: {service: sms, tiers: [{from: 0, percent: "99.999999"}]}}
"""))
    assert usage_limit(c, 0) == BOUND - 1
    # 1 micro-unit per message: the charge is the usage; 99.999999 % of 9007199254740991 is
    # 9007199254740991 - 90071992.54740991 = 9007199164668998.45259009: rounded half up
    # 9007199164668998, net 90071993
    assert _rate_one(c, BOUND - 1, plan=Plan("t", ("d",))) == (
        "", BOUND - 1, BOUND - 1, 9007199164668998, 90071993)
    assert _rate_one(c, BOUND) == ("malformed", 0, 0, 0, 0)
    assert _rate_one(c, 10**18) == ("malformed", 0, 0, 0, 0)
    # the scalar path agrees: a ValueError naming the field, or a `malformed` quote
    assert rated_usage(c, 0, BOUND - 1) == BOUND - 1
    assert price(c, 0, BOUND - 1, 0, []).charge == BOUND - 1
    with pytest.raises(ValueError, match="^usage: 9007199254740992 is beyond"):
        rated_usage(c, 0, BOUND)
    with pytest.raises(ValueError, match="^rated: "):
        price(c, 0, BOUND, 0, [])
    assert price_enquiry(c, Plan("t"), "sms", 0, "", BOUND).reason == "malformed"
    assert price_enquiry(c, Plan("t"), "sms", 0, "", BOUND - 1).charge == "9007199254.740991"


def test_charge_below_the_bound_is_exact_where_price_times_usage_passes_int64():
    # 9.999999 per MiB by the byte, rounded down: charged below 2^53 micro while
    # 9999999 * r < 2^53 * 2^20, i.e. up to r = (2^73 - 1) // 9999999 = 944473391021268 bytes,
    # charge floor(9999999 * r / 2^20) = 9007199254740990; price * rated is ~9.4e21 there,
    # a thousand times int64: the kernel splits it and stays exact
    c = compile_catalog(parse_catalog("""\
currency: EUR
timezone: UTC
rounding: {decimals: 6, method: down}
tariffs: {t: {data: [{price: "9.999999", per: 1048576}]}}
"""))
    limit = usage_limit(c, 0)
    assert limit == (2**73 - 1) // 9_999_999 == 944473391021268
    want = 9_999_999 * limit // 2**20  # rounded down at 6 places
    assert want == 9007199254740990
    assert _rate_one(c, limit, "data") == ("", limit, want, 0, want)
    assert _rate_one(c, limit + 1, "data") == ("malformed", 0, 0, 0, 0)


EDGE = """\
currency: EUR
timezone: UTC
rounding: {decimals: %d, method: %s}
tariffs:
  t:
    voice:
      - per: %d
        increments: [%d, %d]
        connect_fee: "%s"
        tiers: [{upto: 100, price: "0.5"}, {upto: 200, price: "%s"}, {price: "0.25"}]
"""


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("decimals,per,first,nxt,connect,top", [
    (6, 1, 1, 1, "0", "1"), (4, 60, 60, 30, "0.05", "0.12"), (0, 7, 1, 1, "0.9", "3.5"),
    (2, 1048576, 1024, 1024, "0", "0.001"), (2, 1, 1, 1, "9007199254.74", "1"),
    (2, 1, 2**40, 1, "0", "0"), (3, 1, 1, 2**40, "1", "0"),
])
def test_usage_limit_is_the_exact_edge_of_the_rule(method, decimals, per, first, nxt, connect, top):
    # the rule from Fractions: a rated usage r > 0 is charged when r < 2^53 and the charge at
    # the highest tier price, connect fee included, rounded as the catalog rounds, is < 2^53
    c = compile_catalog(parse_catalog(EDGE % (decimals, method, per, first, nxt, connect, top)))
    e = c.catalog.tariffs["t"]["voice"][0]
    high = max(t.price for t in e.tiers)

    def allowed(r):
        x = Fraction(e.connect_fee) + Fraction(high * r, per)
        return r < BOUND and round_div(x.numerator, x.denominator, decimals, method) < BOUND

    limit = usage_limit(c, 0)
    after = first if limit == 0 else limit + nxt  # the next rated usage after the limit
    assert (limit == 0 or allowed(limit)) and not allowed(after)
    if limit:
        reason, rated, charge, _, _ = _rate_one(c, limit, "voice")
        assert (reason, rated) == ("", limit)
        # charged on the graduated tiers from 0: 100 at 0.5, 100 at `top`, the rest at 0.25
        parts = [(min(limit, 100), 500_000), (min(max(limit - 100, 0), 100), e.tiers[1].price),
                 (max(limit - 200, 0), 250_000)]
        x = Fraction(e.connect_fee) + sum(Fraction(p * u, per) for u, p in parts)
        assert charge == round_div(x.numerator, x.denominator, decimals, method)
    assert _rate_one(c, limit + 1, "voice")[0] == "malformed"


def test_free_entry_rates_usage_below_2_pow_53():
    # no price and no connect fee: only the bound on rated usage applies
    c = compile_catalog(parse_catalog("""\
currency: EUR
timezone: UTC
tariffs: {t: {sms: [{price: "0"}], data: [{price: "0", increments: [1000, 1000]}]}}
"""))
    assert _rate_one(c, BOUND - 1) == ("", BOUND - 1, 0, 0, 0)
    assert _rate_one(c, BOUND)[0] == "malformed"
    # by the 1000: 9007199254740000 is the last rated usage below 2^53
    assert _rate_one(c, 9007199254740000, "data") == ("", 9007199254740000, 0, 0, 0)
    assert _rate_one(c, 9007199254740001, "data")[0] == "malformed"


# -- output columns: the charge column carries the rate entry between the passes, `covered`
#    comes zero-filled and only covered rows are written -----------------------------------

MIXED = """\
currency: EUR
timezone: UTC
rounding: {decimals: 2, method: half_up}
destinations: {DE: ["49"]}
tariffs:
  t:
    voice: [{destination: DE, price: "0.60", per: 60, increments: [60, 60], connect_fee: "0.10"}]
    sms: [{price: "0.09"}]
"""


@pytest.mark.parametrize("shuffle", [False, True])
def test_rejected_rows_between_rated_rows_get_zeros_and_covered_only_where_covered(shuffle):
    c = compile_catalog(parse_catalog(MIXED))
    v, s = c.service_id["voice"], c.service_id["sms"]
    # rows: rated voice; no_destination (33...); unknown_service (data has no entry in t);
    # pre_reason duplicate; sms partly covered (2 of 3 units); sms after the bucket ran out
    svc = np.array([v, v, c.service_id["data"], v, s, s], np.int32)
    usage = np.array([61, 30, 100, 10, 3, 1], np.int64)
    dest = np.array([4930, 3312, 0, 4930, 0, 0], np.int64)
    dest_len = np.array([4, 4, 0, 4, 0, 0], np.int8)
    pre = np.array([0, 0, 0, 2, 0, 0], np.int8)
    rows = np.arange(6)
    if shuffle:
        rows = np.array([5, 2, 0, 4, 1, 3])
    n = 6
    batch = CdrBatch(account=np.zeros(n, np.int32), plan=np.zeros(n, np.int32),
                     service=svc[rows], start=(1_700_000_000 + np.arange(n, dtype=np.int64))[rows],
                     usage=usage[rows], dest=dest[rows], dest_len=dest_len[rows],
                     cdr_rank=np.arange(n, dtype=np.int64)[rows], pre_reason=pre[rows])
    al = AllowanceTable(offsets=np.array([0, 1], np.int64), service=np.array([s], np.int32),
                        remaining=np.array([2], np.int64), valid_from=np.array([0], np.int64),
                        valid_to=np.array([2**40], np.int64), dest_offsets=np.zeros(2, np.int64),
                        dest_ids=np.zeros(0, np.int32))
    r = rate_batch(c, batch, [Plan("t")], Accumulators.zeros(c, 1), al)
    back = np.argsort(rows)  # results in the unshuffled row order
    assert [REASONS[x] for x in r.reason[back]] == [
        "", "no_destination", "unknown_service", "duplicate", "", ""]
    # voice 61 s -> 120 s: 0.10 + 2 * 0.60 = 1.30; sms 3 with 2 covered: 1 * 0.09; sms 1
    # after the bucket is empty: 0.09
    assert r.rated_usage[back].tolist() == [120, 0, 0, 0, 3, 1]
    assert r.covered[back].tolist() == [0, 0, 0, 0, 2, 0]
    assert r.charge[back].tolist() == [1_300_000, 0, 0, 0, 90_000, 90_000]
    assert r.discount[back].tolist() == [0] * 6
    assert r.net_charge[back].tolist() == [1_300_000, 0, 0, 0, 90_000, 90_000]
    assert al.remaining.tolist() == [0]
