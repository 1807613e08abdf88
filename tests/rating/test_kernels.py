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
from rating.compiler import compile_catalog
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
    assert K._rated_usage(usage, first, nxt) == rated


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
       standing=st.integers(0, 7000), uncovered=st.integers(0, 10**12), connect=st.booleans(),
       disc_standing=st.integers(0, 20))
def test_charge_and_discount_equal_exact_fractions(decimals, method, per, price1, standing,
                                                   uncovered, connect, disc_standing):
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
    charge, disc = K._price_one(0, uncovered, standing, connect, np.array([0]), np.array([disc_standing]),
                                c.entry_tab, c.tier_tab, c.disc_tab, c.dtier_tab, c.step, c.method)
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
    buf = np.empty(18, np.int64)

    def look(s):
        d = K._lookup_dest(int(s or 0), len(s), c.trie_child, c.trie_dest, c.max_prefix_len, buf, K.POW10,
                           c.head_len, c.head_node, c.head_best)
        return c.destination_names[d] if d >= 0 else None

    assert [look(s) for s in ["0", "01", "00", "0048", "004915", "4", "49", "4915", "5", ""]] == [
        "A", "A", "B", "B", "C", None, "D", "E", None, None]
    assert look("123456789012345678") == "F" and look("12345678901234567") is None
