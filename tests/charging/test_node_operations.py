"""Operating the node (issue 12, item 5): Prometheus metrics scraped over HTTP, TLS and
mutual TLS with a CA made here (openssl), the admin listener apart from Charging, and the
sweeper's EXPIRED events. Real redis-server, real gRPC over loopback, real `ccs serve`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from accounts import events
from accounts.embedded import free_port
from accounts.store import AccountStore
from charging.charge import Charger
from charging.server import build_node
from proto.ccs.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    billing_pb2,
    billing_pb2_grpc,
    charging_pb2_grpc,
)
from proto.ccs.v1 import charging_pb2 as pb
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG, T0
from tests.charging.test_charging_service import unit

CCS = str(Path(sys.executable).with_name("ccs"))


# --- helpers ------------------------------------------------------------------------------

def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the node's /metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        assert page.status == 200
        text = page.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def named(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def charge(stub, kind, n, units, sid, sub="alice", t=T0):
    """One Charge; `t` None: no event_time (the node's clock)."""
    msg = pb.ChargeRequest(session_id=sid, request_type=kind, request_number=n,
                           subscriber=sub, units=units)
    if t is not None:
        msg.event_time.CopyFrom(Timestamp(seconds=t))
    return stub.Charge(msg, timeout=10)


def known_sequence(stub, t=T0) -> None:
    """2 INITIAL 2001, 1 UPDATE 2001, 1 INITIAL 5030, 1 malformed (INVALID_ARGUMENT)."""
    assert charge(stub, pb.INITIAL, 0, [unit(requested=60)], "s1", t=t).result_code == 2001
    assert charge(stub, pb.INITIAL, 0, [unit(requested=60)], "s2", t=t).result_code == 2001
    assert charge(stub, pb.UPDATE, 1, [unit(requested=60, used=60)], "s1", t=t) \
        .result_code == 2001
    assert charge(stub, pb.INITIAL, 0, [unit(requested=60)], "s3", sub="nobody", t=t) \
        .result_code == 5030
    with pytest.raises(grpc.RpcError) as err:
        charge(stub, pb.INITIAL, 0, [unit(requested=60)], "", t=t)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def refused(call, request, **kw) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10, **kw)
    return err.value.code()


def list_services(channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    return {s.name for s in reply.list_services_response.service}


@pytest.fixture
def online(redis_client):
    catalog = parse_catalog(CATALOG)
    store = AccountStore(redis_client, catalog, clock=lambda: T0)
    store.create("alice", credit_limit=0, offers=("basic",))
    store.topup("alice", 10_000_000, op_id="t")
    charger = Charger(store, catalog, compile_catalog(catalog), clock=lambda: T0)
    return store, catalog, charger


@pytest.fixture
def node_factory():
    started = []

    def make(**kw):
        node = build_node("127.0.0.1:0", max_workers=4, **kw)
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop(0)


# --- metrics ------------------------------------------------------------------------------

def test_metrics_count_charges_calls_latency_round_trips_and_holds(online, node_factory):
    store, catalog, charger = online
    node = node_factory(store=store, catalog=catalog, charger=charger, metrics_listen="127.0.0.1:0")
    with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        stub = charging_pb2_grpc.ChargingStub(channel)
        known_sequence(stub)
        m = scrape(node.metrics_port)
        assert named(m, "ccs_charge_requests_total") == {
            (("result", "2001"), ("type", "INITIAL")): 2.0,
            (("result", "2001"), ("type", "UPDATE")): 1.0,
            (("result", "5030"), ("type", "INITIAL")): 1.0,
        }
        assert named(m, "ccs_grpc_requests_total") == {
            (("code", "OK"), ("method", "ccs.v1.Charging/Charge")): 4.0,
            (("code", "INVALID_ARGUMENT"), ("method", "ccs.v1.Charging/Charge")): 1.0,
        }
        assert named(m, "ccs_request_seconds_count") == {
            (("method", "ccs.v1.Charging/Charge"),): 5.0}
        assert named(m, "ccs_request_seconds_bucket")[
            (("le", "+Inf"), ("method", "ccs.v1.Charging/Charge"))] == 5.0
        assert named(m, "ccs_open_reservations") == {(): 2.0}  # s1 and s2 hold
        trips = m[("ccs_redis_round_trips_total", ())]
        assert trips == charger.round_trips > 0
        # a warm UPDATE is one round trip, and the page says so
        assert charge(stub, pb.UPDATE, 2, [unit(requested=60, used=60)], "s1").result_code \
            == 2001
        assert scrape(node.metrics_port)[("ccs_redis_round_trips_total", ())] == trips + 1


def test_a_stream_is_counted_when_it_ends(online, node_factory):
    store, catalog, charger = online
    node = node_factory(store=store, catalog=catalog, charger=charger, metrics_listen="127.0.0.1:0")
    with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        stub = charging_pb2_grpc.ChargingStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            next(iter(stub.WatchNotifications(pb.WatchRequest(accounts=["a" * 300]),
                                              timeout=10)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # a health check is a call like any other
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    m = scrape(node.metrics_port)
    assert named(m, "ccs_grpc_requests_total") == {
        (("code", "INVALID_ARGUMENT"), ("method", "ccs.v1.Charging/WatchNotifications")): 1.0,
        (("code", "OK"), ("method", "grpc.health.v1.Health/Check")): 1.0,
    }
    assert named(m, "ccs_request_seconds_count") == {
        (("method", "grpc.health.v1.Health/Check"),): 1.0}  # streams are not timed


# --- admin listener -----------------------------------------------------------------------

def test_admin_services_are_refused_on_the_charging_listener(online, node_factory):
    store, catalog, charger = online
    node = node_factory(store=store, catalog=catalog, charger=charger,
                        admin_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    assert node.admin_port not in (None, node.port)
    topup = accounts_pb2.TopUpRequest(op_id="top-1", account_id="alice", amount="5.00")
    with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        accounts = accounts_pb2_grpc.AccountsStub(channel)
        assert refused(accounts.TopUp, topup) == grpc.StatusCode.UNIMPLEMENTED
        assert refused(accounts.GetAccount, accounts_pb2.GetAccountRequest(account_id="alice")) \
            == grpc.StatusCode.UNIMPLEMENTED
        assert refused(billing_pb2_grpc.BillingStub(channel).ListBills,
                       billing_pb2.ListBillsRequest()) == grpc.StatusCode.UNIMPLEMENTED
        assert charge(charging_pb2_grpc.ChargingStub(channel), pb.INITIAL, 0,
                      [unit(requested=60)], "s1").result_code == 2001
        assert list_services(channel) == {"ccs.v1.Charging", "grpc.health.v1.Health",
                                          "grpc.reflection.v1alpha.ServerReflection"}
    assert store.get_account("alice").balance == 10_000_000
    with grpc.insecure_channel(f"127.0.0.1:{node.admin_port}") as channel:
        reply = accounts_pb2_grpc.AccountsStub(channel).TopUp(topup, timeout=10)
        assert reply.account.balance == "15.00"
        assert refused(charging_pb2_grpc.ChargingStub(channel).Charge,
                       pb.ChargeRequest(session_id="x")) == grpc.StatusCode.UNIMPLEMENTED
        assert list_services(channel) == {"ccs.v1.Accounts", "ccs.v1.Billing",
                                          "grpc.health.v1.Health",
                                          "grpc.reflection.v1alpha.ServerReflection"}
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="ccs.v1.Accounts"),
                            timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert store.get_account("alice").balance == 15_000_000
    calls = named(scrape(node.metrics_port), "ccs_grpc_requests_total")
    assert calls[(("code", "OK"), ("method", "ccs.v1.Accounts/TopUp"))] == 1.0
    # what a listener does not serve is counted under one label, not the client-chosen name:
    # TopUp, GetAccount and ListBills on the Charging listener, Charge on the admin one
    assert calls[(("code", "UNIMPLEMENTED"), ("method", "(not served)"))] == 4.0


def test_one_listener_serves_everything_without_admin_listen(online, node_factory):
    store, catalog, charger = online
    node = node_factory(store=store, catalog=catalog, charger=charger)
    assert node.admin_port is None
    with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        reply = accounts_pb2_grpc.AccountsStub(channel).TopUp(
            accounts_pb2.TopUpRequest(op_id="top-1", account_id="alice", amount="5.00"),
            timeout=10)
        assert reply.account.balance == "15.00"
        assert charge(charging_pb2_grpc.ChargingStub(channel), pb.INITIAL, 0,
                      [unit(requested=60)], "s1").result_code == 2001


# --- the sweeper's releases ---------------------------------------------------------------

def test_a_sweeper_release_publishes_expired(redis_client, admin_catalog_path):
    from accounts.sweeper import SweeperStats, sweep_expired
    from rating.catalog import load_catalog

    store = AccountStore(redis_client, load_catalog(admin_catalog_path), clock=lambda: 1000,
                         grace_s=0)
    store.create("P1", op_id="c-1")
    store.topup("P1", 10_000_000, op_id="t-1")
    store.reserve("P1", "dead/1", op_id="r-1", money=4_000_000, validity_s=10)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(events.CHANNEL)
    try:
        assert pubsub.get_message(timeout=5) is None  # the subscription is in place
        stats = SweeperStats()
        assert sweep_expired(store, now=1009, stats=stats) == 0  # not due yet
        assert sweep_expired(store, now=1010, stats=stats) == 1
        assert sweep_expired(store, now=1011, stats=stats) == 0  # released once
        msg = pubsub.get_message(timeout=5)
        assert events.decode(msg["data"]) == {"kind": "EXPIRED", "account": "P1",
                                              "time": 1010, "detail": {"session": "dead/1"}}
        assert pubsub.get_message(timeout=0.2) is None
        assert stats.released == 1
    finally:
        pubsub.close()
    assert store.get_account("P1").reserved == 0


# --- TLS and mutual TLS -------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, ca: str, *, server: bool) -> None:
    """`name`.key and `name`.pem signed by the CA `ca` (EC P-256)."""
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                   if server else "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", ext.name, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1, a client certificate of the CA, and a client
    certificate of another CA."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN={ca}", cwd=d)
    _issue(d, "server", "ca", server=True)
    _issue(d, "client", "ca", server=False)
    _issue(d, "stranger", "other-ca", server=False)
    return d


def _tls(pki: Path, *, client_ca: bool):
    from charging.tls import load_tls

    return load_tls(str(pki / "server.pem"), str(pki / "server.key"),
                    str(pki / "ca.pem") if client_ca else None)


def _health(channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                     timeout=10).status


def _secure(pki: Path, port: int, client: str | None = None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(pki / f"{client}.pem").read_bytes() if client else None)
    return grpc.secure_channel(f"127.0.0.1:{port}", creds)


def test_tls_client_with_the_ca_is_served_plaintext_is_not(online, node_factory, pki):
    store, catalog, charger = online
    node = node_factory(store=store, catalog=catalog, charger=charger,
                        admin_listen="127.0.0.1:0", tls=_tls(pki, client_ca=False))
    with _secure(pki, node.port) as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert charge(charging_pb2_grpc.ChargingStub(channel), pb.INITIAL, 0,
                      [unit(requested=60)], "s1").result_code == 2001
    with _secure(pki, node.admin_port) as channel:  # the admin listener is TLS as well
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    for port in (node.port, node.admin_port):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert refused(health_pb2_grpc.HealthStub(channel).Check,
                           health_pb2.HealthCheckRequest()) == grpc.StatusCode.UNAVAILABLE
    # a client that trusts another CA does not accept the node's certificate
    creds = grpc.ssl_channel_credentials(root_certificates=(pki / "other-ca.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{node.port}", creds) as channel:
        assert refused(health_pb2_grpc.HealthStub(channel).Check,
                       health_pb2.HealthCheckRequest()) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca(online, node_factory, pki):
    store, catalog, charger = online
    node = node_factory(store=store, catalog=catalog, charger=charger,
                        admin_listen="127.0.0.1:0", tls=_tls(pki, client_ca=True))
    for port in (node.port, node.admin_port):
        with _secure(pki, port, "client") as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        for client in (None, "stranger"):
            with _secure(pki, port, client) as channel:
                assert refused(health_pb2_grpc.HealthStub(channel).Check,
                               health_pb2.HealthCheckRequest()) == grpc.StatusCode.UNAVAILABLE
    with _secure(pki, node.port, "client") as channel:
        assert charge(charging_pb2_grpc.ChargingStub(channel), pb.INITIAL, 0,
                      [unit(requested=60)], "s1").result_code == 2001


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, pki) -> Path:
    d = tmp_path_factory.mktemp("bad-tls")
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n"
                                   "-----END CERTIFICATE-----\n")
    (d / "empty.pem").write_text("")
    return d


@pytest.mark.parametrize("argv, message", [
    (["--tls-cert", "{d}/missing.pem", "--tls-key", "{p}/server.key"],
     "ccs serve: --tls-cert: cannot read {d}/missing.pem: No such file or directory"),
    (["--tls-cert", "{d}/garbage.pem", "--tls-key", "{p}/server.key"],
     "ccs serve: --tls-cert: {d}/garbage.pem: not a valid PEM certificate"),
    (["--tls-cert", "{p}/server.pem", "--tls-key", "{p}/client.key"],
     "ccs serve: --tls-key: {p}/client.key does not match the certificate in {p}/server.pem"),
    (["--tls-cert", "{p}/server.pem", "--tls-key", "{p}/server.pem"],
     "ccs serve: --tls-key: {p}/server.pem has no PEM private key (BEGIN PRIVATE KEY)"),
    (["--tls-cert", "{p}/server.pem", "--tls-key", "{p}/server.key",
      "--tls-client-ca", "{d}/empty.pem"],
     "ccs serve: --tls-client-ca: {d}/empty.pem has no PEM certificate (BEGIN CERTIFICATE)"),
    (["--tls-key", "{p}/server.key"],
     "ccs serve: --tls-key: needs --tls-cert (the server's certificate)"),
    (["--tls-cert", "{p}/server.pem"],
     "ccs serve: --tls-cert: needs --tls-key (the certificate's private key)"),
])
def test_serve_refuses_bad_tls_files_in_one_line(tmp_path, pki, bad_files, argv, message):
    argv = [a.format(d=bad_files, p=pki) for a in argv]
    proc = subprocess.run([CCS, "serve", "--listen", "127.0.0.1:0", "--redis",
                           "redis://127.0.0.1:1", "--data-dir", str(tmp_path), *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message.format(d=bad_files, p=pki)), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""


@pytest.mark.parametrize("option", ["--metrics", "--admin-listen"])
def test_serve_refuses_an_address_without_a_port(tmp_path, option):
    proc = subprocess.run([CCS, "serve", option, "localhost", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == \
        f"ccs serve: error: argument {option}: expected HOST:PORT, got 'localhost'"


# --- end to end: ccs serve --metrics --admin-listen ---------------------------------------

def test_serve_with_metrics_and_an_admin_listener(tmp_path, redis_client, redis_url):
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(CATALOG)
    store = AccountStore(redis_client, parse_catalog(CATALOG))
    store.create("alice", credit_limit=0, offers=("basic",))
    store.topup("alice", 10_000_000, op_id="t")
    store.create("bob", credit_limit=0, offers=("basic",))
    store.topup("bob", 10_000_000, op_id="t")
    port, admin, mport = free_port(), free_port(), free_port()
    helptext = subprocess.run([CCS, "serve", "--help"], capture_output=True, text=True,
                              check=True).stdout
    for option in ("--metrics", "--admin-listen", "--tls-cert", "--tls-key", "--tls-client-ca"):
        assert option in helptext
    node = subprocess.Popen(
        [CCS, "serve", "--listen", f"127.0.0.1:{port}", "--redis", redis_url,
         "--catalog", str(catalog_file), "--admin-listen", f"127.0.0.1:{admin}",
         "--metrics", f"127.0.0.1:{mport}", "--reservation-grace", "0"],
        stdout=subprocess.PIPE, stderr=(tmp_path / "node.log").open("w"), text=True)
    watched: list = []
    try:
        line = node.stdout.readline()
        assert line.startswith(f"ccs node listening on 127.0.0.1:{port} (Charging); "
                               f"admin on 127.0.0.1:{admin} (Accounts, Billing); "
                               f"metrics on http://127.0.0.1:{mport}/metrics; redis "), line
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = charging_pb2_grpc.ChargingStub(channel)
            known_sequence(stub, t=None)
            assert refused(accounts_pb2_grpc.AccountsStub(channel).TopUp,
                           accounts_pb2.TopUpRequest(op_id="x", account_id="alice",
                                                     amount="1.00")) \
                == grpc.StatusCode.UNIMPLEMENTED

            # a watcher on the node sees the sweeper release bob's silent hold
            stream = stub.WatchNotifications(pb.WatchRequest(accounts=["bob"]), timeout=60)
            ready = threading.Event()

            def read():
                for n in stream:
                    watched.append(n)
                    ready.set()
                    if n.kind == pb.Notification.EXPIRED:
                        return

            reader = threading.Thread(target=read)
            reader.start()
            deadline = time.monotonic() + 20  # the subscription is up once a hint arrives
            while not ready.wait(0.2) and time.monotonic() < deadline:
                events.publish(redis_client, "STATUS_CHANGED", "bob", T0, {"probe": "1"})
            store.reserve("bob", "silent/1", op_id="r-1", money=1_000_000, validity_s=1)
            reader.join(30)
            stream.cancel()
        kinds = [pb.Notification.Kind.Name(n.kind) for n in watched]
        assert kinds[-1] == "EXPIRED", kinds
        assert json.loads(watched[-1].detail) == {"session": "silent/1"}
        assert watched[-1].account == "bob"
        assert store.get_account("bob").reserved == 0

        m = scrape(mport)
        assert named(m, "ccs_charge_requests_total") == {
            (("result", "2001"), ("type", "INITIAL")): 2.0,
            (("result", "2001"), ("type", "UPDATE")): 1.0,
            (("result", "5030"), ("type", "INITIAL")): 1.0,
        }
        assert m[("ccs_sweeper_released_total", ())] == 1.0
        assert m[("ccs_open_reservations", ())] == 2.0  # s1 and s2 still hold
        assert m[("ccs_redis_round_trips_total", ())] > 0
        with grpc.insecure_channel(f"127.0.0.1:{admin}") as channel:
            reply = accounts_pb2_grpc.AccountsStub(channel).TopUp(
                accounts_pb2.TopUpRequest(op_id="top-1", account_id="alice", amount="1.00"),
                timeout=10)
            assert reply.account.id == "alice"
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
    # the refused top-up is in the node's log, with the method the client asked for
    assert re.search(r"INFO ccs\.requests /ccs\.v1\.Accounts/TopUp: UNIMPLEMENTED "
                     r"\(not served on this listener\)\n", (tmp_path / "node.log").read_text())


@pytest.mark.parametrize("option", ["--metrics", "--admin-listen"])
def test_serve_refuses_a_busy_port_in_one_line(tmp_path, redis_url, admin_catalog_path, option):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        proc = subprocess.run(
            [CCS, "serve", "--listen", "127.0.0.1:0", "--redis", redis_url,
             "--catalog", str(admin_catalog_path), option, taken],
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"ccs serve: {option}: cannot listen on {taken}: "), \
        proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""
