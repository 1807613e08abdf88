"""Payments: allocated oldest final bill first, idempotent per op id, atomic, safe when
concurrent; on SQLite and on PostgreSQL. Bills are inserted directly (amounts in comments)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from billing.models import Payment, PaymentAllocation
from billing.payments import PaymentError, PaymentResult, record_payment
from tests.billing import db_fixtures
from tests.billing.db_fixtures import EUR, add_bill, paid

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url


def pay(engine, amount: int, op_id: str, account: str = "A1", paid_on: str = "2026-12-01"):
    return record_payment(engine, account=account, amount=amount, op_id=op_id, paid_on=paid_on)


def test_a_payment_fills_the_oldest_final_bill_first_then_the_next(db):
    # inserted newest first: the order comes from the cycle, not from the insertion
    add_bill(db, "A1", "2026-10", 25_500_000)  # 25.50
    add_bill(db, "A1", "2026-09", 30 * EUR)  # 30.00
    add_bill(db, "A1", "2026-11", 40 * EUR, status="draft")  # a draft takes nothing
    add_bill(db, "B1", "2026-08", 5 * EUR)  # another account's bill takes nothing

    first = pay(db, 40 * EUR, "p-1")
    # 40.00 -> 30.00 fills 2026-09, the other 10.00 goes to 2026-10 (25.50 owed)
    assert first == PaymentResult(True, [("A1/2026-09", 30 * EUR), ("A1/2026-10", 10 * EUR)], 0,
                                  first.payment_id)
    second = pay(db, 20 * EUR, "p-2")
    # 2026-10 still owes 25.50 - 10.00 = 15.50; 20.00 - 15.50 = 4.50 is left over
    assert second.allocations == [("A1/2026-10", 15_500_000)]
    assert second.unallocated == 4_500_000
    assert paid(db) == {"A1/2026-09": 30 * EUR, "A1/2026-10": 25_500_000, "A1/2026-11": 0,
                        "B1/2026-08": 0}


def test_an_overpayment_keeps_the_rest_unallocated_and_a_later_bill_does_not_take_it(db):
    add_bill(db, "A1", "2026-10", 12_340_000)  # 12.34
    result = pay(db, 50 * EUR, "p-1")
    assert result.allocations == [("A1/2026-10", 12_340_000)]
    assert result.unallocated == 37_660_000  # 50.00 - 12.34
    add_bill(db, "A1", "2026-11", 10 * EUR)
    assert paid(db)["A1/2026-11"] == 0  # finalised after the payment: not paid by it
    with db.connect() as conn:
        row = conn.execute(sa.select(Payment.amount, Payment.unallocated)).one()
    assert tuple(row) == (50 * EUR, 37_660_000)


def test_a_payment_without_any_open_bill_is_all_unallocated(db):
    add_bill(db, "A1", "2026-10", 10 * EUR)
    pay(db, 10 * EUR, "p-1")  # pays it in full
    result = pay(db, 3 * EUR, "p-2")
    assert (result.applied, result.allocations, result.unallocated) == (True, [], 3 * EUR)


def test_a_retried_op_id_returns_the_first_answer_and_changes_nothing(db):
    add_bill(db, "A1", "2026-09", 10 * EUR)
    add_bill(db, "A1", "2026-10", 10 * EUR)
    first = pay(db, 15 * EUR, "bank-77")
    again = pay(db, 15 * EUR, "bank-77")
    assert again == PaymentResult(False, first.allocations, first.unallocated, first.payment_id)
    assert again.allocations == [("A1/2026-09", 10 * EUR), ("A1/2026-10", 5 * EUR)]
    assert paid(db) == {"A1/2026-09": 10 * EUR, "A1/2026-10": 5 * EUR}  # not 10.00 on 2026-10

    for other in ({"amount": 16 * EUR}, {"paid_on": "2026-12-02"}, {"account": "B1"}):
        args = {"account": "A1", "amount": 15 * EUR, "paid_on": "2026-12-01", **other}
        with pytest.raises(PaymentError) as err:
            record_payment(db, op_id="bank-77", **args)
        assert err.value.field == "op_id"
        assert "A1, 15.00 on 2026-12-01" in str(err.value)
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Payment)).scalar_one() == 1


@pytest.mark.parametrize(("field", "value"), [
    ("amount", 0), ("amount", -5), ("amount", 1.5), ("amount", True), ("amount", 2**53),
    ("amount", "10.00"), ("paid_on", "2026-13-01"), ("paid_on", "20261201"),
    ("paid_on", "2026-02-30"), ("paid_on", None), ("op_id", ""), ("op_id", " p-1"),
    ("account", ""), ("account", "a b"),
])
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(db, field, value):
    add_bill(db, "A1", "2026-10", 10 * EUR)
    args = {"account": "A1", "amount": 5 * EUR, "op_id": "p-1", "paid_on": "2026-12-01"}
    with pytest.raises(ValueError) as err:
        record_payment(db, **{**args, field: value})
    assert isinstance(err.value, PaymentError) and err.value.field == field
    assert paid(db) == {"A1/2026-10": 0}
    assert pay(db, 2**53 - 1, "p-max").allocations == [("A1/2026-10", 10 * EUR)]  # the bound


def test_a_failure_inside_the_transaction_leaves_nothing_half_applied(db):
    add_bill(db, "A1", "2026-10", 10 * EUR)
    # a real trigger makes the last statement (the allocation rows) fail, after the payment
    # row and the bill's paid were written in the same transaction
    with db.begin() as conn:
        if db.dialect.name == "sqlite":
            conn.exec_driver_sql("CREATE TRIGGER no_alloc BEFORE INSERT ON payment_allocations "
                                 "BEGIN SELECT RAISE(ABORT, 'no allocations today'); END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION no_alloc() RETURNS trigger LANGUAGE plpgsql AS "
                                 "$$ BEGIN RAISE EXCEPTION 'no allocations today'; END $$")
            conn.exec_driver_sql("CREATE TRIGGER no_alloc BEFORE INSERT ON payment_allocations "
                                 "FOR EACH ROW EXECUTE FUNCTION no_alloc()")
    with pytest.raises(sa.exc.DBAPIError, match="no allocations today"):
        pay(db, 4 * EUR, "p-1")
    assert paid(db) == {"A1/2026-10": 0}
    with db.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(Payment)).scalar_one() == 0
        conn.exec_driver_sql("DROP TRIGGER no_alloc" if db.dialect.name == "sqlite"
                             else "DROP FUNCTION no_alloc CASCADE")
    assert pay(db, 4 * EUR, "p-1").allocations == [("A1/2026-10", 4 * EUR)]  # the retry works


def _race(n_threads: int, work):
    """Run work(i) in n threads released together; returns their results (or exceptions)."""
    start = threading.Barrier(n_threads)
    out: list = [None] * n_threads

    def run(i):
        start.wait()
        try:
            out[i] = work(i)
        except Exception as e:  # noqa: BLE001 - the test asserts there is none
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_payments_of_one_account_never_over_allocate_a_bill(db):
    for cycle in ("2026-08", "2026-09", "2026-10"):
        add_bill(db, "A1", cycle, 10 * EUR)  # 30.00 owed in all
    for rnd in range(5):
        results = _race(2, lambda i, rnd=rnd: pay(db, 7 * EUR, f"r{rnd}-t{i}"))
        assert all(isinstance(r, PaymentResult) and r.applied for r in results), results
    # ten payments of 7.00 = 70.00: the three bills take exactly 30.00, 40.00 stays unallocated
    assert paid(db) == {"A1/2026-08": 10 * EUR, "A1/2026-09": 10 * EUR, "A1/2026-10": 10 * EUR}
    with db.connect() as conn:
        allocated = conn.execute(sa.select(sa.func.sum(PaymentAllocation.amount))).scalar_one()
        unallocated = conn.execute(sa.select(sa.func.sum(Payment.unallocated))).scalar_one()
    assert (int(allocated), int(unallocated)) == (30 * EUR, 40 * EUR)


def test_one_new_op_id_sent_twice_at_once_is_recorded_once(db):
    add_bill(db, "A1", "2026-10", 10 * EUR)
    results = _race(2, lambda i: pay(db, 4 * EUR, "dup-1"))
    assert sorted(r.applied for r in results) == [False, True], results
    assert results[0].allocations == results[1].allocations == [("A1/2026-10", 4 * EUR)]
    assert paid(db) == {"A1/2026-10": 4 * EUR}
