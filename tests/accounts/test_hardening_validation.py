"""The store's own checks (issue 11): the rules the CLI and the gRPC service share, refused in
Python before anything is written, naming the field."""

from __future__ import annotations

import pytest

from accounts.errors import AccountError
from accounts.sweeper import run_sweeper, sweep_expired, sweep_unindexed
from accounts.validation import check_msisdns
from rating.model import Allowance, Offer


@pytest.fixture
def accounts_catalog(make_catalog):
    base = Offer("base", tariff="std", allowances=(Allowance("voice_60", "voice", 60, None),))
    return make_catalog(offers={"base": base})


def _funded(store, account_id="A1"):
    store.create(account_id, op_id=f"c-{account_id}")
    store.topup(account_id, 10_000_000, op_id=f"t-{account_id}")


# --- 4 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sweep", [sweep_expired, sweep_unindexed])
def test_a_negative_grace_is_refused_before_any_release(store, clock, sweep):
    _funded(store)
    store.reserve("A1", "s-600", op_id="r-1", money=1_000_000, validity_s=600)
    store.reserve("A1", "s-3600", op_id="r-2", money=2_000_000, validity_s=3600)
    store.grace_s = -100_000
    with pytest.raises(AccountError) as err:
        sweep(store, now=clock.t)
    assert str(err.value) == "grace_s: expected 0..86400 seconds, got -100000"
    account = store.get_account("A1")
    assert sorted(r.session for r in account.reservations) == ["s-3600", "s-600"]
    assert account.reserved == 3_000_000


def test_run_sweeper_refuses_a_negative_grace_before_its_first_round(store, clock):
    import threading

    _funded(store)
    store.reserve("A1", "s-600", op_id="r-1", money=1_000_000, validity_s=600)
    store.grace_s = -100_000
    stop, raised = threading.Event(), []

    def run():
        try:
            run_sweeper(store, stop, interval_s=0.05)
        except AccountError as exc:
            raised.append(str(exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)  # a deadline for the test: the refusal comes before any round
    stop.set()
    thread.join(10)
    assert raised == ["grace_s: expected 0..86400 seconds, got -100000"]
    assert [r.session for r in store.get_account("A1").reservations] == ["s-600"]


# --- 10 and 13 -------------------------------------------------------------------------------

@pytest.mark.parametrize("from_date, to_date, message", [
    ("2031-05-02", "2031-05-01",
     "to_date: 2031-05-01 is before from_date 2031-05-02 (to is exclusive: to = from is an "
     "empty subscription)"),
    (None, "2026-11-09",  # the day before the store clock's local date
     "to_date: 2026-11-09 is before from_date 2026-11-10 (to is exclusive: to = from is an "
     "empty subscription)"),
    ("0001-01-01", None, "from_date: 0001-01-01 is outside 1970-01-01..2999-12-31"),
    ("2026-11-10", "9999-12-31", "to_date: 9999-12-31 is outside 1970-01-01..2999-12-31"),
])
def test_subscription_dates_are_one_rule(store, from_date, to_date, message):
    _funded(store)
    with pytest.raises(AccountError) as err:
        store.subscribe("A1", "base", op_id="s-1", from_date=from_date, to_date=to_date)
    assert str(err.value) == message
    assert store.get_account("A1").subscriptions == ()
    # the base offer is still free to take
    assert store.subscribe("A1", "base", op_id="s-2", from_date="2031-05-01").code == "ok"


@pytest.mark.parametrize("after", ["garbage", "1", "1-", "-1-0", "1-2-3", "18446744073709551616-0"])
def test_ledger_after_must_be_an_entry_id(store, after):
    _funded(store)
    with pytest.raises(AccountError) as err:
        store.ledger("A1", after=after)
    assert err.value.field == "after"


def test_ledger_after_the_largest_entry_id_is_empty(store):
    _funded(store)
    assert store.ledger("A1", after="18446744073709551615-18446744073709551615") == []


@pytest.mark.parametrize("count", [0, -1, 10_001, True])
def test_ledger_count_is_bounded(store, count):
    _funded(store)
    with pytest.raises(AccountError) as err:
        store.ledger("A1", count=count)
    assert str(err.value) == f"count: expected 1..10000 entries, got {count!r}"


# --- 18 --------------------------------------------------------------------------------------

@pytest.mark.parametrize("op_id", ["   ", " t-1", "t-1 ", "t-\n1", "t\x00-1", "x" * 1025])
def test_an_op_id_is_printable_without_surrounding_whitespace(store, op_id):
    _funded(store)
    with pytest.raises(AccountError) as err:
        store.topup("A1", 1_000_000, op_id=op_id)
    assert err.value.field == "op_id"
    assert err.value.message.startswith(
        "expected 1-1024 printable characters without surrounding whitespace, got ")
    assert store.get_account("A1").balance == 10_000_000


def test_an_op_id_of_1024_characters_is_fine(store):
    _funded(store)
    assert store.topup("A1", 1_000_000, op_id="x" * 1024).code == "ok"


def test_msisdns_per_account_are_bounded():
    ok = [f"49170{i:07d}" for i in range(100)]
    assert len(check_msisdns(ok)) == 100
    with pytest.raises(AccountError) as err:
        check_msisdns(ok + ["491709999999"])
    assert str(err.value) == "msisdns: at most 100 MSISDNs per account, got 101"


def test_a_create_with_too_many_msisdns_writes_nothing(store, redis_client):
    with pytest.raises(AccountError) as err:
        store.create("A1", op_id="c-1", msisdns=[f"49170{i:07d}" for i in range(100_000)])
    assert str(err.value) == "msisdns: at most 100 MSISDNs per account, got 100000"
    assert redis_client.dbsize() == 0
