"""`ccs rate` end to end: exact amounts, every rejection reason, garbage rows, exit codes."""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from billing.cli import register

ROOT = Path(__file__).resolve().parents[2]

CATALOG = """
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  DE_MOBILE: ["49151", "49160"]
  DE_FIXED: ["49"]
  US: ["1"]
time_bands:
  peak: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}
  offpeak: {}
tariffs:
  std:
    voice:
      - {destination: DE_MOBILE, band: peak, price: "0.1200", per: 60, increments: [60, 30], connect_fee: "0.0500"}
      - {destination: DE_MOBILE, price: "0.0600", per: 60, increments: [60, 1]}
      - {destination: DE_FIXED, price: "0.0200", per: 60, increments: [1, 1]}
    sms:
      - {price: "0.0900"}
    data:
      - per: 1048576
        increments: [1024, 1024]
        tiers:
          - {upto: 2097152, price: "0.0100"}
          - {price: "0.0020"}
discounts:
  loyal_voice:
    service: voice
    basis: usage
    tiers:
      - {from: 0, percent: "0"}
      - {from: 120, percent: "10"}
"""

ACCOUNTS = "account,tariff,discounts\nalice,std,loyal_voice\nbob,std,\n"

HEADER = "cdr_id,account,service,start,usage,destination\n"
# Good rows; expected (status, reason, destination_name, band, rated_usage, charge, discount, net)
GOOD = {
    # Monday 09:00 Berlin, peak: 60 + ceil(1/30)*30 = 90 s; 0.05 + 0.12 * 90/60 = 0.23
    "c1,alice,voice,2024-03-04T09:00:00+01:00,61,4915112345":
        ("rated", "", "DE_MOBILE", "peak", "90", "0.2300", "0.0000", "0.2300"),
    # 11:00 Berlin; 60 s; 0.05 + 0.12 = 0.17; basis before = 90 < 120: no discount
    "c2,alice,voice,2024-03-04T10:00:00Z,30,4915112345":
        ("rated", "", "DE_MOBILE", "peak", "60", "0.1700", "0.0000", "0.1700"),
    # Saturday: offpeak entry; 125 s * 0.06/60 = 0.125; basis 150 >= 120: 10% = 0.0125
    "c3,alice,voice,2024-03-09T12:00:00+01:00,125,4916099":
        ("rated", "", "DE_MOBILE", "offpeak", "125", "0.1250", "0.0125", "0.1125"),
    # 7 s * 0.02/60 = 0.002333.. -> 0.0023
    "c4,bob,voice,2024-03-04 09:00:00+0100,7,4930123":
        ("rated", "", "DE_FIXED", "peak", "7", "0.0023", "0.0000", "0.0023"),
    "c5,bob,sms,2024-03-04T09:00:00Z,1,4915112345":
        ("rated", "", "DE_MOBILE", "peak", "1", "0.0900", "0.0000", "0.0900"),
    # 1 MiB in tier 1: 0.01
    "c6,bob,data,2024-03-04T12:00:00Z,1048576,":
        ("rated", "", "", "peak", "1048576", "0.0100", "0.0000", "0.0100"),
    # 1 MiB left in tier 1 (0.01) and 1 MiB in tier 2 (0.002)
    "c7,bob,data,2024-03-06T12:00:00.5Z,2097152,":
        ("rated", "", "", "peak", "2097152", "0.0120", "0.0000", "0.0120"),
    # zero usage: rated, costs nothing, not even a connect fee
    "c8,bob,voice,2024-03-04T09:00:00+01:00,0,4915112345":
        ("rated", "", "DE_MOBILE", "peak", "0", "0.0000", "0.0000", "0.0000"),
}
REJECTED = {
    "c9,carol,voice,2024-03-04T09:00:00Z,10,4930": ("rejected", "unknown_account"),
    "c10,bob,video,2024-03-04T09:00:00Z,10,4930": ("rejected", "unknown_service"),
    "c11,bob,voice,2024-03-04T09:00:00Z,10,3312345": ("rejected", "no_destination"),
    "c12,bob,voice,2024-03-04T09:00:00Z,10,1555": ("rejected", "no_rate"),
    "c2,bob,sms,2024-03-04T09:00:00Z,1,49": ("duplicate", "duplicate"),
}
GARBAGE = {
    ",bob,sms,2024-03-04T09:00:00Z,1,49": "malformed:cdr_id",
    "g2,,sms,2024-03-04T09:00:00Z,1,49": "malformed:account",
    "g3,bob,,2024-03-04T09:00:00Z,1,49": "malformed:service",
    "g4,bob,sms,2024-03-04T09:00:00,1,49": "malformed:start",  # naive: ambiguous
    "g5,bob,sms,2024-02-30T09:00:00Z,1,49": "malformed:start",
    "g6,bob,sms,yesterday,1,49": "malformed:start",
    "g7,bob,sms,2024-03-04T09:00:00Z,-1,49": "malformed:usage",
    "g8,bob,sms,2024-03-04T09:00:00Z,1.5,49": "malformed:usage",
    "g9,bob,sms,2024-03-04T09:00:00Z,,49": "malformed:usage",
    "g10,bob,sms,2024-03-04T09:00:00Z,1,+49": "malformed:destination",
    "g11,bob,sms,2024-03-04T09:00:00Z,1,4915112345678901234": "malformed:destination",
    # a malformed row never makes a later good row with its id a duplicate
    "c1,bob,sms,2024-03-04T09:00:00Z,x,49": "malformed:usage",
    "g13,bob,sms": "malformed:start",  # too few fields
    "g14,bob,sms,2024-03-04T09:00:00Z,1,49,extra": "malformed:destination",  # too many
}


def rate(tmp_path: Path, rows: list[str], *extra: str, accounts: str | None = ACCOUNTS,
         catalog: str = CATALOG) -> tuple[int, list[dict]]:
    (tmp_path / "catalog.yaml").write_text(catalog)
    (tmp_path / "cdrs.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    argv = ["rate", "--catalog", str(tmp_path / "catalog.yaml"), "--cdrs", str(tmp_path / "cdrs.csv"),
            "--out", str(tmp_path / "out.csv"), *extra]
    if accounts is not None:
        (tmp_path / "accounts.csv").write_text(accounts)
        argv += ["--accounts", str(tmp_path / "accounts.csv")]
    parser = argparse.ArgumentParser(prog="ccs")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    if code != 0:
        return code, []
    with open(tmp_path / "out.csv", newline="") as f:
        return code, list(csv.DictReader(f))


RATED_COLS = ("status", "reason", "destination_name", "band", "rated_usage", "charge", "discount", "net_charge")


def test_exact_amounts_and_summary(tmp_path, capsys):
    code, out = rate(tmp_path, list(GOOD))
    assert code == 0
    assert [tuple(r[c] for c in RATED_COLS) for r in out] == list(GOOD.values())
    assert [r["cdr_id"] for r in out] == [r.split(",")[0] for r in GOOD]  # input order
    assert out[0]["start"] == "2024-03-04T09:00:00+01:00"  # input columns kept as written
    err = capsys.readouterr().err
    assert "rated 8, duplicate 0, rejected 0, total net charge 0.6268" in err


def test_every_rejection_reason(tmp_path, capsys):
    rows = list(GOOD) + list(REJECTED) + list(GARBAGE)
    code, out = rate(tmp_path, rows)
    assert code == 0
    got = {i: (r["status"], r["reason"]) for i, r in enumerate(out)}
    expected = [(v[0], v[1]) for v in GOOD.values()] + list(REJECTED.values()) + [
        ("rejected", reason) for reason in GARBAGE.values()
    ]
    assert [got[i] for i in range(len(rows))] == expected
    for r in out[len(GOOD):]:
        assert (r["rated_usage"], r["charge"], r["discount"], r["net_charge"]) == ("0", "0.0000", "0.0000", "0.0000")
    no_rate = out[len(GOOD) + 3]
    assert (no_rate["destination_name"], no_rate["band"]) == ("US", "peak")
    assert "rated 8, duplicate 1, rejected 18, total net charge 0.6268" in capsys.readouterr().err


def test_garbage_rows_change_nothing_for_good_ones(tmp_path):
    clean_dir, dirty_dir = tmp_path / "clean", tmp_path / "dirty"
    clean_dir.mkdir()
    dirty_dir.mkdir()
    good = list(GOOD)
    _, clean = rate(clean_dir, good)
    dirty_rows = []
    for i, row in enumerate(good):  # garbage before, between and after the good rows
        dirty_rows.append(list(GARBAGE)[i % len(GARBAGE)])
        dirty_rows.append(row)
    dirty_rows += list(GARBAGE)
    _, dirty = rate(dirty_dir, dirty_rows)
    assert [r for r in dirty if r["status"] == "rated"] == clean
    assert len(dirty) == len(dirty_rows)


def test_tariff_option_rates_every_account_without_discount(tmp_path):
    code, out = rate(tmp_path, list(GOOD) + ["c9,carol,sms,2024-03-04T09:00:00Z,2,49"],
                     "--tariff", "std", accounts=None)
    assert code == 0
    c3 = out[2]
    assert (c3["charge"], c3["discount"], c3["net_charge"]) == ("0.1250", "0.0000", "0.1250")
    assert (out[-1]["status"], out[-1]["net_charge"]) == ("rated", "0.1800")


def test_bill_cycle_day_restarts_tiers(tmp_path):
    # cycle day 5: c6 (March 4) is in cycle 2024-02, c7 (March 6) in 2024-03: both in tier 1
    code, out = rate(tmp_path, list(GOOD), "--bill-cycle-day", "5")
    assert code == 0
    by_id = {r["cdr_id"]: r for r in out}
    assert by_id["c7"]["charge"] == "0.0200"
    assert by_id["c6"]["charge"] == "0.0100"
    # c3 (March 9) is alone in its cycle: the voice basis restarted, no discount
    assert (by_id["c3"]["discount"], by_id["c3"]["net_charge"]) == ("0.0000", "0.1250")


def test_cycle_boundary_is_local_midnight(tmp_path):
    rows = [
        # 2024-03-04 23:59:59 Berlin (22:59:59Z) is still cycle 2024-02 with day 5 ...
        "d1,bob,data,2024-03-04T22:59:59Z,2097152,",
        # ... and 23:00:00Z is local midnight of March 5: a new cycle, tier 1 again
        "d2,bob,data,2024-03-04T23:00:00Z,1048576,",
    ]
    _, out = rate(tmp_path, rows, "--bill-cycle-day", "5")
    assert [r["charge"] for r in out] == ["0.0200", "0.0100"]
    _, out = rate(tmp_path, rows)
    assert [r["charge"] for r in out] == ["0.0200", "0.0020"]


def test_quoted_values_round_trip(tmp_path):
    code, out = rate(tmp_path, ['"c,1",alice,sms,2024-03-04T09:00:00Z,1,49'])
    assert code == 0
    assert (out[0]["cdr_id"], out[0]["net_charge"]) == ("c,1", "0.0900")
    # a value that needs quotes: every text is quoted, the header's names too
    assert (tmp_path / "out.csv").read_text() == (
        '"cdr_id","account","service","start","usage","destination","status","reason",'
        '"destination_name","band","rated_usage","charge","discount","net_charge"\n'
        '"c,1","alice","sms","2024-03-04T09:00:00Z","1","49","rated","","DE_FIXED","peak","1",'
        '"0.0900","0.0000","0.0900"\n')


def test_starts_in_one_second_accumulate_by_their_fraction(tmp_path):
    # tier 1 holds 2 MiB. All three start in the same second; by fraction: z2 (.05), then a1
    # and b1 (.5 and .50, the same instant: by cdr_id). z2 takes 1.5 MiB of tier 1 (0.015),
    # a1 0.5 MiB of tier 1 and 0.5 of tier 2 (0.005 + 0.001), b1 1 MiB of tier 2 (0.002).
    mib = 1048576
    rows = [f"z2,bob,data,2024-03-04T12:00:00.05Z,{3 * mib // 2},",
            f"b1,bob,data,2024-03-04T13:00:00.50+01:00,{mib},",
            f"a1,bob,data,2024-03-04T12:00:00.5Z,{mib},"]
    code, out = rate(tmp_path, rows)
    assert code == 0
    assert {r["cdr_id"]: r["charge"] for r in out} == {"z2": "0.0150", "a1": "0.0060", "b1": "0.0020"}


def test_unusable_inputs_exit_2(tmp_path, capsys):
    assert rate(tmp_path, list(GOOD), "--tariff", "gold", accounts=None)[0] == 2
    assert "unknown tariff 'gold'" in capsys.readouterr().err
    assert rate(tmp_path, list(GOOD), accounts="account,tariff\nzed,gold\n")[0] == 2
    assert "tariff: unknown tariff 'gold'" in capsys.readouterr().err
    assert rate(tmp_path, list(GOOD), catalog=CATALOG.replace('"0.0900"', "0.09"))[0] == 2
    err = capsys.readouterr().err
    assert "refused" in err and "tariffs.std.sms[0].price" in err
    assert rate(tmp_path, list(GOOD), "--bill-cycle-day", "32")[0] == 2
    assert "--bill-cycle-day" in capsys.readouterr().err


def test_missing_header_column_exit_2(tmp_path, capsys):
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "cdrs.csv").write_text("cdr_id,account,service,usage,destination\nx,bob,sms,1,49\n")
    parser = argparse.ArgumentParser(prog="ccs")
    register(parser.add_subparsers())
    args = parser.parse_args(["rate", "--catalog", str(tmp_path / "catalog.yaml"), "--cdrs",
                              str(tmp_path / "cdrs.csv"), "--tariff", "std"])
    assert args.func(args) == 2
    assert "missing required column(s) start" in capsys.readouterr().err


def _console_script() -> str:
    script = Path(sys.executable).parent / "ccs"
    if script.exists():
        return str(script)
    found = shutil.which("ccs")
    if not found:
        pytest.skip("the ccs console script is not installed")
    return found


def test_console_script(tmp_path):
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "accounts.csv").write_text(ACCOUNTS)
    (tmp_path / "cdrs.csv").write_text(HEADER + "".join(r + "\n" for r in list(GOOD) + list(REJECTED)))
    proc = subprocess.run(
        [_console_script(), "rate", "--catalog", "catalog.yaml", "--cdrs", "cdrs.csv",
         "--accounts", "accounts.csv"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # header and rows alike: no quotes when no value needs them
    assert lines[0] == ("cdr_id,account,service,start,usage,destination,status,reason,"
                        "destination_name,band,rated_usage,charge,discount,net_charge")
    assert lines[1] == "c1,alice,voice,2024-03-04T09:00:00+01:00,61,4915112345,rated,,DE_MOBILE,peak,90,0.2300,0.0000,0.2300"
    rows = list(csv.DictReader(lines))
    assert [r["net_charge"] for r in rows[:8]] == [v[7] for v in GOOD.values()]
    assert [r["reason"] for r in rows[8:]] == [v[1] for v in REJECTED.values()]
    assert "rated 8, duplicate 1, rejected 4, total net charge 0.6268" in proc.stderr


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ccs")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_errors_keep_their_order_while_the_cdr_file_is_read_meanwhile(tmp_path, capsys):
    # `ccs rate` reads the CDR file on a second thread: its error must not overtake the others
    (tmp_path / "bad.yaml").write_text(CATALOG.replace('"0.0900"', "0.09"))
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "accounts.csv").write_text("account,tariff\nzed,gold\n")
    absent = str(tmp_path / "absent.csv")
    assert _run(["rate", "--catalog", str(tmp_path / "bad.yaml"), "--cdrs", absent, "--tariff", "std"]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "absent.csv" not in err
    assert _run(["rate", "--catalog", str(tmp_path / "catalog.yaml"), "--cdrs", absent, "--tariff", "gold"]) == 2
    err = capsys.readouterr().err
    assert "unknown tariff 'gold'" in err and "absent.csv" not in err
    assert _run(["rate", "--catalog", str(tmp_path / "catalog.yaml"), "--cdrs", absent,
                 "--accounts", str(tmp_path / "accounts.csv")]) == 2
    err = capsys.readouterr().err
    assert "tariff: unknown tariff 'gold'" in err and "absent.csv" not in err
    assert _run(["rate", "--catalog", str(tmp_path / "catalog.yaml"), "--cdrs", absent, "--tariff", "std"]) == 2
    assert "absent.csv: cannot read" in capsys.readouterr().err


def test_many_rows_across_write_chunks(tmp_path):
    # more rows than one formatting chunk: chunks come back in input order
    rows = [f"m{i},bob,sms,2024-03-04T09:00:00Z,{i % 3},49" for i in range(70_000)]
    code, out = rate(tmp_path, rows)
    assert code == 0 and len(out) == 70_000
    assert [r["cdr_id"] for r in out[::9_999]] == [f"m{i}" for i in range(0, 70_000, 9_999)]
    assert {(r["usage"], r["net_charge"]) for r in out} == {("0", "0.0000"), ("1", "0.0900"), ("2", "0.1800")}
