"""A plain-Python reference rater, written from docs/spec rating.md, for property tests.

Works from the `Catalog` dataclasses (never the compiled arrays), with exact Fractions,
zoneinfo for local time and naive loops: slow on purpose, and easy to check by reading.
"""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

COLUMNS = ("cdr_id", "account", "service", "start", "usage", "destination")
_START = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2})(?:(\d{2})|:(\d{2}))?)$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BOUND = 2**53  # a rated usage, and a charge in micro-units, stay below it


def start_instant(text) -> Fraction | None:
    """The exact UTC instant (epoch seconds, a Fraction) of an ISO 8601 time with offset or Z,
    fraction of a second included; None when malformed or naive."""
    m = _START.match(text) if isinstance(text, str) else None
    if not m:
        return None
    y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
    if not 2 <= y <= 9998:  # the years ccs accepts (docs/cdr-files.md)
        return None
    offset = 0
    if not m.group(8):
        oh, om = int(m.group(10)), int(m.group(11) or m.group(12) or 0)
        if oh > 23 or om > 59:
            return None
        offset = (oh * 60 + om) * (-1 if m.group(9) == "-" else 1)
    try:
        t = datetime(y, mo, d, hh, mi, ss, tzinfo=timezone(timedelta(minutes=offset)))
    except ValueError:
        return None
    fraction = Fraction(int(m.group(7)), 10 ** len(m.group(7))) if m.group(7) else Fraction(0)
    return (t - _EPOCH) // timedelta(seconds=1) + fraction


def parse_start(text) -> int | None:
    """The whole UTC epoch second in which an ISO 8601 time with offset or Z falls (bands and
    cycles are taken there: their edges are whole seconds); None when malformed or naive."""
    t = start_instant(text)
    return None if t is None else math.floor(t)


def _digits(text, min_len: int) -> bool:
    if not isinstance(text, str) or not min_len <= len(text) <= 18:
        return False
    return all(c in "0123456789" for c in text)


def malformed_column(row: dict) -> str | None:
    """The first column (in COLUMNS order) whose value is malformed, or None."""
    for col in ("cdr_id", "account", "service"):
        if not row.get(col):
            return col
    if parse_start(row.get("start")) is None:
        return "start"
    if not _digits(row.get("usage"), 1):
        return "usage"
    if not _digits(row.get("destination"), 0):
        return "destination"
    return None


def round_exact(x: Fraction, decimals: int, method: str) -> int:
    """Round an exact amount of micro-units to `decimals` places; returns micro-units."""
    step = 10 ** (6 - decimals)
    q = Fraction(x) / step
    if method == "half_up":
        n = math.floor(abs(q) + Fraction(1, 2))
        n = n if q >= 0 else -n
    elif method == "up":
        n = math.ceil(q)
    elif method == "down":
        n = math.trunc(q)
    else:
        raise ValueError(method)
    return n * step


def cycle_key(epoch: int, tz: ZoneInfo, bill_cycle_day: int) -> tuple[int, int]:
    """(year, month) of the bill cycle containing `epoch`, from local calendar dates."""
    local = datetime.fromtimestamp(epoch, tz).date()
    y, m = local.year, local.month
    if local < date(y, m, min(bill_cycle_day, calendar.monthrange(y, m)[1])):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return y, m


def reference_rate(catalog, rows: list[dict], accounts: dict, bill_cycle_day: int | None = None) -> list[dict]:
    """Rate `rows` (dicts of the CDR columns, strings) for `accounts` (name -> Plan).

    Returns one dict per row, same order: status, reason, destination_name, band (names or
    ""), rated_usage, charge, discount, net_charge (ints, micro-units; 0 unless rated).
    Destination name and band are reported for rated rows and for `no_rate` rejections only.
    """
    tz = ZoneInfo(catalog.timezone)
    dec, method = catalog.rounding.decimals, catalog.rounding.method
    out = []
    seen = set()
    todo = []  # rows that reach pricing: (account, cycle, start, cdr_id, index, entry, rated)
    for i, row in enumerate(rows):
        res = {"status": "rejected", "reason": "", "destination_name": "", "band": "",
               "rated_usage": 0, "charge": 0, "discount": 0, "net_charge": 0}
        out.append(res)
        bad = malformed_column(row)
        if bad:
            res["reason"] = f"malformed:{bad}"
            continue
        if row["cdr_id"] in seen:
            res["status"] = res["reason"] = "duplicate"
            continue
        seen.add(row["cdr_id"])
        plan = accounts.get(row["account"])
        if plan is None:
            res["reason"] = "unknown_account"
            continue
        entries = catalog.tariffs[plan.tariff].get(row["service"])
        if entries is None:
            res["reason"] = "unknown_service"
            continue
        number = row["destination"]
        dest_name = None
        if number:
            best = -1
            for name, prefixes in catalog.destinations.items():
                for p in prefixes:
                    if number.startswith(p) and len(p) > best:
                        best, dest_name = len(p), name
            if dest_name is None:
                res["reason"] = "no_destination"
                continue
        start = parse_start(row["start"])
        local = datetime.fromtimestamp(start, tz)
        minute = local.hour * 60 + local.minute
        band = None
        for b in catalog.time_bands:
            if local.weekday() in b.days and b.start_minute <= minute < b.end_minute:
                band = b.name
                break
        entry = None
        for e in entries:
            if (e.destination is None or e.destination == dest_name) and (e.band is None or e.band == band):
                entry = e
                break
        res["destination_name"] = dest_name or ""
        res["band"] = band or ""
        if entry is None:
            res["reason"] = "no_rate"
            continue
        usage = int(row["usage"])
        if usage == 0:
            rated = 0
        elif usage <= entry.first:
            rated = entry.first
        else:
            rated = entry.first + math.ceil(Fraction(usage - entry.first, entry.next)) * entry.next
        if rated > 0 and (rated >= BOUND or round_exact(
                entry.connect_fee + Fraction(max(t.price for t in entry.tiers) * rated, entry.per),
                dec, method) >= BOUND):
            # docs/catalog.md "Limits": the rated usage, and the charge at the entry's highest
            # price with the connect fee, must stay below 2^53 (micro-)units
            res.update(reason="malformed:usage", destination_name="", band="")
            continue
        cycle = cycle_key(start, tz, bill_cycle_day) if bill_cycle_day else None
        todo.append((row["account"], cycle, start_instant(row["start"]), row["cdr_id"], i, entry, rated))

    # Accumulate per account (and cycle) in order of the exact start time, ties by cdr_id.
    tier_used: dict = {}  # (account, cycle, service) -> rated usage so far
    basis: dict = {}  # (account, cycle, discount) -> usage or charge so far
    for account, cycle, _start, _cid, i, entry, rated in sorted(todo, key=lambda t: t[:4]):
        service = rows[i]["service"]
        before = tier_used.get((account, cycle, service), 0)
        if rated == 0:
            charge = 0
        else:
            money = Fraction(0)
            lo = 0
            for tier in entry.tiers:
                hi = tier.upto if tier.upto is not None else before + rated
                part = max(0, min(hi, before + rated) - max(lo, before))
                money += Fraction(tier.price * part, entry.per)
                lo = hi if tier.upto is not None else lo
            charge = round_exact(entry.connect_fee + money, dec, method)
        discount = 0
        grown = {}  # the bases after the CDR
        for name in accounts[account].discounts:
            d = catalog.discounts[name]
            if d.service != service:
                continue
            acc = basis.get((account, cycle, name), 0)
            percent = Fraction(0)
            for t in d.tiers:
                if t.start <= acc:
                    percent = t.percent
            discount += round_exact(charge * percent / 100, dec, method)
            grown[(account, cycle, name)] = acc + (rated if d.basis == "usage" else charge)
        if max([before + rated, *grown.values()]) >= BOUND:
            # docs/catalog.md "Limits": no standing (tier usage, discount basis) reaches 2^53;
            # the CDR that would bring one there is rejected and accumulates nothing
            out[i].update(reason="overflow", destination_name="", band="")
            continue
        tier_used[(account, cycle, service)] = before + rated
        basis.update(grown)
        # Several discounts of one service each take their own rounded share; rating.md does
        # not say what happens past 100% in total: ccs never lets a CDR's net go below zero.
        discount = min(discount, charge)
        out[i].update(status="rated", rated_usage=rated, charge=charge,
                      discount=discount, net_charge=charge - discount)
    return out
