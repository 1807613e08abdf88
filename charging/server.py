"""The ccs gRPC node: builds the server with every servicer, health and reflection, and runs it.

Servicers stay thin (protobuf <-> domain); this module only wires them and owns the lifecycle.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.backoff import NoBackoff
from redis.retry import Retry

from proto.ccs.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    charging_pb2,
    charging_pb2_grpc,
)

log = logging.getLogger("ccs.server")

SERVICE_NAMES = (
    charging_pb2.DESCRIPTOR.services_by_name["Charging"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name,
    billing_pb2.DESCRIPTOR.services_by_name["Billing"].full_name,
)


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
        pool = client.connection_pool
        # where and who the store's client connects as; timeouts and retries of the probe's own
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


@dataclass
class Node:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    probe: RedisHealthProbe | None = None

    def stop(self, grace: float = 5.0) -> None:
        """Graceful drain: health says NOT_SERVING first, then in-flight calls get `grace` s."""
        self.health.enter_graceful_shutdown()
        if self.probe is not None:
            self.probe.stop()
        self.server.stop(grace).wait()


def build_node(listen: str, *, store=None, catalog=None, max_workers: int = 16,
               health_interval_s: float = 1.0, charger=None, notifier=None) -> Node:
    """Create and start a server on `listen` (HOST:PORT; port 0 picks a free one).

    `store` (accounts.store.AccountStore) enables the Accounts service; without it the
    Accounts calls answer UNIMPLEMENTED too. `charger` (charging.charge.Charger) enables
    Charging; Billing answers UNIMPLEMENTED until built.
    With a store, health follows its Redis (`RedisHealthProbe`, every `health_interval_s`).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    if charger is not None:  # charging.charge.Charger: credit control over the store
        from charging.servicer import ChargingService

        charging_pb2_grpc.add_ChargingServicer_to_server(ChargingService(charger, notifier),
                                                         server)
    else:
        charging_pb2_grpc.add_ChargingServicer_to_server(charging_pb2_grpc.ChargingServicer(),
                                                         server)
    billing_pb2_grpc.add_BillingServicer_to_server(billing_pb2_grpc.BillingServicer(), server)
    if store is not None:
        from charging.accounts_service import AccountsService

        accounts_pb2_grpc.add_AccountsServicer_to_server(AccountsService(store, catalog), server)
    else:
        accounts_pb2_grpc.add_AccountsServicer_to_server(accounts_pb2_grpc.AccountsServicer(), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                         reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port(listen)
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    server.start()
    probe = None
    if store is not None:
        probe = RedisHealthProbe(store.r, health_servicer, interval_s=health_interval_s).start()
    else:
        for name in ("", *SERVICE_NAMES):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("ccs node listening on port %d", port)
    return Node(server=server, port=port, health=health_servicer, probe=probe)


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
