"""accounts.snapshot: every account's facts for the bill run, read in pipelines, and the bucket
rules it shares with the Lua scripts, on a real redis-server (and a real 3-master cluster).

Times by hand: the store clock starts 10 Nov 2026 12:00 UTC = 13:00 in Berlin (UTC+1).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from accounts.errors import AccountError, UnknownAccount
from accounts.snapshot import (
    AccountFacts,
    UnitBucket,
    allowance_buckets,
    consumption_order,
    facts_of,
    snapshot,
    unit_candidates,
)
from accounts.store import AccountStore
from rating.model import Allowance, Gift, Offer, Promotion

EUR = 1_000_000


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


T0 = utc(2026, 11, 10, 12)
NOV10 = utc(2026, 11, 9, 23)  # 10 Nov 00:00 CET
DEC_START = utc(2026, 11, 30, 23)  # 1 Dec 00:00 CET


@pytest.fixture
def accounts_catalog(make_catalog):
    offers = {
        "base": Offer("base", "std",
                      allowances=(Allowance("voice_100", "voice", 2, ("DE_MOBILE",)),),
                      promotions=(Promotion("subscribe", Gift("data", 500, None, 30)),)),
        "addon": Offer("addon", None, allowances=(Allowance("voice_x", "voice", 3, None),)),
        "addon2": Offer("addon2", None, allowances=(Allowance("voice_y", "voice", 2, None),
                                                    Allowance("sms_y", "sms", 5, None))),
        "promo": Offer("promo", None, promotions=(
            Promotion("topup", Gift("voice", 2, None, 30), min_amount=EUR),)),
    }  # fmt: skip
    return make_catalog(offers, services={"data": ("bytes", 1)})


BASE_SUB = {"offer": "base", "from": "2026-11-10", "to": None, "from_utc": NOV10, "to_utc": None,
            "base": True, "allow": [{"name": "voice_100", "service": "voice", "units": 2,
                                     "dest": ["DE_MOBILE"]}]}
ADDON_SUB = {"offer": "addon", "from": "2026-11-10", "to": None, "from_utc": NOV10,
             "to_utc": None, "base": False,
             "allow": [{"name": "voice_x", "service": "voice", "units": 3, "dest": None}]}


def _kind(i: int) -> tuple[int | None, str | None, tuple[str, ...]]:
    """Account i of the 2,000: (credit limit, parent, offers)."""
    limit = (0, None, 1000 * i + 1, 0)[i % 4]
    parent = f"A{i - 3:04d}" if i % 4 == 3 else None
    offers = (("base",), ("base", "addon"), (), (), ())[i % 5]
    return limit, parent, offers


def test_snapshot_returns_every_account_with_its_fields(store):
    n = 2000
    for i in range(n):
        limit, parent, offers = _kind(i)
        store.create(f"A{i:04d}", credit_limit=limit, bill_cycle_day=1 + i % 28, parent=parent,
                     offers=offers)
        if i % 2 == 0:
            store.topup(f"A{i:04d}", 10_000 * (i + 1), op_id=f"t{i}")
        if offers and i % 3 == 0:  # 1 s of voice to DE_MOBILE, covered by base's voice_100
            store.debit(f"A{i:04d}", op_id=f"d{i}", charge=0, units=1, service="voice",
                        destination="DE_MOBILE", counters={"2026-11|tier|voice": i + 1})
        if i % 11 == 0:
            store.set_status(f"A{i:04d}", "suspended", op_id=f"s{i}")
    # a lookup key whose create never wrote its account: not an account
    store.r.set("acct:GHOST", "GHOST 1 - t0k3n create:GHOST")

    facts = list(snapshot(store))
    assert [f.id for f in facts] == [f"A{i:04d}" for i in range(n)]
    for i, f in enumerate(facts):
        limit, parent, offers = _kind(i)
        bcd = 1 + i % 28
        # a cycle starts on day bcd: on 10 Nov it is 2026-11 for bcd <= 10, else 2026-10
        cycle = "2026-11" if bcd <= 10 else "2026-10"
        used = 1 if offers and i % 3 == 0 else 0
        expected_buckets = []
        if offers:
            expected_buckets.append(("allowance:base/voice_100:" + cycle, 2 - used, 1001))
        if "addon" in offers:
            expected_buckets.append(("allowance:addon/voice_x:" + cycle, 3, 2001))
        if offers:  # the subscribe gift of base: 500 bytes, T0 .. T0 + 30 days: expires last
            expected_buckets.append(("gift:create:" + f.id + ":1", 500, 101001))
        assert (f.currency, f.status, f.credit_limit, f.balance, f.reserved, f.bill_cycle_day,
                f.parent) == ("EUR", "suspended" if i % 11 == 0 else "active", limit,
                              10_000 * (i + 1) if i % 2 == 0 else 0, 0, bcd, parent), f.id
        assert f.subscriptions == [{"base": BASE_SUB, "addon": ADDON_SUB}[o] for o in offers]
        assert [(b.id, b.remaining, b.priority) for b in f.buckets] == expected_buckets, f.id
        assert f.counters == ({"2026-11|tier|voice": i + 1} if used else {})
    # one account in full
    a = facts[1]
    assert a == AccountFacts(
        id="A0001", currency="EUR", status="active", credit_limit=None, balance=0, reserved=0,
        bill_cycle_day=2, parent=None, subscriptions=[BASE_SUB, ADDON_SUB],
        buckets=(
            # 2026-11 for bcd 2: 2 Nov 00:00 CET .. 2 Dec 00:00 CET = 1 Dec 23:00 UTC
            UnitBucket("allowance:base/voice_100:2026-11", "voice", 2, 0, NOV10,
                       utc(2026, 12, 1, 23), 1001, ("DE_MOBILE",),
                       "allowance:base/voice_100:2026-11"),
            UnitBucket("allowance:addon/voice_x:2026-11", "voice", 3, 0, NOV10,
                       utc(2026, 12, 1, 23), 2001, None, "allowance:addon/voice_x:2026-11"),
            UnitBucket("gift:create:A0001:1", "data", 500, 0, T0, T0 + 30 * 86400, 101001,
                       None, "gift:subscribe:base")),
        counters={})
    # the same through a given list, in its order, whatever the batch size
    some = ["A1999", "A0003", "A0001", "A0003"]
    assert facts_of(store, some, batch=2) == [facts[1999], facts[3], facts[1], facts[3]]
    assert list(snapshot(store, batch=7)) == facts
    with pytest.raises(UnknownAccount) as e:
        facts_of(store, ["A0001", "GHOST"])
    assert str(e.value) == "account_ids: no account 'GHOST'"
    with pytest.raises(AccountError) as e:
        facts_of(store, ["bad id"])
    assert e.value.field == "account_ids"
    with pytest.raises(ValueError, match="batch: expected 1..10000 accounts, got 0"):
        list(snapshot(store, batch=0))


def _consumed_in_order(store, account_id: str, units: int, **usage) -> list[str]:
    """Debit 1 unit `units` times; the bucket ids in the order they were first used."""
    seen: list[str] = []
    for k in range(units):
        r = store.debit(account_id, op_id=f"{account_id}-u{k}", charge=0, units=1, **usage)
        assert r.detail["covered_units"] == 1
        (bid,) = store.ledger(account_id, count=10_000)[-1]["buckets"]
        if bid not in seen:
            seen.append(bid)
    return seen


def test_online_consumption_follows_consumption_order(store):
    # voice buckets, by hand: addon2's voice_y (2 s, ends 20 Nov 00:00 CET: soonest), then at
    # the cycle end addon's voice_x (3 s, priority 1001) before base's voice_100 (2 s,
    # DE_MOBILE, 3001), then the two top-up gifts of promo (2 s each, T0 + 30 days, both
    # priority 200000 + 4 * 1000 + 1): same expiry and priority, so by id, byte by byte:
    # "gift:B-2:1" before "gift:b-1:1" ('B' 0x42 < 'b' 0x62)
    store.create_account("A", credit_limit=None, offers=["addon"])
    store.subscribe("A", "addon2", op_id="s2", to_date="2026-11-20")
    store.subscribe("A", "base", op_id="s3")
    store.subscribe("A", "promo", op_id="s4")
    store.topup("A", EUR, op_id="b-1")
    store.topup("A", EUR, op_id="B-2")
    (facts,) = facts_of(store, ["A"])
    expected = ["allowance:addon2/voice_y:2026-11", "allowance:addon/voice_x:2026-11",
                "allowance:base/voice_100:2026-11", "gift:B-2:1", "gift:b-1:1"]
    predicted = unit_candidates(facts.buckets, "voice", "DE_MOBILE", T0)
    assert [b.id for b in predicted] == expected
    assert _consumed_in_order(store, "A", 11, service="voice", destination="DE_MOBILE") == expected
    # to another destination base's voice_100 does not apply
    store.create_account("B", credit_limit=None, offers=["addon", "base"])
    (b,) = facts_of(store, ["B"])
    assert [x.id for x in unit_candidates(b.buckets, "voice", "DE_FIXED", T0)] == [
        "allowance:addon/voice_x:2026-11"]


def test_ties_in_expiry_and_priority_are_broken_by_id_bytes(store, redis_client):
    # buckets written as the scripts store them: 1 s each, valid from 0; expiry E or none,
    # priorities 5 and 7. Expected by hand: expiry E first (priority 5 by id bytes: "B" 0x42,
    # "Z" 0x5a, "a" 0x61, "a-" (a prefix first), "a.b", "ab" ('-' 0x2d < '.' 0x2e < 'b'),
    # "é" (0xc3 0xa9); then priority 7: "A"), then no expiry: "0", "x"
    e = DEC_START + 86400
    specs = [("é", e, 5), ("ab", e, 5), ("x", None, 5), ("a-", e, 5), ("A", e, 7), ("B", e, 5),
             ("a.b", e, 5), ("0", None, 5), ("Z", e, 5), ("a", e, 5)]
    store.create_account("A", credit_limit=None)
    keys = store.account_keys("A")
    for bid, valid_to, priority in specs:
        b = {"kind": "units", "service": "voice", "remaining": "1", "initial": "1",
             "reserved": "0", "valid_from": "0", "priority": str(priority), "source": "test"}
        if valid_to is not None:
            b["valid_to"] = str(valid_to)
        redis_client.hset(keys.buckets, bid, json.dumps(b))
    expected = ["B", "Z", "a", "a-", "a.b", "ab", "é", "A", "0", "x"]
    (facts,) = facts_of(store, ["A"])
    assert [b.id for b in facts.buckets] == expected
    assert [b.id for b in consumption_order(reversed(facts.buckets))] == expected
    assert _consumed_in_order(store, "A", len(specs), service="voice") == expected


def test_allowance_buckets_are_what_the_scripts_grant(store, clock, accounts_catalog):
    # addon 10..15 Nov, again from 15 Nov (@2026-11-15); addon2 10 Nov ended that day and
    # again from 10 Nov (#4, its position: an earlier one to addon2 starts the same day);
    # base from 5 Dec; addon 1..20 Oct (before the cycle: nothing)
    store.create_account("A", credit_limit=None)
    store.subscribe("A", "addon", op_id="s1", to_date="2026-11-15")
    store.subscribe("A", "addon", op_id="s2", from_date="2026-11-15")
    store.subscribe("A", "addon2", op_id="s3", to_date="2026-11-10")
    store.subscribe("A", "addon2", op_id="s4", from_date="2026-11-10")
    store.subscribe("A", "base", op_id="s5", from_date="2026-12-05")
    store.subscribe("A", "addon", op_id="s6", from_date="2026-10-01", to_date="2026-10-20")

    def granted(facts, cycle):
        return sorted((b for b in facts.buckets if b.source.startswith("allowance:")
                       and b.id.split(":")[2].startswith(cycle)), key=lambda b: b.id)

    (nov,) = facts_of(store, ["A"])
    predicted = allowance_buckets(nov.subscriptions, "2026-11", 1, accounts_catalog.timezone)
    assert sorted(predicted, key=lambda b: b.id) == granted(nov, "2026-11")
    assert [(b.id, b.valid_from, b.valid_to, b.priority) for b in predicted] == [
        ("allowance:addon/voice_x:2026-11", NOV10, utc(2026, 11, 14, 23), 1001),
        ("allowance:addon/voice_x:2026-11@2026-11-15", utc(2026, 11, 14, 23), DEC_START, 2001),
        ("allowance:addon2/voice_y:2026-11@2026-11-10#4", NOV10, DEC_START, 4001),
        ("allowance:addon2/sms_y:2026-11@2026-11-10#4", NOV10, DEC_START, 4002)]
    clock.t = DEC_START
    store.topup("A", 1, op_id="t1")  # the first touch of 2026-12 grants it
    (dec,) = facts_of(store, ["A"])
    predicted = allowance_buckets(dec.subscriptions, "2026-12", 1, accounts_catalog.timezone)
    assert sorted(predicted, key=lambda b: b.id) == granted(dec, "2026-12")
    assert sorted(b.id for b in predicted) == [
        "allowance:addon/voice_x:2026-12@2026-11-15", "allowance:addon2/sms_y:2026-12@2026-11-10#4",
        "allowance:addon2/voice_y:2026-12@2026-11-10#4", "allowance:base/voice_100:2026-12"]


# --- a Redis Cluster --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    from tests.charging.test_cluster import Cluster

    c = Cluster()
    try:
        yield c.start()
    finally:
        c.stop()


def test_snapshot_on_a_cluster_reads_every_master(cluster, accounts_catalog, clock):
    rc = cluster.client()
    try:
        rc.flushall()
        store = AccountStore(rc, accounts_catalog, clock=clock)
        ids = [f"C{i:03d}" for i in range(60)]
        for i, account_id in enumerate(ids):
            store.create(account_id, credit_limit=0, offers=("addon",) if i % 2 else ())
            store.topup(account_id, (i + 1) * EUR, op_id=f"t{i}")
        nodes = {rc.get_node_from_key(store.account_keys(i).account).name for i in ids}
        assert len(nodes) == 3
        rc.script_flush()  # every primary lost its scripts: the read script is loaded again
        facts = list(snapshot(store, batch=25))
        assert [f.id for f in facts] == ids
        assert [f.balance for f in facts] == [(i + 1) * EUR for i in range(60)]
        assert [[b.id for b in f.buckets] for f in facts] == [
            ["allowance:addon/voice_x:2026-11"] if i % 2 else [] for i in range(60)]
        assert facts_of(store, ["C059", "C000"]) == [facts[59], facts[0]]
    finally:
        rc.close()
