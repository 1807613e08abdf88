"""Catalog validation: every rule names the path and line of the offending value."""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import pytest

from rating import cli
from rating.catalog import CatalogError, load_catalog, parse_catalog

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "catalog.yaml"

# line numbers matter: each case below replaces one line of BASE (1-based, see the comments)
BASE = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  DE_MOBILE: ["49151", "49160"]
  DE_FIXED: ["49"]
  WORLD: [""]
time_bands:
  peak: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}
  offpeak: {}
tariffs:
  std:
    voice:
      - {destination: DE_MOBILE, band: peak, price: "0.1200", per: 60, increments: [60, 30], connect_fee: "0.0500"}
      - {destination: DE_FIXED, price: "0.0200", per: 60, increments: [1, 1]}
    sms:
      - {price: "0.0900"}
    data:
      - per: 1048576
        increments: [1024, 1024]
        tiers:
          - {upto: 1073741824, price: "0.0100"}
          - {price: "0.0020"}
discounts:
  loyal_voice:
    service: voice
    basis: usage
    tiers:
      - {from: 0, percent: "0"}
      - {from: 6000, percent: "10"}
offers:
  smart_m:
    tariff: std
    discounts: [loyal_voice]
    recurring: "9.99"
    allowances:
      - {name: voice_600, service: voice, units: 36000, destinations: [DE_MOBILE]}
    account_discount: big_bill
    promotions:
      - {on: subscribe, gift: {service: data, units: 1024, valid_days: 30}}
account_discounts:
  big_bill: {min_total: "50.00", percent: "5", cap: "10.00"}
tax: {name: VAT, percent: "19"}
billing: {decimals: 2, due_days: 14, grace_days: 10}
"""


def with_line(lineno: int, text: str) -> str:
    lines = BASE.splitlines()
    lines[lineno - 1] = text
    return "\n".join(lines) + "\n"


def issues_of(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(CatalogError) as ei:
        parse_catalog(text, source="t.yaml")
    return [(i.path, i.line, i.message) for i in ei.value.issues]


def test_base_catalog_loads_with_every_section():
    cat = parse_catalog(BASE)
    assert cat.currency == "EUR" and cat.timezone == "Europe/Berlin"
    assert cat.destinations["WORLD"] == ("",)
    e = cat.tariffs["std"]["voice"][0]
    assert (e.destination, e.band, e.per, e.first, e.next) == ("DE_MOBILE", "peak", 60, 60, 30)
    assert e.connect_fee == 50_000 and e.tiers[0].price == 120_000
    assert cat.tariffs["std"]["sms"][0].per == 1 and cat.tariffs["std"]["sms"][0].first == 1
    assert [t.upto for t in cat.tariffs["std"]["data"][0].tiers] == [1073741824, None]
    assert cat.time_bands[0].days == (0, 1, 2, 3, 4) and cat.time_bands[0].end_minute == 1200
    assert cat.time_bands[1].days == tuple(range(7)) and cat.time_bands[1].end_minute == 1440
    assert cat.discounts["loyal_voice"].tiers[1].percent == Fraction(1, 10) * 100
    assert cat.offers["smart_m"].allowances[0].destinations == ("DE_MOBILE",)
    assert cat.offers["smart_m"].promotions[0].gift.units == 1024
    assert cat.account_discounts["big_bill"].cap == 10_000_000
    assert cat.tax.percent == 19 and cat.billing.due_days == 14
    assert set(cat.services) == {"voice", "sms", "data"}


def test_example_catalog_loads():
    cat = load_catalog(EXAMPLE)
    assert "smart_m" in cat.offers and cat.services["mms"].unit == "events"
    assert cat.discounts["data_spender"].tiers[1].start == 10_000_000  # "10.00" as money


CASES = [
    # (line, replacement, expected path, expected message fragment)
    (1, "currency: EURO", "currency", "3 capital letters"),
    (2, "timezone: Europe/Nowhere", "timezone", "unknown IANA timezone"),
    (3, "rounding: {decimals: 7, method: half_up}", "rounding.decimals", "0..6"),
    (3, "rounding: {decimals: 4, method: nearest}", "rounding.method", "expected one of"),
    (5, '  DE_MOBILE: ["49151", "49a60"]', "destinations.DE_MOBILE[1]", "digits only"),
    (5, '  DE_MOBILE: ["49151", 49160]', "destinations.DE_MOBILE[1]", "quoted string of digits"),
    (5, '  DE_MOBILE: ["49151", "49151"]', "destinations.DE_MOBILE[1]", "listed twice"),
    (6, '  DE_FIXED: ["49", "49160"]', "destinations.DE_FIXED[1]", "listed twice (also in DE_MOBILE)"),
    (9, '  peak: {days: [mon, tues], from: "08:00", to: "20:00"}', "time_bands.peak.days[1]", "day name"),
    (9, '  peak: {from: "8:00", to: "20:00"}', "time_bands.peak.from", "HH:MM"),
    (9, '  peak: {from: "08:00", to: "24:01"}', "time_bands.peak.to", "HH:MM"),
    (9, '  peak: {from: "08:00", to: 20:00}', "time_bands.peak.to", "in quotes"),
    (9, '  peak: {from: "20:00", to: "08:00"}', "time_bands.peak.from", "before to"),
    (9, '  peak: {from: "24:00"}', "time_bands.peak.from", "only allowed for to"),
    (9, '  peak: {form: "08:00"}', "time_bands.peak.form", "unknown key (did you mean 'from'?)"),
    (14, '      - {destination: MARS, price: "0.1"}', "tariffs.std.voice[0].destination", "unknown destination 'MARS'"),
    (14, '      - {band: night, price: "0.1"}', "tariffs.std.voice[0].band", "unknown time band 'night'"),
    (14, "      - {price: 0.12}", "tariffs.std.voice[0].price", "expected a decimal string"),
    (14, '      - {price: "0.1234567"}', "tariffs.std.voice[0].price", "more than 6 decimals"),
    (14, '      - {price: "-0.10"}', "tariffs.std.voice[0].price", "must not be negative"),
    (14, '      - {price: "0.1", per: 0}', "tariffs.std.voice[0].per", "positive integer"),
    (14, '      - {price: "0.1", increments: [60]}', "tariffs.std.voice[0].increments", "expected two positive integers"),
    (14, '      - {price: "0.1", increments: [60, 0]}', "tariffs.std.voice[0].increments", "expected two positive integers"),
    (14, '      - {price: "0.1", connect_fee: 0.05}', "tariffs.std.voice[0].connect_fee", "expected a decimal string"),
    (14, '      - {price: "2000000", per: 1099511627776}', "tariffs.std.voice[0]", "too large for exact integer"),
    (14, "      - {per: 60}", "tariffs.std.voice[0]", "either price or tiers"),
    (16, "    f ax:", "tariffs.std.f ax", "invalid service name 'f ax'"),  # fax alone: a new service
    (22, '          - {upto: 0, price: "0.0100"}', "tariffs.std.data[0].tiers[0].upto", "positive integer"),
    (22, '          - {price: "0.0100"}', "tariffs.std.data[0].tiers[0]", "only the last tier may lack upto"),
    (23, '          - {upto: 5, price: "0.0020"}', "tariffs.std.data[0].tiers[1].upto", "the last tier has no upto"),
    (26, "    service: fax", "discounts.loyal_voice.service", "unknown service 'fax'"),
    (27, "    basis: money", "discounts.loyal_voice.basis", "usage or charge"),
    (29, '      - {from: 10, percent: "0"}', "discounts.loyal_voice.tiers[0].from", "starts from 0"),
    (30, '      - {from: 0, percent: "10"}', "discounts.loyal_voice.tiers[1].from", "ascend"),
    (30, '      - {from: 6000, percent: "101"}', "discounts.loyal_voice.tiers[1].percent", "0..100"),
    (30, "      - {from: 6000, percent: 10.5}", "discounts.loyal_voice.tiers[1].percent", "decimal string or an integer"),
    (33, "    tariff: gold", "offers.smart_m.tariff", "unknown tariff 'gold'"),
    (34, "    discounts: [loyal_data]", "offers.smart_m.discounts[0]", "unknown discount 'loyal_data'"),
    (37, "      - {name: v, service: voice, units: 0}", "offers.smart_m.allowances[0].units", "positive integer"),
    (37, "      - {name: v, service: voice, units: 5, destinations: [MARS]}", "offers.smart_m.allowances[0].destinations[0]", "unknown destination 'MARS'"),
    (38, "    account_discount: huge_bill", "offers.smart_m.account_discount", "unknown account discount"),
    (40, "      - {on: birthday, gift: {money: \"1.00\", valid_days: 30}}", "offers.smart_m.promotions[0].on", "subscribe or topup"),
    (40, "      - {on: subscribe, gift: {service: data, units: 1024, valid_days: 0}}", "offers.smart_m.promotions[0].gift.valid_days", "positive integer"),
    (40, "      - {on: subscribe, gift: {valid_days: 3}}", "offers.smart_m.promotions[0].gift", "either service and units, or money"),
    (40, '      - {on: subscribe, gift: {money: "1.00", units: 5, valid_days: 3}}', "offers.smart_m.promotions[0].gift", "not both"),
    (42, '  big_bill: {min_total: "50.00", percent: "5", cap: 10.0}', "account_discounts.big_bill.cap", "decimal string"),
    (44, "billing: {decimals: 9, due_days: 14, grace_days: 10}", "billing.decimals", "0..6"),
    (44, "billing: {decimals: 2, due_days: -1, grace_days: 10}", "billing.due_days", "non-negative"),
    (44, "billing: {decimals: 2, due_days: 1, grace_days: -3}", "billing.grace_days", "non-negative"),
    (44, "billing: {decimals: 2, method: up}", "billing.method", "unknown key"),
    (43, "taxes: {name: VAT, percent: \"19\"}", "taxes", "unknown key"),
]


@pytest.mark.parametrize("line,text,path,fragment", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_each_rule_names_path_and_line(line, text, path, fragment):
    found = issues_of(with_line(line, text))
    matching = [i for i in found if i[0] == path and fragment in i[2]]
    assert matching, found
    assert matching[0][1] == line


def test_charge_basis_wants_money_strings_in_from():
    found = issues_of(with_line(27, "    basis: charge"))
    assert [(i[0], i[1]) for i in found] == [
        ("discounts.loyal_voice.tiers[0].from", 29),
        ("discounts.loyal_voice.tiers[1].from", 30),
    ]
    assert all("expected a decimal string" in i[2] for i in found)


def test_all_errors_are_collected_and_formatted():
    text = with_line(1, "currency: EURO").replace('"0.0900"', "0.09")
    with pytest.raises(CatalogError) as ei:
        parse_catalog(text, source="t.yaml")
    lines = str(ei.value).splitlines()
    assert lines == [
        "t.yaml:1: currency: expected 3 capital letters, got 'EURO'",
        'tariffs.std.sms[0].price: expected a decimal string such as "0.0900" (quoted), got a number'
        .join(["t.yaml:17: ", ""]),
    ]


def test_missing_required_and_yaml_syntax_errors():
    found = issues_of("currency: EUR\n")
    assert {i[0] for i in found} == {"timezone", "tariffs"}
    assert issues_of("currency: [EUR\n")[0][2].startswith("not valid YAML")


def test_declared_services_add_and_override():
    text = BASE.replace("tariffs:\n", "services:\n  mms: {unit: events}\n  voice: {default_quota: 60}\ntariffs:\n", 1)
    text = text.replace("    sms:\n", "    mms:\n      - {price: \"0.39\"}\n    sms:\n")
    cat = parse_catalog(text)
    assert cat.services["mms"].unit == "events" and cat.services["mms"].default_quota == 1
    assert cat.services["voice"].unit == "seconds" and cat.services["voice"].default_quota == 60
    found = issues_of(BASE.replace("tariffs:\n", "services:\n  fax: {default_quota: 2}\ntariffs:\n", 1))
    assert ("services.fax.unit", 12, "missing (a new service needs its unit)") in found


def _run_cli(path) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["catalog", "check", str(path)])
    return args.func(args)


def test_cli_check_summary_and_errors(tmp_path, capsys):
    assert _run_cli(EXAMPLE) == 0
    out = capsys.readouterr().out
    assert "6 destinations, 17 prefixes, 2 time bands, 2 tariffs, 15 rate entries" in out
    assert "2 discounts, 3 offers" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(with_line(2, "timezone: Mars/Olympus").replace("per: 60, increments: [1, 1]", "per: -60"))
    assert _run_cli(bad) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{bad}:2: timezone: unknown IANA timezone 'Mars/Olympus'"
    assert err[1].startswith(f"{bad}:15: tariffs.std.voice[1].per: expected a positive integer")
    assert err[-1] == "2 error(s); catalog refused"
