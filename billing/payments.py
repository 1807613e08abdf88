"""Payments: recorded once per op id and allocated to the oldest unpaid final bills.

billing.md, Payments and arrears: a payment goes to the oldest unpaid finalised bill first.
Here "oldest" is by cycle, then bill id; a bill takes at most what it still owes
(amount_due - paid); whatever is left is the payment's `unallocated` amount.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import exc

from accounts.errors import AccountError
from accounts.keys import check_account_id
from accounts.presentation import money_text
from accounts.validation import check_amount, check_iso_date, check_op_id
from billing.db import BillingError, write_transaction
from billing.models import Bill, Payment, PaymentAllocation


class PaymentError(BillingError):
    """A payment refused before anything was written; ``field`` names the argument."""


@dataclass(frozen=True)
class PaymentResult:
    """What a payment did. ``applied`` is False for a retry of an op id already recorded (the
    first call's allocations and unallocated amount are returned again, nothing is written)."""

    applied: bool
    allocations: list[tuple[str, int]]  # (bill id, micro-units), in allocation order
    unallocated: int  # micro-units kept on the payment
    payment_id: int = field(default=0)


def _checked(check, value, name: str):
    try:
        return check(value, name)
    except AccountError as e:
        raise PaymentError(name, e.message) from e


def _validate(account, amount, op_id, paid_on) -> None:
    _checked(check_account_id, account, "account")
    _checked(lambda v, n: check_amount(v, n, zero=False), amount, "amount")
    _checked(check_op_id, op_id, "op_id")
    _checked(check_iso_date, paid_on, "paid_on")


def _replay(conn, op_id: str, account: str, amount: int, paid_on: str) -> PaymentResult | None:
    """The recorded answer of ``op_id`` (None when it is new); PaymentError on other content."""
    row = conn.execute(sa.select(Payment).where(Payment.op_id == op_id)).mappings().first()
    if row is None:
        return None
    if (row["account"], row["amount"], row["paid_on"]) != (account, amount, paid_on):
        raise PaymentError(
            "op_id",
            f"{op_id!r} was already used for another payment ({row['account']}, "
            f"{money_text(row['amount'])} on {row['paid_on']})",
        )
    allocations = conn.execute(
        sa.select(PaymentAllocation.bill_id, PaymentAllocation.amount)
        .where(PaymentAllocation.payment_id == row["id"])
        .order_by(PaymentAllocation.id)
    ).all()
    return PaymentResult(False, [(b, int(a)) for b, a in allocations], int(row["unallocated"]),
                         int(row["id"]))


def _open_bills(conn, account: str):
    """The account's final bills that still owe something, oldest first, locked for update on
    PostgreSQL (a concurrent payment of the account waits here, then sees the new `paid`)."""
    query = (
        sa.select(Bill.id, Bill.amount_due, Bill.paid)
        .where(Bill.account == account, Bill.status == "final", Bill.amount_due > Bill.paid)
        .order_by(Bill.cycle, Bill.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).all()


def _record(conn, account: str, amount: int, op_id: str, paid_on: str, now: int) -> PaymentResult:
    allocations: list[tuple[str, int]] = []
    left = amount
    for bill_id, due, paid in _open_bills(conn, account):
        if left == 0:
            break
        take = min(left, int(due) - int(paid))
        allocations.append((bill_id, take))
        left -= take
    payment_id = conn.execute(
        sa.insert(Payment)
        .values(op_id=op_id, account=account, amount=amount, paid_on=paid_on, unallocated=left,
                created_at=now)
        .returning(Payment.id)
    ).scalar_one()
    for bill_id, take in allocations:
        done = conn.execute(
            sa.update(Bill)
            .where(Bill.id == bill_id, Bill.paid + take <= Bill.amount_due)
            .values(paid=Bill.paid + take)
        )
        if done.rowcount != 1:  # the bill changed under us: refuse rather than over-allocate
            raise RuntimeError(f"bill {bill_id} changed during the payment {op_id!r}")
    if allocations:
        conn.execute(
            sa.insert(PaymentAllocation),
            [{"payment_id": payment_id, "bill_id": b, "amount": a} for b, a in allocations],
        )
    return PaymentResult(True, allocations, left, payment_id)


def allocate_unallocated(conn, accounts: list[str]) -> list[tuple[int, str, int]]:
    """In the caller's transaction (a finalisation): what the payments of `accounts` left
    unallocated goes to their unpaid final bills, the oldest payment first, each to the
    oldest bill first, as record_payment allocates. Returns (payment id, bill id, amount)."""
    done: list[tuple[int, str, int]] = []
    if not accounts:
        return done
    for lo in range(0, len(accounts), 500):
        rows = conn.execute(
            sa.select(Payment.id, Payment.account, Payment.unallocated)
            .where(Payment.account.in_(accounts[lo:lo + 500]), Payment.unallocated > 0)
            .order_by(Payment.account, Payment.id)
        ).all()
        for payment_id, account, left in rows:
            left = int(left)
            for bill_id, due, paid in _open_bills(conn, account):
                if left == 0:
                    break
                take = min(left, int(due) - int(paid))
                conn.execute(sa.update(Bill).where(Bill.id == bill_id).values(
                    paid=Bill.paid + take))
                conn.execute(sa.insert(PaymentAllocation).values(
                    payment_id=payment_id, bill_id=bill_id, amount=take))
                done.append((payment_id, bill_id, take))
                left -= take
            conn.execute(sa.update(Payment).where(Payment.id == payment_id).values(
                unallocated=left))
    return done


def record_payment(engine, *, account: str, amount: int, op_id: str, paid_on: str) -> PaymentResult:
    """Record a payment of ``amount`` micro-units (0 < amount < 2^53) made by ``account`` on
    ``paid_on`` (YYYY-MM-DD), and allocate it to the account's oldest unpaid final bills
    (by cycle, then bill id), never more to a bill than its amount_due - paid. What no bill
    takes stays on the payment as ``unallocated``, until a finalisation of the account's
    next bills allocates it to them (`allocate_unallocated`).

    Idempotent per ``op_id``: the same op id with the same account, amount and date returns
    the first call's answer with ``applied=False`` and writes nothing; with other content it
    is a PaymentError naming ``op_id``. One transaction: all of it or nothing. Concurrent
    payments of one account never over-allocate a bill: PostgreSQL locks the account's open
    bills (SELECT ... FOR UPDATE), SQLite serialises writers (BEGIN IMMEDIATE); two calls
    with one new op id at once record it once (the loser gets the winner's answer).

    Bad input (a float, zero, negative or >= 2^53 amount, a malformed date or op id):
    PaymentError (a ValueError) naming the field, before any database work."""
    _validate(account, amount, op_id, paid_on)
    for attempt in (1, 2):
        try:
            with write_transaction(engine) as conn:
                replay = _replay(conn, op_id, account, amount, paid_on)
                if replay is not None:
                    return replay
                return _record(conn, account, amount, op_id, paid_on, int(time.time()))
        except exc.IntegrityError:
            # another transaction recorded this op id first (PostgreSQL: the unique index
            # made this one wait, then refused it); its answer is read on the second pass
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
