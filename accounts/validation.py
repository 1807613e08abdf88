"""Argument checks of the account store: every bad input refused in Python, naming its field.

Runs before any Redis call, so a refused request has touched nothing; the `*_arg` helpers also
encode a checked value the way the Lua scripts read it (strings of digits, "u" = unlimited).
"""

from __future__ import annotations

import re
from datetime import date

from accounts.errors import AccountError, InvalidAmount
from accounts.keys import check_msisdn
from accounts.model import MAX_AMOUNT

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_amount(value, field: str, *, negative: bool = False, zero: bool = True) -> int:
    """An int micro-unit amount within the exact range of Lua numbers (|x| <= 2^53 - 1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(
            field, f"expected int micro-units, got {type(value).__name__} {value!r}"
        )
    if value < 0 and not negative:
        raise InvalidAmount(field, f"must not be negative, got {value}")
    if value == 0 and not zero:
        raise InvalidAmount(field, "must not be zero")
    if abs(value) > MAX_AMOUNT:
        raise InvalidAmount(field, f"{value} is beyond 2^53 - 1, the exact range of Redis Lua")
    return value


def check_text(value, field: str, *, optional: bool = False, limit: int = 256) -> str | None:
    """A non-empty string of at most `limit` characters (None allowed when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise AccountError(field, f"expected a non-empty string of at most {limit} characters")
    return value


def check_iso_date(value, field: str) -> str:
    """A calendar date written YYYY-MM-DD (the form subscriptions keep)."""
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise AccountError(field, f"expected a date YYYY-MM-DD, got {value!r}")
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        raise AccountError(field, f"not a calendar date: {value!r}") from exc
    return value


def check_bill_cycle_day(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 31:
        raise AccountError("bill_cycle_day", f"expected 1..31, got {value!r}")
    return value


def check_positive_int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AccountError(field, f"expected a positive int, got {value!r}")
    return value


def check_msisdns(msisdns) -> tuple[str, ...]:
    """One MSISDN or several, each valid and none twice."""
    if isinstance(msisdns, str):
        msisdns = (msisdns,)
    out = tuple(check_msisdn(m) for m in msisdns)
    if len(set(out)) != len(out):
        raise AccountError("msisdns", "an MSISDN is listed twice")
    return out


def credit_limit_arg(credit_limit) -> str:
    """A credit limit as the scripts read it: "u" (None, unlimited) or its micro-units."""
    if credit_limit is None:
        return "u"
    return str(check_amount(credit_limit, "credit_limit"))


def counters_arg(counters) -> dict[str, str]:
    """Counter deltas (key -> signed int) as the scripts read them (values as strings)."""
    if counters is None:
        return {}
    if not isinstance(counters, dict):
        raise AccountError("counters", "expected a dict of counter key -> int delta")
    out = {}
    for key, value in counters.items():
        check_text(key, "counters")
        out[key] = str(check_amount(value, f"counters[{key}]", negative=True))
    return out
