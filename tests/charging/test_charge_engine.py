"""The credit-control engine on a real redis-server: every flow of online.md with amounts
computed by hand (charging.charge over accounts.online and online.lua)."""

from __future__ import annotations

import pytest

from accounts.audit import audit
from accounts.online import OnlineStore
from accounts.store import AccountStore
from charging import charge as C
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG, FIXED, NIGHT, T0, Clock, req, voice

EUR = 1_000_000


@pytest.fixture(scope="module")
def cat():
    catalog = parse_catalog(CATALOG)
    return catalog, compile_catalog(catalog)


@pytest.fixture
def env(redis_client, cat):
    catalog, compiled = cat
    clock = Clock()
    store = AccountStore(redis_client, catalog, clock=clock)

    def charger():
        return C.Charger(store, catalog, compiled, validity_s=300, clock=clock)

    class Env:
        pass

    e = Env()
    e.store, e.clock, e.catalog, e.make = store, clock, catalog, charger
    e.node = charger()
    e.online = OnlineStore(store)
    return e


def account(env, name="alice", money="10.00", offers=("basic",), **kw):
    env.store.create(name, credit_limit=0, offers=offers, **kw)
    if money:
        env.store.topup(name, int(micro(money)), op_id=f"t-{name}")
    return name


def micro(money: str) -> int:
    whole, _, frac = money.partition(".")
    return int(whole) * EUR + int(frac.ljust(6, "0"))


def balance(env, name="alice"):
    return env.store.get_account(name).balance


def test_cumulative_pricing_rounds_the_session_total_once(env):
    account(env)
    a = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    assert (a.result_code, a.grants[0].units, a.grants[0].final) == (2001, 60, False)
    assert env.store.get_account("alice").reserved == 170_000  # 0.05 + 0.12
    a = env.node.charge(req("UPDATE", "s1", 1, [voice(requested=60, used=45)]))
    assert (a.result_code, a.charged, a.grants[0].units) == (2001, 170_000, 60)
    assert env.store.get_account("alice").reserved == 120_000  # net(120 s) - net(60 s)
    a = env.node.charge(req("UPDATE", "s1", 2, [voice(requested=60, used=40)]))
    assert a.charged == 60_000  # 85 s rate to 90: 0.23 - 0.17
    a = env.node.charge(req("TERMINATE", "s1", 3, [voice(used=10)]))
    assert a.charged == 60_000  # 95 s rate to 120: 0.29 - 0.23
    acct = env.store.get_account("alice")
    assert (acct.balance, acct.reserved) == (10 * EUR - 290_000, 0)  # one CDR of 95 s: 0.29
    recs = env.online.records("alice", T0, T0 + 1)
    assert [(r["cdr_id"], r["net_charge"]) for r in recs] == [
        ("s1/1/1", "170000"), ("s1/1/2", "60000"), ("s1/1/3", "60000")]
    assert audit(env.store.r) == []


def test_short_credit_grants_the_largest_covered_units_with_a_final_grant(env):
    account(env, money="0.40")
    a = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=300)]))
    # 0.05 + 0.12 * rated / 60 <= 0.40: rated 150 s (the next step, 180 s, costs 0.41)
    assert (a.result_code, a.grants[0].units, a.grants[0].final) == (2001, 150, True)
    assert env.store.get_account("alice").reserved == 350_000
    assert env.online.open_sessions_with_final_grant("alice") == ["s1"]


def test_no_unit_covered_is_4012(env):
    account(env, money="0.10")
    a = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    assert (a.result_code, a.grants[0].result_code, a.grants[0].units) == (4012, 4012, 0)
    assert env.store.get_account("alice").reserved == 0


def test_bundle_first_and_no_connect_fee_once_covered(env):
    account(env, money="1.00", offers=("bundle",))
    a = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    acct = env.store.get_account("alice")
    assert (a.grants[0].units, acct.reserved) == (60, 0)  # the bundle holds the 60 s
    a = env.node.charge(req("UPDATE", "s1", 1, [voice(requested=120, used=60)]))
    assert (a.charged, a.grants[0].units) == (0, 120)
    # 60 more bundle seconds held, 60 s of money: 0.12, no connect fee
    assert env.store.get_account("alice").reserved == 120_000
    a = env.node.charge(req("TERMINATE", "s1", 2, [voice(used=100)]))
    # the CDR: 160 s rate to 180, 120 covered, 60 paid at 0.12 with no connect fee
    assert a.charged == 120_000
    acct = env.store.get_account("alice")
    assert (acct.balance, acct.reserved) == (EUR - 120_000, 0)
    assert [b.remaining for b in acct.buckets if b.kind == "units"] == [0]
    assert audit(env.store.r) == []


def test_retransmission_gets_the_first_answer_from_another_node(env):
    account(env)
    first = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    env.node.charge(req("UPDATE", "s1", 1, [voice(requested=60, used=60)]))
    other = env.make()  # a second node: no cache
    again = other.charge(req("UPDATE", "s1", 1, [voice(requested=60, used=60)]))
    assert (again.charged, again.grants[0].units) == (170_000, 60)
    assert other.charge(req("INITIAL", "s1", 0, [voice(requested=60)])).grants == first.grants
    assert balance(env) == 10 * EUR - 170_000
    old = other.charge(req("UPDATE", "s1", 0, [voice(requested=60, used=60)]))
    assert old.result_code == 2001  # request 0 was answered: the INITIAL's answer again
    # the other node continues the session
    a = other.charge(req("TERMINATE", "s1", 2, [voice(used=30)]))
    assert a.charged == 60_000  # 60 + 30 = 90 s rate to 90: net 0.23, 0.17 paid
    assert balance(env) == 10 * EUR - 230_000
    assert audit(env.store.r) == []


def test_result_codes(env):
    account(env)
    env.store.create("bob", credit_limit=0, offers=("basic",))
    env.store.set_status("bob", "suspended", op_id="s")
    assert env.node.charge(req("INITIAL", "x", 0, [voice(requested=60)], sub="nobody")) \
        .result_code == 5030
    assert env.node.charge(req("INITIAL", "x", 0, [voice(requested=60)], sub="bob")) \
        .result_code == 4010
    assert env.node.charge(req("UPDATE", "nope", 1, [voice(used=1)])).result_code == 5002
    a = env.node.charge(req("INITIAL", "x", 0, [voice(requested=60, dest="1555")]))
    assert a.result_code == 5031 and "no_destination" in a.error_message
    env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    env.node.charge(req("UPDATE", "s1", 2, [voice(requested=60, used=10)]))
    assert env.node.charge(req("UPDATE", "s1", 1, [voice(used=10)])).result_code == 5012


def test_discount_standing_is_fixed_at_the_first_commit(env):
    account(env, money="100.00")
    # 6,000 s to a fixed line at night: rated 6,000, 2.00, 0% (basis 0 before it)
    env.node.charge(req("INITIAL", "a", 0, [voice(requested=6000, dest=FIXED)], t=NIGHT))
    a = env.node.charge(req("TERMINATE", "a", 1, [voice(used=6000, dest=FIXED)], t=NIGHT))
    assert a.charged == 2 * EUR
    # the next session stands at 6,000: 10% off, for its whole life
    env.node.charge(req("INITIAL", "b", 0, [voice(requested=600, dest=FIXED)], t=NIGHT))
    a = env.node.charge(req("UPDATE", "b", 1, [voice(requested=600, used=600, dest=FIXED)],
                            t=NIGHT))
    assert a.charged == 180_000  # 0.20 - 10%
    a = env.node.charge(req("TERMINATE", "b", 2, [voice(used=30000, dest=FIXED)], t=NIGHT))
    # 30,600 s: 10.20 - 10% = 9.18, of which 0.18 paid (the standing stayed at 6,000)
    assert a.charged == 9_000_000
    assert audit(env.store.r) == []


def test_several_rating_groups_are_independent(env):
    account(env, money="0.20")
    units = [voice(1, requested=60), C.UnitRequest(2, "sms", MOBILE_SMS, 1, 0)]
    a = env.node.charge(req("INITIAL", "m", 0, units))
    codes = {g.rating_group: (g.result_code, g.units) for g in a.grants}
    assert codes == {1: (2001, 60), 2: (4012, 0)}  # 0.17 held for voice, 0.03 left < 0.09
    assert a.result_code == 2001


MOBILE_SMS = "4915199999999"


def test_direct_debit_and_check_balance(env):
    account(env, money="0.10")
    ev = [C.UnitRequest(1, "sms", MOBILE_SMS, 1, 0)]
    a = env.node.charge(req("EVENT", "e1", 0, ev, action="DIRECT_DEBIT"))
    assert (a.result_code, a.charged) == (2001, 90_000)
    assert env.node.charge(req("EVENT", "e1", 0, ev, action="DIRECT_DEBIT")).charged == 90_000
    assert balance(env) == 10_000  # charged once
    a = env.node.charge(req("EVENT", "e2", 0, ev, action="DIRECT_DEBIT"))
    assert (a.result_code, a.charged) == (4012, 0)
    a = env.node.charge(req("EVENT", "c", 0, [], action="CHECK_BALANCE"))
    assert a.available == 10_000
    recs = env.online.records("alice", T0, T0 + 1)
    assert [(r["cdr_id"], r["net_charge"]) for r in recs] == [("e1/1", "90000")]


def test_refund_undoes_a_direct_debit_or_gives_money_back(env):
    account(env, money="1.00")
    ev = [C.UnitRequest(1, "sms", MOBILE_SMS, 2, 0)]
    assert env.node.charge(req("EVENT", "e1", 0, ev, action="DIRECT_DEBIT")).charged == 180_000
    undo = [C.UnitRequest(1, "sms", MOBILE_SMS, None, 0)]
    a = env.node.charge(req("EVENT", "e1", 1, undo, action="REFUND"))
    assert (a.result_code, a.charged, a.available) == (2001, -180_000, EUR)
    again = env.node.charge(req("EVENT", "e1", 1, undo, action="REFUND"))
    assert (again.charged, balance(env)) == (-180_000, EUR)  # a retransmission: once
    later = env.node.charge(req("EVENT", "e1", 2, undo, action="REFUND"))
    assert (later.charged, "already refunded" in later.error_message) == (0, True)
    assert env.node.charge(req("EVENT", "nope", 0, undo, action="REFUND")).result_code == 5002
    recs = env.online.records("alice", T0, T0 + 1)
    assert sorted((r["cdr_id"], r["net_charge"]) for r in recs) == [
        ("e1/1", "180000"), ("e1/1/refund", "-180000")]
    assert env.store.get_account("alice").counters == {"2026-11|tier|sms": 0}
    assert audit(env.store.r) == []


def test_a_warm_request_is_one_round_trip(env):
    account(env, money="100.00")
    env.node.charge(req("INITIAL", "warm", 0, [voice(requested=60)]))  # learns the account
    env.node.charge(req("TERMINATE", "warm", 1, [voice(used=60)]))
    before = env.node.round_trips
    env.node.charge(req("INITIAL", "s", 0, [voice(requested=60)]))
    for n in range(1, 4):
        env.node.charge(req("UPDATE", "s", n, [voice(requested=60, used=60)]))
    env.node.charge(req("TERMINATE", "s", 4, [voice(used=60)]))
    assert env.node.round_trips - before == 5


def test_an_ended_session_takes_no_more_usage(env):
    account(env, money="1.00")
    env.node.charge(req("INITIAL", "s", 0, [voice(requested=60)]))
    env.node.charge(req("TERMINATE", "s", 1, [voice(used=30)]))
    paid = EUR - balance(env)
    for kind, n in (("UPDATE", 2), ("TERMINATE", 2), ("INITIAL", 3)):
        a = env.make().charge(req(kind, "s", n, [voice(requested=60, used=5000)]))
        assert (a.result_code, a.charged) == (5002, 0)
        assert "ended session" in a.error_message
    ev = [C.UnitRequest(1, "sms", MOBILE_SMS, 1, 0)]
    env.node.charge(req("EVENT", "e", 0, ev, action="DIRECT_DEBIT"))
    again = env.node.charge(req("EVENT", "e", 1, ev, action="DIRECT_DEBIT"))
    assert again.result_code == 5002  # a second debit on one event session: refused
    assert env.node.charge(req("UPDATE", "e", 2, [voice(used=5)])).result_code == 5002
    assert balance(env) == EUR - paid - 90_000
    assert audit(env.store.r) == []


def test_a_session_whose_holds_the_sweeper_released_has_ended(env):
    from accounts.sweeper import sweep_expired

    account(env, money="1.00")
    env.node.charge(req("INITIAL", "s", 0, [voice(requested=60)]))
    env.node.charge(req("UPDATE", "s", 1, [voice(requested=60, used=60)]))
    env.clock.t += 300 + 31
    assert sweep_expired(env.store) == 1
    a = env.node.charge(req("UPDATE", "s", 2, [voice(requested=600, used=60)]))
    assert (a.result_code, a.grants) == (5002, [])
    acct = env.store.get_account("alice")
    assert (acct.balance, acct.reserved) == (EUR - 170_000, 0)


def test_a_suspended_account_commits_and_gets_no_grant(env):
    account(env)
    env.node.charge(req("INITIAL", "s", 0, [voice(requested=60)]))
    env.store.set_status("alice", "suspended", op_id="sus")
    a = env.node.charge(req("UPDATE", "s", 1, [voice(requested=600, used=60)]))
    assert (a.result_code, a.charged, a.grants[0].units) == (4010, 170_000, 0)
    assert env.store.get_account("alice").reserved == 0


def test_one_grant_is_capped(env):
    env.store.create("big", credit_limit=None, offers=("basic",))
    a = env.node.charge(req("INITIAL", "h1", 0, [voice(requested=2**62)], sub="big"))
    assert a.grants[0].units == 86_400  # a day of voice at most
    b = env.node.charge(req("INITIAL", "h2", 0, [voice(requested=60)], sub="big"))
    assert (b.result_code, b.grants[0].units) == (2001, 60)
