"""The bill run's SQL tables (SQLAlchemy 2 declarative), as notes/BILLRUN.md lays them out.

Money is BigInteger micro-units (int64), never float or Numeric; dates are ISO strings
'YYYY-MM-DD' (local dates of the catalog timezone); cycles are 'YYYY-MM'; instants are
BigInteger UTC epoch seconds. Every column is NOT NULL unless it says `| None`.

The schema is created and upgraded only by the Alembic migrations in billing/migrations
(`billing.db.open_database` runs them); a test compares these models with the migrations.
Constraint and index names follow `NAMING`, so they are the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# autoincrement ids: int64 (a bill line per account, line and cycle outgrows int32); on SQLite
# INTEGER, so that the id is the rowid and autoincrements
ID = BigInteger().with_variant(Integer, "sqlite")


def _id() -> Mapped[int]:
    return mapped_column(ID, primary_key=True, autoincrement=True)


def _micro(*, default: bool = False) -> Mapped[int]:
    """A money column: int64 micro-units; `default` makes it 0 when not given."""
    if default:
        return mapped_column(BigInteger, default=0, server_default=text("0"))
    return mapped_column(BigInteger)


def _count() -> Mapped[int]:
    """A counter column, 0 when not given."""
    return mapped_column(BigInteger, default=0, server_default=text("0"))


class Cycle(Base):
    __tablename__ = "cycles"
    __table_args__ = (CheckConstraint("status IN ('draft', 'final')", name="status"),)

    cycle: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String)
    finalized_at: Mapped[int | None] = mapped_column(BigInteger)


class BillRun(Base):
    __tablename__ = "bill_runs"

    id: Mapped[int] = _id()
    cycle: Mapped[str] = mapped_column(String, index=True)
    partition: Mapped[str] = mapped_column(String, default="1/1", server_default="1/1")
    started_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)  # None while the run is going
    accounts_billed: Mapped[int] = _count()
    cdrs_rated: Mapped[int] = _count()
    cdrs_rejected: Mapped[int] = _count()
    summary: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")


class Bill(Base):
    __tablename__ = "bills"
    __table_args__ = (
        UniqueConstraint("account", "cycle"),
        Index(None, "account"),
        Index(None, "cycle"),
        CheckConstraint("status IN ('draft', 'final')", name="status"),
        CheckConstraint("type IN ('invoice', 'statement')", name="type"),
        # the last guard against over-allocating a bill, whatever a caller does; a credit (a
        # negative amount due) is never paid
        CheckConstraint("paid >= 0 AND (paid = 0 OR paid <= amount_due)", name="paid"),
    )

    id: Mapped[str] = mapped_column(String, primary_key=True)  # '<account>/<cycle>'
    account: Mapped[str] = mapped_column(String)
    cycle: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    type: Mapped[str] = mapped_column(String)
    currency: Mapped[str] = mapped_column(String)
    period_start: Mapped[str] = mapped_column(String)
    period_end: Mapped[str] = mapped_column(String)  # the cycle's last local day, inclusive
    due_date: Mapped[str] = mapped_column(String)
    subtotal: Mapped[int] = _micro()
    account_discount: Mapped[int] = _micro()
    tax: Mapped[int] = _micro()
    total: Mapped[int] = _micro()
    amount_due: Mapped[int] = _micro()
    paid: Mapped[int] = _micro(default=True)
    export: Mapped[str] = mapped_column(Text)  # the bill JSON (BILLRUN.md)
    run_id: Mapped[int] = mapped_column(ID, ForeignKey("bill_runs.id"))


class BillLine(Base):
    __tablename__ = "bill_lines"

    id: Mapped[int] = _id()
    bill_id: Mapped[str] = mapped_column(
        String, ForeignKey("bills.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    account: Mapped[str] = mapped_column(String, default="", server_default=text("''"))
    amount: Mapped[int] = _micro()


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("unallocated >= 0 AND unallocated <= amount", name="unallocated"),
    )

    id: Mapped[int] = _id()
    op_id: Mapped[str] = mapped_column(String, unique=True)
    account: Mapped[str] = mapped_column(String, index=True)
    amount: Mapped[int] = _micro()
    paid_on: Mapped[str] = mapped_column(String)
    unallocated: Mapped[int] = _micro()
    created_at: Mapped[int] = mapped_column(BigInteger)


class PaymentAllocation(Base):
    __tablename__ = "payment_allocations"
    __table_args__ = (
        UniqueConstraint("payment_id", "bill_id"),
        Index(None, "bill_id"),
        CheckConstraint("amount > 0", name="amount"),
    )

    id: Mapped[int] = _id()
    payment_id: Mapped[int] = mapped_column(ID, ForeignKey("payments.id"))
    bill_id: Mapped[str] = mapped_column(String, ForeignKey("bills.id"))
    amount: Mapped[int] = _micro()


class CdrFile(Base):
    __tablename__ = "cdr_files"

    hash: Mapped[str] = mapped_column(String, primary_key=True)  # sha256 hex of the bytes
    name: Mapped[str] = mapped_column(String)
    rows: Mapped[int] = _count()
    rated: Mapped[int] = _count()
    rejected: Mapped[int] = _count()
    imported_at: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(ID, ForeignKey("bill_runs.id"))
    # rows rejected for an account, offer, service or rate that may exist later: while > 0,
    # a run given the file again rates those rows (the others are duplicates by their ids)
    retry: Mapped[int] = _count()


class RatedUsage(Base):
    __tablename__ = "rated_usage"

    file_hash: Mapped[str] = mapped_column(String, ForeignKey("cdr_files.hash"), primary_key=True)
    account: Mapped[str] = mapped_column(String, primary_key=True)
    cycle: Mapped[str] = mapped_column(String, primary_key=True)
    service: Mapped[str] = mapped_column(String, primary_key=True)
    cdrs: Mapped[int] = _count()
    usage: Mapped[int] = _count()
    rated_usage: Mapped[int] = _count()
    covered: Mapped[int] = _count()
    net_charge: Mapped[int] = _micro(default=True)


class CycleStanding(Base):
    __tablename__ = "cycle_standing"

    account: Mapped[str] = mapped_column(String, primary_key=True)
    cycle: Mapped[str] = mapped_column(String, primary_key=True)
    state: Mapped[str] = mapped_column(Text)  # JSON: accumulators and allowances remaining


class LateCdr(Base):
    __tablename__ = "late_cdrs"

    file_hash: Mapped[str] = mapped_column(String, primary_key=True)
    cdr_id: Mapped[str] = mapped_column(String, primary_key=True)
    account: Mapped[str] = mapped_column(String)
    cycle: Mapped[str] = mapped_column(String)  # the CDR's own (finalised) cycle
    billed_cycle: Mapped[str] = mapped_column(String)
    service: Mapped[str] = mapped_column(String)
    net_charge: Mapped[int] = _micro()


class FeePosting(Base):
    __tablename__ = "fee_postings"

    account: Mapped[str] = mapped_column(String, primary_key=True)
    cycle: Mapped[str] = mapped_column(String, primary_key=True)
    subscription: Mapped[str] = mapped_column(String, primary_key=True)  # '<offer>@<from>'
    fee: Mapped[str] = mapped_column(String, primary_key=True)  # 'recurring' or a fee name
    amount: Mapped[int] = _micro()
    op_id: Mapped[str] = mapped_column(String)
    posted_at: Mapped[int] = mapped_column(BigInteger)


class ArrearsAction(Base):
    __tablename__ = "arrears_actions"
    __table_args__ = (CheckConstraint("action IN ('suspend', 'resume')", name="action"),)

    id: Mapped[int] = _id()
    account: Mapped[str] = mapped_column(String, index=True)
    as_of: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    op_id: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class LedgerArchive(Base):
    __tablename__ = "ledger_archive"

    account: Mapped[str] = mapped_column(String, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String, primary_key=True)  # the Redis stream id
    fields: Mapped[str] = mapped_column(Text)  # JSON


class LedgerCheckpoint(Base):
    __tablename__ = "ledger_checkpoints"

    account: Mapped[str] = mapped_column(String, primary_key=True)
    entry_id: Mapped[str] = mapped_column(String)  # the last archived entry
    cycle: Mapped[str] = mapped_column(String)
    balances: Mapped[str] = mapped_column(Text)  # JSON
    created_at: Mapped[int] = mapped_column(BigInteger)


class CdrDigest(Base):
    """The 64-bit digests (FNV-1a, sorted uint64, little endian) of the cdr ids one imported
    file holds in one cycle: a later file's CDR with the same id is a duplicate."""

    __tablename__ = "cdr_digests"
    __table_args__ = (Index(None, "cycle"),)

    file_hash: Mapped[str] = mapped_column(String, primary_key=True)
    cycle: Mapped[str] = mapped_column(String, primary_key=True)
    digests: Mapped[bytes] = mapped_column(LargeBinary)


class OnlineRecord(Base):
    """A rated record of the online node that a final bill summed, archived from Redis."""

    __tablename__ = "online_records"
    __table_args__ = (Index(None, "billed_cycle"),)

    account: Mapped[str] = mapped_column(String, primary_key=True)
    cdr_id: Mapped[str] = mapped_column(String, primary_key=True)
    cycle: Mapped[str] = mapped_column(String)  # the cycle of its session's start
    billed_cycle: Mapped[str] = mapped_column(String)  # the bill that summed it
    service: Mapped[str] = mapped_column(String)
    start: Mapped[int] = mapped_column(BigInteger)
    net_charge: Mapped[int] = _micro()
    record: Mapped[str] = mapped_column(Text)
