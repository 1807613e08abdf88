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
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

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


@dataclass
class Node:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float = 5.0) -> None:
        """Graceful drain: health says NOT_SERVING first, then in-flight calls get `grace` s."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def build_node(listen: str, *, store=None, catalog=None, max_workers: int = 16) -> Node:
    """Create and start a server on `listen` (HOST:PORT; port 0 picks a free one).

    `store` (accounts.store.AccountStore) enables the Accounts service; without it the
    Accounts calls answer UNIMPLEMENTED too. Charging and Billing answer UNIMPLEMENTED until built.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    charging_pb2_grpc.add_ChargingServicer_to_server(charging_pb2_grpc.ChargingServicer(), server)
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
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("ccs node listening on port %d", port)
    return Node(server=server, port=port, health=health_servicer)


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
