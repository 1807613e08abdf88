"""Ending subscriptions: `AccountStore.unsubscribe` (a mixin of the store, which is long enough).

billing.md: a subscription is active from its `from` date (inclusive) to its `to` date
(exclusive), local dates of the catalog timezone. Unsubscribing on a date sets `to` to that
date; on the first day (or before it) the subscription becomes empty (to = from): active on
no day, no fee, no allowance, conflicting with nothing. A base-offer switch on day D is
``unsubscribe(old, on_date=D)`` then ``subscribe(new, from_date=D)``.
"""

from __future__ import annotations

from datetime import date

from accounts.model import OpResult
from accounts.validation import check_iso_date, check_text
from rating.cycles import local_midnight_utc


class SubscriptionVerbs:
    """The unsubscribe verb of AccountStore (uses its `_call` and `catalog`)."""

    def unsubscribe(self, account_id: str, offer: str, *, op_id: str, on_date: str,
                    ) -> OpResult:
        """End every subscription of the account to ``offer`` that is active on local date
        ``on_date`` or starts on or after it: it ends on ``on_date`` (exclusive), or on its own
        first day when that is later (empty). Its allowance buckets of the current cycle that
        were already granted are valid until the new end at the latest; gift buckets are never
        touched. One atomic script, idempotent on ``op_id``, ledger entry ``unsubscribe``.
        ``detail["ended"]``: [{offer, from, to, was?}] (``was``: the previous end, absent when
        open). No such subscription: InvalidState naming ``offer``; a malformed date:
        AccountError naming ``on_date``; any account status is accepted."""
        check_text(offer, "offer")
        on = check_iso_date(on_date, "on_date")
        on_utc = local_midnight_utc(date.fromisoformat(on), self.catalog.timezone)
        params = {"offer": offer, "on": on, "on_utc": str(on_utc)}
        return self._call("unsubscribe", account_id, op_id, params, [offer, on])
