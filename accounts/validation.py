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

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Dates an account may carry (subscriptions): wide enough for any real contract, narrow enough
# that local midnights, cycles and the year after stay representable everywhere.
MIN_DATE, MAX_DATE = date(1970, 1, 1), date(2999, 12, 31)
MAX_GRACE_S = 86400  # a reservation past its validity is released within a day at the latest
MAX_OP_ID = 1024  # characters of an op id (it is part of a Redis key)
MAX_MSISDNS = 100  # MSISDNs per account: checked before any Redis work
MAX_LEDGER_PAGE = 10_000  # ledger entries per call
# a ledger (Redis stream) entry id: MILLISECONDS-SEQUENCE, each a 64-bit unsigned number
_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
LAST_ENTRY_ID = f"{2**64 - 1}-{2**64 - 1}"


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


def check_op_id(value, field: str = "op_id") -> str:
    """An op id: 1..MAX_OP_ID printable characters, no whitespace at either end (a blank or
    padded key would be a different key that looks the same)."""
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_OP_ID
            or not value.isprintable() or value.strip() != value):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise AccountError(field, f"expected 1-{MAX_OP_ID} printable characters without "
                                  f"surrounding whitespace, got {shown!r}")
    return value


def check_grace(value, field: str = "grace_s") -> int:
    """Seconds past a reservation's validity before the sweeper may release it: 0..1 day.
    A negative grace would release reservations that are still valid."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GRACE_S:
        raise AccountError(field, f"expected 0..{MAX_GRACE_S} seconds, got {value!r}")
    return value


def check_iso_date(value, field: str) -> str:
    """A calendar date written YYYY-MM-DD (the form subscriptions keep) in MIN_DATE..MAX_DATE."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise AccountError(field, f"expected a date YYYY-MM-DD, got {value!r}")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise AccountError(field, f"not a calendar date: {value!r}") from exc
    if not MIN_DATE <= day <= MAX_DATE:
        raise AccountError(field, f"{value} is outside {MIN_DATE}..{MAX_DATE}")
    return value


def check_subscription_dates(from_date, to_date, today: str, *, fields=("from_date", "to_date"),
                             ) -> tuple[str, str | None]:
    """A subscription's (from, to): each a date in range, from defaulting to `today`; `to` is
    exclusive and may not be before `from`. `to` = `from` is an empty subscription (a
    same-day subscribe and cancel): active on no day, so no fee, no allowance, no gift, and
    it conflicts with no other subscription. Every path (CLI, gRPC, store) uses this."""
    start = check_iso_date(from_date, fields[0]) if from_date else today
    if to_date is None:
        return start, None
    end = check_iso_date(to_date, fields[1])
    if end < start:
        raise AccountError(fields[1], f"{end} is before {fields[0]} {start} (to is exclusive: "
                                      "to = from is an empty subscription)")
    return start, end


def check_ledger_after(value, field: str = "after") -> str:
    """Where a ledger page starts: "-" (the beginning) or an entry id MILLISECONDS-SEQUENCE."""
    m = _ENTRY_ID.fullmatch(value) if isinstance(value, str) else None
    if value != "-" and (m is None or max(int(m.group(1)), int(m.group(2))) >= 2**64):
        raise AccountError(field, "expected a ledger entry id MILLISECONDS-SEQUENCE such as "
                                  f"1700000000000-0, got {value!r}")
    return value


def check_ledger_count(value, field: str = "count") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LEDGER_PAGE:
        raise AccountError(field, f"expected 1..{MAX_LEDGER_PAGE} entries, got {value!r}")
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
    """One MSISDN or several (at most MAX_MSISDNS), each valid and none twice."""
    if isinstance(msisdns, str):
        msisdns = (msisdns,)
    msisdns = tuple(msisdns)
    if len(msisdns) > MAX_MSISDNS:
        raise AccountError("msisdns", f"at most {MAX_MSISDNS} MSISDNs per account, "
                                      f"got {len(msisdns)}")
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
