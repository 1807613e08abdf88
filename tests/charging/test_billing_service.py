"""ccs.v1.Billing over real gRPC: bills of a real bill run (SQLite and PostgreSQL), payments."""

from __future__ import annotations

import grpc
import pytest

from accounts.store import AccountStore
from billing import billrun
from proto.ccs.v1 import billing_pb2 as pb
from proto.ccs.v1 import billing_pb2_grpc
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.billing import db_fixtures
from tests.billing.test_billrun import BILL_CATALOG, NOW

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url


@pytest.fixture
def stub(db, redis_client):
    from charging.server import build_node

    catalog = parse_catalog(BILL_CATALOG)
    store = AccountStore(redis_client, catalog, clock=lambda: NOW)
    for account, offer in (("A1", "smart"), ("A2", "plain")):
        store.create(account, credit_limit=None)
        store.subscribe(account, offer, op_id=f"s-{account}", from_date="2026-10-01")
    compiled = compile_catalog(catalog)
    for cycle in ("2026-10", "2026-11"):
        billrun.run(db, store, catalog, compiled, cycle=cycle)
    billrun.finalize(db, "2026-10")
    node = build_node("127.0.0.1:0", store=store, catalog=catalog, max_workers=4,
                      billing_engine=db)
    channel = grpc.insecure_channel(f"127.0.0.1:{node.port}")
    yield billing_pb2_grpc.BillingStub(channel)
    channel.close()
    node.stop(0)


def _code(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value.code(), info.value.details()


def test_get_and_list_bills(stub):
    bill = stub.GetBill(pb.GetBillRequest(account="A1", cycle="2026-10"))
    # subscribed 2026-10-01: October holds smart's 10.00 and its activation 5.00 = 15.00,
    # VAT 2.85, total 17.85
    assert (bill.id, bill.status, bill.type, bill.currency) == (
        "A1/2026-10", "final", "invoice", "EUR")
    assert [(ln.kind, ln.description, ln.amount) for ln in bill.lines] == [
        ("recurring", "smart", "10.00"), ("one_time", "smart:activation", "5.00"),
        ("tax", "VAT", "2.85")]
    assert (bill.subtotal, bill.tax, bill.total, bill.amount_due, bill.due_date) == (
        "15.00", "2.85", "17.85", "17.85", "2026-11-14")
    assert (bill.period_start, bill.period_end) == ("2026-10-01", "2026-10-31")
    listed = stub.ListBills(pb.ListBillsRequest(account="A1"))
    assert [(b.cycle, b.status, b.total) for b in listed.bills] == [
        ("2026-10", "final", "17.85"), ("2026-11", "draft", "11.90")]
    assert [b.account for b in stub.ListBills(pb.ListBillsRequest(cycle="2026-11")).bills] == [
        "A1", "A2"]


def test_record_payment_oldest_final_bill_first_and_retries(stub):
    r = stub.RecordPayment(pb.RecordPaymentRequest(op_id="p1", account="A1", amount="20.00",
                                                   paid_on="2026-11-20"))
    # only October is final: 17.85 allocated, 2.15 left (November is a draft)
    assert (r.applied, r.unallocated) == (True, "2.15")
    assert [(a.bill_id, a.amount) for a in r.allocations] == [("A1/2026-10", "17.85")]
    again = stub.RecordPayment(pb.RecordPaymentRequest(op_id="p1", account="A1", amount="20.00",
                                                       paid_on="2026-11-20"))
    assert (again.applied, again.unallocated) == (False, "2.15")


@pytest.mark.parametrize("method, request_, code, field", [
    ("GetBill", pb.GetBillRequest(account="A1", cycle="2026-13"),
     grpc.StatusCode.INVALID_ARGUMENT, "cycle"),
    ("GetBill", pb.GetBillRequest(cycle="2026-10"), grpc.StatusCode.INVALID_ARGUMENT, "account"),
    ("GetBill", pb.GetBillRequest(account="ZZ", cycle="2026-10"), grpc.StatusCode.NOT_FOUND,
     "account"),
    ("ListBills", pb.ListBillsRequest(account="x" * 10_000), grpc.StatusCode.INVALID_ARGUMENT,
     "account"),
    ("RecordPayment", pb.RecordPaymentRequest(account="A1", amount="1.00"),
     grpc.StatusCode.INVALID_ARGUMENT, "op_id"),
    ("RecordPayment", pb.RecordPaymentRequest(op_id="q", account="A1", amount="-1.00"),
     grpc.StatusCode.INVALID_ARGUMENT, "amount"),
    ("RecordPayment", pb.RecordPaymentRequest(op_id="q", account="A1", amount="1.001"),
     grpc.StatusCode.INVALID_ARGUMENT, "amount"),
    ("RecordPayment", pb.RecordPaymentRequest(op_id="q", account="A1", amount="1.00",
                                              paid_on="2026-02-30"),
     grpc.StatusCode.INVALID_ARGUMENT, "paid_on"),
])
def test_bad_requests_name_the_field(stub, method, request_, code, field):
    got, details = _code(getattr(stub, method), request_)
    assert got == code and details.startswith(field), details
