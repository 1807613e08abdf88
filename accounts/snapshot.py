"""Every account's facts for a bill run, read in pipelines, and the bucket rules it shares
with the Lua scripts.

``snapshot(store)`` enumerates the accounts by their lookup keys (``acct:<id>``, SCANned on
every primary of a Redis Cluster) and reads them ``batch`` at a time: one MGET of the lookup
keys (one per slot on a cluster, pipelined) and one pipeline of ``read/facts.lua``, which
reads an account's hashes at one instant (on a cluster each node gets its part at once).
So a batch costs two round trips, whatever its size, and each account is consistent in
itself (not with the others: online charging goes on).

The bucket rules are owned by ``accounts/lua/_lib.lua`` (``order``, ``unit_candidates``,
``allowance_id``, ``grant_cycle``); the functions here follow them, and the tests check
them against what the scripts do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from redis.exceptions import NoScriptError

from accounts.cluster import get_many
from accounts.errors import UnknownAccount
from accounts.keys import check_account_id, lookup_key, parse_lookup
from accounts.model import (
    account_scalars,
    consumption_key,
    pairs,
    stored_subscriptions,
    text,
)
from rating.cycles import cycle_bounds, cycle_dates

_LOOKUP_PREFIX = "acct:"


@dataclass(frozen=True)
class UnitBucket:
    """A unit bucket as stored: units of ``service`` (None: any service), for destination
    names ``dest`` (None: any; an empty tuple: none), valid ``valid_from`` <= t <
    ``valid_to`` (UTC s; None: no expiry); ``reserved`` of ``remaining`` are held by open
    sessions."""

    id: str
    service: str | None
    remaining: int
    reserved: int
    valid_from: int
    valid_to: int | None
    priority: int
    dest: tuple[str, ...] | None
    source: str

    @property
    def free(self) -> int:
        return self.remaining - self.reserved

    def valid_at(self, t: int) -> bool:
        return self.valid_from <= t and (self.valid_to is None or t < self.valid_to)


@dataclass(frozen=True)
class AccountFacts:
    """What a bill run needs of one account, read at one instant. Money in micro-units;
    ``credit_limit`` None = unlimited, 0 = prepaid. ``subscriptions`` in the account's order,
    each {offer, from, to (None: open), from_utc, to_utc (None), base, allow [{name, service,
    units, dest (list or None)}]}; ``buckets``: the unit buckets in consumption order;
    ``counters``: '<cycle>|tier|<service>' and '<cycle>|disc|<name>' -> int."""

    id: str
    currency: str
    status: str
    credit_limit: int | None
    balance: int
    reserved: int
    bill_cycle_day: int
    parent: str | None
    subscriptions: list[dict]
    buckets: tuple[UnitBucket, ...]
    counters: dict[str, int]


# --- the bucket rules of _lib.lua ------------------------------------------------------------

def consumption_order(buckets: Iterable) -> list:
    """Buckets in the order usage consumes them: soonest expiry first (no expiry last), then
    priority (1000 x subscription position + allowance position for allowances), then id.
    The owner of this rule is ``order`` in accounts/lua/_lib.lua, which every script uses;
    this follows it exactly: Lua compares ids byte by byte, and comparing Python strings by
    code point is the same order as comparing their UTF-8 bytes."""
    return sorted(buckets, key=consumption_key)


def unit_candidates(buckets: Iterable[UnitBucket], service: str | None, destination: str | None,
                    at: int) -> list[UnitBucket]:
    """The buckets that may cover usage of ``service`` to destination name ``destination``
    starting at ``at`` (UTC s), in consumption order: valid then, of that service (or of
    any), for that destination (a bucket with a destination list needs one of them), with
    free units. ``unit_candidates`` of _lib.lua with ``at`` for the script's NOW."""
    out = [b for b in buckets
           if b.valid_at(at) and (b.service is None or b.service == service)
           and (b.dest is None or (destination is not None and destination in b.dest))
           and b.free > 0]
    return consumption_order(out)


def _empty(sub: dict) -> bool:
    return sub["to"] is not None and sub["to"] <= sub["from"]


def allowance_buckets(subscriptions: list[dict], cycle: str, bill_cycle_day: int,
                      timezone: str) -> list[UnitBucket]:
    """The allowance buckets the scripts grant an account for ``cycle`` (``grant_cycle`` of
    _lib.lua, whole and unused): one per allowance of each subscription active on a day of
    the cycle, id = source as ``allowance_id`` makes it, valid over the cycle narrowed to the
    subscription's dates. ``subscriptions`` as in AccountFacts. A bucket the account already
    holds under the same id is what online usage has left of it."""
    first, after = (d.isoformat() for d in cycle_dates(cycle, bill_cycle_day))
    cs, ce = cycle_bounds(cycle, bill_cycle_day, timezone)
    out = []
    for si, s in enumerate(subscriptions, start=1):
        if _empty(s) or not (s["from"] < after and (s["to"] is None or s["to"] > first)):
            continue
        earlier = [x for x in subscriptions[: si - 1] if x["offer"] == s["offer"]]
        suffix = ""
        if any(x["from"] == s["from"] for x in earlier):
            suffix = f"@{s['from']}#{si}"
        elif earlier:
            suffix = f"@{s['from']}"
        vf = max(cs, s["from_utc"])
        vt = ce if s["to_utc"] is None else min(ce, s["to_utc"])
        for ai, al in enumerate(s["allow"], start=1):
            bid = f"allowance:{s['offer']}/{al['name']}:{cycle}{suffix}"
            dest = None if al["dest"] is None else tuple(al["dest"])
            out.append(UnitBucket(bid, al["service"], al["units"], 0, vf, vt, si * 1000 + ai,
                                  dest, bid))
    return out


# --- decoding --------------------------------------------------------------------------------

def _list(value) -> list:
    return value if isinstance(value, list) else []  # cjson writes an empty list as {}


def _dest(value) -> list | None:
    """A stored destination list: absent = any destination; an empty one (written by cjson
    as {}) covers none, as `dest_ok` of _lib.lua reads it."""
    return None if value is None else _list(value)


def _subscription(s: dict) -> dict:
    return {
        "offer": s["offer"],
        "from": s["from"],
        "to": s.get("to"),
        "from_utc": int(s["from_utc"]),
        "to_utc": int(s["to_utc"]) if s.get("to_utc") is not None else None,
        "base": bool(s.get("base")),
        "allow": [{"name": al["name"], "service": al["service"], "units": int(al["units"]),
                   "dest": _dest(al.get("dest"))}
                  for al in _list(s.get("allow"))],
    }


def _unit_buckets(flat) -> tuple[UnitBucket, ...]:
    out = []
    for bid, raw in pairs(flat).items():
        d = json.loads(raw)
        if d.get("kind") != "units":
            continue
        dest = _dest(d.get("dest"))
        out.append(UnitBucket(
            id=bid, service=d.get("service"), remaining=int(d["remaining"]),
            reserved=int(d.get("reserved", 0)), valid_from=int(d["valid_from"]),
            valid_to=int(d["valid_to"]) if "valid_to" in d else None,
            priority=int(d["priority"]), dest=None if dest is None else tuple(dest),
            source=d["source"]))
    return tuple(consumption_order(out))


def _facts(acct: dict, buckets, counters) -> AccountFacts:
    return AccountFacts(
        **account_scalars(acct),
        subscriptions=[_subscription(s) for s in stored_subscriptions(acct)],
        buckets=_unit_buckets(buckets),
        counters={k: int(v) for k, v in sorted(pairs(counters).items())},
    )


# --- reading ---------------------------------------------------------------------------------

def _read_batch(store, account_ids: list[str]) -> dict[str, AccountFacts]:
    """Facts of the accounts among ``account_ids`` that exist (their lookup key names a claim
    whose create wrote the account), by id: two round trips."""
    r = store.r
    claims = []
    for account_id, raw in zip(account_ids, get_many(r, [lookup_key(i) for i in account_ids]),
                               strict=True):
        if raw is not None:
            claims.append(parse_lookup(account_id, text(raw)))
    script = store.scripts.facts
    for attempt in (1, 2):
        pipe = r.pipeline(transaction=False)
        for c in claims:
            k = c.keys
            pipe.execute_command("EVALSHA", script.sha, 3, k.account, k.buckets, k.counters)
        replies = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(x, NoScriptError) for x in replies):
            script.load(r)  # a restarted or flushed server (every primary of a cluster)
            continue
        break
    out = {}
    for c, reply in zip(claims, replies, strict=True):
        if isinstance(reply, Exception):
            raise reply
        acct = pairs(reply[0])
        if acct.get("claim") == c.token:  # else a claim whose create never wrote
            out[c.keys.account_id] = _facts(acct, reply[1], reply[2])
    return out


def _check_batch(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 0 < batch <= 10_000:
        raise ValueError(f"batch: expected 1..10000 accounts, got {batch!r}")
    return batch


def account_ids(store) -> list[str]:
    """Every account id that has a lookup key, sorted (a claim being created is listed; its
    facts are not, until its create wrote the account)."""
    n = len(_LOOKUP_PREFIX)
    return sorted({text(k)[n:] for k in store.r.scan_iter(match=_LOOKUP_PREFIX + "*",
                                                          count=1000)})


def snapshot(store, *, batch: int = 500) -> Iterator[AccountFacts]:
    """The facts of every account, by id, read ``batch`` accounts per two round trips."""
    _check_batch(batch)
    ids = account_ids(store)
    for i in range(0, len(ids), batch):
        chunk = ids[i : i + batch]
        got = _read_batch(store, chunk)
        for account_id in chunk:
            if account_id in got:
                yield got[account_id]


def facts_of(store, account_ids: Iterable[str], batch: int = 500) -> list[AccountFacts]:
    """The facts of the given accounts, in the order given; UnknownAccount (field
    ``account_ids``) naming the first that is not an account, before anything is returned."""
    _check_batch(batch)
    ids = [check_account_id(i, "account_ids") for i in account_ids]
    out: dict[str, AccountFacts] = {}
    for i in range(0, len(ids), batch):
        chunk = [x for x in dict.fromkeys(ids[i : i + batch]) if x not in out]
        got = _read_batch(store, chunk)
        for account_id in chunk:
            if account_id not in got:
                raise UnknownAccount("account_ids", f"no account {account_id!r}")
        out.update(got)
    return [out[i] for i in ids]


__all__ = [
    "AccountFacts", "UnitBucket", "account_ids", "allowance_buckets", "consumption_key",
    "consumption_order", "facts_of", "snapshot", "unit_candidates",
]
