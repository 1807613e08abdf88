"""The account model as returned by the store: balances, buckets, reservations, counters.

Plain dataclasses; all money is int micro-units; times are UTC seconds, dates local ISO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accounts.errors import (  # noqa: F401  (re-exported: the API names them from here too)
    AccountError,
    AccountExists,
    CurrencyMismatch,
    InvalidAmount,
    InvalidState,
    OpIdConflict,
    UnknownAccount,
)

STATUSES = ("active", "suspended", "terminated")
UNLIMITED = None  # credit_limit None = unlimited postpaid; 0 = prepaid; > 0 postpaid limit
# Lua numbers are doubles: integers are exact up to 2**53, so no amount or balance may pass it.
MAX_AMOUNT = 2**53 - 1


@dataclass
class Bucket:
    id: str
    kind: str  # "money" | "units"
    service: str | None
    destinations: tuple[str, ...] | None  # None = any
    remaining: int
    initial: int
    valid_from: int
    valid_to: int | None  # UTC s, exclusive; None = no expiry
    priority: int
    source: str  # e.g. "allowance:smart_m/voice_600:2026-11", "gift:topup:smart_m"
    reserved: int = 0  # units (or money) held by reservations

    def valid_at(self, now: int) -> bool:
        return self.valid_from <= now and (self.valid_to is None or now < self.valid_to)


@dataclass
class Reservation:
    session: str
    money: int
    units: dict[str, int]  # bucket id -> units held
    expires_at: int
    service: str | None


@dataclass
class Subscription:
    offer: str
    from_date: str
    to_date: str | None  # local ISO dates, to exclusive


@dataclass
class Account:
    id: str
    currency: str
    status: str
    credit_limit: int | None
    balance: int
    reserved: int
    bill_cycle_day: int
    parent: str | None
    msisdns: tuple[str, ...]
    subscriptions: tuple[Subscription, ...] = ()
    buckets: tuple[Bucket, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def payment_type(self) -> str:
        return "prepaid" if self.credit_limit == 0 else "postpaid"

    def available(self, now: int) -> int | None:
        """Money that can still be reserved: balance + valid money buckets + credit limit -
        reserved; None when the credit limit is unlimited."""
        if self.credit_limit is None:
            return None
        gifts = sum(
            b.remaining - b.reserved for b in self.buckets if b.kind == "money" and b.valid_at(now)
        )
        return self.balance + gifts + self.credit_limit - self.reserved


@dataclass
class OpResult:
    op_id: str
    applied: bool  # False: a retry, the first answer returned
    code: str  # "ok", "no_credit", "suspended", "stale", ...
    account: Account | None
    detail: dict = field(default_factory=dict)
