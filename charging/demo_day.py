"""The online part of `ccs demo`: a few minutes of the operator's day compressed into a replay.

`play_day` drives the node's Charging with `charging.replay.Replay` (generated sessions of the
plan's accounts: voice, data, SMS) at the machine's pace, while on the same event loop a
watcher counts every notification the node streams (Charging.WatchNotifications) and one
scripted session shows a top-up re-authorising a call that a final grant would have cut:

    INITIAL (final grant: the money covers no more) -> Accounts.TopUp -> REAUTHORIZE
    notification -> UPDATE (a new grant, not final) -> TERMINATE

Event times come from the demo's `DayClock` (the node and the store run on it too), so the
sessions fall on the demo day whatever the wall clock says.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from charging.replay import Options, Recorder, Replay, figures, generated_cdrs

RESULT_NAMES = {"2001": "success", "4010": "denied (suspended account)",
                "4012": "credit limit reached", "5002": "unknown session",
                "5012": "out of order", "5030": "unknown subscriber", "5031": "rating failed"}
STORY_SESSION = "demo-reauth-1"
STORY_NUMBER = "33612345678"  # a French mobile: EU, 0.15 a minute, no allowance of smart_m
STORY_TOPUP = "20.00"


class DayClock:
    """A moment of the demo day that moves `scale` times faster than the wall clock; `set`
    moves it (the node, the store and the replay's event times all read it)."""

    def __init__(self, at: float, scale: float = 1.0):
        self._lock = threading.Lock()
        self.set(at, scale)

    def set(self, at: float, scale: float = 1.0) -> None:
        with self._lock:
            self._at, self._wall, self.scale = at, time.monotonic(), scale

    def __call__(self) -> float:
        with self._lock:
            return self._at + (time.monotonic() - self._wall) * self.scale


def clock_text(at: float, tz: str) -> str:
    return datetime.fromtimestamp(int(at), ZoneInfo(tz)).strftime("%H:%M:%S")


class DayReplay(Replay):
    """`Replay` with event times on the demo clock, counting the sessions a final grant cut."""

    def __init__(self, opts: Options, cdrs, rec: Recorder, clock: DayClock, bar=None):
        super().__init__(opts, cdrs, rec, bar)
        self.clock = clock
        self.cut = 0  # sessions whose grant was final: they end with what it covered

    def now(self) -> int:
        return int(self.clock())

    def over(self) -> bool:
        # Ctrl-C cancels the tasks, but grpc.aio turns a cancelled call into an RpcError
        # (CANCELLED) that the replay counts and goes on from: stop starting sessions then
        task = asyncio.current_task()
        return super().over() or (task is not None and task.cancelling() > 0)

    async def call(self, stub, cdr, kind, n, at, *, requested=None, used=0):
        got = await super().call(stub, cdr, kind, n, at, requested=requested, used=used)
        if got is not None and kind in ("INITIAL", "UPDATE") and got[0] == 2001 and got[2]:
            self.cut += 1
        return got


@dataclass
class Watcher:
    """Every notification of the node (WatchNotifications with no account: all), by kind."""

    kinds: Counter = field(default_factory=Counter)
    reauthorized: dict = field(default_factory=dict)  # account -> the REAUTHORIZE detail
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    call: object = None

    async def run(self, channel) -> None:
        import grpc

        from proto.ccs.v1 import charging_pb2 as pb
        from proto.ccs.v1 import charging_pb2_grpc

        self.call = charging_pb2_grpc.ChargingStub(channel).WatchNotifications(
            pb.WatchRequest())
        try:
            async for n in self.call:
                kind = pb.Notification.Kind.Name(n.kind)
                self.kinds[kind] += 1
                if kind == "REAUTHORIZE":
                    self.reauthorized[n.account] = json.loads(n.detail or "{}")
                    self.arrived.set()
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass  # cancelled at the end of the day

    def stop(self) -> None:
        if self.call is not None:
            self.call.cancel()


@dataclass
class StoryAccount:
    account: str
    msisdn: str
    balance: str  # what the plan tops it up with


async def _story(channel, who: StoryAccount, clock: DayClock, tz: str, watcher: Watcher,
                 delay: float) -> tuple[list[str], int]:
    """The scripted session (lines for the console and the page, requests it sent)."""
    from proto.ccs.v1 import accounts_pb2 as apb
    from proto.ccs.v1 import accounts_pb2_grpc, charging_pb2_grpc, common_pb2
    from proto.ccs.v1 import charging_pb2 as pb

    await asyncio.sleep(delay)
    charging = charging_pb2_grpc.ChargingStub(channel)
    accounts = accounts_pb2_grpc.AccountsStub(channel)
    start = int(clock())
    lines: list[str] = []

    async def charge(kind, n, at, requested=None, used=None):
        unit = pb.ServiceUnit(rating_group=1, service="voice", destination=STORY_NUMBER)
        if requested is not None:
            unit.requested.CopyFrom(common_pb2.Units(seconds=requested))
        if used is not None:
            unit.used.CopyFrom(common_pb2.Units(seconds=used))
        msg = pb.ChargeRequest(session_id=STORY_SESSION, request_type=kind, request_number=n,
                               subscriber=who.msisdn, units=[unit])
        msg.event_time.seconds = at
        return await charging.Charge(msg, timeout=10)

    first = await charge(pb.INITIAL, 0, start, requested=600)
    g = first.grants[0] if first.grants else None
    final = g is not None and g.final_unit_action == pb.ServiceGrant.TERMINATE
    granted = g.granted.seconds if g is not None else 0
    lines.append(f"{clock_text(start, tz)} {who.account} (MSISDN {who.msisdn}, prepaid, "
                 f"{who.balance} left) calls {STORY_NUMBER} (EU), asking for 600 s: result "
                 f"{first.result_code}, granted {granted} s"
                 + (", FINAL: the money covers no more, the call would be cut" if final else ""))
    if not final:
        return lines, 1
    talked = min(120, granted)
    top = await accounts.TopUp(apb.TopUpRequest(op_id="demo-reauth-topup", account_id=who.account,
                                                amount=STORY_TOPUP), timeout=10)
    lines.append(f"{clock_text(start + talked, tz)} {who.account} tops up {STORY_TOPUP} "
                 f"(Accounts.TopUp) while talking: balance {top.account.balance}, available "
                 f"{top.account.available} (with the offer's top-up gift, less what the call "
                 "holds)")
    try:
        await asyncio.wait_for(watcher.arrived.wait(), 10)
    except TimeoutError:
        pass
    detail = watcher.reauthorized.get(who.account)
    if detail is None:
        lines.append("no REAUTHORIZE notification arrived within 10 s")
        return lines, 1
    lines.append(f"notification REAUTHORIZE {who.account} {json.dumps(detail, sort_keys=True)}"
                 ": the network element asks again")
    again = await charge(pb.UPDATE, 1, start + talked, requested=600, used=talked)
    g2 = again.grants[0] if again.grants else None
    final2 = g2 is not None and g2.final_unit_action == pb.ServiceGrant.TERMINATE
    lines.append(f"{clock_text(start + talked, tz)} UPDATE reporting {talked} s used: result "
                 f"{again.result_code}, granted {g2.granted.seconds if g2 else 0} s, "
                 f"{'final' if final2 else 'not final'}: the call goes on")
    rest = 300
    last = await charge(pb.TERMINATE, 2, start + talked + rest, used=rest)
    charged = [first.charged, again.charged, last.charged]
    lines.append(f"{clock_text(start + talked + rest, tz)} TERMINATE after {talked + rest} s: "
                 f"charged {' + '.join(c or '0' for c in charged)}, available {last.available}")
    return lines, 3


async def price_enquiry(channel, who: StoryAccount, at: int, tz: str) -> str:
    """One EVENT PRICE_ENQUIRY for voice, SMS and data (it also has the node load the rating
    kernels before the traffic starts)."""
    from proto.ccs.v1 import charging_pb2 as pb
    from proto.ccs.v1 import charging_pb2_grpc, common_pb2

    asked = (("voice", STORY_NUMBER, common_pb2.Units(seconds=60), "60 s"),
             ("sms", STORY_NUMBER, common_pb2.Units(events=1), "1 SMS"),
             ("data", "", common_pb2.Units(bytes=10 << 20), "10 MiB of data"))
    msg = pb.ChargeRequest(session_id="demo-price-1", request_type=pb.EVENT, request_number=0,
                           subscriber=who.account, event_action=pb.PRICE_ENQUIRY,
                           units=[pb.ServiceUnit(rating_group=k + 1, service=svc,
                                                 destination=dest, requested=units)
                                  for k, (svc, dest, units, _) in enumerate(asked)])
    msg.event_time.seconds = at
    reply = await charging_pb2_grpc.ChargingStub(channel).Charge(msg, timeout=60)
    prices = {g.rating_group: g.granted.money for g in reply.grants}
    return (f"{clock_text(at, tz)} price enquiry for {who.account} (EVENT PRICE_ENQUIRY): "
            + ", ".join(f"{text}{' to ' + dest if dest else ''} {prices.get(k + 1, '?')}"
                        for k, (_, dest, _, text) in enumerate(asked)))


@dataclass
class DayResult:
    figures: dict
    recorder: Recorder
    cut: int
    notifications: dict
    story: list[str]
    node_requests: int  # answered Charge requests the node's /metrics counted
    story_requests: int
    start: int
    end: int


async def _day(opts: Options, cdrs, clock: DayClock, tz: str, who: StoryAccount, r, bar,
               day_start: int, scale: float):
    import grpc

    rec = Recorder()
    replay = DayReplay(opts, cdrs, rec, clock, bar)
    watcher = Watcher()
    async with grpc.aio.insecure_channel(opts.target) as channel:
        before = _subscribers(r)
        watching = asyncio.ensure_future(watcher.run(channel))
        for _ in range(500):  # the watcher is subscribed before any charge is made
            if _subscribers(r) > before:
                break
            await asyncio.sleep(0.01)
        clock.set(day_start, 0.0)  # still until the traffic starts
        quote = await price_enquiry(channel, who, day_start, tz)
        clock.set(day_start, scale)
        story = asyncio.ensure_future(_story(channel, who, clock, tz, watcher,
                                             delay=opts.duration / 3))
        try:
            reached = await replay.run()
            lines, sent = await story
            lines, sent = [quote, *lines], sent + 1
        finally:
            story.cancel()
            watcher.stop()
            await asyncio.gather(watching, return_exceptions=True)
    return reached, replay, rec, watcher, lines, sent


def _subscribers(r) -> int:
    from accounts.events import CHANNEL

    return int(dict(r.pubsub_numsub(CHANNEL)).get(CHANNEL.encode(), 0))


def node_charge_requests(metrics_port: int) -> int:
    """The Charge requests the node answered, from its /metrics (ccs_charge_requests_total)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as f:
        text = f.read().decode()
    return int(sum(s.value for fam in text_string_to_metric_families(text)
                   for s in fam.samples if s.name == "ccs_charge_requests_total"))


def play_day(*, target: str, catalog, accounts: int, prefix: str, seconds: float,
             minutes: float, day_start: int, clock: DayClock, who: StoryAccount, r,
             metrics_port: int, seed: int = 1, concurrency: int = 16, bar=None) -> DayResult:
    """`minutes` of the day from `day_start` (UTC s) in `seconds` of replay, then the clock
    stops at the end of that span. Raises RuntimeError when no node answers."""
    opts = Options(target=target, credentials=None, cdrs=None, accounts=accounts,
                   prefix=prefix, concurrency=concurrency, connections=min(4, concurrency),
                   rate=None, duration=seconds, count=None, quota=None, seed=seed,
                   time_scale=1.0, timeout=5.0, catalog=catalog, charts=None, json=False)
    skip = {who.account, who.msisdn}
    cdrs = (c for c in generated_cdrs(opts, f"day{seed}") if c.subscriber not in skip)
    day = _day(opts, cdrs, clock, catalog.timezone, who, r, bar, day_start, minutes * 60 / seconds)
    try:
        reached, replay, rec, watcher, lines, sent = asyncio.run(day)
    except BaseException:
        day.close()  # a Ctrl-C before the loop started it: no "never awaited" warning
        raise
    end = int(clock())
    clock.set(end, 1.0)
    if not reached:
        raise RuntimeError(f"the node at {target} did not answer")
    return DayResult(figures(opts, rec), rec, replay.cut, dict(watcher.kinds), lines,
                     node_charge_requests(metrics_port), sent, day_start, end)
