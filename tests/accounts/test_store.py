"""AccountStore against a real redis-server: money, buckets, offers, op ids, states, errors."""

from datetime import UTC, datetime

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
from rating.model import Allowance, Gift, Offer, Promotion

EUR = 1_000_000
T0 = int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp())  # `clock` start; cycle 2026-11
DEC1 = int(datetime(2026, 11, 30, 23, tzinfo=UTC).timestamp())  # Berlin 1 Dec 00:00


@pytest.fixture
def accounts_catalog(make_catalog):
    offers = {
        "smart": Offer(
            "smart", "std",
            allowances=(Allowance("voice_100", "voice", 6000, ("DE_MOBILE",)),
                        Allowance("data_1k", "data", 1000, None)),
            promotions=(Promotion("subscribe", Gift("data", 500, None, 30)),
                        Promotion("topup", Gift(None, None, 2 * EUR, 30), min_amount=20 * EUR)),
        ),
        "other": Offer("other", "std"),
        "extra": Offer("extra", None, allowances=(Allowance("voice_x", "voice", 300, None),)),
    }  # fmt: skip
    return make_catalog(offers, services={"data": ("bytes", 1)})


def test_create_get_resolve(store):
    a = store.create_account("acc1", msisdns=["491510001"], bill_cycle_day=5, offers=["smart"])
    assert (a.balance, a.reserved, a.credit_limit, a.payment_type) == (0, 0, 0, "prepaid")
    assert a.subscriptions[0].offer == "smart" and a.subscriptions[0].from_date == "2026-11-10"
    ids = {b.id: b for b in a.buckets}
    # bcd 5: the cycle 2026-10 runs 5 Oct .. 5 Nov; 10 Nov lies in 2026-11
    assert ids["allowance:smart/voice_100:2026-11"].remaining == 6000
    assert ids["allowance:smart/data_1k:2026-11"].remaining == 1000
    assert store.get_account("acc1") == a
    assert store.resolve("491510001") == "acc1"
    assert store.resolve("acc1") == "acc1"
    with pytest.raises(UnknownAccount) as e:
        store.resolve("49999")
    assert e.value.field == "subscriber"


def test_msisdn_conflict_refused_before_account_is_written(store, redis_client):
    store.create_account("acc1", msisdns=["491510001"])
    with pytest.raises(AccountExists) as e:
        store.create_account("acc2", msisdns=["491510002", "491510001"])
    assert e.value.field == "msisdns"
    with pytest.raises(UnknownAccount):
        store.get_account("acc2")
    assert redis_client.exists("msisdn:491510002") == 0  # what this call took is given back
    with pytest.raises(AccountExists) as e:
        store.create_account("acc1", op_id="another")
    assert e.value.field == "account_id"
    # a retried create (same op id) returns the account
    assert store.create_account("acc1", msisdns=["491510001"]).id == "acc1"


def test_create_tells_a_retried_op_id_from_the_first_call(store):
    first = store.create("acc1", msisdns=["491510001"], op_id="c-1")
    again = store.create("acc1", msisdns=["491510001"], op_id="c-1")
    assert (first.applied, first.code, again.applied, again.code) == (True, "ok", False, "ok")
    assert again.op_id == "c-1" and again.account == store.get_account("acc1")
    assert [e["op"] for e in store.ledger("acc1")] == ["create"]
    with pytest.raises(OpIdConflict):
        store.create("acc1", msisdns=["491510001"], credit_limit=None, op_id="c-1")


def test_topup_op_id_applies_once_and_conflicts_on_other_content(store):
    store.create_account("acc1")
    first = store.topup("acc1", 5 * EUR, op_id="t1")
    again = store.topup("acc1", 5 * EUR, op_id="t1")
    assert (first.applied, again.applied) == (True, False)
    assert first.detail == again.detail == {"balance": 5 * EUR, "gifts": []}
    assert store.get_account("acc1").balance == 5 * EUR
    with pytest.raises(OpIdConflict) as e:
        store.topup("acc1", 6 * EUR, op_id="t1")
    assert e.value.field == "op_id"
    r1 = store.reserve("acc1", "s1", op_id="r1", money=3 * EUR)
    r2 = store.reserve("acc1", "s1", op_id="r1", money=3 * EUR)
    assert r2.applied is False and r2.detail == r1.detail
    assert store.get_account("acc1").reserved == 3 * EUR
    assert [e["op"] for e in store.ledger("acc1")] == ["create", "topup", "reserve"]


def test_prepaid_reserve_commit_release_exact_amounts(store):
    store.create_account("acc1")
    store.topup("acc1", 10 * EUR, op_id="t1")
    res = store.reserve("acc1", "s1", op_id="r1", money=4 * EUR, service="sms")
    assert (res.code, res.detail["available"], res.account.reserved) == ("ok", 6 * EUR, 4 * EUR)
    no = store.reserve("acc1", "s2", op_id="r2", money=6 * EUR + 1)
    assert (no.code, no.detail["available"]) == ("no_credit", 6 * EUR)
    assert no.account.reserved == 4 * EUR
    # a partial commit frees what it used; the rest stays held
    c = store.commit("acc1", "s1", op_id="c1", charge=1_500_000, counters={"2026-11|tier|sms": 3})
    assert (c.account.balance, c.account.reserved) == (8_500_000, 2_500_000)
    assert c.account.counters == {"2026-11|tier|sms": 3}
    c = store.commit("acc1", "s1", op_id="c2", charge=500_000, release=True)
    assert (c.account.balance, c.account.reserved, c.account.reservations) == (8 * EUR, 0, ())
    rel = store.release("acc1", "s1", op_id="rel1")
    assert rel.code == "ok" and rel.detail["found"] is False
    d = store.debit("acc1", op_id="d1", charge=8 * EUR + 1)
    assert (d.code, d.detail["available"]) == ("no_credit", 8 * EUR)
    d = store.debit("acc1", op_id="d2", charge=8 * EUR)
    assert (d.code, d.account.balance) == ("ok", 0)
    assert audit(store.r) == []


def test_bundles_before_money_soonest_expiry_first(store, clock):
    store.create_account("acc1", offers=["smart"])
    store.topup("acc1", 10 * EUR, op_id="t1")
    # "extra" ends on 15 Nov: its allowance expires before smart's (end of cycle)
    store.subscribe("acc1", "extra", op_id="s-extra", to_date="2026-11-15")
    res = store.reserve(
        "acc1",
        "call",
        op_id="r1",
        money=EUR,
        service="voice",
        destination="DE_MOBILE",
        units=6200,
        expected_covered=6200,
    )
    assert res.code == "ok" and res.detail["covered"] == 6200
    held = {r.session: r for r in res.account.reservations}["call"].units
    assert held == {
        "allowance:extra/voice_x:2026-11": 300,
        "allowance:smart/voice_100:2026-11": 5900,
    }
    c = store.commit(
        "acc1",
        "call",
        op_id="c1",
        charge=0,
        units=6200,
        service="voice",
        destination="DE_MOBILE",
        release=True,
    )
    left = {b.id: (b.remaining, b.reserved) for b in c.account.buckets}
    assert left["allowance:extra/voice_x:2026-11"] == (0, 0)
    assert left["allowance:smart/voice_100:2026-11"] == (100, 0)
    assert (c.account.balance, c.account.reserved) == (10 * EUR, 0)
    # a destination outside the allowance's list is not covered by it
    res = store.reserve(
        "acc1", "intl", op_id="r2", money=EUR, service="voice", destination="WORLD", units=60
    )
    assert res.detail["covered"] == 0
    # stale: buckets cover another amount than the caller priced with; nothing is held
    st = store.reserve(
        "acc1",
        "x",
        op_id="r3",
        money=0,
        service="voice",
        destination="DE_MOBILE",
        units=200,
        expected_covered=200,
    )
    assert (st.code, st.detail["covered"]) == ("stale", 100)
    assert [r.session for r in st.account.reservations] == ["intl"]


def test_bucket_expiry_and_lazy_allowances_of_a_new_cycle(store, clock):
    store.create_account("acc1", offers=["smart"])
    store.topup("acc1", 10 * EUR, op_id="t1")
    clock.t = DEC1  # the November allowance is over, December's is granted on first touch
    res = store.reserve("acc1", "s", op_id="r1", money=0, service="data", units=1200)
    ids = {b.id: b for b in res.account.buckets}
    assert "allowance:smart/data_1k:2026-12" in ids
    held = {r.session: r for r in res.account.reservations}["s"].units
    # the subscribe gift (valid 30 days from 10 Nov) expires before December's allowance
    assert held == {"gift:create:acc1:1": 500, "allowance:smart/data_1k:2026-12": 700}
    store.reserve("acc1", "s2", op_id="r2", money=0, service="data", units=1)
    n = sum(1 for b in store.get_account("acc1").buckets if b.source.endswith("2026-12"))
    assert n == 2  # granted once, not on every touch
    clock.t = T0 + 31 * 86400  # the gift has expired: only the allowance covers
    res = store.reserve("acc1", "s3", op_id="r3", money=0, service="data", units=400)
    assert res.detail["covered"] == 299
    assert audit(store.r) == []


def test_gifts_on_topup_and_subscribe(store, clock):
    store.create_account("acc1")
    store.subscribe("acc1", "smart", op_id="sub1")
    gift = [b for b in store.get_account("acc1").buckets if b.source == "gift:subscribe:smart"]
    assert [(g.kind, g.service, g.remaining, g.valid_to) for g in gift] == [
        ("units", "data", 500, T0 + 30 * 86400)
    ]
    small = store.topup("acc1", 20 * EUR - 1, op_id="t1")
    assert small.detail["gifts"] == []
    big = store.topup("acc1", 20 * EUR, op_id="t2")
    assert big.detail["gifts"] == ["gift:t2:1"]
    g = {b.id: b for b in big.account.buckets}["gift:t2:1"]
    assert (g.kind, g.remaining, g.source, g.valid_to) == (
        "money",
        2 * EUR,
        "gift:topup:smart",
        T0 + 30 * 86400,
    )
    assert big.account.available(T0) == 42 * EUR - 1
    # a charge spends the gift money first
    d = store.debit("acc1", op_id="d1", charge=3 * EUR)
    assert d.detail["from_buckets"] == 2 * EUR
    assert d.account.balance == 40 * EUR - 1 - EUR
    clock.t = T0 + 30 * 86400
    assert store.get_account("acc1").available(clock.t) == 39 * EUR - 1


def test_second_base_offer_refused_addon_accepted(store):
    store.create_account("acc1", offers=["smart"])
    with pytest.raises(InvalidState) as e:
        store.subscribe("acc1", "other", op_id="s1")
    assert e.value.field == "offer"
    with pytest.raises(InvalidState):
        store.create_account("acc2", offers=["smart", "other"])
    # a base offer that starts after the current one ends is fine
    store.create_account("acc3")
    store.subscribe("acc3", "smart", op_id="s1", to_date="2026-11-20")
    store.subscribe("acc3", "other", op_id="s2", from_date="2026-11-20")
    ok = store.subscribe("acc1", "extra", op_id="s2")
    assert [s.offer for s in ok.account.subscriptions] == ["smart", "extra"]
    with pytest.raises(InvalidState):
        store.subscribe("acc1", "nonesuch", op_id="s3")


def test_payment_type_conversion_with_reservations_outstanding(store):
    store.create_account("acc1")
    store.topup("acc1", 10 * EUR, op_id="t1")
    store.reserve("acc1", "s1", op_id="r1", money=8 * EUR)
    res = store.change_payment_type("acc1", 5 * EUR, op_id="p1")
    assert res.account.payment_type == "postpaid" and res.detail["previous"] == 0
    assert res.account.available(T0) == 7 * EUR
    assert store.reserve("acc1", "s2", op_id="r2", money=7 * EUR).code == "ok"
    back = store.change_payment_type("acc1", 0, op_id="p2")
    assert back.account.available(T0) == -5 * EUR  # held money stays held
    assert store.reserve("acc1", "s3", op_id="r3", money=1).code == "no_credit"
    c = store.commit("acc1", "s2", op_id="c1", charge=7 * EUR, release=True)
    assert (c.account.balance, c.account.reserved) == (3 * EUR, 8 * EUR)
    unl = store.change_payment_type("acc1", None, op_id="p3")
    assert unl.account.available(T0) is None
    assert store.reserve("acc1", "s4", op_id="r4", money=10**15).code == "ok"
    assert audit(store.r) == []


def test_suspend_resume_terminate(store):
    store.create_account("acc1")
    store.topup("acc1", 10 * EUR, op_id="t1")
    store.set_status("acc1", "suspended", op_id="st1", reason="arrears")
    res = store.reserve("acc1", "s1", op_id="r1", money=EUR)
    assert res.code == "suspended" and res.account.reserved == 0
    assert store.debit("acc1", op_id="d1", charge=EUR).code == "suspended"
    assert store.topup("acc1", EUR, op_id="t2").account.balance == 11 * EUR  # paying works
    store.set_status("acc1", "active", op_id="st2")
    assert store.reserve("acc1", "s1", op_id="r2", money=EUR).code == "ok"
    store.set_status("acc1", "terminated", op_id="st3")
    with pytest.raises(InvalidState):
        store.set_status("acc1", "active", op_id="st4")
    with pytest.raises(InvalidState):
        store.topup("acc1", EUR, op_id="t3")
    # the session granted before termination can still be committed
    assert (
        store.commit("acc1", "s1", op_id="c1", charge=EUR, release=True).account.balance == 10 * EUR
    )
    statuses = [e.get("status") for e in store.ledger("acc1") if e["op"] == "set_status"]
    assert statuses == ["suspended", "active", "terminated"]


def test_unknown_account_currency_and_bad_amounts(store):
    with pytest.raises(UnknownAccount) as e:
        store.topup("nobody", EUR, op_id="t1")
    assert e.value.field == "account_id"
    with pytest.raises(UnknownAccount):
        store.reserve("nobody", "s", op_id="r1", money=1)
    with pytest.raises(CurrencyMismatch):
        store.create_account("acc0", currency="USD")
    store.create_account("acc1")
    with pytest.raises(CurrencyMismatch) as e:
        store.topup("acc1", EUR, op_id="t1", currency="USD")
    assert e.value.field == "currency"
    for bad in (-1, 0, 1.5, "10", True, None, 2**53):
        with pytest.raises(InvalidAmount) as e:
            store.topup("acc1", bad, op_id="t2")
        assert e.value.field == "amount"
    with pytest.raises(InvalidAmount) as e:
        store.reserve("acc1", "s", op_id="r1", money=-5)
    assert e.value.field == "money"
    with pytest.raises(InvalidAmount) as e:
        store.commit("acc1", "s", op_id="c1", charge=1, counters={"k": 0.5})
    assert e.value.field == "counters[k]"
    with pytest.raises(AccountError) as e:
        store.create_account("bad id")
    assert e.value.field == "account_id"
    with pytest.raises(AccountError) as e:
        store.create_account("acc9", bill_cycle_day=32)
    assert e.value.field == "bill_cycle_day"
    # the balance itself must stay exact in Lua: 2^53 - 1 at most
    store.topup("acc1", 2**53 - 1, op_id="big")
    with pytest.raises(InvalidAmount):
        store.topup("acc1", 1, op_id="big2")
    assert [e["op"] for e in store.ledger("acc1")] == ["create", "topup"]
    assert store.get_account("acc1").balance == 2**53 - 1


def test_child_account_keys_share_the_root_tag(store, redis_client):
    store.create_account("family", credit_limit=None)
    kid = store.create_account("kid", parent="family", msisdns=["491700001"])
    assert kid.parent == "family"
    assert redis_client.exists("{a:family}:kid:acct") == 1
    with pytest.raises(UnknownAccount) as e:
        store.create_account("kid2", parent="nobody")
    assert e.value.field == "parent"


def test_ledger_paging(store):
    store.create_account("acc1")
    for i in range(5):
        store.topup("acc1", EUR, op_id=f"t{i}")
    first = store.ledger("acc1", count=3)
    rest = store.ledger("acc1", after=first[-1]["id"])
    assert [e["op_id"] for e in first + rest] == ["create:acc1"] + [f"t{i}" for i in range(5)]
    assert sum(e.get("balance", 0) for e in first + rest) == 5 * EUR


def test_scripts_reload_after_script_flush(store, redis_client):
    store.create_account("acc1")
    redis_client.script_flush()
    assert store.topup("acc1", EUR, op_id="t1").account.balance == EUR
    redis_client.script_flush()  # the pipelined path (reserve + expiry index) too
    assert store.reserve("acc1", "s", op_id="r1", money=EUR).account.reserved == EUR
    assert redis_client.zcard("rsv:expiry") == 1


def test_audit_finds_tampering(store, redis_client):
    store.create_account("acc1", offers=["smart"])
    store.topup("acc1", EUR, op_id="t1")
    assert audit(redis_client) == []
    redis_client.hset("{a:acc1}:acct", "bal", str(2 * EUR))
    findings = audit(redis_client)
    assert [(f.account, f.field, f.stored, f.replayed) for f in findings] == [
        ("acc1", "balance", 2 * EUR, EUR)
    ]


def test_commit_after_the_reservation_was_swept_still_charges(store, clock):
    from accounts.sweeper import sweep_expired

    store.create_account("acc1", offers=["smart"])
    store.topup("acc1", 5 * EUR, op_id="t1")
    store.reserve("acc1", "s1", op_id="r1", money=EUR, service="sms", validity_s=60)
    assert sweep_expired(store, now=T0 + 90) == 1
    c = store.commit(
        "acc1",
        "s1",
        op_id="c1",
        charge=190_000,
        service="sms",
        release=True,
        record={"cdr_id": "s1/1/2", "net_charge": "0.19"},
    )
    assert (c.code, c.account.balance, c.account.reserved) == ("ok", 4_810_000, 0)
    assert store.ledger("acc1")[-1]["record"] == {"cdr_id": "s1/1/2", "net_charge": "0.19"}
    # an event debit: the allowance (ends 1 Dec) is used before the gift (ends 10 Dec)
    d = store.debit("acc1", op_id="d1", charge=0, units=1200, service="data", expected_covered=1200)
    left = {b.source: b.remaining for b in d.account.buckets if b.kind == "units"}
    assert left["allowance:smart/data_1k:2026-11"] == 0
    assert left["gift:subscribe:smart"] == 300
    d = store.debit(
        "acc1", op_id="d2", charge=20_000, units=500, service="data", expected_covered=500
    )
    assert (d.code, d.detail["covered"], d.account.balance) == ("stale", 300, 4_810_000)
    d = store.debit(
        "acc1", op_id="d3", charge=20_000, units=500, service="data", expected_covered=300
    )
    assert (d.code, d.detail["covered_units"], d.account.balance) == ("ok", 300, 4_790_000)
    assert audit(store.r) == []


def test_expiry_index_holds_exactly_the_granted_reservations(store, clock, redis_client):
    def score(session):
        return redis_client.zscore("rsv:expiry", f"acc1|{session}")

    store.create_account("acc1", offers=["smart"])
    store.topup("acc1", 5 * EUR, op_id="t1")
    assert store.reserve("acc1", "s1", op_id="r1", money=6 * EUR).code == "no_credit"
    assert score("s1") is None
    assert store.reserve("acc1", "s2", op_id="r2", money=EUR, validity_s=60).code == "ok"
    assert score("s2") == T0 + 60
    st = store.reserve(
        "acc1", "s3", op_id="r3", money=0, service="data", units=10, expected_covered=5
    )
    assert st.code == "stale" and score("s3") is None
    with pytest.raises(OpIdConflict):
        store.reserve("acc1", "s4", op_id="r2", money=EUR)
    assert score("s4") is None and score("s2") == T0 + 60
    store.set_status("acc1", "suspended", op_id="st1")
    assert store.reserve("acc1", "s5", op_id="r5", money=1).code == "suspended"
    assert score("s5") is None
    store.set_status("acc1", "active", op_id="st2")
    # a refused renewal leaves the session's entry at its real expiry, and so does a retry
    clock.t = T0 + 10
    assert store.reserve("acc1", "s2", op_id="r6", money=5 * EUR).code == "no_credit"
    assert score("s2") == T0 + 60
    clock.t = T0 + 20
    assert store.reserve("acc1", "s2", op_id="r2", money=EUR, validity_s=60).applied is False
    assert score("s2") == T0 + 60
    assert store.reserve("acc1", "s2", op_id="r7", money=0, validity_s=60).code == "ok"
    assert score("s2") == T0 + 80
    assert redis_client.zcard("rsv:expiry") == 1


def test_sweep_unindexed_releases_what_the_index_lost(store, redis_client):
    from accounts.sweeper import sweep_expired, sweep_unindexed

    store.create_account("acc1")
    store.topup("acc1", 5 * EUR, op_id="t1")
    store.create_account("kid", parent="acc1")
    store.reserve("acc1", "s1", op_id="r1", money=EUR, validity_s=60)
    store.reserve("kid", "s2", op_id="r2", money=2 * EUR, validity_s=600)
    redis_client.delete("rsv:expiry")  # as if the process died between script and index
    assert sweep_expired(store, now=T0 + 100) == 0
    assert sweep_unindexed(store, now=T0 + 100) == 1
    acct = store.get_account("acc1")
    assert (acct.reserved, [r.session for r in acct.reservations]) == (2 * EUR, [])
    assert redis_client.zrange("rsv:expiry", 0, -1, withscores=True) == [
        (b"kid|s2", float(T0 + 600))
    ]
    assert sweep_unindexed(store, now=T0 + 100) == 0
    assert sweep_expired(store, now=T0 + 700) == 1
    assert store.get_account("acc1").reserved == 0
    assert redis_client.zcard("rsv:expiry") == 0
    assert audit(redis_client) == []
