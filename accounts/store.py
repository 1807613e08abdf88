"""AccountStore: the accounts API over Redis, one atomic Lua script per operation.

Validates in Python (clear errors naming the field), then runs the verb's script by SHA with
the account's keys; every verb is idempotent on its op id and appends its deltas to a ledger.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import date

import redis

from accounts import claims, events
from accounts.errors import (
    AccountError,
    AccountExists,
    CurrencyMismatch,
    InvalidAmount,
    InvalidState,
    OpIdConflict,
    UnknownAccount,
)
from accounts.keys import (
    EXPIRY_INDEX,
    AccountKeys,
    Claim,
    check_account_id,
    expiry_member,
    index_names,
    lookup_key,
    parse_lookup,
)
from accounts.model import (
    STATUSES,
    Account,
    OpResult,
    account_from_hashes,
    credit_limit_of,
    ledger_entry,
    pairs,
    reservation_from_json,
    text,
)
from accounts.online import notify_reauthorize
from accounts.scripts import registry
from accounts.session_verbs import SessionVerbs
from accounts.subscriptions import SubscriptionVerbs
from accounts.validation import (
    LAST_ENTRY_ID,
    check_amount,
    check_bill_cycle_day,
    check_ledger_after,
    check_ledger_count,
    check_msisdns,
    check_op_id,
    check_subscription_dates,
    check_text,
    credit_limit_arg,
)
from rating.cycles import cycle_bounds, cycle_dates, cycle_of, local_date, local_midnight_utc

OP_TTL_S = 35 * 86400  # op ids are remembered this long (longer than any retry or redelivery)


class _StaleMeta(AccountError):
    """A script found another account than the cached lookup key named (re-created since)."""


_ERRORS = {
    "unknown": UnknownAccount,
    "exists": AccountExists,
    "opid_conflict": OpIdConflict,
    "invalid_state": InvalidState,
    "amount": InvalidAmount,
    "stale_meta": _StaleMeta,
}
_NUMERIC = {
    "covered", "granted_money", "available", "covered_units", "charged", "from_buckets",
    "released_money", "released_units", "balance", "expires_at", "from_parent",
}  # fmt: skip
# verbs that settle money on a child's parent too: they get the parent's keys (KEYS[7..10])
_FAMILY_VERBS = frozenset({"create", "reserve", "commit", "release", "debit"})


class AccountStore(SubscriptionVerbs, SessionVerbs):
    """Accounts and balances in Redis; see docs/accounts.md for the key layout."""

    def __init__(self, r: redis.Redis, catalog, *, clock=time.time, grace_s: int = 30):
        self.r = r
        self.catalog = catalog
        self.clock = clock
        self.grace_s = grace_s
        self.scripts = registry()
        # account id -> its lookup key's claim (keys, bill-cycle day, token), cached per
        # process; every script checks the token against the account's own (stale_meta)
        self._meta: dict[str, Claim] = {}
        self._cycle_cache: dict[tuple[int, int], dict] = {}

    # --- plumbing -----------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def _claim(self, account_id: str, field: str = "account_id") -> Claim:
        """The account's lookup key as this process last read it (cached: a script or a read
        that finds another account drops it, see ``_call`` and ``_read``)."""
        claim = self._meta.get(account_id)
        if claim is None:
            check_account_id(account_id, field)
            raw = self.r.get(lookup_key(account_id))
            if raw is None:
                raise UnknownAccount(field, f"no account {account_id!r}")
            claim = self._meta[account_id] = parse_lookup(account_id, text(raw))
        return claim

    def _lookup(self, account_id: str, field: str = "account_id") -> tuple[AccountKeys, int]:
        """(keys, bill-cycle day) of the account, from the cached lookup key."""
        claim = self._claim(account_id, field)
        return claim.keys, claim.bill_cycle_day

    def _read(self, account_id: str, queue) -> list:
        """Run ``queue(pipe, keys)`` (reads, the account hash first) in one MULTI and return
        the replies. When the account hash is not the one the cached lookup key names (the
        account was re-created since), the lookup key is read again and the reads retried
        once; UnknownAccount when there is no account (or only a claim whose create never
        wrote it)."""
        for retry in (False, True):
            cached = account_id in self._meta
            claim = self._claim(account_id)
            pipe = self.r.pipeline(transaction=True)
            queue(pipe, claim.keys)
            out = pipe.execute()
            if pairs(out[0]).get("claim") == claim.token:
                return out
            self._meta.pop(account_id, None)
            if retry or not cached:
                break
        raise UnknownAccount("account_id", f"no account {account_id!r}")

    def account_keys(self, account_id: str) -> AccountKeys:
        """The Redis keys of an account (UnknownAccount when there is none)."""
        return self._lookup(account_id)[0]

    def _context(self, bcd: int, now: int, claim: str = "") -> str:
        # the local date and the cycle change only at local midnight, always a whole
        # minute: computed once per minute and bill-cycle day (the zone arithmetic is slow)
        key = (bcd, now // 60)
        fixed = self._cycle_cache.get(key)
        if fixed is None:
            tz = self.catalog.timezone
            cycle = cycle_of(now, bcd, tz)
            cs, ce = cycle_bounds(cycle, bcd, tz)
            csd, ced = cycle_dates(cycle, bcd)
            fixed = {"today": local_date(now, tz).isoformat(), "cycle": cycle, "cs": str(cs),
                     "ce": str(ce), "csd": csd.isoformat(), "ced": ced.isoformat()}
            if len(self._cycle_cache) > 1024:
                self._cycle_cache.clear()
            self._cycle_cache[key] = fixed
        return json.dumps({"now": str(now), **fixed, "ttl": str(OP_TTL_S), "claim": claim})

    @staticmethod
    def _fingerprint(verb: str, account_id: str, content) -> str:
        blob = json.dumps([verb, account_id, content], sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:24]

    def _args(self, verb, account_id, op_id, params, content, claim: Claim, now):
        check_op_id(op_id)
        return [
            op_id,
            self._fingerprint(verb, account_id, content),
            self._context(claim.bill_cycle_day, now, claim.token),
            json.dumps(params),
        ]

    def _call(
        self,
        verb: str,
        account_id: str,
        op_id: str,
        params: dict,
        content,
        *,
        now: int | None = None,
        index: tuple[str, str, int] | None = None,
    ) -> OpResult:
        """Run ``verb``; ``index`` = ("add"|"rem", session, score) also maintains the expiry
        index in the same round trip (a pipeline); see ``_settle_index`` for "add". A cached
        lookup key that the script finds stale (or whose account it does not find) is read
        again and the call retried once: the refused call wrote nothing."""
        now = self.now() if now is None else now
        for retry in (False, True):
            cached = account_id in self._meta
            try:
                claim = self._claim(account_id)
                return self._run(verb, account_id, op_id, params, content, claim, now, index)
            except (_StaleMeta, UnknownAccount) as exc:
                self._meta.pop(account_id, None)
                if retry or not cached:
                    if isinstance(exc, _StaleMeta):  # a lookup key whose create never wrote
                        raise UnknownAccount("account_id", f"no account {account_id!r}") from None
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, verb, account_id, op_id, params, content, claim: Claim, now, index):
        keys = claim.keys
        argv = self._args(verb, account_id, op_id, params, content, claim, now)
        script = getattr(self.scripts, verb)
        script_keys = keys.script_keys(op_id)
        if verb in _FAMILY_VERBS:
            script_keys += keys.parent_keys()
        if verb == "create":
            script_keys.append(keys.fence(claim.token))
        if index is None:
            return self._result(account_id, op_id, script(self.r, script_keys, argv))
        pipe = self.r.pipeline(transaction=False)
        script(pipe, script_keys, argv)
        member = expiry_member(account_id, index[1])
        if index[0] == "rem":
            pipe.zrem(EXPIRY_INDEX, member)
            try:
                return self._result(account_id, op_id, self.scripts.execute(pipe, self.r)[0])
            except AccountError:
                # a refused commit (e.g. an amount out of range) keeps its reservation: the
                # sweeper must still find it
                self._settle_index(keys, member, index[1], 0, None)
                raise
        # GT: a new entry is added, an existing one only ever moves later, never earlier
        pipe.zadd(EXPIRY_INDEX, {member: index[2]}, gt=True)
        try:
            result = self._result(account_id, op_id, self.scripts.execute(pipe, self.r)[0])
        except AccountError:
            self._settle_index(keys, member, index[1], index[2], None)
            raise
        self._settle_index(keys, member, index[1], index[2], result.account)
        return result

    def _settle_index(self, keys: AccountKeys, member: str, session: str, score: int, account):
        """Make the entry written with a reserve match the reservation: if it does not (a
        refusal, an error, a retried op id), remove it, read the reservation, re-index it at
        its real expiry if it exists. Remove-then-read keeps a racing successful reserve of
        the session indexed: its ZADD follows its script, which follows our read."""
        held = None
        if account is not None:
            held = next((x for x in account.reservations if x.session == session), None)
        if held is not None and held.expires_at == score:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(EXPIRY_INDEX, member)
        pipe.hget(keys.reservations, session)
        _, raw = self.scripts.execute(pipe, self.r)  # in order, on a cluster too
        if raw is not None:
            expires_at = reservation_from_json(session, text(raw)).expires_at
            self.r.zadd(EXPIRY_INDEX, {member: expires_at})

    @staticmethod
    def _result(account_id: str, op_id: str, reply) -> OpResult:
        answer = json.loads(text(reply[0]))
        if "error" in answer:
            cls = _ERRORS.get(answer["error"], AccountError)
            raise cls(answer.get("field", "account_id"), f"{account_id}: {answer['message']}")
        detail = {
            k: (int(v) if k in _NUMERIC and isinstance(v, str) else v)
            for k, v in answer.get("detail", {}).items()
        }
        if isinstance(detail.get("gifts"), dict):  # cjson writes an empty list as {}
            detail["gifts"] = []
        account = account_from_hashes(*reply[2:6])
        return OpResult(op_id, reply[1] == 1, answer["code"], account, detail)

    def _sub_params(self, offer_name, from_date, to_date, now: int) -> dict:
        offer = self.catalog.offers.get(offer_name) if isinstance(offer_name, str) else None
        if offer is None:
            raise InvalidState("offer", f"no offer {offer_name!r} in the catalog")
        tz = self.catalog.timezone
        start, end = check_subscription_dates(from_date, to_date, local_date(now, tz).isoformat())
        sub = {
            "offer": offer.name,
            "from": start,
            "base": offer.tariff is not None,
            "from_utc": str(local_midnight_utc(date.fromisoformat(start), tz)),
            "allow": [],
            "gifts": [],
            "topup": [],
        }
        if end is not None:
            sub["to"] = end
            sub["to_utc"] = str(local_midnight_utc(date.fromisoformat(end), tz))
        for al in offer.allowances:
            item = {"name": al.name, "service": al.service, "units": str(al.units)}
            if al.destinations is not None:
                item["dest"] = list(al.destinations)
            sub["allow"].append(item)
        for promo in offer.promotions:
            g = promo.gift
            gift = {"valid_days": str(g.valid_days)}
            if g.money is not None:
                gift["money"] = str(g.money)
            else:
                gift["service"] = g.service
                gift["units"] = str(g.units)
            if promo.on == "subscribe":
                sub["gifts"].append(gift)
            elif promo.on == "topup":
                sub["topup"].append({"min": str(promo.min_amount), "gift": gift})
        return sub

    # --- accounts -----------------------------------------------------------------------------

    def create_account(self, account_id: str, **options) -> Account:
        """`create` (same keyword parameters) returning only the account: the new one, or on
        a retried op id that account as it is now."""
        return self.create(account_id, **options).account

    def create(
        self,
        account_id: str,
        *,
        credit_limit: int | None = 0,
        currency: str | None = None,
        msisdns=(),
        bill_cycle_day: int = 1,
        parent: str | None = None,
        offers=(),
        op_id: str | None = None,
    ) -> OpResult:
        """Create an account with its MSISDNs and offers. On a retried ``op_id`` (default
        ``create:<id>``) nothing is written and ``applied`` is False: the create script's own
        answer, so a retry is told from a first call without a racy existence check. The id
        taken under another op id, or an MSISDN of another account: AccountExists."""
        check_account_id(account_id)
        cl = credit_limit_arg(credit_limit)
        if currency is not None and currency != self.catalog.currency:
            raise CurrencyMismatch(
                "currency", f"{currency!r}: accounts are kept in {self.catalog.currency}"
            )
        check_bill_cycle_day(bill_cycle_day)
        msisdns = check_msisdns(msisdns)  # E.164 digits (keys.msisdn_digits)
        root = account_id
        if parent is not None:
            if parent == account_id:
                raise AccountError("parent", "an account cannot be its own parent")
            # the family's slot is the root's tag, from the parent's lookup key as it is now
            self._meta.pop(parent, None)
            root = self._claim(parent, "parent").keys.root
        now = self.now()
        if isinstance(offers, str):
            offers = (offers,)
        subs = [self._sub_params(o, None, None, now) for o in offers]
        if sum(1 for s in subs if s["base"]) > 1:
            raise InvalidState("offers", "at most one base offer can be active")
        if len({s["offer"] for s in subs}) != len(subs):
            raise InvalidState("offers", "an offer is listed twice")
        op_id = op_id or f"create:{account_id}"
        check_text(op_id, "op_id")
        params = {
            "id": account_id,
            "currency": self.catalog.currency,
            "cl": cl,
            "bcd": str(bill_cycle_day),
            "msisdns": list(msisdns),
            "subs": subs,
        }
        if parent is not None:
            params["parent"] = parent
        content = [cl, bill_cycle_day, parent, list(msisdns), sorted(offers)]

        # The global index keys (other slots) are claims, taken before the account is written:
        # a taken id or MSISDN is refused first; a claim whose create never wrote its account
        # is taken over (fenced first, so that create can no longer write); this request's own
        # earlier claim (same op id, an interrupted call) is continued.
        self._meta.pop(account_id, None)
        token = secrets.token_hex(8)
        mine = Claim(AccountKeys(account_id, root, parent), bill_cycle_day, token, op_id)
        claim, taken = claims.take_id(self.r, self.scripts, mine)
        held = [(lookup_key(account_id), claim.value)] if taken else []
        try:
            claims.take_msisdns(self.r, self.scripts, claim, index_names(account_id, msisdns), held)
            return self._run("create", account_id, op_id, params, content, claim, now, None)
        except AccountError:
            # refused: the script wrote nothing; give back what this call claimed (only where
            # the key still holds this call's value). A lost connection keeps the claims: the
            # script may have run, and a retry (or another create) continues from them.
            claims.give_back(self.r, self.scripts, held)
            raise

    def get_account(self, account_id: str) -> Account:
        def queue(pipe, keys):
            for key in (keys.account, keys.buckets, keys.reservations, keys.counters):
                pipe.hgetall(key)

        return account_from_hashes(*self._read(account_id, queue))

    def family_available(self, account_id: str, now: int | None = None) -> int | None:
        """What a reserve or debit of the account may take now: its own available plus, for a
        child, what its parent lends (the parent's available, at least 0, when the parent is
        active); None = unlimited. Read at one instant (MULTI)."""
        now = self.now() if now is None else int(now)

        def queue(pipe, keys):
            family = [keys] + ([AccountKeys(keys.parent, keys.root)] if keys.parent else [])
            for k in family:
                pipe.hgetall(k.account)
                pipe.hgetall(k.buckets)

        flat = self._read(account_id, queue)
        own = account_from_hashes(flat[0], flat[1], {}, {}).available(now)
        if len(flat) < 4 or own is None or not flat[2]:
            return own
        parent = account_from_hashes(flat[2], flat[3], {}, {})
        if parent.status != "active":
            return own
        lend = parent.available(now)
        return None if lend is None else own + max(lend, 0)

    def resolve(self, subscriber: str) -> str:
        """An account id or an MSISDN (``+`` optional, keys.msisdn_digits) -> the account id;
        UnknownAccount when neither names an account that was written. One name never names
        two accounts (an id that reads as an MSISDN claims that MSISDN too); were it to, the
        id would win."""
        check_text(subscriber, "subscriber")
        owner = claims.written_owner(self.r, subscriber)
        if owner is None:
            raise UnknownAccount("subscriber", f"no account or MSISDN {subscriber!r}")
        return owner

    # --- money --------------------------------------------------------------------------------

    def topup(
        self, account_id, amount: int, *, op_id: str, currency: str | None = None
    ) -> OpResult:
        check_amount(amount, "amount", zero=False)
        if currency is not None and currency != self.catalog.currency:
            raise CurrencyMismatch(
                "currency", f"{currency!r}: the account is in {self.catalog.currency}"
            )
        result = self._call("topup", account_id, op_id, {"amount": str(amount)}, [amount])
        if result.applied:
            notify_reauthorize(self, account_id, self.now())
        return result

    def adjust(self, account_id, amount: int, *, op_id: str, reason: str = "") -> OpResult:
        check_amount(amount, "amount", negative=True, zero=False)
        params = {"amount": str(amount), "reason": reason}
        return self._call("adjust", account_id, op_id, params, [amount, reason])

    def refund(self, account_id, amount: int, *, op_id: str, reason: str = "") -> OpResult:
        check_amount(amount, "amount", zero=False)
        params = {"amount": str(amount), "reason": reason}
        return self._call("refund", account_id, op_id, params, [amount, reason])

    def set_status(self, account_id, status: str, *, op_id: str, reason: str = "") -> OpResult:
        if status not in STATUSES:
            raise AccountError("status", f"expected one of {', '.join(STATUSES)}, got {status!r}")
        params = {"status": status, "reason": reason}
        result = self._call("set_status", account_id, op_id, params, [status, reason])
        if result.applied:
            events.publish(self.r, "STATUS_CHANGED", account_id, self.now(),
                           {"status": status, "reason": reason})
        return result

    def change_payment_type(self, account_id, credit_limit: int | None, *, op_id: str) -> OpResult:
        cl = credit_limit_arg(credit_limit)
        result = self._call("change_payment_type", account_id, op_id, {"cl": cl}, [cl])
        if isinstance(result.detail.get("previous"), str):
            result.detail["previous"] = credit_limit_of(result.detail["previous"])
        return result

    def subscribe(
        self,
        account_id,
        offer: str,
        *,
        op_id: str,
        from_date: str | None = None,
        to_date: str | None = None,
    ) -> OpResult:
        sub = self._sub_params(offer, from_date, to_date, self.now())
        content = [offer, sub["from"], to_date]
        return self._call("subscribe", account_id, op_id, {"sub": sub}, content)

    # --- history ------------------------------------------------------------------------------

    def ledger(self, account_id, *, count: int = 100, after: str = "-") -> list[dict]:
        """Ledger entries oldest first, ``count`` at most, strictly after entry id ``after``."""
        check_ledger_count(count)
        check_ledger_after(after)
        keys, _ = self._lookup(account_id)
        if after == LAST_ENTRY_ID:  # nothing can follow it (and XRANGE cannot say so)
            return []
        start = "-" if after == "-" else f"({after}"
        return [ledger_entry(i, f) for i, f in self.r.xrange(keys.ledger, start, "+", count=count)]
