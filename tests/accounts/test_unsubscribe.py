"""Subscriptions end (billing.md): `AccountStore.unsubscribe`, empty subscriptions (to = from),
a base-offer switch, on a real redis-server. Times by hand: the store clock starts 10 Nov 2026
12:00 UTC; Europe/Berlin is UTC+1 in November (a local midnight is 23:00 UTC the day before).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from accounts.audit import audit
from accounts.errors import AccountError, InvalidState, OpIdConflict, UnknownAccount
from accounts.plans import plan_at
from rating.model import Allowance, Gift, Offer, Promotion


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


T0 = utc(2026, 11, 10, 12)
NOV_START = utc(2026, 10, 31, 23)  # 1 Nov 00:00 CET
DEC_START = utc(2026, 11, 30, 23)  # 1 Dec 00:00 CET
NOV10 = utc(2026, 11, 9, 23)  # 10 Nov 00:00 CET


@pytest.fixture
def accounts_catalog(make_catalog):
    offers = {
        "base": Offer("base", "std",
                      allowances=(Allowance("voice_100", "voice", 100, None),),
                      promotions=(Promotion("subscribe", Gift("data", 500, None, 30)),)),
        "other": Offer("other", "std"),
        "addon": Offer("addon", None, allowances=(Allowance("voice_x", "voice", 300, None),)),
    }  # fmt: skip
    return make_catalog(offers, services={"data": ("bytes", 1)})


def buckets(store, account_id="A"):
    return {b.id: b for b in store.get_account(account_id).buckets}


def subs(store, account_id="A"):
    return [(s.offer, s.from_date, s.to_date) for s in store.get_account(account_id).subscriptions]


def stored_subs(store, account_id="A") -> list[dict]:
    return json.loads(store.r.hget(store.account_keys(account_id).account, "subs"))


def test_unsubscribe_ends_on_the_date_and_shrinks_this_cycles_allowances(store, clock):
    store.create_account("A", credit_limit=None, offers=["base", "addon"])
    r = store.unsubscribe("A", "base", op_id="u1", on_date="2026-11-25")
    assert (r.applied, r.code, r.detail) == (
        True, "ok", {"ended": [{"offer": "base", "from": "2026-11-10", "to": "2026-11-25"}]})
    assert subs(store) == [("base", "2026-11-10", "2026-11-25"), ("addon", "2026-11-10", None)]
    # to_utc = 25 Nov 00:00 CET = 24 Nov 23:00 UTC, kept with the subscription
    assert stored_subs(store)[0]["to_utc"] == str(utc(2026, 11, 24, 23))
    b = buckets(store)
    # base's allowance of 2026-11 now ends with it; addon's still ends with the cycle; the
    # subscribe gift (500 bytes, T0 .. T0 + 30 days) is not touched
    assert (b["allowance:base/voice_100:2026-11"].valid_from,
            b["allowance:base/voice_100:2026-11"].valid_to) == (NOV10, utc(2026, 11, 24, 23))
    assert b["allowance:addon/voice_x:2026-11"].valid_to == DEC_START
    gift = next(x for x in b.values() if x.source == "gift:subscribe:base")
    assert (gift.remaining, gift.valid_to) == (500, T0 + 30 * 86400)
    entry = store.ledger("A", count=100)[-1]
    assert (entry["op"], entry["op_id"], entry["subscriptions"], entry["bucket_valid_to"]) == (
        "unsubscribe", "u1", [{"offer": "base", "from": "2026-11-10", "to": "2026-11-25"}],
        {"allowance:base/voice_100:2026-11": utc(2026, 11, 24, 23)})
    # 24 Nov 22:59:59 UTC: base's 100 s still cover (soonest expiry first); from 23:00 only
    # addon's 300 s do
    clock.t = utc(2026, 11, 24, 22, 59, 59)
    assert store.debit("A", op_id="d1", charge=0, units=30, service="voice").detail[
        "covered_units"] == 30
    clock.t = utc(2026, 11, 24, 23)
    store.debit("A", op_id="d2", charge=0, units=200, service="voice")
    b = buckets(store)
    assert (b["allowance:base/voice_100:2026-11"].remaining,
            b["allowance:addon/voice_x:2026-11"].remaining) == (70, 100)  # 300 - 200
    # December: only addon is granted
    clock.t = DEC_START
    store.debit("A", op_id="d3", charge=0, units=1, service="voice")
    assert sorted(k for k in buckets(store) if k.endswith("2026-12")) == [
        "allowance:addon/voice_x:2026-12"]
    assert audit(store.r) == []


def test_unsubscribe_on_the_first_day_leaves_an_empty_subscription(store, clock):
    # addon subscribed today (10 Nov) and ended today: active on no day, its 300 s are valid
    # on no instant (valid_to = valid_from = 10 Nov 00:00 CET)
    store.create_account("A", credit_limit=None, offers=["addon"])
    r = store.unsubscribe("A", "addon", op_id="u1", on_date="2026-11-10")
    assert r.detail["ended"] == [{"offer": "addon", "from": "2026-11-10", "to": "2026-11-10"}]
    x = buckets(store)["allowance:addon/voice_x:2026-11"]
    assert (x.remaining, x.valid_from, x.valid_to) == (300, NOV10, NOV10)
    assert store.debit("A", op_id="d1", charge=0, units=10, service="voice").detail[
        "covered_units"] == 0
    # an empty subscription conflicts with nothing: the same offer again from the same day,
    # twice; each has its own bucket: @ its start date, # its position (an earlier one to
    # the same offer starts the same day)
    store.subscribe("A", "addon", op_id="s2", from_date="2026-11-10")
    store.unsubscribe("A", "addon", op_id="u2", on_date="2026-11-10")
    store.subscribe("A", "addon", op_id="s3", from_date="2026-11-10")
    assert subs(store) == [("addon", "2026-11-10", "2026-11-10")] * 2 + [
        ("addon", "2026-11-10", None)]
    b = buckets(store)
    assert sorted(b) == ["allowance:addon/voice_x:2026-11",
                         "allowance:addon/voice_x:2026-11@2026-11-10#2",
                         "allowance:addon/voice_x:2026-11@2026-11-10#3"]
    assert b["allowance:addon/voice_x:2026-11@2026-11-10#2"].valid_to == NOV10
    live = b["allowance:addon/voice_x:2026-11@2026-11-10#3"]
    assert (live.remaining, live.valid_from, live.valid_to) == (300, NOV10, DEC_START)
    assert store.debit("A", op_id="d2", charge=0, units=10, service="voice").detail[
        "covered_units"] == 10
    assert buckets(store)["allowance:addon/voice_x:2026-11@2026-11-10#3"].remaining == 290
    assert audit(store.r) == []


def test_unsubscribe_cancels_future_subscriptions_too(store, clock):
    # addon 10..15 Nov and again from 20 Nov; base from 5 Dec. Ending addon on 12 Nov ends the
    # first on 12 Nov and empties the second (20 Nov .. 20 Nov); ending base on 1 Dec empties
    # it (5 Dec .. 5 Dec: it never starts)
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s1", to_date="2026-11-15")
    store.subscribe("A", "addon", op_id="s2", from_date="2026-11-20")
    store.subscribe("A", "base", op_id="s3", from_date="2026-12-05")
    r = store.unsubscribe("A", "addon", op_id="u1", on_date="2026-11-12")
    assert r.detail["ended"] == [
        {"offer": "addon", "from": "2026-11-10", "to": "2026-11-12", "was": "2026-11-15"},
        {"offer": "addon", "from": "2026-11-20", "to": "2026-11-20"}]
    r = store.unsubscribe("A", "base", op_id="u2", on_date="2026-12-01")
    assert r.detail["ended"] == [{"offer": "base", "from": "2026-12-05", "to": "2026-12-05"}]
    assert subs(store) == [("addon", "2026-11-10", "2026-11-12"),
                           ("addon", "2026-11-20", "2026-11-20"),
                           ("base", "2026-12-05", "2026-12-05")]
    assert stored_subs(store)[1]["to_utc"] == stored_subs(store)[1]["from_utc"] == str(
        utc(2026, 11, 19, 23))
    b = buckets(store)
    # first: 10 Nov 00:00 .. 12 Nov 00:00 CET; second: from its start, valid on no instant
    assert (b["allowance:addon/voice_x:2026-11"].valid_to,
            b["allowance:addon/voice_x:2026-11@2026-11-20"].valid_from,
            b["allowance:addon/voice_x:2026-11@2026-11-20"].valid_to) == (
        utc(2026, 11, 11, 23), utc(2026, 11, 19, 23), utc(2026, 11, 19, 23))
    # base's subscribe gift was granted for 5 Dec .. 4 Jan when subscribed: never touched
    gift = next(x for x in b.values() if x.source == "gift:subscribe:base")
    assert (gift.valid_from, gift.remaining) == (utc(2026, 12, 4, 23), 500)
    # December grants nothing
    clock.t = DEC_START + 60
    store.debit("A", op_id="d", charge=0, units=1, service="voice")
    assert not [k for k in buckets(store) if "2026-12" in k.split(":")[-1]]
    assert audit(store.r) == []


def test_unsubscribe_in_the_past_keeps_valid_to_at_least_valid_from(store):
    # addon from 5 Oct; ended (retroactively) on 20 Oct: November's bucket, valid from the
    # cycle start, is valid on no instant (valid_to = valid_from = 1 Nov 00:00 CET)
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s1", from_date="2026-10-05")
    store.unsubscribe("A", "addon", op_id="u1", on_date="2026-10-20")
    x = buckets(store)["allowance:addon/voice_x:2026-11"]
    assert (x.valid_from, x.valid_to) == (NOV_START, NOV_START)
    assert subs(store) == [("addon", "2026-10-05", "2026-10-20")]


def test_a_base_offer_switch_is_unsubscribe_then_subscribe(store, accounts_catalog):
    store.create_account("A", credit_limit=None, offers=["base"])
    with pytest.raises(InvalidState):  # two base offers on 20 Nov
        store.subscribe("A", "other", op_id="s1", from_date="2026-11-20")
    store.unsubscribe("A", "base", op_id="u1", on_date="2026-11-20")
    r = store.subscribe("A", "other", op_id="s2", from_date="2026-11-20")
    assert (r.code, subs(store)) == ("ok", [("base", "2026-11-10", "2026-11-20"),
                                            ("other", "2026-11-20", None)])
    # the last instant of 19 Nov rates with base, the first of 20 Nov with other
    raw = stored_subs(store)
    assert plan_at(accounts_catalog, raw, utc(2026, 11, 19, 22, 59, 59)).offers == ("base",)
    assert plan_at(accounts_catalog, raw, utc(2026, 11, 19, 23)).offers == ("other",)


def test_same_day_subscribe_and_cancel_is_an_empty_subscription(store):
    # subscribe(from = to): no allowance, no gift, and it does not hold the base-offer place
    store.create_account("A", credit_limit=None, offers=["other"])
    r = store.subscribe("A", "base", op_id="s1", from_date="2026-11-20", to_date="2026-11-20")
    assert r.code == "ok"
    assert subs(store) == [("other", "2026-11-10", None), ("base", "2026-11-20", "2026-11-20")]
    assert buckets(store) == {}
    entries = store.ledger("A")
    assert [e["op"] for e in entries] == ["create", "subscribe", "subscribe"]
    assert entries[-1]["new_buckets"] == {}  # no subscribe gift
    # nothing to end: refused
    with pytest.raises(InvalidState) as e:
        store.unsubscribe("A", "base", op_id="u1", on_date="2026-11-20")
    assert str(e.value) == "offer: A: no subscription to base active on 2026-11-20 or later"


def test_unsubscribe_refusals_name_their_field_and_write_nothing(store):
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s1", to_date="2026-11-15")
    before, entries = store.get_account("A"), store.ledger("A")
    with pytest.raises(UnknownAccount) as e:
        store.unsubscribe("NOPE", "addon", op_id="u1", on_date="2026-11-12")
    assert e.value.field == "account_id"
    for bad in ("2026-11-31", "12.11.2026", None, ""):
        with pytest.raises(AccountError) as e:
            store.unsubscribe("A", "addon", op_id="u1", on_date=bad)
        assert e.value.field == "on_date"
    with pytest.raises(AccountError) as e:
        store.unsubscribe("A", "", op_id="u1", on_date="2026-11-12")
    assert e.value.field == "offer"
    # ended before (to = 15 Nov is exclusive), never subscribed
    for offer, on in (("addon", "2026-11-15"), ("addon", "2026-12-01"), ("base", "2026-11-12")):
        with pytest.raises(InvalidState) as e:
            store.unsubscribe("A", offer, op_id="u1", on_date=on)
        assert str(e.value) == f"offer: A: no subscription to {offer} active on {on} or later"
    assert (store.get_account("A"), store.ledger("A")) == (before, entries)


def test_unsubscribe_is_idempotent_on_its_op_id(store, clock):
    store.create_account("A", credit_limit=None, offers=["addon"])
    first = store.unsubscribe("A", "addon", op_id="u1", on_date="2026-11-20")
    state, n = store.get_account("A"), len(store.ledger("A"))
    clock.t = T0 + 60
    again = store.unsubscribe("A", "addon", op_id="u1", on_date="2026-11-20")
    assert (again.applied, again.code, again.detail) == (False, "ok", first.detail)
    assert store.get_account("A") == state and len(store.ledger("A")) == n
    with pytest.raises(OpIdConflict):
        store.unsubscribe("A", "addon", op_id="u1", on_date="2026-11-21")
    # a second op id: the subscription ends before 20 Nov already, so none is left to end
    with pytest.raises(InvalidState):
        store.unsubscribe("A", "addon", op_id="u2", on_date="2026-11-20")
    # an earlier end with another op id moves it earlier
    r = store.unsubscribe("A", "addon", op_id="u3", on_date="2026-11-15")
    assert r.detail["ended"] == [
        {"offer": "addon", "from": "2026-11-10", "to": "2026-11-15", "was": "2026-11-20"}]
    assert buckets(store)["allowance:addon/voice_x:2026-11"].valid_to == utc(2026, 11, 14, 23)


def test_a_terminated_accounts_subscription_can_still_end(store):
    store.create_account("A", credit_limit=None, offers=["base"])
    store.set_status("A", "terminated", op_id="x")
    assert store.unsubscribe("A", "base", op_id="u1", on_date="2026-11-11").code == "ok"
    assert subs(store) == [("base", "2026-11-10", "2026-11-11")]
