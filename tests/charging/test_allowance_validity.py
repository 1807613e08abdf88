"""Online, a bucket is judged valid at the session's start, as the bill run judges a CDR at its
start (billing.md: an allowance covers usage that starts while its subscription is active).

A call that starts at 23:59:30 on the last day of November (Berlin) and ends after midnight
is November's: it takes November's allowance, not December's, online as in the bill run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from accounts.store import AccountStore
from charging import charge as C
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG, MOBILE

START = int(datetime(2026, 11, 30, 22, 59, 30, tzinfo=UTC).timestamp())  # 23:59:30 Berlin


def test_a_call_across_the_cycle_end_uses_the_allowance_of_its_start(redis_client):
    catalog = parse_catalog(CATALOG)
    t = {"now": START}
    store = AccountStore(redis_client, catalog, clock=lambda: t["now"])
    store.create("bob", credit_limit=None, offers=("bundle",))  # voice_120 to DE_MOBILE
    node = C.Charger(store, catalog, compile_catalog(catalog), validity_s=300,
                     clock=lambda: t["now"])

    def call(kind, n, used, requested=None):
        unit = C.UnitRequest(1, "voice", MOBILE, requested, used)
        a = node.charge(C.Request("s", kind, n, "bob", START, None, (unit,)))
        assert a.result_code == 2001
        return a

    call("INITIAL", 0, 0, requested=60)
    t["now"] = START + 60  # 00:00:30 on 1 December: December's allowance is granted now
    a = call("TERMINATE", 1, 60)
    assert a.charged == 0  # 60 s covered: no money, no connect fee
    left = {b.id: b.remaining for b in store.get_account("bob").buckets if b.kind == "units"}
    # November's 120 s gave 60; December's are untouched
    assert left == {"allowance:bundle/voice_120:2026-11": 60,
                    "allowance:bundle/voice_120:2026-12": 120}
