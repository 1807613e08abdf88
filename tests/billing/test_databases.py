"""The database fixtures: a fresh, empty PostgreSQL database per test, dropped afterwards."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url


def test_each_test_gets_a_fresh_postgres_database_that_is_dropped(pg_url, pg_admin_url):
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        assert inspect(conn).get_table_names() == []
        conn.execute(text("create table probe (amount bigint not null)"))
        conn.execute(text("insert into probe values (25000000)"))
        assert conn.execute(text("select sum(amount) from probe")).scalar_one() == 25000000
    engine.dispose()
    name = make_url(pg_url).database
    admin = create_engine(pg_admin_url)
    with admin.connect() as conn:
        present = conn.execute(text("select count(*) from pg_database where datname = :n"), {"n": name})
        assert present.scalar_one() == 1
    admin.dispose()
