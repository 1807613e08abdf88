"""The Accounts gRPC service on a real node (loopback, free port) over a real redis-server.

Exact amounts as decimal strings, idempotent op ids, status codes naming the field, and the
standard health and reflection services answering next to it.
"""

from __future__ import annotations

from datetime import date

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from proto.ccs.v1 import accounts_pb2 as pb
from proto.ccs.v1 import accounts_pb2_grpc


@pytest.fixture(scope="module")
def small_catalog(admin_catalog_path):
    from rating.catalog import load_catalog

    return load_catalog(admin_catalog_path)


@pytest.fixture
def node(store, small_catalog):
    from charging.server import build_node

    node = build_node("127.0.0.1:0", store=store, catalog=small_catalog, max_workers=4)
    yield node
    node.stop(0)


@pytest.fixture
def store(redis_client, small_catalog):
    from accounts.store import AccountStore

    return AccountStore(redis_client, small_catalog)


@pytest.fixture
def stub(node):
    channel = grpc.insecure_channel(f"127.0.0.1:{node.port}")
    yield accounts_pb2_grpc.AccountsStub(channel)
    channel.close()


def _create(stub, account_id="A1", op_id="c-1", **kw):
    kw.setdefault("payment_type", pb.PREPAID)
    return stub.CreateAccount(pb.CreateAccountRequest(op_id=op_id, account_id=account_id, **kw))


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value


def test_create_prepaid_then_get_by_id_and_msisdn(stub):
    reply = _create(stub, msisdns=["491700000001"])
    a = reply.account
    assert (reply.applied, reply.op_id) == (True, "c-1")
    assert (a.id, a.currency, a.status, a.payment_type) == ("A1", "EUR", pb.ACTIVE, pb.PREPAID)
    assert (a.credit_limit, a.unlimited, a.balance, a.reserved, a.available) == (
        "0.00", False, "0.00", "0.00", "0.00")
    assert (a.bill_cycle_day, a.parent, list(a.msisdns)) == (1, "", ["491700000001"])
    for key in ("A1", "491700000001"):
        got = stub.GetAccount(pb.GetAccountRequest(account_id=key))
        assert got.account == a


def test_create_postpaid_unlimited_and_with_a_limit(stub):
    unlimited = _create(stub, "P1", "c-p1", payment_type=pb.POSTPAID).account
    assert (unlimited.payment_type, unlimited.unlimited, unlimited.credit_limit,
            unlimited.available) == (pb.POSTPAID, True, "", "")
    limited = _create(stub, "P2", "c-p2", payment_type=pb.POSTPAID, credit_limit="50",
                      bill_cycle_day=15).account
    assert (limited.unlimited, limited.credit_limit, limited.available, limited.bill_cycle_day) == (
        False, "50.00", "50.00", 15)


def test_create_retry_is_not_applied_twice_and_another_op_id_is_already_exists(stub):
    _create(stub)
    again = _create(stub)
    assert (again.applied, again.account.id) == (False, "A1")
    err = _refused(stub.CreateAccount, pb.CreateAccountRequest(
        op_id="c-other", account_id="A1", payment_type=pb.PREPAID))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS


def test_topup_exact_amounts_and_a_retry_changes_nothing(stub):
    _create(stub)
    first = stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="12.5"))
    assert (first.applied, first.op_id, first.account.balance, first.account.available) == (
        True, "t-1", "12.50", "12.50")
    retry = stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="12.5"))
    assert (retry.applied, retry.account.balance) == (False, "12.50")
    second = stub.TopUp(pb.TopUpRequest(op_id="t-2", account_id="A1", amount="0.000125"))
    assert second.account.balance == "12.500125"
    assert stub.GetAccount(pb.GetAccountRequest(account_id="A1")).account.balance == "12.500125"


def test_same_op_id_with_other_content_is_a_conflict(stub):
    _create(stub)
    stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="10"))
    err = _refused(stub.TopUp, pb.TopUpRequest(op_id="t-1", account_id="A1", amount="11"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "op_id" in err.details()
    assert stub.GetAccount(pb.GetAccountRequest(account_id="A1")).account.balance == "10.00"


def test_unknown_account_is_not_found(stub):
    err = _refused(stub.GetAccount, pb.GetAccountRequest(account_id="nobody"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = _refused(stub.TopUp, pb.TopUpRequest(op_id="t-1", account_id="nobody", amount="1"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("request_, field", [
    (pb.TopUpRequest(op_id="t", account_id="A1", amount="12,50"), "amount"),
    (pb.TopUpRequest(op_id="t", account_id="A1", amount="-1"), "amount"),
    (pb.TopUpRequest(op_id="t", account_id="A1", amount="1.0000001"), "amount"),
    (pb.TopUpRequest(op_id="t", account_id="A1", amount=""), "amount"),
    (pb.TopUpRequest(account_id="A1", amount="1"), "op_id"),
    (pb.TopUpRequest(op_id="t", amount="1"), "account_id"),
    (pb.AdjustRequest(op_id="t", account_id="A1", amount="1e3"), "amount"),
    (pb.SetStatusRequest(op_id="t", account_id="A1"), "status"),
    (pb.SetStatusRequest(op_id="t", account_id="A1", status=9), "status"),
    (pb.ChangePaymentTypeRequest(op_id="t", account_id="A1"), "payment_type"),
    (pb.ChangePaymentTypeRequest(op_id="t", account_id="A1", payment_type=pb.POSTPAID,
                                 credit_limit="lots"), "credit_limit"),
    (pb.ChangePaymentTypeRequest(op_id="t", account_id="A1", payment_type=pb.PREPAID,
                                 credit_limit="5"), "credit_limit"),
    (pb.SubscribeRequest(op_id="t", account_id="A1"), "offer"),
])
def test_bad_requests_are_invalid_argument_naming_the_field(stub, request_, field):
    _create(stub)
    call = {pb.TopUpRequest: stub.TopUp, pb.AdjustRequest: stub.Adjust,
            pb.SetStatusRequest: stub.SetStatus, pb.SubscribeRequest: stub.Subscribe,
            pb.ChangePaymentTypeRequest: stub.ChangePaymentType}[type(request_)]
    err = _refused(call, request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details().startswith(f"{field}:"), err.details()
    assert stub.GetAccount(pb.GetAccountRequest(account_id="A1")).account.balance == "0.00"


def test_create_needs_a_payment_type_and_an_op_id(stub):
    err = _refused(stub.CreateAccount, pb.CreateAccountRequest(op_id="c", account_id="X"))
    assert (err.code(), err.details().split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         "payment_type")
    err = _refused(stub.CreateAccount, pb.CreateAccountRequest(account_id="X",
                                                               payment_type=pb.PREPAID))
    assert err.details() == "op_id: required"


def test_adjust_signed_amounts(stub):
    _create(stub)
    stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="10"))
    down = stub.Adjust(pb.AdjustRequest(op_id="a-1", account_id="A1", amount="-2.25",
                                        reason="goodwill reversal"))
    assert (down.applied, down.account.balance, down.account.available) == (True, "7.75", "7.75")
    up = stub.Adjust(pb.AdjustRequest(op_id="a-2", account_id="A1", amount="0.05", reason="fix"))
    assert up.account.balance == "7.80"


def test_suspend_and_resume(stub):
    _create(stub)
    suspended = stub.SetStatus(pb.SetStatusRequest(op_id="s-1", account_id="A1",
                                                   status=pb.SUSPENDED, reason="fraud check"))
    assert suspended.account.status == pb.SUSPENDED
    active = stub.SetStatus(pb.SetStatusRequest(op_id="s-2", account_id="A1", status=pb.ACTIVE))
    assert active.account.status == pb.ACTIVE


def test_change_payment_type_both_ways(stub):
    _create(stub)
    stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="5"))
    post = stub.ChangePaymentType(pb.ChangePaymentTypeRequest(
        op_id="p-1", account_id="A1", payment_type=pb.POSTPAID, credit_limit="100")).account
    assert (post.payment_type, post.credit_limit, post.balance, post.available) == (
        pb.POSTPAID, "100.00", "5.00", "105.00")
    unlimited = stub.ChangePaymentType(pb.ChangePaymentTypeRequest(
        op_id="p-2", account_id="A1", payment_type=pb.POSTPAID)).account
    assert (unlimited.unlimited, unlimited.credit_limit, unlimited.available) == (True, "", "")
    pre = stub.ChangePaymentType(pb.ChangePaymentTypeRequest(
        op_id="p-3", account_id="A1", payment_type=pb.PREPAID)).account
    assert (pre.payment_type, pre.credit_limit, pre.available) == (pb.PREPAID, "0.00", "5.00")


def test_subscribe_and_unknown_offer(stub):
    _create(stub)
    today = date.today().isoformat()
    reply = stub.Subscribe(pb.SubscribeRequest(op_id="sub-1", account_id="A1", offer="basic",
                                               from_date=today))
    subs = [(s.offer, s.to_date) for s in reply.account.subscriptions]
    assert subs == [("basic", "")]
    assert reply.account.subscriptions[0].from_date == today
    err = _refused(stub.Subscribe, pb.SubscribeRequest(op_id="sub-2", account_id="A1",
                                                      offer="no_such_offer"))
    assert err.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
    assert "offer" in err.details()


def test_ledger_lists_the_operations_in_order(stub):
    _create(stub)
    stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="10"))
    stub.Adjust(pb.AdjustRequest(op_id="a-1", account_id="A1", amount="-1", reason="fix"))
    entries = stub.ListLedger(pb.ListLedgerRequest(account_id="A1")).entries
    assert [e.op_id for e in entries][-2:] == ["t-1", "a-1"]
    assert all(e.id and e.op for e in entries)
    first_two = stub.ListLedger(pb.ListLedgerRequest(account_id="A1", limit=1)).entries
    assert len(first_two) == 1
    rest = stub.ListLedger(pb.ListLedgerRequest(account_id="A1", after=first_two[0].id)).entries
    assert [e.id for e in rest] == [e.id for e in entries[1:]]


def test_health_and_reflection_answer(node):
    with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ccs.v1.Accounts"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(refl.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="ccs.v1.Accounts"),
        ])))
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"ccs.v1.Accounts", "grpc.health.v1.Health"} <= names
        assert answers[1].file_descriptor_response.file_descriptor_proto


def test_buckets_reservations_and_counters_on_the_wire(stub, store):
    _create(stub, offers=["basic"])
    stub.TopUp(pb.TopUpRequest(op_id="t-1", account_id="A1", amount="5"))
    assert store.debit("A1", op_id="d-1", charge=90000, units=1, service="sms",
                       counters={"2026-11|tier|sms": 1}).code == "ok"
    assert store.reserve("A1", "sess-1", op_id="r-1", money=1_250000, service="voice",
                         units=120).code == "ok"
    a = stub.GetAccount(pb.GetAccountRequest(account_id="A1")).account
    assert (a.balance, a.reserved, a.available) == ("4.91", "1.25", "3.66")
    [bucket] = a.buckets
    assert (bucket.kind, bucket.service, bucket.remaining.seconds, bucket.initial.seconds,
            bucket.reserved.seconds) == ("units", "voice", 600, 600, 120)
    assert bucket.source.startswith("allowance:basic/voice_600:")
    assert bucket.HasField("valid_to") and bucket.valid_to.seconds > bucket.valid_from.seconds
    [rsv] = a.reservations
    assert (rsv.session_id, rsv.money, rsv.units.seconds) == ("sess-1", "1.25", 120)
    assert dict(a.usage_counters) == {"2026-11|tier|sms": 1}
    [entry] = [e for e in stub.ListLedger(pb.ListLedgerRequest(account_id="A1")).entries
               if e.op == "topup"]
    assert (entry.op_id, entry.fields["balance"], entry.time.seconds > 0) == ("t-1", "5.00", True)


def test_unsubscribe(stub, store):
    _create(stub)
    stub.Subscribe(pb.SubscribeRequest(op_id="sub-1", account_id="A1", offer="basic",
                                       from_date="2031-05-01"))
    reply = stub.Unsubscribe(pb.UnsubscribeRequest(op_id="u-1", account="A1", offer="basic",
                                                   on="2031-05-10"))
    assert (reply.applied, reply.op_id) == (True, "u-1")
    assert [(s.offer, s.from_date, s.to_date) for s in reply.account.subscriptions] == [
        ("basic", "2031-05-01", "2031-05-10")]
    again = stub.Unsubscribe(pb.UnsubscribeRequest(op_id="u-1", account="A1", offer="basic",
                                                   on="2031-05-10"))
    assert (again.applied, again.account.subscriptions) == (False, reply.account.subscriptions)
    assert store.ledger("A1")[-1]["op"] == "unsubscribe"
    refusals = [
        (pb.UnsubscribeRequest(op_id="u-2", account="NOPE", offer="basic", on="2031-05-10"),
         grpc.StatusCode.NOT_FOUND, "account: no account 'NOPE'"),
        (pb.UnsubscribeRequest(op_id="u-2", account="A1", offer="basic", on="2031-5-10"),
         grpc.StatusCode.INVALID_ARGUMENT, "on: expected a date YYYY-MM-DD, got '2031-5-10'"),
        (pb.UnsubscribeRequest(op_id="u-2", account="A1", offer="basic"),
         grpc.StatusCode.INVALID_ARGUMENT, "on: required"),
        (pb.UnsubscribeRequest(op_id="u-2", account="A1", on="2031-05-10"),
         grpc.StatusCode.INVALID_ARGUMENT, "offer: required"),
        (pb.UnsubscribeRequest(op_id="u-2", offer="basic", on="2031-05-10"),
         grpc.StatusCode.INVALID_ARGUMENT, "account: required"),
        (pb.UnsubscribeRequest(account="A1", offer="basic", on="2031-05-10"),
         grpc.StatusCode.INVALID_ARGUMENT, "op_id: required"),
        (pb.UnsubscribeRequest(op_id="u-2", account="A1", offer="basic", on="2031-05-10"),
         grpc.StatusCode.FAILED_PRECONDITION,
         "offer: A1: no subscription to basic active on 2031-05-10 or later"),
        (pb.UnsubscribeRequest(op_id="u-1", account="A1", offer="basic", on="2031-05-09"),
         grpc.StatusCode.FAILED_PRECONDITION,
         "op_id: A1: op id u-1 was used for another request"),
    ]
    for request_, code, details in refusals:
        err = _refused(stub.Unsubscribe, request_)
        assert (err.code(), err.details()) == (code, details)
    got = stub.GetAccount(pb.GetAccountRequest(account_id="A1")).account
    assert got.subscriptions == reply.account.subscriptions
