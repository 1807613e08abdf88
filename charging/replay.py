"""`ccs replay`: drive a node's ccs.v1.Charging with online traffic and measure it.

    ccs replay --target HOST:PORT --cdrs FILE [--quota UNITS] [--concurrency N] [--rate R]
    ccs replay --target HOST:PORT --generate --accounts N [--accounts-prefix P] --duration S

Each CDR (a row of a CDR file, or one drawn by `charging.gen_cdrs.CdrModel`) is a session:
INITIAL asking for --quota units (default: the service's default quota), UPDATEs reporting
each grant used, a TERMINATE with the rest of the CDR's usage; a service counted in events
(SMS) is one EVENT DIRECT_DEBIT. A session ends early when it is cut by a final grant, when
an answer is not 2001, when a call fails with a gRPC status (counted by status, never fatal),
and at the end of --duration (its next request is then the TERMINATE). Event times are the
CDR's start (plus the seconds used so far), or now for generated traffic.

A grpc.aio client: --concurrency sessions in flight over --connections channels; latency
per call with time.perf_counter. At the end a summary on stdout and with --json one JSON
line last. Exit 0 when the run completed, 1 when no node answers or every request failed,
2 for bad arguments (one line naming the option).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from charging.gen import GenUsage as ReplayUsage
from charging.gen import int_option, one_line_errors

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
TYPES = ("INITIAL", "UPDATE", "TERMINATE", "EVENT")
BUILTIN_UNITS = {"voice": "seconds", "sms": "events", "data": "bytes"}
MAX_UPDATES = 1000  # UPDATEs of one session before it terminates with the rest
CDR_COLUMNS = ("cdr_id", "account", "service", "start", "usage")
BATCH = 1024  # generated CDRs drawn at a time


@dataclass
class Options:
    target: str
    credentials: object | None  # grpc.ChannelCredentials, None: plaintext
    cdrs: Path | None
    accounts: int
    prefix: str
    concurrency: int
    connections: int
    rate: float | None
    duration: float | None
    count: int | None
    quota: int | None
    seed: int
    time_scale: float
    timeout: float
    catalog: object | None
    charts: Path | None
    json: bool


@dataclass
class Cdr:
    sid: str
    subscriber: str
    service: str
    destination: str
    start: int | None  # None: now (generated traffic)
    usage: int
    unit: str  # seconds | bytes | events


@dataclass
class Recorder:
    """What came back: per call its end (s since the start), latency and whether it was
    answered; counts by type and result code, and by gRPC status."""

    done: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    answered: array = field(default_factory=lambda: array("b"))
    results: dict = field(default_factory=lambda: {t: Counter() for t in TYPES})
    failed: Counter = field(default_factory=Counter)  # by type
    statuses: Counter = field(default_factory=Counter)
    sessions: int = 0
    skipped: int = 0  # CDR rows that are not CDRs
    t0: float = field(default_factory=time.perf_counter)
    elapsed: float = 0.0

    def add(self, kind: str, sent: float, ended: float, result: int | None, status: str):
        self.done.append(ended - self.t0)
        self.latency.append(ended - sent)
        self.answered.append(result is not None)
        self.statuses[status] += 1
        if result is not None:
            self.results[kind][str(result)] += 1
        else:
            self.failed[kind] += 1

    @property
    def requests(self) -> int:
        return len(self.done)


# --- options ------------------------------------------------------------------------------

def _number(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ReplayUsage(f"{name}: expected a positive number, got {text!r}")
    return value


def _target(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) \
            or not 0 < int(port) <= 65535:
        raise ReplayUsage(f"--target: expected HOST:PORT, got {text!r}")
    return text


def _credentials(args):
    if args.tls_ca is None and args.tls_cert is None and args.tls_key is None:
        return None
    import grpc

    from charging.tls import TlsError, _check_certificates, _read, load_tls

    try:
        ca = None
        if args.tls_ca is not None:
            ca = _read(args.tls_ca, "--tls-ca")
            _check_certificates(ca, args.tls_ca, "--tls-ca")
        mine = load_tls(args.tls_cert, args.tls_key) if args.tls_cert or args.tls_key else None
    except TlsError as exc:
        raise ReplayUsage(str(exc)) from None
    return grpc.ssl_channel_credentials(ca, mine.key if mine else None,
                                        mine.cert if mine else None)


def parse_options(args) -> Options:
    """The command's options, checked; ReplayUsage names the first bad one."""
    target = _target(args.target)
    if (args.cdrs is None) == (not args.generate):
        raise ReplayUsage("--cdrs: give a CDR file (--cdrs FILE) or --generate, not both")
    cdrs = None
    if args.cdrs is not None:
        cdrs = Path(args.cdrs)
        if not cdrs.is_file():
            raise ReplayUsage(f"--cdrs: no such file {args.cdrs!r}")
    accounts = 0
    if args.generate:
        if args.accounts is None:
            raise ReplayUsage("--accounts: --generate needs the number of accounts "
                              "(those of ccs gen accounts --count N)")
        accounts = int_option(args.accounts, "--accounts", 1, 10_000_000)
    concurrency = int_option(args.concurrency, "--concurrency", 1, 10_000)
    connections = int_option(args.connections, "--connections", 1, 64) \
        if args.connections is not None else min(4, concurrency)
    duration = _number(args.duration, "--duration")
    count = int_option(args.count, "--count", 1) if args.count is not None else None
    if args.generate and duration is None and count is None:
        raise ReplayUsage("--duration: --generate needs --duration S or --count N")
    catalog = None
    if args.catalog:
        from charging.gen import _catalog

        catalog = _catalog(args.catalog)
    charts = Path(args.charts) if args.charts is not None else None
    if charts is not None:
        try:
            charts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReplayUsage(f"--charts: cannot make {args.charts!r}: {exc.strerror}") from None
    return Options(
        target=target, credentials=_credentials(args), cdrs=cdrs, accounts=accounts,
        prefix=args.accounts_prefix, concurrency=concurrency, connections=connections,
        rate=_number(args.rate, "--rate"), duration=duration, count=count,
        quota=int_option(args.quota, "--quota", 1) if args.quota is not None else None,
        seed=int_option(args.seed, "--seed", 0),
        time_scale=_number(args.time_scale, "--time-scale"),
        timeout=_number(args.timeout, "--timeout"), catalog=catalog, charts=charts,
        json=args.json)


# --- where sessions come from -------------------------------------------------------------

def unit_of(catalog, service: str) -> str:
    """The Units field of a service: the catalog's, else the builtins', else events."""
    if catalog is not None:
        from charging.charge import unit_of as catalog_unit

        return catalog_unit(catalog, service)
    return BUILTIN_UNITS.get(service, "events")


def _session_id(text: str) -> str:
    return "".join(c if c.isprintable() and c not in "/ " else "_" for c in text)[:200]


def check_cdr_file(path: Path) -> None:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayUsage(f"--cdrs: cannot read {path}: {exc}") from None
    missing = [c for c in CDR_COLUMNS if c not in header]
    if missing:
        raise ReplayUsage(f"--cdrs: {path} is not a CDR file: no column {missing[0]}")


def file_cdrs(path: Path, catalog, tag: str, rec: Recorder, loop: bool):
    """The file's CDRs in file order (again and again with `loop`); rows that are not CDRs
    (no id, account or service, a start without offset, a usage that is not a count, a
    destination that is not digits) are skipped and counted."""
    units: dict[str, str] = {}
    for lap in range(1 << 62):
        with path.open(newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                try:
                    start = datetime.fromisoformat(row["start"])
                    usage = int(row["usage"])
                    dest = (row.get("destination") or "").removeprefix("+")
                    if start.tzinfo is None or usage < 0 or not (
                            row["cdr_id"] and row["account"] and row["service"]) \
                            or (dest and not (dest.isascii() and dest.isdigit())):
                        raise ValueError
                except (TypeError, ValueError, KeyError):
                    rec.skipped += lap == 0
                    continue
                svc = row["service"]
                unit = units.get(svc) or units.setdefault(svc, unit_of(catalog, svc))
                yield Cdr(_session_id(f"{tag}-{lap}-{row['cdr_id']}"), row["account"], svc,
                          dest, int(start.timestamp()), usage, unit)
        if not loop:
            return


def generated_cdrs(opts: Options, tag: str):
    """Endless CDRs of `CdrModel` (the catalog's, else a default one) for accounts 1..N of
    `ccs gen accounts --prefix`, a quarter of them by MSISDN; seeded."""
    import numpy as np

    from charging.gen_cdrs import CdrModel, digit_strings
    from charging.gen_plan import account_id, msisdn_of

    model = CdrModel.for_catalog(opts.catalog) if opts.catalog is not None \
        else CdrModel.default()
    rng = np.random.default_rng(opts.seed)
    n = 0
    while True:
        d = model.draw(rng, BATCH)
        who = rng.integers(1, opts.accounts + 1, BATCH)
        by_msisdn = rng.random(BATCH) < 0.25
        dests = digit_strings(d["dest"], d["dest_len"]).to_pylist()
        for k in range(BATCH):
            n += 1
            i = int(who[k])
            sub = msisdn_of(opts.prefix, i) if by_msisdn[k] \
                else account_id(opts.prefix, i, opts.accounts)
            yield Cdr(f"{tag}-g{n}", sub, model.services[d["service"][k]], dests[k], None,
                      int(d["usage"][k]), model.units[d["service"][k]])


# --- the run ------------------------------------------------------------------------------

class Replay:
    def __init__(self, opts: Options, cdrs, rec: Recorder, bar=None):
        self.opts, self.cdrs, self.rec, self.bar = opts, cdrs, rec, bar
        self.deadline = None if opts.duration is None else rec.t0 + opts.duration
        self.started = 0
        self.interval = 1.0 / opts.rate if opts.rate else 0.0
        self.next_slot = rec.t0
        self.wall0 = time.time()

    def over(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def next_cdr(self) -> Cdr | None:
        if self.over() or (self.opts.count is not None and self.started >= self.opts.count):
            return None
        cdr = next(self.cdrs, None)
        if cdr is not None:
            self.started += 1
            self.rec.sessions += 1
        return cdr

    def now(self) -> int:
        """Generated traffic's event time: the wall clock, --time-scale times faster."""
        return int(self.wall0 + (time.time() - self.wall0) * self.opts.time_scale)

    async def pace(self) -> None:
        if not self.interval:
            return
        now = time.perf_counter()
        slot = max(self.next_slot, now - 0.1)  # a slow node is not flooded after
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def call(self, stub, cdr: Cdr, kind: str, n: int, at: int, *, requested=None,
                   used=0):
        """One Charge; (result code, granted units, final) or None when it failed."""
        from proto.ccs.v1 import charging_pb2 as pb

        unit = pb.ServiceUnit(rating_group=1, service=cdr.service, destination=cdr.destination)
        if requested is not None:
            setattr(unit.requested, cdr.unit, requested)
        if used:
            setattr(unit.used, cdr.unit, used)
        msg = pb.ChargeRequest(session_id=cdr.sid, request_type=pb.RequestType.Value(kind),
                               request_number=n, subscriber=cdr.subscriber, units=[unit])
        if kind == "EVENT":
            msg.event_action = pb.DIRECT_DEBIT
        msg.event_time.seconds = at
        await self.pace()
        sent = time.perf_counter()
        try:
            resp = await stub.Charge(msg, timeout=self.opts.timeout)
        except Exception as exc:  # noqa: BLE001 - grpc.aio.AioRpcError, or the channel closing
            code = getattr(exc, "code", None)
            status = code().name if callable(code) else type(exc).__name__
            self.rec.add(kind, sent, time.perf_counter(), None, status)
            await asyncio.sleep(0.01)  # a node that is away is not spun on
            return None
        self.rec.add(kind, sent, time.perf_counter(), resp.result_code, "OK")
        grant = next((g for g in resp.grants if g.rating_group == 1), None)
        if grant is None:
            return resp.result_code, 0, True
        return resp.result_code, getattr(grant.granted, cdr.unit), grant.final_unit_action == 1

    async def play(self, stub, cdr: Cdr) -> None:
        start = cdr.start if cdr.start is not None else self.now()
        q = self.opts.quota
        if cdr.unit == "events":
            await self.call(stub, cdr, "EVENT", 0, start, requested=max(cdr.usage, 1))
            return
        got = await self.call(stub, cdr, "INITIAL", 0, start, requested=q)
        if got is None or got[0] != 2001:
            return
        left, spent = cdr.usage, 0
        clock = cdr.unit == "seconds"  # event times move on by the seconds used
        for n in range(1, MAX_UPDATES + 2):
            code, granted, final = got
            at = start + (spent if clock else 0)
            if left <= granted or final or granted <= 0 or n > MAX_UPDATES or self.over():
                used = left if n > MAX_UPDATES else min(left, granted)
                await self.call(stub, cdr, "TERMINATE", n, at + (used if clock else 0),
                                used=used)
                return
            got = await self.call(stub, cdr, "UPDATE", n, at + granted * clock,
                                  requested=q, used=granted)
            left, spent = left - granted, spent + granted
            if got is None:
                return
            if got[0] != 2001:  # nothing granted: the network element ends the service
                await self.call(stub, cdr, "TERMINATE", n + 1, start + spent * clock)
                return

    async def worker(self, stub) -> None:
        while (cdr := self.next_cdr()) is not None:
            await self.play(stub, cdr)

    async def progress(self) -> None:
        shown = 0
        while True:
            await asyncio.sleep(0.5)
            done = self.started if self.opts.duration is None \
                else int(time.perf_counter() - self.rec.t0)
            done = min(done, self.bar.total or done)
            self.bar.update(max(0, done - shown))
            shown = max(shown, done)
            secs = max(time.perf_counter() - self.rec.t0, 1e-9)
            failed = self.rec.requests - sum(self.rec.answered)
            self.bar.set_postfix_str(f"{self.rec.requests / secs:.0f} req/s, {failed} failed")

    async def run(self) -> bool:
        """False when no node answered within --timeout."""
        import grpc

        from proto.ccs.v1 import charging_pb2_grpc

        o = self.opts
        options = (("grpc.use_local_subchannel_pool", 1),)  # one TCP connection each
        channels = [grpc.aio.secure_channel(o.target, o.credentials, options) if o.credentials
                    else grpc.aio.insecure_channel(o.target, options)
                    for _ in range(o.connections)]
        ticker = None
        try:
            try:
                await asyncio.wait_for(channels[0].channel_ready(), o.timeout)
            except TimeoutError:
                return False
            self.rec.t0 = self.next_slot = time.perf_counter()
            if self.deadline is not None:
                self.deadline = self.rec.t0 + o.duration
            stubs = [charging_pb2_grpc.ChargingStub(c) for c in channels]
            if self.bar is not None:
                ticker = asyncio.ensure_future(self.progress())
            await asyncio.gather(*(self.worker(stubs[k % len(stubs)])
                                   for k in range(o.concurrency)))
            return True
        finally:
            self.rec.elapsed = time.perf_counter() - self.rec.t0
            if ticker is not None:
                ticker.cancel()
            for c in channels:
                await c.close()


# --- the report ---------------------------------------------------------------------------

def percentiles(latency_s, answered) -> dict[str, float]:
    """p50, p95, p99 and max (nearest rank) of answered calls, in ms."""
    import numpy as np

    lat = np.array(latency_s, np.float64)[np.array(answered, np.int8) == 1]
    if not len(lat):
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    q = np.percentile(lat, [50, 95, 99, 100], method="inverted_cdf") * 1000
    return {k: round(float(v), 3) for k, v in zip(("p50_ms", "p95_ms", "p99_ms", "max_ms"),
                                                   q, strict=True)}


def figures(opts: Options, rec: Recorder) -> dict:
    answered = sum(rec.answered)
    secs = max(rec.elapsed, 1e-9)
    return {
        "target": opts.target, "sessions": rec.sessions, "requests": rec.requests,
        "answered": answered, "failed": rec.requests - answered,
        "seconds": round(rec.elapsed, 3), "tps": round(rec.requests / secs, 1),
        **percentiles(rec.latency, rec.answered),
        "by_type": {t: sum(rec.results[t].values()) + rec.failed[t] for t in TYPES},
        "results": {t: dict(sorted(c.items())) for t, c in rec.results.items() if c},
        "failed_by_type": {t: rec.failed[t] for t in TYPES if rec.failed[t]},
        "errors": dict(sorted((k, v) for k, v in rec.statuses.items() if k != "OK")),
        "skipped_cdrs": rec.skipped, "concurrency": opts.concurrency, "rate": opts.rate,
    }


def summary(fig: dict) -> str:
    """The figures as a person reads them: one line, a table by type and result code, the
    latency and the errors."""
    codes = sorted({c for r in fig["results"].values() for c in r})
    lines = [f"ccs replay: {fig['sessions']} sessions, {fig['requests']} requests in "
             f"{fig['seconds']:.2f} s: {fig['tps']:.1f} requests/s against {fig['target']}",
             f"  {'type':<10}{'requests':>9}" + "".join(f"{c:>8}" for c in codes)
             + f"{'failed':>8}"]
    for t in TYPES:
        if fig["by_type"][t]:
            got = fig["results"].get(t, {})
            lines.append(f"  {t:<10}{fig['by_type'][t]:>9}"
                         + "".join(f"{got.get(c, 0):>8}" for c in codes)
                         + f"{fig['failed_by_type'].get(t, 0):>8}")
    lines.append(f"latency of answered calls: p50 {fig['p50_ms']:.2f} ms, p95 "
                 f"{fig['p95_ms']:.2f} ms, p99 {fig['p99_ms']:.2f} ms, max {fig['max_ms']:.2f} ms")
    errors = ", ".join(f"{k} {v}" for k, v in fig["errors"].items()) or "none"
    lines.append(f"errors by gRPC status: {errors}")
    if fig["skipped_cdrs"]:
        lines.append(f"skipped: {fig['skipped_cdrs']} rows of the CDR file that are not CDRs")
    return "\n".join(lines)


def _bar(opts: Options):
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    if opts.duration is None:  # sessions: --count of them, or a file's
        return tqdm(total=opts.count, desc="ccs replay", unit="session", file=sys.stderr,
                    leave=False)
    return tqdm(total=int(opts.duration), desc="ccs replay", file=sys.stderr, leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} s "
                           "[{elapsed}<{remaining}{postfix}]")


def _replay(args) -> int:
    opts = parse_options(args)
    tag = f"r{os.getpid():x}{int(time.time() * 1000) % (1 << 40):x}"
    rec = Recorder()
    if opts.cdrs is not None:
        check_cdr_file(opts.cdrs)
        cdrs = file_cdrs(opts.cdrs, opts.catalog, tag, rec, loop=opts.duration is not None)
    else:
        cdrs = generated_cdrs(opts, tag)
    bar = _bar(opts)
    replay = Replay(opts, cdrs, rec, bar)
    interrupted = False
    try:
        reached = asyncio.run(replay.run())
    except KeyboardInterrupt:
        reached, interrupted = True, True
    finally:
        if bar is not None:
            bar.close()
    if not reached:
        print(f"ccs replay: --target {opts.target}: no node answers (waited {opts.timeout:g} s)",
              file=sys.stderr)
        return EXIT_FAILED
    fig = figures(opts, rec)
    if opts.charts is not None and rec.requests:
        from charging.replay_charts import write_charts

        fig["charts"] = [str(p) for p in write_charts(opts.charts, rec, opts.rate)]
    print(summary(fig))
    if opts.json:
        print(json.dumps(fig, separators=(",", ":")))
    if interrupted:
        print("ccs replay: interrupted", file=sys.stderr)
        return 130
    if rec.requests and not fig["answered"]:
        top = max(fig["errors"], key=fig["errors"].get)
        print(f"ccs replay: every request failed ({top}): is the node at {opts.target} up?",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _run(args) -> int:
    from charging.gen_cdrs import GenError

    try:
        return _replay(args)
    except (ReplayUsage, GenError) as exc:
        print(f"ccs replay: {exc}", file=sys.stderr)
        return EXIT_USAGE


def register(subparsers) -> None:
    """Add `ccs replay` to the root parser's subcommands."""
    p = one_line_errors(subparsers.add_parser(
        "replay", help="drive a node with online traffic (a CDR file or generated) and "
                       "measure it",
        description="Drive a node's ccs.v1.Charging with sessions made of CDRs (a file, or "
                    "generated) and report requests by type and result code, TPS, latency "
                    "percentiles and errors by gRPC status."), "replay")
    p.add_argument("--target", required=True, metavar="HOST:PORT", help="the node (Charging)")
    p.add_argument("--tls-ca", default=None, metavar="FILE",
                   help="PEM CA certificates of the node: TLS (default plaintext)")
    p.add_argument("--tls-cert", default=None, metavar="FILE", help="client certificate (mTLS)")
    p.add_argument("--tls-key", default=None, metavar="FILE", help="its private key")
    p.add_argument("--cdrs", default=None, metavar="FILE",
                   help="CDR CSV: each CDR a session (once; again and again with --duration)")
    p.add_argument("--generate", action="store_true", help="generated traffic instead")
    p.add_argument("--accounts", default=None, metavar="N",
                   help="with --generate: accounts 1..N of ccs gen accounts")
    p.add_argument("--accounts-prefix", default="acc", metavar="P",
                   help="their id prefix (default %(default)s)")
    p.add_argument("--catalog", default=os.environ.get("CCS_CATALOG"),
                   help="catalog YAML (default $CCS_CATALOG): service units, and the "
                        "destinations of generated traffic")
    p.add_argument("--concurrency", default="16", metavar="N",
                   help="sessions in flight (default %(default)s)")
    p.add_argument("--connections", default=None, metavar="N",
                   help="gRPC channels (TCP connections); default min(4, concurrency)")
    p.add_argument("--rate", default=None, metavar="R",
                   help="target requests/s (default: as fast as answers come)")
    p.add_argument("--duration", default=None, metavar="S", help="run this many seconds")
    p.add_argument("--count", default=None, metavar="N", help="start this many sessions")
    p.add_argument("--quota", default=None, metavar="UNITS",
                   help="units each INITIAL and UPDATE asks for (default: the service's "
                        "default quota)")
    p.add_argument("--seed", default="1", metavar="S", help="of generated traffic")
    p.add_argument("--time-scale", default="1", metavar="X",
                   help="generated traffic's clock runs X times faster (default 1)")
    p.add_argument("--timeout", default="5", metavar="S",
                   help="per call, and to reach the node (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON line last")
    p.add_argument("--charts", default=None, metavar="DIR",
                   help="write latency.png, throughput.png and result_codes.png there")
    p.set_defaults(func=_run)
