"""The store's session verbs (reserve, commit, release, debit): a mixin of AccountStore.

These are the single-step verbs of a reservation that `ccs accounts` and the benchmarks use;
the online node prices and moves a whole credit-control request in one script instead
(`accounts/online.py`, `accounts/lua/online.lua`).
"""

from __future__ import annotations

import json

from accounts.errors import AccountError
from accounts.model import OpResult
from accounts.validation import (
    check_amount,
    check_positive_int,
    check_text,
    counters_arg,
)

MAX_VALIDITY_S = 30 * 86400  # a reservation's validity: 1 s .. 30 days


class SessionVerbs:
    """Reserve, commit, release and debit (uses the store's `_call`, `now` and `grace_s`)."""

    def reserve(
        self,
        account_id,
        session: str,
        *,
        op_id: str,
        money: int,
        service: str | None = None,
        destination: str | None = None,
        units: int = 0,
        expected_covered: int | None = None,
        validity_s: int = 300,
    ) -> OpResult:
        check_text(session, "session", limit=512)
        check_amount(money, "money")
        check_amount(units, "units")
        if expected_covered is not None:
            check_amount(expected_covered, "expected_covered")
        check_positive_int(validity_s, "validity_s")
        if validity_s > MAX_VALIDITY_S:
            raise AccountError("validity_s", f"at most {MAX_VALIDITY_S} s (30 days), got {validity_s}")
        check_text(service, "service", optional=True)
        check_text(destination, "destination", optional=True)
        now = self.now()
        params = {
            "session": session,
            "money": str(money),
            "units": str(units),
            "expires_at": str(now + validity_s),
        }
        for k, v in (("service", service), ("dest", destination)):
            if v is not None:
                params[k] = v
        if expected_covered is not None:
            params["expected"] = str(expected_covered)
        content = [session, money, units, service, destination, expected_covered, validity_s]
        return self._call(
            "reserve",
            account_id,
            op_id,
            params,
            content,
            now=now,
            index=("add", session, now + validity_s),
        )

    def commit(
        self,
        account_id,
        session: str,
        *,
        op_id: str,
        charge: int,
        units: int = 0,
        service: str | None = None,
        destination: str | None = None,
        counters: dict[str, int] | None = None,
        release: bool = False,
        record: dict | None = None,
    ) -> OpResult:
        check_text(session, "session", limit=512)
        check_amount(charge, "charge")
        check_amount(units, "units")
        check_text(service, "service", optional=True)
        check_text(destination, "destination", optional=True)
        ctr = counters_arg(counters)
        params = {
            "session": session,
            "charge": str(charge),
            "units": str(units),
            "counters": ctr,
            "release": bool(release),
        }
        for k, v in (("service", service), ("dest", destination)):
            if v is not None:
                params[k] = v
        if record is not None:
            params["record"] = json.dumps(record, sort_keys=True)
        content = [session, charge, units, service, destination, ctr, bool(release), record]
        index = ("rem", session, 0) if release else None
        return self._call("commit", account_id, op_id, params, content, index=index)

    def release(self, account_id, session: str, *, op_id: str, reason: str = "release") -> OpResult:
        check_text(session, "session", limit=512)
        params = {"session": session, "reason": reason, "expired_only": False}
        return self._call(
            "release", account_id, op_id, params, [session, reason], index=("rem", session, 0)
        )

    def release_expired(
        self, account_id: str, session: str, *, expires_at: int, now: int | None = None
    ) -> OpResult:
        """Release ``session`` only if its reservation expired more than grace_s ago; the
        script re-checks, so racing sweepers and a renewal in between are harmless."""
        op_id = f"sweep:{session}:{expires_at}"
        params = {
            "session": session,
            "reason": "expired",
            "expired_only": True,
            "grace": str(self.grace_s),
        }
        return self._call("release", account_id, op_id, params, [session, "expired"], now=now)

    def debit(
        self,
        account_id,
        *,
        op_id: str,
        charge: int,
        units: int = 0,
        service=None,
        destination=None,
        counters=None,
        expected_covered: int | None = None,
        record: dict | None = None,
    ) -> OpResult:
        check_amount(charge, "charge")
        check_amount(units, "units")
        if expected_covered is not None:
            check_amount(expected_covered, "expected_covered")
        check_text(service, "service", optional=True)
        check_text(destination, "destination", optional=True)
        ctr = counters_arg(counters)
        params = {"charge": str(charge), "units": str(units), "counters": ctr}
        for k, v in (("service", service), ("dest", destination)):
            if v is not None:
                params[k] = v
        if expected_covered is not None:
            params["expected"] = str(expected_covered)
        if record is not None:
            params["record"] = json.dumps(record, sort_keys=True)
        content = [charge, units, service, destination, ctr, expected_covered, record]
        return self._call("debit", account_id, op_id, params, content)
