"""`ccs gen` (issue 14, item 2): a seeded operator plan, loaded through the account store's
verbs, and seeded CDR files that `ccs rate` rates with no rejection but the injected ones.
Real `ccs` processes, a real private redis-server, the example catalog.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_CATALOG

CCS = str(Path(sys.executable).with_name("ccs"))
CAT = str(EXAMPLE_CATALOG)


def ccs(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([CCS, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def plan_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Path:
    """60 accounts of the example catalog, seed 7, cycle 2026-11."""
    path = tmp_path_factory.mktemp("gen") / "plan.csv"
    ccs("gen", "accounts", "--catalog", CAT, "--count", 60, "--seed", 7, "--cycle", "2026-11",
        "--out", path)
    return path


# --- determinism --------------------------------------------------------------------------

def test_the_same_seed_gives_the_same_bytes_and_another_seed_others(tmp_path, plan):
    for name in ("a.csv", "b.csv", "c.jsonl", "d.jsonl"):
        ccs("gen", "accounts", "--catalog", CAT, "--count", 60, "--seed", 7,
            "--cycle", "2026-11", "--out", tmp_path / name)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes() \
        == plan.read_bytes()
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "d.jsonl").read_bytes()
    ccs("gen", "accounts", "--catalog", CAT, "--count", 60, "--seed", 8, "--cycle", "2026-11",
        "--out", tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_bytes() != plan.read_bytes()
    # the JSONL plan is the same plan: its CDRs are the CSV plan's, byte for byte
    for name, accounts in (("x.csv", plan), ("y.csv", tmp_path / "c.jsonl"),
                           ("z.csv", plan)):
        ccs("gen", "cdrs", "--accounts", accounts, "--catalog", CAT, "--count", 500,
            "--cycle", "2026-11", "--seed", 3, "--out", tmp_path / name,
            "--inject-malformed", 4)
    assert (tmp_path / "x.csv").read_bytes() == (tmp_path / "y.csv").read_bytes() \
        == (tmp_path / "z.csv").read_bytes()


def test_benchmarks_gen_keeps_its_functions_and_outputs(tmp_path):
    """benchmarks/gen.py imports the promoted columns: the same arrays and file bytes as
    before the move (digests taken from the old benchmarks/gen.py)."""
    from benchmarks import gen
    from charging import gen_cdrs

    assert gen.cdr_arrays is gen_cdrs.cdr_arrays and gen.SERVICES == ("voice", "sms", "data")
    cdrs = gen.cdr_arrays(500, ["49", "33", "1", "4915"], seed=2, n_accounts=10)
    digest = hashlib.sha256()
    for k in sorted(cdrs):
        digest.update(k.encode())
        digest.update(cdrs[k].tobytes())
    assert digest.hexdigest() == \
        "361f61c1c1f7687a5b7966af0cec5473a6c8dc1569425c17671e7dfb1a2a677f"
    gen.write_cdr_csv(tmp_path / "x.csv", cdrs)
    assert hashlib.sha256((tmp_path / "x.csv").read_bytes()).hexdigest() == \
        "29775ad48b7747631ac235caae3326e61e3f0d4ada9e3824051ed93850b5f8e1"


# --- the plan -----------------------------------------------------------------------------

def test_the_plan_is_an_operator(plan):
    rows = plan_rows(plan)
    assert len(rows) == 60 and rows[0]["account"] == "acc000001"
    assert rows[-1]["account"] == "acc000060"
    ids = [r["account"] for r in rows]
    msisdns = [m for r in rows for m in r["msisdns"].split(";")]
    assert len(set(msisdns)) == len(msisdns)
    by_id = {r["account"]: r for r in rows}
    kinds = Counter(r["payment"] for r in rows)
    assert kinds["prepaid"] and kinds["postpaid"]
    for r in rows:
        if r["payment"] == "prepaid":
            assert r["credit_limit"] == "0"
        else:
            assert r["credit_limit"] in ("50.00", "100.00", "200.00", "500.00", "unlimited")
            assert not r["topups"]
        if r["parent"]:  # a child comes after its parent, on the parent's cycle
            assert ids.index(r["parent"]) < ids.index(r["account"])
            assert r["bill_cycle_day"] == by_id[r["parent"]]["bill_cycle_day"]
        # the plan's tariff column is its first base offer's (smart_m: std, flat_l: flat)
        first = r["subscriptions"].split(";")[0].split("@")[0]
        assert (first, r["tariff"]) in (("smart_m", "std"), ("flat_l", "flat"))
        assert r["subscriptions"].split(";")[0].split("@")[1].startswith("2026-10-01..")
    assert any(r["parent"] for r in rows)
    assert any("roam_pack" in r["subscriptions"] for r in rows)


def test_bad_arguments_are_one_line_naming_the_option(tmp_path, plan):
    cases = [
        (("gen", "accounts", "--catalog", CAT, "--count", "0", "--out", tmp_path / "p.csv"),
         "--count"),
        (("gen", "accounts", "--catalog", tmp_path / "none.yaml", "--count", "5",
          "--out", tmp_path / "p.csv"), "--catalog"),
        (("gen", "accounts", "--catalog", CAT, "--count", "5", "--cycle", "2026-13",
          "--out", tmp_path / "p.csv"), "--cycle"),
        (("gen", "accounts", "--catalog", CAT, "--count", "5",
          "--out", tmp_path / "no" / "p.csv"), "--out"),
        (("gen", "accounts", "--catalog", CAT, "--out", tmp_path / "p.csv"), "--count"),
        (("gen", "cdrs", "--accounts", tmp_path / "none.csv", "--catalog", CAT, "--count", "5",
          "--out", tmp_path / "c.csv"), "--accounts"),
        (("gen", "cdrs", "--accounts", plan, "--catalog", CAT, "--count", "5",
          "--inject-malformed", "6", "--out", tmp_path / "c.csv"), "--inject-malformed"),
        (("gen", "load", tmp_path / "none.csv", "--catalog", CAT), "PLAN"),
    ]
    for args, option in cases:
        proc = ccs(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and option in proc.stderr, proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "c.csv").exists()


# --- loading ------------------------------------------------------------------------------

def show(redis_url: str, account: str) -> dict:
    proc = ccs("accounts", "show", account, "--json", "--redis", redis_url, "--catalog", CAT)
    return json.loads(proc.stdout)


def test_a_plan_loads_once_and_ccs_accounts_show_finds_it(redis_client, redis_url, plan,
                                                           catalog):
    from accounts.presentation import account_to_dict
    from accounts.store import AccountStore

    rows = plan_rows(plan)
    out = ccs("gen", "load", plan, "--redis", redis_url, "--catalog", CAT).stdout
    subs = sum(len(r["subscriptions"].split(";")) for r in rows)
    topups = sum(len(r["topups"].split(";")) for r in rows if r["topups"])
    suspended = sum(r["status"] == "suspended" for r in rows)
    assert f"created 60, {subs} subscriptions, {topups} top-ups, {suspended} status changes; " \
           "0 already applied" in out
    store = AccountStore(redis_client, catalog)

    def stored(r: dict) -> dict:
        return account_to_dict(store.get_account(r["account"]), 0, catalog)

    balances = {}
    for r in rows:
        got = stored(r)
        balances[r["account"]] = got["balance"]
        assert store.resolve(r["msisdns"].split(";")[-1]) == r["account"]
        assert got["msisdns"] == r["msisdns"].split(";")
        assert got["payment_type"] == r["payment"]
        assert got["bill_cycle_day"] == int(r["bill_cycle_day"])
        assert (got["parent"] or "") == r["parent"]
        assert got["status"] == r["status"]
        assert [s["offer"] for s in got["subscriptions"]] == \
            [s.split("@")[0] for s in r["subscriptions"].split(";")]
        # a prepaid balance is its top-ups: e.g. 5.00 + 20.00 = 25.00
        cents = sum(int(t.replace(".", "")) for t in r["topups"].split(";") if t)
        assert got["balance"] == f"{cents // 100}.{cents % 100:02d}"
    # what an operator sees: `ccs accounts show` by MSISDN, for a child, a suspended
    # account, a postpaid one and one with two MSISDNs
    picks = [next(r for r in rows if r["parent"]),
             next(r for r in rows if r["status"] == "suspended"),
             next(r for r in rows if r["payment"] == "postpaid" and not r["parent"]),
             next(r for r in rows if ";" in r["msisdns"])]
    for r in picks:
        got = show(redis_url, r["msisdns"].split(";")[-1])
        assert got == stored(r) | {"available": got["available"]}
    # a second load changes nothing: every verb's op id was applied already
    ops = 60 + subs + topups + suspended
    again = ccs("gen", "load", plan, "--redis", redis_url, "--catalog", CAT).stdout
    assert f"created 0, 0 subscriptions, 0 top-ups, 0 status changes; {ops} already applied" \
        in again
    assert {r["account"]: stored(r)["balance"] for r in rows} == balances


def test_a_change_of_base_offer_inside_the_cycle_is_loaded_with_its_dates(
        redis_client, redis_url, tmp_path):
    """Over 400 accounts some change base offer inside 2026-11 (about 5%): the old one ends
    the day the new one starts."""
    path = tmp_path / "plan.jsonl"
    ccs("gen", "accounts", "--catalog", CAT, "--count", 400, "--seed", 2, "--cycle", "2026-11",
        "--out", path, "--prefix", "chg")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    changed = [r for r in rows if r["subscriptions"][0]["to"] is not None]
    assert changed
    r = changed[0]
    old, new = r["subscriptions"][:2]
    assert old["to"] == new["from"] and old["offer"] != new["offer"]
    only = tmp_path / "one.jsonl"
    only.write_text(json.dumps(r) + "\n")
    ccs("gen", "load", only, "--redis", redis_url, "--catalog", CAT)
    subs = show(redis_url, r["account"])["subscriptions"]
    assert [(s["offer"], s["from"], s.get("to")) for s in subs[:2]] == \
        [(old["offer"], old["from"], old["to"]), (new["offer"], new["from"], None)]


# --- CDR files ----------------------------------------------------------------------------

def test_cdrs_rate_with_no_rejection_but_the_injected_ones(tmp_path, plan):
    cdrs, rated = tmp_path / "cdrs.csv", tmp_path / "rated.csv"
    out = ccs("gen", "cdrs", "--accounts", plan, "--catalog", CAT, "--count", 3000,
              "--cycle", "2026-11", "--seed", 11, "--out", cdrs,
              "--inject-malformed", 7).stdout
    # seven rows damaged one column in turn: usage, start, destination, account, service,
    # cdr_id, then usage again
    assert "malformed: usage 2, start 1, destination 1, account 1, service 1, cdr_id 1" in out
    rows = plan_rows(cdrs)
    assert len(rows) == 3000
    assert list(rows[0]) == ["cdr_id", "account", "service", "start", "usage", "destination"]
    accounts = {r["account"] for r in plan_rows(plan)}
    good = [r for r in rows if r["account"] and r["start"].endswith("Z")]
    assert {r["account"] for r in good} <= accounts
    # starts inside each account's 2026-11 cycle (Berlin): never before 2026-10-31T23:00Z
    # (the 1st at local midnight) nor from 2026-12-28T23:00Z on (the latest day, the 28th)
    assert all("2026-10-31T23:00:00Z" <= r["start"] < "2026-12-28T23:00:00Z" for r in good)
    assert Counter(r["service"] for r in rows if r["service"]).keys() == \
        {"voice", "sms", "data"}
    # the plan is an accounts file of ccs rate
    proc = ccs("rate", "--catalog", CAT, "--cdrs", cdrs, "--accounts", plan, "--out", rated)
    assert "rated 2993, duplicate 0, rejected 7" in proc.stderr
    reasons = Counter((r["status"], r["reason"]) for r in plan_rows(rated))
    assert reasons == {("rated", ""): 2993, ("rejected", "malformed:usage"): 2,
                       ("rejected", "malformed:start"): 1,
                       ("rejected", "malformed:destination"): 1,
                       ("rejected", "malformed:account"): 1,
                       ("rejected", "malformed:service"): 1,
                       ("rejected", "malformed:cdr_id"): 1}
