"""ccs on a Redis Cluster: three masters from the real redis-server on loopback ports, the
online flows, a family, the sweeper (fast and slow path), lost scripts on one node, events,
the audit, and the CLI through a redis+cluster:// URL. Amounts as in test_charge_engine.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from accounts import sweeper
from accounts.audit import audit
from accounts.embedded import free_port, redis_server_binary
from accounts.errors import AccountExists
from accounts.keys import EXPIRY_INDEX, expiry_member
from accounts.online import (
    OnlineStore,
    finals_key,
    records_key,
    reservation_field,
    session_key,
)
from accounts.store import AccountStore
from charging import charge as C
from charging import notifications
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG, T0, Clock, req, voice

EUR = 1_000_000
MASTERS = 3
ROOT = Path(__file__).resolve().parents[2]


class Cluster:
    """Three redis-server processes in cluster mode, each with its own folder, on free
    loopback ports (client and bus), slots split in three, joined with CLUSTER MEET."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.dirs: list[Path] = []
        self.ports: list[int] = []

    def start(self, timeout: float = 30.0) -> Cluster:
        buses = []
        for _ in range(MASTERS):
            folder = Path(tempfile.mkdtemp(prefix="ccs-cluster-"))
            port, bus = free_port(), free_port()
            self.dirs.append(folder)
            self.procs.append(subprocess.Popen(
                [redis_server_binary(), "--port", str(port), "--cluster-port", str(bus),
                 "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(folder / "nodes.conf"), "--dir", str(folder),
                 "--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.ports.append(port)
            buses.append(bus)
        nodes = [redis.Redis(host="127.0.0.1", port=p, socket_timeout=5) for p in self.ports]
        deadline = time.monotonic() + timeout
        for node in nodes:
            self._until(deadline, lambda n=node: n.ping())
        per = 16384 // MASTERS
        for i, node in enumerate(nodes):
            last = 16383 if i == MASTERS - 1 else (i + 1) * per - 1
            node.execute_command("CLUSTER ADDSLOTSRANGE", i * per, last)
            node.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
        for node in nodes[1:]:
            node.execute_command("CLUSTER MEET", "127.0.0.1", self.ports[0], buses[0])

        def joined():
            infos = [n.cluster("INFO") for n in nodes]
            return all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == MASTERS
                       for i in infos)

        self._until(deadline, joined)
        for node in nodes:
            node.close()
        return self

    def _until(self, deadline: float, probe) -> None:
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                if probe():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not come up in time")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports])

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for folder in self.dirs:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:  # stopped however the start or the tests end
        yield c.start()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cat():
    catalog = parse_catalog(CATALOG)
    return catalog, compile_catalog(catalog)


@pytest.fixture
def env(cluster, cat):
    rc = cluster.client()
    rc.flushall()  # every primary
    catalog, compiled = cat
    clock = Clock()
    store = AccountStore(rc, catalog, clock=clock)

    class Env:
        pass

    e = Env()
    e.rc, e.store, e.clock, e.catalog = rc, store, clock, catalog
    e.make = lambda: C.Charger(store, catalog, compiled, validity_s=300, clock=clock)
    e.node = e.make()
    e.online = OnlineStore(store)
    yield e
    rc.close()


def node_of(env, account_id: str) -> str:
    """The master holding the account's slot."""
    return env.rc.get_node_from_key(env.store.account_keys(account_id).account).name


def account(env, name, money="10.00", **kw):
    env.store.create(name, credit_limit=0, offers=kw.pop("offers", ("basic",)), **kw)
    if money:
        whole, _, frac = money.partition(".")
        env.store.topup(name, int(whole) * EUR + int(frac.ljust(6, "0")), op_id=f"t-{name}")
    return name


SPREAD = ("alice", "bob", "carol")  # one account on each master (slots fixed by the fixture)


def test_the_cluster_has_three_masters_and_the_accounts_are_spread(env):
    assert len(env.rc.get_primaries()) == MASTERS
    for name in SPREAD:
        account(env, name)
    assert len({node_of(env, n) for n in SPREAD}) == MASTERS
    assert audit(env.rc) == []


def test_online_session_with_exact_amounts_on_every_master(env):
    for name in SPREAD:
        account(env, name)
        a = env.node.charge(req("INITIAL", f"s-{name}", 0, [voice(requested=60)], sub=name))
        assert (a.result_code, a.grants[0].units, a.grants[0].final) == (2001, 60, False)
        assert env.store.get_account(name).reserved == 170_000  # 0.05 + 0.12
        a = env.node.charge(req("UPDATE", f"s-{name}", 1, [voice(requested=60, used=45)],
                                sub=name))
        assert (a.result_code, a.charged, a.grants[0].units) == (2001, 170_000, 60)
        a = env.node.charge(req("UPDATE", f"s-{name}", 2, [voice(requested=60, used=40)],
                                sub=name))
        assert a.charged == 60_000  # 85 s rate to 90: 0.23 - 0.17
        a = env.node.charge(req("TERMINATE", f"s-{name}", 3, [voice(used=10)], sub=name))
        assert a.charged == 60_000  # 95 s rate to 120: 0.29 - 0.23
        acct = env.store.get_account(name)
        assert (acct.balance, acct.reserved) == (10 * EUR - 290_000, 0)
        recs = env.online.records(name, T0, T0 + 1)
        assert [(r["cdr_id"], r["net_charge"]) for r in recs] == [
            (f"s-{name}/1/1", "170000"), (f"s-{name}/1/2", "60000"), (f"s-{name}/1/3", "60000")]
    assert env.rc.zcard(EXPIRY_INDEX) == 0  # every hold settled, every entry gone
    assert audit(env.rc) == []


def test_retransmission_to_another_node_and_a_direct_debit(env):
    account(env, "alice")
    first = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    env.node.charge(req("UPDATE", "s1", 1, [voice(requested=60, used=60)]))
    other = env.make()  # a second node: no cache
    again = other.charge(req("UPDATE", "s1", 1, [voice(requested=60, used=60)]))
    assert (again.charged, again.grants[0].units, again.applied) == (170_000, 60, False)
    assert other.charge(req("INITIAL", "s1", 0, [voice(requested=60)])).grants == first.grants
    a = other.charge(req("TERMINATE", "s1", 2, [voice(used=30)]))
    assert a.charged == 60_000  # 90 s: net 0.23, 0.17 paid
    sms = [C.UnitRequest(1, "sms", "4915199999999", 1, 0)]
    a = env.node.charge(req("EVENT", "e1", 0, sms, action="DIRECT_DEBIT"))
    assert (a.result_code, a.charged) == (2001, 90_000)
    assert other.charge(req("EVENT", "e1", 0, sms, action="DIRECT_DEBIT")).charged == 90_000
    assert env.store.get_account("alice").balance == 10 * EUR - 230_000 - 90_000  # once each
    recs = env.online.records("alice", T0, T0 + 1)
    assert [(r["cdr_id"], r["net_charge"]) for r in recs] == [
        ("e1/1", "90000"), ("s1/1/1", "170000"), ("s1/1/2", "60000")]
    assert audit(env.rc) == []


def test_a_child_charges_on_its_parent_in_one_slot(env):
    account(env, "corp", money="10.00")
    account(env, "emp", money=None, parent="corp")
    keys = env.store.account_keys("emp")
    parent = env.store.account_keys("corp")
    # every key an online request of the child touches (KEYS, and the records and finals
    # keys passed in its parameters) is in its root's slot
    touched = keys.script_keys("x") + keys.parent_keys() + [
        session_key(keys, "k1"), records_key(keys), finals_key(keys)]
    assert {env.rc.keyslot(k) for k in touched} == {env.rc.keyslot(parent.account)}
    assert env.store.family_available("emp") == 10 * EUR
    a = env.node.charge(req("INITIAL", "k1", 0, [voice(requested=60)], sub="emp"))
    assert (a.result_code, a.grants[0].units) == (2001, 60)
    assert env.store.get_account("corp").reserved == 170_000  # held on the parent
    a = env.node.charge(req("TERMINATE", "k1", 1, [voice(used=45)], sub="emp"))
    assert a.charged == 170_000
    assert env.store.get_account("corp").balance == 10 * EUR - 170_000
    assert env.store.get_account("emp").balance == 0
    assert env.store.family_available("emp") == 10 * EUR - 170_000
    assert audit(env.rc) == []


def test_the_sweeper_releases_an_expired_reservation(env):
    account(env, "alice")
    a = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    assert a.grants[0].validity_s == 300
    member = expiry_member("alice", reservation_field("s1", 1))
    assert env.rc.zscore(EXPIRY_INDEX, member) == T0 + 300
    env.clock.t = T0 + 300 + 29  # within the grace: kept
    assert sweeper.sweep_expired(env.store) == 0
    env.clock.t = T0 + 300 + 30
    assert sweeper.sweep_expired(env.store) == 1
    acct = env.store.get_account("alice")
    assert (acct.balance, acct.reserved, acct.reservations) == (10 * EUR, 0, ())
    assert env.rc.zcard(EXPIRY_INDEX) == 0
    assert audit(env.rc) == []


def test_the_slow_sweep_scans_every_master(env):
    for name in SPREAD:
        account(env, name)
        env.store.reserve(name, "h", op_id=f"r-{name}", money=100_000, validity_s=60)
    env.rc.delete(EXPIRY_INDEX)  # as if every index write had been lost
    env.clock.t = T0 + 60 + 30
    assert sweeper.sweep_expired(env.store) == 0  # the fast path cannot see them
    assert sweeper.sweep_unindexed(env.store) == MASTERS
    for name in SPREAD:
        assert env.store.get_account(name).reserved == 0
    assert audit(env.rc) == []


def test_a_master_that_lost_its_scripts_loads_them_again(env):
    account(env, "alice")
    holder = env.rc.get_node_from_key(env.store.account_keys("alice").account)
    holder.redis_connection.script_flush()
    # the reserve is pipelined with the expiry index (another slot): NoScriptError, load, retry
    env.store.reserve("alice", "h", op_id="r1", money=100_000, validity_s=60)
    assert env.rc.zscore(EXPIRY_INDEX, expiry_member("alice", "h")) == T0 + 60
    holder.redis_connection.script_flush()
    a = env.node.charge(req("INITIAL", "s1", 0, [voice(requested=60)]))
    assert (a.result_code, env.store.get_account("alice").reserved) == (2001, 270_000)
    assert audit(env.rc) == []


def test_an_id_that_reads_as_an_msisdn_and_two_msisdns_in_other_slots(env):
    account(env, "4915550009", msisdns=["4915550001", "+4915550002"])
    assert env.store.resolve("4915550009") == "4915550009"  # acct: and msisdn: keys, 2 slots
    assert env.store.resolve("+4915550002") == "4915550009"
    with pytest.raises(AccountExists, match="'4915550001' is another account's MSISDN"):
        env.store.create("4915550001", credit_limit=0)
    assert audit(env.rc) == []


def test_events_reach_a_watcher_on_the_cluster(env):
    account(env, "alice")
    got, active = [], threading.Event()
    active.set()

    def watch():
        for n in notifications.watch(env.rc, {"alice"}, active.is_set, poll_s=0.05):
            got.append(n)
            active.clear()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not any(n.redis_connection.pubsub_numsub("ccs:events")[0][1]
                  for n in env.rc.get_primaries()):
        assert time.monotonic() < deadline, "the watcher never subscribed"
        time.sleep(0.02)
    env.store.set_status("alice", "suspended", op_id="st1", reason="fraud")
    t.join(10)
    assert [(n.account, json.loads(n.detail)) for n in got] == [
        ("alice", {"reason": "fraud", "status": "suspended"})]


def ccs(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCS_")}
    env["CCS_DATA_DIR"] = tempfile.gettempdir() + "/ccs-cluster-test-unused"  # never embedded
    return subprocess.run([sys.executable, "-m", "charging.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_cli_with_a_cluster_url(env, cluster, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    common = ("--redis", cluster.url, "--catalog", str(catalog))
    r = ccs("accounts", "create", "dave", "--prepaid", "--msisdn", "+4915550077",
            "--offer", "basic", *common)
    assert r.returncode == 0, r.stderr
    r = ccs("accounts", "topup", "dave", "12.50", *common)
    assert r.returncode == 0, r.stderr
    r = ccs("accounts", "show", "+4915550077", "--json", *common)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert (shown["id"], shown["balance"]) == ("dave", "12.50")
    assert env.store.get_account("dave").balance == 12_500_000
    for args in (("audit",), ("audit", "dave"), ("sweep", "--all")):
        r = ccs("accounts", *args, *common)
        assert r.returncode == 0, (args, r.stdout, r.stderr)


def test_a_malformed_or_unreachable_cluster_url(cluster, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    r = ccs("accounts", "show", "x", "--catalog", str(catalog),
            "--redis", f"redis+cluster://127.0.0.1:{cluster.ports[0]},127.0.0.1:99999")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith(
        "node '127.0.0.1:99999': the port must be 1..65535")
    assert "Traceback" not in r.stderr
    r = ccs("accounts", "show", "x", "--catalog", str(catalog),
            "--redis", f"redis+cluster://127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr


def test_ccs_serve_on_the_cluster(env, cluster, tmp_path):
    import grpc

    from charging.server import check_health
    from proto.ccs.v1 import charging_pb2 as pb
    from proto.ccs.v1 import charging_pb2_grpc, common_pb2

    account(env, "erin")
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    port = free_port()
    node = subprocess.Popen([sys.executable, "-m", "charging.cli", "serve", "--listen",
                             f"127.0.0.1:{port}", "--redis", cluster.url, "--catalog",
                             str(catalog)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=(tmp_path / "node.log").open("w"), text=True)
    try:
        assert "listening on" in node.stdout.readline()
        target = f"127.0.0.1:{port}"
        assert check_health(target) == "SERVING"
        with grpc.insecure_channel(target) as channel:
            stub = charging_pb2_grpc.ChargingStub(channel)
            u = pb.ServiceUnit(rating_group=1, service="voice", destination="4930123456",
                               requested=common_pb2.Units(seconds=60))
            r = stub.Charge(pb.ChargeRequest(session_id="cs", request_type=pb.INITIAL,
                                             subscriber="erin", units=[u]), timeout=10)
            assert (r.result_code, r.grants[0].granted.seconds) == (2001, 60)
            u.used.seconds = 60
            r = stub.Charge(pb.ChargeRequest(session_id="cs", request_type=pb.TERMINATE,
                                             request_number=1, subscriber="erin", units=[u]),
                            timeout=10)
            assert r.result_code == 2001
        paid = 10_000_000 - env.store.get_account("erin").balance
        assert paid == 20_000  # 60 s to a fixed line: 0.02 a minute, by the second
        assert audit(env.rc) == []
    finally:
        node.terminate()
        node.wait(15)
