"""The ledger audit: replays every account's ledger from its checkpoint (or from its creation
entry when it has none) and compares.

Checks balance, reserved, status, credit limit, each bucket's remaining and reserved, and the
counters against the stored state, plus that reservations add up to what is held (for a
parent: its own sessions' money and what its children's sessions hold on it), and that the
global index keys and the accounts agree: every account is named by its lookup key and its
MSISDN keys, every lookup or MSISDN key names an account its claim wrote.

A checkpoint (``<base>:ckpt``: ``id``, ``state`` JSON) is written by the ledger archive
(billing/archive.py, accounts/lua/trim_ledger.lua) when it moves the entries up to ``id`` into
the SQL database: ``state`` is what the replay of those entries gave, and the replay goes on
from it with the entries after ``id``. Whether the archive itself replays to the checkpoint
is the archive's check, passed in as ``history`` (accounts imports nothing of billing).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import redis

from accounts.cluster import get_many
from accounts.keys import (
    ACCOUNTS_PATTERN,
    AccountKeys,
    index_names,
    keys_of_account_hash,
    lookup_key,
    msisdn_key,
    parse_lookup,
    parse_msisdn,
)
from accounts.model import account_from_hashes, ledger_entry, pairs, reservation_from_json, text


@dataclass
class AuditFinding:
    account: str
    field: str  # "balance", "bucket:<id>.remaining", "counter:<key>", "ledger", ...
    stored: object
    replayed: object


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ``MS-SEQ`` as the pair of numbers streams order entries by (as text
    "9-10" would sort before "9-9")."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def replay(entries: list[dict], start: dict | None = None) -> dict | None:
    """The state the ledger entries (``ledger_entry`` dicts, oldest first) leave, from
    ``start`` (a checkpoint's state, not modified) or from nothing: {balance, reserved,
    status, credit_limit, buckets {id: {remaining, reserved}}, counters}. None when, from
    nothing, the first entry is not a creation."""
    state = copy.deepcopy(start)
    for e in entries:
        if "create" in e:
            c = e["create"]
            state = {
                "balance": c["balance"],
                "reserved": c["reserved"],
                "status": c["status"],
                "credit_limit": c["credit_limit"],
                "buckets": {},
                "counters": {},
            }
        if state is None:
            return None
        state["balance"] += e.get("balance", 0)
        state["reserved"] += e.get("reserved", 0)
        if "status" in e:
            state["status"] = e["status"]
        if "credit_limit" in e:
            state["credit_limit"] = e["credit_limit"]
        for bid, b in e.get("new_buckets", {}).items():
            state["buckets"][bid] = {"remaining": b["remaining"], "reserved": b.get("reserved", 0)}
        for bid, d in e.get("buckets", {}).items():
            b = state["buckets"].setdefault(bid, {"remaining": 0, "reserved": 0})
            b["remaining"] += d.get("remaining", 0)
            b["reserved"] += d.get("reserved", 0)
        for k, v in e.get("counters", {}).items():
            state["counters"][k] = state["counters"].get(k, 0) + v
    return state


_STATE_KEYS = frozenset({"balance", "reserved", "status", "credit_limit", "buckets", "counters"})


def read_checkpoint(flat) -> tuple[str | None, dict | None]:
    """A checkpoint hash (HGETALL reply) -> (its entry id, its state); (None, None) when
    there is none; ValueError when it cannot be read."""
    ck = pairs(flat)
    if not ck:
        return None, None
    try:
        entry_order(ck["id"])
        state = json.loads(ck["state"])
        if not isinstance(state, dict) or not _STATE_KEYS <= state.keys():
            raise ValueError(f"state is not an object with {', '.join(sorted(_STATE_KEYS))}")
        return ck["id"], state
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unreadable checkpoint: {exc}") from None


def redis_account_ids(r: redis.Redis) -> list[str]:
    """Every account id with a lookup key, sorted."""
    return sorted(text(k)[len("acct:") :] for k in r.scan_iter(match="acct:*", count=1000))


def _index_findings(r: redis.Redis) -> list[AuditFinding]:
    """What the per-account audit cannot see: an account hash that no lookup key names, and an
    MSISDN key whose claim wrote no account or whose account does not list it."""
    out = []
    for raw_key in r.scan_iter(match=ACCOUNTS_PATTERN, count=1000, _type="hash"):
        keys = keys_of_account_hash(text(raw_key))
        if keys is None:
            continue
        raw = r.get(lookup_key(keys.account_id))
        named = raw is not None and parse_lookup(keys.account_id, text(raw)).keys.base == keys.base
        if not named:
            out.append(AuditFinding(keys.account_id, "lookup", raw and text(raw),
                                    "account without its lookup key"))
    for raw_key in r.scan_iter(match="msisdn:*", count=1000):
        key, raw = text(raw_key), r.get(raw_key)
        if raw is None:
            continue
        keys, token = parse_msisdn(text(raw))
        acct = pairs(r.hgetall(keys.account))
        number = key[len("msisdn:"):]
        msisdns = [m for m in acct.get("msisdns", "").split(",") if m]
        if acct.get("claim") != token:
            out.append(AuditFinding(keys.account_id, key, text(raw), "no account written by this claim"))
        elif number not in index_names(keys.account_id, msisdns):
            out.append(AuditFinding(keys.account_id, key, text(raw), "not one of the account's MSISDNs"))
    return out


def audit_account(r: redis.Redis, account_id: str) -> list[AuditFinding]:
    raw = r.get(lookup_key(account_id))
    if raw is None:
        return [AuditFinding(account_id, "account", None, "no lookup key")]
    claim = parse_lookup(account_id, text(raw))
    keys = claim.keys
    # one MULTI: the state, the ledger and the children's reservations are read at the same
    # instant; the children set is read first and again inside (retried if it grew between)
    kids = sorted(text(k) for k in r.smembers(keys.kids))
    while True:
        pipe = r.pipeline(transaction=True)
        for key in (keys.account, keys.buckets, keys.reservations, keys.counters):
            pipe.hgetall(key)
        pipe.hgetall(keys.checkpoint)
        pipe.xrange(keys.ledger, "-", "+")
        pipe.smembers(keys.kids)
        for kid in kids:
            pipe.hgetall(AccountKeys(kid, keys.root).reservations)
        acct, bk, rsv, ctr, ckpt, entries, now_kids, *kid_rsv = pipe.execute()
        if sorted(text(k) for k in now_kids) == kids:
            break
        kids = sorted(text(k) for k in now_kids)
    if not acct:
        return [AuditFinding(account_id, "account", None, "lookup key without account")]
    written_by = pairs(acct).get("claim")
    if written_by != claim.token:
        return [AuditFinding(account_id, "claim", written_by, claim.token)]
    stored = account_from_hashes(acct, bk, rsv, ctr)
    try:
        since, start = read_checkpoint(ckpt)
    except ValueError as exc:
        return [AuditFinding(account_id, "checkpoint", pairs(ckpt).get("id"), str(exc))]
    after = [ledger_entry(i, f) for i, f in entries]
    if since is not None:  # the trim removes what the checkpoint covers; skipped if not
        after = [e for e in after if entry_order(e["id"]) > entry_order(since)]
    replayed = replay(after, start)
    if replayed is None:
        return [AuditFinding(account_id, "ledger", len(entries), "no creation entry first")]
    out = []

    def check(field, s, p):
        if s != p:
            out.append(AuditFinding(account_id, field, s, p))

    check("balance", stored.balance, replayed["balance"])
    check("reserved", stored.reserved, replayed["reserved"])
    check("status", stored.status, replayed["status"])
    check("credit_limit", stored.credit_limit, replayed["credit_limit"])
    by_id = {b.id: b for b in stored.buckets}
    for bid in sorted(set(by_id) | set(replayed["buckets"])):
        s, p = by_id.get(bid), replayed["buckets"].get(bid)
        if s is None or p is None:
            check(f"bucket:{bid}", s and {"remaining": s.remaining, "reserved": s.reserved}, p)
            continue
        check(f"bucket:{bid}.remaining", s.remaining, p["remaining"])
        check(f"bucket:{bid}.reserved", s.reserved, p["reserved"])
    counters = {k: v for k, v in replayed["counters"].items() if v != 0}
    for k in sorted(set(stored.counters) | set(counters)):
        check(f"counter:{k}", stored.counters.get(k, 0), counters.get(k, 0))
    # invariants of the stored state itself: reservations add up to what is held
    lent = sum(
        reservation_from_json(session, raw).parent_money
        for flat in kid_rsv
        for session, raw in pairs(flat).items()
    )
    check("reservations.money", stored.reserved, sum(x.money for x in stored.reservations) + lent)
    for b in stored.buckets:
        held = sum(x.units.get(b.id, 0) for x in stored.reservations)
        check(f"reservations.units:{b.id}", b.reserved, held)
    # the account's MSISDN keys (and its id's, when the id reads as one) name it
    numbers = index_names(account_id, stored.msisdns)
    for n, raw in zip(numbers, get_many(r, [msisdn_key(n) for n in numbers]), strict=True):
        owner = None if raw is None else parse_msisdn(text(raw))
        if owner is None or owner[0].account_id != account_id or owner[1] != claim.token:
            check(f"msisdn:{n}", owner and owner[0].account_id, account_id)
    return out


def audit(r: redis.Redis, account_ids=None, *, history=None) -> list[AuditFinding]:
    """Findings for ``account_ids`` (default: every account); an empty list means clean.
    ``history(r, account_ids)``, when given, adds the findings of the archived part of the
    ledgers (billing.archive.history_check: the archive replays to each checkpoint)."""
    ids = redis_account_ids(r) if account_ids is None else list(account_ids)
    findings: list[AuditFinding] = []
    for account_id in ids:
        findings.extend(audit_account(r, account_id))
    if account_ids is None:
        findings.extend(_index_findings(r))
    if history is not None:
        findings.extend(history(r, None if account_ids is None else ids))
    return findings


__all__ = [
    "AuditFinding", "audit", "audit_account", "entry_order", "read_checkpoint",
    "redis_account_ids", "replay",
]
