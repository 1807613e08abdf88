"""The Billing gRPC service: bills and payments over the bill run's database.

Thin: protobuf -> `billing` -> protobuf. A bill on the wire is its stored JSON export (the
same figures as `ccs bill show --json`); money crosses as decimal strings.
"""

from __future__ import annotations

import functools
import json
from datetime import date

import grpc
from sqlalchemy import select

from billing.models import Base
from proto.ccs.v1 import billing_pb2 as pb
from proto.ccs.v1 import billing_pb2_grpc
from rating.money import MoneyError, format_money, parse_money

BILLS = Base.metadata.tables["bills"]
MAX_BILLS = 1000  # one ListBills answer at most; narrower filters for more


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(field: str, message: str) -> _Refused:
    if len(message) > 300:  # a status message travels in a header: never echo a huge input
        message = message[:300] + "..."
    return _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


def _handler(method):
    @functools.wraps(method)
    def run(self, request, context):
        try:
            return method(self, request, context)
        except _Refused as exc:
            context.abort(exc.code, exc.message)

    return run


def _cycle(value: str, *, required: bool) -> str | None:
    if not value:
        if required:
            raise _invalid("cycle", "required, YYYY-MM")
        return None
    from billing.billrun import BillRunError, check_cycle

    try:
        return check_cycle(value)  # the bill run's rule: YYYY-MM of the years 1970..2999
    except BillRunError as exc:
        raise _invalid("cycle", exc.args[0].split(": ", 1)[1]) from None


def _account(value: str, *, required: bool) -> str | None:
    if not value:
        if required:
            raise _invalid("account", "required")
        return None
    if len(value) > 64:
        raise _invalid("account", "longer than 64 characters")
    return value


def bill_message(doc: dict, bill_id: str) -> pb.Bill:
    return pb.Bill(
        id=bill_id, account=doc["account"], cycle=doc["cycle"], status=doc["status"],
        lines=[pb.BillLine(kind=ln["kind"], description=ln["name"], amount=ln["amount"],
                           account=ln["account"]) for ln in doc["lines"]],
        total=doc["total"], amount_due=doc["amount_due"], due_date=doc["due_date"],
        type=doc["type"], currency=doc["currency"], period_start=doc["period_start"],
        period_end=doc["period_end"], subtotal=doc["subtotal"],
        account_discount=doc["account_discount"], tax=doc["tax"])


class BillingService(billing_pb2_grpc.BillingServicer):
    def __init__(self, engine, catalog, store=None):
        self.engine = engine
        self.catalog = catalog
        self.store = store  # accounts.store.AccountStore: payments name existing accounts

    def _bills(self, account: str | None, cycle: str | None, limit: int) -> list[pb.Bill]:
        q = select(BILLS.c.id, BILLS.c.export).order_by(BILLS.c.cycle, BILLS.c.account)
        if account is not None:
            q = q.where(BILLS.c.account == account)
        if cycle is not None:
            q = q.where(BILLS.c.cycle == cycle)
        with self.engine.connect() as conn:
            rows = conn.execute(q.limit(limit + 1)).all()
        if len(rows) > limit:
            raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"more than {limit} bills match: give an account or a cycle")
        return [bill_message(json.loads(export), bid) for bid, export in rows]

    @_handler
    def ListBills(self, request, context):
        account = _account(request.account, required=False)
        cycle = _cycle(request.cycle, required=False)
        return pb.ListBillsReply(bills=self._bills(account, cycle, MAX_BILLS))

    @_handler
    def GetBill(self, request, context):
        account = _account(request.account, required=True)
        cycle = _cycle(request.cycle, required=True)
        found = self._bills(account, cycle, 1)
        if not found:
            raise _Refused(grpc.StatusCode.NOT_FOUND,
                           f"account: no bill of {account!r} for cycle {cycle}")
        return found[0]

    @_handler
    def RecordPayment(self, request, context):
        from billing.payments import record_payment

        if not request.op_id:
            raise _invalid("op_id", "required")
        account = _account(request.account, required=True)
        decimals = self.catalog.billing.decimals
        try:
            amount = parse_money(request.amount, "amount", allow_negative=False)
        except MoneyError as exc:
            raise _invalid("amount", getattr(exc, "message", str(exc))) from None
        if amount <= 0 or amount % 10 ** (6 - decimals):
            raise _invalid("amount", f"expected a positive amount with at most {decimals} "
                                     f"decimals, got {request.amount[:40]!r}")
        if self.store is not None:
            from accounts.errors import UnknownAccount

            try:
                self.store.account_keys(account)
            except UnknownAccount:
                raise _Refused(grpc.StatusCode.NOT_FOUND,
                               f"account: no account {account!r}") from None
        paid_on = request.paid_on or date.today().isoformat()
        try:
            result = record_payment(self.engine, account=account, amount=amount,
                                    op_id=request.op_id, paid_on=paid_on)
        except ValueError as exc:
            field = getattr(exc, "field", "") or "request"
            raise _invalid(field, getattr(exc, "message", str(exc))) from None
        return pb.PaymentReply(
            applied=result.applied, unallocated=format_money(result.unallocated, decimals),
            allocations=[pb.Allocation(bill_id=b, amount=format_money(a, decimals))
                         for b, a in result.allocations])
