"""Account events for watchers: published on one Redis channel, so a watcher on any node sees
what happened on every node of the same Redis (or Redis Cluster: PUBLISH reaches every node).

Best effort by design (pub/sub keeps nothing): the money itself is in the ledger; an event is
a hint for a network element or a customer-care screen.
"""

from __future__ import annotations

import json
import logging

import redis

CHANNEL = "ccs:events"
KINDS = ("BALANCE_LOW", "BUNDLE_THRESHOLD", "BUNDLE_EXHAUSTED", "STATUS_CHANGED", "EXPIRED",
         "REAUTHORIZE")

log = logging.getLogger("ccs.events")


def publish(r, kind: str, account: str, at: int, detail: dict | None = None,
            level: int | None = None, unit: str = "money") -> None:
    """Publish one event; a Redis error is logged, never raised (the charge stays done)."""
    if kind not in KINDS:
        raise ValueError(f"kind: unknown event kind {kind!r}")
    msg = {"kind": kind, "account": account, "time": int(at), "detail": detail or {}}
    if level is not None:
        msg["level"], msg["unit"] = str(level), unit
    try:
        r.publish(CHANNEL, json.dumps(msg, sort_keys=True, separators=(",", ":")))
    except redis.RedisError as exc:  # a lost hint, not a lost charge
        log.warning("event %s for %s not published: %s", kind, account, exc)


def decode(raw) -> dict | None:
    try:
        msg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return msg if isinstance(msg, dict) and msg.get("kind") in KINDS else None
