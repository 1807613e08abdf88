"""`ccs accounts ...` run as the real console script against a real redis-server.

Checks what the operator sees: output with exact amounts, and the exit codes 0 / 1 / 2.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

CCS = Path(sys.executable).with_name("ccs")

@pytest.fixture
def cli(redis_client, redis_url, tmp_path, admin_catalog_path):
    """Run `ccs accounts ARGS --redis URL --catalog FILE`; returns the CompletedProcess.

    `redis=None` leaves --redis out: the command then uses the embedded server in the test's
    own CCS_DATA_DIR."""
    catalog = admin_catalog_path
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCS_")}
    env["CCS_DATA_DIR"] = str(tmp_path / "data")  # never the working tree's .ccs-data

    def run(*args, catalog_arg=True, extra_env=None, redis=redis_url):
        cmd = [str(CCS), "accounts", *args]
        if redis:
            cmd += ["--redis", redis]
        if catalog_arg:
            cmd += ["--catalog", str(catalog)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**env, **(extra_env or {})})

    run.catalog = catalog
    return run


def _ok(proc) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def test_create_topup_and_show_json(cli):
    out = _ok(cli("create", "A1", "--prepaid", "--msisdn", "491700000001", "--op-id", "c-1"))
    assert out == "A1: created; prepaid, currency EUR, credit limit 0.00, balance 0.00\n"
    out = _ok(cli("topup", "A1", "12.5", "--op-id", "t-1"))
    assert out == "A1: topped up 12.50; status active, balance 12.50 EUR, available 12.50\n"
    shown = json.loads(_ok(cli("show", "491700000001", "--json")))
    assert shown == {
        "id": "A1", "currency": "EUR", "status": "active", "payment_type": "prepaid",
        "credit_limit": "0.00", "unlimited": False, "balance": "12.50", "reserved": "0.00",
        "available": "12.50", "bill_cycle_day": 1, "parent": None,
        "msisdns": ["491700000001"], "subscriptions": [], "buckets": [], "reservations": [],
        "counters": {},
    }


def test_generated_op_id_is_printed_and_a_retry_with_it_changes_nothing(cli):
    _ok(cli("create", "A1", "--prepaid"))
    out = _ok(cli("topup", "A1", "7.25"))
    m = re.match(r"op-id: ([0-9a-f-]{36}) \(generated; retry with --op-id \1\)\n", out)
    assert m, out
    retry = _ok(cli("topup", "A1", "7.25", "--op-id", m.group(1)))
    assert retry == (f"already applied (op-id {m.group(1)}): nothing changed\n"
                     "A1: topped up 7.25; status active, balance 7.25 EUR, available 7.25\n")
    assert json.loads(_ok(cli("show", "A1", "--json")))["balance"] == "7.25"


@pytest.mark.parametrize("amount, message", [
    ("12,50", "amount: malformed amount '12,50'"),
    ("-3", "amount: amount '-3' must not be negative"),
    ("0.0000001", "amount: amount '0.0000001' has more than 6 decimals"),
])
def test_malformed_amount_exits_2_naming_the_amount(cli, amount, message):
    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    proc = cli("topup", "A1", amount, "--op-id", "t-1")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""
    assert json.loads(_ok(cli("show", "A1", "--json")))["balance"] == "0.00"


def test_malformed_credit_limit_id_or_msisdn_exits_2(cli):
    proc = cli("create", "P1", "--postpaid", "--credit-limit", "lots")
    assert proc.returncode == 2
    assert "--credit-limit: malformed amount 'lots'" in proc.stderr
    proc = cli("create", "P1", "--prepaid", "--credit-limit", "5")
    assert (proc.returncode, "--credit-limit: only a postpaid" in proc.stderr) == (2, True)
    proc = cli("create", "bad id!", "--prepaid")
    assert (proc.returncode, "account_id: expected 1-64" in proc.stderr) == (2, True)
    proc = cli("create", "P1", "--prepaid", "--msisdn", "call-me")
    assert (proc.returncode, "msisdns: " in proc.stderr) == (2, True)
    assert cli("show", "P1").returncode == 1  # nothing was created


def test_unknown_account_and_op_id_conflict_exit_1(cli):
    proc = cli("show", "nobody")
    assert proc.returncode == 1 and "refused" in proc.stderr and "nobody" in proc.stderr
    assert cli("topup", "nobody", "1", "--op-id", "t-0").returncode == 1
    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "10", "--op-id", "t-1"))
    proc = cli("topup", "A1", "11", "--op-id", "t-1")
    assert proc.returncode == 1 and "op_id" in proc.stderr
    assert json.loads(_ok(cli("show", "A1", "--json")))["balance"] == "10.00"
    assert cli("create", "A1", "--prepaid", "--op-id", "c-2").returncode == 1
    assert _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1")) == (
        "already applied (op-id c-1): nothing changed\n"
        "A1: created; prepaid, currency EUR, credit limit 0.00, balance 10.00\n")


def test_adjust_suspend_resume_convert(cli):
    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "10", "--op-id", "t-1"))
    out = _ok(cli("adjust", "A1", "-2.255", "--reason", "goodwill reversal", "--op-id", "a-1"))
    assert out == ("A1: adjusted by -2.255 (goodwill reversal); status active, "
                   "balance 7.745 EUR, available 7.745\n")
    out = _ok(cli("suspend", "A1", "--op-id", "s-1", "--reason", "fraud check"))
    assert out == "A1: suspended; status suspended, balance 7.745 EUR, available 7.745\n"
    out = _ok(cli("resume", "A1", "--op-id", "s-2"))
    assert out == "A1: resumed; status active, balance 7.745 EUR, available 7.745\n"
    out = _ok(cli("convert", "A1", "--postpaid", "--credit-limit", "100", "--op-id", "p-1"))
    assert out == "A1: converted to postpaid; status active, balance 7.745 EUR, available 107.745\n"
    out = _ok(cli("convert", "A1", "--postpaid", "--op-id", "p-2"))
    assert out == ("A1: converted to postpaid; status active, balance 7.745 EUR, "
                   "available unlimited\n")
    assert cli("adjust", "A1", "1").returncode == 2  # --reason is required


def test_subscribe_and_show_text(cli):
    today = date.today().isoformat()
    _ok(cli("create", "P1", "--postpaid", "--credit-limit", "50", "--msisdn", "491510000001",
            "--bill-cycle-day", "15", "--op-id", "c-1"))
    out = _ok(cli("subscribe", "P1", "basic", "--from", today, "--op-id", "sub-1"))
    assert out == "P1: subscribed to basic; status active, balance 0.00 EUR, available 50.00\n"
    text = _ok(cli("show", "P1"))
    lines = text.splitlines()
    assert lines[:10] == [
        "account         P1",
        "status          active",
        "payment type    postpaid",
        "credit limit    50.00 EUR",
        "balance         0.00 EUR",
        "reserved        0.00 EUR",
        "available       50.00 EUR",
        "bill cycle day  15",
        "parent          -",
        "msisdns         491510000001",
    ]
    assert f"  basic  from {today}  to open" in lines
    assert "reservations    -" in lines
    bad = cli("subscribe", "P1", "basic", "--from", "15.01.2026")
    assert bad.returncode == 2 and "--from: expected a date YYYY-MM-DD" in bad.stderr
    assert cli("subscribe", "P1", "no_such_offer", "--op-id", "sub-2").returncode == 1


def test_ledger_json_and_text(cli):
    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "10", "--op-id", "t-1"))
    _ok(cli("adjust", "A1", "-1", "--reason", "fix", "--op-id", "a-1"))
    entries = json.loads(_ok(cli("ledger", "A1", "--json")))
    assert [e["op_id"] for e in entries][-2:] == ["t-1", "a-1"]
    limited = json.loads(_ok(cli("ledger", "A1", "--json", "--limit", "1")))
    assert limited == entries[:1]
    text = _ok(cli("ledger", "A1")).splitlines()
    assert len(text) == len(entries)
    assert "op-id a-1" in text[-1]


def test_catalog_from_the_environment_or_a_clear_error(cli):
    proc = cli("show", "A1", catalog_arg=False)
    assert proc.returncode == 2
    assert "--catalog: no catalog given (pass --catalog FILE or set CCS_CATALOG)" in proc.stderr
    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1", catalog_arg=False,
            extra_env={"CCS_CATALOG": str(cli.catalog)}))


def test_audit_clean_exits_0(cli):
    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "10", "--op-id", "t-1"))
    assert _ok(cli("audit")) == "audit clean: all accounts\n"
    assert _ok(cli("audit", "A1")) == "audit clean: 1 account(s)\n"


def test_audit_finding_exits_1(cli, redis_client):
    from accounts.keys import AccountKeys

    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "10", "--op-id", "t-1"))
    redis_client.hincrby(AccountKeys("A1", "A1").account, "bal", 5)  # a write behind the ledger
    proc = cli("audit", "A1")
    assert proc.returncode == 1
    assert proc.stdout == "A1: balance: stored 10000005, replayed 10000000\n"
    assert "audit: 1 finding(s) in 1 account(s)" in proc.stderr


def test_show_lists_buckets_reservations_and_counters(cli, redis_url, redis_client):
    import redis as redis_lib

    from accounts.store import AccountStore
    from rating.catalog import load_catalog

    _ok(cli("create", "A1", "--prepaid", "--offer", "basic", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "5", "--op-id", "t-1"))
    store = AccountStore(redis_lib.Redis.from_url(redis_url), load_catalog(cli.catalog))
    debit = store.debit("A1", op_id="d-1", charge=90000, units=1, service="sms",
                        counters={"2026-11|tier|sms": 1})
    assert debit.code == "ok", debit
    held = store.reserve("A1", "sess-1", op_id="r-1", money=1_250000, service="voice", units=120)
    assert held.code == "ok", held
    shown = json.loads(_ok(cli("show", "A1", "--json")))
    assert (shown["balance"], shown["reserved"], shown["available"]) == ("4.91", "1.25", "3.66")
    assert shown["counters"] == {"2026-11|tier|sms": 1}
    [bucket] = shown["buckets"]
    assert (bucket["kind"], bucket["service"], bucket["unit"], bucket["remaining"],
            bucket["initial"], bucket["reserved"]) == ("units", "voice", "seconds", 600, 600, 120)
    [rsv] = shown["reservations"]
    assert (rsv["session"], rsv["service"], rsv["money"], rsv["units"]) == (
        "sess-1", "voice", "1.25", {bucket["id"]: 120})
    lines = _ok(cli("show", "A1")).splitlines()
    assert any(line.startswith(f"  {bucket['id']}  units  600/600 seconds (reserved 120)  voice")
               for line in lines), lines
    assert any(line.startswith("  sess-1  voice  money 1.25 EUR  units ") for line in lines), lines
    assert lines[-2:] == ["counters", "  2026-11|tier|sms = 1"]


def test_without_redis_url_the_embedded_server_keeps_state_and_is_stopped(cli, tmp_path):
    import redis as redis_lib

    _ok(cli("create", "E1", "--prepaid", "--op-id", "c-1", redis=None))
    _ok(cli("topup", "E1", "3.30", "--op-id", "t-1", redis=None))
    shown = json.loads(_ok(cli("show", "E1", "--json", redis=None)))
    assert shown["balance"] == "3.30"
    port = int((tmp_path / "data" / "redis" / "redis.port").read_text())
    with pytest.raises(redis_lib.ConnectionError):  # each command stopped the server it started
        redis_lib.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping()


def test_unreachable_redis_exits_1(cli):
    from accounts.embedded import free_port

    proc = cli("show", "A1", redis=f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 1
    assert "ccs accounts show: Redis unavailable:" in proc.stderr


def test_sweep_releases_a_silent_session_and_keeps_a_live_one(cli, redis_client):
    from accounts.store import AccountStore
    from rating.catalog import load_catalog

    _ok(cli("create", "A1", "--prepaid", "--op-id", "c-1"))
    _ok(cli("topup", "A1", "10", "--op-id", "t-1"))
    store = AccountStore(redis_client, load_catalog(cli.catalog))
    store.reserve("A1", "silent", op_id="r-1", money=2_500_000, validity_s=1)
    store.reserve("A1", "live", op_id="r-2", money=1_000_000, validity_s=3600)
    assert store.get_account("A1").reserved == 3_500_000
    time.sleep(2.1)  # the silent session's validity (1 s) runs out; grace is 0 below
    assert _ok(cli("sweep", "--grace", "0")) == "released 1 reservation(s)\n"
    account = store.get_account("A1")
    assert [r.session for r in account.reservations] == ["live"]
    assert account.reserved == 1_000_000 and account.balance == 10_000_000
    assert _ok(cli("sweep", "--grace", "0", "--all")) == "released 0 reservation(s)\n"
    assert _ok(cli("audit", "A1")) == "audit clean: 1 account(s)\n"


def test_unsubscribe(cli):
    _ok(cli("create", "P1", "--postpaid", "--credit-limit", "50", "--op-id", "c-1"))
    _ok(cli("subscribe", "P1", "basic", "--from", "2031-05-01", "--op-id", "sub-1"))
    out = _ok(cli("unsubscribe", "P1", "basic", "--on", "2031-05-10", "--op-id", "u-1"))
    assert out == ("P1: unsubscribed from basic on 2031-05-10 (2031-05-01..2031-05-10); "
                   "status active, balance 0.00 EUR, available 50.00\n")
    assert json.loads(_ok(cli("show", "P1", "--json")))["subscriptions"] == [
        {"offer": "basic", "from": "2031-05-01", "to": "2031-05-10"}]
    out = _ok(cli("unsubscribe", "P1", "basic", "--on", "2031-05-10", "--op-id", "u-1"))
    assert out.startswith("already applied (op-id u-1): nothing changed\n")
    ledger = json.loads(_ok(cli("ledger", "P1", "--json")))
    assert (ledger[-1]["op"], ledger[-1]["subscriptions"]) == (
        "unsubscribe", [{"offer": "basic", "from": "2031-05-01", "to": "2031-05-10"}])
    # the base offer again from 10 May: the ended subscription no longer holds that day
    _ok(cli("subscribe", "P1", "basic", "--from", "2031-05-10", "--op-id", "sub-2"))
    # refusals: one line, nothing changed
    proc = cli("unsubscribe", "P1", "sms_pack", "--on", "2031-05-10", "--op-id", "u-2")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", "ccs accounts unsubscribe: refused: offer: P1: no subscription to sms_pack "
               "active on 2031-05-10 or later\n")
    proc = cli("unsubscribe", "nobody", "basic", "--on", "2031-05-10", "--op-id", "u-3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", "ccs accounts unsubscribe: refused: account_id: no account 'nobody'\n")
    proc = cli("unsubscribe", "P1", "basic", "--on", "10.05.2031")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        2, "", "ccs accounts unsubscribe: --on: expected a date YYYY-MM-DD, got '10.05.2031'\n")
    assert cli("unsubscribe", "P1", "basic").returncode == 2  # --on is required
    assert json.loads(_ok(cli("show", "P1", "--json")))["subscriptions"] == [
        {"offer": "basic", "from": "2031-05-01", "to": "2031-05-10"},
        {"offer": "basic", "from": "2031-05-10", "to": None}]
