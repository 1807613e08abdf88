"""Catalog hardening (issue 11): repeated names, bounded integers, plain decimal integers only,
non-UTF-8 files, services named only by a tariff, and a fuzz test of the loader."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rating.catalog import MAX_COUNT, MAX_DAYS, CatalogError, load_catalog, parse_catalog
from rating.model import Service
from tests.rating.spec_ccs import by_id, cdr, rate, run_ccs
from tests.rating.test_catalog import BASE, issues_of, with_line

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "catalog.yaml"


def test_count_bound_is_2_pow_53_minus_1():
    assert MAX_COUNT == 2**53 - 1 and MAX_DAYS == 36_525


# -- item 1: a discount listed twice in an offer ------------------------------------------

def test_offer_listing_a_discount_twice_is_refused_naming_path_and_line():
    found = issues_of(with_line(34, "    discounts: [loyal_voice, loyal_voice]"))
    assert found == [("offers.smart_m.discounts[1]", 34, "discount 'loyal_voice' listed twice")]


def test_allowance_listing_a_destination_twice_is_refused():
    text = with_line(37, "      - {name: v, service: voice, units: 5, destinations: [DE_MOBILE, DE_MOBILE]}")
    assert issues_of(text) == [
        ("offers.smart_m.allowances[0].destinations[1]", 37, "destination 'DE_MOBILE' listed twice")]


def test_catalog_check_and_ccs_rate_refuse_a_repeated_offer_discount(tmp_path):
    bad = tmp_path / "cat.yaml"
    text = EXAMPLE.read_text().replace("discounts: [loyal_voice]", "discounts: [loyal_voice, loyal_voice]")
    bad.write_text(text)
    line = text.splitlines().index("    discounts: [loyal_voice, loyal_voice]") + 1
    msg = f"{bad}:{line}: offers.smart_m.discounts[1]: discount 'loyal_voice' listed twice"
    check = run_ccs("catalog", "check", bad)
    assert check.returncode == 1 and check.stderr.splitlines()[0] == msg
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_text("cdr_id,account,service,start,usage,destination\n")
    rated = run_ccs("rate", "--catalog", bad, "--cdrs", cdrs, "--tariff", "std")
    assert rated.returncode == 2 and msg in rated.stderr.splitlines() and rated.stdout == ""


# -- item 2: every integer of the catalog is bounded ----------------------------------------

BIG = 99999999999999999999999
BOUNDED = [
    # (line, text with {v}, path, bound)
    (37, "      - {{name: v, service: voice, units: {v}}}", "offers.smart_m.allowances[0].units", MAX_COUNT),
    (40, "      - {{on: subscribe, gift: {{service: data, units: {v}, valid_days: 30}}}}",
     "offers.smart_m.promotions[0].gift.units", MAX_COUNT),
    (40, "      - {{on: subscribe, gift: {{service: data, units: 5, valid_days: {v}}}}}",
     "offers.smart_m.promotions[0].gift.valid_days", MAX_DAYS),
    (22, "          - {{upto: {v}, price: \"0.0100\"}}", "tariffs.std.data[0].tiers[0].upto", MAX_COUNT),
    (30, "      - {{from: {v}, percent: \"10\"}}", "discounts.loyal_voice.tiers[1].from", MAX_COUNT),
    (44, "billing: {{decimals: 2, due_days: {v}, grace_days: 10}}", "billing.due_days", MAX_DAYS),
    (44, "billing: {{decimals: 2, due_days: 1, grace_days: {v}}}", "billing.grace_days", MAX_DAYS),
    (14, "      - {{price: \"0.1\", per: {v}}}", "tariffs.std.voice[0].per", 2**40),
    (14, "      - {{price: \"0.1\", increments: [{v}, 1]}}", "tariffs.std.voice[0].increments", 2**40),
]


@pytest.mark.parametrize("line,text,path,bound", BOUNDED, ids=[b[2] for b in BOUNDED])
def test_each_integer_is_bounded_naming_path_and_line(line, text, path, bound):
    parse_catalog(with_line(line, text.format(v=bound)))  # the bound itself is allowed
    for v in (bound + 1, 2**53 + 1, 2**63, BIG):
        found = issues_of(with_line(line, text.format(v=v)))
        assert [(i[0], i[1]) for i in found] == [(path, line)], found
        assert found[0][2].endswith(f"got {v}"), found


def test_default_quota_is_bounded():
    text = BASE.replace("tariffs:\n", "services:\n  mms: {unit: events, default_quota: %d}\ntariffs:\n", 1)
    assert parse_catalog(text % MAX_COUNT).services["mms"].default_quota == MAX_COUNT
    assert issues_of(text % BIG) == [(
        "services.mms.default_quota", 12, f"expected a positive integer up to {MAX_COUNT}, got {BIG}")]


def test_units_just_beyond_2_pow_53_are_refused_not_rounded():
    found = issues_of(with_line(37, "      - {name: v, service: voice, units: 9007199254740993}"))
    assert found == [("offers.smart_m.allowances[0].units", 37,
                      f"expected a positive integer up to {MAX_COUNT}, got 9007199254740993")]


def test_charge_basis_from_is_bounded_like_a_count():
    text = with_line(27, "    basis: charge").replace("{from: 0,", '{from: "0",')
    ok = text.replace("{from: 6000,", '{from: "9007199254.740991",')
    assert parse_catalog(ok).discounts["loyal_voice"].tiers[1].start == MAX_COUNT
    found = issues_of(text.replace("{from: 6000,", '{from: "9007199254.740992",'))
    assert found == [("discounts.loyal_voice.tiers[1].from", 30,
                      "amount '9007199254.740992' is beyond 9007199254.740991")]


def test_catalog_check_refuses_huge_allowance_units(tmp_path):
    bad = tmp_path / "cat.yaml"
    text = EXAMPLE.read_text().replace("units: 36000", f"units: {BIG}")
    bad.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if str(BIG) in s)
    proc = run_ccs("catalog", "check", bad)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"{bad}:{line}: offers.smart_m.allowances[0].units: expected a positive integer up to "
        f"{MAX_COUNT}, got {BIG}")


# -- item 18 (part): integers are plain decimal digits --------------------------------------

@pytest.mark.parametrize("written", ["1:00", "0x3c", "1_000", "0o17", "+60", "060", "0b111100",
                                     "60.0", "6e1", '"60"', "!!int abc", "!!int 0x3c", "[60]"])
def test_integer_fields_take_plain_decimal_digits_only(written):
    found = issues_of(with_line(14, f'      - {{price: "0.1", per: {written}}}'))
    assert [(i[0], i[1]) for i in found] == [("tariffs.std.voice[0].per", 14)], found
    assert found[0][2].startswith("expected a positive integer"), found


@pytest.mark.parametrize("written", ["1:00", "0x3c", "1_000", "+60", "060"])
def test_integers_inside_lists_and_percents_take_plain_digits_too(written):
    found = issues_of(with_line(14, f'      - {{price: "0.1", increments: [{written}, 1]}}'))
    assert [(i[0], i[1]) for i in found] == [("tariffs.std.voice[0].increments", 14)], found
    found = issues_of(with_line(30, f"      - {{from: 6000, percent: {written}}}"))
    assert [(i[0], i[1]) for i in found] == [("discounts.loyal_voice.tiers[1].percent", 30)], found


def test_plain_decimal_and_explicitly_tagged_integers_load():
    cat = parse_catalog(with_line(14, '      - {price: "0.1", per: !!int "60", increments: [0060, 1]}'
                                  .replace("0060", "60")))
    assert cat.tariffs["std"]["voice"][0].per == 60
    assert parse_catalog(with_line(30, "      - {from: 6000, percent: 10}")).discounts[
        "loyal_voice"].tiers[1].percent == 10


# -- item 12: a catalog that is not UTF-8 ---------------------------------------------------

def test_non_utf8_catalog_is_one_error_naming_file_and_byte_offset(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe bad\n")
    with pytest.raises(CatalogError) as ei:
        load_catalog(bad)
    assert str(ei.value) == f"{bad}:1: not UTF-8: byte 0xff at offset 0 cannot be decoded"
    later = tmp_path / "later.yaml"
    later.write_bytes(b"currency: EUR\ntimezone: Europe/Berlin\n# caf\xe9\n")
    with pytest.raises(CatalogError) as ei:
        load_catalog(later)
    assert str(ei.value) == f"{later}:3: not UTF-8: byte 0xe9 at offset 43 cannot be decoded"


def test_non_utf8_catalog_exits_cleanly_from_check_and_rate(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe bad\n")
    msg = f"{bad}:1: not UTF-8: byte 0xff at offset 0 cannot be decoded"
    check = run_ccs("catalog", "check", bad)
    assert (check.returncode, check.stdout) == (1, "")
    assert check.stderr.splitlines() == [msg, "1 error(s); catalog refused"]
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_text("cdr_id,account,service,start,usage,destination\n")
    rated = run_ccs("rate", "--catalog", bad, "--cdrs", cdrs, "--tariff", "std")
    assert (rated.returncode, rated.stdout) == (2, "")
    assert rated.stderr.splitlines() == [f"ccs rate: catalog {bad} refused:", msg]
    assert "Traceback" not in check.stderr + rated.stderr


# -- item 19: a service named only as a key of a tariff -------------------------------------

MMS = """\
currency: EUR
timezone: UTC
rounding: {decimals: 4, method: half_up}
tariffs:
  t:
    mms:
      - {price: "0.3900"}
discounts:
  mms_fan:
    service: mms
    tiers:
      - {from: 0, percent: "0"}
      - {from: 2, percent: "50"}
offers:
  o:
    tariff: t
    discounts: [mms_fan]
    allowances:
      - {name: free_mms, service: mms, units: 3}
"""


def test_a_service_named_only_by_a_tariff_loads_in_whole_units():
    cat = parse_catalog(MMS)
    assert cat.services["mms"] == Service("mms", "units", 1)
    assert list(cat.services) == ["voice", "sms", "data", "mms"]
    assert cat.offers["o"].allowances[0].service == "mms"


def test_a_service_no_tariff_names_nor_services_declares_stays_unknown():
    found = issues_of(MMS.replace("service: mms\n    tiers", "service: fax\n    tiers"))
    assert found == [("discounts.mms_fan.service", 10, "unknown service 'fax'")]
    found = issues_of(MMS.replace("    mms:\n", "    m ms:\n"))
    assert ("tariffs.t.m ms", 6, "invalid service name 'm ms'") in found


def test_ccs_rate_rates_an_undeclared_tariff_service_with_its_discount(tmp_path):
    rows = rate(tmp_path, MMS, [cdr(f"m{k}", f"2024-01-09T10:00:0{k}Z", 1, service="mms", account="a")
                                for k in range(4)],
                accounts="account,tariff,discounts\na,t,mms_fan\n")
    got = {k: (r["status"], r["rated_usage"], r["charge"], r["discount"], r["net_charge"])
           for k, r in by_id(rows).items()}
    assert got == {
        "m0": ("rated", "1", "0.3900", "0.0000", "0.3900"),
        "m1": ("rated", "1", "0.3900", "0.0000", "0.3900"),
        "m2": ("rated", "1", "0.3900", "0.1950", "0.1950"),  # basis 2 before the CDR: 50 %
        "m3": ("rated", "1", "0.3900", "0.1950", "0.1950"),
    }


def test_catalog_check_accepts_an_undeclared_tariff_service(tmp_path):
    good = tmp_path / "mms.yaml"
    good.write_text(MMS)
    proc = run_ccs("catalog", "check", good)
    assert proc.returncode == 0 and "4 services" in proc.stdout, proc.stderr


# -- fuzz: the loader raises nothing but CatalogError ---------------------------------------

_TOKENS = ["currency", "timezone", "tariffs", "t", "voice", "sms", "mms", "data", "price",
           "per", "increments", "tiers", "upto", "from", "percent", "discounts", "offers",
           "services", "unit", "default_quota", "allowances", "units", "promotions", "gift",
           "valid_days", "billing", "due_days", "rounding", "decimals", "method", "time_bands",
           "destinations", "EUR", "UTC", "Europe/Berlin", "Europe", "../x", "\x00", "\ud800",
           '"0.1"', "1:00", "0x10", "!!int", "!!int abc", "!!float", "!!binary", "&a", "*a",
           "<<", "?", "-", ":", ": ", "{", "}", "[", "]", ",", "\n", "  ", "'", '"', "#",
           "99999999999999999999999", "-1", "0", "1", "2.5", "~", "null", "true", "é", "\t"]
_yamlish = st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join)
_lines = BASE.splitlines()


@st.composite
def _mutated_base(draw):
    lines = list(_lines)
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(lines) - 1))
        lines[k] = lines[k][: draw(st.integers(0, len(lines[k])))] + draw(_yamlish)
    return "\n".join(lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_yamlish, _mutated_base(), st.text(max_size=200), st.binary(max_size=200),
                 st.binary(max_size=40).map(lambda b: BASE.encode() + b)))
def test_parse_catalog_raises_only_catalog_errors(text):
    try:
        parse_catalog(text)
    except CatalogError as e:
        assert e.issues and str(e)
