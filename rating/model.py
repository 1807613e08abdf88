"""The validated catalog as plain, immutable Python objects.

`rating.catalog` builds these from YAML (and refuses a catalog with any error); the compiler
turns them into arrays; accounts and billing read offers, fees and billing settings from them.
All money fields are int micro-units; all percents are exact `fractions.Fraction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

# Services known without declaration, with their usage unit and default online quota.
BUILTIN_SERVICES = {
    "voice": ("seconds", 300),
    "sms": ("events", 1),
    "data": ("bytes", 10 * 1048576),
}
# A service a tariff names without a `services:` entry: whole units, one granted at a time.
IMPLICIT_SERVICE = ("units", 1)


@dataclass(frozen=True)
class Rounding:
    decimals: int = 4
    method: str = "half_up"  # half_up | up | down


@dataclass(frozen=True)
class TimeBand:
    name: str
    days: tuple[int, ...]  # 0 = monday .. 6 = sunday; all seven when absent in YAML
    start_minute: int  # inclusive, 0..1439
    end_minute: int  # exclusive, 1..1440


@dataclass(frozen=True)
class Tier:
    upto: int | None  # accumulated rated usage bound (exclusive upper edge); None = last tier
    price: int  # micro-units per `per` units


@dataclass(frozen=True)
class RateEntry:
    destination: str | None  # destination name, None = any
    band: str | None  # time band name, None = any
    per: int
    first: int  # increments[0]
    next: int  # increments[1]
    connect_fee: int  # micro-units
    tiers: tuple[Tier, ...]  # a flat price is one tier with upto=None


@dataclass(frozen=True)
class Service:
    name: str
    unit: str  # seconds | events | bytes | ...
    default_quota: int  # units granted online when a request asks for none


@dataclass(frozen=True)
class DiscountTier:
    start: int  # `from` in YAML: basis accumulated (units, or micro-units for basis=charge)
    percent: Fraction


@dataclass(frozen=True)
class Discount:
    name: str
    service: str
    basis: str  # usage | charge
    tiers: tuple[DiscountTier, ...]


@dataclass(frozen=True)
class OneTimeFee:
    name: str
    amount: int


@dataclass(frozen=True)
class Allowance:
    name: str
    service: str
    units: int
    destinations: tuple[str, ...] | None  # None = any destination


@dataclass(frozen=True)
class Gift:
    service: str | None  # a unit gift names a service ...
    units: int | None
    money: int | None  # ... a money gift has an amount
    valid_days: int


@dataclass(frozen=True)
class Promotion:
    on: str  # subscribe | topup
    gift: Gift
    min_amount: int = 0  # for on=topup: the top-up must be >= this


@dataclass(frozen=True)
class Offer:
    name: str
    tariff: str | None  # None: an add-on offer
    discounts: tuple[str, ...] = ()
    recurring: int = 0
    one_time: tuple[OneTimeFee, ...] = ()
    allowances: tuple[Allowance, ...] = ()
    account_discount: str | None = None
    promotions: tuple[Promotion, ...] = ()


@dataclass(frozen=True)
class AccountDiscount:
    name: str
    min_total: int
    percent: Fraction
    cap: int | None


@dataclass(frozen=True)
class Tax:
    name: str
    percent: Fraction


@dataclass(frozen=True)
class BillingSettings:
    decimals: int = 2
    due_days: int = 14
    grace_days: int = 10


@dataclass(frozen=True)
class Catalog:
    currency: str
    timezone: str
    rounding: Rounding
    destinations: dict[str, tuple[str, ...]]  # name -> prefixes, in file order
    time_bands: tuple[TimeBand, ...]  # in file order; the first match wins
    tariffs: dict[str, dict[str, tuple[RateEntry, ...]]]  # tariff -> service -> entries
    discounts: dict[str, Discount]
    services: dict[str, Service]  # builtins plus any declared in `services:`
    offers: dict[str, Offer] = field(default_factory=dict)
    account_discounts: dict[str, AccountDiscount] = field(default_factory=dict)
    tax: Tax | None = None
    billing: BillingSettings = BillingSettings()
