"""Which offers rate a usage: the subscriptions active at its start, as a rating plan.

One rule for the online node and the bill run (billing.md): the base offer active at the
local date of the start gives the tariff; its discounts and those of active add-ons apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from rating.cycles import local_date


@dataclass(frozen=True)
class ActivePlan:
    """The plan of a start instant: the tariff (None: no base offer, reason `no_offer`), the
    discounts in offer order (each once), and the active offers' names."""

    tariff: str | None
    discounts: tuple[str, ...]
    offers: tuple[str, ...]


def active_on(sub: dict, day: str) -> bool:
    """A stored subscription {offer, from, to?} is active on local ISO date `day`
    (`from` inclusive, `to` exclusive; from == to is an empty subscription)."""
    return sub["from"] <= day and (sub.get("to") is None or day < sub["to"])


def plan_at(catalog, subscriptions: list[dict], start_utc: int) -> ActivePlan:
    """The plan for a usage starting at `start_utc` (UTC s) under the stored subscriptions
    (the account hash's `subs` list, in subscription order)."""
    day = local_date(start_utc, catalog.timezone).isoformat()
    tariff = None
    discounts: list[str] = []
    offers: list[str] = []
    for sub in subscriptions:
        if not active_on(sub, day):
            continue
        offer = catalog.offers.get(sub["offer"])
        if offer is None:  # an offer removed from the catalog rates nothing
            continue
        offers.append(offer.name)
        if offer.tariff is not None and tariff is None:
            tariff = offer.tariff
        for name in offer.discounts:
            if name not in discounts:
                discounts.append(name)
    return ActivePlan(tariff, tuple(discounts), tuple(offers))
