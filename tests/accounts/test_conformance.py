"""Outside conformance checks of the accounts layer against billing.md / online.md and the brief.

Each case drives a real redis-server through AccountStore, the sweeper, the audit or the
`ccs accounts` CLI; every expected amount is computed by hand in the comment next to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from accounts.audit import audit
from accounts.errors import (
    AccountError,
    AccountExists,
    CurrencyMismatch,
    InvalidAmount,
    InvalidState,
    OpIdConflict,
    UnknownAccount,
)
from accounts.keys import AccountKeys
from accounts.sweeper import sweep_expired
from rating.model import Allowance, Gift, Offer, Promotion

EUR = 1_000_000
MAXI = 2**53 - 1  # 9_007_199_254_740_991, the exact range of Lua numbers


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


T0 = utc(2026, 11, 10, 12)  # the fixture clock's start; Berlin (CET, UTC+1) 10 Nov 13:00
# bill cycle day 1, Europe/Berlin: 2026-11 = [1 Nov 00:00 CET, 1 Dec 00:00 CET)
NOV_START = utc(2026, 10, 31, 23)
DEC_START = utc(2026, 11, 30, 23)
JAN_START = utc(2026, 12, 31, 23)


@pytest.fixture
def accounts_catalog(make_catalog):
    offers = {
        # base offer: a voice allowance for DE_MOBILE only, data for any destination, a data
        # gift on subscribe, a 2.00 money gift on top-ups >= 20.00
        "base": Offer(
            "base", "std",
            allowances=(Allowance("voice_100", "voice", 100, ("DE_MOBILE",)),
                        Allowance("data_1k", "data", 1000, None)),
            promotions=(Promotion("subscribe", Gift("data", 500, None, 30)),
                        Promotion("topup", Gift(None, None, 2 * EUR, 30), min_amount=20 * EUR)),
        ),
        "other": Offer("other", "std"),
        "addon": Offer("addon", None, allowances=(Allowance("voice_x", "voice", 300, None),)),
        "addon2": Offer("addon2", None, allowances=(Allowance("voice_y", "voice", 50, None),)),
    }  # fmt: skip
    return make_catalog(offers, services={"data": ("bytes", 1)})


def prepaid(store, account_id="A", money=0, **kw):
    store.create_account(account_id, **kw)
    if money:
        store.topup(account_id, money, op_id=f"seed-{account_id}")
    return store.get_account(account_id)


def buckets(store, account_id="A"):
    return {b.id: b for b in store.get_account(account_id).buckets}


def assert_clean(store):
    assert audit(store.r) == []


# --- the credit check at its exact edge ---------------------------------------------------------


def test_prepaid_reserve_at_the_exact_edge(store):
    # balance 10.00, no buckets, credit 0, reserved 0: available 10_000_000
    prepaid(store, money=10 * EUR)
    r = store.reserve("A", "s1", op_id="r1", money=10 * EUR + 1)
    assert (r.code, r.detail["available"]) == ("no_credit", 10_000_000)
    assert store.get_account("A").reserved == 0
    r = store.reserve("A", "s2", op_id="r2", money=10 * EUR)  # equal passes
    assert (r.code, r.detail["available"]) == ("ok", 0)
    r = store.reserve("A", "s3", op_id="r3", money=1)  # 0 + 0 - 10 + 10 = 0 < 1
    assert (r.code, r.detail["available"]) == ("no_credit", 0)
    a = store.get_account("A")
    assert (a.balance, a.reserved, a.available(T0)) == (10 * EUR, 10 * EUR, 0)
    assert_clean(store)


def test_postpaid_edge_counts_gift_buckets_limit_and_reservations(store):
    # postpaid limit 5.00; topup 20.00 (>= 20.00: a 2.00 money gift) with offer base.
    # available = 20 + 2 + 5 - 0 = 27.00; reserve 4.00 -> 23.00
    store.create_account("A", credit_limit=5 * EUR, offers=["base"])
    store.topup("A", 20 * EUR, op_id="t")
    assert store.reserve("A", "s1", op_id="r1", money=4 * EUR).detail["available"] == 23 * EUR
    r = store.debit("A", op_id="d1", charge=23 * EUR + 1)
    assert (r.code, r.detail["available"]) == ("no_credit", 23 * EUR)
    r = store.debit("A", op_id="d2", charge=23 * EUR)
    # 23.00 charged: the 2.00 gift first, then 21.00 from the balance: 20 - 21 = -1.00
    assert (r.code, r.detail["from_buckets"], r.detail["available"]) == ("ok", 2 * EUR, 0)
    a = store.get_account("A")
    assert (a.balance, a.reserved, a.available(T0)) == (-1 * EUR, 4 * EUR, 0)
    # -1 + 0 + 5 - 4 = 0: one micro-unit more is refused
    assert store.debit("A", op_id="d3", charge=1).code == "no_credit"
    assert_clean(store)


def test_unlimited_postpaid_is_never_denied(store):
    store.create_account("U", credit_limit=None)
    r = store.reserve("U", "s", op_id="r", money=MAXI)
    assert r.code == "ok" and "available" not in r.detail
    r = store.debit("U", op_id="d", charge=MAXI)
    assert r.code == "ok"
    a = store.get_account("U")
    # -MAXI balance, MAXI reserved, never denied
    assert (a.balance, a.reserved, a.available(T0)) == (-MAXI, MAXI, None)
    assert_clean(store)


def test_balance_never_leaves_the_exact_range(store):
    # three debits of 2^53-1 on an unlimited account: the 2nd would make -2*MAXI (beyond
    # -(2^53-1), the range adjust enforces) -> it must be refused, balance stays -MAXI.
    store.create_account("U", credit_limit=None)
    store.debit("U", op_id="d1", charge=MAXI)
    try:
        store.debit("U", op_id="d2", charge=MAXI)
        store.debit("U", op_id="d3", charge=MAXI)
    except InvalidAmount:
        pass
    assert store.get_account("U").balance == -MAXI
    assert_clean(store)


def test_out_of_range_refusals_name_their_field_and_write_nothing(store):
    # unlimited account at -MAXI after one debit. Each refusal: InvalidAmount naming the field,
    # no ledger entry, no op id kept (the same op id then works for a smaller request).
    store.create_account("U", credit_limit=None)
    store.debit("U", op_id="d1", charge=MAXI)
    n = len(store.ledger("U"))
    with pytest.raises(InvalidAmount) as e:
        store.debit("U", op_id="d2", charge=1)  # -MAXI - 1
    assert e.value.field == "charge"
    # commit: hold 1, commit 6 (release): the 1 held is freed, 6 taken -> -MAXI - 1: refused,
    # the reservation stays held and indexed for the sweeper
    store.adjust("U", 5, op_id="adj")  # -MAXI + 5
    store.reserve("U", "s", op_id="r", money=1)
    n = len(store.ledger("U"))
    with pytest.raises(InvalidAmount) as e:
        store.commit("U", "s", op_id="c", charge=6, release=True)  # -MAXI + 5 - 6
    assert e.value.field == "charge"
    a = store.get_account("U")
    assert (a.balance, a.reserved, len(store.ledger("U"))) == (-MAXI + 5, 1, n)
    assert store.r.zscore("rsv:expiry", "U|s") == a.reservations[0].expires_at
    r = store.commit("U", "s", op_id="c", charge=5, release=True)  # exactly -MAXI
    assert (r.code, r.account.balance, r.account.reserved) == ("ok", -MAXI, 0)
    # reserve: MAXI held, one more micro-unit would pass 2^53 - 1 -> field money
    store.reserve("U", "s1", op_id="r1", money=MAXI)
    with pytest.raises(InvalidAmount) as e:
        store.reserve("U", "s2", op_id="r2", money=1)
    assert e.value.field == "money"
    assert store.get_account("U").reserved == MAXI
    assert_clean(store)


def test_child_of_an_unlimited_parent_cannot_push_it_out_of_range(store):
    # a prepaid child with nothing of its own draws on an unlimited parent: the parent's
    # balance -MAXI after one debit; a second one is refused (field charge), nothing written
    store.create_account("P", credit_limit=None)
    store.create_account("C", parent="P")
    assert store.debit("C", op_id="d1", charge=MAXI).detail["from_parent"] == MAXI
    n, m = len(store.ledger("P")), len(store.ledger("C"))
    with pytest.raises(InvalidAmount) as e:
        store.debit("C", op_id="d2", charge=1)
    assert e.value.field == "charge"
    store.reserve("C", "s", op_id="r", money=MAXI)  # held on the parent: MAXI
    with pytest.raises(InvalidAmount) as e:
        store.reserve("C", "s2", op_id="r2", money=1)
    assert e.value.field == "money"
    with pytest.raises(InvalidAmount) as e:
        store.commit("C", "s", op_id="c", charge=1, release=True)  # frees MAXI, takes 1
    assert e.value.field == "charge"
    assert (store.get_account("P").balance, store.get_account("P").reserved) == (-MAXI, MAXI)
    assert (len(store.ledger("P")), len(store.ledger("C"))) == (n + 1, m + 1)  # the reserve
    assert_clean(store)


# --- prepaid never below zero: what each path does ----------------------------------------------


def test_prepaid_debit_beyond_balance_refused_and_nothing_written(store):
    prepaid(store, money=1 * EUR)
    n = len(store.ledger("A"))
    r = store.debit("A", op_id="d", charge=1 * EUR + 1)
    assert (r.code, r.detail["available"]) == ("no_credit", 1 * EUR)
    assert store.get_account("A").balance == 1 * EUR
    assert len(store.ledger("A")) == n


def test_prepaid_commit_of_more_than_reserved_goes_negative(store):
    # contract silent: commit takes the reported usage without a credit check (the usage
    # happened). balance 1.00, reserve 0.40, commit 1.50 -> 1.00 - 1.50 = -0.50, reserved 0
    prepaid(store, money=1 * EUR)
    store.reserve("A", "s", op_id="r", money=400_000)
    r = store.commit("A", "s", op_id="c", charge=1_500_000, release=True)
    assert (r.code, r.detail["charged"], r.detail["released_money"]) == ("ok", 1_500_000, 400_000)
    a = store.get_account("A")
    assert (a.balance, a.reserved, a.available(T0)) == (-500_000, 0, -500_000)
    # the arrears now block any new money: 1 micro-unit > available -0.50
    assert store.reserve("A", "s2", op_id="r2", money=1).code == "no_credit"
    assert_clean(store)


def test_prepaid_negative_adjust_is_applied_refund_only_adds(store):
    # contract silent: adjust is an operator correction without a credit check.
    # 1.00 - 2.50 = -1.50; refund 0.50 -> -1.00; a negative refund is refused (field amount)
    prepaid(store, money=1 * EUR)
    assert store.adjust("A", -2_500_000, op_id="adj", reason="fix").detail["balance"] == -1_500_000
    assert store.refund("A", 500_000, op_id="rf").detail["balance"] == -1 * EUR
    with pytest.raises(InvalidAmount) as e:
        store.refund("A", -1, op_id="rf2")
    assert e.value.field == "amount"
    assert store.get_account("A").balance == -1 * EUR
    assert_clean(store)


def test_allowance_usable_while_prepaid_balance_is_negative(store):
    # base offer: voice_100 (DE_MOBILE). balance -1.00 after an adjust. 60 s fully covered by
    # the allowance need 0 money: 0 is all the check should ask, the grant is 60 units.
    store.create_account("A", offers=["base"])
    store.adjust("A", -1 * EUR, op_id="adj", reason="arrears")
    r = store.reserve("A", "s", op_id="r", money=0, units=60, service="voice",
                      destination="DE_MOBILE")
    assert (r.code, r.detail["covered"]) == ("ok", 60)
    # the same for an event debit: 5 units covered, charge 0 -> ok; one micro-unit of money
    # more is still refused (available -1.00)
    d = store.debit("A", op_id="d", charge=0, units=5, service="voice", destination="DE_MOBILE")
    assert (d.code, d.detail["covered_units"]) == ("ok", 5)
    assert store.debit("A", op_id="d2", charge=1, units=5, service="voice",
                       destination="DE_MOBILE").code == "no_credit"
    assert store.reserve("A", "s2", op_id="r2", money=1, units=1, service="voice",
                         destination="DE_MOBILE").code == "no_credit"
    assert buckets(store)["allowance:base/voice_100:2026-11"].remaining == 95
    assert_clean(store)


# --- unit buckets: which one, in what order -----------------------------------------------------


def test_bundles_soonest_expiry_then_priority_and_destinations(store):
    # subscriptions in order: addon (voice_x 300, any dest, priority 1001), base (voice_100
    # DE_MOBILE, priority 2001), both valid to the cycle end; addon2 from today to 20 Nov
    # (voice_y 50, any, valid to 20 Nov 00:00 CET = 19 Nov 23:00 UTC: expires first).
    store.create_account("A", credit_limit=None, offers=["addon"])
    store.subscribe("A", "base", op_id="sb")
    store.subscribe("A", "addon2", op_id="sa2", to_date="2026-11-20")
    b = buckets(store)
    assert b["allowance:addon2/voice_y:2026-11"].valid_to == utc(2026, 11, 19, 23)
    assert b["allowance:addon/voice_x:2026-11"].valid_to == DEC_START
    # 120 s to DE_MOBILE: voice_y 50 (soonest expiry), then voice_x 70 (priority 1001 before
    # base's 2001 at equal expiry); voice_100 untouched
    r = store.reserve("A", "s1", op_id="r1", money=0, units=120, service="voice",
                      destination="DE_MOBILE")
    assert r.detail["covered"] == 120
    held = store.get_account("A").reservations[0].units
    assert held == {"allowance:addon2/voice_y:2026-11": 50, "allowance:addon/voice_x:2026-11": 70}
    # 300 s to DE_MOBILE: 230 left on voice_x, then 70 of voice_100
    r = store.debit("A", op_id="d1", charge=0, units=300, service="voice", destination="DE_MOBILE")
    assert r.detail["covered_units"] == 300
    b = buckets(store)
    assert (b["allowance:addon/voice_x:2026-11"].remaining,
            b["allowance:base/voice_100:2026-11"].remaining) == (70, 30)
    # DE_FIXED: voice_100 (DE_MOBILE only) does not apply; voice_x remaining 70, all 70 held
    # by s1 -> free 0; voice_y remaining 50, all held -> free 0: nothing covered
    r = store.debit("A", op_id="d2", charge=0, units=10, service="voice", destination="DE_FIXED")
    assert r.detail["covered_units"] == 0
    # no destination given: a destination-limited bundle does not apply either
    r = store.debit("A", op_id="d3", charge=0, units=10, service="voice")
    assert r.detail["covered_units"] == 0
    assert buckets(store)["allowance:base/voice_100:2026-11"].remaining == 30
    # sms: no bundle of that service applies
    assert store.debit("A", op_id="d4", charge=0, units=1, service="sms").detail[
        "covered_units"] == 0
    assert_clean(store)


def test_money_gift_before_balance_and_stale_cover(store):
    # topup 20.00 with base: gift 2.00 (valid 30 days). debit 3.00: 2.00 from the gift,
    # 1.00 from the balance -> balance 19.00, gift 0
    store.create_account("A", offers=["base"])
    store.topup("A", 20 * EUR, op_id="t")
    r = store.debit("A", op_id="d", charge=3 * EUR)
    assert (r.detail["from_buckets"], r.detail["available"]) == (2 * EUR, 19 * EUR)
    a = store.get_account("A")
    gift = next(b for b in a.buckets if b.kind == "money")
    assert (a.balance, gift.remaining, gift.initial) == (19 * EUR, 0, 2 * EUR)
    # stale: the caller priced 1000 data bytes covered, buckets cover 1000 + 500 gift = 1500
    r = store.reserve("A", "s", op_id="r", money=0, units=1500, service="data",
                      expected_covered=1000)
    assert (r.code, r.detail["covered"]) == ("stale", 1500)
    assert store.get_account("A").reservations == ()


def test_bundle_not_yet_valid_and_expired_are_not_used(store, clock):
    # addon from 20 Nov: its allowance is valid from 20 Nov 00:00 CET = 19 Nov 23:00 UTC
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s", from_date="2026-11-20")
    bk = buckets(store)["allowance:addon/voice_x:2026-11"]
    assert (bk.remaining, bk.valid_from, bk.valid_to) == (300, utc(2026, 11, 19, 23), DEC_START)
    clock.t = utc(2026, 11, 19, 22, 59, 59)
    assert store.debit("A", op_id="d1", charge=0, units=10, service="voice").detail[
        "covered_units"] == 0
    clock.t = utc(2026, 11, 19, 23)
    assert store.debit("A", op_id="d2", charge=0, units=10, service="voice").detail[
        "covered_units"] == 10
    # last second of the cycle: still valid; at the cycle end (exclusive): expired, and the
    # 2026-12 grant applies instead (290 left of 2026-11 stay unused)
    clock.t = DEC_START - 1
    assert store.debit("A", op_id="d3", charge=0, units=5, service="voice").detail[
        "covered_units"] == 5
    clock.t = DEC_START
    store.debit("A", op_id="d4", charge=0, units=7, service="voice")
    b = buckets(store)
    assert b["allowance:addon/voice_x:2026-11"].remaining == 285  # 300 - 10 - 5
    assert b["allowance:addon/voice_x:2026-12"].remaining == 293  # 300 - 7
    assert_clean(store)


def test_expired_money_gift_not_counted_in_available(store, clock):
    # gift 2.00 valid T0 .. T0 + 30 days (exclusive)
    store.create_account("A", offers=["base"])
    store.topup("A", 20 * EUR, op_id="t")
    clock.t = T0 + 30 * 86400 - 1
    assert store.reserve("A", "s1", op_id="r1", money=22 * EUR).code == "ok"  # 20 + 2
    store.release("A", "s1", op_id="rl1")
    clock.t = T0 + 30 * 86400
    r = store.reserve("A", "s2", op_id="r2", money=20 * EUR + 1)
    assert (r.code, r.detail["available"]) == ("no_credit", 20 * EUR)


# --- allowances per cycle -----------------------------------------------------------------------


def test_allowance_granted_once_per_cycle_at_local_midnight(store, clock):
    # created 10 Nov (mid-cycle): the whole 100 s, valid from 10 Nov 00:00 CET = 9 Nov 23:00
    a = store.create_account("A", credit_limit=None, offers=["base"])
    voice = {b.id: b for b in a.buckets}["allowance:base/voice_100:2026-11"]
    assert (voice.remaining, voice.initial) == (100, 100)
    assert (voice.valid_from, voice.valid_to) == (utc(2026, 11, 9, 23), DEC_START)
    store.debit("A", op_id="d1", charge=0, units=40, service="voice", destination="DE_MOBILE")
    store.topup("A", 1, op_id="t1")  # touching again in the same cycle grants nothing
    clock.t = DEC_START - 1  # 30 Nov 23:59:59 CET: still 2026-11
    store.topup("A", 1, op_id="t2")
    b = buckets(store)
    assert b["allowance:base/voice_100:2026-11"].remaining == 60
    assert not any(k.endswith("2026-12") for k in b)
    clock.t = DEC_START  # 1 Dec 00:00 CET
    store.topup("A", 1, op_id="t3")
    b = buckets(store)
    dec = b["allowance:base/voice_100:2026-12"]
    assert (dec.remaining, dec.valid_from, dec.valid_to) == (100, DEC_START, JAN_START)
    assert b["allowance:base/data_1k:2026-12"].remaining == 1000
    store.topup("A", 1, op_id="t4")
    # one grant entry per cycle: 2026-11 at creation, 2026-12 by the first touch (t3)
    grants = [(e["op_id"], sorted(e["new_buckets"])) for e in store.ledger("A", count=1000)
              if e["op"] == "grant"]
    assert grants == [
        ("create:A", ["allowance:base/data_1k:2026-11", "allowance:base/voice_100:2026-11"]),
        ("t3", ["allowance:base/data_1k:2026-12", "allowance:base/voice_100:2026-12"])]
    assert_clean(store)


def test_bill_cycle_day_31_in_a_30_day_month(store, clock):
    # bcd 31 on 10 Nov: cycle 2026-10 = [31 Oct 00:00 CET, 30 Nov 00:00 CET)
    #  = [30 Oct 23:00 UTC, 29 Nov 23:00 UTC); next 2026-11 = [.., 31 Dec 00:00 CET = 30 Dec 23:00)
    a = store.create_account("A", credit_limit=None, bill_cycle_day=31, offers=["addon"])
    oct_ = {b.id: b for b in a.buckets}["allowance:addon/voice_x:2026-10"]
    assert (oct_.valid_from, oct_.valid_to) == (utc(2026, 11, 9, 23), utc(2026, 11, 29, 23))
    clock.t = utc(2026, 11, 29, 23)
    store.debit("A", op_id="d", charge=0, units=1, service="voice")
    nov = buckets(store)["allowance:addon/voice_x:2026-11"]
    assert (nov.remaining, nov.valid_from, nov.valid_to) == (
        299, utc(2026, 11, 29, 23), utc(2026, 12, 30, 23))


def test_subscription_ended_before_the_cycle_gets_nothing(store):
    # addon from 5 Oct to 1 Nov (exclusive): active on no day of 2026-11 -> no bucket;
    # addon2 to 2 Nov: active on 1 Nov -> the whole 50, valid 1 Nov 00:00 .. 2 Nov 00:00 CET
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s1", from_date="2026-10-05", to_date="2026-11-01")
    store.subscribe("A", "addon2", op_id="s2", from_date="2026-10-05", to_date="2026-11-02")
    b = buckets(store)
    assert "allowance:addon/voice_x:2026-11" not in b
    y = b["allowance:addon2/voice_y:2026-11"]
    assert (y.remaining, y.valid_from, y.valid_to) == (50, NOV_START, utc(2026, 11, 1, 23))


def test_resubscription_in_the_same_cycle_gets_its_allowance(store, clock):
    # addon 10..15 Nov, then addon again from 15 Nov: the second subscription is active in
    # 2026-11, so billing.md grants it the whole 300 for 2026-11 from 15 Nov 00:00 CET.
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s1", from_date="2026-11-10", to_date="2026-11-15")
    store.subscribe("A", "addon", op_id="s2", from_date="2026-11-15")
    clock.t = utc(2026, 11, 16, 12)
    r = store.debit("A", op_id="d", charge=0, units=10, service="voice")
    assert r.detail["covered_units"] == 10
    # each subscription has its own bucket: the second one's id names its start date
    b = buckets(store)
    first = b["allowance:addon/voice_x:2026-11"]
    second = b["allowance:addon/voice_x:2026-11@2026-11-15"]
    assert (first.remaining, first.valid_from, first.valid_to) == (
        300, utc(2026, 11, 9, 23), utc(2026, 11, 14, 23))
    assert (second.remaining, second.valid_from, second.valid_to) == (
        290, utc(2026, 11, 14, 23), DEC_START)
    # a retried subscribe grants nothing more; December grants the second subscription only
    assert store.subscribe("A", "addon", op_id="s2", from_date="2026-11-15").applied is False
    clock.t = DEC_START + 60
    store.debit("A", op_id="d2", charge=0, units=1, service="voice")
    dec = [i for i in buckets(store) if i.endswith("2026-12") or "2026-12@" in i]
    assert dec == ["allowance:addon/voice_x:2026-12@2026-11-15"]
    assert buckets(store)[dec[0]].remaining == 299
    assert_clean(store)


def test_second_base_offer_refused_and_subscribe_on_terminated(store):
    store.create_account("A", offers=["base"])
    with pytest.raises(InvalidState) as e:
        store.subscribe("A", "other", op_id="s")
    assert e.value.field == "offer"
    # a base offer that starts when the first one ended is fine
    store.create_account("B", offers=[])
    store.subscribe("B", "base", op_id="s1", from_date="2026-11-01", to_date="2026-11-20")
    assert store.subscribe("B", "other", op_id="s2", from_date="2026-11-20").code == "ok"
    with pytest.raises(InvalidState) as e:
        store.subscribe("B", "nope", op_id="s3")
    assert e.value.field == "offer"


def test_dst_change_inside_a_cycle(store, clock):
    # 2026-03 in Berlin: 1 Mar 00:00 CET = 28 Feb 23:00 UTC .. 1 Apr 00:00 CEST = 31 Mar 22:00
    # UTC (DST starts 29 Mar): the allowance ends at 22:00 UTC, the April one starts there
    clock.t = utc(2026, 3, 15, 12)
    a = store.create_account("A", credit_limit=None, offers=["addon"])
    mar = {b.id: b for b in a.buckets}["allowance:addon/voice_x:2026-03"]
    assert (mar.valid_from, mar.valid_to) == (utc(2026, 3, 14, 23), utc(2026, 3, 31, 22))
    clock.t = utc(2026, 3, 31, 21, 59, 59)
    store.debit("A", op_id="d1", charge=0, units=1, service="voice")
    assert "allowance:addon/voice_x:2026-04" not in buckets(store)
    clock.t = utc(2026, 3, 31, 22)
    store.debit("A", op_id="d2", charge=0, units=2, service="voice")
    b = buckets(store)
    apr = b["allowance:addon/voice_x:2026-04"]
    # April ends 1 May 00:00 CEST = 30 Apr 22:00 UTC
    assert (b["allowance:addon/voice_x:2026-03"].remaining, apr.remaining, apr.valid_from,
            apr.valid_to) == (299, 298, utc(2026, 3, 31, 22), utc(2026, 4, 30, 22))


def test_subscribe_dates_checked_naming_the_field(store):
    store.create_account("A")
    with pytest.raises(AccountError) as e:
        store.subscribe("A", "addon", op_id="s", from_date="2026-11-20", to_date="2026-11-19")
    assert e.value.field == "to_date"
    with pytest.raises(AccountError) as e:
        store.subscribe("A", "addon", op_id="s", from_date="2026-02-30")
    assert e.value.field == "from_date"
    assert store.get_account("A").subscriptions == ()


# --- gifts --------------------------------------------------------------------------------------


def test_gifts_on_subscribe_and_on_topup_threshold(store):
    store.create_account("A")
    store.subscribe("A", "base", op_id="sb")
    gifts = [b for b in store.get_account("A").buckets if b.source.startswith("gift:")]
    # subscribe gift: 500 data bytes valid T0 .. T0 + 30 * 86400
    assert [(g.kind, g.service, g.remaining, g.valid_from, g.valid_to) for g in gifts] == [
        ("units", "data", 500, T0, T0 + 30 * 86400)]
    r = store.topup("A", 20 * EUR - 1, op_id="t1")  # 19.999999 < 20.00: no gift
    assert r.detail["gifts"] == []
    r = store.topup("A", 20 * EUR, op_id="t2")  # exactly 20.00: a 2.00 gift
    assert len(r.detail["gifts"]) == 1
    money = [b for b in r.account.buckets if b.kind == "money"]
    assert [(b.remaining, b.valid_to, b.source) for b in money] == [
        (2 * EUR, T0 + 30 * 86400, "gift:topup:base")]
    a = r.account
    # balance 19.999999 + 20 = 39.999999; available + gift 2 = 41.999999
    assert (a.balance, a.available(T0)) == (40 * EUR - 1, 42 * EUR - 1)
    assert_clean(store)


def test_subscribe_gift_of_a_future_subscription_starts_with_it(store):
    # billing.md: gifts are valid valid_days "from the subscription": from 20 Dec 00:00 CET
    # = 19 Dec 23:00 UTC, for 30 days -> 18 Jan 23:00 UTC (no DST change in between)
    store.create_account("B")
    store.subscribe("B", "base", op_id="s1", from_date="2026-12-20")
    g = next(b for b in store.get_account("B").buckets if b.source == "gift:subscribe:base")
    assert (g.valid_from, g.valid_to) == (utc(2026, 12, 19, 23), utc(2027, 1, 18, 23))


# --- op ids -------------------------------------------------------------------------------------


def _setup_for_ops(store):
    store.create_account("A", credit_limit=0)
    store.topup("A", 100 * EUR, op_id="seed")
    store.reserve("A", "s0", op_id="seed-r", money=5 * EUR)


_VERBS = {
    "create": (lambda s: s.create("B", credit_limit=0, op_id="X"),
               lambda s: s.create("B", credit_limit=5, op_id="X"), "B"),
    "topup": (lambda s: s.topup("A", EUR, op_id="X"), lambda s: s.topup("A", 2 * EUR, op_id="X"),
              "A"),
    "adjust": (lambda s: s.adjust("A", -EUR, op_id="X"),
               lambda s: s.adjust("A", -2 * EUR, op_id="X"), "A"),
    "refund": (lambda s: s.refund("A", EUR, op_id="X"), lambda s: s.refund("A", 2, op_id="X"),
               "A"),
    "set_status": (lambda s: s.set_status("A", "suspended", op_id="X"),
                   lambda s: s.set_status("A", "terminated", op_id="X"), "A"),
    "change_payment_type": (lambda s: s.change_payment_type("A", None, op_id="X"),
                            lambda s: s.change_payment_type("A", 5, op_id="X"), "A"),
    "subscribe": (lambda s: s.subscribe("A", "addon", op_id="X"),
                  lambda s: s.subscribe("A", "addon2", op_id="X"), "A"),
    "reserve": (lambda s: s.reserve("A", "s1", op_id="X", money=EUR),
                lambda s: s.reserve("A", "s1", op_id="X", money=EUR + 1), "A"),
    "commit": (lambda s: s.commit("A", "s0", op_id="X", charge=EUR),
               lambda s: s.commit("A", "s0", op_id="X", charge=2 * EUR), "A"),
    "release": (lambda s: s.release("A", "s0", op_id="X"),
                lambda s: s.release("A", "s9", op_id="X"), "A"),
    "debit": (lambda s: s.debit("A", op_id="X", charge=EUR),
              lambda s: s.debit("A", op_id="X", charge=EUR, units=1, service="sms"), "A"),
}


@pytest.mark.parametrize("verb", sorted(_VERBS))
def test_every_verb_retry_returns_the_first_answer_and_conflict_is_refused(store, clock, verb):
    _setup_for_ops(store)
    first_call, other_call, acct = _VERBS[verb]
    first = first_call(store)
    assert first.applied and first.code == "ok"
    state, n = store.get_account(acct), len(store.ledger(acct, count=1000))
    clock.t = T0 + 60  # a retry a minute later still gets the first answer
    again = first_call(store)
    assert (again.applied, again.code, again.detail) == (False, first.code, first.detail)
    assert store.get_account(acct) == state and len(store.ledger(acct, count=1000)) == n
    with pytest.raises(OpIdConflict) as e:
        other_call(store)
    assert e.value.field == "op_id"
    assert store.get_account(acct) == state and len(store.ledger(acct, count=1000)) == n
    assert_clean(store)


def test_refused_reserve_is_remembered_under_its_op_id(store):
    # contract: "gets the first answer again": a no_credit stays no_credit on retry even after
    # a top-up; a new op id sees the new money
    prepaid(store, money=1 * EUR)
    assert store.reserve("A", "s", op_id="r", money=2 * EUR).code == "no_credit"
    store.topup("A", 1 * EUR, op_id="t")
    again = store.reserve("A", "s", op_id="r", money=2 * EUR)
    assert (again.applied, again.code, again.detail["available"]) == (False, "no_credit", EUR)
    assert store.reserve("A", "s", op_id="r2", money=2 * EUR).code == "ok"


def test_create_same_id_other_op_id_is_account_exists(store):
    store.create_account("A", op_id="c1")
    with pytest.raises(AccountExists) as e:
        store.create_account("A", op_id="c2")
    assert e.value.field == "account_id"


# --- status -------------------------------------------------------------------------------------


def test_suspend_resume_terminate(store):
    prepaid(store, money=10 * EUR)
    store.reserve("A", "s", op_id="r", money=3 * EUR)
    store.set_status("A", "suspended", op_id="st1", reason="fraud check")
    assert store.reserve("A", "s2", op_id="r2", money=1).code == "suspended"
    assert store.debit("A", op_id="d", charge=1).code == "suspended"
    # a granted session still settles; top-ups are accepted (paying brings it back)
    c = store.commit("A", "s", op_id="c", charge=2 * EUR, release=True)
    assert (c.code, c.detail["released_money"]) == ("ok", 3 * EUR)
    assert store.topup("A", EUR, op_id="t").detail["balance"] == 9 * EUR  # 10 - 2 + 1
    store.set_status("A", "active", op_id="st2")
    assert store.reserve("A", "s3", op_id="r3", money=9 * EUR).code == "ok"
    store.set_status("A", "terminated", op_id="st3")
    assert store.reserve("A", "s4", op_id="r4", money=1).detail["status"] == "terminated"
    with pytest.raises(InvalidState) as e:
        store.set_status("A", "active", op_id="st4")
    assert e.value.field == "status"
    with pytest.raises(InvalidState):
        store.topup("A", EUR, op_id="t2")
    # contract silent: terminate leaves the outstanding hold (9.00) until released/swept
    a = store.get_account("A")
    assert (a.status, a.balance, a.reserved) == ("terminated", 9 * EUR, 9 * EUR)
    assert store.release("A", "s3", op_id="rl").detail["released_money"] == 9 * EUR
    statuses = [e.get("status") for e in store.ledger("A") if e["op"] == "set_status"]
    assert statuses == ["suspended", "active", "terminated"]
    assert_clean(store)


# --- conversion ---------------------------------------------------------------------------------


def test_conversion_with_reservations_outstanding(store):
    # prepaid 10.00, 8.00 held: available 2.00
    prepaid(store, money=10 * EUR)
    store.reserve("A", "s", op_id="r", money=8 * EUR)
    r = store.change_payment_type("A", 5 * EUR, op_id="cv1")
    # postpaid 5.00: 10 + 5 - 8 = 7.00; the hold stays
    assert (r.detail["previous"], r.account.available(T0), r.account.reserved) == (0, 7 * EUR,
                                                                                   8 * EUR)
    assert store.reserve("A", "s2", op_id="r2", money=7 * EUR + 1).detail["available"] == 7 * EUR
    store.change_payment_type("A", None, op_id="cv2")
    assert store.get_account("A").available(T0) is None
    assert store.reserve("A", "s3", op_id="r3", money=50 * EUR).code == "ok"
    # back to prepaid with 58.00 held on 10.00: available 10 - 58 = -48.00 (accepted; holds
    # stay and are settled by commit/release)
    r = store.change_payment_type("A", 0, op_id="cv3")
    assert (r.account.payment_type, r.account.available(T0)) == ("prepaid", -48 * EUR)
    assert store.reserve("A", "s4", op_id="r4", money=1).code == "no_credit"
    store.release("A", "s3", op_id="rl3")
    assert store.get_account("A").available(T0) == 2 * EUR
    cps = [e["credit_limit"] for e in store.ledger("A") if e["op"] == "change_payment_type"]
    assert cps == [5 * EUR, None, 0]
    assert_clean(store)


def test_partial_commits_and_accumulating_reservations(store):
    # prepaid 10.00 with addon (voice_x 300). s: 3.00 + 2.00 = 5.00 held, 100 s of voice_x
    store.create_account("A", offers=["addon"])
    store.topup("A", 10 * EUR, op_id="t")
    store.reserve("A", "s", op_id="r1", money=3 * EUR, units=100, service="voice")
    store.reserve("A", "s", op_id="r2", money=2 * EUR)
    a = store.get_account("A")
    assert (a.reserved, a.reservations[0].money, a.available(T0)) == (5 * EUR, 5 * EUR, 5 * EUR)
    # commit 1.50 and 60 s, no release: frees 1.50 of money and the 60 s it used
    c = store.commit("A", "s", op_id="c1", charge=1_500_000, units=60, service="voice")
    assert (c.detail["covered_units"], c.detail["released_money"]) == (60, 1_500_000)
    a = store.get_account("A")
    bk = a.buckets[0]
    # balance 10 - 1.5 = 8.50, held 5 - 1.5 = 3.50; bucket 300 - 60 = 240, held 100 - 60 = 40
    assert (a.balance, a.reserved, bk.remaining, bk.reserved) == (8_500_000, 3_500_000, 240, 40)
    # commit 4.00 (more than the 3.50 still held): frees 3.50, charges 4.00 -> 4.50
    c = store.commit("A", "s", op_id="c2", charge=4 * EUR)
    assert c.detail["released_money"] == 3_500_000
    r = store.release("A", "s", op_id="rl")
    assert (r.detail["found"], r.detail["released_money"], r.detail["released_units"]) == (
        True, 0, 40)
    a = store.get_account("A")
    assert (a.balance, a.reserved, a.buckets[0].remaining, a.buckets[0].reserved) == (
        4_500_000, 0, 240, 0)
    # releasing a session that holds nothing is harmless
    r = store.release("A", "nosuch", op_id="rl2")
    assert (r.code, r.detail["found"]) == ("ok", False)
    assert_clean(store)


def test_op_ids_are_per_account(store):
    # contract silent: the op key carries the account's tag, so "X" on A and on B are two ops
    prepaid(store, "A")
    prepaid(store, "B")
    assert store.topup("A", EUR, op_id="X").applied
    assert store.topup("B", 2 * EUR, op_id="X").applied
    assert (store.get_account("A").balance, store.get_account("B").balance) == (EUR, 2 * EUR)


# --- sweeper ------------------------------------------------------------------------------------


def test_sweeper_releases_after_validity_plus_grace_not_before(store, clock):
    # reserve at T0, validity 300: expires T0+300; grace 30 -> released from T0+330 on
    prepaid(store, money=10 * EUR)
    store.reserve("A", "s", op_id="r", money=4 * EUR, validity_s=300)
    assert sweep_expired(store, now=T0 + 329) == 0
    assert store.get_account("A").reserved == 4 * EUR
    # renewed at T0+200 (another 1.00, validity 300): expires T0+500, release from T0+530
    clock.t = T0 + 200
    store.reserve("A", "s", op_id="r2", money=EUR, validity_s=300)
    assert sweep_expired(store, now=T0 + 330) == 0
    assert sweep_expired(store, now=T0 + 529) == 0
    assert store.get_account("A").reserved == 5 * EUR
    assert sweep_expired(store, now=T0 + 530) == 1
    a = store.get_account("A")
    assert (a.reserved, a.reservations, a.balance) == (0, (), 10 * EUR)
    last = store.ledger("A")[-1]
    assert (last["op"], last["reason"], last["reserved"]) == ("release", "expired", -5 * EUR)
    assert sweep_expired(store, now=T0 + 10_000) == 0
    assert_clean(store)


def test_racing_sweepers_release_once(store, redis_server, open_store, clock):
    prepaid(store, money=10 * EUR)
    for i in range(20):
        store.reserve("A", f"s{i}", op_id=f"r{i}", money=100_000, validity_s=60)
    counts, lock = [], threading.Lock()

    def worker():
        client = redis_server.client()
        try:
            n = sweep_expired(open_store(client), now=T0 + 90)  # 60 + 30 grace
            with lock:
                counts.append(n)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 20
    releases = [e for e in store.ledger("A", count=1000) if e["op"] == "release"]
    assert len(releases) == 20 and store.get_account("A").reserved == 0
    assert_clean(store)


# --- audit --------------------------------------------------------------------------------------


def _tamperable(store):
    store.create_account("A", offers=["addon"])
    store.topup("A", 10 * EUR, op_id="t")
    store.reserve("A", "s", op_id="r", money=2 * EUR, units=30, service="voice")
    store.debit("A", op_id="d", charge=EUR, counters={"2026-11|tier|voice": 60})
    assert_clean(store)
    return AccountKeys("A", "A")


def test_audit_catches_a_tampered_balance(store, redis_client):
    k = _tamperable(store)
    redis_client.hset(k.account, "bal", "9000001")  # replay: 10.00 - 1.00 = 9_000_000
    assert [(f.field, f.stored, f.replayed) for f in audit(redis_client)] == [
        ("balance", 9_000_001, 9_000_000)]


def test_audit_catches_a_tampered_bucket(store, redis_client):
    k = _tamperable(store)
    bid = "allowance:addon/voice_x:2026-11"
    raw = json.loads(redis_client.hget(k.buckets, bid))
    raw["remaining"] = "301"
    redis_client.hset(k.buckets, bid, json.dumps(raw))
    assert [(f.field, f.stored, f.replayed) for f in audit(redis_client)] == [
        (f"bucket:{bid}.remaining", 301, 300)]


def test_audit_catches_a_tampered_counter(store, redis_client):
    k = _tamperable(store)
    redis_client.hincrby(k.counters, "2026-11|tier|voice", 1)
    assert [(f.field, f.stored, f.replayed) for f in audit(redis_client)] == [
        ("counter:2026-11|tier|voice", 61, 60)]


def test_audit_catches_a_tampered_reservation(store, redis_client):
    k = _tamperable(store)
    raw = json.loads(redis_client.hget(k.reservations, "s"))
    raw["money"] = "1"
    redis_client.hset(k.reservations, "s", json.dumps(raw))
    # the account still holds 2.00 but its sessions add up to 1 micro-unit
    assert [(f.field, f.stored, f.replayed) for f in audit(redis_client)] == [
        ("reservations.money", 2 * EUR, 1)]
    redis_client.hset(k.account, "rsv", "1")  # the held total too: the ledger says 2.00
    assert [(f.field, f.stored, f.replayed) for f in audit(redis_client)] == [
        ("reserved", 1, 2 * EUR)]


# --- the ledger ---------------------------------------------------------------------------------


def test_ledger_has_one_entry_per_change_with_its_deltas(store, balances_along_ledger):
    store.create_account("A", credit_limit=0)
    store.topup("A", 10 * EUR, op_id="t")
    store.reserve("A", "s", op_id="r", money=3 * EUR)
    store.commit("A", "s", op_id="c", charge=2 * EUR, counters={"2026-11|tier|voice": 120})
    store.release("A", "s", op_id="rl")
    store.debit("A", op_id="d", charge=500_000)
    store.refund("A", 250_000, op_id="rf")
    store.adjust("A", -1, op_id="adj", reason="r")
    store.set_status("A", "suspended", op_id="st")
    store.change_payment_type("A", 7, op_id="cv")
    got = [(e["op"], e["op_id"], e.get("balance"), e.get("reserved")) for e in store.ledger("A")]
    assert got == [
        ("create", "create:A", None, None),
        ("topup", "t", 10 * EUR, None),
        ("reserve", "r", None, 3 * EUR),
        ("commit", "c", -2 * EUR, -2 * EUR),  # frees what it used: 2.00 of 3.00
        ("release", "rl", None, -1 * EUR),
        ("debit", "d", -500_000, None),
        ("refund", "rf", 250_000, None),
        ("adjust", "adj", -1, None),
        ("set_status", "st", None, None),
        ("change_payment_type", "cv", None, None),
    ]
    # 10 - 2 - 0.5 + 0.25 - 0.000001 = 7.749999
    assert balances_along_ledger(store, "A")[-1] == 7_749_999 == store.get_account("A").balance
    assert store.ledger("A")[3]["counters"] == {"2026-11|tier|voice": 120}


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("call, field", [
    (lambda s: s.topup("A", 2**53, op_id="x"), "amount"),
    (lambda s: s.adjust("A", -(2**53), op_id="x"), "amount"),
    (lambda s: s.refund("A", 2**53, op_id="x"), "amount"),
    (lambda s: s.reserve("A", "s", op_id="x", money=2**53), "money"),
    (lambda s: s.reserve("A", "s", op_id="x", money=0, units=2**53), "units"),
    (lambda s: s.commit("A", "s", op_id="x", charge=2**53), "charge"),
    (lambda s: s.debit("A", op_id="x", charge=2**53), "charge"),
    (lambda s: s.change_payment_type("A", 2**53, op_id="x"), "credit_limit"),
    (lambda s: s.debit("A", op_id="x", charge=0, counters={"k": 2**53}), "counters[k]"),
    (lambda s: s.topup("A", 1.5, op_id="x"), "amount"),
    (lambda s: s.topup("A", "10", op_id="x"), "amount"),
    (lambda s: s.topup("A", True, op_id="x"), "amount"),
    (lambda s: s.topup("A", 0, op_id="x"), "amount"),
    (lambda s: s.topup("A", -1, op_id="x"), "amount"),
    (lambda s: s.reserve("A", "s", op_id="x", money=-1), "money"),
    (lambda s: s.commit("A", "s", op_id="x", charge=0.5), "charge"),
    (lambda s: s.adjust("A", 0, op_id="x"), "amount"),
    (lambda s: s.change_payment_type("A", -1, op_id="x"), "credit_limit"),
    (lambda s: s.create_account("B", credit_limit=-5), "credit_limit"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_amounts_refused_naming_the_field_nothing_written(store, call, field):
    prepaid(store, money=EUR)
    n = len(store.ledger("A"))
    with pytest.raises(InvalidAmount) as e:
        call(store)
    assert e.value.field == field
    assert len(store.ledger("A")) == n and store.get_account("A").balance == EUR


def test_balance_past_2_53_refused_by_topup(store):
    store.create_account("A")
    store.topup("A", MAXI, op_id="t1")  # exactly 2^53 - 1: accepted
    with pytest.raises(InvalidAmount) as e:
        store.topup("A", 1, op_id="t2")
    assert e.value.field == "amount"
    assert store.get_account("A").balance == MAXI


def test_unknown_account_and_wrong_currency(store):
    prepaid(store, money=EUR)
    for call in (lambda: store.topup("nope", 1, op_id="x"),
                 lambda: store.reserve("nope", "s", op_id="x", money=1),
                 lambda: store.get_account("nope")):
        with pytest.raises(UnknownAccount) as e:
            call()
        assert e.value.field == "account_id"
    with pytest.raises(CurrencyMismatch) as e:
        store.topup("A", 1, op_id="x", currency="USD")
    assert e.value.field == "currency"
    with pytest.raises(CurrencyMismatch) as e:
        store.create_account("B", currency="USD")
    assert e.value.field == "currency"
    with pytest.raises(UnknownAccount):
        store.get_account("B")  # nothing written
    assert store.topup("A", 1, op_id="x", currency="EUR").detail["balance"] == EUR + 1
    with pytest.raises(AccountError) as e:
        store.set_status("A", "closed", op_id="y")
    assert e.value.field == "status"


# --- MSISDN resolution --------------------------------------------------------------------------


def test_msisdn_resolution_and_conflicts(store, redis_client):
    store.create_account("A", msisdns=["491510001", "491700002"])
    assert [store.resolve(x) for x in ("491510001", "491700002", "A")] == ["A", "A", "A"]
    with pytest.raises(UnknownAccount) as e:
        store.resolve("491510009")
    assert e.value.field == "subscriber"
    with pytest.raises(AccountExists) as e:
        store.create_account("B", msisdns=["491519999", "491700002"])
    assert e.value.field == "msisdns"
    # nothing of B stays: its own MSISDN is free again, B unknown
    assert redis_client.get("msisdn:491519999") is None
    with pytest.raises(UnknownAccount):
        store.resolve("B")
    store.create_account("B", msisdns=["491519999"])
    assert store.resolve("491519999") == "B"
    with pytest.raises(AccountError) as e:
        store.create_account("C", msisdns=["49-151"])
    assert e.value.field == "msisdns"


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_reservations_exactly_fill_prepaid_money(store, redis_server, open_store):
    # 100 threads reserve 1.00 each against 25.00: exactly 25 granted, 75 no_credit
    prepaid(store, money=25 * EUR)
    codes, lock = [], threading.Lock()

    def worker(i):
        client = redis_server.client()
        try:
            r = open_store(client).reserve("A", f"s{i}", op_id=f"r{i}", money=EUR)
            with lock:
                codes.append(r.code)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (codes.count("ok"), codes.count("no_credit")) == (25, 75)
    a = store.get_account("A")
    assert (a.balance, a.reserved, a.available(T0), len(a.reservations)) == (25 * EUR, 25 * EUR,
                                                                              0, 25)
    assert_clean(store)


# --- the CLI ------------------------------------------------------------------------------------

CCS = Path(sys.executable).with_name("ccs")


@pytest.fixture
def ccs(redis_client, redis_url, admin_catalog_path, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCS_")}
    env["CCS_DATA_DIR"] = str(tmp_path / "data")

    def run(*args):
        cmd = [str(CCS), "accounts", *args, "--redis", redis_url]
        if args[0] != "audit":
            cmd += ["--catalog", str(admin_catalog_path)]
        else:
            cmd = [str(CCS), "accounts", "audit", "--redis", redis_url, *args[1:]]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    return run


def test_cli_audit_clean_then_catches_tampering(ccs, redis_client):
    assert ccs("create", "A1", "--prepaid", "--msisdn", "491700000001", "--op-id", "c").returncode == 0
    assert ccs("topup", "A1", "12.50", "--op-id", "t").returncode == 0
    p = ccs("audit")
    assert (p.returncode, p.stdout) == (0, "audit clean: all accounts\n")
    redis_client.hset(AccountKeys("A1", "A1").account, "bal", "99")
    p = ccs("audit", "A1")
    # replay: 12.50 = 12_500_000 micro-units
    assert (p.returncode, p.stdout) == (1, "A1: balance: stored 99, replayed 12500000\n")
    assert "1 finding(s) in 1 account(s)" in p.stderr


def test_cli_operator_flow_amounts_and_refusals(ccs):
    assert ccs("create", "A1", "--prepaid", "--op-id", "c").returncode == 0
    p = ccs("topup", "A1", "10", "--op-id", "t")
    assert p.stdout == "A1: topped up 10.00; status active, balance 10.00 EUR, available 10.00\n"
    p = ccs("adjust", "A1", "-0.01", "--reason", "goodwill reversal", "--op-id", "a")
    assert p.stdout.endswith("balance 9.99 EUR, available 9.99\n")
    p = ccs("convert", "A1", "--postpaid", "--credit-limit", "5", "--op-id", "cv")
    assert p.stdout.endswith("balance 9.99 EUR, available 14.99\n")  # 9.99 + 5
    p = ccs("topup", "A1", "10", "--op-id", "t")  # retry of the first top-up
    assert p.stdout.startswith("already applied (op-id t): nothing changed\n")
    assert p.stdout.endswith("balance 9.99 EUR, available 14.99\n")
    p = ccs("topup", "A1", "11", "--op-id", "t")
    assert p.returncode == 1 and "op_id" in p.stderr
    p = ccs("topup", "NOPE", "1", "--op-id", "x")
    assert p.returncode == 1 and "account_id" in p.stderr
    p = ccs("topup", "A1", "1", "--currency", "USD", "--op-id", "y")
    assert p.returncode == 1 and "currency" in p.stderr
    p = ccs("suspend", "A1", "--op-id", "s")
    assert p.stdout.startswith("A1: suspended; status suspended")
