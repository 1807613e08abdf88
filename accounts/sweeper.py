"""The reservation sweeper: releases reservations not renewed within their validity + grace.

Candidates come from the expiry index (a sorted set); the release script re-checks the
reservation's own expires_at inside Redis, so several sweepers may run at once. Each release
this sweeper made publishes an `EXPIRED` event (`accounts.events`) naming the session.
"""

from __future__ import annotations

import threading
import time

from accounts import events
from accounts.errors import UnknownAccount
from accounts.keys import (
    EXPIRY_INDEX,
    RESERVATIONS_PATTERN,
    account_of_reservations_key,
    expiry_member,
    split_expiry_member,
)
from accounts.model import pairs, reservation_from_json, text
from accounts.validation import check_grace


class SweeperStats:
    """What a sweeper released, for the node's `/metrics` (`ccs_sweeper_released_total`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.released = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.released += n


def _released(store, account_id: str, session: str, now: int, stats) -> None:
    """One reservation this sweeper released: the EXPIRED event and the count."""
    events.publish(store.r, "EXPIRED", account_id, now, {"session": session})
    if stats is not None:
        stats.add(1)


def sweep_expired(store, now: int | None = None, limit: int = 1000, stats=None) -> int:
    """Release up to ``limit`` reservations whose ``expires_at + grace_s <= now``; returns how
    many this call released (a reservation released by a racing sweeper is not counted) and
    adds them to ``stats`` (a SweeperStats)."""
    grace_s = check_grace(store.grace_s)  # a negative grace would release live reservations
    now = store.now() if now is None else int(now)
    r = store.r
    due = r.zrangebyscore(
        EXPIRY_INDEX, "-inf", now - grace_s, start=0, num=limit, withscores=True
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
            _released(store, account_id, session, now, stats)
        # drop the entry unless a new reservation of the session re-indexed it meanwhile
        if r.zscore(EXPIRY_INDEX, member) == score:
            r.zrem(EXPIRY_INDEX, member)
    return released


def sweep_unindexed(store, now: int | None = None, scan_count: int = 500, stats=None) -> int:
    """The slow path: read every account's reservations hash (SCAN), release those expired
    past the grace period whether indexed or not, and index the live ones the index lacks.

    Only a crash between a reserve's script and its index write (or a lost index) needs
    this; run it rarely (e.g. hourly). Safe beside ``sweep_expired`` and other sweepers: the
    release re-checks inside Redis under the same op id as the fast path would use. Returns
    how many reservations this call released."""
    grace_s = check_grace(store.grace_s)
    now = store.now() if now is None else int(now)
    r = store.r
    released = 0
    for raw_key in r.scan_iter(match=RESERVATIONS_PATTERN, count=scan_count, _type="hash"):
        key = text(raw_key)
        account_id = account_of_reservations_key(key)
        if account_id is None:
            continue
        try:
            if store.account_keys(account_id).reservations != key:
                continue  # an op key or another hash that only looks like one
        except UnknownAccount:
            continue
        for session, raw in pairs(r.hgetall(key)).items():
            expires_at = reservation_from_json(session, raw).expires_at
            member = expiry_member(account_id, session)
            if expires_at + grace_s > now:
                r.zadd(EXPIRY_INDEX, {member: expires_at}, nx=True)
                continue
            res = store.release_expired(account_id, session, expires_at=expires_at, now=now)
            if res.applied and res.detail.get("found"):
                released += 1
                _released(store, account_id, session, now, stats)
    return released


def run_sweeper(store, stop, *, interval_s: float = 1.0, slow_every_s: float = 3600.0,
                on_error=None, stats=None) -> None:
    """Sweep until the `stop` event is set: `sweep_expired` every `interval_s`, and the slow
    `sweep_unindexed` every `slow_every_s` (and once at start). Run it in a thread of every
    node: sweepers on several nodes never release one reservation twice. A failed round
    (Redis away, say) is passed to `on_error` and retried at the next tick; a bad grace is
    refused before the first round. ``stats`` (a SweeperStats) counts the releases."""
    check_grace(store.grace_s)
    next_slow = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_slow:
                sweep_unindexed(store, stats=stats)
                next_slow = time.monotonic() + slow_every_s
            while sweep_expired(store, stats=stats) and not stop.is_set():
                pass  # a full batch may leave more due: keep going before sleeping
        except Exception as exc:  # noqa: BLE001 - the loop must outlive a failed round
            if on_error is not None:
                on_error(exc)
        stop.wait(interval_s)
