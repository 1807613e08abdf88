"""The load generator of `benchmarks/charging.py`: a grpc.aio client in its own process.

    .venv/bin/python benchmarks/charging_load.py SPEC.json

Runs one phase against a Charging server and writes, on stdout, `window-start` and
`window-end` when the measured window opens and closes (the parent reads the servers' CPU
time and Redis counters then), and last `result {...}` (JSON). Modes: `closed` (a number of
sessions in flight, each sending its next request as soon as it has the answer), `open`
(requests at a fixed rate whatever the answers) and `batch` (the first request of given
sessions, e.g. INITIALs left open on one account).

Sessions: voice INITIAL + 3 UPDATE + TERMINATE, data INITIAL + UPDATE + TERMINATE, SMS EVENT
DIRECT_DEBIT; request numbers 0, 1, 2, ... one request in flight per session, all of a
session's requests on one of the `channels` connections (sessions dealt over them in turn).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import traceback
from collections import deque
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto.ccs.v1 import charging_pb2 as pb  # noqa: E402
from proto.ccs.v1 import charging_pb2_grpc  # noqa: E402


def percentile(sorted_s: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted samples in seconds, in milliseconds."""
    if not sorted_s:
        return 0.0
    i = min(len(sorted_s) - 1, max(0, int(round(q * len(sorted_s))) - 1))
    return round(sorted_s[i] * 1000, 3)


VOICE_DESTS = ("4915112345678", "4917098765432", "4930123456", "33612345678", "12125550100",
               "81312345678")
MIX = (("voice", 5), ("data", 3), ("sms", 2))  # sessions started, by weight
MIB = 1 << 20
UNIT = {"voice": "seconds", "data": "bytes", "sms": "events"}


def session_steps(kind: str, dest: str) -> list[tuple]:
    """(request type, event action, rating group, service, destination, requested, used)."""
    if kind == "voice":
        return ([("INITIAL", None, 1, "voice", dest, 60, 0)]
                + [("UPDATE", None, 1, "voice", dest, 60, 60)] * 3
                + [("TERMINATE", None, 1, "voice", dest, None, 35)])
    if kind == "data":
        return [("INITIAL", None, 2, "data", "", 10 * MIB, 0),
                ("UPDATE", None, 2, "data", "", 10 * MIB, 10 * MIB),
                ("TERMINATE", None, 2, "data", "", None, 4 * MIB)]
    return [("EVENT", "DIRECT_DEBIT", 3, "sms", dest, 1, 0)]


class Session:
    __slots__ = ("sid", "sub", "steps", "n", "chan")

    def __init__(self, sid: str, sub: str, steps: list[tuple], chan: int = 0):
        self.sid, self.sub, self.steps, self.n, self.chan = sid, sub, steps, 0, chan


class Load:
    """Sends sessions' requests in order (request numbers 0, 1, ... one at a time per session)
    and keeps what came back: latencies inside the measured window, result codes, statuses."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.rng = random.Random(spec["seed"])
        # one TCP connection per channel (no shared subchannel): the kernel spreads
        # connections, not requests, over the processes of a `--workers N` server
        self.channels = [grpc.aio.insecure_channel(
            spec["target"], options=(("grpc.use_local_subchannel_pool", 1),))
            for _ in range(spec["channels"])]
        self.stubs = [charging_pb2_grpc.ChargingStub(c) for c in self.channels]
        self.accounts = spec["accounts"]
        self.kinds = [k for k, w in MIX for _ in range(w)]
        self.lat: list[float] = []  # from the scheduled time (open loop: what a caller sees)
        self.lat_sent: list[float] = []  # from the moment it was handed to gRPC
        self.codes: dict[str, int] = {}
        self.statuses: dict[str, int] = {}
        self.in_window = self.sent = self.sessions = 0
        self.echo_bad = self.sequence_bad = self.overload = 0
        self.in_flight: set[str] = set()
        self.last_sent: dict[str, int] = {}
        self.win_start = self.win_end = 0.0

    def new_session(self, kind: str | None = None, sub: str | None = None,
                    sid: str | None = None) -> Session:
        kind = kind or self.rng.choice(self.kinds)
        sub = sub or self.accounts[self.rng.randrange(len(self.accounts))]
        self.sessions += 1
        sid = sid or f"{self.spec['tag']}-{self.sessions}"
        # a session keeps its connection, as a network element keeps a session on one peer
        return Session(sid, sub, session_steps(kind, self.rng.choice(VOICE_DESTS)),
                       self.sessions % len(self.stubs))

    def message(self, s: Session):
        kind, action, rg, svc, dest, requested, used = s.steps[s.n]
        unit = pb.ServiceUnit(rating_group=rg, service=svc, destination=dest)
        if requested is not None:
            setattr(unit.requested, UNIT[svc], requested)
        if used:
            setattr(unit.used, UNIT[svc], used)
        msg = pb.ChargeRequest(session_id=s.sid, request_type=pb.RequestType.Value(kind),
                               request_number=s.n, subscriber=s.sub, units=[unit])
        if action:
            msg.event_action = pb.EventAction.Value(action)
        msg.event_time.seconds = int(time.time())
        return msg

    async def step(self, s: Session, t_sched: float) -> bool:
        """Send the session's next request; True when the session goes on."""
        # the session's requests go one at a time, numbered 0, 1, 2, ... with no gap
        if s.sid in self.in_flight or s.n != self.last_sent.get(s.sid, -1) + 1:
            self.sequence_bad += 1
        self.in_flight.add(s.sid)
        self.last_sent[s.sid] = s.n
        msg = self.message(s)
        self.sent += 1
        stub = self.stubs[s.chan]
        code, resp = "OK", None
        t0 = time.perf_counter()
        try:
            resp = await stub.Charge(msg, timeout=self.spec["timeout_s"])
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        t1 = time.perf_counter()
        self.in_flight.discard(s.sid)
        if self.win_start <= t1 <= self.win_end:
            self.in_window += 1
            self.lat.append(t1 - t_sched)
            self.lat_sent.append(t1 - t0)
        self.statuses[code] = self.statuses.get(code, 0) + 1
        if resp is None:
            return False
        rc = str(resp.result_code)
        self.codes[rc] = self.codes.get(rc, 0) + 1
        if self.spec["check_echo"] and (resp.session_id != s.sid
                                        or resp.request_number != s.n):
            self.echo_bad += 1
        s.n += 1
        return resp.result_code == 2001 and s.n < len(s.steps)

    async def marks(self) -> None:
        """Tell the parent (stdout) when the measured window opens and closes."""
        for name, at in (("window-start", self.win_start), ("window-end", self.win_end)):
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            sys.stdout.write(name + "\n")
            sys.stdout.flush()

    async def closed(self, concurrency: int) -> None:
        """`concurrency` sessions in flight, each sending as soon as it has its answer."""
        limit = self.spec["max_requests"]

        async def worker() -> None:
            while time.perf_counter() < self.win_end and self.sent < limit:
                s = self.new_session()
                while time.perf_counter() < self.win_end and await self.step(
                        s, time.perf_counter()):
                    pass

        await asyncio.gather(self.marks(), *(worker() for _ in range(concurrency)))

    async def open(self, rate: float) -> None:
        """Requests at `rate` per second on a fixed schedule whatever the answers: the next
        request of a session waiting for its turn, else a new session. Latency is counted
        from the scheduled time (a client that falls behind shows as latency)."""
        ready: deque[Session] = deque()
        tasks: set = set()
        interval, t = 1.0 / rate, time.perf_counter()
        marks = asyncio.ensure_future(self.marks())

        async def go(s: Session, at: float) -> None:
            if await self.step(s, at):
                ready.append(s)

        for _ in range(self.spec["max_requests"]):
            t += interval
            if t > self.win_end:
                break
            delay = t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= self.spec["max_in_flight"]:
                self.overload += 1  # the server is this far behind: not sent, counted
                continue
            task = asyncio.ensure_future(go(ready.popleft() if ready else self.new_session(), t))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self.spec["timeout_s"] + 1)
        await marks

    async def batch(self, sessions: list[tuple], concurrency: int) -> None:
        """One request per (kind, account, session id[, channel]), `concurrency` at a time;
        only the sessions' first request is sent (INITIALs left open, or one event)."""
        todo = iter(sessions)
        deadline = self.win_end

        async def worker() -> None:
            for kind, sub, sid, *chan in todo:
                if time.perf_counter() > deadline:
                    return
                s = self.new_session(kind, sub, sid)
                if chan:
                    s.chan = chan[0] % len(self.stubs)
                await self.step(s, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def run(self) -> dict:
        sp = self.spec
        t0 = time.perf_counter()
        self.win_start, self.win_end = t0 + sp["warmup_s"], t0 + sp["warmup_s"] + sp["seconds"]
        if sp["mode"] == "closed":
            await self.closed(sp["concurrency"])
        elif sp["mode"] == "open":
            await self.open(sp["rate"])
        else:
            await self.batch([tuple(x) for x in sp["sessions"]], sp["concurrency"])
        elapsed = time.perf_counter() - t0
        for c in self.channels:
            await c.close()
        self.lat.sort()
        self.lat_sent.sort()
        window = min(sp["seconds"], max(1e-9, elapsed - sp["warmup_s"]))
        errors = sum(n for k, n in self.statuses.items() if k != "OK") + sum(
            n for k, n in self.codes.items() if k not in ("2001", "4012"))
        return {"mode": sp["mode"], "sent": self.sent, "sessions": self.sessions,
                "requests": self.in_window, "seconds": round(window, 3),
                "tps": round(self.in_window / window, 1),
                "p50_ms": percentile(self.lat, 0.50), "p95_ms": percentile(self.lat, 0.95),
                "p99_ms": percentile(self.lat, 0.99), "max_ms": percentile(self.lat, 1.0),
                "from_send_p50_ms": percentile(self.lat_sent, 0.50),
                "from_send_p99_ms": percentile(self.lat_sent, 0.99),
                "codes": self.codes, "statuses": self.statuses, "errors": errors,
                "echo_mismatches": self.echo_bad, "sequence_violations": self.sequence_bad,
                "not_sent_overload": self.overload}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: charging_load.py SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())

    async def go() -> dict:  # the channels belong to this loop
        return await Load(spec).run()

    try:
        result = asyncio.run(go())
    except Exception:  # noqa: BLE001 - say why, and do not linger on gRPC's threads
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.write("result " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
