"""The bill run's tables (notes/BILLRUN.md): cycles, runs, bills and lines, payments, CDR files,
rated usage, standings, late CDRs, fee postings, arrears actions, the ledger archive.

A migration is frozen: it spells its tables out instead of importing billing.models, which
moves on; tests/billing/test_models.py checks that the models still equal the migrations.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # the rowid on SQLite


def _id() -> sa.Column:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def _big(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _zero(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), server_default=sa.text("0"), nullable=False)


def _str(name: str) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=False)


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=f"pk_{table}")


def _fk(table: str, column: str, target: str, **kw) -> sa.ForeignKeyConstraint:
    referred = target.split(".")[0]
    return sa.ForeignKeyConstraint([column], [target], name=f"fk_{table}_{column}_{referred}", **kw)


def _ck(table: str, name: str, condition: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(condition, name=f"ck_{table}_{name}")


def _ix(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), unique=False)


def upgrade() -> None:
    op.create_table(
        "cycles",
        _str("cycle"), _str("status"), _big("finalized_at", nullable=True),
        _ck("cycles", "status", "status IN ('draft', 'final')"),
        _pk("cycles", "cycle"),
    )
    op.create_table(
        "bill_runs",
        _id(), _str("cycle"),
        sa.Column("partition", sa.String(), server_default="1/1", nullable=False),
        _big("started_at"), _big("finished_at", nullable=True),
        _zero("accounts_billed"), _zero("cdrs_rated"), _zero("cdrs_rejected"),
        sa.Column("summary", sa.Text(), server_default="{}", nullable=False),
        _pk("bill_runs", "id"),
    )
    _ix("bill_runs", "cycle")
    op.create_table(
        "bills",
        _str("id"), _str("account"), _str("cycle"), _str("status"), _str("type"),
        _str("currency"), _str("period_start"), _str("period_end"), _str("due_date"),
        _big("subtotal"), _big("account_discount"), _big("tax"), _big("total"),
        _big("amount_due"), _zero("paid"),
        sa.Column("export", sa.Text(), nullable=False),
        sa.Column("run_id", ID, nullable=False),
        _ck("bills", "status", "status IN ('draft', 'final')"),
        _ck("bills", "type", "type IN ('invoice', 'statement')"),
        _ck("bills", "paid", "paid >= 0 AND paid <= amount_due"),
        _fk("bills", "run_id", "bill_runs.id"),
        _pk("bills", "id"),
        sa.UniqueConstraint("account", "cycle", name="uq_bills_account_cycle"),
    )
    _ix("bills", "account")
    _ix("bills", "cycle")
    op.create_table(
        "bill_lines",
        _id(), _str("bill_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        _str("kind"), _str("name"),
        sa.Column("account", sa.String(), server_default=sa.text("''"), nullable=False),  # the owner
        _big("amount"),
        _fk("bill_lines", "bill_id", "bills.id", ondelete="CASCADE"),
        _pk("bill_lines", "id"),
    )
    _ix("bill_lines", "bill_id")
    op.create_table(
        "payments",
        _id(), _str("op_id"), _str("account"), _big("amount"), _str("paid_on"),
        _big("unallocated"), _big("created_at"),
        _ck("payments", "amount", "amount > 0"),
        _ck("payments", "unallocated", "unallocated >= 0 AND unallocated <= amount"),
        _pk("payments", "id"),
        sa.UniqueConstraint("op_id", name="uq_payments_op_id"),
    )
    _ix("payments", "account")
    op.create_table(
        "payment_allocations",
        _id(), sa.Column("payment_id", ID, nullable=False), _str("bill_id"), _big("amount"),
        _ck("payment_allocations", "amount", "amount > 0"),
        _fk("payment_allocations", "bill_id", "bills.id"),
        _fk("payment_allocations", "payment_id", "payments.id"),
        _pk("payment_allocations", "id"),
        sa.UniqueConstraint("payment_id", "bill_id",
                            name="uq_payment_allocations_payment_id_bill_id"),
    )
    _ix("payment_allocations", "bill_id")
    op.create_table(
        "cdr_files",
        _str("hash"), _str("name"), _zero("rows"), _zero("rated"), _zero("rejected"),
        _big("imported_at"), sa.Column("run_id", ID, nullable=True),
        _fk("cdr_files", "run_id", "bill_runs.id"),
        _pk("cdr_files", "hash"),
    )
    op.create_table(
        "rated_usage",
        _str("file_hash"), _str("account"), _str("cycle"), _str("service"),
        _zero("cdrs"), _zero("usage"), _zero("rated_usage"), _zero("covered"),
        _zero("net_charge"),
        _fk("rated_usage", "file_hash", "cdr_files.hash"),
        _pk("rated_usage", "file_hash", "account", "cycle", "service"),
    )
    op.create_table(
        "cycle_standing",
        _str("account"), _str("cycle"), sa.Column("state", sa.Text(), nullable=False),
        _pk("cycle_standing", "account", "cycle"),
    )
    op.create_table(
        "late_cdrs",
        _str("file_hash"), _str("cdr_id"), _str("account"), _str("cycle"),
        _str("billed_cycle"), _str("service"), _big("net_charge"),
        _pk("late_cdrs", "file_hash", "cdr_id"),
    )
    op.create_table(
        "fee_postings",
        _str("account"), _str("cycle"), _str("subscription"), _str("fee"), _big("amount"),
        _str("op_id"), _big("posted_at"),
        _pk("fee_postings", "account", "cycle", "subscription", "fee"),
    )
    op.create_table(
        "arrears_actions",
        _id(), _str("account"), _str("as_of"), _str("action"), _str("op_id"),
        _big("created_at"),
        _ck("arrears_actions", "action", "action IN ('suspend', 'resume')"),
        _pk("arrears_actions", "id"),
        sa.UniqueConstraint("op_id", name="uq_arrears_actions_op_id"),
    )
    _ix("arrears_actions", "account")
    op.create_table(
        "ledger_archive",
        _str("account"), _str("entry_id"), sa.Column("fields", sa.Text(), nullable=False),
        _pk("ledger_archive", "account", "entry_id"),
    )
    op.create_table(
        "ledger_checkpoints",
        _str("account"), _str("entry_id"), _str("cycle"),
        sa.Column("balances", sa.Text(), nullable=False), _big("created_at"),
        _pk("ledger_checkpoints", "account"),
    )


def downgrade() -> None:
    for table in ("ledger_checkpoints", "ledger_archive", "arrears_actions", "fee_postings",
                  "late_cdrs", "cycle_standing", "rated_usage", "cdr_files",
                  "payment_allocations", "payments", "bill_lines", "bills", "bill_runs",
                  "cycles"):
        op.drop_table(table)  # its indexes go with it
