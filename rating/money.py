"""Money as int64 micro-units: parsing decimal strings, formatting, and the one rounding rule.

Every amount inside ccs is an integer count of micro-units (1e-6 of the currency unit);
decimal strings exist only at the edges (files, APIs). Floats are refused.
"""

from __future__ import annotations

import re

MICRO = 1_000_000
ROUNDING_METHODS = ("half_up", "up", "down")
# The one grammar of money text: ASCII digits only (never \d, which matches any script's
# digits), an optional leading '-', no '+', no surrounding whitespace. More than 6 decimals is
# matched here and refused below with its own message.
_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_MAX_WHOLE_DIGITS = 19  # more cannot be below 2^63 micro-units anyway; int() stays cheap


class MoneyError(ValueError):
    """A malformed amount; the message names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_money(value: object, field: str = "amount", *, allow_negative: bool = True) -> int:
    """Parse a decimal string such as ``"0.0900"`` into micro-units.

    The text must match ``-?[0-9]+(\\.[0-9]{1,6})?`` exactly: ASCII digits, no '+', no
    surrounding whitespace, no exponent. Refuses floats (they cannot carry an exact amount)
    and, unless ``allow_negative``, negative amounts.
    """
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(field, f"expected a decimal string, got {type(value).__name__} {value!r}")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise MoneyError(field, f"expected a decimal string, got {type(value).__name__}")
    m = _DECIMAL.fullmatch(value)
    if not m:
        raise MoneyError(field, f"malformed amount {value!r} (expected ASCII digits 0-9, an "
                                "optional leading '-' and up to 6 decimals after a '.')")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if len(frac) > 6:
        raise MoneyError(field, f"amount {value!r} has more than 6 decimals")
    if len(whole.lstrip("0")) > _MAX_WHOLE_DIGITS:
        raise MoneyError(field, f"amount {_clip(value)!r} is out of range")
    micro = int(whole) * MICRO + int(frac.ljust(6, "0") or "0")
    if sign == "-":
        micro = -micro
    if micro < 0 and not allow_negative:
        raise MoneyError(field, f"amount {value!r} must not be negative")
    if abs(micro) >= 2**63:
        raise MoneyError(field, f"amount {value!r} is out of range")
    return micro


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def format_money(micro: int, decimals: int = 6) -> str:
    """Format micro-units as a decimal string with ``decimals`` places (0..6).

    The amount must already be rounded to ``decimals`` places; digits beyond are an error,
    so that formatting can never silently round a second time.
    """
    if not 0 <= decimals <= 6:
        raise ValueError("decimals must be in 0..6")
    micro = int(micro)
    step = 10 ** (6 - decimals)
    if micro % step:
        raise ValueError(f"{micro} micro-units do not fit in {decimals} decimals")
    sign = "-" if micro < 0 else ""
    q, r = divmod(abs(micro), MICRO)
    if decimals == 0:
        return f"{sign}{q}"
    return f"{sign}{q}.{str(r).rjust(6, '0')[:decimals]}"


def round_div(numerator: int, denominator: int, decimals: int, method: str) -> int:
    """Round the exact value ``numerator / denominator`` micro-units to ``decimals`` places.

    Returns micro-units. ``half_up`` rounds ties away from zero, ``up`` towards +infinity,
    ``down`` towards zero. Pure integer arithmetic: exact for any int inputs.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    step = 10 ** (6 - decimals) * denominator
    neg = numerator < 0
    a = -numerator if neg else numerator
    q, r = divmod(a, step)
    if method == "half_up":
        if 2 * r >= step:
            q += 1
    elif method == "up":
        if r and not neg:
            q += 1
    elif method == "down":
        pass
    else:
        raise ValueError(f"unknown rounding method {method!r}")
    q = -q if neg else q
    return q * 10 ** (6 - decimals)


def round_micro(micro: int, decimals: int, method: str = "half_up") -> int:
    """Round an amount in micro-units to ``decimals`` places."""
    return round_div(micro, 1, decimals, method)
