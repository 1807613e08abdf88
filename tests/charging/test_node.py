"""`ccs serve` end to end: a real process, health and reflection over gRPC, a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from accounts.embedded import free_port
from charging.server import build_node, check_health
from proto.ccs.v1 import charging_pb2, charging_pb2_grpc

CCS = str(Path(sys.executable).with_name("ccs"))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _embedded_redis_pid(data_dir: Path) -> int:
    port = int((data_dir / "redis" / "redis.port").read_text())
    return int(redis.Redis(host="127.0.0.1", port=port).info("server")["process_id"])


def _list_services(target: str) -> set[str]:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        return {s.name for s in reply.list_services_response.service}


def test_serve_answers_health_and_reflection_then_stops_clean(tmp_path):
    port = free_port()
    env = dict(os.environ, CCS_DATA_DIR=str(tmp_path))
    env.pop("CCS_REDIS_URL", None)
    node = subprocess.Popen([CCS, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.PIPE, stderr=(tmp_path / "node.log").open("w"), text=True)
    try:
        line = node.stdout.readline()
        assert re.search(rf"listening on 127.0.0.1:{port}", line), line
        target = f"127.0.0.1:{port}"
        assert check_health(target) == "SERVING"
        assert check_health(target, service="ccs.v1.Charging") == "SERVING"
        assert {"ccs.v1.Charging", "ccs.v1.Accounts", "ccs.v1.Billing",
                "grpc.health.v1.Health"} <= _list_services(target)
        redis_pid = _embedded_redis_pid(tmp_path)
        assert _alive(redis_pid)
        assert (tmp_path / "redis" / "appendonlydir").is_dir()
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=20) == 0
    deadline = time.monotonic() + 5
    while _alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(redis_pid)


def test_unbuilt_charging_calls_answer_unimplemented():
    node = build_node("127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
            stub = charging_pb2_grpc.ChargingStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Charge(charging_pb2.ChargeRequest(session_id="s"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        node.stop(0)


def test_health_says_not_serving_while_draining():
    node = build_node("127.0.0.1:0")
    target = f"127.0.0.1:{node.port}"
    node.health.enter_graceful_shutdown()
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    node.stop(0)


def test_version_and_help():
    out = subprocess.run([CCS, "version"], capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"ccs \d+\.\d+\.\d+\n", out)
    helptext = subprocess.run([CCS, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("serve", "version", "demo"):
        assert command in helptext


def test_the_node_sweeps_reservations_of_silent_sessions(tmp_path, redis_client, redis_url,
                                                         admin_catalog_path):
    from accounts.store import AccountStore
    from rating.catalog import load_catalog

    store = AccountStore(redis_client, load_catalog(admin_catalog_path))
    store.create("P1", op_id="c-1")
    store.topup("P1", 10_000_000, op_id="t-1")
    store.reserve("P1", "dead-session", op_id="r-1", money=4_000_000, validity_s=1)
    assert store.get_account("P1").reserved == 4_000_000
    port = free_port()
    node = subprocess.Popen(
        [CCS, "serve", "--listen", f"127.0.0.1:{port}", "--redis", redis_url,
         "--catalog", str(admin_catalog_path), "--reservation-grace", "0"],
        stdout=subprocess.PIPE, stderr=(tmp_path / "node.log").open("w"), text=True)
    try:
        assert "listening" in node.stdout.readline()
        deadline = time.monotonic() + 20  # a deadline for the test, not a speed claim
        while store.get_account("P1").reservations and time.monotonic() < deadline:
            time.sleep(0.2)
        account = store.get_account("P1")
        assert account.reservations == () and account.reserved == 0
        assert account.balance == 10_000_000
        ops = [entry["op"] for entry in store.ledger("P1")]
        assert ops[-1] == "release"
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=20) == 0
