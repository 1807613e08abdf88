"""The ledger archive (issue 13 item 7): finalising a cycle moves the accounts' ledger entries
of that cycle and earlier into the SQL database, trims them from Redis and leaves a checkpoint
the audit replays from. Real redis-server, SQLite and PostgreSQL.

Every account does the same each cycle (`_month`, on the 10th at 12:00 UTC): top-up 10.00,
debit 1.50 (counter '<cycle>|tier|voice' +90), a session reserving 2.00 and committing 0.70:
the balance moves by 10.00 - 1.50 - 0.70 = +7.80 per cycle. Ledger entries of A1 (offer
smart, one allowance): cycle 1: create, subscribe, grant, topup, debit, reserve, commit = 7;
each later cycle: grant, topup, debit, reserve, commit = 5. K1 (A1's child, no offer, its own
unlimited credit, so nothing goes to A1's ledger): create + 4, then 4 per cycle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from accounts.audit import audit
from accounts.store import AccountStore
from billing import archive, billrun
from billing.models import Base
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.billing import db_fixtures
from tests.billing.test_billrun import BILL_CATALOG

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url
EUR = 1_000_000
CCS = [sys.executable, "-m", "charging.cli"]
T = Base.metadata.tables


class Clock:
    def __init__(self, t: int):
        self.t = t

    def __call__(self) -> int:
        return self.t


def _at(cycle: str, day: int = 10) -> int:
    y, m = map(int, cycle.split("-"))
    return int(datetime(y, m, day, 12, tzinfo=UTC).timestamp())


def _next(cycle: str) -> str:
    y, m = map(int, cycle.split("-"))
    return f"{y + m // 12:04d}-{m % 12 + 1:02d}"


@pytest.fixture(scope="module")
def cat():
    catalog = parse_catalog(BILL_CATALOG)
    return catalog, compile_catalog(catalog)


@pytest.fixture
def clock():
    return Clock(_at("2026-01", 5))


@pytest.fixture
def store(redis_client, cat, clock):
    s = AccountStore(redis_client, cat[0], clock=clock)
    s.create("A1", credit_limit=None, offers=("smart",))
    s.create("K1", credit_limit=None, parent="A1")
    return s


def _month(store, clock, cycle, ids=("A1", "K1")):
    clock.t = _at(cycle)
    for a in ids:
        store.topup(a, 10 * EUR, op_id=f"top:{a}:{cycle}")
        store.debit(a, op_id=f"deb:{a}:{cycle}", charge=1_500_000, service="voice",
                    counters={f"{cycle}|tier|voice": 90})
        store.reserve(a, f"s-{cycle}", op_id=f"res:{a}:{cycle}", money=2 * EUR)
        store.commit(a, f"s-{cycle}", op_id=f"com:{a}:{cycle}", charge=700_000, release=True)


def _bill_and_finalize(db, store, cat, clock, cycle):
    """The bill run of `cycle` on the 2nd of the next month, then its finalisation."""
    clock.t = _at(_next(cycle), 2)
    billrun.run(db, store, cat[0], cat[1], cycle=cycle)
    return billrun.finalize(db, cycle, store)


def _xlen(store, account):
    return store.r.xlen(store.account_keys(account).ledger)


def _archived(db, account=None):
    t = T["ledger_archive"]
    q = sa.select(t.c.account, t.c.entry_id, t.c.fields).order_by(t.c.account)
    if account is not None:
        q = q.where(t.c.account == account)
    with db.connect() as conn:
        return [(a, i, json.loads(f)) for a, i, f in conn.execute(q)]


def _checkpoint_rows(db):
    t = T["ledger_checkpoints"]
    with db.connect() as conn:
        return {a: (i, c, json.loads(b)) for a, i, c, b in conn.execute(
            sa.select(t.c.account, t.c.entry_id, t.c.cycle, t.c.balances))}


def _clean(store, db):
    """The Redis audit from the checkpoints, and the archive's own check."""
    return audit(store.r), archive.archive_findings(db, store.r)


def test_finalize_archives_the_cycle_trims_redis_and_the_audit_stays_clean(db, store, cat,
                                                                           clock):
    _month(store, clock, "2026-01")
    _month(store, clock, "2026-02")
    before = {a: store.get_account(a) for a in ("A1", "K1")}
    january = {a: [e for e in store.ledger(a, count=100) if e["ts"] < _at("2026-02", 1)]
               for a in ("A1", "K1")}
    assert [len(january["A1"]), len(january["K1"])] == [7, 5]
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [12, 9]

    result = _bill_and_finalize(db, store, cat, clock, "2026-01")
    assert result == 1  # A1's family bill of 2026-01
    a = result.archive
    assert (a.accounts, a.entries, a.inserted, a.skipped) == (2, 12, 12, {})
    # in SQL: exactly January's entries, as Redis held them
    rows = _archived(db)
    assert [(acc, i) for acc, i, _ in rows] == [
        (acc, e["id"]) for acc in ("A1", "K1") for e in january[acc]]
    assert [f["op"] for _, _, f in rows[:7]] == [
        "create", "subscribe", "grant", "topup", "debit", "reserve", "commit"]
    # gone from Redis: February's 5 and 4 entries are left
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [5, 4]
    assert [e["op"] for e in store.ledger("A1")] == ["grant", "topup", "debit", "reserve",
                                                     "commit"]
    # the checkpoint: the balances after January, 7.80
    marks = _checkpoint_rows(db)
    assert marks["A1"][:2] == (january["A1"][-1]["id"], "2026-01")
    assert marks["A1"][2]["balance"] == 7_800_000
    assert marks["A1"][2]["counters"] == {"2026-01|tier|voice": 90}
    assert _clean(store, db) == ([], [])
    # balances unchanged: 2 x 7.80 = 15.60 each
    after = {a: store.get_account(a) for a in ("A1", "K1")}
    assert after == before
    assert [after["A1"].balance, after["K1"].balance] == [15_600_000, 15_600_000]

    # new operations, then cycle 2
    _month(store, clock, "2026-03")
    result = _bill_and_finalize(db, store, cat, clock, "2026-02")
    assert (result.archive.accounts, result.archive.entries) == (2, 9)
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [5, 4]  # March's
    assert len(_archived(db)) == 12 + 9
    assert _checkpoint_rows(db)["K1"][2]["balance"] == 15_600_000
    assert _clean(store, db) == ([], [])
    assert store.get_account("A1").balance == 23_400_000  # 3 x 7.80

    # a re-run of the archive (and of finalize) changes nothing
    again = archive.archive_ledgers(db, store, cycle="2026-02")
    assert (again.accounts, again.entries, again.inserted) == (0, 0, 0)
    assert billrun.finalize(db, "2026-02", store) == 0
    assert len(_archived(db)) == 21 and [_xlen(store, "A1"), _xlen(store, "K1")] == [5, 4]
    assert _clean(store, db) == ([], [])


def test_a_crash_between_the_commit_and_the_trim_then_a_re_run(db, store, cat, clock):
    _month(store, clock, "2026-01")
    _month(store, clock, "2026-02")
    clock.t = _at("2026-02", 2)
    billrun.run(db, store, cat[0], cat[1], cycle="2026-01")
    billrun.finalize(db, "2026-01")  # no store: the bills only
    # steps 1 and 2, then the process dies: the entries are in both places
    cuts = archive.read_cuts(store, ["A1", "K1"], cycle="2026-01")
    assert [len(c.entries) for c in cuts] == [7, 5]
    assert archive.write_cuts(db, cuts, cycle="2026-01") == 12
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [12, 9]
    assert _clean(store, db) == ([], [])  # Redis from its old (no) checkpoint; the archive
    # entries past it are still in Redis, unchanged
    # the re-run (finalize again): nothing inserted twice, Redis trimmed now
    result = billrun.finalize(db, "2026-01", store)
    assert result == 0
    assert (result.archive.accounts, result.archive.entries, result.archive.inserted) == (
        2, 12, 0)
    assert len(_archived(db)) == 12
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [5, 4]
    assert _clean(store, db) == ([], [])
    # stale cuts trimmed late (the dead process's step 3): the checkpoint is recorded already
    assert archive.trim_cuts(store, cuts, cycle="2026-01") == [("done", 0, False), ("done", 0, False)]
    assert store.get_account("A1").balance == 15_600_000


def test_another_archiver_moving_the_checkpoint_first_leaves_nothing_wrong(db, store, clock):
    _month(store, clock, "2026-01")
    _month(store, clock, "2026-02")
    _month(store, clock, "2026-03")
    stale = archive.read_cuts(store, ["A1"], cycle="2026-01")
    # meanwhile another process archives up to February
    assert archive.archive_ledgers(db, store, cycle="2026-02").entries == 12 + 9
    archive.write_cuts(db, stale, cycle="2026-01")
    assert archive.trim_cuts(store, stale, cycle="2026-01") == [("moved", 0, False)]
    # the checkpoint row never goes back to January
    assert _checkpoint_rows(db)["A1"][1] == "2026-02"
    assert _xlen(store, "A1") == 5 and len(_archived(db, "A1")) == 7 + 5
    assert _clean(store, db) == ([], [])


def test_operations_during_the_archive_stay_in_redis(db, store, clock):
    _month(store, clock, "2026-01")
    cuts = archive.read_cuts(store, ["A1", "K1"], cycle="2026-01")
    _month(store, clock, "2026-02")  # written between the read and the trim
    archive.write_cuts(db, cuts, cycle="2026-01")
    assert archive.trim_cuts(store, cuts, cycle="2026-01") == [("trimmed", 7, True), ("trimmed", 5, True)]
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [5, 4]
    assert _clean(store, db) == ([], [])


def test_a_backlog_longer_than_a_pass_is_archived_in_passes(db, store, clock, monkeypatch):
    # pages of 2 entries, at most 2 entries an account per pass: A1's 7 January entries go
    # in 4 passes (2, 2, 2, 1), K1's 5 in 3, each pass committed then trimmed
    monkeypatch.setattr(archive, "PAGE", 2)
    monkeypatch.setattr(archive, "BUDGET", 1)
    _month(store, clock, "2026-01")
    _month(store, clock, "2026-02")
    cuts = archive.read_cuts(store, ["A1", "K1"], cycle="2026-01")
    assert [(len(c.entries), c.more) for c in cuts] == [(2, True), (2, True)]
    result = archive.archive_ledgers(db, store, cycle="2026-01")
    assert (result.accounts, result.entries, result.inserted) == (2, 12, 12)
    assert [_xlen(store, "A1"), _xlen(store, "K1")] == [5, 4]
    assert _checkpoint_rows(db)["A1"][2]["balance"] == 7_800_000
    assert _clean(store, db) == ([], [])


def test_redis_memory_per_account_stays_bounded_over_twelve_cycles(db, store, cat, clock):
    cycles = [f"2026-{m:02d}" for m in range(1, 13)] + ["2027-01"]
    lengths, memory = [], []
    _month(store, clock, cycles[0])
    for cycle, following in zip(cycles, cycles[1:], strict=False):
        _month(store, clock, following)
        _bill_and_finalize(db, store, cat, clock, cycle)
        lengths.append((_xlen(store, "A1"), _xlen(store, "K1")))
        memory.append(store.r.memory_usage(store.account_keys("A1").ledger, samples=0))
    # after each finalize only the following cycle's entries are left: 5 and 4, every time
    assert lengths == [(5, 4)] * 12
    # MEMORY USAGE of the stream: one listpack node (redis-server allocates 4 KB nodes), the
    # same all year: the trim writes the few entries left into a fresh stream, so no node
    # half full of trimmed entries is kept (XTRIM alone: 4736, and 9824 when the month's
    # entries straddle two nodes; without the archive 4736 x 4, 9824 x 6, 14668 x 2)
    assert len(set(memory)) == 1, memory
    assert _clean(store, db) == ([], [])
    # the archive holds the whole history: 7 + 11 x 5 entries of A1, 5 + 11 x 4 of K1
    assert len(_archived(db, "A1")) == 62 and len(_archived(db, "K1")) == 49
    # 13 cycles of +7.80
    assert store.get_account("A1").balance == 101_400_000


def test_the_audit_catches_a_tampered_checkpoint_and_a_tampered_archive(db, store, cat, clock):
    _month(store, clock, "2026-01")
    _month(store, clock, "2026-02")
    _bill_and_finalize(db, store, cat, clock, "2026-01")
    key = store.account_keys("A1").checkpoint
    state = json.loads(store.r.hget(key, "state"))
    store.r.hset(key, "state", json.dumps({**state, "balance": state["balance"] + 1}))
    # Redis: replayed from the checkpoint, the balance is one micro-unit off; the archive:
    # its replay is not the checkpoint's
    redis_side, archive_side = _clean(store, db)
    assert [(f.account, f.field, f.stored, f.replayed) for f in redis_side] == [
        ("A1", "balance", 15_600_000, 15_600_001)]
    assert [(f.account, f.field) for f in archive_side] == [("A1", "checkpoint")]
    assert archive_side[0].stored["balance"] == 7_800_001
    assert archive_side[0].replayed["balance"] == 7_800_000
    store.r.hset(key, "state", json.dumps(state))
    # an archived entry lost: the archive no longer replays to the checkpoint
    t = T["ledger_archive"]
    topup = next(i for a, i, f in _archived(db, "K1") if f["op"] == "topup")
    with db.begin() as conn:
        conn.execute(sa.delete(t).where(t.c.account == "K1", t.c.entry_id == topup))
    found = archive.archive_findings(db, store.r)
    assert [(f.account, f.field) for f in found] == [("K1", "checkpoint"),
                                                     ("K1", "ledger_checkpoints")]
    assert found[0].stored["balance"] - found[0].replayed["balance"] == 10 * EUR
    assert audit(store.r) == []  # Redis alone cannot see it


def test_ccs_bill_finalize_archives_and_ccs_accounts_audit_db_checks(tmp_path, redis_url,
                                                                     redis_client):
    """The operator's view: real processes, the real clock (entries of now are after
    2026-01, so finalising 2026-01 moves only the entries written with an earlier clock)."""
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(BILL_CATALOG)
    clock = Clock(_at("2026-01", 5))
    store = AccountStore(redis_client, parse_catalog(BILL_CATALOG), clock=clock)
    store.create("A1", credit_limit=None, offers=("smart",))
    _month(store, clock, "2026-01", ids=("A1",))
    url = f"sqlite:///{tmp_path / 'bills.db'}"
    common = ["--redis", redis_url, "--catalog", str(catalog_path)]

    def ccs(*args, check):
        proc = subprocess.run([*CCS, *args, *common], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == check, proc.stderr
        return proc

    ccs("bill", "run", "--cycle", "2026-01", "--db", url, check=0)
    store.topup("A1", EUR, op_id="late")  # still January by the store's clock
    clock.t = _at("2026-02")
    store.topup("A1", EUR, op_id="feb")
    out = ccs("bill", "finalize", "--cycle", "2026-01", "--db", url, check=0).stdout
    assert "cycle 2026-01 final: 1 bill(s) finalised" in out
    # create, subscribe, grant, topup, debit, reserve, commit, topup 'late'
    assert ("ledgers archived: 8 entries of 1 account(s) moved from Redis to the database "
            "(8 new row(s))") in out
    out = ccs("bill", "finalize", "--cycle", "2026-01", "--db", url, check=0).stdout
    assert "was already final: no bill changed" in out
    assert "ledgers archived: 0 entries of 0 account(s)" in out
    assert ccs("accounts", "audit", "--db", url, check=0).stdout == (
        "audit clean: all accounts with their archived ledgers\n")
    assert ccs("accounts", "audit", "A1", check=0).stdout == "audit clean: 1 account(s)\n"
    # the archive of another database: the checkpoint's history is not there
    other = f"sqlite:///{tmp_path / 'other.db'}"
    proc = ccs("accounts", "audit", "A1", "--db", other, check=1)
    assert proc.stdout.startswith("A1: archive: stored None, replayed no archived entry ")
    assert "audit: 1 finding(s) in 1 account(s)" in proc.stderr
    proc = ccs("accounts", "audit", "--db", "mysql://x/y", check=2)
    assert proc.stderr.startswith("ccs accounts audit: --db: unsupported database 'mysql'")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def cluster():
    from tests.charging.test_cluster import Cluster

    c = Cluster()
    try:
        yield c.start()
    finally:
        c.stop()


def test_the_archive_on_a_cluster_covers_every_master(cluster, cat, tmp_path):
    from billing.db import open_database

    rc = cluster.client()
    engine = open_database(f"sqlite:///{tmp_path / 'ccs.db'}")
    try:
        rc.flushall()
        clock = Clock(_at("2026-01", 5))
        store = AccountStore(rc, cat[0], clock=clock)
        ids = [f"C{i:03d}" for i in range(30)]
        for account_id in ids:
            store.create(account_id, credit_limit=None)
        assert len({rc.get_node_from_key(store.account_keys(i).account).name for i in ids}) == 3
        _month(store, clock, "2026-01", ids)
        _month(store, clock, "2026-02", ids)
        rc.script_flush()  # every primary lost its scripts: trim_ledger is loaded again
        result = archive.archive_ledgers(engine, store, cycle="2026-01", batch=7)
        # per account January's create + 4, February's 4 left
        assert (result.accounts, result.entries, result.inserted) == (30, 150, 150)
        assert {_xlen(store, i) for i in ids} == {4}
        assert audit(rc) == [] and archive.archive_findings(engine, rc) == []
        assert store.get_account("C029").balance == 15_600_000  # 2 x 7.80
    finally:
        engine.dispose()
        rc.close()
