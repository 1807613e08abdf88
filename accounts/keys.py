"""Redis key layout of the accounts layer: one hash tag per account family, global indexes.

Every key of an account carries its ROOT account's hash tag ``{a:<root>}`` so that a Lua
script touching an account (and, for a child, its root) stays in one cluster slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from accounts.errors import AccountError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MSISDN = re.compile(r"^\+?[0-9]{3,20}$")

EXPIRY_INDEX = "rsv:expiry"  # sorted set: "<account>|<session>" scored by expires_at


def check_account_id(account_id: object, field: str = "account_id") -> str:
    if not isinstance(account_id, str) or not _ID.match(account_id):
        raise AccountError(
            field,
            f"expected 1-64 of [A-Za-z0-9_.-] starting with a letter or digit, got {account_id!r}",
        )
    return account_id


def check_msisdn(msisdn: object, field: str = "msisdns") -> str:
    if not isinstance(msisdn, str) or not _MSISDN.match(msisdn):
        raise AccountError(field, f"expected 3-20 digits with an optional '+', got {msisdn!r}")
    return msisdn


def lookup_key(account_id: str) -> str:
    """String key "<root> <bill_cycle_day>[ <parent>]" (root = itself for a root account):
    how an account's keys are found."""
    return f"acct:{account_id}"


def lookup_value(root: str, bill_cycle_day: int, parent: str | None) -> str:
    return f"{root} {bill_cycle_day}" + (f" {parent}" if parent else "")


def parse_lookup(account_id: str, value: str) -> tuple[AccountKeys, int]:
    """The account's keys and bill-cycle day from its lookup value."""
    root, bcd, *parent = value.split()
    return AccountKeys(account_id, root, parent[0] if parent else None), int(bcd)


def msisdn_key(msisdn: str) -> str:
    return f"msisdn:{msisdn}"


def expiry_member(account_id: str, session: str) -> str:
    return f"{account_id}|{session}"


def split_expiry_member(member: str) -> tuple[str, str]:
    account_id, _, session = member.partition("|")
    return account_id, session


RESERVATIONS_PATTERN = "{a:*:rsv"  # SCAN MATCH for every account's reservations hash
_RSV_KEY = re.compile(r"^\{a:([^:{}]+)\}(?::([^:{}]+))?:rsv$")


def account_of_reservations_key(key: str) -> str | None:
    """``{a:<id>}:rsv`` -> id, ``{a:<root>}:<child>:rsv`` -> child; None for other keys."""
    m = _RSV_KEY.match(key)
    if m is None:
        return None
    return m.group(2) or m.group(1)


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
    def kids(self) -> str:  # set: ids of the accounts whose parent this is
        return f"{self.base}:kids"

    def op(self, op_id: str) -> str:  # string: "<fingerprint>|<first answer>", with a TTL
        return f"{self.base}:op:{op_id}"

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
