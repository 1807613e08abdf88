"""billing.md's fee and bill arithmetic, rule by rule, with amounts worked out by hand.

The example catalog (docs/examples/catalog.yaml): smart_m 9.99/cycle + activation 5.00 and
account discount big_bill; flat_l 29.99; roam_pack (add-on) 4.99; big_bill: 5% from 50.00,
capped at 10.00; VAT 19%; bills in 2 decimals, due 14 days after the cycle's last day.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from billing import bill as B
from rating.catalog import load_catalog
from rating.cycles import cycle_bounds

CATALOG = load_catalog(Path(__file__).parents[2] / "docs" / "examples" / "catalog.yaml")
M = 1_000_000


def period(cycle, bcd=1):
    return B.Period.of(cycle, bcd)


@pytest.mark.parametrize("bcd, first, after, days", [
    # February of a leap year: day 29, 30 and 31 all start on the 29th (the last day)
    (1, date(2024, 2, 1), date(2024, 3, 1), 29),
    (15, date(2024, 2, 15), date(2024, 3, 15), 29),
    (29, date(2024, 2, 29), date(2024, 3, 29), 29),
    (30, date(2024, 2, 29), date(2024, 3, 30), 30),
    (31, date(2024, 2, 29), date(2024, 3, 31), 31),
])
def test_cycle_of_each_bill_cycle_day_in_a_leap_february(bcd, first, after, days):
    p = period("2024-02", bcd)
    assert (p.first, p.after, p.days) == (first, after, days)
    # the January cycle ends exactly where February's starts: no gap, no overlap
    assert period("2024-01", bcd).after == p.first


def test_a_cycle_across_the_dst_change_has_31_local_days_and_tiles():
    # March 2024 in Berlin: 2024-03-01 00:00 CET (23:00Z the day before) to 2024-04-01 00:00
    # CEST (22:00Z): 31 days less the hour that DST skips
    start, end = cycle_bounds("2024-03", 1, "Europe/Berlin")
    assert (start, end) == (1709247600, 1711922400)
    assert end - start == 31 * 86400 - 3600
    assert period("2024-03").days == 31
    assert cycle_bounds("2024-04", 1, "Europe/Berlin")[0] == end


def test_recurring_fee_prorated_by_day():
    p = period("2024-02")  # 29 days
    sub = {"offer": "smart_m", "from": "2024-02-10"}
    assert B.active_days(sub, p) == 20
    # 9.99 * 20 / 29 = 6.889655... -> 6.89
    assert B.recurring_fee(9_990_000, 20, 29, 2) == 6_890_000
    lines = B.section_lines(CATALOG, B.Section("A", subscriptions=[sub]), p, "")
    assert [(ln.kind, ln.name, ln.amount) for ln in lines] == [
        ("recurring", "smart_m", 6_890_000), ("one_time", "smart_m:activation", 5_000_000)]


def test_base_offer_switched_mid_cycle():
    p = period("2024-02")
    subs = [{"offer": "smart_m", "from": "2024-01-05", "to": "2024-02-10"},
            {"offer": "flat_l", "from": "2024-02-10"}]
    lines = B.section_lines(CATALOG, B.Section("A", subscriptions=subs), p, "")
    # smart_m 9 days: 9.99 * 9 / 29 = 3.100344 -> 3.10 (its activation was in January);
    # flat_l 20 days: 29.99 * 20 / 29 = 20.682758 -> 20.68
    assert [(ln.kind, ln.name, ln.amount) for ln in lines] == [
        ("recurring", "smart_m", 3_100_000), ("recurring", "flat_l", 20_680_000)]


def test_subscribed_and_cancelled_on_one_day_pays_no_recurring_fee():
    p = period("2024-02")
    sub = {"offer": "smart_m", "from": "2024-02-10", "to": "2024-02-10"}
    assert B.active_days(sub, p) == 0
    lines = B.section_lines(CATALOG, B.Section("A", subscriptions=[sub]), p, "")
    # the one-time fee is of the cycle that holds `from` (billing.md), charged even so
    assert [(ln.kind, ln.amount) for ln in lines] == [("one_time", 5_000_000)]
    # an empty subscription activates no account discount either
    assert B.account_discount_names(CATALOG, [sub], p) == []


def test_add_on_fee_and_a_subscription_ending_before_the_cycle():
    p = period("2024-02")
    subs = [{"offer": "smart_m", "from": "2023-06-01", "to": "2024-02-01"},  # ended: 0 days
            {"offer": "flat_l", "from": "2024-02-01"},
            {"offer": "roam_pack", "from": "2024-02-20", "to": "2024-02-27"}]  # 7 days
    lines = B.section_lines(CATALOG, B.Section("A", subscriptions=subs), p, "")
    # flat_l all 29 days: 29.99; roam_pack 4.99 * 7 / 29 = 1.204482 -> 1.20
    assert [(ln.name, ln.amount) for ln in lines] == [("flat_l", 29_990_000),
                                                       ("roam_pack", 1_200_000)]


def _bill(usage_micro, subs=None, children=(), prepaid=False):
    subs = subs if subs is not None else [{"offer": "smart_m", "from": "2023-01-01"}]
    owner = B.Section("P", {"voice": usage_micro}, subs, {})
    return B.build_bill(CATALOG, owner=owner, children=list(children), period=period("2024-02"),
                        status="draft", prepaid=prepaid, currency="EUR")


def test_account_discount_below_at_and_capped():
    # subtotal = voice + smart_m 9.99
    # 40.009999 of usage is one line rounded once, 40.01: the subtotal is exactly 50.00,
    # at min_total: 5% = 2.50
    at = _bill(40_009_999)
    assert at["subtotal"] == "50.00"
    assert [ln for ln in at["lines"] if ln["kind"] == "account_discount"] == [
        {"kind": "account_discount", "name": "big_bill", "account": "", "amount": "-2.50"}]
    under = _bill(40_000_000)  # 40.00 + 9.99 = 49.99 < 50.00: no discount
    assert under["account_discount"] == "0.00"
    # tax 19% of 49.99 = 9.4981 -> 9.50; total 59.49
    assert (under["tax"], under["total"], under["amount_due"]) == ("9.50", "59.49", "59.49")
    capped = _bill(240_010_000)  # 240.01 + 9.99 = 250.00; 5% = 12.50 -> cap 10.00
    assert capped["account_discount"] == "-10.00"
    # tax 19% of 240.00 = 45.60; total 250.00 - 10.00 + 45.60 = 285.60
    assert (capped["tax"], capped["total"]) == ("45.60", "285.60")


def test_tax_half_up_on_the_discounted_subtotal():
    b = _bill(40_010_000)  # subtotal 50.00, discount 2.50 -> 47.50 * 19% = 9.025 -> 9.03
    assert (b["subtotal"], b["account_discount"], b["tax"], b["total"]) == (
        "50.00", "-2.50", "9.03", "56.53")
    assert b["due_date"] == "2024-03-14" and b["period_end"] == "2024-02-29"


def test_every_printed_line_adds_up_to_the_total():
    # three usage sums that would each round up: rounding once per line, the lines still add
    owner = B.Section("P", {"voice": 1_005_000, "sms": 1_005_000, "data": 1_005_000},
                      [{"offer": "flat_l", "from": "2024-01-01"}], {})
    b = B.build_bill(CATALOG, owner=owner, children=[], period=period("2024-02"),
                     status="draft", prepaid=False, currency="EUR")
    amounts = [ln["amount"] for ln in b["lines"]]
    assert amounts == ["1.01", "1.01", "1.01", "29.99", "6.27"]  # 33.02 * 19% = 6.2738
    cents = sum(int(a.replace(".", "")) for a in amounts)
    assert cents == int(b["total"].replace(".", "")) == 3929


def test_a_parent_with_two_children():
    kid1 = B.Section("K1", {"voice": 12_345_678}, [{"offer": "flat_l", "from": "2024-02-15"}],
                     {"late:2024-01:voice": 1_000_000})
    kid2 = B.Section("K2", {"data": 3_000_000}, [], {})
    b = _bill(10_000_000, children=[kid2, kid1])
    rows = [(ln["kind"], ln["name"], ln["account"], ln["amount"]) for ln in b["lines"]]
    # K1's flat_l: 29.99 * 15 / 29 = 15.512068 -> 15.51; subtotal 10.00 + 9.99 + 12.35 + 15.51
    # + 1.00 + 3.00 = 51.85 >= 50: 5% = 2.5925 -> 2.59; tax (51.85 - 2.59) * 19% = 9.3594
    assert rows == [
        ("usage", "voice", "", "10.00"), ("recurring", "smart_m", "", "9.99"),
        ("usage", "voice", "K1", "12.35"), ("recurring", "flat_l", "K1", "15.51"),
        ("adjustment", "late:2024-01:voice", "K1", "1.00"),
        ("usage", "data", "K2", "3.00"),
        ("account_discount", "big_bill", "", "-2.59"), ("tax", "VAT", "", "9.36"),
    ]
    assert (b["subtotal"], b["total"]) == ("51.85", "58.62")


def test_a_prepaid_statement_has_no_amount_due_and_its_fees():
    b = _bill(3_000_000, prepaid=True)
    assert (b["type"], b["total"], b["amount_due"]) == ("statement", "15.46", "0.00")
    fees = B.fee_lines(CATALOG, B.Section("P", {}, [{"offer": "smart_m", "from": "2024-02-03"}],
                                          {}), period("2024-02"))
    # 9.99 * 27 / 29 = 9.301034 -> 9.30, and the activation
    assert fees == [("smart_m@2024-02-03", "recurring", 9_300_000),
                    ("smart_m@2024-02-03", "activation", 5_000_000)]
