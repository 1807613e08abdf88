"""Pricing one online session and rating group as one CDR (online.md): pure, no I/O.

The node fixes a `Rating` at INITIAL (the CDR's start, service, destination, plan, rate
entry), a `Standing` at the first commit, and prices the session's cumulative usage with the
same scalar rating API as the bill run, so that the sum of its commits is the net charge of its
one CDR. Bucket coverage is decided by the store (Lua); this module prices each outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from rating import engine
from rating.compiler import (
    D_BASIS,
    D_SERVICE,
    D_TIER_HI,
    D_TIER_LO,
    DT_FROM,
    E_TIER_HI,
    E_TIER_LO,
    E_USAGE_MAX,
    T_UPTO,
)


@dataclass(frozen=True)
class Rating:
    """What a session and rating group is rated with, fixed at its INITIAL request."""

    service: str
    destination: str  # E.164 digits; empty for data
    start: int  # UTC s: the INITIAL's event time
    cycle: str  # the cycle containing `start` (its accumulators)
    tariff: str
    discounts: tuple[str, ...]  # the plan's discounts (those of other services are ignored)
    entry: int  # rate entry row
    dest_name: str  # destination name, "" when the destination is empty

    def to_json(self) -> dict:
        return {"svc": self.service, "dst": self.destination, "start": str(self.start),
                "cyc": self.cycle, "tar": self.tariff, "disc": list(self.discounts),
                "entry": str(self.entry), "dn": self.dest_name}

    @classmethod
    def from_json(cls, d: dict) -> Rating:
        return cls(d["svc"], d["dst"], int(d["start"]), d["cyc"], d["tar"],
                   tuple(d.get("disc") or ()), int(d["entry"]), d.get("dn") or "")


@dataclass(frozen=True)
class Standing:
    """Tier and discount standing read from the cycle's accumulators at the first commit."""

    tier: int
    discounts: tuple[tuple[str, int], ...]  # (discount name, basis) for the session's service

    def to_json(self) -> dict:
        return {"tier": str(self.tier), "disc": [[n, str(v)] for n, v in self.discounts]}

    @classmethod
    def from_json(cls, d: dict) -> Standing:
        return cls(int(d["tier"]), tuple((n, int(v)) for n, v in d.get("disc") or ()))


@dataclass(frozen=True)
class Totals:
    """A session and rating group's cumulative figures: used and rated units, units covered
    by buckets, and the money of its one CDR so far (micro-units)."""

    used: int = 0
    rated: int = 0
    covered: int = 0
    charge: int = 0
    discount: int = 0
    net: int = 0

    def to_json(self) -> dict:
        return {k: str(getattr(self, k)) for k in TOTAL_FIELDS}

    @classmethod
    def from_json(cls, d: dict) -> Totals:
        return cls(*(int(d.get(k, 0)) for k in TOTAL_FIELDS))


TOTAL_FIELDS = ("used", "rated", "covered", "charge", "discount", "net")


class NotRateable(Exception):
    """A usage that cannot be rated (result 5031); `reason` is the rating.md reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def tier_key(cycle: str, service: str) -> str:
    return f"{cycle}|tier|{service}"


def discount_key(cycle: str, name: str) -> str:
    return f"{cycle}|disc|{name}"


def open_rating(compiled, catalog, tariff: str | None, discounts: tuple[str, ...],
                service: str, destination: str, start: int, cycle: str) -> Rating:
    """The Rating of a new session and rating group; NotRateable names why it has none."""
    if tariff is None:
        raise NotRateable("no_offer", "no base offer is active at the session's start")
    if service not in catalog.services:
        raise NotRateable("unknown_service", f"service {service!r} is not in the catalog")
    res = engine.resolve(compiled, tariff, service, start, destination)
    if res.reason:
        reason = engine.REASONS[res.reason]
        what = {"malformed": f"destination {destination!r} is not E.164 digits",
                "unknown_service": f"tariff {tariff} has no rate for service {service}",
                "no_destination": f"no destination matches {destination!r}",
                "no_rate": f"tariff {tariff} has no {service} rate for this destination "
                           "and time band"}.get(reason, reason)
        raise NotRateable(reason, what)
    dname = compiled.destination_names[res.dest_name] if res.dest_name >= 0 else ""
    return Rating(service, destination, int(start), cycle, tariff, tuple(discounts),
                  res.entry, dname)


def standing_keys(compiled, rating: Rating) -> list[str]:
    """The counters that make the session's standing: its service's tier accumulator, then
    the accumulated basis of each plan discount on its service."""
    return [tier_key(rating.cycle, rating.service)] + [
        discount_key(rating.cycle, name) for name in _own_discounts(compiled, rating)]


def standing_of(compiled, rating: Rating, values: list[int]) -> Standing:
    """A Standing from the counter values read for `standing_keys` (in that order)."""
    names = _own_discounts(compiled, rating)
    return Standing(int(values[0]), tuple(zip(names, (int(v) for v in values[1:]), strict=True)))


def standing_ranges(compiled, rating: Rating, standing: Standing, span: int
                    ) -> list[tuple[int | None, int | None]]:
    """For each of `standing_keys`, the accumulated values [lo, hi) (None: unbounded) that
    price this request exactly as `standing` does, for at most `span` uncovered rated units:
    a discount's whole tier; the tier accumulator's whole range when the entry has one price,
    else the values that keep all `span` units inside the same tier (or the value itself).
    The store accepts the node's prices when the real accumulators lie in these ranges, and
    fixes the real values as the session's standing."""
    e = rating.entry
    lo_t, hi_t = int(compiled.entry_tab[e, E_TIER_LO]), int(compiled.entry_tab[e, E_TIER_HI])
    s = standing.tier
    if hi_t - lo_t <= 1:
        out: list[tuple[int | None, int | None]] = [(None, None)]
    else:
        prev, tier_range = 0, (s, s + 1)
        for t in range(lo_t, hi_t):
            upto = int(compiled.tier_tab[t, T_UPTO])
            last = t == hi_t - 1
            if last or s < upto:
                if last:
                    tier_range = (prev, None)
                elif s + span <= upto:
                    tier_range = (prev, upto - span + 1)
                break
            prev = upto
        out = [tier_range]
    for name, basis in standing.discounts:
        d = compiled.discount_id[name]
        lo_d, hi_d = int(compiled.disc_tab[d, D_TIER_LO]), int(compiled.disc_tab[d, D_TIER_HI])
        k = lo_d
        for j in range(lo_d + 1, hi_d):
            if int(compiled.dtier_tab[j, DT_FROM]) > basis:
                break
            k = j
        lo = None if k == lo_d else int(compiled.dtier_tab[k, DT_FROM])
        hi = None if k == hi_d - 1 else int(compiled.dtier_tab[k + 1, DT_FROM])
        out.append((lo, hi))
    return out


def _own_discounts(compiled, rating: Rating) -> list[str]:
    svc = compiled.service_id[rating.service]
    return [n for n in rating.discounts
            if int(compiled.disc_tab[compiled.discount_id[n], D_SERVICE]) == svc]


def usage_limit(compiled, rating: Rating) -> int:
    """The largest cumulative usage this session can report before its charge could leave
    the exact range (a CDR rated offline would be malformed:usage beyond it)."""
    return int(compiled.entry_tab[rating.entry, E_USAGE_MAX])


def rated(compiled, rating: Rating, used: int) -> int:
    return 0 if used == 0 else engine.rated_usage(compiled, rating.entry, used)


def totals(compiled, rating: Rating, standing: Standing, used: int, covered: int) -> Totals:
    """The session's one CDR with cumulative usage `used` of which `covered` rated units came
    from buckets: rated once on the total, no connect fee when any unit was covered."""
    ru = rated(compiled, rating, used)
    if not 0 <= covered <= ru:
        raise ValueError(f"covered: {covered} is outside 0..{ru}")
    if ru == 0:
        return Totals(used, 0, 0, 0, 0, 0)
    disc = [(compiled.discount_id[n], v) for n, v in standing.discounts]
    try:
        p = engine.price(compiled, rating.entry, ru - covered, standing.tier, disc,
                         connect_fee=covered == 0)
    except ValueError as exc:  # an accumulator would reach 2^53: `overflow`, as offline
        raise NotRateable("overflow", str(exc)) from None
    return Totals(used, ru, covered, p.charge, p.discount, p.net)


def counter_deltas(compiled, rating: Rating, before: Totals, after: Totals) -> dict[str, int]:
    """What a commit adds to the cycle's accumulators: uncovered rated units to the tier and
    usage-basis discounts, gross charge to charge-basis discounts (billing.md)."""
    unc = (after.rated - after.covered) - (before.rated - before.covered)
    out = {tier_key(rating.cycle, rating.service): unc}
    for name in _own_discounts(compiled, rating):
        basis = int(compiled.disc_tab[compiled.discount_id[name], D_BASIS])
        out[discount_key(rating.cycle, name)] = unc if basis == 0 else after.charge - before.charge
    return {k: v for k, v in out.items() if v}


def hold_money(compiled, rating: Rating, standing: Standing, now: Totals, more: int,
               covered: int) -> int:
    """Money to hold for `more` units after `now` of which `covered` rated units are held on
    buckets: net(U + R) - net(U) (online.md)."""
    after = totals(compiled, rating, standing, now.used + more, now.covered + covered)
    return max(0, after.net - now.net)


def largest_grant(compiled, rating: Rating, standing: Standing, now: Totals, requested: int,
                  free_units: int, money: int | None) -> tuple[int, int, int]:
    """The largest grant of at most `requested` more units whose hold fits `money` (None:
    unlimited), with `free_units` bucket units free for it: (units, covered, money held).
    Holds grow with the units, so a binary search finds the largest."""
    limit = usage_limit(compiled, rating) - now.used
    requested = max(0, min(requested, limit))

    def cost(units: int) -> tuple[int, int]:
        dr = rated(compiled, rating, now.used + units) - now.rated
        cov = min(free_units, dr)
        return cov, hold_money(compiled, rating, standing, now, units, cov)

    cov, m = cost(requested)
    if money is None or m <= money:
        return requested, cov, m
    lo, hi = 0, requested  # cost(lo) fits, cost(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid)[1] <= money:
            lo = mid
        else:
            hi = mid
    cov, m = cost(lo)
    return lo, cov, m
