"""ccs.v1.Charging over real gRPC on loopback, two nodes on one real redis-server."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from accounts.audit import audit
from accounts.store import AccountStore
from charging.charge import Charger
from charging.server import build_node
from proto.ccs.v1 import charging_pb2 as pb
from proto.ccs.v1 import charging_pb2_grpc, common_pb2
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG, MOBILE, T0


@pytest.fixture
def nodes(redis_client):
    catalog = parse_catalog(CATALOG)
    compiled = compile_catalog(catalog)
    store = AccountStore(redis_client, catalog, clock=lambda: T0)
    store.create("alice", credit_limit=0, offers=("basic",), msisdns=("4917000000001",))
    store.topup("alice", 10_000_000, op_id="t")
    started = []
    for _ in range(2):
        s = AccountStore(redis_client, catalog, clock=lambda: T0)
        charger = Charger(s, catalog, compiled, clock=lambda: T0)
        started.append(build_node("127.0.0.1:0", store=s, catalog=catalog, charger=charger))
    channels = [grpc.insecure_channel(f"127.0.0.1:{n.port}") for n in started]
    yield store, [charging_pb2_grpc.ChargingStub(c) for c in channels]
    for c in channels:
        c.close()
    for n in started:
        n.stop(0)


def ts(t: int = T0) -> Timestamp:
    return Timestamp(seconds=t)


def unit(rg=1, *, requested=None, used=None, service="voice", dest=MOBILE):
    u = pb.ServiceUnit(rating_group=rg, service=service, destination=dest)
    if requested is not None:
        u.requested.CopyFrom(common_pb2.Units(seconds=requested))
    if used is not None:
        u.used.CopyFrom(common_pb2.Units(seconds=used))
    return u


def call(stub, kind, n, units, sid="s1", sub="4917000000001", **kw):
    return stub.Charge(pb.ChargeRequest(session_id=sid, request_type=kind, request_number=n,
                                        subscriber=sub, event_time=ts(), units=units, **kw),
                       timeout=10)


def test_a_session_over_grpc_continued_on_another_node(nodes):
    store, (a, b) = nodes
    r = call(a, pb.INITIAL, 0, [unit(requested=60)])
    assert (r.result_code, r.grants[0].granted.seconds, r.grants[0].validity_time_s) == \
        (2001, 60, 300)
    assert (r.charged, r.available) == ("0.0000", "9.8300")
    r = call(b, pb.UPDATE, 1, [unit(requested=60, used=60)])
    assert (r.charged, r.grants[0].granted.seconds) == ("0.1700", 60)
    again = call(a, pb.UPDATE, 1, [unit(requested=60, used=60)])  # retransmitted elsewhere
    assert again == r
    r = call(a, pb.TERMINATE, 2, [unit(used=30)])
    assert (r.result_code, r.charged, r.available) == (2001, "0.0600", "9.7700")
    assert store.get_account("alice").balance == 9_770_000
    assert audit(store.r) == []


@pytest.mark.parametrize("request_kw, field", [
    (dict(session_id="", request_type=pb.INITIAL), "session_id"),
    (dict(session_id="x", request_type=pb.REQUEST_TYPE_UNSPECIFIED), "request_type"),
    (dict(session_id="x", request_type=pb.EVENT), "event_action"),
    (dict(session_id="x", request_type=pb.INITIAL, subscriber="a" * 10_000), "subscriber"),
])
def test_malformed_requests_are_invalid_argument(nodes, request_kw, field):
    _, (a, _) = nodes
    msg = pb.ChargeRequest(subscriber="alice", units=[unit(requested=60)])
    for k, v in request_kw.items():
        setattr(msg, k, v)
    with pytest.raises(grpc.RpcError) as exc:
        a.Charge(msg, timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith(field)


@pytest.mark.parametrize("sid, u, field", [
    ("a/1", unit(requested=60), "session_id"),
    ("r", pb.ServiceUnit(rating_group=1, service="sms",
                         requested=common_pb2.Units(money="100.00")), "units[0].requested.money"),
    ("d", unit(requested=60, dest="4" * 19), "units[0].destination"),
])
def test_refused_before_anything_is_written(nodes, sid, u, field):
    store, (a, _) = nodes
    before = store.get_account("alice")
    with pytest.raises(grpc.RpcError) as exc:
        a.Charge(pb.ChargeRequest(session_id=sid, request_type=pb.EVENT if sid == "r" else
                                  pb.INITIAL, event_action=pb.REFUND, subscriber="alice",
                                  event_time=ts(), units=[u]), timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith(field)
    after = store.get_account("alice")
    assert (after.balance, after.reserved) == (before.balance, before.reserved)


def test_negative_units_are_invalid_argument(nodes):
    store, (a, _) = nodes
    u = pb.ServiceUnit(rating_group=1, service="voice", destination=MOBILE)
    u.requested.CopyFrom(common_pb2.Units(seconds=-5))
    with pytest.raises(grpc.RpcError) as exc:
        call(a, pb.INITIAL, 0, [u])
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "units[0].requested.seconds" in exc.value.details()
    assert store.get_account("alice").reserved == 0


def test_a_client_that_gives_up_is_answered_from_the_first_answer(nodes):
    store, (a, b) = nodes
    try:
        a.Charge(pb.ChargeRequest(session_id="d", request_type=pb.INITIAL, request_number=0,
                                  subscriber="alice", event_time=ts(),
                                  units=[unit(requested=60)]), timeout=0.05)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.5)  # the server finishes or never started the request: all or nothing
    held = store.get_account("alice").reserved
    assert held in (0, 170_000)
    r = call(b, pb.INITIAL, 0, [unit(requested=60)], sid="d", sub="alice")
    assert (r.result_code, r.grants[0].granted.seconds) == (2001, 60)
    assert store.get_account("alice").reserved == 170_000
    assert audit(store.r) == []


def test_watchers_see_events_raised_on_another_node(nodes):
    store, (a, b) = nodes
    got = []
    stream = b.WatchNotifications(pb.WatchRequest(accounts=["alice"]), timeout=20)

    def read():
        for n in stream:
            got.append(n)
            if n.kind == pb.Notification.REAUTHORIZE:
                break

    t = threading.Thread(target=read)
    t.start()
    time.sleep(0.5)
    store.adjust("alice", -9_600_000, op_id="drain")  # 0.40 left: 150 s, a final grant
    r = call(a, pb.INITIAL, 0, [unit(requested=300)], sid="f")
    assert r.grants[0].final_unit_action == pb.ServiceGrant.TERMINATE
    store.topup("alice", 5_000_000, op_id="more")
    t.join(15)
    stream.cancel()
    kinds = [n.kind for n in got]
    assert pb.Notification.REAUTHORIZE in kinds
    reauth = next(n for n in got if n.kind == pb.Notification.REAUTHORIZE)
    assert json.loads(reauth.detail)["sessions"] == ["f"]
