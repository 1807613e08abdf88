"""Conformance, rules 4 to 7: rated usage, charges and rounding, tiers, discounts, money.

Outside conformance checks: the real `ccs rate` / `ccs catalog check` against rating.md. Every
expected amount is computed by hand from the contract text (exact fractions in the comments),
never from the code; a case where ccs disagrees is an xfail(strict) naming the gap. Running
`ccs rate` and shared catalogs: spec_ccs.py.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec_ccs import (  # noqa: E402
    ADDED,
    INC_CATALOG,
    TIER_CATALOG,
    VALID,
    T,
    by_id,
    cdr,
    col,
    data,
    rate,
    run_ccs,
    run_rate,
    trio,
)

# --------------------------------------------------------------------------------------------
# Rules 4 and 5: increments, charge, rounding once
# --------------------------------------------------------------------------------------------

def test_increments_and_connect_fee(tmp_path):
    t = "2024-01-09T10:00:00Z"
    rows = rate(tmp_path, INC_CATALOG, [
        # A: rated = 60 if u <= 60 else 60 + ceil((u-60)/30)*30; charge = 0.05 + 0.12*rated/60
        cdr("u0", t, 0, "1"),     # 0 -> 0, no connect fee -> 0
        cdr("u1", t, 1, "1"),     # 60 -> 0.05 + 0.12 = 0.17
        cdr("u60", t, 60, "1"),   # usage == first -> 60 -> 0.17
        cdr("u61", t, 61, "1"),   # 60 + 30 = 90 -> 0.05 + 0.18 = 0.23
        cdr("u90", t, 90, "1"),   # 90 -> 0.23
        cdr("u91", t, 91, "1"),   # 120 -> 0.05 + 0.24 = 0.29
        cdr("u151", t, 151, "1"),  # 60 + ceil(91/30)=4 *30 = 180 -> 0.05 + 0.36 = 0.41
        # B: first 30 < next 60: 31 -> 30 + 60 = 90 -> 0.60*90/60 = 0.90; 90 -> 90; 91 -> 150
        cdr("b1", t, 1, "2"),     # 30 -> 0.30
        cdr("b31", t, 31, "2"),   # 90 -> 0.90
        cdr("b90", t, 90, "2"),   # 90 -> 0.90
        cdr("b91", t, 91, "2"),   # 150 -> 1.50
        cdr("s3", t, 3, "1", "sms"),  # defaults per 1, [1, 1]: 3 * 0.09 = 0.27
        cdr("s0", t, 0, "1", "sms"),  # 0
        # big: u = 10^12 + 1 -> 60 + ceil((10^12 - 59)/30)*30 = 1000000000020 s,
        # charge = 0.05 + 0.002 * 1000000000020 = 2000000000.09 (price*rated is 1.2e17
        # micro-units / 60: computed exactly, and below the 2^53 micro-unit bound)
        cdr("big", t, 10**12 + 1, "1"),
        # huge: u = 10^14 + 1 -> 100000000000020 s, charge 200000000000.09 = 2e17 micro-units,
        # beyond the 2^53 (~9.007e15) bound of docs/catalog.md: rejected, malformed:usage
        cdr("huge", t, 10**14 + 1, "1"),
    ])
    assert col(rows, "rated_usage") == {
        "u0": "0", "u1": "60", "u60": "60", "u61": "90", "u90": "90", "u91": "120", "u151": "180",
        "b1": "30", "b31": "90", "b90": "90", "b91": "150", "s3": "3", "s0": "0",
        "big": "1000000000020", "huge": "0"}
    assert col(rows, "charge") == {
        "u0": "0.0000", "u1": "0.1700", "u60": "0.1700", "u61": "0.2300", "u90": "0.2300",
        "u91": "0.2900", "u151": "0.4100", "b1": "0.3000", "b31": "0.9000", "b90": "0.9000",
        "b91": "1.5000", "s3": "0.2700", "s0": "0.0000", "big": "2000000000.0900",
        "huge": "0.0000"}
    assert by_id(rows)["u0"]["status"] == "rated"
    assert (by_id(rows)["huge"]["status"], by_id(rows)["huge"]["reason"]) == ("rejected", "malformed:usage")
    assert col(rows, "net_charge") == col(rows, "charge")


ROUND_CATALOG = """\
currency: EUR
timezone: UTC
rounding: {{decimals: {dec}, method: {method}}}
destinations:
  T1: ["1"]
  T2: ["2"]
  T3: ["3"]
  T4: ["4"]
  T5: ["5"]
  T6: ["6"]
  T7: ["7"]
  T8: ["8"]
tariffs:
  t:
    voice:
      - {{destination: T1, price: "0.005"}}
      - {{destination: T2, price: "0.01", per: 3}}
      - {{destination: T3, price: "0.02", per: 3}}
      - {{destination: T4, price: "0.004", connect_fee: "0.004"}}
      - {{destination: T5, price: "0.015"}}
      - {{destination: T6, price: "0.000001", per: 200}}
      - {{destination: T7, price: "0.000001", per: 2}}
      - {{destination: T8, price: "2.5"}}
"""


#            T1 0.005  T2 1/300  T3 2/300  T4 0.004+0.004  T5 0.015  T6 1/200000000
EXPECTED_2_PLACES = {
    "half_up": ["0.01", "0.00", "0.01", "0.01", "0.02", "0.00"],
    "up":      ["0.01", "0.01", "0.01", "0.01", "0.02", "0.01"],
    "down":    ["0.00", "0.00", "0.00", "0.00", "0.01", "0.00"],
}


@pytest.mark.parametrize("method", ["half_up", "up", "down"])
def test_charge_rounded_once(tmp_path, method):
    # usage 1 everywhere. T4: rounded once 0.008 -> half_up 0.01 (twice would give 0.00).
    # T6: 0.000001/200 = 5e-9, below a micro-unit: exact arithmetic still rounds "up" to 0.01.
    rows = rate(tmp_path, ROUND_CATALOG.format(dec=2, method=method),
                [cdr(f"c{i}", "2024-01-09T10:00:00Z", 1, str(i)) for i in range(1, 7)])
    assert [r["charge"] for r in rows] == EXPECTED_2_PLACES[method]


@pytest.mark.parametrize("method,t7,t8", [("half_up", "0.000001", "3"), ("up", "0.000001", "3"),
                                          ("down", "0.000000", "2")])
def test_rounding_ties_at_6_and_0_places(tmp_path, method, t7, t8):
    # T7: 0.000001 * 1 / 2 = 0.0000005 exactly, a tie at 6 places.
    rows = rate(tmp_path, ROUND_CATALOG.format(dec=6, method=method),
                [cdr("t7", "2024-01-09T10:00:00Z", 1, "7")])
    assert rows[0]["charge"] == t7
    # T8: 2.5 at 0 places: a tie; the decimal string has 0 places (no point).
    rows = rate(tmp_path, ROUND_CATALOG.format(dec=0, method=method),
                [cdr("t8", "2024-01-09T10:00:00Z", 1, "8"), cdr("z", "2024-01-09T10:00:00Z", 0, "8")])
    assert [(r["charge"], r["discount"], r["net_charge"]) for r in rows] == [(t8, "0", t8), ("0", "0", "0")]


# --------------------------------------------------------------------------------------------
# Rule 6: graduated tiers, in start order (fractions of a second included)
# --------------------------------------------------------------------------------------------

TIER_ROWS = [
    # shuffled on purpose; per 1, increments [1, 1]
    cdr("d4", "2024-01-09T10:03:00Z", 1, service="data"),
    cdr("y1", "2024-01-09T10:02:30Z", 3, service="data", account="y"),
    cdr("d2", "2024-01-09T10:01:00Z", 10, service="data"),
    cdr("v1", "2024-01-09T10:00:30Z", 3, "49"),
    cdr("d3", "2024-01-09T10:02:00Z", 10, service="data"),
    cdr("d1", "2024-01-09T10:00:00Z", 5, service="data"),
    cdr("z1", "2024-01-09T10:05:00Z", 25, service="data", account="z"),
    # same instant: ties by cdr_id, "a" before "b" whatever the file order
    cdr("b", "2024-01-09T10:00:00Z", 8, service="data", account="w"),
    cdr("a", "2024-01-09T10:00:00Z", 8, service="data", account="w"),
    # same instant written with two offsets: also a tie, so "p" before "q"
    cdr("q", "2024-01-09T10:00:00Z", 8, service="data", account="v"),
    cdr("p", "2024-01-09T11:00:00+01:00", 8, service="data", account="v"),
    # r1 is earlier (08:30Z) although its text sorts after r2's
    cdr("r2", "2024-01-09T09:00:00Z", 8, service="data", account="u"),
    cdr("r1", "2024-01-09T10:30:00+02:00", 8, service="data", account="u"),
    # rows that are not rated never accumulate
    cdr("d1", "2024-01-09T09:00:00Z", 100, service="data"),        # duplicate of d1
    cdr("m1", "2024-01-09T09:00:00Z", "x", service="data"),        # malformed usage
    cdr("n1", "2024-01-09T09:00:00Z", 100, "", service="voice"),   # no_rate (empty number)
]


TIER_EXPECTED = {
    "d1": "5.0000",   # x/data 0..5 at 1 = 5
    "d2": "15.0000",  # 5..15: 5*1 + 5*2 = 15
    "d3": "25.0000",  # 15..25: 5*2 + 5*3 = 25
    "d4": "3.0000",   # 25..26: 3
    "y1": "3.0000",   # other account: 0..3 = 3
    "v1": "3.0000",   # other service: 0..3 = 3
    "z1": "45.0000",  # all three tiers in one CDR: 10*1 + 10*2 + 5*3 = 45
    "a": "8.0000",    # 0..8 = 8
    "b": "14.0000",   # 8..16: 2*1 + 6*2 = 14
    "p": "8.0000",
    "q": "14.0000",
    "r1": "8.0000",
    "r2": "14.0000",
    "m1": "0.0000",
    "n1": "0.0000",
}


def _tier_charges(rows):
    first = {}
    for r in rows:
        first.setdefault(r["cdr_id"], r["charge"])
    return first


def test_tiers_accumulate_in_start_order_per_account_and_service(tmp_path):
    rows = rate(tmp_path, TIER_CATALOG, TIER_ROWS)
    assert _tier_charges(rows) == TIER_EXPECTED
    statuses = [(r["cdr_id"], r["status"]) for r in rows]
    assert statuses.count(("d1", "duplicate")) == 1 and statuses.count(("d1", "rated")) == 1
    assert statuses.index(("d1", "rated")) < statuses.index(("d1", "duplicate"))


@pytest.mark.parametrize("order", ["reversed", "rotated"])
def test_file_order_never_matters(tmp_path, order):
    # rule 8: the same CDR set in any order rates the same (the duplicate d1 stays after the
    # first d1, since which copy is the duplicate is defined by file order)
    rows = [r for r in TIER_ROWS if not (r.startswith("d1,") and ",100," in r)]
    rows = rows[::-1] if order == "reversed" else rows[7:] + rows[:7]
    rows.append(cdr("d1", "2024-01-09T09:00:00Z", 100, service="data"))
    assert _tier_charges(rate(tmp_path, TIER_CATALOG, rows)) == TIER_EXPECTED


def test_tier_accumulator_counts_rated_usage_and_rounds_once(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    rounding: {decimals: 2, method: half_up}
    tariffs:
      t:
        data:
          - {increments: [10, 10], tiers: [{upto: 10, price: "1"}, {price: "2"}]}
        sms:
          - {connect_fee: "0.002", tiers: [{upto: 1, price: "0.004"}, {price: "0.004"}]}
    """
    rows = rate(tmp_path, catalog, [
        cdr("e1", "2024-01-09T10:00:00Z", 1, service="data"),  # rated 10: 0..10 at 1 = 10.00
        cdr("e2", "2024-01-09T10:01:00Z", 1, service="data"),  # rated 10: 10..20 at 2 = 20.00
        # 0.002 + 1*0.004 + 1*0.004 = 0.010 -> 0.01 (each part rounded alone: 0.00)
        cdr("s1", "2024-01-09T10:00:00Z", 2, service="sms"),
    ])
    assert col(rows, "charge") == {"e1": "10.00", "e2": "20.00", "s1": "0.01"}


def test_tiers_per_mib_worked_example(tmp_path):
    catalog = """\
    currency: EUR
    timezone: Europe/Berlin
    rounding: {decimals: 4, method: half_up}
    tariffs:
      t:
        data:
          - per: 1048576
            increments: [1024, 1024]
            tiers:
              - {upto: 1073741824, price: "0.0100"}
              - {price: "0.0020"}
    """
    rows = rate(tmp_path, catalog, [
        # 1,073,000,000 B -> rated ceil(/1024)*1024 = 1,073,000,448; 0.01*that/2^20 =
        # 10.2329296875 -> 10.2329
        cdr("c1", "2024-01-09T10:00:00Z", 1073000000, service="data"),
        # 1,500,000 B -> 1,500,160; 741,376 below 1 GiB at 0.01, 758,784 above at 0.002:
        # (0.01*741376 + 0.002*758784)/1048576 = 4361/512000 = 0.008517578125 -> 0.0085
        cdr("c2", "2024-01-09T11:00:00Z", 1500000, service="data"),
    ])
    assert col(rows, "rated_usage") == {"c1": "1073000448", "c2": "1500160"}
    assert col(rows, "charge") == {"c1": "10.2329", "c2": "0.0085"}


def test_sub_second_starts_are_ordered_by_time(tmp_path):
    rows = rate(tmp_path, TIER_CATALOG, [
        data("a", "2024-01-09T10:00:00.9Z", 8),  # later: 8..16 -> 2*1 + 6*2 = 14
        data("b", "2024-01-09T10:00:00.1Z", 8),  # earlier: 0..8 -> 8
    ])
    assert col(rows, "charge") == {"a": "14.0000", "b": "8.0000"}


def test_tier_parts_are_added_exactly_before_rounding(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    rounding: {decimals: 2, method: down}
    tariffs:
      t:
        data:
          - {per: 3, tiers: [{upto: 1, price: "0.01"}, {price: "0.02"}]}
    """
    # 0.01*1/3 + 0.02*1/3 = 0.01 exactly -> "down" keeps 0.01 (parts cut to micro-units first
    # would give 0.003333 + 0.006666 = 0.009999 -> 0.00)
    rows = rate(tmp_path, catalog, [data("a", T, 2)])
    assert rows[0]["charge"] == "0.01"


# --------------------------------------------------------------------------------------------
# Rule 7: step discounts
# --------------------------------------------------------------------------------------------

DISC_CATALOG = """\
currency: EUR
timezone: UTC
rounding: {{decimals: {dec}, method: {method}}}
destinations:
  A: ["49"]
tariffs:
  t:
    voice:
      - {{destination: A, price: "{price}", per: {per}, increments: [{first}, {first}]}}
    sms:
      - {{price: "0.5"}}
discounts:
  loyal:
    service: voice
    basis: usage
    tiers:
      - {{from: 0, percent: "0"}}
      - {{from: 100, percent: "10"}}
      - {{from: 200, percent: "25"}}
  money:
    service: voice
    basis: charge
    tiers:
      - {{from: "0", percent: "0"}}
      - {{from: "1.00", percent: "50"}}
      - {{from: "1.40", percent: "100"}}
  half:
    service: voice
    tiers: [{{from: 0, percent: "50"}}]
  eighth:
    service: voice
    tiers: [{{from: 0, percent: "12.5"}}]
  tenth:
    service: voice
    tiers: [{{from: 0, percent: "10"}}]
  tiny:
    service: voice
    basis: charge
    tiers: [{{from: "0", percent: "0"}}, {{from: "0.01", percent: "100"}}]
  sixty:
    service: voice
    tiers: [{{from: 0, percent: "60"}}]
"""


def disc_catalog(dec=4, method="half_up", price="1", per=1, first=1):
    return DISC_CATALOG.format(dec=dec, method=method, price=price, per=per, first=first)


ACCOUNTS = """\
account,tariff,discounts
x,t,loyal
y,t,
z,t,loyal
m,t,money
h,t,half
e,t,eighth
k,t,tenth
s,t,tiny
"""


def test_discount_step_basis_usage_stands_before_the_cdr(tmp_path):
    rows = rate(tmp_path, disc_catalog(), [
        cdr("c3", "2024-01-09T10:02:00Z", 60, "49"),
        cdr("c1", "2024-01-09T10:00:00Z", 100, "49"),
        cdr("s1", "2024-01-09T10:04:00Z", 1, "49", "sms"),
        cdr("c4", "2024-01-09T10:03:00Z", 1, "49"),
        cdr("c2", "2024-01-09T10:01:00Z", 50, "49"),
        cdr("y1", "2024-01-09T10:00:00Z", 100, "49", account="y"),
        cdr("y2", "2024-01-09T10:01:00Z", 50, "49", account="y"),
        cdr("z1", "2024-01-09T10:05:00Z", 50, "49", account="z"),
        cdr("c0", "2024-01-09T09:00:00Z", 0, "49"),
    ], accounts=ACCOUNTS)
    assert trio(rows) == {
        "c0": ("0.0000", "0.0000", "0.0000"),      # usage 0: basis 0
        "c1": ("100.0000", "0.0000", "100.0000"),  # stands 0 -> 0 %; basis 100
        "c2": ("50.0000", "5.0000", "45.0000"),    # stands 100 (from inclusive) -> 10 %; 150
        "c3": ("60.0000", "6.0000", "54.0000"),    # stands 150 -> 10 % for the whole CDR; 210
        "c4": ("1.0000", "0.2500", "0.7500"),      # stands 210 -> 25 %
        "s1": ("0.5000", "0.0000", "0.5000"),      # sms: the voice discount does not apply
        "y1": ("100.0000", "0.0000", "100.0000"),  # no discount listed for y
        "y2": ("50.0000", "0.0000", "50.0000"),
        "z1": ("50.0000", "0.0000", "50.0000"),    # z has its own basis: stands 0
    }


def test_discount_basis_usage_counts_rated_usage(tmp_path):
    # price 0.60 per 60, increments [60, 60]: usage 1 rates to 60 s, charge 0.60.
    # basis 0 -> 60 -> 120: the third CDR stands at 120 >= 100 -> 10 %, 0.06
    # (counting raw usage the basis would be 2 and the discount 0)
    rows = rate(tmp_path, disc_catalog(price="0.60", per=60, first=60), [
        cdr(f"c{i}", f"2024-01-09T10:0{i}:00Z", 1, "49") for i in range(1, 4)
    ], accounts=ACCOUNTS)
    assert trio(rows) == {"c1": ("0.6000", "0.0000", "0.6000"), "c2": ("0.6000", "0.0000", "0.6000"),
                          "c3": ("0.6000", "0.0600", "0.5400")}


def test_discount_basis_charge_accumulates_charge_after_tariff(tmp_path):
    # price 0.30 per 1, 2 places.
    rows = rate(tmp_path, disc_catalog(dec=2, price="0.30"), [
        cdr("c1", "2024-01-09T10:00:00Z", 4, "49", account="m"),  # 1.20, stands 0 -> 0 %
        cdr("c2", "2024-01-09T10:01:00Z", 1, "49", account="m"),  # 0.30, stands 1.20 -> 50 %: 0.15
        # the basis grows by the charge (0.30), not the net (0.15): stands 1.50 -> 100 %
        cdr("c3", "2024-01-09T10:02:00Z", 1, "49", account="m"),
    ], accounts=ACCOUNTS)
    assert trio(rows) == {"c1": ("1.20", "0.00", "1.20"), "c2": ("0.30", "0.15", "0.15"),
                          "c3": ("0.30", "0.30", "0.00")}


def test_discount_basis_charge_uses_the_rounded_charge(tmp_path):
    # price 0.01 per 3 -> each 1-unit CDR is 1/300 -> 0.00 at 2 places. The charge of rule 5 is
    # the rounded amount, so the basis stays 0.00 and the 3-unit CDR (0.01) stands below 0.01.
    catalog = disc_catalog(dec=2, price="0.01", per=3)
    rows = rate(tmp_path, catalog, [
        cdr("a1", "2024-01-09T10:00:00Z", 1, "49", account="s"),
        cdr("a2", "2024-01-09T10:01:00Z", 1, "49", account="s"),
        cdr("a3", "2024-01-09T10:02:00Z", 1, "49", account="s"),
        cdr("a4", "2024-01-09T10:03:00Z", 3, "49", account="s"),
    ], accounts=ACCOUNTS)
    assert trio(rows)["a4"] == ("0.01", "0.00", "0.01")


@pytest.mark.parametrize("method,expected", [
    # price 0.02 per 60, 100 s: charge 1/30 = 0.03333..; discount 10 % of the ROUNDED charge
    ("half_up", ("0.0333", "0.0033", "0.0300")),  # 0.00333 -> 0.0033
    ("up", ("0.0334", "0.0034", "0.0300")),       # 0.00334 -> 0.0034
    ("down", ("0.0333", "0.0033", "0.0300")),     # 0.00333 -> 0.0033
])
def test_discount_rounding(tmp_path, method, expected):
    rows = rate(tmp_path, disc_catalog(method=method, price="0.02", per=60),
                [cdr("c", "2024-01-09T10:00:00Z", 100, "49", account="k")], accounts=ACCOUNTS)
    assert trio(rows)["c"] == expected


@pytest.mark.parametrize("method,expected", [
    ("half_up", ("0.0005", "0.0003", "0.0002")),  # 50 % of 0.0005 = 0.00025: a tie
    ("up", ("0.0005", "0.0003", "0.0002")),
    ("down", ("0.0005", "0.0002", "0.0003")),
])
def test_discount_rounding_ties(tmp_path, method, expected):
    rows = rate(tmp_path, disc_catalog(method=method, price="0.0005"),
                [cdr("c", "2024-01-09T10:00:00Z", 1, "49", account="h")], accounts=ACCOUNTS)
    assert trio(rows)["c"] == expected


def test_discount_is_on_the_rounded_charge_and_fractional_percent(tmp_path):
    # 2 places: 0.006 -> charge 0.01; 50 % of 0.01 = 0.005 -> 0.01 (of the exact 0.006 it
    # would be 0.003 -> 0.00); net 0.00
    rows = rate(tmp_path, disc_catalog(dec=2, price="0.006"),
                [cdr("c", "2024-01-09T10:00:00Z", 1, "49", account="h")], accounts=ACCOUNTS)
    assert trio(rows)["c"] == ("0.01", "0.01", "0.00")
    # 12.5 % of 1.00 = 0.125 -> 0.13 half_up, 0.12 down
    for method, disc, net in [("half_up", "0.13", "0.87"), ("down", "0.12", "0.88")]:
        rows = rate(tmp_path, disc_catalog(dec=2, method=method, price="1"),
                    [cdr("c", "2024-01-09T10:00:00Z", 1, "49", account="e")], accounts=ACCOUNTS)
        assert trio(rows)["c"] == ("1.00", disc, net)


def test_two_discounts_on_one_service(tmp_path):
    # The contract applies each listed discount (rule 7) but does not say how two combine;
    # ccs caps their sum at the charge (docs/catalog.md).
    accounts = "account,tariff,discounts\nr,t,sixty;tenth\nq,t,sixty;half\n"
    rows = rate(tmp_path, disc_catalog(dec=2), [
        cdr("r", "2024-01-09T10:00:00Z", 1, "49", account="r"),  # 0.60 + 0.10 = 0.70
        cdr("q", "2024-01-09T10:00:00Z", 1, "49", account="q"),  # 0.60 + 0.50 = 1.10 -> cap 1.00
    ], accounts=accounts)
    assert trio(rows) == {"r": ("1.00", "0.70", "0.30"), "q": ("1.00", "1.00", "0.00")}


def test_discount_tier_from_is_inclusive_for_basis_charge(tmp_path):
    # price 0.25: 4 units = 1.00 exactly; the next CDR stands at 1.00 -> 50 %: 0.25 -> 0.13
    # (half_up of 0.125)
    rows = rate(tmp_path, disc_catalog(dec=2, price="0.25"), [
        cdr("c1", "2024-01-09T10:00:00Z", 4, "49", account="m"),
        cdr("c2", "2024-01-09T10:01:00Z", 1, "49", account="m"),
    ], accounts=ACCOUNTS)
    assert trio(rows) == {"c1": ("1.00", "0.00", "1.00"), "c2": ("0.25", "0.13", "0.12")}


# --------------------------------------------------------------------------------------------
# Money in the catalog
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,field", [
    ('price: "0.1234567"', "price"),          # 7 decimals
    ("price: 0.09", "price"),                 # a YAML float
    ('connect_fee: "0.0000001"', "connect_fee"),
    ("connect_fee: 0.05", "connect_fee"),
])
def test_catalog_check_refuses_more_than_6_decimals_and_floats(tmp_path, bad, field):
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    assert run_ccs("catalog", "check", good).returncode == 0
    key = bad.split(":")[0]
    line = '      - {price: "0.123456", connect_fee: "0.000001"}'
    new = line.replace(f'{key}: "0.123456"' if key == "price" else f'{key}: "0.000001"', bad)
    assert new != line
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace(line, new))
    proc = run_ccs("catalog", "check", path)
    assert proc.returncode != 0
    assert f"tariffs.t.sms[0].{field}" in proc.stdout + proc.stderr
    rated = run_rate(tmp_path, VALID.replace(line, new), [cdr("a", T, 1, service="sms")])
    assert rated.returncode == 2 and rated.stdout == ""


@pytest.mark.parametrize("bad", ["{decimals: 7, method: half_up}", "{decimals: 2, method: nearest}"])
def test_catalog_check_refuses_bad_rounding(tmp_path, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("{decimals: 4, method: half_up}", bad))
    proc = run_ccs("catalog", "check", path)
    assert proc.returncode != 0 and "rounding" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------
# Limits: a charge stays below 2^53 micro-units (docs/catalog.md, rule 10)
# --------------------------------------------------------------------------------------------

def test_charge_beyond_2_pow_53_micro_is_rejected_malformed_usage(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    rounding: {decimals: 2, method: half_up}
    tariffs:
      t:
        sms:
          - {price: "1"}
    """
    # 1 * 10^13 = 10,000,000,000,000.00 = 10^19 micro-units, beyond 2^63 - 1 and far beyond
    # the 2^53 micro-unit bound on a charge (docs/catalog.md): the row is rejected, amounts 0;
    # 9007199254 messages = 9007199254.00 = 9007199254000000 micro, just below 2^53: rated
    proc = run_rate(tmp_path, catalog, [cdr("c", T, 10**13, service="sms"),
                                        cdr("ok", T, 9007199254, service="sms")])
    assert proc.returncode == 0, proc.stderr
    rows = by_id(list(csv.DictReader(io.StringIO(proc.stdout))))
    assert {k: rows["c"][k] for k in ADDED} == {
        "status": "rejected", "reason": "malformed:usage", "destination_name": "", "band": "",
        "rated_usage": "0", "charge": "0.00", "discount": "0.00", "net_charge": "0.00"}
    assert (rows["ok"]["status"], rows["ok"]["charge"]) == ("rated", "9007199254.00")
    assert proc.stderr.strip() == ("ccs rate: rated 1, duplicate 0, rejected 1, "
                                   "total net charge 9007199254.00")
