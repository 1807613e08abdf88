"""One session = one CDR (online.md): sessions charged through the engine, their usage then
rated offline by the real `ccs rate`: the same net charge to the micro-unit, per session and
rating group, with tiers and discounts standing as the bill run sees them."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime

import pytest

from accounts.audit import audit
from accounts.online import OnlineStore
from accounts.store import AccountStore
from charging import charge as C
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG
from tests.rating.spec_ccs import run_ccs

DESTS = ["4915112345678", "4930123456", "4915100000001"]


class Clock:
    t = 0

    def __call__(self):
        return self.t


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seed", [1, 2])
def test_sessions_cost_what_their_cdrs_cost(redis_client, tmp_path, seed):
    catalog = parse_catalog(CATALOG)
    compiled = compile_catalog(catalog)
    clock = Clock()
    clock.t = int(datetime(2026, 11, 2, 0, tzinfo=UTC).timestamp())
    store = AccountStore(redis_client, catalog, clock=clock)
    node = C.Charger(store, catalog, compiled, clock=clock)
    accounts = ["p1", "p2", "p3"]
    for a in accounts:
        store.create(a, credit_limit=None, offers=("basic",))  # unlimited postpaid
    rnd = random.Random(seed)
    cdrs = []
    t = clock.t
    for i in range(150):
        acct = rnd.choice(accounts)
        service = rnd.choice(["voice", "voice", "data"])
        dest = rnd.choice(DESTS) if service == "voice" else ""
        t += rnd.randint(60, 5000)  # sessions one after another: peak and off-peak alike
        clock.t = t
        sid = f"s{seed}-{i}"
        quota = 300 if service == "voice" else 5 * 1048576
        node.charge(C.Request(sid, "INITIAL", 0, acct, t, None,
                              (C.UnitRequest(1, service, dest, quota, 0),)))
        total = 0
        n_updates = rnd.randint(0, 3)
        for k in range(1, n_updates + 2):
            used = rnd.randint(0, 700) if service == "voice" else rnd.randint(0, 9 * 1048576)
            total += used
            kind = "TERMINATE" if k == n_updates + 1 else "UPDATE"
            a = node.charge(C.Request(sid, kind, k, acct, t, None,
                                      (C.UnitRequest(1, service, dest, quota, used),)))
            assert a.result_code == 2001
        cdrs.append((sid, acct, service, t, total, dest))
    online = OnlineStore(store)
    paid = {}
    for a in accounts:
        for rec in online.records(a, 0, 2**40):
            paid[rec["session_id"]] = paid.get(rec["session_id"], 0) + int(rec["net_charge"])
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "accounts.csv").write_text(
        "account,tariff,discounts\n" + "".join(f"{a},std,loyal_voice\n" for a in accounts))
    with open(tmp_path / "cdrs.csv", "w") as f:
        f.write("cdr_id,account,service,start,usage,destination\n")
        for sid, acct, service, st, usage, dest in cdrs:
            f.write(f"{sid},{acct},{service},{iso(st)},{usage},{dest}\n")
    proc = run_ccs("rate", "--catalog", tmp_path / "catalog.yaml", "--cdrs",
                   tmp_path / "cdrs.csv", "--accounts", tmp_path / "accounts.csv",
                   "--bill-cycle-day", "1")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["status"] for r in rows} == {"rated"}
    offline = {r["cdr_id"]: _micro(r["net_charge"]) for r in rows}
    assert {sid: paid.get(sid, 0) for sid in offline} == offline
    assert sum(offline.values()) > 0
    assert audit(redis_client) == []


def _micro(s: str) -> int:
    whole, _, frac = s.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 1_000_000 + int(frac.ljust(6, "0")))
