"""The arrears run against real accounts (the session's redis-server) and a real database
(SQLite and PostgreSQL): suspend on an overdue final bill, resume once paid, never resume an
operator's suspension, never touch a terminated account, re-runs and interrupted runs.

Bills are due on the 14th of the month after their cycle; with grace_days=10 a 2026-10 bill
(due 2026-11-14) is overdue from as_of 2026-11-25 (2026-11-14 + 10 = 2026-11-24 < as_of)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
import sqlalchemy as sa

from accounts.store import AccountStore
from billing.arrears import ArrearsAction, ArrearsError, arrears_run
from billing.models import ArrearsAction as ActionRow
from billing.payments import record_payment
from tests.billing import db_fixtures
from tests.billing.db_fixtures import EUR, add_bill

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url

GRACE = 10
DAY_BEFORE, FIRST_DAY = date(2026, 11, 24), date(2026, 11, 25)


@pytest.fixture
def store(redis_client, catalog):
    return AccountStore(redis_client, catalog)


def run(db, store, as_of: date):
    return arrears_run(db, store, as_of=as_of, grace_days=GRACE)


def status_changes(store, account: str) -> list[tuple[str, str, str]]:
    """(status, op id, reason) of the account's set_status ledger entries, oldest first."""
    return [(e["status"], e["op_id"], e["reason"]) for e in store.ledger(account)
            if e["op"] == "set_status"]


def rows(db) -> list[tuple[str, str, str, str]]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(ActionRow.account, ActionRow.as_of, ActionRow.action, ActionRow.op_id)
            .order_by(ActionRow.id))]


def pay(db, account: str, amount: int, op_id: str):
    return record_payment(db, account=account, amount=amount, op_id=op_id, paid_on="2026-11-26")


def test_an_overdue_account_is_suspended_and_resumed_once_it_has_paid(db, store):
    store.create("A1", credit_limit=None)
    add_bill(db, "A1", "2026-09", 20 * EUR)  # due 2026-10-14
    add_bill(db, "A1", "2026-10", 12_500_000)  # 12.50, due 2026-11-14

    pay(db, "A1", 20 * EUR, "p-0")  # pays 2026-09 in full; 2026-10 owes 12.50
    assert run(db, store, DAY_BEFORE) == []  # 2026-11-14 + 10 days is not before 2026-11-24
    suspended = run(db, store, FIRST_DAY)
    op_suspend = "arrears:2026-11-25:A1:suspend"
    assert suspended == [ArrearsAction("A1", "suspend", op_suspend, "2026-11-25", 12_500_000,
                                       ("A1/2026-10",))]
    assert store.get_account("A1").status == "suspended"
    assert run(db, store, FIRST_DAY) == []  # the same as_of again: nothing twice
    assert run(db, store, date(2026, 11, 26)) == []  # still owing, already suspended

    pay(db, "A1", 10 * EUR, "p-1")  # 2.50 still owed: not enough
    assert run(db, store, date(2026, 11, 27)) == []
    assert store.get_account("A1").status == "suspended"
    pay(db, "A1", 2_500_000, "p-2")  # the last 2.50
    resumed = run(db, store, date(2026, 11, 28))
    op_resume = "arrears:2026-11-28:A1:resume"
    assert resumed == [ArrearsAction("A1", "resume", op_resume, "2026-11-28", 0)]
    assert store.get_account("A1").status == "active"
    assert run(db, store, date(2026, 11, 29)) == []

    assert status_changes(store, "A1") == [
        ("suspended", op_suspend,
         "arrears: 12.50 overdue as of 2026-11-25 (1 bill(s), oldest A1/2026-10 due 2026-11-14)"),
        ("active", op_resume, "arrears: nothing overdue as of 2026-11-28"),
    ]
    assert rows(db) == [("A1", "2026-11-25", "suspend", op_suspend),
                        ("A1", "2026-11-28", "resume", op_resume)]


def test_draft_bills_paid_bills_and_bills_within_grace_suspend_nobody(db, store):
    for account in ("D1", "P1", "G1"):
        store.create(account, credit_limit=None)
    add_bill(db, "D1", "2026-10", 9 * EUR, status="draft")
    add_bill(db, "P1", "2026-10", 9 * EUR)
    pay(db, "P1", 9 * EUR, "p-P1")
    add_bill(db, "G1", "2026-10", 9 * EUR, due_date="2026-11-15")  # grace ends 2026-11-25
    assert run(db, store, FIRST_DAY) == []
    assert [store.get_account(a).status for a in ("D1", "P1", "G1")] == ["active"] * 3
    assert [a.account for a in run(db, store, date(2026, 11, 26))] == ["G1"]


def test_an_operator_suspension_is_never_resumed_and_terminated_accounts_are_left_alone(db, store):
    for account in ("OP", "OD", "T1"):
        store.create(account, credit_limit=None)
    store.set_status("OP", "suspended", op_id="ops-1", reason="fraud check")
    store.set_status("OD", "suspended", op_id="ops-2", reason="fraud check")
    store.set_status("T1", "terminated", op_id="ops-3", reason="contract ended")
    add_bill(db, "OD", "2026-10", 5 * EUR)  # overdue, but suspended by the operator already
    add_bill(db, "T1", "2026-10", 5 * EUR)  # overdue, terminated
    assert run(db, store, FIRST_DAY) == []
    pay(db, "OD", 5 * EUR, "p-OD")
    assert run(db, store, date(2026, 11, 26)) == []
    assert [store.get_account(a).status for a in ("OP", "OD", "T1")] == \
        ["suspended", "suspended", "terminated"]
    assert status_changes(store, "OD") == [("suspended", "ops-2", "fraud check")]
    assert rows(db) == []


def test_an_arrears_suspension_taken_over_by_the_operator_is_not_resumed(db, store):
    store.create("A1", credit_limit=None)
    add_bill(db, "A1", "2026-10", 5 * EUR)
    assert [a.action for a in run(db, store, FIRST_DAY)] == ["suspend"]
    store.set_status("A1", "active", op_id="ops-1", reason="promise to pay")
    store.set_status("A1", "suspended", op_id="ops-2", reason="fraud check")
    pay(db, "A1", 5 * EUR, "p-1")
    assert run(db, store, date(2026, 11, 26)) == []  # its last row is 'suspend'; not ours now
    assert store.get_account("A1").status == "suspended"


def test_an_account_resumed_by_hand_while_still_owing_is_suspended_again_on_a_later_day(db, store):
    store.create("A1", credit_limit=None)
    add_bill(db, "A1", "2026-10", 5 * EUR)
    run(db, store, FIRST_DAY)
    store.set_status("A1", "active", op_id="ops-1", reason="promise to pay")
    assert run(db, store, FIRST_DAY) == []  # the same as_of: its op id was used, no change
    pay(db, "A1", 2 * EUR, "p-1")  # 3.00 still owed: this as_of's reason would differ now
    assert run(db, store, FIRST_DAY) == []
    assert store.get_account("A1").status == "active"
    again = run(db, store, date(2026, 11, 30))
    assert [(a.action, a.op_id) for a in again] == [("suspend", "arrears:2026-11-30:A1:suspend")]
    assert store.get_account("A1").status == "suspended"


def test_a_run_interrupted_after_the_store_call_is_healed_by_the_next_run(db, store):
    store.create("A1", credit_limit=None)
    store.create("B1", credit_limit=None)
    add_bill(db, "A1", "2026-10", 5 * EUR)
    add_bill(db, "B1", "2026-10", 7 * EUR)
    # what an interrupted run of 2026-11-25 left: both suspended in the store, no SQL row
    for account in ("A1", "B1"):
        store.set_status(account, "suspended", op_id=f"arrears:2026-11-25:{account}:suspend",
                         reason="arrears")
    pay(db, "B1", 7 * EUR, "p-B1")  # and B1 paid before the next run
    healed = run(db, store, date(2026, 11, 26))
    assert [(a.account, a.action, a.as_of, a.healed) for a in healed] == [
        ("A1", "suspend", "2026-11-25", True),   # recorded; still owing: stays suspended
        ("B1", "suspend", "2026-11-25", True),   # recorded, then resumed: it paid
        ("B1", "resume", "2026-11-26", False),
    ]
    assert [store.get_account(a).status for a in ("A1", "B1")] == ["suspended", "active"]
    assert [s for s, _, _ in status_changes(store, "A1")] == ["suspended"]  # one change
    assert rows(db) == [
        ("A1", "2026-11-25", "suspend", "arrears:2026-11-25:A1:suspend"),
        ("B1", "2026-11-25", "suspend", "arrears:2026-11-25:B1:suspend"),
        ("B1", "2026-11-26", "resume", "arrears:2026-11-26:B1:resume"),
    ]
    assert run(db, store, date(2026, 11, 26)) == []


def test_a_bill_of_an_account_the_store_does_not_know_is_skipped(db, store):
    store.create("A1", credit_limit=None)
    add_bill(db, "GHOST", "2026-10", 5 * EUR)
    add_bill(db, "A1", "2026-10", 5 * EUR)
    assert [a.account for a in run(db, store, FIRST_DAY)] == ["A1"]


@pytest.mark.parametrize(("field", "value"), [
    ("as_of", "2026-11-25"), ("as_of", datetime(2026, 11, 25)), ("as_of", date(1969, 12, 31)),
    ("grace_days", -1), ("grace_days", 1.5), ("grace_days", True), ("grace_days", 3651),
])
def test_bad_arguments_are_refused_naming_the_field(db, store, field, value):
    args = {"as_of": FIRST_DAY, "grace_days": GRACE, field: value}
    with pytest.raises(ValueError) as err:
        arrears_run(db, store, **args)
    assert isinstance(err.value, ArrearsError) and err.value.field == field
