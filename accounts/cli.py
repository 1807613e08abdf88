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
from datetime import UTC, date, datetime

import redis

from accounts.errors import (
    AccountError,
    AccountExists,
    CurrencyMismatch,
    InvalidState,
    OpIdConflict,
    UnknownAccount,
)
from rating.money import MoneyError, format_money, parse_money

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# what the domain refuses (exit 1); every other AccountError is bad input (exit 2)
_REFUSALS = (UnknownAccount, AccountExists, OpIdConflict, InvalidState, CurrencyMismatch)


class UsageError(Exception):
    """Bad command-line input (exit 2); the message names the argument."""


def money_text(micro: int) -> str:
    """A decimal string with trailing zeros trimmed to at least 2 decimals: "10.00", "0.0012".

    The one display form of money at the edges of the accounts layer (CLI and gRPC), so an
    operator sees the same digits in both; every micro-unit is kept.
    """
    text = format_money(micro, 6)
    whole, frac = text.split(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def utc_text(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_unit(catalog, service: str | None) -> str:
    """The usage unit of a service (seconds, bytes, events, ...), "units" when unknown."""
    services = getattr(catalog, "services", None) or {}
    found = services.get(service) if service else None
    return found.unit if found is not None else "units"


def account_to_dict(account, now: int, catalog=None) -> dict:
    """The account as JSON-ready data: money as decimal strings, unit buckets as integers."""

    def bucket_amount(bucket, value: int):
        return money_text(value) if bucket.kind == "money" else int(value)

    available = account.available(now)
    return {
        "id": account.id,
        "currency": account.currency,
        "status": account.status,
        "payment_type": account.payment_type,
        "credit_limit": None if account.credit_limit is None else money_text(account.credit_limit),
        "unlimited": account.credit_limit is None,
        "balance": money_text(account.balance),
        "reserved": money_text(account.reserved),
        "available": None if available is None else money_text(available),
        "bill_cycle_day": account.bill_cycle_day,
        "parent": account.parent,
        "msisdns": list(account.msisdns),
        "subscriptions": [
            {"offer": s.offer, "from": s.from_date, "to": s.to_date} for s in account.subscriptions
        ],
        "buckets": [
            {
                "id": b.id,
                "kind": b.kind,
                "service": b.service,
                "destinations": None if b.destinations is None else list(b.destinations),
                "unit": account.currency if b.kind == "money" else service_unit(catalog, b.service),
                "remaining": bucket_amount(b, b.remaining),
                "initial": bucket_amount(b, b.initial),
                "reserved": bucket_amount(b, b.reserved),
                "valid_from": utc_text(b.valid_from),
                "valid_to": utc_text(b.valid_to),
                "priority": b.priority,
                "source": b.source,
            }
            for b in account.buckets
        ],
        "reservations": [
            {
                "session": r.session,
                "service": r.service,
                "money": money_text(r.money),
                "units": dict(r.units),
                "expires_at": utc_text(r.expires_at),
            }
            for r in account.reservations
        ],
        "counters": dict(account.counters),
    }


_LEDGER_MONEY = ("balance", "reserved", "credit_limit")
_BUCKET_MONEY = ("remaining", "initial", "reserved")


def ledger_to_dict(entry: dict) -> dict:
    """A store ledger entry for people and JSON: ``time`` in ISO UTC, and the money deltas
    (balance, reserved, credit limit, also inside ``create``, and new money buckets) as
    decimal strings. Deltas of existing buckets stay integers in the bucket's own unit
    (micro-units for a money bucket): the entry does not say the bucket's kind."""

    def money_fields(d: dict) -> dict:
        out = dict(d)
        for key in _LEDGER_MONEY:
            if key in out:
                value = out[key]
                out[key] = "unlimited" if value is None else money_text(value)
        return out

    rest = {k: v for k, v in entry.items() if k not in ("id", "op", "op_id", "ts")}
    out = {"id": entry["id"], "op": entry["op"], "op_id": entry["op_id"],
           "time": utc_text(entry.get("ts")), **money_fields(rest)}
    if isinstance(out.get("create"), dict):
        out["create"] = money_fields(out["create"])
    if isinstance(out.get("new_buckets"), dict):
        out["new_buckets"] = {
            bid: {k: money_text(v) if b.get("kind") == "money" and k in _BUCKET_MONEY else v
                  for k, v in b.items()}
            for bid, b in out["new_buckets"].items()
        }
    return out


def account_text(account, now: int, catalog=None) -> str:
    """A readable multi-line summary of an account for `ccs accounts show`."""
    d = account_to_dict(account, now, catalog)
    cur = d["currency"]
    limit = "unlimited" if d["unlimited"] else f"{d['credit_limit']} {cur}"
    available = "unlimited" if d["available"] is None else f"{d['available']} {cur}"
    lines = [
        f"account         {d['id']}",
        f"status          {d['status']}",
        f"payment type    {d['payment_type']}",
        f"credit limit    {limit}",
        f"balance         {d['balance']} {cur}",
        f"reserved        {d['reserved']} {cur}",
        f"available       {available}",
        f"bill cycle day  {d['bill_cycle_day']}",
        f"parent          {d['parent'] or '-'}",
        f"msisdns         {', '.join(d['msisdns']) or '-'}",
    ]
    lines.append(f"subscriptions   {'' if d['subscriptions'] else '-'}".rstrip())
    for s in d["subscriptions"]:
        lines.append(f"  {s['offer']}  from {s['from']}  to {s['to'] or 'open'}")
    lines.append(f"buckets         {'' if d['buckets'] else '-'}".rstrip())
    for b in d["buckets"]:
        where = b["service"] or "any service"
        if b["destinations"]:
            where += " to " + ",".join(b["destinations"])
        lines.append(
            f"  {b['id']}  {b['kind']}  {b['remaining']}/{b['initial']} {b['unit']}"
            f" (reserved {b['reserved']})  {where}  valid {b['valid_from']} .. "
            f"{b['valid_to'] or 'no expiry'}  priority {b['priority']}  source {b['source']}"
        )
    lines.append(f"reservations    {'' if d['reservations'] else '-'}".rstrip())
    for r in d["reservations"]:
        held = ", ".join(f"{k}={v}" for k, v in sorted(r["units"].items())) or "no units"
        lines.append(f"  {r['session']}  {r['service'] or '-'}  money {r['money']} {cur}"
                     f"  units {held}  expires {r['expires_at']}")
    lines.append(f"counters        {'' if d['counters'] else '-'}".rstrip())
    for key, value in sorted(d["counters"].items()):
        lines.append(f"  {key} = {value}")
    return "\n".join(lines)


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


def _runner(verb: str, handler):
    def run(args) -> int:
        session = _Session(args)
        try:
            return handler(session, args)
        except _REFUSALS as exc:
            print(f"ccs accounts {verb}: refused: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        except (UsageError, MoneyError, AccountError) as exc:
            # any other AccountError is input the store validated: a bad id, MSISDN, date, ...
            print(f"ccs accounts {verb}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            print(f"ccs accounts {verb}: Redis unavailable: {exc}", file=sys.stderr)
            return EXIT_REFUSED
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


def _iso_date(text: str | None, field: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise UsageError(f"{field}: expected a date YYYY-MM-DD, got {text!r}") from exc


def _op_id(args) -> str:
    """The operator's --op-id, else a fresh one that is printed so the command can be retried."""
    if args.op_id:
        return args.op_id
    args.op_id = str(uuid.uuid4())
    print(f"op-id: {args.op_id} (generated; retry with --op-id {args.op_id})")
    return args.op_id


def _now() -> int:
    return int(time.time())


def _report(result, what: str) -> int:
    """Print the outcome of a mutating store call; a domain refusal exits 1."""
    if result.code != "ok":
        detail = ", ".join(f"{k}={v}" for k, v in sorted(result.detail.items()))
        print(f"refused: {result.code}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        return EXIT_REFUSED
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
    limit = _credit_limit(args)
    if not 1 <= args.bill_cycle_day <= 31:
        raise UsageError(f"--bill-cycle-day: expected 1..31, got {args.bill_cycle_day}")
    op_id = _op_id(args)
    store = session.store
    # create_account answers a retried op id with the account; say that nothing changed
    existed = _exists(store, args.id)
    account = store.create_account(
        args.id, credit_limit=limit, currency=args.currency, msisdns=tuple(args.msisdn),
        bill_cycle_day=args.bill_cycle_day, parent=args.parent, offers=tuple(args.offer),
        op_id=op_id)
    if existed:
        print(f"already applied (op-id {op_id}): nothing changed")
    limit_text = "unlimited" if account.credit_limit is None else money_text(account.credit_limit)
    print(f"{account.id}: created; {account.payment_type}, currency {account.currency}, "
          f"credit limit {limit_text}, balance {money_text(account.balance)}")
    return EXIT_OK


def _exists(store, account_id: str) -> bool:
    try:
        store.get_account(account_id)
    except UnknownAccount:
        return False
    return True


def _show(session, args) -> int:
    store = session.store
    account = store.get_account(store.resolve(args.id))
    if args.json:
        print(json.dumps(account_to_dict(account, _now(), session.catalog), indent=2))
    else:
        print(account_text(account, _now(), session.catalog))
    return EXIT_OK


def _topup(session, args) -> int:
    amount = _amount(args.amount, "amount")
    op_id = _op_id(args)
    result = session.store.topup(args.id, amount, op_id=op_id, currency=args.currency)
    return _report(result, f"topped up {money_text(amount)}")


def _adjust(session, args) -> int:
    amount = _amount(args.amount, "amount", allow_negative=True)
    if not args.reason.strip():
        raise UsageError("--reason: required, and not blank")
    op_id = _op_id(args)
    result = session.store.adjust(args.id, amount, op_id=op_id, reason=args.reason)
    return _report(result, f"adjusted by {money_text(amount)} ({args.reason})")


def _status_verb(status: str, what: str):
    def handler(session, args) -> int:
        op_id = _op_id(args)
        result = session.store.set_status(args.id, status, op_id=op_id, reason=args.reason or "")
        return _report(result, what)

    return handler


def _convert(session, args) -> int:
    limit = _credit_limit(args)
    op_id = _op_id(args)
    result = session.store.change_payment_type(args.id, limit, op_id=op_id)
    return _report(result, "converted to " + ("prepaid" if limit == 0 else "postpaid"))


def _subscribe(session, args) -> int:
    from_date = _iso_date(args.from_date, "--from")
    to_date = _iso_date(args.to_date, "--to")
    if from_date and to_date and to_date <= from_date:
        raise UsageError(f"--to: {to_date} must be after --from {from_date} (to is exclusive)")
    op_id = _op_id(args)
    result = session.store.subscribe(args.id, args.offer, op_id=op_id, from_date=from_date,
                                     to_date=to_date)
    return _report(result, f"subscribed to {args.offer}")


def _ledger(session, args) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit: expected a positive count, got {args.limit}")
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


def _audit(session, args) -> int:
    from accounts.audit import audit

    findings = audit(session.client, list(args.ids) or None)
    for f in findings:
        print(f"{f.account}: {f.field}: stored {f.stored}, replayed {f.replayed}")
    scope = f"{len(args.ids)} account(s)" if args.ids else "all accounts"
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

    p = verb("subscribe", _subscribe, "subscribe the account to an offer", mutating=True)
    p.add_argument("id")
    p.add_argument("offer")
    p.add_argument("--from", dest="from_date", default=None, metavar="DATE",
                   help="first day, local YYYY-MM-DD (default: today)")
    p.add_argument("--to", dest="to_date", default=None, metavar="DATE",
                   help="end day, exclusive (default: open)")

    p = verb("ledger", _ledger, "list the account's ledger entries, oldest first")
    p.add_argument("id")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N entries")
    p.add_argument("--after", default="-", help="continue after this entry id")
    p.add_argument("--json", action="store_true")

    p = verb("audit", _audit, "replay ledgers against stored balances; exit 1 on any finding")
    p.add_argument("ids", nargs="*", metavar="ID", help="accounts to check (default: all)")
