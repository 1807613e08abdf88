"""The online verbs of the store: one `online.lua` call per credit-control request, and the
rated records the bill run reads back (a sorted set per account, scored by session start).

Keys of a session live in its account's hash-tag slot, so one script settles the request on
one Redis Cluster slot; the expiry index of reservations is updated in the same pipeline.
"""

from __future__ import annotations

import json

from accounts import events
from accounts.errors import AccountError, InvalidAmount, UnknownAccount
from accounts.keys import EXPIRY_INDEX, AccountKeys, expiry_member
from accounts.model import text

SESSION_TTL_S = 86400  # a session's state outlives its last request by a day (retransmissions)


def session_key(keys: AccountKeys, session_id: str) -> str:
    return f"{keys.base}:sess:{session_id}"


def records_key(keys: AccountKeys) -> str:  # sorted set: record JSON scored by its start
    return f"{keys.base}:rec"


def finals_key(keys: AccountKeys) -> str:  # set: sessions whose last grant was final
    return f"{keys.base}:fin"


def reservation_field(session_id: str, rating_group: int) -> str:
    return f"{session_id}/{rating_group}"


def queue_index(pipe, account_id: str, index) -> None:
    """Queue the expiry-index updates of a request after its script, on a pipeline (sync or
    asyncio): (reservation field, expires_at) added, (field, None) dropped."""
    for field, expires_at in index:
        member = expiry_member(account_id, field)
        if expires_at is None:
            pipe.zrem(EXPIRY_INDEX, member)
        else:  # GT: an entry only moves later; the sweeper re-checks in Lua
            pipe.zadd(EXPIRY_INDEX, {member: expires_at}, gt=True)


class OnlineStore:
    """`online.lua` over an AccountStore's connection, scripts and account look-ups."""

    def __init__(self, store):
        self.store = store
        self.r = store.r

    def keys(self, account_id: str) -> tuple[AccountKeys, int]:
        return self.store._lookup(account_id)

    def call(self, account_id: str, session_id: str, request_number: int, params: dict,
             *, now: int, index: list[tuple[str, int | None]] = ()) -> dict:
        """Run one request; `index` lists (reservation field, expires_at or None to drop)
        for the expiry index. Returns the script's answer (a dict with `code`)."""
        params = dict(params, ttl=str(SESSION_TTL_S), done_ttl=str(SESSION_TTL_S))
        return self._run("online", account_id, session_id, request_number, params, now, index)

    def _run(self, verb, account_id, session_id, request_number, params, now, index=()):
        """Call `verb` with the account's cached lookup claim; a stale one (the account was
        re-created since) is read again and the call retried once (the refused call wrote
        nothing)."""
        for retry in (False, True):
            cached = account_id in self.store._meta
            script, script_keys, argv = self.prepare(verb, account_id, session_id,
                                                     request_number, params, now)
            if not index:
                reply = script(self.r, script_keys, argv)
            else:
                pipe = self.r.pipeline(transaction=False)
                script(pipe, script_keys, argv)
                queue_index(pipe, account_id, index)
                reply = self.store.scripts.execute(pipe, self.r)[0]
            answer = self.answer(account_id, reply, final=retry or not cached)
            if answer is not None:
                return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def prepare(self, verb, account_id, session_id, request_number, params, now):
        """(script, keys, argv) of one `verb` call with the account's cached lookup claim
        (read once when not cached). Shared by `_run` and asynchronous callers."""
        claim = self.store._claim(account_id, "subscriber")
        keys = claim.keys
        p = dict(params, rec=records_key(keys), fin=finals_key(keys))
        argv = [f"{session_id}/{request_number}", "",
                self.store._context(claim.bill_cycle_day, now, claim.token),
                json.dumps(p, separators=(",", ":"))]
        script_keys = keys.script_keys("-")[:5] + [session_key(keys, session_id)] + \
            keys.parent_keys()
        return getattr(self.store.scripts, verb), script_keys, argv

    def answer(self, account_id: str, reply, *, final: bool) -> dict | None:
        """The script's answer; None when the cached claim was stale (dropped: call again),
        UnknownAccount when it was not cached (`final`), AccountError on a refusal."""
        answer = json.loads(text(reply[0]))
        err = answer.get("error")
        if err in ("stale_meta", "unknown"):
            self.store._meta.pop(account_id, None)
            if final:
                raise UnknownAccount("subscriber", f"no account {account_id!r}")
            return None
        if err is not None:
            cls = InvalidAmount if err == "amount" else AccountError
            raise cls(answer.get("field", "account_id"), f"{account_id}: {answer['message']}")
        return answer

    def undo_event(self, account_id: str, session_id: str, request_number: int,
                   rating_group: int, *, now: int) -> dict:
        """Undo the direct debit of `session_id`'s rating group (undo_event.lua)."""
        params = {"sid": session_id, "req": str(request_number), "rg": str(rating_group),
                  "ttl": str(SESSION_TTL_S)}
        return self._run("undo_event", account_id, session_id, request_number, params, now)

    def account_facts(self, account_id: str) -> dict:
        """What the node prices a new session with: status, subscriptions and their sha1."""
        keys, bcd = self.keys(account_id)
        status, subs = self.r.hmget(keys.account, "status", "subs")
        if status is None:
            raise UnknownAccount("subscriber", f"no account {account_id!r}")
        return {"status": text(status), "subs": text(subs) if subs is not None else "[]",
                "bcd": bcd}

    def open_sessions_with_final_grant(self, account_id: str) -> list[str]:
        keys, _ = self.keys(account_id)
        return sorted(text(s) for s in self.r.smembers(finals_key(keys)))

    def records(self, account_id: str, start: int, end: int) -> list[dict]:
        """The rated records of sessions starting in [start, end) (UTC s), by start, then
        cdr_id: what the bill run sums for the account's cycle."""
        keys, _ = self.keys(account_id)
        raw = self.r.zrangebyscore(records_key(keys), start, f"({end}")
        out = [json.loads(text(x)) for x in raw]
        out.sort(key=lambda rec: (int(rec["start"]), rec["cdr_id"]))
        return out


def notify_reauthorize(store, account_id: str, now: int) -> None:
    """After a top-up: the account's sessions whose last grant was final should ask again
    (the network element would otherwise cut a call the money now covers)."""
    keys, _ = store._lookup(account_id)
    sessions = sorted(text(s) for s in store.r.smembers(finals_key(keys)))
    if sessions:
        events.publish(store.r, "REAUTHORIZE", account_id, now, {"sessions": sessions})
