"""A bill may be a credit (a negative amount due, never paid); the digests of imported CDR ids
(duplicates across files); the online records a final bill summed (archived from Redis);
cdr_files.retry: rows a later run may rate yet (rejected for an account, offer or rate that
may exist later).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_PAID = "paid >= 0 AND paid <= amount_due"
NEW_PAID = "paid >= 0 AND (paid = 0 OR paid <= amount_due)"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite cannot drop a constraint: the batch copies the table without the old check
        # (reflected by name) and with the new one
        with op.batch_alter_table("bills", recreate="always") as batch:
            batch.drop_constraint(op.f("ck_bills_ck_bills_paid"), type_="check")
            batch.create_check_constraint(op.f("ck_bills_paid"), sa.text(NEW_PAID))
    else:
        op.drop_constraint(op.f("ck_bills_ck_bills_paid"), "bills", type_="check")
        op.create_check_constraint(op.f("ck_bills_paid"), "bills", sa.text(NEW_PAID))
    op.add_column("cdr_files", sa.Column("retry", sa.BigInteger(), server_default=sa.text("0"),
                                         nullable=False))
    op.create_table(
        "cdr_digests",
        sa.Column("file_hash", sa.String(), nullable=False),
        sa.Column("cycle", sa.String(), nullable=False),
        sa.Column("digests", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("file_hash", "cycle", name="pk_cdr_digests"),
    )
    op.create_index("ix_cdr_digests_cycle", "cdr_digests", ["cycle"], unique=False)
    op.create_table(
        "online_records",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("cdr_id", sa.String(), nullable=False),
        sa.Column("cycle", sa.String(), nullable=False),
        sa.Column("billed_cycle", sa.String(), nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("net_charge", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account", "cdr_id", name="pk_online_records"),
    )
    op.create_index("ix_online_records_billed_cycle", "online_records", ["billed_cycle"],
                    unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("cdr_files") as batch:
            batch.drop_column("retry")
    else:
        op.drop_column("cdr_files", "retry")
    op.drop_table("online_records")
    op.drop_table("cdr_digests")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("bills", recreate="always") as batch:
            batch.drop_constraint(op.f("ck_bills_paid"), type_="check")
            batch.create_check_constraint(op.f("ck_bills_ck_bills_paid"), sa.text(OLD_PAID))
    else:
        op.drop_constraint(op.f("ck_bills_paid"), "bills", type_="check")
        op.create_check_constraint(op.f("ck_bills_ck_bills_paid"), "bills", sa.text(OLD_PAID))
