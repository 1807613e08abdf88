"""Accounts as people and JSON see them: money as decimal strings, times as ISO UTC.

Shared by `ccs accounts` (accounts/cli.py) and the gRPC Accounts servicer, so an operator reads
the same digits in both; nothing here touches Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rating.money import format_money


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
    """UTC seconds as "2026-11-10T12:00:00Z"; None stays None (no expiry)."""
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
