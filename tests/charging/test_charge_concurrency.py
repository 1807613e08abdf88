"""Two callers at once: 200 concurrent sessions on one prepaid account never get more money
than it had, its balance never goes below zero along the ledger, and the audit is clean."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from accounts.audit import audit
from accounts.store import AccountStore
from charging import charge as C
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG, FIXED, NIGHT


def test_200_sessions_on_one_prepaid_account(redis_client):
    catalog = parse_catalog(CATALOG)
    compiled = compile_catalog(catalog)
    store = AccountStore(redis_client, catalog, clock=lambda: NIGHT)
    store.create("hot", credit_limit=0, offers=("basic",))
    store.topup("hot", 1_000_000, op_id="t")  # 1.00: 50 minutes to a fixed line at 0.02
    nodes = [C.Charger(store, catalog, compiled, clock=lambda: NIGHT) for _ in range(2)]

    def session(i: int) -> int:
        node = nodes[i % 2]
        unit = C.UnitRequest(1, "voice", FIXED, 60, 0)
        a = node.charge(C.Request(f"c{i}", "INITIAL", 0, "hot", NIGHT, None, (unit,)))
        granted = a.grants[0].units
        if a.result_code == 2001:
            done = C.UnitRequest(1, "voice", FIXED, None, granted)
            t = nodes[(i + 1) % 2].charge(C.Request(f"c{i}", "TERMINATE", 1, "hot", NIGHT, None,
                                                    (done,)))
            assert t.result_code == 2001
        return granted

    with ThreadPoolExecutor(32) as pool:
        granted = list(pool.map(session, range(200)))
    assert sum(granted) == 50 * 60
    assert sorted(set(granted)) == [0, 60]
    acct = store.get_account("hot")
    assert (acct.balance, acct.reserved) == (0, 0)
    running, lowest = 0, 0
    for entry in store.ledger("hot", count=10_000):
        running += entry.get("balance", 0)
        lowest = min(lowest, running)
    assert lowest == 0
    assert audit(redis_client) == []
