"""The ccs gRPC node: builds its listeners with their servicers, health and reflection, the
metrics interceptor and `/metrics`, optional TLS, and runs them; `Supervisor` runs several
such nodes as processes on one port (`ccs serve --workers N`).

Servicers stay thin (protobuf <-> domain); this module only wires them and owns the lifecycle.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.backoff import NoBackoff
from redis.retry import Retry

from charging.interceptors import MetricsInterceptor, NodeMetrics, serve_metrics
from charging.tls import TlsFiles
from proto.ccs.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    charging_pb2,
    charging_pb2_grpc,
)

log = logging.getLogger("ccs.server")

CHARGING = charging_pb2.DESCRIPTOR.services_by_name["Charging"].full_name
ACCOUNTS = accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name
BILLING = billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name
SERVICE_NAMES = (CHARGING, ACCOUNTS, BILLING)
ADMIN_NAMES = (ACCOUNTS, BILLING)  # what `admin_listen` serves apart from Charging
GRPC_OPTIONS = (("grpc.so_reuseport", 1),)


class ListenError(OSError):
    """A listener could not bind; `role` is "listen", "admin-listen" or "metrics"."""

    def __init__(self, role: str, address: str, reason: str):
        super().__init__(f"cannot listen on {address}: {reason}")
        self.role = role


_PROBE_KWARGS = frozenset({"host", "port", "path", "db", "username", "password",
                           "credential_provider", "protocol"})


class RedisHealthProbe:
    """Health follows Redis: a background thread PINGs it every `interval_s` (with a short
    timeout, on a connection of its own) and sets the node's overall status and each ccs
    service to SERVING or NOT_SERVING, so a load balancer stops routing to a node that
    cannot reach its account store, and routes to it again once Redis answers.
    Calls never wait for the probe; it only changes what the health service says."""

    def __init__(self, client, health_servicer: health.HealthServicer, *,
                 names=("", *SERVICE_NAMES), interval_s: float = 1.0, timeout_s: float = 0.5):
        from accounts.cluster import is_cluster

        if is_cluster(client):  # a cluster of its own: the same nodes, the probe's timeouts
            from redis.cluster import ClusterNode, RedisCluster

            nodes = [ClusterNode(n.host, n.port) for n in client.get_primaries()]
            self._client = RedisCluster(startup_nodes=nodes, socket_timeout=timeout_s,
                                        socket_connect_timeout=timeout_s)
        else:
            pool = client.connection_pool
            # where and who the store's client connects as; timeouts, retries of the probe's
            kwargs = {k: v for k, v in pool.connection_kwargs.items()
                      if k in _PROBE_KWARGS or k.startswith("ssl")}
            kwargs.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                          retry=Retry(NoBackoff(), 0))
            self._client = redis.Redis(connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class, max_connections=2, **kwargs))
        self._health = health_servicer
        self._names = tuple(names)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.serving: bool | None = None

    def check(self) -> bool:
        """One probe: PING, then set every name's status; True when Redis answered."""
        try:
            up = bool(self._client.ping())
        except (redis.RedisError, OSError):
            up = False
        if up != self.serving:
            if up:
                log.info("redis answers: health SERVING")
            else:
                log.warning("redis unreachable: health NOT_SERVING")
            status = (health_pb2.HealthCheckResponse.SERVING if up
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in self._names:
                self._health.set(name, status)
            self.serving = up
        return up

    def start(self) -> RedisHealthProbe:
        self.check()  # the first status is known before the node is handed out
        self._thread = threading.Thread(target=self._run, name="ccs-health-probe", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._client.close()


def _check_bindable(role: str, address: str) -> None:
    """A ListenError with the OS's reason when `address` cannot be bound, checked the way
    grpc binds (SO_REUSEADDR and SO_REUSEPORT: nodes may share a port); grpc's own bind
    failing would only say "Failed to bind" after logging on stderr."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as exc:
        raise ListenError(role, address, str(exc)) from None
    reason = "no address"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind(sockaddr)
                return  # grpc serves when one of the resolved addresses binds
            except OSError as exc:
                reason = str(exc)
    raise ListenError(role, address, reason)


class _Healths:
    """The health servicers of the node's listeners, set as one: the probe's status of a
    service goes to the listeners that serve it, the overall status ("") to all."""

    def __init__(self, listeners):
        self._listeners = listeners  # [(HealthServicer, service names)]

    def set(self, name: str, status) -> None:
        for servicer, names in self._listeners:
            if name == "" or name in names:
                servicer.set(name, status)


@dataclass
class Node:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    probe: RedisHealthProbe | None = None
    admin_server: grpc.Server | None = None  # Accounts and Billing, with `admin_listen`
    admin_port: int | None = None
    admin_health: health.HealthServicer | None = None
    metrics: NodeMetrics | None = None
    metrics_http: object | None = None  # the /metrics HTTP server, with `metrics_listen`
    metrics_port: int | None = None

    def stop(self, grace: float = 5.0) -> None:
        """Graceful drain: health says NOT_SERVING first, then in-flight calls get `grace` s."""
        servers = [s for s in (self.server, self.admin_server) if s is not None]
        for h in (self.health, self.admin_health):
            if h is not None:
                h.enter_graceful_shutdown()
        if self.probe is not None:
            self.probe.stop()
        for done in [s.stop(grace) for s in servers]:  # both listeners drain at once
            done.wait()
        if self.metrics_http is not None:
            self.metrics_http.shutdown()
            self.metrics_http.server_close()


def build_node(listen: str, *, store=None, catalog=None, max_workers: int = 16,
               health_interval_s: float = 1.0, charger=None, notifier=None,
               admin_listen: str | None = None, tls: TlsFiles | None = None,
               metrics_listen: str | None = None, sweeper_stats=None,
               billing_engine=None) -> Node:
    """Create and start the node's listeners (HOST:PORT; port 0 picks a free one).

    `store` (accounts.store.AccountStore) enables the Accounts service; without it the
    Accounts calls answer UNIMPLEMENTED too. `charger` (charging.charge.Charger) enables
    Charging; `billing_engine` (the bill run's database, billing.db.open_database) with a
    catalog enables Billing.
    With `admin_listen`, Accounts and Billing are served there only, and `listen` serves
    Charging only (a network element's port cannot top up an account); without it `listen`
    serves everything. Both listeners have health and reflection, the metrics interceptor
    and, with `tls` (charging.tls.TlsFiles), the same TLS or mutual TLS.
    `metrics_listen` serves Prometheus `/metrics` over plain HTTP (`sweeper_stats`: the
    sweeper's counts). With a store, health follows its Redis (`RedisHealthProbe`, every
    `health_interval_s`). A listener that cannot bind is a `ListenError`; nothing stays up.
    """
    metrics = NodeMetrics(charger, store.r if store is not None else None, sweeper_stats)
    interceptors = (MetricsInterceptor(metrics),)
    plan = [("listen", listen, SERVICE_NAMES)] if admin_listen is None else \
        [("listen", listen, (CHARGING,)), ("admin-listen", admin_listen, ADMIN_NAMES)]
    started: list[tuple[grpc.Server, int, health.HealthServicer, tuple]] = []
    metrics_http = metrics_port = None
    try:
        if metrics_listen is not None:
            try:
                metrics_http, metrics_port = serve_metrics(metrics_listen, metrics)
            except (OSError, ValueError) as exc:
                raise ListenError("metrics", metrics_listen, str(exc)) from None
        for role, address, names in plan:
            # SO_REUSEPORT (grpc's default on Linux, asked for explicitly): the processes of
            # `ccs serve --workers N` bind the same port and the kernel spreads connections
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                 interceptors=interceptors, options=GRPC_OPTIONS)
            health_servicer = _add_services(server, names, store, catalog, charger, notifier,
                                            billing_engine)
            _check_bindable(role, address)
            try:
                port = server.add_secure_port(address, tls.server_credentials()) if tls \
                    else server.add_insecure_port(address)
            except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
                raise ListenError(role, address, str(exc)) from None
            if port == 0:
                raise ListenError(role, address, "the address cannot be bound")
            server.start()
            started.append((server, port, health_servicer, names))
    except BaseException:
        for server, *_ in started:
            server.stop(0)
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
        raise
    healths = _Healths([(h, names) for _, _, h, names in started])
    probe = None
    if store is not None:
        probe = RedisHealthProbe(store.r, healths, interval_s=health_interval_s).start()
    else:
        for name in ("", *SERVICE_NAMES):
            healths.set(name, health_pb2.HealthCheckResponse.SERVING)
    (server, port, health_servicer, _), *admin = started
    node = Node(server=server, port=port, health=health_servicer, probe=probe,
                metrics=metrics, metrics_http=metrics_http, metrics_port=metrics_port)
    if admin:
        node.admin_server, node.admin_port, node.admin_health, _ = admin[0]
        log.info("ccs node: Charging on port %d, Accounts and Billing on port %d",
                 node.port, node.admin_port)
    else:
        log.info("ccs node listening on port %d", port)
    return node


def _add_services(server, names, store, catalog, charger, notifier,
                  billing_engine=None) -> health.HealthServicer:
    """Add the ccs services in `names` to `server`, with health and reflection; a service
    left out is not served there at all (UNIMPLEMENTED)."""
    if CHARGING in names:
        if charger is not None:  # charging.charge.Charger: credit control over the store
            from charging.servicer import ChargingService

            charging_pb2_grpc.add_ChargingServicer_to_server(ChargingService(charger, notifier),
                                                             server)
        else:
            charging_pb2_grpc.add_ChargingServicer_to_server(
                charging_pb2_grpc.ChargingServicer(), server)
    if BILLING in names:
        if billing_engine is not None and catalog is not None:
            from charging.billing_service import BillingService

            billing_pb2_grpc.add_BillingServicer_to_server(
                BillingService(billing_engine, catalog, store), server)
        else:
            billing_pb2_grpc.add_BillingServicer_to_server(billing_pb2_grpc.BillingServicer(),
                                                           server)
    if ACCOUNTS in names:
        if store is not None:
            from charging.accounts_service import AccountsService

            accounts_pb2_grpc.add_AccountsServicer_to_server(AccountsService(store, catalog),
                                                             server)
        else:
            accounts_pb2_grpc.add_AccountsServicer_to_server(
                accounts_pb2_grpc.AccountsServicer(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        tuple(names) + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                        reflection.SERVICE_NAME),
        server,
    )
    return health_servicer


def check_health(target: str, timeout: float = 5.0, service: str = "") -> str:
    """Ask a node's standard health service; returns the status name (e.g. 'SERVING')."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_for_signal(node: Node, grace: float = 5.0) -> None:
    """Block until SIGTERM or SIGINT, then drain and stop the node."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    log.info("stopping: draining for up to %.1fs", grace)
    node.stop(grace)


# --- several processes on one port: `ccs serve --workers N` -------------------------------

WORKER_READY = "ccs worker "  # a worker's ready line on stdout, then JSON


def announce_worker(index: int, node: Node) -> None:
    """A worker of `ccs serve --workers N` tells its supervisor (stdout, one line) that it
    serves, and where; stdout then goes to /dev/null (the supervisor stops reading)."""
    line = WORKER_READY + json.dumps({"index": index, "pid": os.getpid(), "port": node.port,
                                      "admin_port": node.admin_port,
                                      "metrics_port": node.metrics_port})
    sys.stdout.write(line + "\n")  # one write: the supervisor reads whole lines
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _die_with_parent() -> None:  # in the worker, between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """`workers` processes of `ccs serve` on the same listeners (SO_REUSEPORT: the kernel
    spreads incoming connections over them). Each is a whole node with its own Charger,
    caches and Redis connections; the state they share is in Redis.

    Worker 0 starts first, on the addresses asked for (a port 0 becomes a real port), and is
    the one that runs the reservation sweeper; the others then bind the ports it got.
    `command(index, ports)` is a worker's argv (`ports`: None for the first start of worker
    0, else its ready facts: the real ports every later start binds, a restarted worker 0's
    too). A worker that dies is reported (ERROR on stderr, with its exit code or
    signal) and started again. `stop()` (SIGTERM or SIGINT) sends every worker SIGTERM: each
    drains for its own grace; one still running `grace + 15` s later is killed."""

    def __init__(self, workers: int, command, *, grace: float = 5.0,
                 ready_timeout_s: float = 120.0):
        self.count = workers
        self.command = command
        self.grace = grace
        self.ready_timeout_s = ready_timeout_s
        self.procs: list[subprocess.Popen | None] = [None] * workers
        self.ready: list[dict | None] = [None] * workers
        self.started_at = [0.0] * workers
        self.failures = [0] * workers
        self.bound: dict | None = None
        self.stopping = threading.Event()

    def _spawn(self, index: int) -> subprocess.Popen:
        if self.bound is None and self.ready[0] is not None:
            self.bound = self.ready[0]  # worker 0's real ports: every later start binds them
        proc = subprocess.Popen(self.command(index, self.bound), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
        self.procs[index], self.ready[index] = proc, None
        self.started_at[index] = time.monotonic()
        return proc

    def _await_ready(self, index: int) -> bool:
        """Until the worker prints its ready line (True), exits or times out (False)."""
        proc = self.procs[index]
        deadline = time.monotonic() + self.ready_timeout_s
        buf = b""
        fd = proc.stdout.fileno()
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break  # exited (or closed its stdout) before it was ready
                buf += chunk
                for line in buf.decode(errors="replace").split("\n")[:-1]:  # whole lines
                    if line.startswith(WORKER_READY):
                        self.ready[index] = json.loads(line[len(WORKER_READY):])
                        proc.stdout.close()
                        return True
        proc.stdout.close()
        return False

    def start(self) -> int:
        """Start every worker; 0 once all serve, else the failing worker's exit code (its
        stderr, the supervisor's, says why) with every other worker stopped."""
        self._spawn(0)
        if self._await_ready(0):
            for i in range(1, self.count):
                self._spawn(i)
            if all(self._await_ready(i) for i in range(1, self.count)):
                for i in range(self.count):
                    log.info("worker %d pid %d serving", i, self.procs[i].pid)
                return 0
        failed = next((p for p in self.procs if p is not None and p.poll() is not None), None)
        self.shutdown()
        return failed.returncode if failed is not None and failed.returncode > 0 else 1

    def watch(self, poll_s: float = 0.5) -> None:
        """Until `stop()`: report a worker that died and start it again (after a pause that
        doubles, up to 30 s, while it keeps dying within 10 s of its start)."""
        while not self.stopping.wait(poll_s):
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                if self.stopping.is_set():  # a Ctrl-C reaches the workers too
                    return
                quick = time.monotonic() - self.started_at[i] < 10
                self.failures[i] = self.failures[i] + 1 if quick else 0
                pause = min(30.0, 2.0 ** self.failures[i]) if quick else 0.0
                log.error("worker %d (pid %d) died: %s; starting it again%s", i, proc.pid,
                          _exit_text(proc.returncode),
                          f" in {pause:.0f} s" if pause else "")
                if pause and self.stopping.wait(pause):
                    return
                self._spawn(i)
                if self._await_ready(i):
                    log.info("worker %d pid %d serving", i, self.procs[i].pid)

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """SIGTERM to every worker, then wait; kill what is left after `grace + 15` s."""
        self.stopping.set()
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 15
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d still running after %.0f s: killed", p.pid,
                          self.grace + 15)
                p.kill()
                p.wait(5)

    def metrics_ports(self) -> list[int]:
        """The private /metrics ports of the workers serving now."""
        return [r["metrics_port"] for p, r in zip(self.procs, self.ready, strict=True)
                if r and r.get("metrics_port") and p is not None and p.poll() is None]

    def handle_signals(self) -> None:
        """SIGTERM and SIGINT stop the supervisor (its workers drain and stop)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        """Watch the workers until `stop()`, then stop them all."""
        try:
            self.watch()
        finally:
            log.info("stopping %d workers: each drains for up to %.1fs", self.count, self.grace)
            self.shutdown()
