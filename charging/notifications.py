"""Charging.WatchNotifications (the read side) and the events a charge raises.

Events travel on one Redis channel (`accounts.events`); a watcher subscribes through its
node and gets every event of the accounts it asked for, whichever node raised it.
"""

from __future__ import annotations

import json
import logging

from google.protobuf.timestamp_pb2 import Timestamp

from accounts import events
from proto.ccs.v1 import charging_pb2, common_pb2
from rating.money import format_money

log = logging.getLogger("ccs.notifications")

BUNDLE_THRESHOLD = (4, 5)  # 80% of a bundle used


class Notifier:
    """Raises the events of a charge: balance below `low_balance` (micro-units; None: off),
    a unit bucket passing 80% used, a unit bucket exhausted."""

    def __init__(self, r, low_balance: int | None = None, clock=None):
        self.r = r
        self.low_balance = low_balance
        self.clock = clock

    def after_charge(self, req, ans, now: int) -> None:
        if ans.account is None or ans.applied is False:
            return
        if self.low_balance is not None and ans.available is not None \
                and ans.available < self.low_balance <= ans.available + max(ans.charged, 0):
            events.publish(self.r, "BALANCE_LOW", ans.account, now,
                           {"threshold": str(self.low_balance), "session": req.session_id},
                           level=ans.available)
        for bucket_id, b in sorted((ans.buckets or {}).items()):
            rem, init, used = int(b["rem"]), int(b["init"]), int(b["used"])
            before = rem + used
            num, den = BUNDLE_THRESHOLD
            limit = init - init * num // den  # remaining at 80% used
            if rem == 0 < before:
                events.publish(self.r, "BUNDLE_EXHAUSTED", ans.account, now,
                               {"bucket": bucket_id}, level=0, unit="units")
            elif rem <= limit < before:
                events.publish(self.r, "BUNDLE_THRESHOLD", ans.account, now,
                               {"bucket": bucket_id, "used_percent": "80"}, level=rem,
                               unit="units")


def to_proto(msg: dict) -> charging_pb2.Notification:
    ts = Timestamp(seconds=int(msg["time"]))
    level = None
    if "level" in msg:
        unit = msg.get("unit", "money")
        level = common_pb2.Units(money=format_money(int(msg["level"]), 6)) if unit == "money" \
            else \
            common_pb2.Units(events=int(msg["level"]))
    return charging_pb2.Notification(
        kind=charging_pb2.Notification.Kind.Value(msg["kind"]), account=msg["account"],
        time=ts, detail=json.dumps(msg.get("detail") or {}, sort_keys=True), level=level)


def watch(r, accounts: set[str], is_active, poll_s: float = 0.5):
    """Yield the events of `accounts` (empty: all) as they are published, while
    `is_active()`; one Redis pub/sub connection per watcher."""
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events.CHANNEL)
    try:
        while is_active():
            m = pubsub.get_message(timeout=poll_s)
            if m is None or m.get("type") != "message":
                continue
            msg = events.decode(m["data"])
            if msg is None or (accounts and msg["account"] not in accounts):
                continue
            yield to_proto(msg)
    finally:
        pubsub.close()
