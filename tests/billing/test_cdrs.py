"""billing.cdrs: vectorized parsing and validation of CDR files, account files, rated output."""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow as pa
import pytest

from billing import cdrs
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from rating.cycles import cycle_of
from rating.engine import Plan
from rating.money import format_money

CATALOG = """
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 2, method: half_up}
destinations:
  DE: ["49"]
tariffs:
  std:
    sms:
      - {price: "0.10"}
discounts:
  d1: {service: sms, tiers: [{from: 0, percent: "5"}]}
"""


@pytest.fixture(scope="module")
def catalog():
    return parse_catalog(CATALOG)


def _table(rows: list[dict]) -> pa.Table:
    return pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in cdrs.CDR_COLUMNS})


def _row(**kw) -> dict:
    row = {"cdr_id": "c1", "account": "a", "service": "sms", "start": "2024-03-04T09:00:00Z",
           "usage": "1", "destination": "49"}
    row.update(kw)
    return row


@pytest.mark.parametrize("text, epoch", [
    ("2024-03-31T01:30:00Z", 1711848600),
    ("2024-03-31t01:30:00z", 1711848600),
    ("2024-03-31T03:30:00+02:00", 1711848600),
    ("2024-03-31 03:30:00+0200", 1711848600),
    ("2024-03-31T03:30:00+02", 1711848600),
    ("2024-03-30T20:00:00-05:30", 1711848600),
    ("2024-03-31T01:30:00.999999999Z", 1711848600),  # fractions of a second are dropped
    ("2024-02-29T00:00:00Z", 1709164800),
    ("1969-12-31T23:59:59Z", -1),
])
def test_parse_start_accepts_iso_8601_with_offset(text, epoch):
    got, ok = cdrs.parse_start(pa.array([text]))
    assert ok.tolist() == [True] and got.tolist() == [epoch]


@pytest.mark.parametrize("text", [
    "2024-03-31T01:30:00",  # naive: which instant is it?
    "2024-03-31", "2024-03-31T01:30Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
    "2024-04-31T00:00:00Z", "2024-03-31T24:00:00Z", "2024-03-31T01:60:00Z", "2024-03-31T01:30:60Z",
    "2024-03-31T01:30:00+24:00", "2024-03-31T01:30:00+02:60", "2024-03-31T01:30:00+2",
    "2024-03-31T01:30:00+02:0", "2024-03-31T01:30:00.Z", "2024-03-31T01:30:00.1234567890Z",
    "2024-03-31T01:30:00ZZ", "2024-03-31X01:30:00Z", "20240331T013000Z", "", None,
    "0000-01-01T00:00:00Z", "２０２４-03-31T01:30:00Z",
])
def test_parse_start_refuses_anything_else(text):
    _, ok = cdrs.parse_start(pa.array([text], pa.string()))
    assert ok.tolist() == [False]


def test_malformed_reason_names_the_first_bad_column(catalog):
    compiled = compile_catalog(catalog)
    rows = [
        _row(cdr_id=""), _row(account=""), _row(service=""), _row(start="x"), _row(usage="-1"),
        _row(usage="1e3"), _row(usage="1234567890123456789"), _row(destination="49 151"),
        _row(destination="1234567890123456789"), _row(start="x", usage="x"), _row(usage=None),
    ]
    parsed = cdrs.parse_cdrs(_table(rows), compiled, default_plan=Plan("std"))
    names = [cdrs.CDR_COLUMNS[j] for j in parsed.malformed_column]
    assert names == ["cdr_id", "account", "service", "start", "usage", "usage", "usage",
                     "destination", "destination", "start", "usage"]
    assert (parsed.batch.pre_reason == cdrs.MALFORMED).all()


def test_duplicates_in_file_order_ignoring_malformed_rows(catalog):
    compiled = compile_catalog(catalog)
    rows = [_row(cdr_id="b", usage="x"), _row(cdr_id="b"), _row(cdr_id="a"), _row(cdr_id="b"),
            _row(cdr_id="a", account="zz")]
    parsed = cdrs.parse_cdrs(_table(rows), compiled, accounts={"a": Plan("std")})
    assert parsed.batch.pre_reason.tolist() == [cdrs.MALFORMED, 0, 0, cdrs.DUPLICATE, cdrs.DUPLICATE]
    # rank follows the lexicographic order of cdr_id
    assert parsed.batch.cdr_rank[[2, 4]].max() < parsed.batch.cdr_rank[[0, 1, 3]].min()


def test_accounts_plans_and_services(catalog):
    compiled = compile_catalog(catalog)
    accounts = {"x": Plan("std", ("d1",)), "y": Plan("std"), "z": Plan("std", ("d1",))}
    rows = [_row(cdr_id="1", account="z"), _row(cdr_id="2", account="y"), _row(cdr_id="3", account="q"),
            _row(cdr_id="4", account="x", service="video"), _row(cdr_id="5", account="x", destination="")]
    parsed = cdrs.parse_cdrs(_table(rows), compiled, accounts=accounts)
    b = parsed.batch
    assert b.account.tolist() == [2, 1, -1, 0, 0]
    assert [parsed.plans[p] for p in b.plan if p >= 0] == [accounts["z"], accounts["y"], accounts["x"], accounts["x"]]
    assert b.plan[2] == -1 and b.pre_reason.tolist() == [0, 0, cdrs.UNKNOWN_ACCOUNT, 0, 0]
    assert b.service.tolist() == [compiled.service_id["sms"]] * 3 + [-1, compiled.service_id["sms"]]
    assert b.dest.tolist() == [49, 49, 49, 49, 0] and b.dest_len.tolist() == [2, 2, 2, 2, 0]
    assert len(parsed.plans) == 2 and parsed.n_accounts == 3


def test_read_cdr_table_keeps_rows_with_wrong_field_counts_in_place(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("cdr_id,account,service,start,usage,destination,note\n"
                    "1,a,sms,2024-03-04T09:00:00Z,1,49,ok\n"
                    "2,a,sms\n"
                    "\n"
                    '"3,x",a,sms,2024-03-04T09:00:00Z,1,49,"multi\nline"\n'
                    "4,a,sms,2024-03-04T09:00:00Z,1,49,n,extra\n")
    table = cdrs.read_cdr_table(path)
    assert table.column("cdr_id").to_pylist() == ["1", "2", "3,x", "4"]
    assert table.column("start").to_pylist()[1] is None
    assert table.column("note").to_pylist()[2] == "multi\nline"
    parsed = cdrs.parse_cdrs(table, compile_catalog(parse_catalog(CATALOG)), default_plan=Plan("std"))
    assert parsed.malformed_column.tolist() == [-1, 3, -1, 5]
    assert parsed.table.column_names[-1] == "note"  # the slow path's marker column is gone


def test_missing_column_and_empty_file(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("cdr_id,account,start,usage\n1,a,x,1\n")
    with pytest.raises(cdrs.CdrFileError, match="missing required column.*service, destination"):
        cdrs.read_cdr_table(path)
    path.write_text("")
    with pytest.raises(cdrs.CdrFileError, match="empty file"):
        cdrs.read_cdr_table(path)
    with pytest.raises(cdrs.CdrFileError, match="cannot read"):
        cdrs.read_cdr_table(tmp_path / "absent.csv")


def test_read_accounts(tmp_path, catalog):
    path = tmp_path / "a.csv"
    path.write_text("account,tariff,discounts\nx,std,d1\ny,std,\n")
    assert cdrs.read_accounts(path, catalog).as_dict() == {"x": Plan("std", ("d1",)), "y": Plan("std", ())}
    for body, message in [
        ("x,gold,\n", r"a.csv:2: tariff: unknown tariff 'gold'"),
        ("x,std,d1;d9\n", r"a.csv:2: discounts: unknown discount 'd9'"),
        ("x,std,\nx,std,\n", r"a.csv:3: account: 'x' listed twice"),
        (",std,\n", r"a.csv:2: account: empty"),
    ]:
        path.write_text("account,tariff,discounts\n" + body)
        with pytest.raises(cdrs.CdrFileError, match=message):
            cdrs.read_accounts(path, catalog)


@pytest.mark.parametrize("decimals", range(7))
def test_format_money_array_matches_format_money(decimals):
    rng = np.random.default_rng(decimals)
    step = 10 ** (6 - decimals)
    values = np.concatenate([rng.integers(-10**12, 10**12, 500) // step * step,
                             np.array([0, step, -step, 10**6, 999_999 // step * step])])
    got = cdrs.format_money_array(values, decimals).to_pylist()
    assert got == [format_money(int(v), decimals) for v in values]


def test_format_money_array_refuses_unrounded_amounts():
    with pytest.raises(ValueError, match="do not fit in 2 decimals"):
        cdrs.format_money_array(np.array([1]), 2)


def test_cycle_index_matches_rating_cycles():
    tz = "Europe/Berlin"
    starts = np.array([1706745600, 1709251199, 1709251200, 1711846799, 1711846800, 1714521600,
                       1735689599, 1738000000], np.int64)
    for day in (1, 5, 29, 31):
        idx = cdrs.cycle_index(starts, np.ones(len(starts), bool), tz, day)
        names = [cycle_of(int(s), day, tz) for s in starts]
        # one index per cycle (month), counted from the earliest
        months = [int(n[:4]) * 12 + int(n[5:]) for n in names]
        assert (idx - idx.min()).tolist() == [m - min(months) for m in months]


def test_write_rated_quotes_only_when_needed():
    plain = pa.table({"a": ["x", "y"], "b": ["1", ""]})
    assert cdrs.to_csv_bytes(plain) == b'"a","b"\nx,1\ny,\n'
    tricky = pa.table({"a": ["x,1", 'q"r', "s\nt"]})
    back = list(csv.reader(io.StringIO(cdrs.to_csv_bytes(tricky).decode(), newline="")))
    assert back == [["a"], ["x,1"], ['q"r'], ["s\nt"]]
