"""`ccs accounts ...` attacked from outside (issue 11): every bad input is one line naming its
argument with exit 2, an unreachable or wrong server exit 1, never a traceback, and nothing
is printed (no generated op id) or changed for input that is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from accounts.keys import AccountKeys
from accounts.store import AccountStore
from rating.catalog import load_catalog

CCS = str(Path(sys.executable).with_name("ccs"))


@pytest.fixture
def ccs(redis_client, redis_url, tmp_path, admin_catalog_path):
    """ccs("accounts", "show", "A1") -> CompletedProcess; `--redis URL --catalog FILE` are
    appended unless `redis=None` / `catalog=False`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCS_")}
    env["CCS_DATA_DIR"] = str(tmp_path / "data")

    def run(*args, redis=redis_url, catalog=True, extra_env=None):
        cmd = [CCS, *args]
        if redis:
            cmd += ["--redis", redis]
        if catalog:
            cmd += ["--catalog", str(admin_catalog_path)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**env, **(extra_env or {})})

    run.env = env
    run.catalog = admin_catalog_path
    return run


@pytest.fixture
def store(redis_client, admin_catalog_path):
    return AccountStore(redis_client, load_catalog(admin_catalog_path))


def _ok(proc) -> str:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def _one_line_error(proc, code: int, line: str) -> None:
    """Exit `code` with exactly `line` on stderr, nothing on stdout."""
    assert (proc.returncode, proc.stderr, proc.stdout) == (code, line + "\n", "")


# --- 4: a negative reservation grace ---------------------------------------------------------

def test_sweep_refuses_a_negative_grace_and_releases_nothing(ccs, store):
    store.create("A1", op_id="c-1")
    store.topup("A1", 10_000_000, op_id="t-1")
    store.reserve("A1", "live", op_id="r-1", money=2_000_000, validity_s=600)
    for args in (("--grace", "-1000"), ("--grace", "-1000", "--all")):
        proc = ccs("accounts", "sweep", *args)
        _one_line_error(proc, 2, "ccs accounts sweep: --grace: expected 0..86400 seconds, "
                                 "got -1000")
    account = store.get_account("A1")
    assert [(r.session, r.money) for r in account.reservations] == [("live", 2_000_000)]
    assert account.reserved == 2_000_000
    assert [e["op"] for e in store.ledger("A1")] == ["create", "topup", "reserve"]


# --- 10 and 13: subscription dates, ledger ids -----------------------------------------------

@pytest.mark.parametrize("args, line", [
    (("--from", "2031-05-02", "--to", "2031-05-01"),
     "--to: 2031-05-01 is before --from 2031-05-02 (to is exclusive: to = from is an empty "
     "subscription)"),
    (("--from", "0001-01-01"),
     "--from: 0001-01-01 is outside 1970-01-01..2999-12-31"),
    (("--from", "2031-05-01", "--to", "9999-12-31"),
     "--to: 9999-12-31 is outside 1970-01-01..2999-12-31"),
    (("--from", "2031-02-30"), "--from: not a calendar date: '2031-02-30'"),
    (("--from", "20310501"), "--from: expected a date YYYY-MM-DD, got '20310501'"),
])
def test_subscribe_refuses_bad_dates_before_printing_an_op_id(ccs, store, args, line):
    store.create("A1", op_id="c-1")
    proc = ccs("accounts", "subscribe", "A1", "sms_pack", *args)
    _one_line_error(proc, 2, f"ccs accounts subscribe: {line}")
    assert store.get_account("A1").subscriptions == ()


@pytest.mark.parametrize("after", ["garbage", "12", "1-2-3", "-1-0", "99999999999999999999999-0"])
def test_ledger_after_must_be_an_entry_id(ccs, store, after):
    store.create("A1", op_id="c-1")
    proc = ccs("accounts", "ledger", "A1", f"--after={after}")
    _one_line_error(proc, 2, f"ccs accounts ledger: --after: expected a ledger entry id "
                             f"MILLISECONDS-SEQUENCE such as 1700000000000-0, got {after!r}")


def test_ledger_after_an_entry_id_pages_on(ccs, store):
    store.create("A1", op_id="c-1")
    store.topup("A1", 1_000_000, op_id="t-1")
    first, second = [e["id"] for e in json.loads(_ok(ccs("accounts", "ledger", "A1", "--json")))]
    entries = json.loads(_ok(ccs("accounts", "ledger", "A1", "--json", "--after", first)))
    assert [e["id"] for e in entries] == [second]


# --- 14: --redis that is not a usable Redis --------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    ("redis://127.0.0.1:notaport/0", "Port could not be cast to integer value as 'notaport'"),
    ("redis://127.0.0.1:99999/0", "Port out of range 0-65535"),
    ("http://127.0.0.1:6379/0", "the scheme must be redis://, rediss:// or unix://"),
    ("redis://127.0.0.1:6379/abc", "the database must be a number, got 'abc'"),
    ("redis://[::1/0", "Invalid IPv6 URL"),
])
def test_a_malformed_redis_url_exits_2_naming_it(ccs, url, reason):
    proc = ccs("accounts", "show", "A1", redis=url)
    _one_line_error(proc, 2, f"ccs accounts show: --redis: malformed Redis URL {url!r}: {reason}")


def test_a_malformed_url_in_the_environment_is_named_as_such(ccs):
    proc = ccs("accounts", "show", "A1", redis=None, extra_env={"CCS_REDIS_URL": "http://x/0"})
    _one_line_error(proc, 2, "ccs accounts show: $CCS_REDIS_URL: malformed Redis URL "
                             "'http://x/0': the scheme must be redis://, rediss:// or unix://")


def test_a_database_the_server_does_not_have_exits_2(ccs, redis_server):
    url = f"redis://127.0.0.1:{redis_server.port}/99"
    proc = ccs("accounts", "show", "A1", redis=url)
    _one_line_error(proc, 2, f"ccs accounts show: --redis: {url}: the server refused "
                             f"database 99 (DB index is out of range)")


def test_a_port_that_speaks_http_exits_1_naming_redis(ccs, http_port):
    url = f"redis://127.0.0.1:{http_port}/0"
    proc = ccs("accounts", "show", "A1", redis=url)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"ccs accounts show: Redis unavailable: --redis {url}: "
                                  f"not a Redis server (Protocol error")
    assert proc.stderr.count("\n") == 1


def test_an_unreachable_redis_exits_1_naming_redis(ccs):
    from accounts.embedded import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = ccs("accounts", "topup", "A1", "5", redis=url)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.startswith(f"ccs accounts topup: Redis unavailable: --redis {url}: "
                                  f"Error 111 connecting to 127.0.0.1:")
    assert proc.stderr.count("\n") == 1


# --- 17: audit of an unknown id, a closed stdout, op ids printed for refused input -----------

def test_audit_of_an_unknown_account_exits_2(ccs, store):
    store.create("A1", op_id="c-1")
    _one_line_error(ccs("accounts", "audit", "NOPE"), 2,
                    "ccs accounts audit: ID: unknown account 'NOPE'")
    _one_line_error(ccs("accounts", "audit", "A1", "NOPE"), 2,
                    "ccs accounts audit: ID: unknown account 'NOPE'")
    _one_line_error(ccs("accounts", "audit", "bad id!"), 2,
                    "ccs accounts audit: ID: expected 1-64 of [A-Za-z0-9_.-] starting with a "
                    "letter or digit, got 'bad id!'")
    assert _ok(ccs("accounts", "audit", "A1")) == "audit clean: 1 account(s)\n"


def test_audit_of_an_account_whose_data_is_still_there_reports_it(ccs, store, redis_client):
    """An id with data but no lookup key is not 'unknown': the audit has a finding (exit 1)."""
    store.create("A1", op_id="c-1")
    redis_client.delete("acct:A1")
    proc = ccs("accounts", "audit", "A1")
    assert proc.returncode == 1, proc
    assert proc.stdout.startswith("A1: ")


def test_a_closed_stdout_ends_the_command_quietly(ccs, store, redis_url):
    """`ccs accounts ledger A1 --json | head -1`: no BrokenPipeError traceback, exit 141
    (128 + SIGPIPE, what a shell shows for a writer whose reader went away)."""
    store.create("A1", op_id="c-1")
    for i in range(300):  # --json output (300 kB) well beyond a pipe's buffer (64 kB)
        store.adjust("A1", 1_000_000, op_id=f"a-{i}", reason="r" * 1000)
    cmd = [CCS, "accounts", "ledger", "A1", "--json", "--limit", "1000",
           "--redis", redis_url, "--catalog", str(ccs.catalog)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ccs.env)
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()  # what `| head -1` does after its line
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert (proc.wait(timeout=60), stderr) == (141, "")


@pytest.mark.parametrize("args, line", [
    (("topup", "bad id!", "5"), "account_id: expected 1-64 of [A-Za-z0-9_.-] starting with a "
                                "letter or digit, got 'bad id!'"),
    (("adjust", "bad id!", "-1", "--reason", "x"), "account_id: expected 1-64 of [A-Za-z0-9_.-] "
                                                   "starting with a letter or digit, got 'bad id!'"),
    (("suspend", "bad id!"), "account_id: expected 1-64 of [A-Za-z0-9_.-] starting with a "
                             "letter or digit, got 'bad id!'"),
    (("convert", "bad id!", "--prepaid"), "account_id: expected 1-64 of [A-Za-z0-9_.-] starting "
                                          "with a letter or digit, got 'bad id!'"),
    (("subscribe", "bad id!", "sms_pack"), "account_id: expected 1-64 of [A-Za-z0-9_.-] starting "
                                           "with a letter or digit, got 'bad id!'"),
    (("create", "A2", "--prepaid", "--msisdn", "call-me"), "msisdns: expected "),
    (("create", "A2", "--prepaid", "--parent", "bad id!"),
     "parent: expected 1-64 of [A-Za-z0-9_.-] starting with a letter or digit, got 'bad id!'"),
    (("create", "A2", "--prepaid", "--currency", "USD"),
     "refused: currency: 'USD': accounts are kept in EUR"),
    (("create", "A2", "--prepaid", "--offer", "sms_pack", "--offer", "sms_pack"),
     "refused: offers: an offer is listed twice"),
])
def test_refused_input_prints_no_generated_op_id(ccs, store, args, line):
    store.create("A1", op_id="c-1")
    before = store.r.dbsize()
    proc = ccs("accounts", *args)
    assert proc.stdout == ""
    assert proc.returncode in (1, 2)
    verb = args[0]
    assert proc.stderr.startswith(f"ccs accounts {verb}: {line}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n")
    assert store.r.dbsize() == before


@pytest.mark.parametrize("op_id", ["   ", " t-1", "t-1\n", "t\x07-1", "x" * 1025])
def test_an_op_id_must_be_printable_without_surrounding_blanks(ccs, store, op_id):
    store.create("A1", op_id="c-1")
    proc = ccs("accounts", "topup", "A1", "5", "--op-id", op_id)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("ccs accounts topup: --op-id: expected 1-1024 printable "
                                  "characters without surrounding whitespace, got ")
    assert store.get_account("A1").balance == 0


# --- 18: money strings -----------------------------------------------------------------------

@pytest.mark.parametrize("amount", ["\u0665", "\uff15", "\U0001d7d3", "+5", " 5", "5 "])
def test_topup_refuses_money_that_is_not_ascii_digits(ccs, store, amount):
    store.create("A1", op_id="c-1")
    proc = ccs("accounts", "topup", "A1", amount)
    _one_line_error(proc, 2, f"ccs accounts topup: amount: malformed amount {amount!r} "
                             f"(expected ASCII digits 0-9, an optional leading '-' and up to 6 "
                             f"decimals after a '.')")
    assert store.get_account("A1").balance == 0


def test_too_many_msisdns_are_refused_before_any_redis_work(ccs, store):
    store.create("A1", op_id="c-1")
    before = store.r.dbsize()
    args = [a for i in range(101) for a in ("--msisdn", f"4917000{i:05d}")]
    proc = ccs("accounts", "create", "A2", "--prepaid", *args)
    _one_line_error(proc, 2, "ccs accounts create: msisdns: at most 100 MSISDNs per account, "
                             "got 101")
    assert store.r.dbsize() == before
    assert not store.r.exists(AccountKeys("A2", "A2").account)
