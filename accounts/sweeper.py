"""The reservation sweeper: releases reservations not renewed within their validity + grace.

Candidates come from the expiry index (a sorted set); the release script re-checks the
reservation's own expires_at inside Redis, so several sweepers may run at once.
"""

from __future__ import annotations

from accounts.errors import UnknownAccount
from accounts.keys import EXPIRY_INDEX, split_expiry_member
from accounts.model import text


def sweep_expired(store, now: int | None = None, limit: int = 1000) -> int:
    """Release up to ``limit`` reservations whose ``expires_at + grace_s <= now``; returns how
    many this call released (a reservation released by a racing sweeper is not counted)."""
    now = store.now() if now is None else int(now)
    r = store.r
    due = r.zrangebyscore(
        EXPIRY_INDEX, "-inf", now - store.grace_s, start=0, num=limit, withscores=True
    )
    released = 0
    for raw_member, score in due:
        member = text(raw_member)
        account_id, session = split_expiry_member(member)
        try:
            res = store.release_expired(account_id, session, expires_at=int(score), now=now)
        except UnknownAccount:
            r.zrem(EXPIRY_INDEX, member)
            continue
        if res.code == "not_expired":
            # renewed since it was indexed: move the entry to its real expiry (never earlier)
            r.zadd(EXPIRY_INDEX, {member: res.detail["expires_at"]}, gt=True)
            continue
        if res.applied and res.detail.get("found"):
            released += 1
        # drop the entry unless a new reservation of the session re-indexed it meanwhile
        if r.zscore(EXPIRY_INDEX, member) == score:
            r.zrem(EXPIRY_INDEX, member)
    return released
