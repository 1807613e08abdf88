"""`ccs bill ...`: the bill run, bills, finalisation, payments and the arrears run.

Argument handling and exit codes only (0 done, 1 refused or a service unavailable, 2 bad
input; nothing is written on exit 2). The work is `billing.billrun`, `billing.payments`,
`billing.arrears`; the pages `billing.render`.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from pathlib import Path

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class BillUsageError(Exception):
    """Bad input (exit 2); the message names the argument."""


class _Session:
    """Catalog, database and (only when a verb needs it) Redis of one command."""

    def __init__(self, args):
        self.args = args
        self._accounts = None
        self._engine = None
        self._compiled = None

    @property
    def accounts(self):
        if self._accounts is None:
            from accounts.cli import _Session as AccountsSession

            self._accounts = AccountsSession(self.args)
        return self._accounts

    @property
    def catalog(self):
        from accounts.cli import UsageError

        try:
            return self.accounts.catalog
        except UsageError as exc:
            raise BillUsageError(str(exc)) from None

    @property
    def store(self):
        self.catalog  # noqa: B018  (a bad catalog is named before any server starts)
        return self.accounts.store

    @property
    def compiled(self):
        if self._compiled is None:
            from rating.compiler import compile_catalog

            self._compiled = compile_catalog(self.catalog)
        return self._compiled

    @property
    def engine(self):
        if self._engine is None:
            from billing.db import DatabaseError, open_database

            try:
                self._engine = open_database(self.args.db, self.args.data_dir)
            except DatabaseError as exc:
                raise BillUsageError(str(exc)) from None
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._accounts is not None:
            self._accounts.close()


def _cycle(text: str) -> str:
    from billing.billrun import BillRunError, check_cycle

    try:
        return check_cycle(text)
    except BillRunError as exc:
        raise BillUsageError(str(exc)) from None


def _date(text: str | None, field: str) -> str:
    if isinstance(text, str) and len(text) == 10:
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
    raise BillUsageError(f"{field}: expected a date YYYY-MM-DD, got {text!r}")


class _Progress:
    """A progress bar of the run's steps on stderr (tqdm), only when stderr is a terminal."""

    def __init__(self, steps: int):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc="bill run", unit="step", file=sys.stderr,
                            leave=False)

    def __call__(self, step: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(step)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(session, args) -> int:
    from billing.billrun import parse_partition, run

    cycle = _cycle(args.cycle)
    try:
        partition = parse_partition(args.partition)
    except ValueError as exc:
        raise BillUsageError(str(exc)) from None
    for path in args.cdrs:
        if not Path(path).is_file():
            raise BillUsageError(f"--cdrs: {path}: no such file")
    catalog, compiled, engine = session.catalog, session.compiled, session.engine
    from billing import cdrs

    cdrs.warm_up(compiled, catalog.timezone)
    progress = _Progress(4 + len(args.cdrs))
    try:
        summary = run(engine, session.store, catalog, compiled, cycle=cycle,
                      cdr_files=args.cdrs, partition=partition, progress=progress)
    finally:
        progress.close()
    d = summary.as_dict(catalog.billing.decimals)
    if args.json:
        print(json.dumps(d, sort_keys=True))
        return EXIT_OK
    print(f"bill run {cycle} (partition {d['partition']}): {d['accounts_billed']} bill(s): "
          f"{d['invoices']} invoice(s), {d['statements']} statement(s) in {d['seconds']} s")
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(d["cdrs_rejected"].items())) or "none"
    print(f"CDRs rated {d['cdrs_rated']}, rejected {sum(d['cdrs_rejected'].values())} "
          f"({rejected}); files imported {len(d['files_imported'])}, "
          f"already imported {len(d['files_skipped'])}")
    for name in d["files_skipped"]:
        print(f"  skipped (imported before, same content): {name}")
    revenue = ", ".join(f"{k} {v}" for k, v in d["revenue"].items()) or "none"
    print(f"usage revenue by service: {revenue}")
    if d["fees_debited"] or d["fees_refused"]:
        print(f"prepaid fees debited: {d['fees_debited']}")
    for line in d["fees_refused"]:
        print(f"  fee not debited: {line}")
    return EXIT_OK


def _bill_docs(session, cycle: str, account: str | None = None) -> list[dict]:
    from sqlalchemy import select

    from billing.models import Base

    t = Base.metadata.tables["bills"]
    q = select(t.c.export).where(t.c.cycle == cycle).order_by(t.c.account)
    if account is not None:
        q = q.where(t.c.account == account)
    with session.engine.connect() as conn:
        return [json.loads(x) for (x,) in conn.execute(q)]


def _show(session, args) -> int:
    cycle = _cycle(args.cycle)
    docs = _bill_docs(session, cycle, args.account)
    if not docs:
        raise BillUsageError(f"ACCOUNT: no bill of {args.account!r} for cycle {cycle} "
                             "(a child account's lines are on its parent's bill)")
    b = docs[0]
    if args.json:
        from billing.render import bill_json

        sys.stdout.write(bill_json(b).decode())
        return EXIT_OK
    print(f"{b['type']} {b['account']} {b['cycle']} ({b['status']}): {b['period_start']} .. "
          f"{b['period_end']}, due {b['due_date']}, {b['currency']}")
    for ln in b["lines"]:
        who = f"[{ln['account']}] " if ln["account"] else ""
        print(f"  {ln['kind']:<17} {who}{ln['name']:<30} {ln['amount']:>12}")
    for k in ("subtotal", "account_discount", "tax", "total", "amount_due"):
        print(f"  {k:<48} {b[k]:>12}")
    return EXIT_OK


def _export(session, args) -> int:
    from billing.render import write_export

    cycle = _cycle(args.cycle)
    docs = _bill_docs(session, cycle)
    if not docs:
        raise BillUsageError(f"--cycle: no bills for cycle {cycle} (run `ccs bill run` first)")
    try:
        paths = write_export(docs, Path(args.out), operator=args.operator)
    except OSError as exc:
        print(f"ccs bill export: --out {args.out}: cannot write: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"exported {len(docs)} bill(s) of {cycle} to {args.out} ({len(paths)} files)")
    return EXIT_OK


def _finalize(session, args) -> int:
    from billing.billrun import BillRunError, finalize

    cycle = _cycle(args.cycle)
    engine = session.engine
    try:
        from billing.billrun import check_cycle, cycle_status

        with engine.connect() as conn:  # an unknown cycle is named before Redis is opened
            if cycle_status(conn, check_cycle(cycle)) is None:
                raise BillRunError("--cycle", f"cycle {cycle} was never run")
        n = finalize(engine, cycle, session.store)
    except BillRunError as exc:
        raise BillUsageError(str(exc)) from None
    print(f"cycle {cycle} final: {n} bill(s) finalised" if n else
          f"cycle {cycle} was already final: no bill changed")
    a = n.archive
    print(f"ledgers archived: {a.entries} entr{'y' if a.entries == 1 else 'ies'} of "
          f"{a.accounts} account(s) moved from Redis to the database "
          f"({a.inserted} new row(s)) in {a.seconds:.3f} s")
    for reason, ids in a.skipped.items():
        print(f"  not archived ({reason}): {len(ids)} account(s): {', '.join(ids[:10])}"
              + (" ..." if len(ids) > 10 else ""))
    return EXIT_OK


def _pay(session, args) -> int:
    from billing.payments import record_payment
    from rating.money import MoneyError, format_money, parse_money

    try:
        amount = parse_money(args.amount, "AMOUNT", allow_negative=False)
    except MoneyError as exc:
        raise BillUsageError(str(exc)) from None
    paid_on = _date(args.paid_on, "--paid-on") if args.paid_on else date.today().isoformat()
    decimals = session.catalog.billing.decimals
    _known_account(session, args.account)
    if amount % 10 ** (6 - decimals):
        raise BillUsageError(f"AMOUNT: {args.amount} has more than the bills' {decimals} decimals")
    try:
        result = record_payment(session.engine, account=args.account, amount=amount,
                                op_id=args.op_id, paid_on=paid_on)
    except ValueError as exc:
        raise BillUsageError(str(exc)) from None
    print(("payment recorded" if result.applied else "payment already recorded (same --op-id)")
          + f": {format_money(amount, decimals)} from {args.account}")
    for bill_id, part in result.allocations:
        print(f"  allocated to {bill_id}: {format_money(part, decimals)}")
    print(f"  unallocated: {format_money(result.unallocated, decimals)}")
    return EXIT_OK


def _known_account(session, account: str) -> None:
    """A payment is booked against an account that exists (ACCOUNT, exit 2 otherwise)."""
    from accounts.errors import AccountError, UnknownAccount

    try:
        session.store.account_keys(account)
    except UnknownAccount:
        raise BillUsageError(f"ACCOUNT: no account {account!r}") from None
    except AccountError as exc:
        raise BillUsageError(f"ACCOUNT: {getattr(exc, 'message', exc)}") from None


def _arrears(session, args) -> int:
    from billing.arrears import arrears_run

    as_of = date.fromisoformat(_date(args.as_of, "--as-of"))
    actions = arrears_run(session.engine, session.store, as_of=as_of,
                          grace_days=session.catalog.billing.grace_days)
    for a in actions:
        print(f"  {a.action} {a.account}")
    print(f"arrears run as of {as_of.isoformat()}: {len(actions)} action(s)")
    return EXIT_OK


# the billing layer's field names -> the command line's
_ARGUMENTS = {"as_of": "--as-of", "paid_on": "--paid-on", "amount": "AMOUNT",
              "account": "ACCOUNT", "op_id": "--op-id", "operator": "--operator",
              "cycle": "--cycle", "grace_days": "billing.grace_days (catalog)"}


def _named(exc) -> str:
    field = getattr(exc, "field", None)
    message = getattr(exc, "message", None)
    if field is None or message is None:
        return str(exc)
    return f"{_ARGUMENTS.get(field, field)}: {message}"


def _runner(verb: str, handler):
    def run(args) -> int:
        import redis

        from accounts.embedded import RedisUrlError
        from accounts.errors import AccountError
        from billing.db import BillingError
        from billing.render import BillFormatError

        session = _Session(args)
        try:
            return handler(session, args)
        except (BillUsageError, _billrun_error(), AccountError, RedisUrlError, BillingError,
                BillFormatError) as exc:
            print(f"ccs bill {verb}: {_named(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            print(f"ccs bill {verb}: Redis unavailable: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except KeyboardInterrupt:
            print(f"ccs bill {verb}: interrupted", file=sys.stderr)
            return 130
        finally:
            session.close()

    return run


def _billrun_error():
    from billing.billrun import BillRunError

    return BillRunError


def register(subparsers) -> None:
    """Add `ccs bill <verb>` to the root parser's subcommands."""
    top = subparsers.add_parser("bill", help="the bill run, bills, payments, arrears",
                                description="Bill a cycle, show and export bills, finalise a "
                                            "cycle, record payments, run arrears.")
    verbs = top.add_subparsers(dest="bill_verb", metavar="VERB", required=True)

    def verb(name: str, handler, help_text: str):
        p = verbs.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", default=os.environ.get("CCS_DB_URL"),
                       help="database URL (sqlite:///FILE or postgresql+psycopg://...); "
                            "default $CCS_DB_URL, else <data dir>/ccs.db")
        p.add_argument("--redis", default=None,
                       help="Redis URL; default $CCS_REDIS_URL, else the embedded redis-server")
        p.add_argument("--catalog", default=os.environ.get("CCS_CATALOG"),
                       help="catalog YAML (default $CCS_CATALOG)")
        p.add_argument("--data-dir", default=None,
                       help="data folder (default $CCS_DATA_DIR or .ccs-data)")
        p.set_defaults(func=_runner(name, handler))
        return p

    p = verb("run", _run, "bill one cycle: import CDR files, rate, store one bill per account")
    p.add_argument("--cycle", required=True, help="YYYY-MM")
    p.add_argument("--cdrs", action="append", default=[], metavar="FILE",
                   help="offline CDR file (CSV) to import (repeatable)")
    p.add_argument("--partition", default=None, metavar="K/N",
                   help="bill only the account families of partition K of N")
    p.add_argument("--json", action="store_true", help="the summary as one JSON line")
    p = verb("show", _show, "show the bill of an account")
    p.add_argument("account", metavar="ACCOUNT")
    p.add_argument("--cycle", required=True, help="YYYY-MM")
    p.add_argument("--json", action="store_true", help="the bill's JSON export")
    p = verb("export", _export, "write every bill of a cycle as JSON and HTML, and summary.csv")
    p.add_argument("--cycle", required=True, help="YYYY-MM")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--operator", default="ccs", help="operator name on the bills")
    p = verb("finalize", _finalize, "freeze a cycle: its bills never change again")
    p.add_argument("--cycle", required=True, help="YYYY-MM")
    p = verb("pay", _pay, "record a payment, allocated to the oldest unpaid final bill first")
    p.add_argument("account", metavar="ACCOUNT")
    p.add_argument("amount", metavar="AMOUNT", help="decimal amount, e.g. 25.00")
    p.add_argument("--op-id", required=True, help="idempotency key of the payment")
    p.add_argument("--paid-on", default=None, help="YYYY-MM-DD (default: today)")
    p = verb("arrears", _arrears, "suspend accounts with overdue bills, resume the settled")
    p.add_argument("--as-of", required=True, help="YYYY-MM-DD")
