"""Conformance, rules 1 to 3: destinations (longest prefix), bands (in the catalog's zone), entries.

Outside conformance checks: the real `ccs rate` / `ccs catalog check` against rating.md. Every
expected amount is computed by hand from the contract text (exact fractions in the comments),
never from the code; a case where ccs disagrees is an xfail(strict) naming the gap. Running
`ccs rate` and shared catalogs: spec_ccs.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec_ccs import T, by_id, cdr, col, rate, run_ccs, run_rate  # noqa: E402

# --------------------------------------------------------------------------------------------
# Rule 1: destinations
# --------------------------------------------------------------------------------------------

DEST_CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  A: ["49"]
  B: ["4915"]
  C: ["491"]
  W: [""]
tariffs:
  t:
    voice:
      - {destination: A, price: "3"}
      - {destination: C, price: "2"}
      - {destination: B, price: "1"}
      - {destination: W, price: "4"}
    data:
      - {destination: W, price: "5"}
      - {price: "6"}
"""


def test_longest_prefix_over_all_destinations(tmp_path):
    # per 1, increments [1, 1], usage 1: the charge is the entry's price.
    # Entry A is listed first, but it only matches destination name A: the name comes from
    # the longest prefix first, then the first entry with that name is used.
    t = "2024-01-09T10:00:00Z"
    rows = rate(tmp_path, DEST_CATALOG, [
        cdr("b", t, 1, "4915123"),   # 4915 (B) beats 491 (C), 49 (A), "" (W) -> 1
        cdr("c", t, 1, "4916"),      # 491 (C) -> 2
        cdr("a", t, 1, "4990"),      # 49 (A) -> 3
        cdr("a2", t, 1, "49"),       # 4915/491 are longer than the number: only 49 -> 3
        cdr("w", t, 1, "33"),        # only the empty prefix -> W, 4
        cdr("w2", t, 1, "4"),        # "4" is shorter than "49": W -> 4
        cdr("z", t, 1, "0049151"),   # leading zeros count: W -> 4
    ])
    assert col(rows, "destination_name") == {"b": "B", "c": "C", "a": "A", "a2": "A", "w": "W",
                                             "w2": "W", "z": "W"}
    assert col(rows, "charge") == {"b": "1.0000", "c": "2.0000", "a": "3.0000", "a2": "3.0000",
                                   "w": "4.0000", "w2": "4.0000", "z": "4.0000"}
    assert set(col(rows, "status").values()) == {"rated"}


def test_empty_destination_matches_only_entries_without_destination(tmp_path):
    t = "2024-01-09T10:00:00Z"
    rows = rate(tmp_path, DEST_CATALOG, [
        cdr("d0", t, 1, "", "data"),    # no name: the W entry (even with prefix "") is skipped -> 6
        cdr("d1", t, 1, "44", "data"),  # W via "" -> first entry, 5
        cdr("v0", t, 1, "", "voice"),   # every voice entry names a destination -> no_rate
    ])
    r = by_id(rows)
    assert (r["d0"]["status"], r["d0"]["destination_name"], r["d0"]["charge"]) == ("rated", "", "6.0000")
    assert (r["d1"]["destination_name"], r["d1"]["charge"]) == ("W", "5.0000")
    assert (r["v0"]["status"], r["v0"]["reason"], r["v0"]["net_charge"]) == ("rejected", "no_rate", "0.0000")


def test_no_prefix_matches_is_no_destination(tmp_path):
    catalog = DEST_CATALOG.replace('  W: [""]\n', "").replace('      - {destination: W, price: "4"}\n', "") \
        .replace('      - {destination: W, price: "5"}\n', "")
    rows = rate(tmp_path, catalog, [
        cdr("n", "2024-01-09T10:00:00Z", 1, "33"),
        # rule 1 applies before rule 3 even when the entry names no destination
        cdr("d", "2024-01-09T10:00:00Z", 1, "33", "data"),
        cdr("ok", "2024-01-09T10:00:00Z", 1, "", "data"),
    ])
    r = by_id(rows)
    assert (r["n"]["status"], r["n"]["reason"]) == ("rejected", "no_destination")
    assert (r["d"]["status"], r["d"]["reason"]) == ("rejected", "no_destination")
    assert (r["ok"]["status"], r["ok"]["charge"]) == ("rated", "6.0000")


@pytest.mark.parametrize("dests", [
    'A: ["49", "49"]',                      # twice in one destination
    'A: ["49"]\n  B: ["4915", "49"]',       # once in each of two destinations
    'A: [""]\n  B: [""]',                   # the empty prefix twice
])
def test_prefix_listed_twice_is_refused(tmp_path, dests):
    catalog = f"""\
currency: EUR
timezone: Europe/Berlin
destinations:
  {dests}
tariffs:
  t:
    sms:
      - {{price: "1"}}
"""
    path = tmp_path / "c.yaml"
    path.write_text(catalog)
    proc = run_ccs("catalog", "check", path)
    assert proc.returncode != 0
    assert "destinations" in proc.stdout + proc.stderr
    rated = run_rate(tmp_path, catalog, [cdr("1", "2024-01-09T10:00:00Z", 1, "49", "sms")])
    assert rated.returncode == 2 and rated.stdout == ""


# --------------------------------------------------------------------------------------------
# Rule 2: bands, at the start, in the catalog timezone
# --------------------------------------------------------------------------------------------

BAND_CATALOG = """\
currency: EUR
timezone: {tz}
rounding: {{decimals: 4, method: half_up}}
time_bands:
  peak:  {{days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}}
  late:  {{from: "20:00", to: "24:00"}}
  fri:   {{days: [fri]}}
  night: {{days: [sun], from: "02:00", to: "03:00"}}
  early: {{days: [sun], from: "03:00", to: "04:00"}}
  wkend: {{days: [sat, sun]}}
tariffs:
  t:
    voice:
      - {{band: peak, price: "1"}}
      - {{band: late, price: "2"}}
      - {{band: wkend, price: "3"}}
      - {{price: "9"}}
    sms:
      - {{band: fri, price: "5"}}
      - {{band: night, price: "6"}}
      - {{band: early, price: "7"}}
      - {{price: "9"}}
"""


def test_bands_days_from_inclusive_to_exclusive_24h_defaults(tmp_path):
    # Berlin is UTC+1 in January, UTC+2 in July. 2024-01-09 is a Tuesday, 01-13 a Saturday.
    rows = rate(tmp_path, BAND_CATALOG.format(tz="Europe/Berlin"), [
        cdr("p0", "2024-01-09T06:59:59Z", 1),  # 07:59:59 Tue: no band -> last entry, 9
        cdr("p1", "2024-01-09T07:00:00Z", 1),  # 08:00 Tue: from inclusive -> peak, 1
        cdr("p2", "2024-01-09T18:59:59Z", 1),  # 19:59:59 -> peak, 1
        cdr("l1", "2024-01-09T19:00:00Z", 1),  # 20:00: to exclusive, late (days default) -> 2
        cdr("l2", "2024-01-09T22:59:59Z", 1),  # 23:59:59: "24:00" includes the last second -> 2
        cdr("n1", "2024-01-09T23:00:00Z", 1),  # Wed 00:00: none -> 9
        cdr("w0", "2024-01-12T22:59:59Z", 1),  # Fri 23:59:59 -> late, 2
        cdr("w1", "2024-01-12T23:00:00Z", 1),  # Sat 00:00 -> wkend (no hours: all day), 3
        cdr("w2", "2024-01-13T19:30:00Z", 1),  # Sat 20:30: late is listed before wkend -> 2
        cdr("o1", "2024-01-09T09:00:00+02:00", 1),  # = 07:00Z = 08:00 Berlin -> peak, 1
        cdr("o2", "2024-01-09T07:59:59+00:00", 1),  # 08:59:59 Berlin -> peak, 1
        cdr("s0", "2024-07-09T05:59:59Z", 1),  # 07:59:59 CEST -> 9
        cdr("s1", "2024-07-09T06:00:00Z", 1),  # 08:00 CEST -> peak, 1
        cdr("s2", "2024-07-09T18:00:00Z", 1),  # 20:00 CEST -> late, 2
        cdr("lng", "2024-01-09T18:59:59Z", 7200),  # starts in peak: all 7200 s at 1 -> 7200
    ])
    assert col(rows, "band") == {
        "p0": "", "p1": "peak", "p2": "peak", "l1": "late", "l2": "late", "n1": "",
        "w0": "late", "w1": "wkend", "w2": "late", "o1": "peak", "o2": "peak",
        "s0": "", "s1": "peak", "s2": "late", "lng": "peak"}
    assert col(rows, "charge") == {
        "p0": "9.0000", "p1": "1.0000", "p2": "1.0000", "l1": "2.0000", "l2": "2.0000",
        "n1": "9.0000", "w0": "2.0000", "w1": "3.0000", "w2": "2.0000", "o1": "1.0000",
        "o2": "1.0000", "s0": "9.0000", "s1": "1.0000", "s2": "2.0000", "lng": "7200.0000"}


def test_bands_on_berlin_dst_days(tmp_path):
    # 2024-03-31 (Sun): 01:00Z jumps 02:00 CET -> 03:00 CEST, "night" (02-03) never happens.
    # 2024-10-27 (Sun): 01:00Z falls back 03:00 CEST -> 02:00 CET, 02:xx happens twice.
    rows = rate(tmp_path, BAND_CATALOG.format(tz="Europe/Berlin"), [
        cdr("a", "2024-03-31T00:59:59Z", 1, service="sms"),  # 01:59:59 CET -> none, 9
        cdr("b", "2024-03-31T01:00:00Z", 1, service="sms"),  # 03:00 CEST -> early, 7
        cdr("c", "2024-03-31T01:59:59Z", 1, service="sms"),  # 03:59:59 CEST -> early, 7
        cdr("d", "2024-03-31T02:00:00Z", 1, service="sms"),  # 04:00 CEST -> none, 9
        cdr("e", "2024-10-26T23:59:59Z", 1, service="sms"),  # 01:59:59 CEST -> none, 9
        cdr("f", "2024-10-27T00:00:00Z", 1, service="sms"),  # 02:00 CEST -> night, 6
        cdr("g", "2024-10-27T00:59:59Z", 1, service="sms"),  # 02:59:59 CEST -> night, 6
        cdr("h", "2024-10-27T01:00:00Z", 1, service="sms"),  # 02:00 CET (again) -> night, 6
        cdr("i", "2024-10-27T01:59:59Z", 1, service="sms"),  # 02:59:59 CET -> night, 6
        cdr("j", "2024-10-27T02:00:00Z", 1, service="sms"),  # 03:00 CET -> early, 7
    ])
    # the first band in catalog order wins: outside night/early a Sunday is "wkend", which
    # no sms entry names, so those fall through to the last entry (9)
    assert col(rows, "band") == {"a": "wkend", "b": "early", "c": "early", "d": "wkend", "e": "wkend",
                                 "f": "night", "g": "night", "h": "night", "i": "night",
                                 "j": "early"}
    assert col(rows, "charge") == {"a": "9.0000", "b": "7.0000", "c": "7.0000", "d": "9.0000",
                                   "e": "9.0000", "f": "6.0000", "g": "6.0000", "h": "6.0000",
                                   "i": "6.0000", "j": "7.0000"}


def test_bands_in_non_european_zones(tmp_path):
    # Asia/Kolkata, UTC+05:30, no DST: the local day differs from the UTC day.
    rows = rate(tmp_path, BAND_CATALOG.format(tz="Asia/Kolkata"), [
        cdr("k0", "2024-01-09T02:29:59Z", 1),  # Tue 07:59:59 IST -> none, 9
        cdr("k1", "2024-01-09T02:30:00Z", 1),  # Tue 08:00 IST -> peak, 1
        cdr("k2", "2024-01-11T18:30:00Z", 1, service="sms"),  # Thu UTC, Fri 00:00 IST -> fri, 5
        cdr("k3", "2024-01-12T02:29:59Z", 1, service="sms"),  # Fri 07:59:59 IST -> fri, 5
        cdr("k4", "2024-01-12T18:30:00Z", 1, service="sms"),  # Sat 00:00 IST -> wkend -> 9
    ])
    assert col(rows, "charge") == {"k0": "9.0000", "k1": "1.0000", "k2": "5.0000",
                                   "k3": "5.0000", "k4": "9.0000"}
    # America/New_York: 2024-03-10 07:00Z jumps 02:00 EST -> 03:00 EDT;
    # 2024-11-03 06:00Z falls back 02:00 EDT -> 01:00 EST.
    rows = rate(tmp_path, BAND_CATALOG.format(tz="America/New_York"), [
        cdr("n0", "2024-03-10T06:59:59Z", 1, service="sms"),  # 01:59:59 EST -> 9
        cdr("n1", "2024-03-10T07:00:00Z", 1, service="sms"),  # 03:00 EDT -> early, 7
        cdr("n2", "2024-11-03T06:00:00Z", 1, service="sms"),  # 01:00 EST -> 9
        cdr("n3", "2024-11-03T07:00:00Z", 1, service="sms"),  # 02:00 EST -> night, 6
        cdr("n4", "2024-11-03T08:00:00Z", 1, service="sms"),  # 03:00 EST -> early, 7
        cdr("n5", "2024-01-09T13:00:00Z", 1),  # Tue 08:00 EST -> peak, 1
        cdr("n6", "2024-07-09T11:59:59Z", 1),  # Tue 07:59:59 EDT -> 9
    ])
    assert col(rows, "charge") == {"n0": "9.0000", "n1": "7.0000", "n2": "9.0000",
                                   "n3": "6.0000", "n4": "7.0000", "n5": "1.0000", "n6": "9.0000"}
    # Pacific/Chatham is UTC+13:45 in January (DST): 18:15Z on Tue 9th is Wed 10th 08:00.
    # Australia/Lord_Howe moves by half an hour: 2024-10-06 02:00 +10:30 -> 02:30 +11:00.
    rows = rate(tmp_path, BAND_CATALOG.format(tz="Pacific/Chatham"), [
        cdr("c0", "2024-01-09T18:14:59Z", 1),  # Wed 07:59:59 -> 9
        cdr("c1", "2024-01-09T18:15:00Z", 1),  # Wed 08:00 -> peak, 1
    ])
    assert col(rows, "charge") == {"c0": "9.0000", "c1": "1.0000"}
    rows = rate(tmp_path, BAND_CATALOG.format(tz="Australia/Lord_Howe"), [
        cdr("h0", "2024-10-05T15:29:59Z", 1, service="sms"),  # Sun 01:59:59 +10:30 -> 9
        cdr("h1", "2024-10-05T15:30:00Z", 1, service="sms"),  # Sun 02:30 +11 -> night, 6
        cdr("h2", "2024-10-05T16:00:00Z", 1, service="sms"),  # Sun 03:00 +11 -> early, 7
    ])
    assert col(rows, "charge") == {"h0": "9.0000", "h1": "6.0000", "h2": "7.0000"}


# --------------------------------------------------------------------------------------------
# Rule 3: first matching entry
# --------------------------------------------------------------------------------------------

def test_first_matching_entry_wins(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    destinations:
      A: ["1"]
      B: ["2"]
    time_bands:
      peak: {from: "08:00", to: "20:00"}
    tariffs:
      t:
        voice:
          - {destination: A, band: peak, price: "1"}
          - {destination: A, price: "2"}
          - {band: peak, price: "3"}
          - {price: "4"}
          - {destination: A, price: "5"}
        sms:
          - {destination: A, price: "1"}
          - {band: peak, destination: B, price: "2"}
    """
    rows = rate(tmp_path, catalog, [
        cdr("ap", "2024-01-09T10:00:00Z", 1, "1"),  # A at peak -> 1
        cdr("ao", "2024-01-09T21:00:00Z", 1, "1"),  # A off peak -> 2 (never the later 5)
        cdr("bp", "2024-01-09T10:00:00Z", 1, "2"),  # B at peak -> 3
        cdr("bo", "2024-01-09T21:00:00Z", 1, "2"),  # B off peak -> 4
        cdr("s1", "2024-01-09T21:00:00Z", 1, "2", "sms"),  # B off peak: nothing -> no_rate
        cdr("s2", "2024-01-09T10:00:00Z", 1, "2", "sms"),  # B at peak -> 2
    ])
    assert col(rows, "charge") == {"ap": "1.0000", "ao": "2.0000", "bp": "3.0000",
                                   "bo": "4.0000", "s1": "0.0000", "s2": "2.0000"}
    assert by_id(rows)["s1"]["reason"] == "no_rate"


# --------------------------------------------------------------------------------------------
# More edges: prefixes, offsets
# --------------------------------------------------------------------------------------------

def test_longest_prefix_does_not_fall_back_to_a_shorter_one(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    destinations: {A: ["49"], B: ["4915"]}
    tariffs:
      t:
        voice:
          - {destination: A, price: "1"}
    """
    # 49151 is B (longest prefix); no entry names B -> no_rate, not A's price
    rows = rate(tmp_path, catalog, [cdr("b", T, 1, "49151"), cdr("a", T, 1, "4930")])
    assert [(r["status"], r["reason"], r["charge"]) for r in rows] == [
        ("rejected", "no_rate", "0.0000"), ("rated", "", "1.0000")]


def test_cdr_offsets_are_converted_to_the_catalog_zone(tmp_path):
    catalog = """\
    currency: EUR
    timezone: America/New_York
    time_bands:
      tue: {days: [tue], from: "00:00", to: "24:00"}
    tariffs:
      t:
        sms:
          - {band: tue, price: "1"}
          - {price: "2"}
    """
    rows = rate(tmp_path, catalog, [
        cdr("c", "2024-01-09T04:59:59Z", 1, service="sms"),        # Mon 23:59:59 EST -> 2
        cdr("d", "2024-01-09T05:00:00Z", 1, service="sms"),        # Tue 00:00 EST -> 1
        cdr("e", "2024-01-09T23:59:59-05:00", 1, service="sms"),   # Tue 23:59:59 -> 1
        cdr("f", "2024-01-10T10:44:59+05:45", 1, service="sms"),   # 04:59:59Z: Tue 23:59:59 -> 1
        cdr("g", "2024-01-10T10:45:00+05:45", 1, service="sms"),   # 05:00Z: Wed 00:00 -> 2
    ])
    assert col(rows, "charge") == {"c": "2.0000", "d": "1.0000", "e": "1.0000", "f": "1.0000",
                                   "g": "2.0000"}
