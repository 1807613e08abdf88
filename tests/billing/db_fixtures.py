"""Billing database fixtures and helpers shared by the models, payments and arrears tests.

`db` is an Engine from `billing.db.open_database`, once on a SQLite file in tmp_path and once
(marked postgres) on a PostgreSQL database made for the test module and dropped after it;
each test starts with the PostgreSQL tables emptied. A test module uses them with
`db, pg_module_url = db_fixtures.db, db_fixtures.pg_module_url` (an assignment, not an
import of the names: ruff would read the test parameters as redefinitions of an import).
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from billing.db import open_database
from billing.models import Base, Bill, BillRun

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
EUR = 1_000_000  # micro-units in one euro


@pytest.fixture(scope="module")
def pg_module_url(pg_admin_url):
    """A fresh PostgreSQL database for one test module, dropped at its end."""
    from sqlalchemy.engine import make_url

    name = f"ccs_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    if request.param == "sqlite":
        engine = open_database(f"sqlite:///{tmp_path / 'ccs.db'}")
    else:
        engine = open_database(request.getfixturevalue("pg_module_url"))
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    engine.dispose()


def add_bill(engine, account: str, cycle: str, amount_due: int, *, status: str = "final",
             due_date: str | None = None) -> str:
    """Insert a bill (and the bill run it names) directly; returns its id '<account>/<cycle>'.
    Its totals are all `amount_due`; the due date defaults to the 14th of the next month."""
    year, month = map(int, cycle.split("-"))
    nxt = f"{year + month // 12:04d}-{month % 12 + 1:02d}"
    bill_id = f"{account}/{cycle}"
    with engine.begin() as conn:
        run_id = conn.execute(
            sa.insert(BillRun).values(cycle=cycle, started_at=0, finished_at=0)
            .returning(BillRun.id)
        ).scalar_one()
        conn.execute(sa.insert(Bill).values(
            id=bill_id, account=account, cycle=cycle, status=status, type="invoice",
            currency="EUR", period_start=f"{cycle}-01", period_end=f"{cycle}-28",
            due_date=due_date or f"{nxt}-14", subtotal=amount_due, account_discount=0, tax=0,
            total=amount_due, amount_due=amount_due, export="{}", run_id=run_id,
        ))
    return bill_id


def paid(engine) -> dict[str, int]:
    """bill id -> paid micro-units, every bill."""
    with engine.connect() as conn:
        return {i: int(p) for i, p in conn.execute(sa.select(Bill.id, Bill.paid)).all()}
