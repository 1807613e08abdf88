"""Conformance, rows and cycles: check order, malformed rows, duplicates, output file, cycles.

Outside conformance checks: the real `ccs rate` / `ccs catalog check` against rating.md. Every
expected amount is computed by hand from the contract text (exact fractions in the comments),
never from the code; a case where ccs disagrees is an xfail(strict) naming the gap. Running
`ccs rate` and shared catalogs: spec_ccs.py.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec_ccs import (  # noqa: E402
    ADDED,
    INC_CATALOG,
    TIER_CATALOG,
    VALID,
    T,
    cdr,
    col,
    data,
    rate,
    run_ccs,
    run_rate,
    trio,
)

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


def test_duplicate_id_on_another_account_is_a_duplicate(tmp_path):
    # cdr_id is unique in the file, not per account
    rows = rate(tmp_path, TIER_CATALOG, [data("i", T, 5), cdr("i", T, 5, service="data", account="y")])
    assert [r["status"] for r in rows] == ["rated", "duplicate"]


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
