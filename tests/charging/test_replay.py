"""`ccs replay` (issue 14, item 1) against a real node (charging.server.build_node with
metrics) on the private redis-server, accounts made by `ccs gen`: what it reports is what the
node counted; a hand-made CDR file gives the sessions worked out below; bad arguments exit 2
with one line; a node that goes away mid-run is counted, not fatal.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accounts.embedded import free_port
from accounts.store import AccountStore
from charging.charge import Charger
from charging.server import build_node
from rating.compiler import compile_catalog
from tests.charging.test_node_operations import (
    _tls,
    named,
    pki,  # noqa: F401 - a fixture
    scrape,
)
from tests.conftest import EXAMPLE_CATALOG

CCS = str(Path(sys.executable).with_name("ccs"))
CAT = str(EXAMPLE_CATALOG)
PNG = b"\x89PNG\r\n\x1a\n"


def ccs(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([CCS, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def node(redis_client, catalog):
    store = AccountStore(redis_client, catalog)
    charger = Charger(store, catalog, compile_catalog(catalog))
    n = build_node("127.0.0.1:0", store=store, catalog=catalog, charger=charger,
                   metrics_listen="127.0.0.1:0", max_workers=8)
    yield n
    n.stop(0)


@pytest.fixture
def operator(redis_client, redis_url, tmp_path):
    """40 accounts of `ccs gen accounts` (seed 5) loaded into the node's Redis."""
    plan = tmp_path / "plan.csv"
    ccs("gen", "accounts", "--catalog", CAT, "--count", 40, "--seed", 5, "--cycle", "2026-11",
        "--out", plan)
    ccs("gen", "load", plan, "--redis", redis_url, "--catalog", CAT)
    return plan


def node_counts(port: int) -> tuple[dict, dict]:
    """({type: {result: n}} of ccs_charge_requests_total, {code: n} of Charge calls)."""
    m = scrape(port)
    results: dict = {}
    for labels, v in named(m, "ccs_charge_requests_total").items():
        d = dict(labels)
        results.setdefault(d["type"], {})[d["result"]] = int(v)
    calls = {dict(labels)["code"]: int(v)
             for labels, v in named(m, "ccs_grpc_requests_total").items()
             if dict(labels)["method"] == "ccs.v1.Charging/Charge"}
    return results, calls


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_replayed_cdrs_are_the_requests_the_node_counted(node, operator, tmp_path):
    cdrs, charts = tmp_path / "cdrs.csv", tmp_path / "charts"
    ccs("gen", "cdrs", "--accounts", operator, "--catalog", CAT, "--count", 150,
        "--cycle", "2026-11", "--seed", 9, "--out", cdrs, "--inject-malformed", 2)
    proc = ccs("replay", "--target", f"127.0.0.1:{node.port}", "--cdrs", cdrs,
               "--catalog", CAT, "--concurrency", 4, "--json", "--charts", charts)
    fig = last_json(proc.stdout)
    # 150 rows, 2 damaged (usage, start): 148 sessions
    assert fig["sessions"] == 148 and fig["skipped_cdrs"] == 2
    results, calls = node_counts(node.metrics_port)
    assert fig["results"] == results
    assert calls == {"OK": fig["requests"]} and fig["answered"] == fig["requests"]
    assert fig["errors"] == {} and fig["failed"] == 0
    assert fig["by_type"]["INITIAL"] + fig["by_type"]["EVENT"] == 148
    assert sum(fig["by_type"].values()) == fig["requests"] > 148
    assert 0 < fig["p50_ms"] <= fig["p95_ms"] <= fig["p99_ms"] <= fig["max_ms"]
    # the summary a person reads, before the JSON line
    text = proc.stdout.splitlines()
    assert text[0].startswith(f"ccs replay: 148 sessions, {fig['requests']} requests in ")
    assert "requests/s" in text[0]
    assert text[1].split()[:2] == ["type", "requests"] and text[1].split()[-1] == "failed"
    assert any(line.split()[:2] == ["INITIAL", str(fig["by_type"]["INITIAL"])]
               for line in text)
    assert "errors by gRPC status: none" in proc.stdout
    assert "skipped: 2 rows of the CDR file that are not CDRs" in proc.stdout
    assert sorted(p.name for p in charts.iterdir()) == \
        ["latency.png", "result_codes.png", "throughput.png"]
    for png in charts.iterdir():
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000
    assert fig["charts"] == [str(charts / n) for n in
                             ("latency.png", "throughput.png", "result_codes.png")]


def test_sessions_follow_the_quota_the_grants_and_the_cdr_usage(node, redis_client, catalog,
                                                                tmp_path):
    store = AccountStore(redis_client, catalog)
    store.create("alice", credit_limit=None, msisdns=("4915100000001",))
    store.subscribe("alice", "smart_m", op_id="s-1", from_date="2026-11-01")
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_text(
        "cdr_id,account,service,start,usage,destination\n"
        # 125 s at --quota 60: INITIAL (60 granted), UPDATE used 60, UPDATE used 60,
        # TERMINATE used 5
        "v1,alice,voice,2026-11-24T10:00:00+01:00,125,4915112345678\n"
        # one SMS: one EVENT DIRECT_DEBIT
        "s1,4915100000001,sms,2026-11-24T10:05:00Z,1,4917099887766\n"
        # 150 bytes at --quota 60: INITIAL, UPDATE 60, UPDATE 60, TERMINATE 30
        "d1,alice,data,2026-11-24T11:00:00Z,150,\n"
        # 60 s, exactly one grant: INITIAL then TERMINATE used 60
        "v2,alice,voice,2026-11-24T12:00:00Z,60,4930123456\n"
        # nobody: INITIAL answered 5030, nothing more
        "v3,nobody,voice,2026-11-24T12:00:00Z,60,4930123456\n")
    proc = ccs("replay", "--target", f"127.0.0.1:{node.port}", "--cdrs", cdrs, "--quota", 60,
               "--catalog", CAT, "--concurrency", 2, "--json")
    fig = last_json(proc.stdout)
    assert fig["sessions"] == 5 and fig["requests"] == 4 + 1 + 4 + 2 + 1
    assert fig["by_type"] == {"INITIAL": 4, "UPDATE": 4, "TERMINATE": 3, "EVENT": 1}
    assert fig["results"] == {"INITIAL": {"2001": 3, "5030": 1}, "UPDATE": {"2001": 4},
                              "TERMINATE": {"2001": 3}, "EVENT": {"2001": 1}}
    assert node_counts(node.metrics_port)[0] == fig["results"]
    # every session ended: nothing is held
    assert not store.get_account("alice").reservations


def test_generated_traffic_reaches_the_accounts_of_ccs_gen(node, operator):
    """--generate draws subscribers among ids and MSISDNs of `ccs gen accounts`: none is
    unknown (5030)."""
    proc = ccs("replay", "--target", f"127.0.0.1:{node.port}", "--generate",
               "--accounts", 40, "--catalog", CAT, "--count", 60, "--seed", 3, "--json")
    fig = last_json(proc.stdout)
    assert fig["sessions"] == 60
    assert fig["results"] == node_counts(node.metrics_port)[0]
    assert all("5030" not in codes for codes in fig["results"].values())
    assert fig["by_type"]["INITIAL"] + fig["by_type"]["EVENT"] == 60


def test_a_node_that_goes_away_is_counted_and_the_run_completes(node, operator):
    """The node stops while the run goes on: the failed calls are counted by status and the
    run ends at its --duration with exit 0."""
    run = subprocess.Popen(
        [CCS, "replay", "--target", f"127.0.0.1:{node.port}", "--generate", "--accounts", "40",
         "--catalog", CAT, "--duration", "6", "--rate", "100", "--json", "--timeout", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not node_counts(node.metrics_port)[1].get("OK"):  # answers have come
            assert run.poll() is None, run.stderr.read()
            time.sleep(0.05)
        node.stop(0)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    fig = last_json(out)
    assert fig["answered"] > 0 and fig["failed"] > 0
    assert set(fig["errors"]) <= {"UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED"}
    assert sum(fig["errors"].values()) == fig["failed"]
    assert fig["answered"] + fig["failed"] == fig["requests"]


def test_replay_over_mutual_tls(redis_client, catalog, operator, pki):  # noqa: F811
    store = AccountStore(redis_client, catalog)
    node = build_node("127.0.0.1:0", store=store, catalog=catalog,
                      charger=Charger(store, catalog, compile_catalog(catalog)),
                      tls=_tls(pki, client_ca=True), max_workers=4)
    try:
        base = ("replay", "--target", f"127.0.0.1:{node.port}", "--generate", "--accounts", 40,
                "--catalog", CAT, "--count", 10, "--timeout", 2, "--tls-ca", pki / "ca.pem")
        fig = last_json(ccs(*base, "--tls-cert", pki / "client.pem",
                            "--tls-key", pki / "client.key", "--json").stdout)
        assert fig["sessions"] == 10 and fig["answered"] == fig["requests"] > 0
        # without a client certificate the handshake fails: no node answers
        proc = ccs(*base, check=False)
        assert proc.returncode == 1 and "no node answers" in proc.stderr
    finally:
        node.stop(0)


def test_no_node_is_exit_1_in_one_line():
    port = free_port()
    proc = ccs("replay", "--target", f"127.0.0.1:{port}", "--generate", "--accounts", 5,
               "--count", 5, "--timeout", 1, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"ccs replay: --target 127.0.0.1:{port}: no node answers (waited 1 s)"]
    assert proc.stdout == ""


@pytest.mark.parametrize("args, option", [
    (("--cdrs", "/nonexistent/cdrs.csv"), "--cdrs"),
    (("--generate", "--accounts", "5", "--count", "5", "--rate", "-5"), "--rate"),
    (("--generate", "--accounts", "5", "--count", "5", "--concurrency", "0"), "--concurrency"),
    (("--generate", "--accounts", "5", "--duration", "0"), "--duration"),
    (("--generate", "--accounts", "5", "--count", "5", "--quota", "x"), "--quota"),
    (("--generate", "--count", "5"), "--accounts"),
    (("--generate", "--accounts", "5"), "--duration"),
    (("--generate", "--accounts", "5", "--count", "5", "--tls-ca", "/nonexistent.pem"),
     "--tls-ca"),
    (("--generate", "--accounts", "5", "--count", "5", "--catalog", "/nonexistent.yaml"),
     "--catalog"),
])
def test_bad_arguments_exit_2_in_one_line_naming_the_option(args, option):
    proc = ccs("replay", "--target", "127.0.0.1:1", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and option in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_a_bad_target_or_a_file_that_is_not_a_cdr_file_exit_2(tmp_path):
    proc = ccs("replay", "--target", "nowhere", "--generate", "--accounts", 5, "--count", 5,
               check=False)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "ccs replay: --target: expected HOST:PORT, got 'nowhere'"]
    other = tmp_path / "x.csv"
    other.write_text("a,b\n1,2\n")
    proc = ccs("replay", "--target", "127.0.0.1:1", "--cdrs", other, check=False)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"ccs replay: --cdrs: {other} is not a CDR file: no column cdr_id"]
