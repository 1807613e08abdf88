"""Concurrency and crash safety: racing reservations, racing sweepers, SIGKILL + AOF reload."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import redis

from accounts.audit import audit
from accounts.embedded import EmbeddedRedis
from accounts.sweeper import sweep_expired

EUR = 1_000_000
T0 = int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp())  # where `clock` starts


def _race_reservations(store, account_id: str, n: int = 200) -> list[str]:
    def one(i):
        return store.reserve(account_id, f"s{i}", op_id=f"r{i}", money=EUR).code

    with ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("credit_limit,topup", [(0, 50 * EUR), (50 * EUR, 0)])
def test_exactly_the_covered_reservations_are_granted(store, credit_limit, topup,
                                                      balances_along_ledger):
    store.create_account("acc1", credit_limit=credit_limit)
    if topup:
        store.topup("acc1", topup, op_id="t1")
    codes = _race_reservations(store, "acc1")
    assert codes.count("ok") == 50 and codes.count("no_credit") == 150
    acct = store.get_account("acc1")
    assert acct.reserved == 50 * EUR and acct.available(T0) == 0
    granted = [r.session for r in acct.reservations]

    def commit(session):
        return store.commit("acc1", session, op_id=f"c-{session}", charge=EUR, release=True).code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert set(pool.map(commit, granted)) == {"ok"}
    acct = store.get_account("acc1")
    assert (acct.balance, acct.reserved) == (topup - 50 * EUR, 0)
    if credit_limit == 0:
        assert min(balances_along_ledger(store, "acc1")) >= 0
    assert audit(store.r) == []


def test_unlimited_postpaid_is_never_denied(store):
    store.create_account("acc1", credit_limit=None)
    assert set(_race_reservations(store, "acc1")) == {"ok"}
    assert store.get_account("acc1").reserved == 200 * EUR
    assert audit(store.r) == []


def test_sweeper_releases_expired_reservations_once(store, clock):
    store.create_account("acc1", credit_limit=None)
    for i in range(20):
        store.reserve("acc1", f"s{i}", op_id=f"r{i}", money=EUR, validity_s=60)
    clock.t = T0 + 10
    store.reserve("acc1", "s0", op_id="renew", money=0, validity_s=60)  # renewed: lives longer
    assert sweep_expired(store, now=T0 + 60 + 29) == 0  # within the grace period
    counts = []

    def sweep():
        counts.append(sweep_expired(store, now=T0 + 60 + 30))

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 19
    acct = store.get_account("acc1")
    assert [r.session for r in acct.reservations] == ["s0"] and acct.reserved == EUR
    releases = [e for e in store.ledger("acc1", count=1000) if e["op"] == "release"]
    assert len(releases) == 19 and {e["reason"] for e in releases} == {"expired"}
    assert store.r.zcard("rsv:expiry") == 1
    assert sweep_expired(store, now=T0 + 70 + 30) == 1
    assert store.get_account("acc1").reserved == 0
    assert audit(store.r) == []


def test_sigkill_mid_load_then_aof_reload_keeps_every_acknowledged_op(tmp_path, open_store):
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="always").start()
    try:
        client = server.client()
        store = open_store(client)
        store.create_account("acc1")
        store.topup("acc1", 1000 * EUR, op_id="seed")
        acked: list[tuple[str, int]] = []  # (op id, balance delta)
        lock = threading.Lock()
        enough = threading.Event()

        def worker(w):
            own = open_store(server.client())
            i = 0
            while True:
                i += 1
                op_id, delta = f"w{w}-{i}", (3 * EUR if i % 2 else -EUR)
                try:
                    if delta > 0:
                        own.topup("acc1", delta, op_id=op_id)
                    else:
                        res = own.debit("acc1", op_id=op_id, charge=-delta, service="sms")
                        assert res.code == "ok"
                except (redis.ConnectionError, redis.TimeoutError):
                    return
                with lock:
                    acked.append((op_id, delta))
                    if len(acked) >= 400:
                        enough.set()

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        enough.wait(timeout=120)
        server.kill()  # SIGKILL while the workers are in the middle of their requests
        for t in threads:
            t.join()
        server.start()
        client = server.client()
        assert audit(client) == []
        store = open_store(client)
        ledger, after = [], "-"
        while page := store.ledger("acc1", count=10_000, after=after):  # pages of 10,000 at most
            ledger += page
            after = page[-1]["id"]
        applied = {e["op_id"]: e.get("balance", 0) for e in ledger}
        assert len(acked) >= 400
        for op_id, delta in acked:
            assert applied.get(op_id) == delta
        assert store.get_account("acc1").balance == sum(applied.values())
    finally:
        server.cleanup()


def test_fast_and_slow_sweepers_racing_release_each_reservation_once(store, redis_client):
    from accounts.sweeper import sweep_unindexed

    store.create_account("acc1", credit_limit=None)
    for i in range(40):
        store.reserve("acc1", f"s{i}", op_id=f"r{i}", money=EUR, validity_s=60)
    redis_client.zrem("rsv:expiry", *[f"acc1|s{i}" for i in range(0, 40, 2)])
    counts = []

    def sweep(fn):
        counts.append(fn(store, now=T0 + 100))

    fns = [sweep_expired, sweep_unindexed, sweep_expired, sweep_unindexed]
    threads = [threading.Thread(target=sweep, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 40
    assert sweep_expired(store, now=T0 + 100) == 0 and redis_client.zcard("rsv:expiry") == 0
    releases = [e for e in store.ledger("acc1", count=1000) if e["op"] == "release"]
    assert len(releases) == 40
    assert store.get_account("acc1").reserved == 0
    assert audit(store.r) == []
