"""Redis key layout of the accounts layer: one hash tag per account family, global indexes.

Every key of an account carries its ROOT account's hash tag ``{a:<root>}`` so that a Lua
script touching an account (and, for a child, its root) stays in one cluster slot. The global
index keys (``acct:<id>``, ``msisdn:<n>``) are claims: each names the create (its token) that
owns it, so a claim whose account was never written can be taken over (docs/accounts.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from accounts.errors import AccountError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# E.164: a country code first (never 0), at most 15 digits; '+' optional; ASCII digits only
_MSISDN = re.compile(r"^\+?([1-9][0-9]{2,14})$", re.ASCII)

EXPIRY_INDEX = "rsv:expiry"  # sorted set: "<account>|<session>" scored by expires_at


def check_account_id(account_id: object, field: str = "account_id") -> str:
    if not isinstance(account_id, str) or not _ID.fullmatch(account_id):
        raise AccountError(
            field,
            f"expected 1-64 of [A-Za-z0-9_.-] starting with a letter or digit, got {account_id!r}",
        )
    return account_id


def msisdn_digits(value: object) -> str | None:
    """An MSISDN in its one stored form, E.164 digits without '+' (as CDR destinations are
    written): ``"+4915550001"`` and ``"4915550001"`` -> ``"4915550001"``; None when ``value``
    is not an MSISDN (a leading 0 or 00, spaces, dashes, non-ASCII digits, over 15 digits)."""
    m = _MSISDN.fullmatch(value) if isinstance(value, str) else None
    return m.group(1) if m else None


def check_msisdn(msisdn: object, field: str = "msisdns") -> str:
    """``msisdn_digits`` or an AccountError naming ``field``."""
    digits = msisdn_digits(msisdn)
    if digits is None:
        raise AccountError(
            field,
            "expected an international number: an optional '+' and 3-15 digits, country code"
            f" first (no leading 0, spaces or dashes), got {msisdn!r}",
        )
    return digits


def lookup_key(account_id: str) -> str:
    """String key "<root> <bill_cycle_day> <parent|-> <token> <op id>" (root = itself for a
    root account): how an account's keys are found, and which create claimed the id."""
    return f"acct:{account_id}"


@dataclass(frozen=True)
class Claim:
    """A lookup key's value: the account's keys and bill-cycle day, and the create that
    claimed the id (``token``: one per claim, written into the account hash as ``claim``)."""

    keys: AccountKeys
    bill_cycle_day: int
    token: str
    op_id: str

    @property
    def value(self) -> str:
        k = self.keys
        return f"{k.root} {self.bill_cycle_day} {k.parent or '-'} {self.token} {self.op_id}"

    def same_request(self, other: Claim) -> bool:
        """The same create (op id and parameters), whatever the token."""
        return (self.keys, self.bill_cycle_day, self.op_id) == (
            other.keys, other.bill_cycle_day, other.op_id)  # fmt: skip


def parse_lookup(account_id: str, value: str) -> Claim:
    """A lookup key's value (``Claim.value``) read back; AccountError when it is not one."""
    try:
        root, bcd, parent, token, op_id = value.split(" ", 4)
        keys = AccountKeys(account_id, root, None if parent == "-" else parent)
        return Claim(keys, int(bcd), token, op_id)
    except ValueError:
        raise AccountError("account_id", f"unreadable lookup key of {account_id!r}: {value!r}") from None


def msisdn_key(msisdn: str) -> str:
    """String key "<account id> <root> <token>": the MSISDN's claim by that account's create."""
    return f"msisdn:{msisdn}"


def msisdn_value(keys: AccountKeys, token: str) -> str:
    return f"{keys.account_id} {keys.root} {token}"


def parse_msisdn(value: str) -> tuple[AccountKeys, str]:
    """An MSISDN key's value -> (the owner's keys, without its parent; the claim token);
    AccountError when it is not one."""
    try:
        account_id, root, token = value.split(" ", 2)
    except ValueError:
        raise AccountError("msisdns", f"unreadable MSISDN key value {value!r}") from None
    return AccountKeys(account_id, root), token


def index_names(account_id: str, msisdns) -> tuple[str, ...]:
    """The MSISDN keys an account claims: its MSISDNs, and its own id when that reads as an
    MSISDN, so one name never resolves to two accounts (an id is nobody else's MSISDN)."""
    own = msisdn_digits(account_id)
    return tuple(msisdns) + ((own,) if own is not None and own not in msisdns else ())


def expiry_member(account_id: str, session: str) -> str:
    return f"{account_id}|{session}"


def split_expiry_member(member: str) -> tuple[str, str]:
    account_id, _, session = member.partition("|")
    return account_id, session


RESERVATIONS_PATTERN = "{a:*:rsv"  # SCAN MATCH for every account's reservations hash
ACCOUNTS_PATTERN = "{a:*:acct"  # SCAN MATCH for every account hash
_HASH_KEY = re.compile(r"^\{a:([^:{}]+)\}(?::([^:{}]+))?:(rsv|acct)$")


def account_of_reservations_key(key: str) -> str | None:
    """``{a:<id>}:rsv`` -> id, ``{a:<root>}:<child>:rsv`` -> child; None for other keys."""
    m = _HASH_KEY.match(key)
    if m is None or m.group(3) != "rsv":
        return None
    return m.group(2) or m.group(1)


def keys_of_account_hash(key: str) -> AccountKeys | None:
    """``{a:<id>}:acct`` / ``{a:<root>}:<child>:acct`` -> the keys (parent unknown); None for
    other keys."""
    m = _HASH_KEY.match(key)
    if m is None or m.group(3) != "acct":
        return None
    return AccountKeys(m.group(2) or m.group(1), m.group(1))


@dataclass(frozen=True)
class AccountKeys:
    """All keys of one account; ``base`` is ``{a:<id>}`` or ``{a:<root>}:<id>`` for a child."""

    account_id: str
    root: str
    parent: str | None = None  # the account whose money a child draws on

    @property
    def base(self) -> str:
        tag = "{a:" + self.root + "}"
        return tag if self.root == self.account_id else f"{tag}:{self.account_id}"

    @property
    def account(self) -> str:  # hash: scalar fields of the account
        return f"{self.base}:acct"

    @property
    def buckets(self) -> str:  # hash: bucket id -> cjson
        return f"{self.base}:bk"

    @property
    def reservations(self) -> str:  # hash: session -> cjson
        return f"{self.base}:rsv"

    @property
    def counters(self) -> str:  # hash: "<cycle>|tier|<service>" / "<cycle>|disc|<name>" -> int
        return f"{self.base}:ctr"

    @property
    def ledger(self) -> str:  # stream of deltas, one entry per change
        return f"{self.base}:led"

    @property
    def checkpoint(self) -> str:  # hash: id, state, cycle, at of the last ledger archive
        return f"{self.base}:ckpt"

    @property
    def kids(self) -> str:  # set: ids of the accounts whose parent this is
        return f"{self.base}:kids"

    def op(self, op_id: str) -> str:  # string: "<fingerprint>|<first answer>", with a TTL
        return f"{self.base}:op:{op_id}"

    def fence(self, token: str) -> str:  # string: the create of claim `token` may not write
        return f"{self.base}:fence:{token}"

    def script_keys(self, op_id: str) -> list[str]:
        """KEYS[1..6] of every account script, in this order."""
        return [
            self.account,
            self.buckets,
            self.reservations,
            self.counters,
            self.ledger,
            self.op(op_id),
        ]

    def parent_keys(self) -> list[str]:
        """KEYS[7..10] of a child's family-aware scripts: the parent's account hash, buckets,
        ledger and children set (same slot: every key of the family has the root's tag)."""
        if self.parent is None:
            return []
        p = AccountKeys(self.parent, self.root)
        return [p.account, p.buckets, p.ledger, p.kids]
