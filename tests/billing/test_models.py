"""The billing database: opening it, its Alembic schema (equal to the models), SQLite pragmas,
constraints, bulk inserts; on SQLite and PostgreSQL."""

from __future__ import annotations

import socket

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect

from billing import db as billing_db
from billing.db import DatabaseError, bulk_insert, open_database
from billing.models import Base, Bill, BillLine, LateCdr
from tests.billing import db_fixtures
from tests.billing.db_fixtures import EUR, add_bill

db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url

HEAD = "0002"  # the newest migration
TABLES = {
    "cycles", "bill_runs", "bills", "bill_lines", "payments", "payment_allocations",
    "cdr_files", "rated_usage", "cycle_standing", "late_cdrs", "fee_postings",
    "arrears_actions", "ledger_archive", "ledger_checkpoints", "cdr_digests", "online_records",
}  # fmt: skip


@pytest.fixture(params=db_fixtures.BACKENDS)
def empty_url(request, tmp_path):
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return request.getfixturevalue("pg_url")


def test_opening_an_empty_database_creates_every_table_at_the_head_revision(empty_url):
    engine = open_database(empty_url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == TABLES | {"alembic_version"}
        assert MigrationContext.configure(conn).get_current_revision() == HEAD
    engine.dispose()


def test_a_second_open_runs_no_statement_that_changes_the_schema(empty_url):
    open_database(empty_url).dispose()
    engine = open_database(empty_url)
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *a: seen.append(statement))
    assert billing_db.upgrade(engine) == HEAD
    changes = [s for s in seen if s.split()[0].upper() in ("CREATE", "ALTER", "DROP", "INSERT",
                                                           "UPDATE", "DELETE")]
    assert changes == [] and seen  # it looked (the revision), and changed nothing
    engine.dispose()


def test_the_models_and_the_migrations_describe_the_same_schema(db):
    # `alembic check`: autogenerate finds nothing to do on a database at head
    with db.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
    assert set(Base.metadata.tables) == TABLES


def test_sqlite_connections_have_foreign_keys_on_and_the_wal_journal(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'ccs.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    engine.dispose()


def test_no_url_means_ccs_db_in_the_data_folder_which_is_created(tmp_path):
    folder = tmp_path / "data" / "here"
    engine = open_database(None, data_dir=folder)
    assert engine.url.database == str(folder / "ccs.db")
    assert (folder / "ccs.db").is_file()
    engine.dispose()


def test_constraints_hold_on_both_databases(db):
    bill = add_bill(db, "A1", "2026-10", 10 * EUR)
    with pytest.raises(sa.exc.IntegrityError):  # a line of a bill that does not exist
        with db.begin() as conn:
            conn.execute(sa.insert(BillLine).values(bill_id="nope/2026-10", position=0,
                                                    kind="usage", name="voice", amount=1))
    with pytest.raises(sa.exc.IntegrityError):  # paid beyond amount_due
        with db.begin() as conn:
            conn.execute(sa.text("UPDATE bills SET paid = amount_due + 1 WHERE id = :i"),
                         {"i": bill})
    with pytest.raises(sa.exc.IntegrityError):  # a second bill of the account and cycle
        add_bill(db, "A1", "2026-10", 5 * EUR)
    with db.begin() as conn:  # deleting a bill deletes its lines
        conn.execute(sa.insert(BillLine).values(bill_id=bill, position=0, kind="usage",
                                                name="voice", amount=10 * EUR))
        conn.execute(sa.text("DELETE FROM bills WHERE id = :i"), {"i": bill})
        assert conn.execute(sa.text("SELECT count(*) FROM bill_lines")).scalar_one() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("url", "says"), [
    ("::nope", "not a database URL"),
    ("mysql://root@localhost/ccs", "unsupported database 'mysql'"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:////nonexistent-folder/ccs.db", "unable to open database file"),
    ("", "expected a database URL"),
])
def test_an_unusable_url_is_a_database_error_naming_db(url, says):
    with pytest.raises(ValueError) as err:
        open_database(url)
    assert isinstance(err.value, DatabaseError) and err.value.field == "--db"
    assert says in err.value.message


def test_an_unreachable_postgresql_is_a_database_error_without_the_password():
    url = f"postgresql://ccs:s3cret@127.0.0.1:{_free_port()}/billing"
    with pytest.raises(DatabaseError) as err:
        open_database(url)
    assert err.value.field == "--db"
    assert "cannot open postgresql+psycopg://ccs:***@127.0.0.1:" in err.value.message
    assert "s3cret" not in str(err.value) and "refused" in err.value.message


def _late(n: int) -> list[dict]:
    return [{"file_hash": "f" * 64, "cdr_id": f"c{i}", "account": f"A{i % 7}",
             "cycle": "2026-10", "billed_cycle": "2026-11", "service": "voice",
             "net_charge": i * 3} for i in range(n)]


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["copy", "executemany"])
def test_bulk_insert_writes_every_row_with_defaults_by_either_path(db, threshold):
    rows = _late(12_000)
    with db.begin() as conn:
        assert bulk_insert(conn, LateCdr, rows, copy_threshold=threshold) == 12_000
        assert bulk_insert(conn, LateCdr, [], copy_threshold=threshold) == 0
    bill = add_bill(db, "A1", "2026-10", 10 * EUR)
    lines = [{"bill_id": bill, "position": i, "kind": "usage", "name": "voice", "amount": i}
             for i in range(6_000)]  # 'account' left out: its default '' (the owner)
    with db.connect() as conn:  # not in a transaction yet: bulk_insert begins one
        bulk_insert(conn, BillLine.__table__, lines, copy_threshold=threshold)
        conn.commit()
    with db.connect() as conn:
        got = conn.execute(sa.text("SELECT count(*), sum(net_charge), max(cdr_id) "
                                   "FROM late_cdrs")).one()
        # sum of 3*i for i < 12000 = 3 * 11999 * 12000 / 2 = 215,982,000
        assert (got[0], int(got[1]), got[2]) == (12_000, 215_982_000, "c9999")
        got = conn.execute(sa.text("SELECT count(*), sum(amount), min(account), max(account) "
                                   "FROM bill_lines")).one()
        assert (got[0], int(got[1]), got[2], got[3]) == (6_000, 17_997_000, "", "")


@pytest.mark.parametrize("threshold", [0, 10**9], ids=["copy", "executemany"])
def test_bulk_insert_refuses_a_row_without_a_column_naming_it(db, threshold):
    rows = _late(3)
    del rows[2]["service"]
    with pytest.raises((ValueError, sa.exc.StatementError), match="service"):
        with db.begin() as conn:
            bulk_insert(conn, LateCdr, rows, copy_threshold=threshold)
    with db.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM late_cdrs")).scalar_one() == 0


@pytest.mark.parametrize("backend", db_fixtures.BACKENDS)
def test_an_0001_database_with_bills_upgrades_and_then_takes_a_credit(backend, tmp_path,
                                                                      request):
    """0002: an existing database keeps its bills; afterwards a bill may have a negative
    amount due (a credit), which is never paid."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else \
        request.getfixturevalue("pg_module_url")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        for t in ("online_records", "cdr_digests"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {t}"))
        for t in reversed(Base.metadata.sorted_tables):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {t.name} CASCADE"
                                 if backend != "sqlite" else f"DROP TABLE IF EXISTS {t.name}"))
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    with engine.begin() as conn:
        command.upgrade(billing_db.alembic_config(conn), "0001")
    old = db_fixtures.add_bill(engine, "OLD", "2026-10", 5_000_000)  # a bill of 0001's days
    engine.dispose()
    engine = billing_db.open_database(url)  # upgraded to the head on open
    assert db_fixtures.paid(engine) == {old: 0}
    credit = db_fixtures.add_bill(engine, "CR", "2026-11", -2_380_000, status="draft")
    assert db_fixtures.paid(engine) == {old: 0, credit: 0}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.update(Bill).where(Bill.id == credit).values(paid=1))
    engine.dispose()
