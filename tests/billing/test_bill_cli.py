"""`ccs bill ...` as an operator runs it: a real process, a real redis-server, SQLite files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from accounts.store import AccountStore
from rating.catalog import parse_catalog
from tests.billing.test_billrun import BILL_CATALOG, FIXED, MOBILE

CCS = [sys.executable, "-m", "charging.cli"]


@pytest.fixture
def env(tmp_path, redis_url, redis_client):
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(BILL_CATALOG)
    store = AccountStore(redis_client, parse_catalog(BILL_CATALOG))
    db = f"sqlite:///{tmp_path / 'bills.db'}"

    def ccs(*args, check=None):
        proc = subprocess.run([*CCS, "bill", *args, "--db", db, "--redis", redis_url,
                               "--catalog", str(catalog_path)],
                              capture_output=True, text=True, timeout=120)
        if check is not None:
            assert proc.returncode == check, proc.stderr
        return proc

    store.create("A1", credit_limit=None)
    store.subscribe("A1", "smart", op_id="s1", from_date="2026-10-01")
    store.create("A2", credit_limit=None)
    store.subscribe("A2", "plain", op_id="s2", from_date="2026-10-01")
    cdrs = tmp_path / "nov.csv"
    cdrs.write_text("cdr_id,account,service,start,usage,destination\n"
                    f"1,A1,voice,2026-11-03T10:00:00Z,200,{MOBILE}\n"
                    f"2,A2,voice,2026-11-03T10:00:00Z,60,{FIXED}\n"
                    "3,NOBODY,sms,2026-11-03T10:00:00Z,1,\n")
    return ccs, cdrs, tmp_path


def test_run_show_export_finalize_pay(env):
    ccs, cdrs, tmp = env
    out = ccs("run", "--cycle", "2026-11", "--cdrs", str(cdrs), check=0).stdout
    assert "2 bill(s): 2 invoice(s), 0 statement(s)" in out
    assert "CDRs rated 2, rejected 1 (unknown_account 1)" in out
    bill = json.loads(ccs("show", "A1", "--cycle", "2026-11", "--json", check=0).stdout)
    # A1: 200 s -> 240 s, 120 covered, 120 s uncovered (no connect fee): 0.24; smart 10.00;
    # VAT 19% of 10.24 = 1.9456 -> 1.95; total 12.19
    assert (bill["subtotal"], bill["tax"], bill["total"]) == ("10.24", "1.95", "12.19")
    text = ccs("show", "A1", "--cycle", "2026-11", check=0).stdout
    assert "12.19" in text and "voice" in text
    ccs("export", "--cycle", "2026-11", "--out", str(tmp / "out"), check=0)
    assert sorted(p.name for p in (tmp / "out").iterdir()) == [
        "A1.html", "A1.json", "A2.html", "A2.json", "summary.csv"]
    assert json.loads((tmp / "out" / "A1.json").read_text()) == bill
    rows = list(csv.DictReader((tmp / "out" / "summary.csv").open()))
    assert [(r["account"], r["total"]) for r in rows] == [("A1", "12.19"), ("A2", "3.59")]
    # payments go to final bills only: before finalize nothing is allocated
    out = ccs("pay", "A1", "5.00", "--op-id", "p1", "--paid-on", "2026-12-03", check=0).stdout
    assert "unallocated: 5.00" in out
    assert "finalised" in ccs("finalize", "--cycle", "2026-11", check=0).stdout
    assert json.loads(ccs("show", "A1", "--cycle", "2026-11", "--json", check=0).stdout)[
        "status"] == "final"
    # finalising allocated the 5.00 paid before: 7.19 is left to pay, and 5.00 of 12.19 over
    out = ccs("pay", "A1", "12.19", "--op-id", "p2", "--paid-on", "2026-12-04", check=0).stdout
    assert "allocated to A1/2026-11: 7.19" in out and "unallocated: 5.00" in out
    out = ccs("pay", "A1", "12.19", "--op-id", "p2", "--paid-on", "2026-12-04", check=0).stdout
    assert "already recorded" in out
    # the final cycle cannot be run again
    err = ccs("run", "--cycle", "2026-11", check=2).stderr
    assert "cycle 2026-11 is final" in err
    # A2 unpaid: due 2026-12-14, grace 10 days: suspended on an arrears run as of 2026-12-25
    assert "suspend A2" in ccs("arrears", "--as-of", "2026-12-25", check=0).stdout
    assert "0 action(s)" in ccs("arrears", "--as-of", "2026-12-25", check=0).stdout


@pytest.mark.parametrize("args, message", [
    (("run", "--cycle", "2026-13"), "--cycle: expected YYYY-MM, got '2026-13'"),
    (("run", "--cycle", "2026-11", "--partition", "3/2"), "--partition: expected K/N"),
    (("run", "--cycle", "2026-11", "--cdrs", "/nonexistent.csv"), "--cdrs: /nonexistent.csv"),
    (("show", "NOBODY", "--cycle", "2026-11"), "ACCOUNT: no bill of 'NOBODY' for cycle 2026-11"),
    (("finalize", "--cycle", "2030-01"), "--cycle: cycle 2030-01 was never run"),
    (("pay", "A1", "ten", "--op-id", "x"), "AMOUNT"),
    (("pay", "A1", "1.005", "--op-id", "x"), "AMOUNT: 1.005 has more than the bills' 2 decimals"),
    (("pay", "A1", "1.00", "--op-id", "x", "--paid-on", "2026-02-30"), "--paid-on: expected a date"),
    (("arrears", "--as-of", "tomorrow"), "--as-of: expected a date YYYY-MM-DD"),
])
def test_bad_input_is_one_line_naming_it_exit_2(env, args, message):
    ccs, _, _ = env
    proc = ccs(*args, check=2)
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_a_cdr_file_writes_nothing(env):
    ccs, _, tmp = env
    bad = tmp / "bad.csv"
    bad.write_text("just,some\ncolumns,here\n")
    proc = ccs("run", "--cycle", "2026-11", "--cdrs", str(bad), check=2)
    assert "--cdrs" in proc.stderr and "Traceback" not in proc.stderr
    assert "no bill" in ccs("show", "A1", "--cycle", "2026-11", check=2).stderr
