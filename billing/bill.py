"""The arithmetic of one bill (billing.md "Fees" and "The bill of an account and cycle"): pure.

Inputs are micro-units (int) and local dates; every line is rounded once to
`billing.decimals` (half_up) and every total is a sum of printed lines, so the bill adds up to
the cent whatever it holds. No I/O: the bill run gathers the figures, this module only counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from rating.cycles import cycle_dates
from rating.money import format_money, round_div, round_micro

LINE_KINDS = ("usage", "recurring", "one_time", "adjustment", "account_discount", "tax")
BILL_KEYS = ("account", "account_discount", "currency", "cycle", "cycle_days", "due_date",
             "lines", "period_end", "period_start", "status", "subtotal", "tax", "total",
             "type", "amount_due")


@dataclass(frozen=True)
class Period:
    """A cycle of an account: local dates `first` (inclusive) and `after` (exclusive)."""

    cycle: str
    first: date
    after: date

    @classmethod
    def of(cls, cycle: str, bill_cycle_day: int) -> Period:
        first, after = cycle_dates(cycle, bill_cycle_day)
        return cls(cycle, first, after)

    @property
    def days(self) -> int:
        return (self.after - self.first).days

    @property
    def last(self) -> date:
        return self.after - timedelta(days=1)


@dataclass(frozen=True)
class Line:
    kind: str
    name: str
    account: str  # '' = the bill's owner (or a bill-level line), else the child's id
    amount: int  # micro-units, already rounded to the bill's decimals


@dataclass
class Section:
    """Lines 1-3 of one account (the owner or a child) before rounding."""

    account: str
    usage: dict[str, int] = field(default_factory=dict)  # service -> sum of net_charge (micro)
    subscriptions: list[dict] = field(default_factory=list)  # stored {offer, from, to?}, in order
    adjustments: dict[str, int] = field(default_factory=dict)  # line name -> micro


def _day(value: str) -> date:
    return date.fromisoformat(value)


def active_days(sub: dict, period: Period) -> int:
    """Local calendar days of `period` on which the subscription {from, to?} is active
    (`from` inclusive, `to` exclusive; subscribed and cancelled on one day: 0)."""
    lo = max(_day(sub["from"]), period.first)
    hi = period.after if sub.get("to") is None else min(_day(sub["to"]), period.after)
    return max(0, (hi - lo).days)


def recurring_fee(recurring: int, days: int, cycle_days: int, decimals: int) -> int:
    """round(recurring * active_days / cycle_days) in bill decimals, half_up."""
    return round_div(recurring * days, cycle_days, decimals, "half_up")


def _fees(catalog, section: Section, period: Period):
    """Every fee of the section's subscriptions in `period`, in subscription order, recurring
    before one-time: (subscription key '<offer>@<from>', kind, line name, fee name, amount).
    The key gets '#<position>' (1-based) when an earlier subscription has the same offer and
    `from` (an offer cancelled on its first day and taken again): one key per subscription."""
    dec = catalog.billing.decimals
    seen: set[str] = set()
    for position, sub in enumerate(section.subscriptions, start=1):
        offer = catalog.offers.get(sub["offer"])
        key = f"{sub['offer']}@{sub['from']}"
        if key in seen:
            key = f"{key}#{position}"
        seen.add(f"{sub['offer']}@{sub['from']}")
        if offer is None:
            continue  # an offer removed from the catalog bills nothing
        days = active_days(sub, period)
        if offer.recurring and days > 0:
            yield key, "recurring", offer.name, "recurring", recurring_fee(
                offer.recurring, days, period.days, dec)
        if period.first <= _day(sub["from"]) < period.after:
            for fee in offer.one_time:
                yield key, "one_time", f"{offer.name}:{fee.name}", fee.name, round_micro(
                    fee.amount, dec)


def section_lines(catalog, section: Section, period: Period, label: str) -> list[Line]:
    """Lines 1-3 of one account: usage by service name, recurring per subscription (in
    subscription order), one-time fees, adjustments by name; each rounded once. `label` is
    the lines' `account` field."""
    dec = catalog.billing.decimals
    lines = [Line("usage", svc, label, round_micro(section.usage[svc], dec))
             for svc in sorted(section.usage)]
    fees = list(_fees(catalog, section, period))
    lines.extend(Line(k, name, label, amt) for _, k, name, _, amt in fees if k == "recurring")
    lines.extend(Line(k, name, label, amt) for _, k, name, _, amt in fees if k == "one_time")
    lines.extend(Line("adjustment", name, label, round_micro(section.adjustments[name], dec))
                 for name in sorted(section.adjustments))
    return lines


def account_discount_names(catalog, subscriptions: list[dict], period: Period) -> list[str]:
    """Distinct account discounts of the offers active on any day of `period`, in offer
    (subscription) order."""
    names: list[str] = []
    for sub in subscriptions:
        offer = catalog.offers.get(sub["offer"])
        if offer is None or offer.account_discount is None or active_days(sub, period) == 0:
            continue
        if offer.account_discount not in names:
            names.append(offer.account_discount)
    return names


def _percent_of(amount: int, percent, decimals: int) -> int:
    """round(amount * percent / 100) for a Fraction percent, half_up (away from zero)."""
    return round_div(amount * percent.numerator, percent.denominator * 100, decimals, "half_up")


def bill_totals(catalog, lines: list[Line], discount_names: list[str]) -> tuple[list[Line], dict]:
    """Lines 4-7: the account discount and tax lines, and the totals (micro-units)."""
    dec = catalog.billing.decimals
    subtotal = sum(line.amount for line in lines)
    extra: list[Line] = []
    for name in discount_names:
        d = catalog.account_discounts.get(name)
        if d is None or subtotal < d.min_total:
            continue
        amount = _percent_of(subtotal, d.percent, dec)
        if d.cap is not None:
            amount = min(amount, round_micro(d.cap, dec))
        if amount > 0:
            extra.append(Line("account_discount", name, "", -amount))
    discount = sum(line.amount for line in extra)
    tax = 0
    if catalog.tax is not None:
        tax = _percent_of(subtotal + discount, catalog.tax.percent, dec)
        extra.append(Line("tax", catalog.tax.name, "", tax))
    return extra, {"subtotal": subtotal, "account_discount": discount, "tax": tax,
                   "total": subtotal + discount + tax}


def build_bill(catalog, *, owner: Section, children: list[Section], period: Period,
               status: str, prepaid: bool, currency: str, paid_from_balance: int = 0) -> dict:
    """The bill of `owner` (with a section per child, by child id) as the JSON export holds it.
    `paid_from_balance` (micro, in bill decimals): what of an invoice's lines was already
    taken from prepaid balances (fees debited while the account was prepaid, the online usage
    of a prepaid child): not due again; shown as `paid_from_balance` when not zero."""
    dec = catalog.billing.decimals
    lines = section_lines(catalog, owner, period, "")
    for child in sorted(children, key=lambda s: s.account):
        lines.extend(section_lines(catalog, child, period, child.account))
    extra, totals = bill_totals(catalog, lines,
                                account_discount_names(catalog, owner.subscriptions, period))
    lines.extend(extra)
    due = period.last + timedelta(days=catalog.billing.due_days)

    def money(micro: int) -> str:
        return format_money(micro, dec)

    doc = {
        "account": owner.account,
        "cycle": period.cycle,
        "status": status,
        "type": "statement" if prepaid else "invoice",
        "currency": currency,
        "period_start": period.first.isoformat(),
        "period_end": period.last.isoformat(),
        "cycle_days": period.days,
        "due_date": due.isoformat(),
        "lines": [{"kind": ln.kind, "name": ln.name, "account": ln.account,
                   "amount": money(ln.amount)} for ln in lines],
        "subtotal": money(totals["subtotal"]),
        "account_discount": money(totals["account_discount"]),
        "tax": money(totals["tax"]),
        "total": money(totals["total"]),
        "amount_due": money(0 if prepaid else totals["total"] - paid_from_balance),
    }
    if paid_from_balance and not prepaid:
        doc["paid_from_balance"] = money(paid_from_balance)
    return doc


def fee_lines(catalog, section: Section, period: Period) -> list[tuple[str, str, int]]:
    """The fees a prepaid account pays from its balance: (subscription key '<offer>@<from>',
    fee: 'recurring' or the one-time fee's name, amount micro), amounts > 0 only."""
    return [(key, fee, amt) for key, _, _, fee, amt in _fees(catalog, section, period) if amt > 0]
