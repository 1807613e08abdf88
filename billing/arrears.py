"""The arrears run: suspend accounts with overdue final bills, resume them once nothing is.

billing.md, Payments and arrears: on a run as of date D, an account with a final bill whose
amount_due - paid > 0 and whose due_date + grace_days < D is suspended; an account suspended
for arrears with nothing overdue any more is resumed. Both go through the accounts layer
(`AccountStore.set_status`), whose script writes the ledger entry; each action is also a row
of `arrears_actions`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from accounts.errors import InvalidState, OpIdConflict, UnknownAccount
from accounts.model import ledger_entry, text
from accounts.presentation import money_text
from billing.db import BillingError
from billing.models import ArrearsAction as ActionRow
from billing.models import Bill, Payment, PaymentAllocation

log = logging.getLogger(__name__)

MAX_GRACE_DAYS = 3650
HEAL_WINDOW_S = 35 * 86400  # late payments this recent are checked for an unrecorded suspension
LEDGER_LOOKBACK = 1_000  # ledger entries read back for the account's last status change
_PAGE = 100
_OP_ID = re.compile(r"arrears:([0-9]{4}-[0-9]{2}-[0-9]{2}):(.+):(suspend|resume)")


class ArrearsError(BillingError):
    """Bad input to the arrears run; ``field`` names it."""


@dataclass(frozen=True)
class ArrearsAction:
    """One action of a run: a status change through the accounts layer, recorded in SQL."""

    account: str
    action: str  # 'suspend' | 'resume'
    op_id: str  # 'arrears:<as_of>:<account>:<action>'
    as_of: str  # YYYY-MM-DD, the as_of of the run that made the change
    overdue: int  # micro-units overdue as of this run (0 on a resume)
    bills: tuple[str, ...] = ()  # the overdue bills, oldest first
    healed: bool = False  # the change was made by an interrupted run; only its row is new


def op_id_of(as_of: str, account: str, action: str) -> str:
    return f"arrears:{as_of}:{account}:{action}"


def _validate(as_of, grace_days) -> None:
    if isinstance(as_of, datetime) or not isinstance(as_of, date):
        raise ArrearsError("as_of", f"expected a date, got {type(as_of).__name__} {as_of!r}")
    if not date(1970, 1, 1) <= as_of <= date(2999, 12, 31):
        raise ArrearsError("as_of", f"{as_of} is outside 1970-01-01..2999-12-31")
    if (isinstance(grace_days, bool) or not isinstance(grace_days, int)
            or not 0 <= grace_days <= MAX_GRACE_DAYS):
        raise ArrearsError("grace_days", f"expected 0..{MAX_GRACE_DAYS} days, got {grace_days!r}")


def _overdue(conn, cutoff: str) -> dict[str, list[tuple[str, str, int]]]:
    """account -> [(bill id, due date, owed)] of its final bills owing money and due before
    ``cutoff`` (due_date + grace_days < as_of  <=>  due_date < as_of - grace_days)."""
    rows = conn.execute(
        sa.select(Bill.account, Bill.id, Bill.due_date, Bill.amount_due - Bill.paid)
        .where(Bill.status == "final", Bill.amount_due > Bill.paid, Bill.due_date < cutoff)
        .order_by(Bill.account, Bill.cycle, Bill.id)
    ).all()
    out: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for account, bill_id, due, owed in rows:
        out[account].append((bill_id, due, int(owed)))
    return out


def _last_suspends(conn) -> dict[str, str]:
    """account -> op id, for every account whose last arrears action is a suspension."""
    latest = (
        sa.select(sa.func.max(ActionRow.id).label("id")).group_by(ActionRow.account).subquery()
    )
    rows = conn.execute(
        sa.select(ActionRow.account, ActionRow.op_id)
        .join(latest, ActionRow.id == latest.c.id)
        .where(ActionRow.action == "suspend")
    ).all()
    return dict(rows)


def _late_payers(conn, cutoff: str, since: int) -> set[str]:
    """Accounts that recently paid, after its due date, a bill now past its grace: a run that
    suspended one and was interrupted before its row may have left no other trace in SQL."""
    rows = conn.execute(
        sa.select(Bill.account).distinct()
        .join(PaymentAllocation, PaymentAllocation.bill_id == Bill.id)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(Bill.due_date < cutoff, Payment.paid_on > Bill.due_date,
               Payment.created_at >= since)
    ).all()
    return {a for (a,) in rows}


def _last_status_change(store, account: str) -> dict | None:
    """The account's newest `set_status` ledger entry among its last LEDGER_LOOKBACK entries
    (None: none there; the account never changed status, or not lately)."""
    key = store.account_keys(account).ledger
    end = "+"
    for _ in range(LEDGER_LOOKBACK // _PAGE):
        page = store.r.xrevrange(key, end, "-", count=_PAGE)
        for entry_id, fields in page:
            entry = ledger_entry(entry_id, fields)
            if entry["op"] == "set_status":
                return entry
        if len(page) < _PAGE:
            return None
        end = f"({text(page[-1][0])}"
    return None


def _ours(op_id: str | None, account: str) -> tuple[str, str] | None:
    """(as_of, action) when ``op_id`` is an arrears op id of ``account``."""
    m = _OP_ID.fullmatch(op_id or "")
    return (m.group(1), m.group(3)) if m and m.group(2) == account else None


def _insert_row(engine, account: str, as_of: str, action: str, op_id: str) -> bool:
    """Record an action; False when its op id was recorded already (by this run's twin)."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    statement = insert(ActionRow).values(
        account=account, as_of=as_of, action=action, op_id=op_id, created_at=int(time.time())
    ).on_conflict_do_nothing(index_elements=["op_id"]).returning(ActionRow.id)
    with engine.begin() as conn:
        return conn.execute(statement).first() is not None


def arrears_run(engine, store, *, as_of: date, grace_days: int) -> list[ArrearsAction]:
    """Suspend the accounts with an overdue final bill, resume those suspended for arrears
    that have nothing overdue any more, as of ``as_of``; returns the actions recorded by
    this call, by account.

    - Overdue: a final bill with amount_due - paid > 0 and due_date + grace_days < as_of.
      An overdue account that is active is suspended: ``store.set_status(account,
      'suspended', op_id='arrears:<as_of>:<account>:suspend', reason='arrears: ...')``.
    - Suspended for arrears: suspended, and its last status change in the ledger is an
      arrears suspension (its last arrears_actions row when the ledger no longer shows it).
      Such an account with nothing overdue is resumed, op id '...:resume'. An account an
      operator suspended (for arrears or anything else) is never resumed here, even when an
      earlier arrears suspension was resumed by hand; terminated accounts are left alone.
      An unknown account (a bill for an account not in the store) is logged and skipped.
    - Re-runs: the op ids are deterministic, so a second run with the same as_of changes
      nothing (the store replays its first answer) and records nothing twice (op_id is unique
      in arrears_actions).
    - Interrupted runs: the row is written only after the store call succeeded. When a run
      stops between the two, the account's ledger holds the change under its arrears op id;
      the next run (any as_of) finds that op id as the account's last status change, records
      its missing row (an action with ``healed=True``) and goes on from the true state. It
      looks at accounts still overdue, accounts whose last row is 'suspend', and accounts
      that paid a bill late within HEAL_WINDOW_S (so a suspension followed by a payment before
      the next run is still resumed).

    Not atomic over accounts: each action is its own store call and SQL transaction."""
    _validate(as_of, grace_days)
    day = as_of.isoformat()
    cutoff = (as_of - timedelta(days=grace_days)).isoformat()
    with engine.connect() as conn:
        overdue = _overdue(conn, cutoff)
        suspends = _last_suspends(conn)
        late = _late_payers(conn, cutoff, int(time.time()) - HEAL_WINDOW_S)
    actions: list[ArrearsAction] = []
    for account in sorted(set(overdue) | set(suspends) | late):
        actions.extend(_settle(engine, store, account, day, overdue.get(account, []),
                               suspends.get(account)))
    return actions


def _settle(engine, store, account: str, day: str, bills: list, last_suspend: str | None):
    try:
        status = store.get_account(account).status
    except UnknownAccount:
        log.warning("arrears run %s: no account %r in the store; skipped", day, account)
        return []
    if status == "terminated":
        return []
    out = []
    change = None
    if status == "suspended" or last_suspend is not None:
        change = _last_status_change(store, account)
    if change is not None:
        ours = _ours(change["op_id"], account)
        if ours is not None and change["op_id"] != last_suspend:
            as_of, action = ours  # a change an interrupted run made: record its row now
            if _insert_row(engine, account, as_of, action, change["op_id"]):
                out.append(ArrearsAction(account, action, change["op_id"], as_of, 0, (), True))
        suspended_here = status == "suspended" and ours is not None and ours[1] == "suspend"
    else:
        suspended_here = status == "suspended" and last_suspend is not None
    owed = sum(b[2] for b in bills)
    if bills and status == "active":
        op_id = op_id_of(day, account, "suspend")
        first = bills[0]
        reason = (f"arrears: {money_text(owed)} overdue as of {day} "
                  f"({len(bills)} bill(s), oldest {first[0]} due {first[1]})")
        try:
            store.set_status(account, "suspended", op_id=op_id, reason=reason)
        except InvalidState:  # terminated since it was read: left alone
            return out
        except OpIdConflict:
            # this as_of's suspension was made already, with another amount in its reason
            # (the account was resumed by hand and paid part since): it is not made twice
            return out
        if _insert_row(engine, account, day, "suspend", op_id):
            out.append(ArrearsAction(account, "suspend", op_id, day, owed,
                                     tuple(b[0] for b in bills)))
    elif not bills and suspended_here:
        op_id = op_id_of(day, account, "resume")
        store.set_status(account, "active", op_id=op_id,
                         reason=f"arrears: nothing overdue as of {day}")
        if _insert_row(engine, account, day, "resume", op_id):
            out.append(ArrearsAction(account, "resume", op_id, day, 0))
    return out
