"""The Accounts gRPC service: account administration over `accounts.store.AccountStore`.

Thin: protobuf -> store call -> protobuf; money crosses as decimal strings, domain errors become
status codes whose message names the field (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION).
"""

from __future__ import annotations

import functools
import json

import grpc
import redis
from google.protobuf.timestamp_pb2 import Timestamp

from accounts.errors import (
    AccountError,
    AccountExists,
    CurrencyMismatch,
    InvalidState,
    OpIdConflict,
    UnknownAccount,
)
from accounts.keys import check_account_id
from accounts.presentation import ledger_to_dict, money_text
from accounts.validation import check_iso_date, check_ledger_count, check_op_id
from proto.ccs.v1 import accounts_pb2 as pb
from proto.ccs.v1 import accounts_pb2_grpc
from proto.ccs.v1.common_pb2 import Units
from rating.model import BUILTIN_SERVICES
from rating.money import MoneyError, parse_money

_STATUS_TO_PB = {"active": pb.ACTIVE, "suspended": pb.SUSPENDED, "terminated": pb.TERMINATED}
_PB_TO_STATUS = {v: k for k, v in _STATUS_TO_PB.items()}
_UNIT_FIELDS = ("seconds", "bytes", "events")
_DEFAULT_LEDGER_LIMIT = 100

# Most specific first: every domain error is an AccountError; the base (and InvalidAmount)
# means the request itself was wrong.
_ERROR_CODES = (
    (UnknownAccount, grpc.StatusCode.NOT_FOUND),
    (AccountExists, grpc.StatusCode.ALREADY_EXISTS),
    (OpIdConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidState, grpc.StatusCode.FAILED_PRECONDITION),
    (CurrencyMismatch, grpc.StatusCode.FAILED_PRECONDITION),
    (AccountError, grpc.StatusCode.INVALID_ARGUMENT),
)


class _Refused(Exception):
    """A request refused before or after the store call, with its status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(field: str, message: str) -> _Refused:
    return _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


def _rpc(method):
    """Run a handler, turning every refusal into an aborted call with the right status."""

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request)
        except _Refused as exc:
            context.abort(exc.code, exc.message)
        except MoneyError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except AccountError as exc:
            code = next(c for kind, c in _ERROR_CODES if isinstance(exc, kind))
            context.abort(code, str(exc))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"account store unavailable: {exc}")

    return handler


def _required(value: str, field: str) -> str:
    if not value:
        raise _invalid(field, "required")
    return value


def _op_id(request) -> str:
    """The request's op id: required, then the store's one rule for op ids."""
    return check_op_id(_required(request.op_id, "op_id"))


def _timestamp(seconds: int | None) -> Timestamp | None:
    return None if seconds is None else Timestamp(seconds=int(seconds))


class AccountsService(accounts_pb2_grpc.AccountsServicer):
    """ccs.v1.Accounts over an AccountStore; `catalog` names the usage unit of each service."""

    def __init__(self, store, catalog=None):
        self.store = store
        self.catalog = catalog if catalog is not None else getattr(store, "catalog", None)

    # --- protobuf builders ----------------------------------------------------------------

    def _now(self) -> int:
        return self.store.now()

    def _unit(self, service: str | None) -> str:
        services = getattr(self.catalog, "services", None) or {}
        if service in services:
            return services[service].unit
        if service in BUILTIN_SERVICES:
            return BUILTIN_SERVICES[service][0]
        return "events"

    def _units(self, service: str | None, count: int) -> Units:
        unit = self._unit(service)
        # Units has no field for a custom unit; such counts travel as events
        return Units(**{unit if unit in _UNIT_FIELDS else "events": int(count)})

    def _bucket_amount(self, bucket, value: int) -> Units:
        if bucket.kind == "money":
            return Units(money=money_text(value))
        return self._units(bucket.service, value)

    def account_pb(self, account) -> pb.Account:
        available = account.available(self._now())
        unlimited = account.credit_limit is None
        msg = pb.Account(
            id=account.id,
            currency=account.currency,
            status=_STATUS_TO_PB.get(account.status, pb.ACCOUNT_STATUS_UNSPECIFIED),
            payment_type=pb.PREPAID if account.payment_type == "prepaid" else pb.POSTPAID,
            credit_limit="" if unlimited else money_text(account.credit_limit),
            unlimited=unlimited,
            balance=money_text(account.balance),
            reserved=money_text(account.reserved),
            available="" if available is None else money_text(available),
            bill_cycle_day=account.bill_cycle_day,
            parent=account.parent or "",
            msisdns=list(account.msisdns),
            subscriptions=[
                pb.Subscription(offer=s.offer, from_date=s.from_date, to_date=s.to_date or "")
                for s in account.subscriptions
            ],
            usage_counters=dict(account.counters),
        )
        for b in account.buckets:
            msg.buckets.append(pb.Bucket(
                id=b.id, kind=b.kind, service=b.service or "",
                destinations=list(b.destinations or ()),
                remaining=self._bucket_amount(b, b.remaining),
                initial=self._bucket_amount(b, b.initial),
                reserved=self._bucket_amount(b, b.reserved),
                valid_from=_timestamp(b.valid_from), valid_to=_timestamp(b.valid_to),
                priority=b.priority, source=b.source,
            ))
        for r in account.reservations:
            msg.reservations.append(pb.Reservation(
                session_id=r.session, money=money_text(r.money),
                units=self._units(r.service, sum(r.units.values())),
                expires_at=_timestamp(r.expires_at),
            ))
        return msg

    def _reply(self, result, account_id: str) -> pb.AccountReply:
        """An OpResult as a reply; a result refused by the domain is FAILED_PRECONDITION."""
        if result.code != "ok":
            detail = ", ".join(f"{k}={v}" for k, v in sorted(result.detail.items()))
            raise _Refused(grpc.StatusCode.FAILED_PRECONDITION,
                           f"{result.code}" + (f": {detail}" if detail else ""))
        account = result.account
        if account is None:
            account = self.store.get_account(account_id)
        return pb.AccountReply(account=self.account_pb(account), applied=result.applied,
                               op_id=result.op_id)

    # --- request helpers -------------------------------------------------------------------

    @staticmethod
    def _credit_limit(payment_type: int, credit_limit: str) -> int | None:
        if payment_type == pb.PREPAID:
            if credit_limit:
                raise _invalid("credit_limit", "only a postpaid account has a credit limit")
            return 0
        if payment_type == pb.POSTPAID:
            if not credit_limit:
                return None
            limit = parse_money(credit_limit, "credit_limit", allow_negative=False)
            if limit == 0:
                raise _invalid("credit_limit", "a postpaid limit must be above 0 (0 is prepaid)")
            return limit
        if payment_type == pb.PAYMENT_TYPE_UNSPECIFIED:
            raise _invalid("payment_type", "required (PREPAID or POSTPAID)")
        raise _invalid("payment_type", f"unknown value {payment_type}")

    # --- RPCs ------------------------------------------------------------------------------

    @_rpc
    def CreateAccount(self, request):
        op_id = _op_id(request)
        account_id = _required(request.account_id, "account_id")
        limit = self._credit_limit(request.payment_type, request.credit_limit)
        return self._reply(self.store.create(
            account_id, credit_limit=limit, currency=request.currency or None,
            msisdns=tuple(request.msisdns), bill_cycle_day=request.bill_cycle_day or 1,
            parent=request.parent or None, offers=tuple(request.offers), op_id=op_id), account_id)

    @_rpc
    def GetAccount(self, request):
        subscriber = _required(request.account_id, "account_id")
        account = self.store.get_account(self.store.resolve(subscriber))
        return pb.AccountReply(account=self.account_pb(account), applied=False)

    @_rpc
    def TopUp(self, request):
        op_id = _op_id(request)
        account_id = _required(request.account_id, "account_id")
        amount = parse_money(_required(request.amount, "amount"), "amount", allow_negative=False)
        return self._reply(self.store.topup(account_id, amount, op_id=op_id,
                                            currency=request.currency or None), account_id)

    @_rpc
    def Adjust(self, request):
        op_id = _op_id(request)
        account_id = _required(request.account_id, "account_id")
        amount = parse_money(_required(request.amount, "amount"), "amount")
        return self._reply(self.store.adjust(account_id, amount, op_id=op_id,
                                             reason=request.reason), account_id)

    @_rpc
    def SetStatus(self, request):
        op_id = _op_id(request)
        account_id = _required(request.account_id, "account_id")
        if request.status == pb.ACCOUNT_STATUS_UNSPECIFIED:
            raise _invalid("status", "required (ACTIVE, SUSPENDED or TERMINATED)")
        if request.status not in _PB_TO_STATUS:
            raise _invalid("status", f"unknown value {request.status}")
        return self._reply(self.store.set_status(account_id, _PB_TO_STATUS[request.status],
                                                 op_id=op_id, reason=request.reason), account_id)

    @_rpc
    def ChangePaymentType(self, request):
        op_id = _op_id(request)
        account_id = _required(request.account_id, "account_id")
        limit = self._credit_limit(request.payment_type, request.credit_limit)
        return self._reply(self.store.change_payment_type(account_id, limit, op_id=op_id),
                           account_id)

    @_rpc
    def Subscribe(self, request):
        op_id = _op_id(request)
        account_id = _required(request.account_id, "account_id")
        offer = _required(request.offer, "offer")
        return self._reply(self.store.subscribe(
            account_id, offer, op_id=op_id, from_date=request.from_date or None,
            to_date=request.to_date or None), account_id)

    @_rpc
    def Unsubscribe(self, request):
        op_id = _op_id(request)
        account_id = check_account_id(_required(request.account, "account"), "account")
        offer = _required(request.offer, "offer")
        on = check_iso_date(_required(request.on, "on"), "on")
        try:
            result = self.store.unsubscribe(account_id, offer, op_id=op_id, on_date=on)
        except UnknownAccount as exc:  # the store names its own parameter, account_id
            raise UnknownAccount("account", exc.message) from None
        return self._reply(result, account_id)

    @_rpc
    def ListLedger(self, request):
        account_id = _required(request.account_id, "account_id")
        count = check_ledger_count(request.limit or _DEFAULT_LEDGER_LIMIT, "limit")
        entries = self.store.ledger(account_id, count=count, after=request.after or "-")
        return pb.ListLedgerReply(entries=[_ledger_entry(e) for e in entries])


def _ledger_entry(entry: dict) -> pb.LedgerEntry:
    """A ledger entry on the wire: money deltas as decimal strings, nested deltas as JSON."""
    d = ledger_to_dict(entry)
    rest = {k: v for k, v in d.items() if k not in ("id", "op", "op_id", "time")}
    msg = pb.LedgerEntry(
        id=d["id"], op=d["op"], op_id=d["op_id"],
        fields={k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
                for k, v in rest.items()})
    if entry.get("ts") is not None:
        msg.time.CopyFrom(Timestamp(seconds=int(entry["ts"])))
    return msg
