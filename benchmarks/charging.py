"""Online charging benchmark: `ccs serve` against a no-op server of the same server model.

One run, one machine, one load generator (`benchmarks/charging_load.py`: a grpc.aio client in
its own process, many sessions in flight over --channels connections), and for each server
model of --models two servers in turn: `benchmarks/noop_charging.py` in that model (a fixed
ChargeResponse) and `ccs serve` in that model (`benchmarks/charging_aio.py` for `aio-`), on
an embedded redis-server (AOF, appendfsync always) holding 10,000 prepaid accounts on the
example catalog's offers. Models: `w<N>[t<T>]` is `ccs serve --workers N --threads T` (T 16),
`aio-w<N>` the grpc.aio + redis.asyncio prototype in N processes.
Traffic: voice sessions (INITIAL + 3 UPDATE + TERMINATE), data sessions (INITIAL + UPDATE +
TERMINATE) and SMS events (EVENT DIRECT_DEBIT), on random accounts.

Phases per model: saturated throughput (closed loop, --concurrency in flight) of the no-op
server and of ccs, then ccs's latency at half its saturated rate (open loop); for the first
model also a MONITOR sample and the same load on one account that holds --hot-sessions open
sessions. Prints progress to stderr and, as its last line, one JSON object ({"bench":
"charging", ...}: the first model's figures at the top level, every model's in "models")
that benchmarks/README.md quotes.

    .venv/bin/python benchmarks/charging.py                       # ~8 minutes: w1, w2
    .venv/bin/python benchmarks/charging.py --models w1,w2,aio-w1  # and the aio prototype
    .venv/bin/python benchmarks/charging.py --quick                # ~1 min smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CATALOG = ROOT / "docs" / "examples" / "catalog.yaml"
LOADGEN = ROOT / "benchmarks" / "charging_load.py"
EUR = 1_000_000
HOT = "hot"
OFFERS = ("smart_m", "flat_l")
TARGETS = {"ratio": ">= 0.8", "p99_ms": "<= 10", "hot_account_p99_ms": "<= 2 x p99_ms",
           "redis_round_trips_per_request": "<= 1.0", "requests_per_core_s": ">= 2000"}
# commands the node sends to Redis without a request (health probe, sweeper), and those that
# ride in the same pipeline as the request's script (the reservation expiry index)
BACKGROUND = {"ping", "info", "zrangebyscore", "scan", "zscore", "client", "hello", "monitor"}
PIPELINED = {"zadd", "zrem"}
MONITOR_LINE = re.compile(rb'^[0-9.]+ \[[0-9]+ ([^\]]*)\] "([^"]*)"')


def log(msg: str) -> None:
    print(f"[charging] {msg}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:  # in the child: SIGTERM when we die; Ctrl-C reaches us only
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    os.setpgrp()


class Child:
    """A subprocess stopped (SIGTERM, then SIGKILL) by `stop`, registered on an ExitStack."""

    def __init__(self, name: str, args: list[str], logdir: Path, *, pipe: bool = False,
                 log_stderr: bool = False):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else self._log,
            stderr=None if pipe and not log_stderr else self._log,
            preexec_fn=_die_with_parent)
        self.pid = self.proc.pid
        self._buf = b""

    def readline(self, deadline: float) -> str | None:
        """The next stdout line, or None at the deadline or end of output."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-1500:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (/proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its live descendants (a supervisor's workers): a
    child's time reaches its parent's cutime only once it is reaped."""
    total = cpu_seconds(pid)
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    with contextlib.suppress(OSError):
                        total += tree_cpu_seconds(int(child))
    return total


def command_calls(client) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in client.info("commandstats").items()}


def scrape(url: str | None) -> dict[str, float]:
    """The ccs_* counters of a Prometheus text page, summed over their labels."""
    if url is None:
        return {}
    out: dict[str, float] = {}
    with urllib.request.urlopen(url, timeout=5) as page:
        for line in page.read().decode().splitlines():
            if line.startswith("ccs_"):
                name = line.split("{", 1)[0].split(" ", 1)[0]
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


class Bench:
    def __init__(self, args, stack: contextlib.ExitStack, tmp: Path):
        self.args, self.stack, self.tmp = args, stack, tmp
        self.seed = 0

    def free_port(self) -> int:
        from accounts.embedded import free_port
        return free_port()

    def start(self, name: str, argv: list[str], *, pipe: bool = False,
              log_stderr: bool = False) -> Child:
        child = Child(name, argv, self.tmp, pipe=pipe, log_stderr=log_stderr)
        self.stack.callback(child.stop)
        return child

    def wait_ready(self, child: Child, target: str, timeout: float = 60.0) -> None:
        """Until the server prints its ready line (every process of a --workers N server
        has bound the port: health answers as soon as the first one serves), then answers
        gRPC health (ccs) or opens its channel (noop)."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        deadline = time.monotonic() + timeout
        while True:
            line = child.readline(deadline)
            if line is None:
                raise RuntimeError(f"{child.name}: no ready line: {child.tail()}")
            if line.startswith(("listening on", "ccs node listening on")):
                break
        with grpc.insecure_channel(target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited: {child.tail()}")
                try:
                    st = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if st.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # noop: no health service
                        return
                time.sleep(0.2)
        raise RuntimeError(f"{child.name} not serving within {timeout:.0f} s: {child.tail()}")

    def load(self, target: str, mode: str, *, accounts: list[str], seconds: float,
             warmup: float, probes=None, check_echo: bool, **spec) -> dict:
        """Run the load generator once; `probes()` is read when its window opens and closes."""
        self.seed += 1
        spec = {"target": target, "mode": mode, "accounts": accounts, "seconds": seconds,
                "warmup_s": warmup, "seed": self.seed, "tag": f"{mode}{self.seed}-{os.getpid()}",
                "channels": self.args.channels, "timeout_s": 10.0, "check_echo": check_echo,
                "max_requests": 5_000_000, "max_in_flight": 2000, "concurrency": 1,
                "sessions": [], **spec}
        spec_path = self.tmp / f"load{self.seed}.json"
        spec_path.write_text(json.dumps(spec))
        gen = self.start(f"loadgen{self.seed}", [sys.executable, str(LOADGEN), str(spec_path)],
                         pipe=True)
        deadline = time.monotonic() + warmup + seconds + 60
        snaps, result = {}, None
        while result is None:
            line = gen.readline(deadline)
            if line is None:
                raise RuntimeError(f"load generator gave no result (exit {gen.proc.poll()})")
            if line in ("window-start", "window-end") and probes is not None:
                snaps[line] = probes() | {"client_cpu": cpu_seconds(gen.pid)}
            elif line.startswith("result "):
                result = json.loads(line[7:])
        gen.stop()
        if "window-start" in snaps and "window-end" in snaps:
            a, b = snaps["window-start"], snaps["window-end"]
            result["probe"] = {k: (b[k] - a[k]) if isinstance(b[k], float) else
                               {n: b[k].get(n, 0) - a[k].get(n, 0) for n in b[k]}
                               for k in b}
        return result

    def closed(self, target, accounts, probes=None, check_echo=True) -> dict:
        a = self.args
        return self.load(target, "closed", accounts=accounts, seconds=a.seconds,
                         warmup=a.warmup, probes=probes, check_echo=check_echo,
                         concurrency=a.concurrency)

    def open(self, target, accounts, rate, probes=None) -> dict:
        return self.load(target, "open", accounts=accounts, seconds=self.args.seconds,
                         warmup=1.0, probes=probes, check_echo=True, rate=rate)

    def batch(self, target, sessions, limit_s: float, probes=None) -> dict:
        return self.load(target, "batch", accounts=[HOT], seconds=limit_s, warmup=0.0,
                         probes=probes, check_echo=True, sessions=sessions, concurrency=32)


def create_accounts(server, n: int, hot_money: int) -> list[str]:
    """n prepaid accounts with plenty of money, offers alternating smart_m / flat_l, plus the
    hot account (smart_m) that will hold the open sessions."""
    from accounts.store import AccountStore
    from rating.catalog import load_catalog
    store = AccountStore(server.client(), load_catalog(CATALOG))
    ids = [f"b{i:05d}" for i in range(n)]

    def make(i: int) -> None:
        account = ids[i] if i < n else HOT
        store.create(account, offers=(OFFERS[i % 2],))
        store.topup(account, hot_money if i == n else 100_000 * EUR, op_id=f"seed-{account}")

    pool = ThreadPoolExecutor(max_workers=16)
    try:
        for k, _ in enumerate(pool.map(make, range(n + 1)), 1):
            if k % 2500 == 0:
                log(f"  {k} accounts")
    finally:  # on Ctrl-C or a failed create: drop what is not started yet
        pool.shutdown(wait=True, cancel_futures=True)
    return ids


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model,
            "python": platform.python_version(), "load_avg_start": os.getloadavg()[0]}


def ccs_supports_metrics(ccs: list[str]) -> bool:
    out = subprocess.run(ccs + ["serve", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    return "--metrics" in out.stdout


class Model:
    """A server model, named `[aio-]w<N>[t<T>]`: N processes on one port (SO_REUSEPORT), each
    a sync grpc.server with T threads (16), or a grpc.aio server (`aio-`)."""

    def __init__(self, name: str):
        m = re.fullmatch(r"(aio-)?w([0-9]+)(?:t([0-9]+))?", name)
        if not m or not 1 <= int(m.group(2)) <= 16 or (m.group(3) and m.group(1)):
            raise ValueError(f"--models: {name!r}: expected w<N>[t<T>] or aio-w<N>")
        self.name, self.aio = name, bool(m.group(1))
        self.workers, self.threads = int(m.group(2)), int(m.group(3) or 16)

    def noop_argv(self, target: str) -> list[str]:
        return ([sys.executable, str(ROOT / "benchmarks" / "noop_charging.py"), "--listen",
                 target, "--workers", str(self.workers), "--threads", str(self.threads)]
                + (["--aio"] if self.aio else []))

    def ccs_argv(self, ccs: list[str], target: str, redis_url: str, tmp: Path) -> list[str]:
        if self.aio:  # the prototype: grpc.aio + redis.asyncio, Charge only
            return [sys.executable, str(ROOT / "benchmarks" / "charging_aio.py"), "--catalog",
                    str(CATALOG), "--redis", redis_url, "--listen", target,
                    "--workers", str(self.workers)]
        return ccs + ["serve", "--catalog", str(CATALOG), "--redis", redis_url,
                      "--listen", target, "--data-dir", str(tmp / "ccs-data"), "--grace", "1",
                      "--workers", str(self.workers), "--threads", str(self.threads)]


def run(args, stack: contextlib.ExitStack, tmp: Path) -> dict:
    from accounts.audit import audit
    from accounts.embedded import EmbeddedRedis
    b = Bench(args, stack, tmp)
    out: dict = {"bench": "charging", **machine(), "accounts": args.accounts,
                 "hot_sessions": args.hot_sessions, "seconds": args.seconds,
                 "concurrency": args.concurrency, "channels": args.channels,
                 "models_run": [m.name for m in args.models]}
    redis_server = EmbeddedRedis(data_dir=tmp / "redis", appendfsync="always").start()
    stack.callback(redis_server.stop)
    r = redis_server.client()
    baseline_mem = int(r.info("memory")["used_memory"])
    t0 = time.perf_counter()
    log(f"creating {args.accounts} accounts (+ {HOT!r}) on redis {redis_server.url}")
    ids = create_accounts(redis_server, args.accounts, 10_000_000 * EUR)
    out["setup_s"] = round(time.perf_counter() - t0, 1)
    out["redis_bytes_per_account_at_setup"] = round(
        (int(r.info("memory")["used_memory"]) - baseline_mem) / (args.accounts + 1))
    ccs = [str(Path(sys.executable).parent / "ccs")]
    if not Path(ccs[0]).exists():
        ccs = [sys.executable, "-m", "charging.cli"]
    phases: list[dict] = []
    out["models"] = {}
    for i, model in enumerate(args.models):
        res = run_model(b, model, ids, ccs, redis_server, tmp, full=i == 0, phases=phases)
        out["models"][model.name] = {k: res[k] for k in MODEL_FIGURES if k in res}
        if i == 0:
            out.update(res)
            out["model"] = model.name

    out["errors"] = sum(x["errors"] for x in phases)
    checks = ("echo_mismatches", "sequence_violations", "not_sent_overload")
    out["checks"] = {k: sum(x[k] for x in phases) for k in checks}
    sent = sum(x["sent"] for x in phases)
    ok = sum(x["codes"].get("2001", 0) for x in phases)
    out["share_2001"] = round(ok / sent, 5) if sent else None
    mem = r.info("memory")
    out["redis_used_memory"] = int(mem["used_memory"])
    out["redis_bytes_per_account"] = round(int(mem["used_memory"]) / (args.accounts + 1))
    out["redis_keys"] = int(r.dbsize())
    out["redis_bytes_per_account_by_key"] = memory_by_key(r, args.accounts + 1)
    log("audit of every account")
    t0 = time.perf_counter()
    findings = audit(r)
    out["audit_clean"] = findings == []
    out["audit_findings"] = [str(f) for f in findings[:5]]
    out["audit_s"] = round(time.perf_counter() - t0, 1)
    out["load_avg_end"] = os.getloadavg()[0]
    out["targets"] = TARGETS
    out["targets_met"] = targets_met(out)
    return out


MODEL_FIGURES = ("noop_tps", "tps", "ratio", "p50_ms", "p95_ms", "p99_ms", "latency_rate_tps",
                 "requests_per_core_s", "cpu_ms_per_request", "redis_round_trips_per_request",
                 "load_avg", "hot_account_p99_ms")


def run_model(b: Bench, model: Model, ids: list[str], ccs: list[str], redis_server, tmp: Path,
              *, full: bool, phases: list) -> dict:
    """One server model: its no-op server, then ccs in the same model (warm-up, closed loop,
    open loop at half rate; with `full` also the MONITOR sample and the hot account)."""
    args = b.args
    r = redis_server.client()
    out: dict = {"load_avg_before": os.getloadavg()[0]}
    port = b.free_port()
    target = f"127.0.0.1:{port}"
    noop = b.start(f"noop-{model.name}", model.noop_argv(target), pipe=True, log_stderr=True)
    b.wait_ready(noop, target)
    log(f"[{model.name}] no-op server: closed loop, {args.concurrency} in flight, "
        f"{args.seconds:.0f} s")
    res = b.closed(target, ids, probes=lambda: {"server_cpu": tree_cpu_seconds(noop.pid)},
                   check_echo=False)
    noop.stop()
    cpu = res.get("probe", {})
    res["requests_per_core_s"] = round(res["requests"] / max(cpu.get("server_cpu", 0), 1e-9))
    log(f"  no-op: {res['tps']} req/s, client cpu {cpu.get('client_cpu', 0):.1f} s")
    out["noop"] = res
    out["noop_tps"] = res["tps"]

    port = b.free_port()
    target = f"127.0.0.1:{port}"
    argv = model.ccs_argv(ccs, target, redis_server.url, tmp)
    metrics_url = None
    if not model.aio and ccs_supports_metrics(ccs):
        mport = b.free_port()
        argv += ["--metrics", f"127.0.0.1:{mport}"]
        metrics_url = f"http://127.0.0.1:{mport}/metrics"
    out["round_trips_method"] = ("node_metrics" if metrics_url
                                 else "redis_commandstats_evalsha")
    node = b.start(f"ccs-{model.name}", argv, pipe=True, log_stderr=True)
    b.wait_ready(node, target)
    redis_pid = redis_server.process.pid

    def probes() -> dict:
        return {"node_cpu": tree_cpu_seconds(node.pid), "redis_cpu": cpu_seconds(redis_pid),
                "cmds": command_calls(r), "metrics": scrape(metrics_url)}

    # each process caches what it learned: with N processes an account must have come
    # through each of them before the node is warm; connections land on processes at
    # random, so each pass sends an account's event on another connection (stride 5: 4N
    # distinct connections of the 16)
    passes = 1 if model.workers == 1 else min(4 * model.workers, args.channels)
    log(f"[{model.name}] ccs: warm-up, {passes} x one SMS event on each of {len(ids)} accounts")
    warm = b.batch(target, [("sms", a, f"warm-{model.name}-{k}-{a}", i + 5 * k)
                            for k in range(passes) for i, a in enumerate(ids)],
                   args.warm_limit_s * passes)
    log(f"  warm-up: {warm['sent']} requests, codes {warm['codes']}, "
        f"statuses {warm['statuses']}")
    out["warmup"] = {k: warm[k] for k in ("sent", "codes", "statuses", "errors")}
    phases.append(warm)

    log(f"[{model.name}] ccs: closed loop, {args.concurrency} in flight, {args.seconds:.0f} s")
    sat = b.closed(target, ids, probes=probes)
    phases.append(sat)
    out["saturated"] = sat
    out["tps"] = sat["tps"]
    out["ratio"] = round(sat["tps"] / out["noop_tps"], 3) if out["noop_tps"] else None
    p = sat.get("probe", {})
    core_s = p.get("node_cpu", 0) + p.get("redis_cpu", 0)
    out["requests_per_core_s"] = round(sat["requests"] / core_s) if core_s else None
    out["cpu_s"] = {k: round(p.get(k, 0), 2) for k in ("node_cpu", "redis_cpu", "client_cpu")}
    out["cpu_ms_per_request"] = {
        "noop_server": round(1000 * cpu.get("server_cpu", 0) / max(res["requests"], 1), 3),
        "node": round(1000 * p.get("node_cpu", 0) / max(sat["requests"], 1), 3),
        "redis": round(1000 * p.get("redis_cpu", 0) / max(sat["requests"], 1), 3)}
    log(f"  ccs: {sat['tps']} req/s (ratio {out['ratio']}), {out['requests_per_core_s']} "
        f"req per core-s, codes {sat['codes']}")
    sample = None
    if full:
        log(f"[{model.name}] ccs: MONITOR sample of what the node sends Redis, "
            f"{args.sample_seconds:.0f} s")
        with MonitorSample(redis_server, args.sample_seconds + 30) as mon:
            sample = b.load(target, "closed", accounts=ids, seconds=args.sample_seconds,
                            warmup=0.5, check_echo=True, concurrency=16)
        sample["monitor"] = mon.counts
        phases.append(sample)
        out["monitor_sample"] = {k: sample[k] for k in ("sent", "codes", "statuses", "errors")}
    out.update(round_trips(p, sat["requests"], metrics_url, sample))
    log(f"  round trips per request: {out['redis_round_trips_per_request']} "
        f"({out['round_trips_method']}), {out.get('redis_round_trips_per_request_monitor')} "
        f"(MONITOR: {out.get('redis_client_commands_per_request')})")

    rate = max(1.0, sat["tps"] / 2)
    log(f"[{model.name}] ccs: open loop at {rate:.0f} req/s, {args.seconds:.0f} s")
    lat = b.open(target, ids, rate, probes=probes)
    phases.append(lat)
    out["latency"] = lat
    out.update({k: lat[k] for k in ("p50_ms", "p95_ms", "p99_ms")})
    out["latency_rate_tps"] = lat["tps"]
    log(f"  p50 {lat['p50_ms']} p95 {lat['p95_ms']} p99 {lat['p99_ms']} ms at {lat['tps']} "
        f"req/s, codes {lat['codes']}")

    if full:
        log(f"[{model.name}] ccs: {args.hot_sessions} INITIALs left open on {HOT!r}")
        prime = b.batch(target, [("voice", HOT, f"hot-open-{i}")
                                 for i in range(args.hot_sessions)], args.warm_limit_s)
        phases.append(prime)
        out["hot_prime"] = {k: prime[k] for k in ("sent", "codes", "statuses", "errors")}
        out["hot_open_reservations"] = int(r.hlen(_account_keys(r, HOT).reservations))
        log(f"  {out['hot_open_reservations']} reservations held on {HOT!r}; "
            f"codes {prime['codes']}")
        log(f"[{model.name}] ccs: open loop at {rate:.0f} req/s on {HOT!r}, "
            f"{args.seconds:.0f} s")
        hot = b.open(target, [HOT], rate, probes=probes)
        phases.append(hot)
        out["hot"] = hot
        out["hot_account_p99_ms"] = hot["p99_ms"]
        log(f"  hot p50 {hot['p50_ms']} p95 {hot['p95_ms']} p99 {hot['p99_ms']} ms at "
            f"{hot['tps']} req/s, codes {hot['codes']}")
    node.stop()
    out["load_avg"] = os.getloadavg()[0]
    return out


def _account_keys(r, account: str):
    from accounts.keys import lookup_key, parse_lookup
    return parse_lookup(account, r.get(lookup_key(account)).decode()).keys


class MonitorSample:
    """What clients send redis-server (not what scripts run inside it) while it runs: MONITOR
    on its own connection, in a thread, bounded in time and lines. Counts by command name."""

    def __init__(self, server, max_s: float, max_lines: int = 5_000_000):
        self.client = server.client(socket_timeout=5)  # the node's health probe PINGs each s
        self.max_s, self.max_lines = max_s, max_lines
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def __enter__(self) -> MonitorSample:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        with contextlib.suppress(Exception), self.client.monitor() as m:
            for _ in range(self.max_lines):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                raw = m.connection.read_response()
                hit = MONITOR_LINE.match(raw) if isinstance(raw, bytes) else None
                if hit and hit.group(1) != b"lua":
                    name = hit.group(2).decode().lower()
                    self.counts[name] = self.counts.get(name, 0) + 1


def memory_by_key(r, accounts: int, sample: int = 300, limit: int = 2_000_000) -> dict:
    """Bytes per account by kind of key (ids and numbers in key names made `*`): MEMORY
    USAGE of up to `sample` keys of each kind, times how many there are."""
    groups: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for i, raw in enumerate(r.scan_iter(count=1000)):
        if i >= limit:
            break
        key = raw.decode(errors="replace")
        kind = re.sub(r"\{a:[^}]*\}", "{a}", key)
        kind = ":".join("*" if any(c.isdigit() for c in part) else part
                        for part in kind.split(":")[:4])
        counts[kind] = counts.get(kind, 0) + 1
        if len(groups.setdefault(kind, [])) < sample:
            groups[kind].append(key)
    out = {}
    for kind, keys in groups.items():
        pipe = r.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes = [x for x in pipe.execute() if x is not None]
        if sizes:
            out[kind] = round(sum(sizes) / len(sizes) * counts[kind] / accounts)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def round_trips(p: dict, requests: int, metrics_url: str | None, sample: dict | None) -> dict:
    """Redis round trips per request: the node's counters (saturated window) when it has
    them, else EVALSHA/EVAL calls seen by redis-server in that window. Also what MONITOR saw
    the node send during `sample` (a short closed phase): every command per request, and the
    round trips they make (background commands left out, and the expiry-index writes that
    share the script's pipeline)."""
    cmds = p.get("cmds", {})
    n = max(requests, 1)
    scripts = cmds.get("evalsha", 0) + cmds.get("eval", 0)
    out = {"redis_requests_counted": requests,
           "redis_script_calls_per_request": round(scripts / n, 3)}
    m = p.get("metrics") or {}
    if metrics_url and m.get("ccs_charge_requests_total"):
        out["redis_round_trips_per_request"] = round(
            m.get("ccs_redis_round_trips_total", 0) / m["ccs_charge_requests_total"], 3)
        out["node_metrics"] = {k: m.get(k) for k in ("ccs_redis_round_trips_total",
                                                     "ccs_charge_requests_total")}
    else:
        out["redis_round_trips_per_request"] = out["redis_script_calls_per_request"]
    if sample is None:
        return out
    sent = max(sample["sent"], 1)
    seen = {k: v for k, v in sample["monitor"].items() if k not in BACKGROUND}
    out["monitor_sample_requests"] = sample["sent"]
    out["redis_client_commands_per_request"] = {k: round(v / sent, 3)
                                                for k, v in sorted(seen.items())}
    out["redis_round_trips_per_request_monitor"] = round(
        sum(v for k, v in seen.items() if k not in PIPELINED) / sent, 3)
    return out


def targets_met(o: dict) -> dict:
    def ok(cond) -> bool | None:
        try:
            return bool(cond())
        except TypeError:
            return None
    return {"ratio": ok(lambda: o["ratio"] >= 0.8), "p99_ms": ok(lambda: o["p99_ms"] <= 10),
            "hot_account_p99_ms": ok(lambda: o["hot_account_p99_ms"] <= 2 * o["p99_ms"]),
            "redis_round_trips_per_request": ok(lambda: o["redis_round_trips_per_request"]
                                                <= 1.0),
            "requests_per_core_s": ok(lambda: o["requests_per_core_s"] >= 2000)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="each measured phase (15)")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured start of a closed "
                    "phase (2 s)")
    ap.add_argument("--accounts", type=int, default=10_000, help="prepaid accounts (10000)")
    ap.add_argument("--hot-sessions", type=int, default=5_000,
                    help="open sessions held on the hot account (5000)")
    ap.add_argument("--concurrency", type=int, default=64, help="in flight, closed loop (64)")
    ap.add_argument("--channels", type=int, default=16,
                    help="client gRPC channels, one connection each (16: the kernel spreads "
                         "connections over the processes of a --workers N server)")
    ap.add_argument("--models", default="w1,w2",
                    help="server models, each against its own no-op server: w<N>[t<T>] (N "
                         "processes on one port, T threads each, 16) or aio-w<N> (the "
                         "grpc.aio + redis.asyncio prototype); the first gets the full run "
                         "(MONITOR, hot account). Default w1,w2")
    ap.add_argument("--warm-limit-s", type=float, default=90.0,
                    help="time bound of the warm-up pass and of opening the hot sessions")
    ap.add_argument("--sample-seconds", type=float, default=3.0,
                    help="closed phase watched with MONITOR to count round trips (3 s)")
    ap.add_argument("--quick", action="store_true", help="a ~30 s smoke run: 500 accounts, "
                    "300 hot sessions, 2 s phases")
    args = ap.parse_args(argv)
    if args.quick:
        args.accounts, args.hot_sessions, args.seconds, args.warmup = 500, 300, 2.0, 1.0
        args.sample_seconds = 2.0
    if not (1 <= args.accounts <= 100_000 and 0 <= args.hot_sessions <= 100_000
            and 0.5 <= args.seconds <= 600 and 1 <= args.concurrency <= 1024
            and 1 <= args.channels <= 64 and 0.5 <= args.sample_seconds <= 60):
        ap.error("--accounts 1..100000, --hot-sessions 0..100000, --seconds 0.5..600, "
                 "--concurrency 1..1024, --channels 1..64, --sample-seconds 0.5..60")
    try:
        args.models = [Model(x) for x in args.models.split(",") if x]
    except ValueError as exc:
        ap.error(str(exc))
    if not args.models:
        ap.error("--models: at least one model")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop what we started
    tmp = Path(tempfile.mkdtemp(prefix="ccs-bench-charging-"))
    try:
        with contextlib.ExitStack() as stack:
            result = run(args, stack, tmp)
    except KeyboardInterrupt:
        log("interrupted: stopped everything it started")
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0 if result["audit_clean"] and not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
