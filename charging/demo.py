"""`ccs demo` (what `make demo` runs): the engine on embedded defaults, end to end, then a clean stop.

Starts a real redis-server (AOF on) in a temporary folder and the gRPC node with the example
catalog; creates accounts over gRPC, prices and charges two calls, rates a CDR file, audits
every ledger, and stops everything it started.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc

from accounts.audit import audit
from accounts.embedded import EmbeddedRedis
from accounts.presentation import money_text
from accounts.store import AccountStore
from charging.charge import Charger
from charging.server import build_node, check_health
from proto.ccs.v1 import accounts_pb2 as apb
from proto.ccs.v1 import accounts_pb2_grpc, charging_pb2_grpc, common_pb2
from proto.ccs.v1 import charging_pb2 as cpb
from rating.catalog import load_catalog
from rating.compiler import compile_catalog
from rating.engine import Plan, price_enquiry
from rating.money import format_money, parse_money

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _create_accounts(stub) -> None:
    requests = [
        apb.CreateAccountRequest(op_id="demo-create-alice", account_id="alice",
                                 payment_type=apb.PREPAID, msisdns=["4915100000001"],
                                 offers=["smart_m"]),
        apb.CreateAccountRequest(op_id="demo-create-acme", account_id="acme",
                                 payment_type=apb.POSTPAID, credit_limit="100.00",
                                 offers=["flat_l"], bill_cycle_day=15),
        apb.CreateAccountRequest(op_id="demo-create-acme-1", account_id="acme-1",
                                 payment_type=apb.PREPAID, parent="acme", offers=["flat_l"],
                                 msisdns=["4917000000002"]),
    ]
    for request in requests:
        reply = stub.CreateAccount(request, timeout=10)
        a = reply.account
        limit = "unlimited" if a.unlimited else a.credit_limit
        _say(f"created {a.id}: {apb.PaymentType.Name(a.payment_type).lower()}, "
             f"credit limit {limit}, offers {[s.offer for s in a.subscriptions]}, "
             f"{len(a.buckets)} bucket(s)")
    reply = stub.TopUp(apb.TopUpRequest(op_id="demo-topup-1", account_id="alice", amount="25.00"),
                       timeout=10)
    _say(f"alice topped up 25.00: balance {reply.account.balance}, available "
         f"{reply.account.available} (a 2.00 gift for a top-up >= 20.00)")
    again = stub.TopUp(apb.TopUpRequest(op_id="demo-topup-1", account_id="alice", amount="25.00"),
                       timeout=10)
    _say(f"the same top-up retried: applied={again.applied}, balance still {again.account.balance}")


def _charge_call(stub, store, decimals, account, session, destination, seconds) -> None:
    """One voice session through the node's Charging service: INITIAL, an UPDATE at 60 s,
    TERMINATE with the rest; the node prices the session as one CDR, started now."""
    before = store.family_available(account)

    def ask(kind, n, requested=None, used=None):
        u = cpb.ServiceUnit(rating_group=1, service="voice", destination=destination)
        if requested is not None:
            u.requested.CopyFrom(common_pb2.Units(seconds=requested))
        if used is not None:
            u.used.CopyFrom(common_pb2.Units(seconds=used))
        return stub.Charge(cpb.ChargeRequest(session_id=session, request_type=kind,
                                             request_number=n, subscriber=account,
                                             units=[u]), timeout=10)

    first = ask(cpb.INITIAL, 0, requested=60)
    mid = ask(cpb.UPDATE, 1, requested=60, used=min(seconds, 60))
    last = ask(cpb.TERMINATE, 2, used=max(0, seconds - 60))
    paid = sum(parse_money(r.charged) for r in (first, mid, last))
    after = store.family_available(account)
    _say(f"{account} called {destination} for {seconds} s over Charging (I + U + T): granted "
         f"{first.grants[0].granted.seconds} s then {mid.grants[0].granted.seconds} s, paid "
         f"{format_money(paid, decimals)}, available {money_text(before)} -> {money_text(after)}")


def _rate_file(data_dir: Path) -> None:
    """Rate the example CDR file with the real command, as an operator would."""
    out = data_dir / "rated.csv"
    ccs = Path(sys.executable).with_name("ccs")
    done = subprocess.run(
        [str(ccs), "rate", "--catalog", str(EXAMPLES / "catalog.yaml"), "--cdrs",
         str(EXAMPLES / "cdrs.csv"), "--accounts", str(EXAMPLES / "accounts.csv"), "--out", str(out)],
        capture_output=True, text=True, check=True)
    _say(f"ccs rate docs/examples/cdrs.csv: {done.stderr.strip().removeprefix('ccs rate: ')}")
    with out.open() as f:
        next(f)
        for line in f:
            cells = line.rstrip("\n").split(",")
            if cells[6] != "rated":
                _say(f"  {cells[0]}: {cells[6]} ({cells[7]})")


def run_demo(args) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="ccs-demo-"))
    started = time.monotonic()
    catalog = load_catalog(EXAMPLES / "catalog.yaml")
    compiled = compile_catalog(catalog)
    _say(f"catalog {EXAMPLES / 'catalog.yaml'}: {len(catalog.offers)} offers, "
         f"{sum(len(p) for p in catalog.destinations.values())} prefixes")
    redis_server = EmbeddedRedis(data_dir / "redis").start()
    _say(f"redis-server {redis_server.binary} (pid {redis_server.process.pid}) on "
         f"{redis_server.url} (AOF, fsync always)")
    node = None
    try:
        store = AccountStore(redis_server.client(), catalog)
        charger = Charger(store, catalog, compiled)
        node = build_node("127.0.0.1:0", store=store, catalog=catalog, charger=charger)
        target = f"127.0.0.1:{node.port}"
        status = check_health(target)
        _say(f"ccs node on {target}, health over gRPC: {status}")
        if status != "SERVING":
            return 1
        start = int(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp())  # a Tuesday, peak
        quote = price_enquiry(compiled, Plan("std", ("loyal_voice",)), "voice", start,
                              "4915112345678", 125)
        _say(f"price enquiry, std tariff, 125 s to 4915112345678 at peak: rated "
             f"{quote.rated_usage} s, charge {quote.charge} (band {quote.band})")
        with grpc.insecure_channel(target) as channel:
            _create_accounts(accounts_pb2_grpc.AccountsStub(channel))
            charging = charging_pb2_grpc.ChargingStub(channel)
            _charge_call(charging, store, compiled.decimals, "alice", "demo-call-1",
                         "4915112345678", 125)
            _charge_call(charging, store, compiled.decimals, "alice", "demo-call-2",
                         "33123456789", 95)

        _rate_file(data_dir)
        findings = audit(redis_server.client())
        _say(f"ledger audit of every account: {'clean' if not findings else findings}")
        if findings:
            return 1
    finally:
        if node is not None:
            node.stop(1.0)
        redis_server.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    _say(f"node and redis-server stopped; done in {time.monotonic() - started:.1f}s")
    return 0
