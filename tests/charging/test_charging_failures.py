"""A node killed mid-session, redis-server killed under load: real processes, real gRPC.

- SIGKILL of `ccs serve` in the middle of sessions: a new node continues them; a session
  nobody continues is released by the sweeper, and what it committed stays billable.
- SIGKILL of redis-server (AOF, fsync always) under load: every charge a client was told
  about is in Redis after the restart, and the audit is clean.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from accounts.audit import audit
from accounts.embedded import EmbeddedRedis, free_port
from accounts.online import OnlineStore
from accounts.store import AccountStore
from proto.ccs.v1 import charging_pb2 as pb
from proto.ccs.v1 import charging_pb2_grpc, common_pb2
from rating.catalog import load_catalog
from tests.charging.online_fixtures import CATALOG, FIXED

CCS = str(Path(sys.executable).with_name("ccs"))


@pytest.fixture
def redis_srv(tmp_path):
    srv = EmbeddedRedis(tmp_path / "redis").start()
    yield srv
    srv.cleanup()


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return path


def start_node(tmp_path, redis_url, catalog_file, *extra):
    port = free_port()
    log = (tmp_path / f"node-{port}.log").open("w")
    proc = subprocess.Popen(
        [CCS, "serve", "--listen", f"127.0.0.1:{port}", "--redis", redis_url,
         "--catalog", str(catalog_file), *extra],
        stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    assert re.search(rf"listening on 127.0.0.1:{port}", line), line
    return proc, f"127.0.0.1:{port}"


def stub_for(target):
    channel = grpc.insecure_channel(target)
    return channel, charging_pb2_grpc.ChargingStub(channel)


def voice(kind, sid, n, *, requested=None, used=None, sub="alice"):
    u = pb.ServiceUnit(rating_group=1, service="voice", destination=FIXED)
    if requested is not None:
        u.requested.CopyFrom(common_pb2.Units(seconds=requested))
    if used is not None:
        u.used.CopyFrom(common_pb2.Units(seconds=used))
    return pb.ChargeRequest(session_id=sid, request_type=kind, request_number=n,
                            subscriber=sub, units=[u])


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_node_killed_mid_session(tmp_path, redis_srv, catalog_file):
    catalog = load_catalog(catalog_file)
    store = AccountStore(redis_srv.client(), catalog)
    store.create("alice", credit_limit=0, offers=("basic",))
    store.topup("alice", 10_000_000, op_id="t")
    # holds valid 10 s (+1 s grace): longer than a node's start-up on a loaded machine, so
    # sessions a and b outlive the crash; the orphan's hold then lapses and is swept
    node, target = start_node(tmp_path, redis_srv.url, catalog_file, "--validity", "10",
                              "--reservation-grace", "1")
    channel, stub = stub_for(target)
    try:
        for sid in ("a", "b", "orphan"):
            assert stub.Charge(voice(pb.INITIAL, sid, 0, requested=600), timeout=10) \
                .result_code == 2001
            r = stub.Charge(voice(pb.UPDATE, sid, 1, requested=600, used=300), timeout=10)
            assert r.charged in ("0.1000", "0.1500")  # 300 s to a fixed line: 0.10 by day
        node.send_signal(signal.SIGKILL)
        node.wait(10)
    finally:
        channel.close()
        stop(node)
    node2, target2 = start_node(tmp_path, redis_srv.url, catalog_file, "--validity", "10",
                                "--reservation-grace", "1")
    channel, stub = stub_for(target2)
    try:
        again = stub.Charge(voice(pb.UPDATE, "a", 1, requested=600, used=300), timeout=10)
        assert again.charged == r.charged  # a retransmission after the crash: the first answer
        for sid in ("a", "b"):
            t = stub.Charge(voice(pb.TERMINATE, sid, 2, used=300), timeout=10)
            assert (t.result_code, t.charged) == (2001, r.charged)
        deadline = time.monotonic() + 60
        while store.get_account("alice").reserved and time.monotonic() < deadline:
            time.sleep(0.3)
        acct = store.get_account("alice")
        assert acct.reserved == 0  # the orphan's hold, released by the new node's sweeper
        paid = int(r.charged.replace(".", "")) * 100
        assert acct.balance == 10_000_000 - 5 * paid
        recs = OnlineStore(store).records("alice", 0, 2**40)
        assert sorted(x["cdr_id"] for x in recs) == [
            "a/1/1", "a/1/2", "b/1/1", "b/1/2", "orphan/1/1"]
        assert audit(store.r) == []
    finally:
        channel.close()
        stop(node2)


def test_redis_killed_under_load_loses_no_acknowledged_charge(tmp_path, redis_srv,
                                                               catalog_file):
    catalog = load_catalog(catalog_file)
    store = AccountStore(redis_srv.client(), catalog)
    store.create("alice", credit_limit=None, offers=("basic",))  # unlimited postpaid
    node, target = start_node(tmp_path, redis_srv.url, catalog_file)
    acked: list[tuple[str, str]] = []  # (cdr id, charged) of every answered commit
    stop_load = threading.Event()

    def load(worker: int):
        channel, stub = stub_for(target)
        n = 0
        try:
            while not stop_load.is_set() and n < 2000:
                sid = f"w{worker}-{n}"
                n += 1
                try:
                    if stub.Charge(voice(pb.INITIAL, sid, 0, requested=60), timeout=5) \
                            .result_code != 2001:
                        continue
                    t = stub.Charge(voice(pb.TERMINATE, sid, 1, used=60), timeout=5)
                    if t.result_code == 2001:
                        acked.append((f"{sid}/1/1", t.charged))
                except grpc.RpcError:
                    time.sleep(0.05)  # UNAVAILABLE while redis is down
        finally:
            channel.close()

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    try:
        for w in workers:
            w.start()
        time.sleep(2)
        redis_srv.kill()
        time.sleep(1)
        redis_srv.restart()
        time.sleep(2)
        stop_load.set()
        for w in workers:
            w.join(30)
    finally:
        stop_load.set()
        stop(node)
    assert len(acked) > 10
    store = AccountStore(redis_srv.client(), catalog)
    recs = {x["cdr_id"]: x for x in OnlineStore(store).records("alice", 0, 2**40)}
    missing = [cid for cid, _ in acked if cid not in recs]
    assert missing == []
    assert audit(store.r) == []
