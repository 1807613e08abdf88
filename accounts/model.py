"""The account model as returned by the store: balances, buckets, reservations, counters.

Plain dataclasses; all money is int micro-units; times are UTC seconds, dates local ISO.
"""

from __future__ import annotations

import json
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
    money: int  # money held on this account
    units: dict[str, int]  # bucket id -> units held
    expires_at: int
    service: str | None
    parent_money: int = 0  # a child's session: money held on its parent's account

    @property
    def total_money(self) -> int:
        return self.money + self.parent_money


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


# --- decoding the Redis representation (shared by the store and the audit) -------------------


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def pairs(flat) -> dict[str, str]:
    """A flat HGETALL-style list (or a dict) of bytes/str into a str -> str dict."""
    if isinstance(flat, dict):
        return {text(k): text(v) for k, v in flat.items()}
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def credit_limit_of(raw: str) -> int | None:
    return None if raw == "u" else int(raw)


def bucket_from_json(bucket_id: str, raw: str) -> Bucket:
    d = json.loads(raw)
    dest = d.get("dest")
    return Bucket(
        id=bucket_id,
        kind=d["kind"],
        service=d.get("service"),
        destinations=tuple(dest) if isinstance(dest, list) and dest else None,
        remaining=int(d["remaining"]),
        initial=int(d["initial"]),
        valid_from=int(d["valid_from"]),
        valid_to=int(d["valid_to"]) if "valid_to" in d else None,
        priority=int(d["priority"]),
        source=d["source"],
        reserved=int(d.get("reserved", 0)),
    )


def reservation_from_json(session: str, raw: str) -> Reservation:
    d = json.loads(raw)
    units = d.get("units") or {}
    return Reservation(
        session=session,
        money=int(d["money"]),
        units={k: int(v) for k, v in units.items()},
        expires_at=int(d["expires_at"]),
        service=d.get("service"),
        parent_money=int(d.get("pmoney", 0)),
    )


def consumption_key(bucket) -> tuple:
    """The sort key of the order usage consumes buckets in (`order` of accounts/lua/_lib.lua,
    the owner of the rule): soonest expiry first, none last, then priority, then id. Lua
    compares ids byte by byte; Python strings by code point, the same order as their UTF-8
    bytes. For anything with valid_to, priority and id (accounts.snapshot.consumption_order)."""
    return (bucket.valid_to is None, bucket.valid_to or 0, bucket.priority, bucket.id)


def stored_subscriptions(a: dict) -> list[dict]:
    """The account hash's ``subs`` list as stored (cjson writes an empty list as {})."""
    subs = json.loads(a.get("subs") or "[]")
    return subs if isinstance(subs, list) else []


def account_scalars(a: dict) -> dict:
    """The scalar fields of an account hash (``pairs`` of it), as Account names them."""
    return {
        "id": a["id"],
        "currency": a["currency"],
        "status": a["status"],
        "credit_limit": credit_limit_of(a["cl"]),
        "balance": int(a["bal"]),
        "reserved": int(a["rsv"]),
        "bill_cycle_day": int(a["bcd"]),
        "parent": a.get("parent") or None,
    }


def account_from_hashes(acct, buckets, reservations, counters) -> Account:
    """Build an Account from the four hashes of an account (flat lists or dicts)."""
    a = pairs(acct)
    return Account(
        **account_scalars(a),
        msisdns=tuple(m for m in a.get("msisdns", "").split(",") if m),
        subscriptions=tuple(Subscription(s["offer"], s["from"], s.get("to"))
                            for s in stored_subscriptions(a)),
        buckets=tuple(sorted((bucket_from_json(k, v) for k, v in pairs(buckets).items()),
                             key=consumption_key)),
        reservations=tuple(
            sorted(
                (reservation_from_json(k, v) for k, v in pairs(reservations).items()),
                key=lambda r: r.session,
            )
        ),
        counters={k: int(v) for k, v in sorted(pairs(counters).items())},
    )


_INT_FIELDS = (
    "balance", "reserved", "remaining", "initial", "valid_from", "valid_to", "priority",
    "parent_reserved", "from_parent",
)  # fmt: skip


def decode_delta(d: dict) -> dict:
    """A ledger delta with its integer strings turned into ints (credit_limit "u" -> None)."""
    out: dict = {}
    for key, value in d.items():
        if key in _INT_FIELDS or key == "bcd":
            out[key] = int(value)
        elif key == "credit_limit":
            out[key] = credit_limit_of(value)
        elif key == "counters":
            out[key] = {k: int(v) for k, v in value.items()}
        elif key == "bucket_valid_to":  # unsubscribe: bucket id -> its new valid_to
            out[key] = {bid: int(v) for bid, v in value.items()}
        elif key in ("buckets", "new_buckets"):
            out[key] = {bid: decode_delta(v) for bid, v in value.items()}
        elif key == "record":
            out[key] = json.loads(value)
        elif key == "create":
            out[key] = decode_delta(value)
        else:
            out[key] = value
    return out


def ledger_entry(entry_id, fields) -> dict:
    """One ledger stream entry as {"id", "op", "op_id", "ts", **delta}."""
    f = pairs(fields)
    return {
        "id": text(entry_id),
        "op": f["op"],
        "op_id": f["op_id"],
        "ts": int(f["ts"]),
        **decode_delta(json.loads(f["d"])),
    }
