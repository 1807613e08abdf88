"""`ccs accounts ...`: the operator's commands over the account store (create, top up, show, ...).

Each verb opens the store, does one thing, prints a readable answer and exits 0 (done),
1 (refused by the domain: unknown account, op-id conflict, audit findings) or 2 (bad input).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import redis

from accounts.embedded import RedisUrlError
from accounts.errors import (
    AccountError,
    AccountExists,
    CurrencyMismatch,
    InvalidState,
    OpIdConflict,
    UnknownAccount,
)
from accounts.keys import AccountKeys, check_account_id, lookup_key
from accounts.presentation import account_text, account_to_dict, ledger_to_dict, money_text
from accounts.validation import (
    check_grace,
    check_iso_date,
    check_ledger_after,
    check_ledger_count,
    check_msisdns,
    check_op_id,
    check_subscription_dates,
)
from rating.money import MoneyError, parse_money

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# what the domain refuses (exit 1); every other AccountError is bad input (exit 2)
_REFUSALS = (UnknownAccount, AccountExists, OpIdConflict, InvalidState, CurrencyMismatch)


class UsageError(Exception):
    """Bad command-line input (exit 2); the message names the argument."""


# --- the session of one command: lazy Redis, catalog and store, always cleaned up -------------

class _Session:
    """Opens Redis and the catalog only when a verb needs them (so bad input never starts a
    server), and stops an embedded redis-server that it started."""

    def __init__(self, args):
        self.args = args
        self._client = None
        self._embedded = None
        self._store = None
        self._catalog = None

    @property
    def connected(self) -> bool:
        """Whether Redis answered: from then on a lost answer leaves the outcome unknown."""
        return self._client is not None

    @property
    def client(self):
        if self._client is None:
            from accounts.embedded import connect

            self._client, self._embedded = connect(self.args.redis, self.args.data_dir)
        return self._client

    @property
    def store(self):
        if self._store is None:
            catalog = self.catalog  # before Redis: a missing catalog must not start a server
            from accounts.store import AccountStore

            self._store = AccountStore(self.client, catalog)
        return self._store

    @property
    def catalog(self):
        if self._catalog is None:
            path = self.args.catalog
            if not path:
                raise UsageError("--catalog: no catalog given (pass --catalog FILE or set CCS_CATALOG)")
            from rating.catalog import CatalogError, load_catalog

            try:
                self._catalog = load_catalog(path)
            except (CatalogError, OSError) as exc:
                raise UsageError(f"--catalog: cannot load {path}: {exc}") from exc
        return self._catalog

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._embedded is not None:
            self._embedded.stop()


def _sweep(session, args) -> int:
    from accounts.sweeper import sweep_expired, sweep_unindexed

    grace = check_grace(args.grace, "--grace")
    store = session.store
    store.grace_s = grace
    released = sweep_unindexed(store) if args.all else 0
    while batch := sweep_expired(store):
        released += batch
    print(f"released {released} reservation(s)")
    return EXIT_OK


def _runner(verb: str, handler):
    def run(args) -> int:
        session = _Session(args)
        try:
            return handler(session, args)
        except _REFUSALS as exc:
            print(f"ccs accounts {verb}: refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except (UsageError, MoneyError, AccountError, RedisUrlError) as exc:
            # any other AccountError is input the store validated: a bad id, MSISDN, date, ...
            print(f"ccs accounts {verb}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if session.connected:  # the change may have been applied: say how to retry it
                _announce_op_id(args)
            print(f"ccs accounts {verb}: Redis unavailable: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except KeyboardInterrupt:
            if session.connected:
                _announce_op_id(args)
            print(f"ccs accounts {verb}: interrupted", file=sys.stderr)
            return 130
        finally:
            session.close()

    return run


# --- argument helpers -------------------------------------------------------------------------

def _amount(text: str, field: str, *, allow_negative: bool = False) -> int:
    return parse_money(text, field, allow_negative=allow_negative)


def _credit_limit(args) -> int | None:
    """--prepaid: 0; --postpaid: unlimited (None) unless --credit-limit names an amount > 0."""
    if args.prepaid:
        if args.credit_limit is not None:
            raise UsageError("--credit-limit: only a postpaid account has a credit limit")
        return 0
    if args.credit_limit is None or args.credit_limit.strip().lower() in ("", "unlimited"):
        return None
    limit = _amount(args.credit_limit, "--credit-limit")
    if limit == 0:
        raise UsageError("--credit-limit: a postpaid limit must be above 0 (0 means prepaid)")
    return limit


def _op_id(args) -> str:
    """The operator's --op-id (checked), else a fresh one. A generated one is printed with
    the answer (`_announce_op_id`), or with the error when Redis went away mid-command (the
    outcome is then unknown and a retry with it is safe); never for input that was refused."""
    if args.op_id is not None:
        return check_op_id(args.op_id, "--op-id")
    args.op_id = str(uuid.uuid4())
    args.op_id_generated = True
    return args.op_id


def _announce_op_id(args) -> None:
    """Print a generated op id, once, before the command's answer."""
    if getattr(args, "op_id_generated", False):
        args.op_id_generated = False
        print(f"op-id: {args.op_id} (generated; retry with --op-id {args.op_id})")


def _today(session) -> str:
    from rating.cycles import local_date

    return local_date(_now(), session.catalog.timezone).isoformat()


def _now() -> int:
    return int(time.time())


def _report(args, result, what: str) -> int:
    """Print the outcome of a mutating store call; a domain refusal exits 1."""
    if result.code != "ok":
        detail = ", ".join(f"{k}={v}" for k, v in sorted(result.detail.items()))
        print(f"refused: {result.code}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        return EXIT_REFUSED
    _announce_op_id(args)
    if not result.applied:
        print(f"already applied (op-id {result.op_id}): nothing changed")
    account = result.account
    if account is not None:
        available = account.available(_now())
        print(f"{account.id}: {what}; status {account.status}, balance "
              f"{money_text(account.balance)} {account.currency}, available "
              f"{'unlimited' if available is None else money_text(available)}")
    return EXIT_OK


# --- verbs ------------------------------------------------------------------------------------

def _create(session, args) -> int:
    check_account_id(args.id)
    limit = _credit_limit(args)
    if not 1 <= args.bill_cycle_day <= 31:
        raise UsageError(f"--bill-cycle-day: expected 1..31, got {args.bill_cycle_day}")
    check_msisdns(args.msisdn)
    if args.parent is not None:
        check_account_id(args.parent, "parent")
    op_id = _op_id(args)
    result = session.store.create(
        args.id, credit_limit=limit, currency=args.currency, msisdns=tuple(args.msisdn),
        bill_cycle_day=args.bill_cycle_day, parent=args.parent, offers=tuple(args.offer),
        op_id=op_id)
    _announce_op_id(args)
    if not result.applied:
        print(f"already applied (op-id {op_id}): nothing changed")
    account = result.account
    limit_text = "unlimited" if account.credit_limit is None else money_text(account.credit_limit)
    print(f"{account.id}: created; {account.payment_type}, currency {account.currency}, "
          f"credit limit {limit_text}, balance {money_text(account.balance)}")
    return EXIT_OK


def _show(session, args) -> int:
    store = session.store
    account = store.get_account(store.resolve(args.id))
    if args.json:
        print(json.dumps(account_to_dict(account, _now(), session.catalog), indent=2))
    else:
        print(account_text(account, _now(), session.catalog))
    return EXIT_OK


def _topup(session, args) -> int:
    check_account_id(args.id)
    amount = _amount(args.amount, "amount")
    op_id = _op_id(args)
    result = session.store.topup(args.id, amount, op_id=op_id, currency=args.currency)
    return _report(args, result, f"topped up {money_text(amount)}")


def _adjust(session, args) -> int:
    check_account_id(args.id)
    amount = _amount(args.amount, "amount", allow_negative=True)
    if not args.reason.strip():
        raise UsageError("--reason: required, and not blank")
    op_id = _op_id(args)
    result = session.store.adjust(args.id, amount, op_id=op_id, reason=args.reason)
    return _report(args, result, f"adjusted by {money_text(amount)} ({args.reason})")


def _status_verb(status: str, what: str):
    def handler(session, args) -> int:
        check_account_id(args.id)
        op_id = _op_id(args)
        result = session.store.set_status(args.id, status, op_id=op_id, reason=args.reason or "")
        return _report(args, result, what)

    return handler


def _convert(session, args) -> int:
    check_account_id(args.id)
    limit = _credit_limit(args)
    op_id = _op_id(args)
    result = session.store.change_payment_type(args.id, limit, op_id=op_id)
    return _report(args, result, "converted to " + ("prepaid" if limit == 0 else "postpaid"))


def _subscribe(session, args) -> int:
    check_account_id(args.id)
    # the rule of the store and the gRPC service, with the CLI's argument names
    from_date, to_date = check_subscription_dates(args.from_date, args.to_date, _today(session),
                                                  fields=("--from", "--to"))
    op_id = _op_id(args)
    result = session.store.subscribe(args.id, args.offer, op_id=op_id, from_date=from_date,
                                     to_date=to_date)
    return _report(args, result, f"subscribed to {args.offer}")


def _unsubscribe(session, args) -> int:
    check_account_id(args.id)
    on = check_iso_date(args.on, "--on")
    op_id = _op_id(args)
    result = session.store.unsubscribe(args.id, args.offer, op_id=op_id, on_date=on)
    ends = ", ".join(f"{e['from']}..{e['to']}" for e in result.detail.get("ended", ()))
    return _report(args, result, f"unsubscribed from {args.offer} on {on} ({ends})")


def _ledger(session, args) -> int:
    check_account_id(args.id)
    check_ledger_count(args.limit, "--limit")
    check_ledger_after(args.after, "--after")
    entries = [ledger_to_dict(e) for e in
               session.store.ledger(args.id, count=args.limit, after=args.after)]
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    for e in entries:
        rest = " ".join(f"{k}={_compact(v)}" for k, v in e.items()
                        if k not in ("id", "op", "op_id", "time"))
        print(f"{e['id']}  {e['time']}  {e['op']}  op-id {e['op_id']}" + (f"  {rest}" if rest else ""))
    if not entries:
        print("(no ledger entries)")
    return EXIT_OK


def _compact(value) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _known(client, account_id: str) -> bool:
    """Whether anything of the account is stored: its lookup key, or its account hash as a
    root or as a child of any root (an account that lost its lookup key is still audited)."""
    if client.exists(lookup_key(account_id), AccountKeys(account_id, account_id).account):
        return True
    return next(iter(client.scan_iter(match=f"{{a:*}}:{account_id}:acct", count=1000)),
                None) is not None


# the bill run's ledger archive, checked by `audit --db`: named, not imported, so that the
# accounts layer imports nothing of billing (billing uses accounts, not the other way)
ARCHIVE_CHECK = "billing.archive"


def _archive_engine(args):
    """(the --db database's engine, the audit's ``history`` check of its archive)."""
    import importlib

    archive = importlib.import_module(ARCHIVE_CHECK)
    db = importlib.import_module("billing.db")
    try:
        engine = db.open_database(args.db, args.data_dir)
    except db.DatabaseError as exc:
        raise UsageError(str(exc)) from None
    return engine, archive.history_check(engine)


def _audit(session, args) -> int:
    from accounts.audit import audit

    for account_id in args.ids:
        check_account_id(account_id, "ID")
    # a bad --db is named before Redis is opened
    engine, history = _archive_engine(args) if args.db is not None else (None, None)
    try:
        for account_id in args.ids:
            if not _known(session.client, account_id):
                raise UsageError(f"ID: unknown account {account_id!r}")
        findings = audit(session.client, list(args.ids) or None, history=history)
    finally:
        if engine is not None:
            engine.dispose()
    for f in findings:
        print(f"{f.account}: {f.field}: stored {f.stored}, replayed {f.replayed}")
    scope = f"{len(args.ids)} account(s)" if args.ids else "all accounts"
    if args.db is not None:
        scope += " with their archived ledgers"
    if findings:
        print(f"audit: {len(findings)} finding(s) in {scope}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"audit clean: {scope}")
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------------

def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", default=None,
                   help="Redis URL; default $CCS_REDIS_URL, else the embedded redis-server")
    p.add_argument("--catalog", default=os.environ.get("CCS_CATALOG"),
                   help="catalog YAML (default $CCS_CATALOG)")
    p.add_argument("--data-dir", default=None,
                   help="folder of the embedded redis-server (default $CCS_DATA_DIR or .ccs-data)")


def _mutating(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--op-id", default=None,
                   help="idempotency key; a retry with the same key changes nothing "
                        "(default: a fresh one, printed)")


def _payment(p: argparse.ArgumentParser) -> None:
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--prepaid", action="store_true", help="prepaid: credit limit 0")
    kind.add_argument("--postpaid", action="store_true", help="postpaid: see --credit-limit")
    p.add_argument("--credit-limit", default=None, metavar="X",
                   help="postpaid credit limit, a decimal amount (default: unlimited)")


def register(subparsers) -> None:
    """Add `ccs accounts <verb>` to the root parser's subparsers."""
    top = subparsers.add_parser("accounts", help="administer accounts (create, top up, show, ...)",
                                description="Administer accounts in the Redis account store.")
    verbs = top.add_subparsers(dest="accounts_verb", metavar="VERB", required=True)

    def verb(name: str, handler, help_text: str, *, mutating: bool = False):
        p = verbs.add_parser(name, help=help_text, description=help_text)
        (_mutating if mutating else _common)(p)
        p.set_defaults(func=_runner(name, handler))
        return p

    p = verb("create", _create, "create an account", mutating=True)
    p.add_argument("id", help="account id")
    _payment(p)
    p.add_argument("--msisdn", action="append", default=[], metavar="N",
                   help="an MSISDN of the account (repeatable)")
    p.add_argument("--offer", action="append", default=[], metavar="O",
                   help="subscribe to this offer from today (repeatable)")
    p.add_argument("--bill-cycle-day", type=int, default=1, metavar="D", help="1..31, default 1")
    p.add_argument("--parent", default=None, help="parent account id (hierarchy)")
    p.add_argument("--currency", default=None, help="default: the catalog's")

    p = verb("show", _show, "show an account (by id or MSISDN)")
    p.add_argument("id", help="account id or MSISDN")
    p.add_argument("--json", action="store_true", help="JSON with money as decimal strings")

    p = verb("topup", _topup, "add money to the main balance", mutating=True)
    p.add_argument("id")
    p.add_argument("amount", metavar="AMOUNT", help="decimal amount, e.g. 10.00")
    p.add_argument("--currency", default=None, help="must be the account's (checked)")

    p = verb("adjust", _adjust, "correct the main balance by a signed amount", mutating=True)
    p.add_argument("id")
    p.add_argument("amount", metavar="AMOUNT", help="signed decimal amount, e.g. -2.50")
    p.add_argument("--reason", required=True, help="why (kept in the ledger)")

    for name, status, what in (("suspend", "suspended", "suspended"),
                               ("resume", "active", "resumed")):
        p = verb(name, _status_verb(status, what), f"set the account {status}", mutating=True)
        p.add_argument("id")
        p.add_argument("--reason", default="", help="why (kept in the ledger)")

    p = verb("convert", _convert, "change the payment type", mutating=True)
    p.add_argument("id")
    _payment(p)

    p = verb("sweep", _sweep, "release reservations past their validity + grace (cron)")
    p.add_argument("--grace", type=int, default=30, metavar="S",
                   help="seconds past validity before release (default %(default)s)")
    p.add_argument("--all", action="store_true",
                   help="also scan every account's reservations, not only the expiry index")

    p = verb("subscribe", _subscribe, "subscribe the account to an offer", mutating=True)
    p.add_argument("id")
    p.add_argument("offer")
    p.add_argument("--from", dest="from_date", default=None, metavar="DATE",
                   help="first day, local YYYY-MM-DD (default: today)")
    p.add_argument("--to", dest="to_date", default=None, metavar="DATE",
                   help="end day, exclusive (default: open)")

    p = verb("unsubscribe", _unsubscribe,
             "end the account's subscriptions to an offer on a date (exclusive)", mutating=True)
    p.add_argument("id")
    p.add_argument("offer")
    p.add_argument("--on", required=True, metavar="DATE",
                   help="local YYYY-MM-DD: the first day without the offer; a subscription "
                        "starting then or later is emptied")

    p = verb("ledger", _ledger, "list the account's ledger entries, oldest first")
    p.add_argument("id")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N entries")
    p.add_argument("--after", default="-", help="continue after this entry id")
    p.add_argument("--json", action="store_true")

    p = verb("audit", _audit, "replay ledgers against stored balances; exit 1 on any finding")
    p.add_argument("ids", nargs="*", metavar="ID", help="accounts to check (default: all)")
    p.add_argument("--db", default=None, metavar="URL",
                   help="also check the ledger archive in this bill-run database (sqlite:///FILE "
                        "or postgresql://...): it replays to each account's checkpoint")
