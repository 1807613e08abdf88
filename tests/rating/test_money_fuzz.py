"""The money grammar (rating/money.py): one strict form, `-?[0-9]+(\\.[0-9]{1,6})?`, fuzzed.

Whatever text arrives, parse_money either returns micro-units that format_money writes back to
the same decimal value, or raises MoneyError naming the field; never anything else.
"""

from __future__ import annotations

import unicodedata
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rating.money import MoneyError, format_money, parse_money

# non-ASCII characters that Python's \d and int() both read as the digit 5
UNICODE_FIVES = ["\u0665", "\uff15", "\U0001d7d3", "\u096b", "\u0e55"]


@pytest.mark.parametrize("text", ["5", "5.00", "-5", "0.000001", "12.5", "9223372036854.775807"])
def test_the_strict_grammar_accepts_plain_decimals(text):
    assert Decimal(format_money(parse_money(text))) == Decimal(text)


@pytest.mark.parametrize("text, message", [
    ("\u0665", "amount: malformed amount '\u0665' (expected ASCII digits 0-9, an optional leading "
               "'-' and up to 6 decimals after a '.')"),
    ("\uff15", None), ("\U0001d7d3", None), ("1\u0665", None), ("5.\u0665", None),
    ("+5", None), (" 5", None), ("5 ", None), ("\t5\n", None), ("5\n", None),
    ("", None), ("-", None), (".5", None), ("5.", None), ("1e3", None), ("1_000", None),
    ("--5", None), ("- 5", None), ("12,50", None),
])
def test_anything_else_is_refused_naming_the_field(text, message):
    with pytest.raises(MoneyError) as err:
        parse_money(text, "amount")
    assert err.value.field == "amount"
    if message is not None:
        assert str(err.value) == message


def test_a_huge_digit_string_is_a_money_error_not_an_int_conversion_error():
    with pytest.raises(MoneyError) as err:
        parse_money("9" * 5000, "price")
    assert str(err.value).startswith("price: amount '9999")
    assert str(err.value).endswith("is out of range")


@settings(max_examples=400, deadline=None)
@given(st.text())
@example("\u0665")
@example("+5")
@example(" 5")
@example("9" * 5000)
@example("-0")
def test_arbitrary_text_is_parsed_exactly_or_refused_with_a_money_error(text):
    try:
        micro = parse_money(text, "amount")
    except MoneyError as exc:
        assert exc.field == "amount"
        return
    assert isinstance(micro, int)
    assert abs(micro) < 2**63
    assert all(c in "-.0123456789" for c in text)
    formatted = format_money(micro, 6)
    assert Decimal(formatted) == Decimal(text)
    assert parse_money(formatted, "amount") == micro


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=Decimal("-9223372036854.775807"),
                   max_value=Decimal("9223372036854.775807"), places=6, allow_nan=False,
                   allow_infinity=False))
def test_every_amount_format_money_writes_round_trips(amount):
    micro = int(amount * 1_000_000)
    assert parse_money(format_money(micro, 6)) == micro


_NON_ASCII_DIGITS = st.characters(
    categories=["Nd"]).filter(lambda c: c not in "0123456789")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.-", max_size=12), _NON_ASCII_DIGITS,
       st.integers(min_value=0, max_value=12))
def test_a_unicode_digit_anywhere_is_always_refused(ascii_text, digit, at):
    assert unicodedata.category(digit) == "Nd"
    text = ascii_text[:at] + digit + ascii_text[at:]
    with pytest.raises(MoneyError):
        parse_money(text, "amount")


@pytest.mark.parametrize("digit", UNICODE_FIVES)
def test_unicode_fives_do_not_add_five(digit):
    with pytest.raises(MoneyError):
        parse_money(digit, "amount")
