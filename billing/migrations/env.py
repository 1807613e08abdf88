"""Alembic environment of the billing database (no alembic.ini: configured in code).

`billing.db.upgrade` runs it with its connection in ``config.attributes["connection"]``.
A new revision is generated the same way, against a database at the current head:

    from alembic import command
    from billing import db
    engine = db.open_database("sqlite:////tmp/head.db")
    with engine.begin() as conn:
        command.revision(db.alembic_config(conn), "what changed", autogenerate=True,
                         rev_id="0002")
"""

from __future__ import annotations

from alembic import context

from billing.models import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise SystemExit("billing migrations run through billing.db (open_database or "
                     "alembic_config(connection)), online only")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    compare_type=True,
    render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite copies the table
)
with context.begin_transaction():
    context.run_migrations()
