"""Outside conformance checks: the real `ccs rate` / `ccs catalog check` against rating.md.

Every expected amount is computed by hand from the contract text (exact fractions in the
comments), never from the code; a case where ccs disagrees is an xfail(strict) naming the gap.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CCS = ROOT / ".venv" / "bin" / "ccs"
if not CCS.exists():
    CCS = Path(sys.executable).with_name("ccs")

HEADER = "cdr_id,account,service,start,usage,destination"
ADDED = ["status", "reason", "destination_name", "band", "rated_usage", "charge", "discount", "net_charge"]


def run_ccs(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([str(CCS), *map(str, args)], capture_output=True, text=True, timeout=300)


def run_rate(tmp_path: Path, catalog: str, rows: list[str], *, header: str = HEADER,
             tariff: str | None = "t", accounts: str | None = None, bcd: object = None,
             extra: tuple = ()) -> subprocess.CompletedProcess:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(textwrap.dedent(catalog))
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_text("\n".join([header, *rows]) + "\n")
    args: list[object] = ["rate", "--catalog", cat, "--cdrs", cdrs]
    if accounts is not None:
        acc = tmp_path / "accounts.csv"
        acc.write_text(textwrap.dedent(accounts).lstrip())
        args += ["--accounts", acc]
    else:
        args += ["--tariff", tariff]
    if bcd is not None:
        args += ["--bill-cycle-day", bcd]
    return run_ccs(*args, *extra)


def rate(tmp_path: Path, catalog: str, rows: list[str], **kw) -> list[dict[str, str]]:
    """Rate and return the output rows, in output order."""
    proc = run_rate(tmp_path, catalog, rows, **kw)
    assert proc.returncode == 0, proc.stderr
    return list(csv.DictReader(io.StringIO(proc.stdout)))


def by_id(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    ids = [r["cdr_id"] for r in rows]
    assert len(set(ids)) == len(ids), "use the row list when ids repeat"
    return {r["cdr_id"]: r for r in rows}


def col(rows: list[dict[str, str]], name: str) -> dict[str, str]:
    return {cid: r[name] for cid, r in by_id(rows).items()}


def cdr(cid: str, start: str, usage: object, dest: str = "", service: str = "voice",
        account: str = "x") -> str:
    return f"{cid},{account},{service},{start},{usage},{dest}"


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
# Rules 4 and 5: increments, charge, rounding once
# --------------------------------------------------------------------------------------------

INC_CATALOG = """\
currency: EUR
timezone: UTC
rounding: {decimals: 4, method: half_up}
destinations:
  A: ["1"]
  B: ["2"]
tariffs:
  t:
    voice:
      - {destination: A, price: "0.12", per: 60, increments: [60, 30], connect_fee: "0.05"}
      - {destination: B, price: "0.60", per: 60, increments: [30, 60]}
    sms:
      - {price: "0.09"}
"""


def test_increments_and_connect_fee(tmp_path):
    t = "2024-01-09T10:00:00Z"
    rows = rate(tmp_path, INC_CATALOG, [
        # A: rated = 60 if u <= 60 else 60 + ceil((u-60)/30)*30; charge = 0.05 + 0.12*rated/60
        cdr("u0", t, 0, "1"),     # 0 -> 0, no connect fee -> 0
        cdr("u1", t, 1, "1"),     # 60 -> 0.05 + 0.12 = 0.17
        cdr("u60", t, 60, "1"),   # usage == first -> 60 -> 0.17
        cdr("u61", t, 61, "1"),   # 60 + 30 = 90 -> 0.05 + 0.18 = 0.23
        cdr("u90", t, 90, "1"),   # 90 -> 0.23
        cdr("u91", t, 91, "1"),   # 120 -> 0.05 + 0.24 = 0.29
        cdr("u151", t, 151, "1"),  # 60 + ceil(91/30)=4 *30 = 180 -> 0.05 + 0.36 = 0.41
        # B: first 30 < next 60: 31 -> 30 + 60 = 90 -> 0.60*90/60 = 0.90; 90 -> 90; 91 -> 150
        cdr("b1", t, 1, "2"),     # 30 -> 0.30
        cdr("b31", t, 31, "2"),   # 90 -> 0.90
        cdr("b90", t, 90, "2"),   # 90 -> 0.90
        cdr("b91", t, 91, "2"),   # 150 -> 1.50
        cdr("s3", t, 3, "1", "sms"),  # defaults per 1, [1, 1]: 3 * 0.09 = 0.27
        cdr("s0", t, 0, "1", "sms"),  # 0
        # huge: u = 10^14 + 1 -> 60 + ceil((10^14 - 59)/30)*30 = 100000000000020 s,
        # charge = 0.05 + 0.002 * 100000000000020 = 200000000000.09 (price*rated alone is
        # 1.2e19 micro-units, beyond int64: the contract says "computed exactly")
        cdr("big", t, 10**14 + 1, "1"),
    ])
    assert col(rows, "rated_usage") == {
        "u0": "0", "u1": "60", "u60": "60", "u61": "90", "u90": "90", "u91": "120", "u151": "180",
        "b1": "30", "b31": "90", "b90": "90", "b91": "150", "s3": "3", "s0": "0",
        "big": "100000000000020"}
    assert col(rows, "charge") == {
        "u0": "0.0000", "u1": "0.1700", "u60": "0.1700", "u61": "0.2300", "u90": "0.2300",
        "u91": "0.2900", "u151": "0.4100", "b1": "0.3000", "b31": "0.9000", "b90": "0.9000",
        "b91": "1.5000", "s3": "0.2700", "s0": "0.0000", "big": "200000000000.0900"}
    assert by_id(rows)["u0"]["status"] == "rated"
    assert col(rows, "net_charge") == col(rows, "charge")


ROUND_CATALOG = """\
currency: EUR
timezone: UTC
rounding: {{decimals: {dec}, method: {method}}}
destinations:
  T1: ["1"]
  T2: ["2"]
  T3: ["3"]
  T4: ["4"]
  T5: ["5"]
  T6: ["6"]
  T7: ["7"]
  T8: ["8"]
tariffs:
  t:
    voice:
      - {{destination: T1, price: "0.005"}}
      - {{destination: T2, price: "0.01", per: 3}}
      - {{destination: T3, price: "0.02", per: 3}}
      - {{destination: T4, price: "0.004", connect_fee: "0.004"}}
      - {{destination: T5, price: "0.015"}}
      - {{destination: T6, price: "0.000001", per: 200}}
      - {{destination: T7, price: "0.000001", per: 2}}
      - {{destination: T8, price: "2.5"}}
"""

#            T1 0.005  T2 1/300  T3 2/300  T4 0.004+0.004  T5 0.015  T6 1/200000000
EXPECTED_2_PLACES = {
    "half_up": ["0.01", "0.00", "0.01", "0.01", "0.02", "0.00"],
    "up":      ["0.01", "0.01", "0.01", "0.01", "0.02", "0.01"],
    "down":    ["0.00", "0.00", "0.00", "0.00", "0.01", "0.00"],
}


@pytest.mark.parametrize("method", ["half_up", "up", "down"])
def test_charge_rounded_once(tmp_path, method):
    # usage 1 everywhere. T4: rounded once 0.008 -> half_up 0.01 (twice would give 0.00).
    # T6: 0.000001/200 = 5e-9, below a micro-unit: exact arithmetic still rounds "up" to 0.01.
    rows = rate(tmp_path, ROUND_CATALOG.format(dec=2, method=method),
                [cdr(f"c{i}", "2024-01-09T10:00:00Z", 1, str(i)) for i in range(1, 7)])
    assert [r["charge"] for r in rows] == EXPECTED_2_PLACES[method]


@pytest.mark.parametrize("method,t7,t8", [("half_up", "0.000001", "3"), ("up", "0.000001", "3"),
                                          ("down", "0.000000", "2")])
def test_rounding_ties_at_6_and_0_places(tmp_path, method, t7, t8):
    # T7: 0.000001 * 1 / 2 = 0.0000005 exactly, a tie at 6 places.
    rows = rate(tmp_path, ROUND_CATALOG.format(dec=6, method=method),
                [cdr("t7", "2024-01-09T10:00:00Z", 1, "7")])
    assert rows[0]["charge"] == t7
    # T8: 2.5 at 0 places: a tie; the decimal string has 0 places (no point).
    rows = rate(tmp_path, ROUND_CATALOG.format(dec=0, method=method),
                [cdr("t8", "2024-01-09T10:00:00Z", 1, "8"), cdr("z", "2024-01-09T10:00:00Z", 0, "8")])
    assert [(r["charge"], r["discount"], r["net_charge"]) for r in rows] == [(t8, "0", t8), ("0", "0", "0")]


# --------------------------------------------------------------------------------------------
# Rule 6: graduated tiers
# --------------------------------------------------------------------------------------------

TIER_CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  A: ["49"]
tariffs:
  t:
    data:
      - tiers: [{upto: 10, price: "1"}, {upto: 20, price: "2"}, {price: "3"}]
    voice:
      - {destination: A, tiers: [{upto: 10, price: "1"}, {upto: 20, price: "2"}, {price: "3"}]}
"""

TIER_ROWS = [
    # shuffled on purpose; per 1, increments [1, 1]
    cdr("d4", "2024-01-09T10:03:00Z", 1, service="data"),
    cdr("y1", "2024-01-09T10:02:30Z", 3, service="data", account="y"),
    cdr("d2", "2024-01-09T10:01:00Z", 10, service="data"),
    cdr("v1", "2024-01-09T10:00:30Z", 3, "49"),
    cdr("d3", "2024-01-09T10:02:00Z", 10, service="data"),
    cdr("d1", "2024-01-09T10:00:00Z", 5, service="data"),
    cdr("z1", "2024-01-09T10:05:00Z", 25, service="data", account="z"),
    # same instant: ties by cdr_id, "a" before "b" whatever the file order
    cdr("b", "2024-01-09T10:00:00Z", 8, service="data", account="w"),
    cdr("a", "2024-01-09T10:00:00Z", 8, service="data", account="w"),
    # same instant written with two offsets: also a tie, so "p" before "q"
    cdr("q", "2024-01-09T10:00:00Z", 8, service="data", account="v"),
    cdr("p", "2024-01-09T11:00:00+01:00", 8, service="data", account="v"),
    # r1 is earlier (08:30Z) although its text sorts after r2's
    cdr("r2", "2024-01-09T09:00:00Z", 8, service="data", account="u"),
    cdr("r1", "2024-01-09T10:30:00+02:00", 8, service="data", account="u"),
    # rows that are not rated never accumulate
    cdr("d1", "2024-01-09T09:00:00Z", 100, service="data"),        # duplicate of d1
    cdr("m1", "2024-01-09T09:00:00Z", "x", service="data"),        # malformed usage
    cdr("n1", "2024-01-09T09:00:00Z", 100, "", service="voice"),   # no_rate (empty number)
]
TIER_EXPECTED = {
    "d1": "5.0000",   # x/data 0..5 at 1 = 5
    "d2": "15.0000",  # 5..15: 5*1 + 5*2 = 15
    "d3": "25.0000",  # 15..25: 5*2 + 5*3 = 25
    "d4": "3.0000",   # 25..26: 3
    "y1": "3.0000",   # other account: 0..3 = 3
    "v1": "3.0000",   # other service: 0..3 = 3
    "z1": "45.0000",  # all three tiers in one CDR: 10*1 + 10*2 + 5*3 = 45
    "a": "8.0000",    # 0..8 = 8
    "b": "14.0000",   # 8..16: 2*1 + 6*2 = 14
    "p": "8.0000",
    "q": "14.0000",
    "r1": "8.0000",
    "r2": "14.0000",
    "m1": "0.0000",
    "n1": "0.0000",
}


def _tier_charges(rows):
    first = {}
    for r in rows:
        first.setdefault(r["cdr_id"], r["charge"])
    return first


def test_tiers_accumulate_in_start_order_per_account_and_service(tmp_path):
    rows = rate(tmp_path, TIER_CATALOG, TIER_ROWS)
    assert _tier_charges(rows) == TIER_EXPECTED
    statuses = [(r["cdr_id"], r["status"]) for r in rows]
    assert statuses.count(("d1", "duplicate")) == 1 and statuses.count(("d1", "rated")) == 1
    assert statuses.index(("d1", "rated")) < statuses.index(("d1", "duplicate"))


@pytest.mark.parametrize("order", ["reversed", "rotated"])
def test_file_order_never_matters(tmp_path, order):
    # rule 8: the same CDR set in any order rates the same (the duplicate d1 stays after the
    # first d1, since which copy is the duplicate is defined by file order)
    rows = [r for r in TIER_ROWS if not (r.startswith("d1,") and ",100," in r)]
    rows = rows[::-1] if order == "reversed" else rows[7:] + rows[:7]
    rows.append(cdr("d1", "2024-01-09T09:00:00Z", 100, service="data"))
    assert _tier_charges(rate(tmp_path, TIER_CATALOG, rows)) == TIER_EXPECTED


def test_tier_accumulator_counts_rated_usage_and_rounds_once(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    rounding: {decimals: 2, method: half_up}
    tariffs:
      t:
        data:
          - {increments: [10, 10], tiers: [{upto: 10, price: "1"}, {price: "2"}]}
        sms:
          - {connect_fee: "0.002", tiers: [{upto: 1, price: "0.004"}, {price: "0.004"}]}
    """
    rows = rate(tmp_path, catalog, [
        cdr("e1", "2024-01-09T10:00:00Z", 1, service="data"),  # rated 10: 0..10 at 1 = 10.00
        cdr("e2", "2024-01-09T10:01:00Z", 1, service="data"),  # rated 10: 10..20 at 2 = 20.00
        # 0.002 + 1*0.004 + 1*0.004 = 0.010 -> 0.01 (each part rounded alone: 0.00)
        cdr("s1", "2024-01-09T10:00:00Z", 2, service="sms"),
    ])
    assert col(rows, "charge") == {"e1": "10.00", "e2": "20.00", "s1": "0.01"}


def test_tiers_per_mib_worked_example(tmp_path):
    catalog = """\
    currency: EUR
    timezone: Europe/Berlin
    rounding: {decimals: 4, method: half_up}
    tariffs:
      t:
        data:
          - per: 1048576
            increments: [1024, 1024]
            tiers:
              - {upto: 1073741824, price: "0.0100"}
              - {price: "0.0020"}
    """
    rows = rate(tmp_path, catalog, [
        # 1,073,000,000 B -> rated ceil(/1024)*1024 = 1,073,000,448; 0.01*that/2^20 =
        # 10.2329296875 -> 10.2329
        cdr("c1", "2024-01-09T10:00:00Z", 1073000000, service="data"),
        # 1,500,000 B -> 1,500,160; 741,376 below 1 GiB at 0.01, 758,784 above at 0.002:
        # (0.01*741376 + 0.002*758784)/1048576 = 4361/512000 = 0.008517578125 -> 0.0085
        cdr("c2", "2024-01-09T11:00:00Z", 1500000, service="data"),
    ])
    assert col(rows, "rated_usage") == {"c1": "1073000448", "c2": "1500160"}
    assert col(rows, "charge") == {"c1": "10.2329", "c2": "0.0085"}


# --------------------------------------------------------------------------------------------
# Rule 7: step discounts
# --------------------------------------------------------------------------------------------

DISC_CATALOG = """\
currency: EUR
timezone: UTC
rounding: {{decimals: {dec}, method: {method}}}
destinations:
  A: ["49"]
tariffs:
  t:
    voice:
      - {{destination: A, price: "{price}", per: {per}, increments: [{first}, {first}]}}
    sms:
      - {{price: "0.5"}}
discounts:
  loyal:
    service: voice
    basis: usage
    tiers:
      - {{from: 0, percent: "0"}}
      - {{from: 100, percent: "10"}}
      - {{from: 200, percent: "25"}}
  money:
    service: voice
    basis: charge
    tiers:
      - {{from: "0", percent: "0"}}
      - {{from: "1.00", percent: "50"}}
      - {{from: "1.40", percent: "100"}}
  half:
    service: voice
    tiers: [{{from: 0, percent: "50"}}]
  eighth:
    service: voice
    tiers: [{{from: 0, percent: "12.5"}}]
  tenth:
    service: voice
    tiers: [{{from: 0, percent: "10"}}]
  tiny:
    service: voice
    basis: charge
    tiers: [{{from: "0", percent: "0"}}, {{from: "0.01", percent: "100"}}]
  sixty:
    service: voice
    tiers: [{{from: 0, percent: "60"}}]
"""


def disc_catalog(dec=4, method="half_up", price="1", per=1, first=1):
    return DISC_CATALOG.format(dec=dec, method=method, price=price, per=per, first=first)


ACCOUNTS = """\
account,tariff,discounts
x,t,loyal
y,t,
z,t,loyal
m,t,money
h,t,half
e,t,eighth
k,t,tenth
s,t,tiny
"""


def trio(rows):
    return {cid: (r["charge"], r["discount"], r["net_charge"]) for cid, r in by_id(rows).items()}


def test_discount_step_basis_usage_stands_before_the_cdr(tmp_path):
    rows = rate(tmp_path, disc_catalog(), [
        cdr("c3", "2024-01-09T10:02:00Z", 60, "49"),
        cdr("c1", "2024-01-09T10:00:00Z", 100, "49"),
        cdr("s1", "2024-01-09T10:04:00Z", 1, "49", "sms"),
        cdr("c4", "2024-01-09T10:03:00Z", 1, "49"),
        cdr("c2", "2024-01-09T10:01:00Z", 50, "49"),
        cdr("y1", "2024-01-09T10:00:00Z", 100, "49", account="y"),
        cdr("y2", "2024-01-09T10:01:00Z", 50, "49", account="y"),
        cdr("z1", "2024-01-09T10:05:00Z", 50, "49", account="z"),
        cdr("c0", "2024-01-09T09:00:00Z", 0, "49"),
    ], accounts=ACCOUNTS)
    assert trio(rows) == {
        "c0": ("0.0000", "0.0000", "0.0000"),      # usage 0: basis 0
        "c1": ("100.0000", "0.0000", "100.0000"),  # stands 0 -> 0 %; basis 100
        "c2": ("50.0000", "5.0000", "45.0000"),    # stands 100 (from inclusive) -> 10 %; 150
        "c3": ("60.0000", "6.0000", "54.0000"),    # stands 150 -> 10 % for the whole CDR; 210
        "c4": ("1.0000", "0.2500", "0.7500"),      # stands 210 -> 25 %
        "s1": ("0.5000", "0.0000", "0.5000"),      # sms: the voice discount does not apply
        "y1": ("100.0000", "0.0000", "100.0000"),  # no discount listed for y
        "y2": ("50.0000", "0.0000", "50.0000"),
        "z1": ("50.0000", "0.0000", "50.0000"),    # z has its own basis: stands 0
    }


def test_discount_basis_usage_counts_rated_usage(tmp_path):
    # price 0.60 per 60, increments [60, 60]: usage 1 rates to 60 s, charge 0.60.
    # basis 0 -> 60 -> 120: the third CDR stands at 120 >= 100 -> 10 %, 0.06
    # (counting raw usage the basis would be 2 and the discount 0)
    rows = rate(tmp_path, disc_catalog(price="0.60", per=60, first=60), [
        cdr(f"c{i}", f"2024-01-09T10:0{i}:00Z", 1, "49") for i in range(1, 4)
    ], accounts=ACCOUNTS)
    assert trio(rows) == {"c1": ("0.6000", "0.0000", "0.6000"), "c2": ("0.6000", "0.0000", "0.6000"),
                          "c3": ("0.6000", "0.0600", "0.5400")}


def test_discount_basis_charge_accumulates_charge_after_tariff(tmp_path):
    # price 0.30 per 1, 2 places.
    rows = rate(tmp_path, disc_catalog(dec=2, price="0.30"), [
        cdr("c1", "2024-01-09T10:00:00Z", 4, "49", account="m"),  # 1.20, stands 0 -> 0 %
        cdr("c2", "2024-01-09T10:01:00Z", 1, "49", account="m"),  # 0.30, stands 1.20 -> 50 %: 0.15
        # the basis grows by the charge (0.30), not the net (0.15): stands 1.50 -> 100 %
        cdr("c3", "2024-01-09T10:02:00Z", 1, "49", account="m"),
    ], accounts=ACCOUNTS)
    assert trio(rows) == {"c1": ("1.20", "0.00", "1.20"), "c2": ("0.30", "0.15", "0.15"),
                          "c3": ("0.30", "0.30", "0.00")}


def test_discount_basis_charge_uses_the_rounded_charge(tmp_path):
    # price 0.01 per 3 -> each 1-unit CDR is 1/300 -> 0.00 at 2 places. The charge of rule 5 is
    # the rounded amount, so the basis stays 0.00 and the 3-unit CDR (0.01) stands below 0.01.
    catalog = disc_catalog(dec=2, price="0.01", per=3)
    rows = rate(tmp_path, catalog, [
        cdr("a1", "2024-01-09T10:00:00Z", 1, "49", account="s"),
        cdr("a2", "2024-01-09T10:01:00Z", 1, "49", account="s"),
        cdr("a3", "2024-01-09T10:02:00Z", 1, "49", account="s"),
        cdr("a4", "2024-01-09T10:03:00Z", 3, "49", account="s"),
    ], accounts=ACCOUNTS)
    assert trio(rows)["a4"] == ("0.01", "0.00", "0.01")


@pytest.mark.parametrize("method,expected", [
    # price 0.02 per 60, 100 s: charge 1/30 = 0.03333..; discount 10 % of the ROUNDED charge
    ("half_up", ("0.0333", "0.0033", "0.0300")),  # 0.00333 -> 0.0033
    ("up", ("0.0334", "0.0034", "0.0300")),       # 0.00334 -> 0.0034
    ("down", ("0.0333", "0.0033", "0.0300")),     # 0.00333 -> 0.0033
])
def test_discount_rounding(tmp_path, method, expected):
    rows = rate(tmp_path, disc_catalog(method=method, price="0.02", per=60),
                [cdr("c", "2024-01-09T10:00:00Z", 100, "49", account="k")], accounts=ACCOUNTS)
    assert trio(rows)["c"] == expected


@pytest.mark.parametrize("method,expected", [
    ("half_up", ("0.0005", "0.0003", "0.0002")),  # 50 % of 0.0005 = 0.00025: a tie
    ("up", ("0.0005", "0.0003", "0.0002")),
    ("down", ("0.0005", "0.0002", "0.0003")),
])
def test_discount_rounding_ties(tmp_path, method, expected):
    rows = rate(tmp_path, disc_catalog(method=method, price="0.0005"),
                [cdr("c", "2024-01-09T10:00:00Z", 1, "49", account="h")], accounts=ACCOUNTS)
    assert trio(rows)["c"] == expected


def test_discount_is_on_the_rounded_charge_and_fractional_percent(tmp_path):
    # 2 places: 0.006 -> charge 0.01; 50 % of 0.01 = 0.005 -> 0.01 (of the exact 0.006 it
    # would be 0.003 -> 0.00); net 0.00
    rows = rate(tmp_path, disc_catalog(dec=2, price="0.006"),
                [cdr("c", "2024-01-09T10:00:00Z", 1, "49", account="h")], accounts=ACCOUNTS)
    assert trio(rows)["c"] == ("0.01", "0.01", "0.00")
    # 12.5 % of 1.00 = 0.125 -> 0.13 half_up, 0.12 down
    for method, disc, net in [("half_up", "0.13", "0.87"), ("down", "0.12", "0.88")]:
        rows = rate(tmp_path, disc_catalog(dec=2, method=method, price="1"),
                    [cdr("c", "2024-01-09T10:00:00Z", 1, "49", account="e")], accounts=ACCOUNTS)
        assert trio(rows)["c"] == ("1.00", disc, net)


def test_two_discounts_on_one_service(tmp_path):
    # The contract applies each listed discount (rule 7) but does not say how two combine;
    # ccs caps their sum at the charge (docs/catalog.md).
    accounts = "account,tariff,discounts\nr,t,sixty;tenth\nq,t,sixty;half\n"
    rows = rate(tmp_path, disc_catalog(dec=2), [
        cdr("r", "2024-01-09T10:00:00Z", 1, "49", account="r"),  # 0.60 + 0.10 = 0.70
        cdr("q", "2024-01-09T10:00:00Z", 1, "49", account="q"),  # 0.60 + 0.50 = 1.10 -> cap 1.00
    ], accounts=accounts)
    assert trio(rows) == {"r": ("1.00", "0.70", "0.30"), "q": ("1.00", "1.00", "0.00")}


# --------------------------------------------------------------------------------------------
# Rule 3: the order of the checks; malformed rows; duplicates
# --------------------------------------------------------------------------------------------

CHECK_CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  A: ["49"]
time_bands:
  peak: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}
tariffs:
  t:
    voice:
      - {destination: A, band: peak, price: "1"}
    sms:
      - {price: "2"}
"""
CHECK_ACCOUNTS = "account,tariff,discounts\nx,t,\n"
T = "2024-01-09T10:00:00Z"      # Tuesday 11:00 Berlin: peak
SAT = "2024-01-13T10:00:00Z"    # Saturday: no band


def test_check_order_of_reasons(tmp_path):
    rows = rate(tmp_path, CHECK_CATALOG, [
        cdr("d1", T, 1, "49"),                                 # rated, 1
        cdr("d1", T, 1, "33", "bogus", account="zz"),          # duplicate beats unknown_account
        cdr("d1", "notatime", 1, "49"),                        # malformed beats duplicate
        cdr("u1", T, 1, "33", "bogus", account="zz"),          # unknown_account beats the rest
        cdr("s1", T, 1, "33", "bogus"),                        # unknown_service before no_destination
        cdr("s2", T, 1, "33", "data"),                         # data is not in tariff t
        cdr("n1", SAT, 1, "33"),                               # no_destination before no_rate
        cdr("n2", T, 1, "33", "sms"),                          # no prefix: rule 1 even for sms
        cdr("r1", SAT, 1, "49"),                               # no band at all -> no_rate
        cdr("r2", T, 1, ""),                                   # voice without number -> no_rate
        cdr("u1", T, 1, "49"),                                 # id already seen (rejected): duplicate
        cdr("ok", T, 1, "33", "sms") .replace(",33", ",49"),   # sms, any destination -> 2
    ], accounts=CHECK_ACCOUNTS)
    got = [(r["cdr_id"], r["status"], r["reason"], r["net_charge"]) for r in rows]
    assert got == [
        ("d1", "rated", "", "1.0000"),
        ("d1", "duplicate", "duplicate", "0.0000"),
        ("d1", "rejected", "malformed:start", "0.0000"),
        ("u1", "rejected", "unknown_account", "0.0000"),
        ("s1", "rejected", "unknown_service", "0.0000"),
        ("s2", "rejected", "unknown_service", "0.0000"),
        ("n1", "rejected", "no_destination", "0.0000"),
        ("n2", "rejected", "no_destination", "0.0000"),
        ("r1", "rejected", "no_rate", "0.0000"),
        ("r2", "rejected", "no_rate", "0.0000"),
        ("u1", "duplicate", "duplicate", "0.0000"),
        ("ok", "rated", "", "2.0000"),
    ]


MALFORMED = [
    # (row, column named in the reason)
    (",x,voice,2024-01-09T10:00:00Z,1,49", "cdr_id"),
    ("m2,,voice,2024-01-09T10:00:00Z,1,49", "account"),
    ("m3,x,,2024-01-09T10:00:00Z,1,49", "service"),
    ("m4,x,voice,2024-01-09T10:00:00,1,49", "start"),         # no offset
    ("m5,x,voice,2024-02-30T10:00:00Z,1,49", "start"),        # no such day
    ("m6,x,voice,yesterday,1,49", "start"),
    ("m7,x,voice,,1,49", "start"),
    ("m8,x,voice,2024-01-09T10:00:00Z,-1,49", "usage"),
    ("m9,x,voice,2024-01-09T10:00:00Z,1.5,49", "usage"),
    ("m10,x,voice,2024-01-09T10:00:00Z,,49", "usage"),
    ("m11,x,voice,2024-01-09T10:00:00Z,ten,49", "usage"),
    ("m12,x,voice,2024-01-09T10:00:00Z,1,49x", "destination"),
    ("m13,x,voice,2024-01-09T10:00:00Z,1,+49", "destination"),
    ('m14,x,voice,2024-01-09T10:00:00Z,1,"4,9"', "destination"),
    ("m15,,,2024-01-09T10:00:00Z,1,49", "account"),           # first bad column in file order
]


def test_malformed_rows_name_the_column(tmp_path):
    rows = rate(tmp_path, CHECK_CATALOG, [row for row, _ in MALFORMED], accounts=CHECK_ACCOUNTS)
    assert len(rows) == len(MALFORMED)
    for r, (row, column) in zip(rows, MALFORMED, strict=True):
        assert (r["status"], r["reason"]) == ("rejected", f"malformed:{column}"), row
        assert (r["charge"], r["discount"], r["net_charge"], r["rated_usage"]) == \
            ("0.0000", "0.0000", "0.0000", "0"), row


def test_malformed_rows_never_change_other_rows(tmp_path):
    good = [
        cdr("g1", "2024-01-09T10:00:00Z", 5, service="data"),
        cdr("g2", "2024-01-09T10:01:00Z", 10, service="data"),
        cdr("g3", "2024-01-09T10:02:00Z", 10, service="data"),
    ]
    bad = [
        cdr("g1", "2024-01-09T09:00:00", 100, service="data"),   # same id, naive start
        cdr("g0", "2024-01-09T09:00:00Z", "1e3", service="data"),
        cdr("g4", "2024-01-09T09:00:00Z", 100, "4x", service="data"),
        "g5,x,data,2024-01-09T09:00:00Z",                        # too few fields
    ]
    mixed = [bad[0], good[0], bad[1], good[1], bad[2], bad[3], good[2]]
    # rated alone: 5 at 1 = 5; 5..15 = 5 + 10 = 15; 15..25 = 10 + 15 = 25
    rows = rate(tmp_path, TIER_CATALOG, mixed)
    assert [(r["cdr_id"], r["status"], r["charge"]) for r in rows] == [
        ("g1", "rejected", "0.0000"),
        ("g1", "rated", "5.0000"),   # a malformed row with the same id does not make it a duplicate
        ("g0", "rejected", "0.0000"),
        ("g2", "rated", "15.0000"),
        ("g4", "rejected", "0.0000"),
        ("g5", "rejected", "0.0000"),
        ("g3", "rated", "25.0000"),
    ]
    assert [r["reason"] for r in rows if r["status"] == "rejected"] == [
        "malformed:start", "malformed:usage", "malformed:destination", "malformed:usage"]


def test_duplicate_is_the_later_row_in_the_file(tmp_path):
    # the second "d" starts earlier but comes later in the file: it is the duplicate, so the
    # first "d" is rated and accumulates (0..5 -> 5), and "e" stands at 5 (5..15 -> 5 + 10)
    rows = rate(tmp_path, TIER_CATALOG, [
        cdr("d", "2024-01-09T10:00:00Z", 5, service="data"),
        cdr("e", "2024-01-09T10:01:00Z", 10, service="data"),
        cdr("d", "2024-01-09T08:00:00Z", 20, service="data"),
    ])
    assert [(r["status"], r["charge"]) for r in rows] == [
        ("rated", "5.0000"), ("rated", "15.0000"), ("duplicate", "0.0000")]


# --------------------------------------------------------------------------------------------
# Output file
# --------------------------------------------------------------------------------------------

def test_output_columns_and_decimal_places(tmp_path):
    catalog = INC_CATALOG.replace("decimals: 4", "decimals: 3")
    header = "note,cdr_id,account,service,start,usage,destination"
    proc = run_rate(tmp_path, catalog, [
        "keep me,a,x,voice,2024-01-09T10:00:00Z,61,1",   # 0.23 -> 0.230
        "  ,b,x,voice,2024-01-09T10:00:00Z,0,1",         # 0 -> 0.000
        "c3,c,x,sms,2024-01-09T10:00:00.250+01:00,1,2",  # 0.09 -> 0.090
    ], header=header, extra=("--out", tmp_path / "out.csv"))
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "out.csv").read_text()
    reader = csv.reader(io.StringIO(text))
    head = next(reader)
    assert head[:7] == header.split(",")       # input columns first, in their order
    assert set(ADDED) <= set(head[7:])
    rows = [dict(zip(head, r, strict=True)) for r in reader]
    assert [(r["note"], r["start"], r["usage"], r["destination"]) for r in rows] == [
        ("keep me", "2024-01-09T10:00:00Z", "61", "1"),
        ("  ", "2024-01-09T10:00:00Z", "0", "1"),
        ("c3", "2024-01-09T10:00:00.250+01:00", "1", "2")]
    assert [(r["status"], r["reason"], r["destination_name"], r["band"], r["rated_usage"], r["charge"],
             r["discount"], r["net_charge"]) for r in rows] == [
        ("rated", "", "A", "", "90", "0.230", "0.000", "0.230"),
        ("rated", "", "A", "", "0", "0.000", "0.000", "0.000"),
        ("rated", "", "B", "", "1", "0.090", "0.000", "0.090")]


# --------------------------------------------------------------------------------------------
# Rule 9 and billing.md "Cycles": --bill-cycle-day
# --------------------------------------------------------------------------------------------

CYCLE_CATALOG = """\
currency: EUR
timezone: {tz}
rounding: {{decimals: 4, method: half_up}}
destinations:
  A: ["49"]
tariffs:
  t:
    data:
      - tiers: [{{upto: 10, price: "1"}}, {{price: "2"}}]
    voice:
      - {{destination: A, price: "1"}}
discounts:
  loyal:
    service: voice
    tiers: [{{from: 0, percent: "0"}}, {{from: 100, percent: "10"}}]
"""


def data(cid, start, usage):
    return cdr(cid, start, usage, service="data")


def test_cycle_day_resets_tiers_at_local_midnight(tmp_path):
    catalog = CYCLE_CATALOG.format(tz="Europe/Berlin")
    rows = [
        data("a", "2024-01-14T22:59:59Z", 10),  # 14 Jan 23:59:59 CET: cycle 2023-12 -> 10
        data("b", "2024-01-14T23:00:00Z", 10),  # 15 Jan 00:00 CET: cycle 2024-01 starts -> 10
        data("c", "2024-01-20T00:00:00Z", 5),   # 10..15 at 2 -> 10
    ]
    assert col(rate(tmp_path, catalog, rows, bcd=15), "charge") == {
        "a": "10.0000", "b": "10.0000", "c": "10.0000"}
    # without a cycle day the file is one cycle: b stands at 10 -> 20, c at 20 -> 10
    assert col(rate(tmp_path, catalog, rows), "charge") == {
        "a": "10.0000", "b": "20.0000", "c": "10.0000"}


def test_cycle_day_31_in_february_and_across_dst(tmp_path):
    # d = 31: cycle 2024-01 starts 31 Jan 00:00 CET (30 Jan 23:00Z); 2024-02 on min(31, 29) =
    # 29 Feb 00:00 CET (28 Feb 23:00Z); 2024-03 on 31 Mar 00:00 (still CET: DST starts at
    # 02:00 that day, so 30 Mar 23:00Z); 2024-04 on 30 Apr 00:00 CEST (29 Apr 22:00Z).
    catalog = CYCLE_CATALOG.format(tz="Europe/Berlin")
    rows = rate(tmp_path, catalog, [
        data("f1", "2024-01-30T22:59:59Z", 10),  # cycle 2023-12: 10
        data("f2", "2024-01-30T23:00:00Z", 10),  # cycle 2024-01: 0..10 -> 10
        data("f3", "2024-02-28T22:59:59Z", 1),   # still 2024-01: 10..11 at 2 -> 2
        data("f4", "2024-02-28T23:00:00Z", 1),   # 2024-02: 1
        data("f5", "2024-03-30T22:59:59Z", 10),  # 2024-02: 1..11: 9*1 + 1*2 = 11
        data("f6", "2024-03-30T23:00:00Z", 1),   # 2024-03: 1
        data("f7", "2024-04-29T21:59:59Z", 10),  # 2024-03: 1..11 -> 11
        data("f8", "2024-04-29T22:00:00Z", 1),   # 2024-04: 1
    ], bcd=31)
    assert col(rows, "charge") == {
        "f1": "10.0000", "f2": "10.0000", "f3": "2.0000", "f4": "1.0000", "f5": "11.0000",
        "f6": "1.0000", "f7": "11.0000", "f8": "1.0000"}
    # d = 30 in a common year: 2025-01 starts 30 Jan (29 Jan 23:00Z), 2025-02 on 28 Feb
    # (27 Feb 23:00Z). d = 27 in October 2024: 27 Oct 00:00 CEST = 26 Oct 22:00Z, the day the
    # clocks go back.
    rows = rate(tmp_path, catalog, [
        data("g0", "2025-01-29T23:00:00Z", 1),   # 2025-01: 1
        data("g1", "2025-02-27T22:59:59Z", 10),  # 2025-01: 1..11 -> 11
        data("g2", "2025-02-27T23:00:00Z", 1),   # 2025-02: 1
    ], bcd=30)
    assert col(rows, "charge") == {"g0": "1.0000", "g1": "11.0000", "g2": "1.0000"}
    rows = rate(tmp_path, catalog, [
        data("h0", "2024-10-26T21:00:00Z", 10),  # cycle 2024-09: 10
        data("h1", "2024-10-26T21:59:59Z", 1),   # 10..11 -> 2
        data("h2", "2024-10-26T22:00:00Z", 1),   # 27 Oct 00:00 CEST: 2024-10 -> 1
        data("h3", "2024-11-26T22:59:59Z", 10),  # 26 Nov 23:59:59 CET: 2024-10, 1..11 -> 11
        data("h4", "2024-11-26T23:00:00Z", 1),   # 27 Nov 00:00 CET: 2024-11 -> 1
    ], bcd=27)
    assert col(rows, "charge") == {"h0": "10.0000", "h1": "2.0000", "h2": "1.0000",
                                   "h3": "11.0000", "h4": "1.0000"}


def test_cycle_day_in_other_zones_and_discount_reset(tmp_path):
    # Asia/Tokyo (UTC+9), d = 1: cycle 2024-02 starts 1 Feb 00:00 JST = 31 Jan 15:00Z.
    rows = rate(tmp_path, CYCLE_CATALOG.format(tz="Asia/Tokyo"), [
        data("t0", "2024-01-31T14:59:59Z", 10),  # 2024-01: 10
        data("t1", "2024-01-31T15:00:00Z", 1),   # 2024-02: 1
    ], bcd=1)
    assert col(rows, "charge") == {"t0": "10.0000", "t1": "1.0000"}
    # America/Santiago skips midnight on 2026-09-06 (00:00 -04 -> 01:00 -03): whichever way
    # the day's start is read, it is the instant 04:00Z.
    rows = rate(tmp_path, CYCLE_CATALOG.format(tz="America/Santiago"), [
        data("s0", "2026-09-06T03:59:59Z", 10),  # 5 Sep 23:59:59 -04: cycle 2026-08 -> 10
        data("s1", "2026-09-06T04:00:00Z", 1),   # cycle 2026-09 -> 1
    ], bcd=6)
    assert col(rows, "charge") == {"s0": "10.0000", "s1": "1.0000"}
    # the discount basis restarts too: 100 s in cycle 2023-12, then the next CDR stands at 0
    accounts = "account,tariff,discounts\nx,t,loyal\n"
    catalog = CYCLE_CATALOG.format(tz="Europe/Berlin")
    cdrs = [cdr("k1", "2024-01-14T22:00:00Z", 100, "49"), cdr("k2", "2024-01-14T23:00:00Z", 10, "49")]
    assert trio(rate(tmp_path, catalog, cdrs, accounts=accounts, bcd=15))["k2"] == \
        ("10.0000", "0.0000", "10.0000")
    assert trio(rate(tmp_path, catalog, cdrs, accounts=accounts))["k2"] == \
        ("10.0000", "1.0000", "9.0000")  # one cycle: stands at 100 -> 10 %


@pytest.mark.parametrize("day", ["0", "32", "x"])
def test_bad_cycle_day_is_refused(tmp_path, day):
    proc = run_rate(tmp_path, CYCLE_CATALOG.format(tz="UTC"), [data("a", T, 1)], bcd=day)
    assert proc.returncode == 2 and proc.stdout == ""


# --------------------------------------------------------------------------------------------
# Money in the catalog
# --------------------------------------------------------------------------------------------

VALID = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
tariffs:
  t:
    sms:
      - {price: "0.123456", connect_fee: "0.000001"}
"""


@pytest.mark.parametrize("bad,field", [
    ('price: "0.1234567"', "price"),          # 7 decimals
    ("price: 0.09", "price"),                 # a YAML float
    ('connect_fee: "0.0000001"', "connect_fee"),
    ("connect_fee: 0.05", "connect_fee"),
])
def test_catalog_check_refuses_more_than_6_decimals_and_floats(tmp_path, bad, field):
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    assert run_ccs("catalog", "check", good).returncode == 0
    key = bad.split(":")[0]
    line = '      - {price: "0.123456", connect_fee: "0.000001"}'
    new = line.replace(f'{key}: "0.123456"' if key == "price" else f'{key}: "0.000001"', bad)
    assert new != line
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace(line, new))
    proc = run_ccs("catalog", "check", path)
    assert proc.returncode != 0
    assert f"tariffs.t.sms[0].{field}" in proc.stdout + proc.stderr
    rated = run_rate(tmp_path, VALID.replace(line, new), [cdr("a", T, 1, service="sms")])
    assert rated.returncode == 2 and rated.stdout == ""


@pytest.mark.parametrize("bad", ["{decimals: 7, method: half_up}", "{decimals: 2, method: nearest}"])
def test_catalog_check_refuses_bad_rounding(tmp_path, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("{decimals: 4, method: half_up}", bad))
    proc = run_ccs("catalog", "check", path)
    assert proc.returncode != 0 and "rounding" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------
# More edges: exactness, prefixes, offsets, CSV dialect, duplicates, discount boundaries
# --------------------------------------------------------------------------------------------

def test_tier_parts_are_added_exactly_before_rounding(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    rounding: {decimals: 2, method: down}
    tariffs:
      t:
        data:
          - {per: 3, tiers: [{upto: 1, price: "0.01"}, {price: "0.02"}]}
    """
    # 0.01*1/3 + 0.02*1/3 = 0.01 exactly -> "down" keeps 0.01 (parts cut to micro-units first
    # would give 0.003333 + 0.006666 = 0.009999 -> 0.00)
    rows = rate(tmp_path, catalog, [data("a", T, 2)])
    assert rows[0]["charge"] == "0.01"


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


def test_csv_with_bom_crlf_quotes_and_other_column_order(tmp_path):
    cat = tmp_path / "catalog.yaml"
    cat.write_text(VALID.replace("tariffs:", 'destinations: {W: [""]}\ntariffs:'))
    cdrs = tmp_path / "cdrs.csv"
    cdrs.write_bytes(b"\xef\xbb\xbfusage,start,service,account,cdr_id,destination\r\n"
                     b'1,2024-01-09T10:00:00Z,sms,x,"q1",\r\n'
                     b'2,2024-01-09T10:00:00Z,"sms",x,q2,"49"\r\n')
    proc = run_ccs("rate", "--catalog", cat, "--cdrs", cdrs, "--tariff", "t")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    # 0.123456 * 1 + 0.000001 = 0.123457 -> 0.1235; 0.123456 * 2 + 0.000001 = 0.246913 -> 0.2469
    assert col(rows, "charge") == {"q1": "0.1235", "q2": "0.2469"}
    assert list(rows[0])[:6] == ["usage", "start", "service", "account", "cdr_id", "destination"]


def test_duplicate_id_on_another_account_is_a_duplicate(tmp_path):
    # cdr_id is unique in the file, not per account
    rows = rate(tmp_path, TIER_CATALOG, [data("i", T, 5), cdr("i", T, 5, service="data", account="y")])
    assert [r["status"] for r in rows] == ["rated", "duplicate"]


def test_discount_tier_from_is_inclusive_for_basis_charge(tmp_path):
    # price 0.25: 4 units = 1.00 exactly; the next CDR stands at 1.00 -> 50 %: 0.25 -> 0.13
    # (half_up of 0.125)
    rows = rate(tmp_path, disc_catalog(dec=2, price="0.25"), [
        cdr("c1", "2024-01-09T10:00:00Z", 4, "49", account="m"),
        cdr("c2", "2024-01-09T10:01:00Z", 1, "49", account="m"),
    ], accounts=ACCOUNTS)
    assert trio(rows) == {"c1": ("1.00", "0.00", "1.00"), "c2": ("0.25", "0.13", "0.12")}


# --------------------------------------------------------------------------------------------
# Where ccs disagrees with the contract
# --------------------------------------------------------------------------------------------

def test_sub_second_starts_are_ordered_by_time(tmp_path):
    rows = rate(tmp_path, TIER_CATALOG, [
        data("a", "2024-01-09T10:00:00.9Z", 8),  # later: 8..16 -> 2*1 + 6*2 = 14
        data("b", "2024-01-09T10:00:00.1Z", 8),  # earlier: 0..8 -> 8
    ])
    assert col(rows, "charge") == {"a": "14.0000", "b": "8.0000"}


@pytest.mark.xfail(strict=True, reason="a charge beyond int64 micro-units wraps around to a "
                   "wrong (negative) amount instead of being refused; rule 5 says exact")
def test_charge_beyond_int64_is_never_a_wrong_amount(tmp_path):
    catalog = """\
    currency: EUR
    timezone: UTC
    rounding: {decimals: 2, method: half_up}
    tariffs:
      t:
        sms:
          - {price: "1"}
    """
    # 1 * 10^13 = 10,000,000,000,000.00 = 10^19 micro-units > 2^63 - 1
    rows = rate(tmp_path, catalog, [cdr("c", T, 10**13, service="sms")])
    r = rows[0]
    assert r["status"] == "rejected" or r["charge"] == "10000000000000.00", r
