"""The node attacked from outside (issue 11): the Accounts service refuses what the CLI refuses
(one validation), `ccs serve` refuses a bad grace or Redis URL in one line, and health follows
Redis: NOT_SERVING while its redis-server is down, SERVING again once it is back.
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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accounts.embedded import EmbeddedRedis, free_port
from proto.ccs.v1 import accounts_pb2 as pb
from proto.ccs.v1 import accounts_pb2_grpc

CCS = str(Path(sys.executable).with_name("ccs"))


@pytest.fixture(scope="module")
def small_catalog(admin_catalog_path):
    from rating.catalog import load_catalog

    return load_catalog(admin_catalog_path)


@pytest.fixture
def store(redis_client, small_catalog):
    from accounts.store import AccountStore

    return AccountStore(redis_client, small_catalog)


@pytest.fixture
def stub(store, small_catalog):
    from charging.server import build_node

    node = build_node("127.0.0.1:0", store=store, catalog=small_catalog, max_workers=4)
    channel = grpc.insecure_channel(f"127.0.0.1:{node.port}")
    yield accounts_pb2_grpc.AccountsStub(channel)
    channel.close()
    node.stop(0)


def _refused(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def _create(stub, account_id="A1"):
    stub.CreateAccount(pb.CreateAccountRequest(op_id=f"c-{account_id}", account_id=account_id,
                                               payment_type=pb.PREPAID), timeout=30)


# --- 10 and 13: Subscribe and ListLedger -----------------------------------------------------

def test_an_empty_subscription_is_accepted_and_the_base_offer_stays_free(stub):
    # billing.md: subscribed and cancelled the same day is 0 days; it holds no base-offer place
    _create(stub)
    code, message = _refused(stub.Subscribe, pb.SubscribeRequest(
        op_id="s-0", account_id="A1", offer="basic", from_date="2031-05-01",
        to_date="2031-04-30"))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "to_date: 2031-04-30 is before from_date 2031-05-01 (to is "
                               "exclusive: to = from is an empty subscription)")
    stub.Subscribe(pb.SubscribeRequest(op_id="s-1", account_id="A1", offer="basic",
                                       from_date="2031-05-01", to_date="2031-05-01"), timeout=30)
    reply = stub.Subscribe(pb.SubscribeRequest(op_id="s-2", account_id="A1", offer="basic",
                                               from_date="2031-05-01"), timeout=30)
    assert [(s.offer, s.from_date, s.to_date) for s in reply.account.subscriptions] == [
        ("basic", "2031-05-01", "2031-05-01"), ("basic", "2031-05-01", "")]


@pytest.mark.parametrize("from_date, to_date, message", [
    ("0001-01-01", "", "from_date: 0001-01-01 is outside 1970-01-01..2999-12-31"),
    ("2031-05-01", "9999-12-31", "to_date: 9999-12-31 is outside 1970-01-01..2999-12-31"),
    ("2031-13-01", "", "from_date: not a calendar date: '2031-13-01'"),
])
def test_dates_out_of_range_are_invalid_argument(stub, from_date, to_date, message):
    _create(stub)
    assert _refused(stub.Subscribe, pb.SubscribeRequest(
        op_id="s-1", account_id="A1", offer="basic", from_date=from_date, to_date=to_date)) == (
        grpc.StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize("after", ["garbage", "12", "1-2-3", "18446744073709551616-0"])
def test_list_ledger_after_garbage_is_invalid_argument(stub, after):
    _create(stub)
    assert _refused(stub.ListLedger, pb.ListLedgerRequest(account_id="A1", after=after)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"after: expected a ledger entry id MILLISECONDS-SEQUENCE such as 1700000000000-0, "
        f"got {after!r}")


def test_list_ledger_limit_is_bounded(stub):
    _create(stub)
    assert _refused(stub.ListLedger, pb.ListLedgerRequest(account_id="A1", limit=10_001)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "limit: expected 1..10000 entries, got 10001")


# --- 18: op ids and MSISDNs ------------------------------------------------------------------

@pytest.mark.parametrize("op_id", ["   ", " t-1", "t-1\n", "t\x00-1", "x" * 1025])
def test_a_blank_or_padded_op_id_is_invalid_argument(stub, store, op_id):
    _create(stub)
    code, message = _refused(stub.TopUp, pb.TopUpRequest(op_id=op_id, account_id="A1",
                                                         amount="5"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("op_id: expected 1-1024 printable characters without "
                              "surrounding whitespace, got ")
    assert store.get_account("A1").balance == 0


def test_a_blank_op_id_cannot_create_an_account(stub, redis_client):
    code, message = _refused(stub.CreateAccount, pb.CreateAccountRequest(
        op_id="   ", account_id="A1", payment_type=pb.PREPAID))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == ("op_id: expected 1-1024 printable characters without surrounding "
                       "whitespace, got '   '")
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("amount", ["\u0665", "\uff15", "\U0001d7d3", "+5", " 5", "5 "])
def test_money_is_ascii_digits_only(stub, store, amount):
    _create(stub)
    assert _refused(stub.TopUp, pb.TopUpRequest(op_id="t-1", account_id="A1", amount=amount)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"amount: malformed amount {amount!r} (expected ASCII digits 0-9, an optional leading "
        f"'-' and up to 6 decimals after a '.')")
    assert store.get_account("A1").balance == 0


def test_create_with_100000_msisdns_is_refused_before_any_redis_work(stub, redis_client):
    msisdns = [f"4917{i:08d}" for i in range(100_000)]
    assert _refused(stub.CreateAccount, pb.CreateAccountRequest(
        op_id="c-1", account_id="A1", payment_type=pb.PREPAID, msisdns=msisdns)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "msisdns: at most 100 MSISDNs per account, got 100000")
    assert redis_client.dbsize() == 0


# --- 4 and 14: `ccs serve` refuses a bad grace or Redis in one line --------------------------

def _serve(*args, env_extra=None, tmp_path=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCS_")}
    if tmp_path is not None:
        env["CCS_DATA_DIR"] = str(tmp_path)
    return subprocess.run([CCS, "serve", "--listen", f"127.0.0.1:{free_port()}", *args],
                          capture_output=True, text=True, timeout=60,
                          env={**env, **(env_extra or {})})


def test_serve_refuses_a_negative_reservation_grace(redis_url, admin_catalog_path, tmp_path):
    proc = _serve("--redis", redis_url, "--catalog", str(admin_catalog_path),
                  "--reservation-grace", "-100000", tmp_path=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, "", "ccs serve: --reservation-grace: expected 0..86400 seconds, got -100000\n")


def test_serve_refuses_a_malformed_redis_url(admin_catalog_path, tmp_path):
    for url, reason in (("http://127.0.0.1:1/0", "the scheme must be redis://, rediss:// or "
                                                 "unix://"),
                        ("redis://127.0.0.1:notaport/0",
                         "Port could not be cast to integer value as 'notaport'")):
        proc = _serve("--redis", url, "--catalog", str(admin_catalog_path), tmp_path=tmp_path)
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            2, "", f"ccs serve: --redis: malformed Redis URL {url!r}: {reason}\n")


def test_serve_refuses_a_port_that_is_not_redis(admin_catalog_path, tmp_path, http_port):
    url = f"redis://127.0.0.1:{http_port}/0"
    proc = _serve("--redis", url, "--catalog", str(admin_catalog_path), tmp_path=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith(f"ccs serve: Redis unavailable: --redis {url}: not a Redis "
                                  f"server (Protocol error")
    assert proc.stderr.count("\n") == 1


def test_serve_refuses_an_unreachable_redis(admin_catalog_path, tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = _serve("--redis", url, "--catalog", str(admin_catalog_path), tmp_path=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith(f"ccs serve: Redis unavailable: --redis {url}: Error 111 ")
    assert proc.stderr.count("\n") == 1


# --- 15: health follows Redis ----------------------------------------------------------------

def _status(target: str, service: str = "") -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def _wait_for(target: str, want: str) -> list[str]:
    """Poll health until it says `want` (a deadline for the test, not a speed claim); returns
    the statuses seen, the last one being `want` unless the deadline passed."""
    seen = [_status(target)]
    deadline = time.monotonic() + 30
    while seen[-1] != want and time.monotonic() < deadline:
        time.sleep(0.1)
        seen.append(_status(target))
    return seen


def test_health_follows_redis_through_an_outage(tmp_path, admin_catalog_path):
    redis_server = EmbeddedRedis(tmp_path / "redis").start()  # the node's own, killed below
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCS_")}
    node = subprocess.Popen(
        [CCS, "serve", "--listen", target, "--redis", redis_server.url,
         "--catalog", str(admin_catalog_path)],
        stdout=subprocess.PIPE, stderr=(tmp_path / "node.log").open("w"), text=True, env=env)
    try:
        assert re.search(rf"listening on {re.escape(target)}", node.stdout.readline())
        assert _status(target) == "SERVING"
        with grpc.insecure_channel(target) as channel:
            accounts = accounts_pb2_grpc.AccountsStub(channel)
            accounts.CreateAccount(pb.CreateAccountRequest(
                op_id="c-1", account_id="A1", payment_type=pb.PREPAID), timeout=10)

            redis_server.kill()
            assert _wait_for(target, "NOT_SERVING")[-1] == "NOT_SERVING"
            for service in ("ccs.v1.Accounts", "ccs.v1.Charging"):
                assert _status(target, service) == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as err:
                accounts.GetAccount(pb.GetAccountRequest(account_id="A1"), timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

            redis_server.start()  # same port and data folder: the AOF brings A1 back
            assert _wait_for(target, "SERVING")[-1] == "SERVING"
            assert _status(target, "ccs.v1.Accounts") == "SERVING"
            reply = accounts.GetAccount(pb.GetAccountRequest(account_id="A1"), timeout=30)
            assert (reply.account.id, reply.account.balance) == ("A1", "0.00")
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0
        redis_server.cleanup()
