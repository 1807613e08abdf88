"""The committed gRPC modules are exactly what `make proto` generates from the .proto files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto" / "ccs" / "v1"


def test_committed_modules_match_a_fresh_generation(tmp_path):
    work = tmp_path / "proto" / "ccs" / "v1"
    work.mkdir(parents=True)
    for source in PROTO_DIR.glob("*.proto"):
        shutil.copy(source, work / source.name)
    protos = sorted(str(p.relative_to(tmp_path)) for p in work.glob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.",
         "--grpc_python_out=.", "--pyi_out=.", *protos],
        cwd=tmp_path, check=True,
    )
    generated = sorted(p.name for p in work.iterdir() if p.suffix in (".py", ".pyi"))
    committed = sorted(p.name for p in PROTO_DIR.iterdir()
                       if p.suffix in (".py", ".pyi") and p.name != "__init__.py")
    assert generated == committed
    stale = [name for name in generated if (work / name).read_text() != (PROTO_DIR / name).read_text()]
    assert stale == [], f"stale generated modules, run `make proto`: {stale}"


def test_contract_names():
    from proto.ccs.v1 import accounts_pb2, billing_pb2, charging_pb2

    charging = charging_pb2.DESCRIPTOR.services_by_name["Charging"]
    assert set(charging.methods_by_name) == {"Charge", "WatchNotifications"}
    assert charging.full_name == "ccs.v1.Charging"
    accounts = accounts_pb2.DESCRIPTOR.services_by_name["Accounts"]
    assert set(accounts.methods_by_name) == {
        "CreateAccount", "GetAccount", "TopUp", "Adjust", "SetStatus",
        "ChangePaymentType", "Subscribe", "Unsubscribe", "ListLedger"}
    assert set(billing_pb2.DESCRIPTOR.services_by_name["Billing"].methods_by_name) == {
        "ListBills", "GetBill", "RecordPayment"}
    request = charging_pb2.ChargeRequest.DESCRIPTOR.fields_by_name
    assert set(request) >= {"session_id", "request_type", "request_number", "subscriber",
                            "event_time", "origin", "event_action", "units"}
    assert [v.name for v in charging_pb2.RequestType.DESCRIPTOR.values][1:] == [
        "INITIAL", "UPDATE", "TERMINATE", "EVENT"]
    assert [v.name for v in charging_pb2.EventAction.DESCRIPTOR.values][1:] == [
        "DIRECT_DEBIT", "REFUND", "CHECK_BALANCE", "PRICE_ENQUIRY"]
    assert [v.name for v in charging_pb2.ServiceGrant.FinalUnitAction.DESCRIPTOR.values] == [
        "NONE", "TERMINATE", "REDIRECT", "RESTRICT"]
    response = charging_pb2.ChargeResponse.DESCRIPTOR.fields_by_name
    assert set(response) >= {"result_code", "session_id", "request_number", "grants",
                             "charged", "available", "error_message"}
    units = {f.name: f.type for f in charging_pb2.ServiceUnit.DESCRIPTOR.fields}
    assert set(units) == {"rating_group", "service", "destination", "requested", "used"}
