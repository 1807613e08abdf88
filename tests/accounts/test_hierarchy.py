"""Parent and child accounts: a child draws on its parent's money, each account settles its own."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from accounts.audit import audit
from accounts.errors import UnknownAccount
from accounts.sweeper import sweep_expired
from rating.model import Gift, Offer, Promotion

EUR = 1_000_000
T0 = int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp())  # where `clock` starts


@pytest.fixture
def accounts_catalog(make_catalog):
    gift = Promotion("topup", Gift(None, None, 2 * EUR, 30), min_amount=10 * EUR)
    return make_catalog({"fam": Offer("fam", "std", promotions=(gift,))})


@pytest.fixture
def family(store):
    """A prepaid parent with 10.00 and two prepaid children with no money of their own."""
    store.create_account("mum")
    store.topup("mum", 10 * EUR, op_id="t-mum")
    store.create_account("kid1", parent="mum")
    store.create_account("kid2", parent="mum")
    return store


def state(store, account_id):
    a = store.get_account(account_id)
    return a.balance, a.reserved


def test_child_with_no_money_reserves_and_commits_on_the_parent(family):
    store = family
    res = store.reserve("kid1", "s1", op_id="r1", money=4 * EUR, service="sms")
    got = (res.code, res.detail["granted_money"], res.detail["from_parent"])
    assert got == ("ok", 4 * EUR, 4 * EUR)
    assert res.detail["available"] == 6 * EUR  # own 0 + parent 10 - 4
    [held] = res.account.reservations
    assert (held.money, held.parent_money, held.total_money) == (0, 4 * EUR, 4 * EUR)
    assert state(store, "kid1") == (0, 0)
    assert state(store, "mum") == (10 * EUR, 4 * EUR)
    assert store.family_available("kid1") == 6 * EUR
    c = store.commit(
        "kid1", "s1", op_id="c1", charge=3 * EUR, service="sms",
        counters={"2026-11|tier|sms": 3}, release=True,
    )  # fmt: skip
    assert (c.code, c.detail["from_parent"], c.detail["released_money"]) == ("ok", 3 * EUR, 4 * EUR)
    assert state(store, "kid1") == (0, 0)
    assert state(store, "mum") == (7 * EUR, 0)
    # usage counters stay on the child; the parent's ledger shows the child's deltas
    assert store.get_account("kid1").counters == {"2026-11|tier|sms": 3}
    assert store.get_account("mum").counters == {}
    mum = [
        (e["op"], e.get("child"), e.get("balance"), e.get("reserved")) for e in store.ledger("mum")
    ]
    assert mum[-2:] == [("reserve", "kid1", None, 4 * EUR), ("commit", "kid1", -3 * EUR, -4 * EUR)]
    kid = [(e["op"], e.get("balance"), e.get("parent_reserved")) for e in store.ledger("kid1")]
    assert kid[-2:] == [("reserve", None, 4 * EUR), ("commit", None, -4 * EUR)]
    assert audit(store.r) == []


def test_own_money_first_then_the_parent(family):
    store = family
    store.topup("kid1", 2 * EUR, op_id="t-kid")
    res = store.reserve("kid1", "s1", op_id="r1", money=5 * EUR)
    [held] = res.account.reservations
    assert (held.money, held.parent_money) == (2 * EUR, 3 * EUR)
    assert state(store, "kid1") == (2 * EUR, 2 * EUR)
    assert state(store, "mum") == (10 * EUR, 3 * EUR)
    # a partial commit frees the child's own hold first and charges the child first
    c = store.commit("kid1", "s1", op_id="c1", charge=3 * EUR)
    assert c.detail["from_parent"] == EUR
    [held] = c.account.reservations
    assert (held.money, held.parent_money) == (0, 2 * EUR)
    assert state(store, "kid1") == (0, 0)
    assert state(store, "mum") == (9 * EUR, 2 * EUR)
    c = store.commit("kid1", "s1", op_id="c2", charge=EUR, release=True)
    assert state(store, "mum") == (8 * EUR, 0) and c.account.reservations == ()
    # an event debit: the same rule
    store.topup("kid1", EUR, op_id="t-kid2")
    d = store.debit("kid1", op_id="d1", charge=3 * EUR)
    assert (d.code, d.detail["from_parent"], d.detail["available"]) == ("ok", 2 * EUR, 6 * EUR)
    assert state(store, "kid1") == (0, 0) and state(store, "mum") == (6 * EUR, 0)
    no = store.debit("kid1", op_id="d2", charge=6 * EUR + 1)
    assert (no.code, no.detail["available"]) == ("no_credit", 6 * EUR)
    assert audit(store.r) == []


def test_money_buckets_child_first_then_parent(store):
    store.create_account("mum", offers=["fam"])
    store.create_account("kid", parent="mum", offers=["fam"])
    store.topup("mum", 10 * EUR, op_id="t1")  # + a 2.00 gift bucket each
    store.topup("kid", 10 * EUR, op_id="t2")
    assert store.family_available("kid") == 24 * EUR
    d = store.debit("kid", op_id="d1", charge=20 * EUR)
    assert (d.code, d.detail["from_buckets"], d.detail["from_parent"]) == ("ok", 2 * EUR, 8 * EUR)
    kid, mum = store.get_account("kid"), store.get_account("mum")
    assert kid.balance == 0 and [b.remaining for b in kid.buckets] == [0]
    assert mum.balance == 4 * EUR and [b.remaining for b in mum.buckets] == [0]
    assert audit(store.r) == []


def test_no_credit_counts_own_plus_parent_and_holds_nothing(family):
    store = family
    store.reserve("mum", "own", op_id="r0", money=3 * EUR)  # the parent's own session
    no = store.reserve("kid1", "s1", op_id="r1", money=7 * EUR + 1)
    assert (no.code, no.detail["available"]) == ("no_credit", 7 * EUR)
    assert state(store, "mum") == (10 * EUR, 3 * EUR) and state(store, "kid1") == (0, 0)
    assert store.r.zscore("rsv:expiry", "kid1|s1") is None
    assert store.reserve("kid1", "s1", op_id="r2", money=7 * EUR).code == "ok"
    assert store.reserve("mum", "own2", op_id="r3", money=1).code == "no_credit"
    assert audit(store.r) == []


def test_concurrent_reservations_of_two_children_and_the_parent_never_overspend(family, balances_along_ledger):
    store = family
    who = ["kid1", "kid2", "mum"]

    def one(i):
        account = who[i % 3]
        return account, store.reserve(account, f"s{i}", op_id=f"r{i}", money=EUR).code

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(one, range(90)))
    granted = [(a, f"s{i}") for i, (a, code) in enumerate(results) if code == "ok"]
    assert len(granted) == 10
    assert {code for _, code in results} == {"ok", "no_credit"}
    assert state(store, "mum") == (10 * EUR, 10 * EUR)  # the children hold theirs on mum too
    assert store.family_available("kid1") == 0 and store.get_account("mum").available(T0) == 0

    def commit(item):
        account, session = item
        return store.commit(account, session, op_id=f"c-{session}", charge=EUR, release=True).code

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert set(pool.map(commit, granted)) == {"ok"}
    assert state(store, "mum") == (0, 0)
    assert state(store, "kid1") == (0, 0) and state(store, "kid2") == (0, 0)
    assert min(balances_along_ledger(store, "mum")) >= 0
    assert audit(store.r) == []
    assert audit(store.r, ["mum", "kid1", "kid2"]) == []


def test_status_child_decides_and_a_suspended_parent_lends_nothing(family):
    store = family
    store.topup("kid1", EUR, op_id="t-kid")
    store.reserve("kid1", "before", op_id="r0", money=3 * EUR)  # 1 own + 2 on the parent
    store.set_status("mum", "suspended", op_id="st1")
    # the child is active: it still charges, on its own money only
    assert store.family_available("kid1") == 0
    no = store.reserve("kid1", "s1", op_id="r1", money=1)
    assert (no.code, no.detail["available"]) == ("no_credit", 0)
    # the hold granted before the suspension settles on the parent
    c = store.commit("kid1", "before", op_id="c0", charge=3 * EUR, release=True)
    assert (c.code, c.detail["from_parent"]) == ("ok", 2 * EUR)
    assert state(store, "mum") == (8 * EUR, 0) and state(store, "kid1") == (0, 0)
    store.set_status("mum", "active", op_id="st2")
    assert store.reserve("kid1", "s1", op_id="r2", money=8 * EUR).code == "ok"
    # a suspended child is refused whatever its parent holds
    store.set_status("kid2", "suspended", op_id="st3")
    assert store.reserve("kid2", "s1", op_id="r3", money=1).code == "suspended"
    assert audit(store.r) == []


def test_commit_beyond_what_the_parent_has_stays_on_the_child(family, balances_along_ledger):
    store = family
    store.reserve("kid1", "s1", op_id="r1", money=10 * EUR)
    c = store.commit("kid1", "s1", op_id="c1", charge=12 * EUR, release=True)
    assert c.detail["from_parent"] == 10 * EUR
    assert state(store, "mum") == (0, 0) and state(store, "kid1") == (-2 * EUR, 0)
    # the child's debt counts against it: 10.00 on the parent lends 8.00 of room to it
    store.topup("mum", 10 * EUR, op_id="t-mum2")
    assert store.family_available("kid1") == 8 * EUR
    assert store.family_available("kid2") == 10 * EUR
    assert min(balances_along_ledger(store, "mum")) >= 0
    assert audit(store.r) == []


def test_unlimited_parent_and_postpaid_child(store):
    store.create_account("corp", credit_limit=None)
    store.create_account("emp", parent="corp", credit_limit=5 * EUR)
    res = store.reserve("emp", "s1", op_id="r1", money=100 * EUR)
    assert res.code == "ok" and res.detail["from_parent"] == 95 * EUR
    assert "available" not in res.detail and store.family_available("emp") is None
    c = store.commit("emp", "s1", op_id="c1", charge=100 * EUR, release=True)
    assert c.detail["from_parent"] == 95 * EUR
    assert state(store, "emp") == (-5 * EUR, 0) and state(store, "corp") == (-95 * EUR, 0)
    # an unlimited child never needs its parent
    store.create_account("boss", parent="corp", credit_limit=None)
    res = store.reserve("boss", "s1", op_id="r2", money=50 * EUR)
    assert res.detail["from_parent"] == 0 and state(store, "corp") == (-95 * EUR, 0)
    assert audit(store.r) == []


def test_sweeper_and_release_settle_both_accounts(family, clock):
    store = family
    store.topup("kid1", EUR, op_id="t-kid")
    store.reserve("kid1", "old", op_id="r1", money=4 * EUR, validity_s=60)
    store.reserve("kid2", "gone", op_id="r2", money=2 * EUR)
    assert state(store, "mum") == (10 * EUR, 5 * EUR)
    rel = store.release("kid2", "gone", op_id="rel1")
    assert rel.detail["released_money"] == 2 * EUR
    assert state(store, "mum") == (10 * EUR, 3 * EUR)
    assert sweep_expired(store, now=T0 + 90) == 1
    assert state(store, "mum") == (10 * EUR, 0) and state(store, "kid1") == (EUR, 0)
    released = [(e["op"], e.get("child"), e["reserved"]) for e in store.ledger("mum")[-2:]]
    assert released == [("release", "kid2", -2 * EUR), ("release", "kid1", -3 * EUR)]
    assert audit(store.r) == []


def test_retried_child_reserve_applies_once_on_both(family):
    store = family
    first = store.reserve("kid1", "s1", op_id="r1", money=4 * EUR)
    again = store.reserve("kid1", "s1", op_id="r1", money=4 * EUR)
    assert (first.applied, again.applied, again.detail) == (True, False, first.detail)
    assert state(store, "mum") == (10 * EUR, 4 * EUR)
    assert [e["op"] for e in store.ledger("mum")] == ["create", "topup", "reserve"]


def test_a_grandchild_draws_on_its_direct_parent_only(family):
    store = family
    store.create_account("baby", parent="kid1")
    assert store.account_keys("baby").base == "{a:mum}:baby"
    assert store.family_available("baby") == 0  # kid1 has nothing; mum is not asked
    store.topup("kid1", EUR, op_id="t-kid")
    res = store.reserve("baby", "s1", op_id="r1", money=EUR)
    assert res.code == "ok" and state(store, "kid1") == (EUR, EUR)
    assert store.reserve("baby", "s2", op_id="r2", money=1).code == "no_credit"
    with pytest.raises(UnknownAccount) as e:
        store.create_account("orphan", parent="nobody")
    assert e.value.field == "parent"
    assert audit(store.r) == []
