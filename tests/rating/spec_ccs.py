"""Running the real `ccs rate` for the conformance tests (test_spec_*.py), and what they share.

Helpers to write a catalog and CDR rows, run `ccs rate` in a subprocess and read its output; and
the start time, helpers and catalogs that tests of more than one topic use.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import textwrap
from pathlib import Path

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


T = "2024-01-09T10:00:00Z"      # Tuesday 11:00 Berlin: peak


def data(cid, start, usage):
    return cdr(cid, start, usage, service="data")


def trio(rows):
    return {cid: (r["charge"], r["discount"], r["net_charge"]) for cid, r in by_id(rows).items()}


# rules 4 and 5; also the output file test
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


# rule 6; also the tests of checks, duplicates and fractions of a second
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


# a small valid catalog for `ccs catalog check` and CSV dialect tests
VALID = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
tariffs:
  t:
    sms:
      - {price: "0.123456", connect_fee: "0.000001"}
"""
