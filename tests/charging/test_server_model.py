"""The server model (issue 12, item 6): `ccs serve --workers N` runs N node processes on one
port (SO_REUSEPORT). Real `ccs serve`, a real private redis-server, real gRPC over loopback;
each client channel is its own TCP connection, which the kernel gives to one of the workers.
"""

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
from google.protobuf.timestamp_pb2 import Timestamp

from accounts.audit import audit
from accounts.store import AccountStore
from proto.ccs.v1 import charging_pb2 as pb
from proto.ccs.v1 import charging_pb2_grpc
from rating.catalog import parse_catalog
from tests.charging.online_fixtures import CATALOG, T0
from tests.charging.test_charging_service import unit
from tests.charging.test_node_operations import named, scrape

CCS = str(Path(sys.executable).with_name("ccs"))
CHANNELS = 24  # connections; all on one of two workers: a chance of 2 in 2^24


def _channel(port: int) -> grpc.Channel:
    """A channel with a TCP connection of its own (no subchannel shared with the others)."""
    return grpc.insecure_channel(f"127.0.0.1:{port}",
                                 options=(("grpc.use_local_subchannel_pool", 1),))


def _initial(sid: str, n: int = 0) -> pb.ChargeRequest:
    return pb.ChargeRequest(session_id=sid, request_type=pb.INITIAL, request_number=n,
                            subscriber="alice", event_time=Timestamp(seconds=T0),
                            units=[unit(requested=120)])


def _pids(log: str) -> dict[int, int]:
    """Worker index -> pid of the last start of each, from the supervisor's log."""
    return {int(i): int(p) for i, p in re.findall(r"ccs\.server worker (\d+) pid (\d+) serving",
                                                  log)}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def alice(redis_client, tmp_path):
    # created at T0, so that its offer is active at the requests' event time
    store = AccountStore(redis_client, parse_catalog(CATALOG), clock=lambda: T0)
    store.create("alice", credit_limit=0, offers=("basic",))
    store.topup("alice", 10_000_000, op_id="t")
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return store, path


@pytest.fixture
def workers(alice, redis_url, tmp_path):
    """`ccs serve --workers 2 --metrics` on free ports: (process, port, metrics port, log)."""
    _, catalog_path = alice
    log = tmp_path / "node.log"
    proc = subprocess.Popen(
        [CCS, "serve", "--workers", "2", "--threads", "4", "--listen", "127.0.0.1:0",
         "--redis", redis_url, "--catalog", str(catalog_path), "--metrics", "127.0.0.1:0",
         "--grace", "1"], stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    try:
        line = proc.stdout.readline()
        hit = re.fullmatch(r"ccs node listening on 127\.0\.0\.1:(\d+); metrics on "
                           r"http://127\.0\.0\.1:(\d+)/metrics; redis (\S+); 2 worker "
                           r"processes\n", line)
        assert hit, (line, log.read_text())
        assert hit.group(3) == redis_url
        yield proc, int(hit.group(1)), int(hit.group(2)), log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_two_workers_answer_a_retransmission_once_and_sigterm_stops_all(alice, workers):
    store, _ = alice
    proc, port, mport, log = workers
    pids = _pids(log.read_text())
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    answers = []
    for _ in range(CHANNELS):
        with _channel(port) as ch:
            stub = charging_pb2_grpc.ChargingStub(ch)
            with pytest.raises(grpc.RpcError) as bad:  # logged by the worker that has ch
                stub.Charge(pb.ChargeRequest(request_type=pb.INITIAL), timeout=10)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, log.read_text()
            # the same request, (s1, 0), on every connection: the first is served, every
            # other is a retransmission answered from the first answer
            answers.append(stub.Charge(_initial("s1"), timeout=10))
    assert {a.SerializeToString() for a in answers} == {answers[0].SerializeToString()}
    assert (answers[0].result_code, answers[0].grants[0].granted.seconds) == (2001, 120)
    # held once: 120 s at peak = connect 0.0500 + 2 minutes x 0.1200 = 0.2900
    assert store.get_account("alice").reserved == 290_000
    # /metrics is the sum over both workers
    m = scrape(mport)
    assert named(m, "ccs_charge_requests_total") == {
        (("result", "2001"), ("type", "INITIAL")): float(CHANNELS)}
    assert named(m, "ccs_grpc_requests_total") == {
        (("code", "INVALID_ARGUMENT"), ("method", "ccs.v1.Charging/Charge")): float(CHANNELS),
        (("code", "OK"), ("method", "ccs.v1.Charging/Charge")): float(CHANNELS)}
    assert m[("ccs_open_reservations", ())] == 1.0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert all(_gone(pid) for pid in pids.values())
    text = log.read_text()
    # both workers served some of the connections (so both answered the retransmission)
    for i in (0, 1):
        assert re.search(rf"INFO \[worker {i}\] ccs\.requests ccs\.v1\.Charging/Charge: "
                         r"INVALID_ARGUMENT session_id: required\n", text), text
    assert "died" not in text
    assert audit(store.r) == []


def test_a_worker_that_dies_is_reported_and_started_again(alice, workers):
    store, _ = alice
    proc, port, _mport, log = workers
    first = _pids(log.read_text())
    os.kill(first[1], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while _pids(log.read_text()).get(1) == first[1] and time.monotonic() < deadline \
            and proc.poll() is None:
        time.sleep(0.2)
    text = log.read_text()
    assert f"ERROR ccs.server worker 1 (pid {first[1]}) died: killed by SIGKILL; " \
           "starting it again" in text, text
    again = _pids(text)
    assert again[0] == first[0] and again[1] != first[1]
    for i in range(CHANNELS):  # every connection is served, by the old or the new worker
        with _channel(port) as ch:
            r = charging_pb2_grpc.ChargingStub(ch).Charge(_initial(f"s{i}"), timeout=10)
            assert r.result_code == 2001
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert all(_gone(pid) for pid in again.values())
    assert store.get_account("alice").reserved == CHANNELS * 290_000
    assert audit(store.r) == []


def test_workers_share_the_listen_errors_of_one_node(tmp_path, redis_url, admin_catalog_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        proc = subprocess.run(
            [CCS, "serve", "--workers", "2", "--listen", taken, "--redis", redis_url,
             "--catalog", str(admin_catalog_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"ccs serve: --listen: cannot listen on {taken}: "), \
        proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""


@pytest.mark.parametrize("option,value", [("--workers", "0"), ("--workers", "two"),
                                          ("--threads", "0")])
def test_serve_refuses_a_bad_count(tmp_path, option, value):
    proc = subprocess.run([CCS, "serve", option, value, "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    top = 64 if option == "--workers" else 256
    assert proc.stderr.splitlines()[-1] == \
        f"ccs serve: error: argument {option}: {option}: expected 1..{top}, got {value!r}"
