"""billing.cdrs: vectorized parsing and validation of CDR files, account files, rated output."""

from __future__ import annotations

import csv
import io
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing import cdrs
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from rating.cycles import cycle_of
from rating.engine import Plan
from rating.money import format_money

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rating"))
from reference import start_instant as reference_start_instant  # noqa: E402

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


@pytest.mark.parametrize("text, epoch, nanos", [
    ("2024-03-31T01:30:00Z", 1711848600, 0),
    ("2024-03-31t01:30:00z", 1711848600, 0),
    ("2024-03-31T03:30:00+02:00", 1711848600, 0),
    ("2024-03-31 03:30:00+0200", 1711848600, 0),
    ("2024-03-31T03:30:00+02", 1711848600, 0),
    ("2024-03-30T20:00:00-05:30", 1711848600, 0),
    ("2024-03-31T01:30:00.999999999Z", 1711848600, 999_999_999),  # whole second + fraction
    ("2024-03-31T03:30:00.5+02:00", 1711848600, 500_000_000),
    ("2024-03-31T01:30:00.050Z", 1711848600, 50_000_000),
    ("2024-03-31T01:30:00.000000001-05:30", 1711868400, 1),
    ("2024-03-31T01:30:00.0Z", 1711848600, 0),
    ("2024-02-29T00:00:00Z", 1709164800, 0),
    ("1969-12-31T23:59:59Z", -1, 0),
    ("1969-12-31T23:59:59.25Z", -1, 250_000_000),  # 0.75 s before 1970: -1 s + 0.25 s
])
def test_parse_start_accepts_iso_8601_with_offset(text, epoch, nanos):
    got, got_nanos, ok = cdrs.parse_start(pa.array([text]))
    assert ok.tolist() == [True] and got.tolist() == [epoch] and got_nanos.tolist() == [nanos]


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
    epoch, nanos, ok = cdrs.parse_start(pa.array([text], pa.string()))
    assert ok.tolist() == [False] and epoch.tolist() == nanos.tolist() == [0]


@st.composite
def _start_texts(draw):
    """Near-ISO 8601 texts: numbers out of range, every separator and zone form, stray chars."""
    n = lambda hi, w: f"{draw(st.integers(0, hi)):0{w}d}"  # noqa: E731
    text = (f"{n(9999, 4)}-{n(13, 2)}-{n(32, 2)}{draw(st.sampled_from('Tt x'))}"
            f"{n(25, 2)}:{n(61, 2)}:{n(61, 2)}")
    if draw(st.booleans()):
        text += "." + "".join(draw(st.lists(st.sampled_from("0123456789"), max_size=11)))
    text += draw(st.sampled_from(["", "Z", "z", "+", "-"]))
    if text[-1] in "+-":
        text += n(25, 2) + draw(st.sampled_from(["", ":", "x"])) + draw(st.sampled_from(["", n(61, 2), n(9, 1)]))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "0", "Z", ":", "+", "\u00e9"])) + text[at + 1:]
    return text


@settings(max_examples=400, deadline=None)
@given(st.lists(_start_texts(), min_size=1, max_size=20))
def test_parse_start_agrees_with_the_reference(texts):
    got, nanos, ok = cdrs.parse_start(pa.array(texts, pa.string()))
    want = [reference_start_instant(t) for t in texts]
    assert ok.tolist() == [w is not None for w in want]
    # the exact instant: whole seconds plus nanoseconds
    assert [s + Fraction(f, 10**9) for s, f in zip(got.tolist(), nanos.tolist(), strict=True)] == [
        0 if w is None else w for w in want]


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


def test_rank_orders_a_second_by_its_fraction_then_cdr_id(catalog):
    compiled = compile_catalog(catalog)
    at = "2024-03-04T09:00:00"
    rows = [_row(cdr_id="a", start=at + ".9Z"), _row(cdr_id="b", start=at + ".1Z"),
            _row(cdr_id="c", start=at + "Z"), _row(cdr_id="d", start=at + ".10Z"),
            _row(cdr_id="e", start="2024-03-04T10:00:00.000000001+01:00"),
            _row(cdr_id="f", start="2024-03-04T08:59:59.999999999Z"), _row(cdr_id="g", start="x")]
    parsed = cdrs.parse_cdrs(_table(rows), compiled, default_plan=Plan("std"))
    b = parsed.batch
    assert b.start[:6].tolist() == [1709542800] * 5 + [1709542799]
    # the whole second is the engine's start; within it: c (.0), e (.000000001), b and d
    # (.1 twice: by id), a (.9)
    in_second = sorted(range(5), key=lambda i: b.cdr_rank[i])
    assert [rows[i]["cdr_id"] for i in in_second] == ["c", "e", "b", "d", "a"]
    assert sorted(b.cdr_rank.tolist()) == list(range(7))


def test_rank_is_the_id_rank_when_starts_are_whole_seconds(catalog):
    compiled = compile_catalog(catalog)
    rows = [_row(cdr_id=c, start=s) for c, s in
            [("b", "2024-03-04T09:00:00Z"), ("c", "2024-03-04T09:00:00.000Z"), ("a", "2024-03-04T09:00:01Z")]]
    parsed = cdrs.parse_cdrs(_table(rows), compiled, default_plan=Plan("std"))
    assert parsed.batch.cdr_rank.tolist() == [1, 2, 0]


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
    # a row is one line: a quote still open at the line end breaks the row there, and the
    # next line is a row of its own (docs/cdr-files.md)
    assert table.column("cdr_id").to_pylist() == ["1", "2", "3,x", 'line"', "4"]
    assert table.column("start").to_pylist()[1] is None
    assert table.column("note").to_pylist()[2] == '"multi'
    parsed = cdrs.parse_cdrs(table, compile_catalog(parse_catalog(CATALOG)), default_plan=Plan("std"))
    assert parsed.malformed_column.tolist() == [-1, 3, 5, 1, 5]
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
    # the header row is quoted exactly like the data rows: not at all here...
    plain = pa.table({"a": ["x", "y"], "b": ["1", ""]})
    assert cdrs.to_csv_bytes(plain) == b'a,b\nx,1\ny,\n'
    # ... and every text in quotes once some value needs them
    tricky = pa.table({"a": ["x,1", 'q"r', "s\nt"], "b": ["1", "2", "3"]})
    assert cdrs.to_csv_bytes(tricky) == b'"a","b"\n"x,1","1"\n"q""r","2"\n"s\nt","3"\n'
    back = list(csv.reader(io.StringIO(cdrs.to_csv_bytes(tricky).decode(), newline="")))
    assert back == [["a", "b"], ["x,1", "1"], ['q"r', "2"], ["s\nt", "3"]]
    odd_name = pa.table({'n"o,te': ["x"]})
    assert cdrs.to_csv_bytes(odd_name) == b'"n""o,te"\n"x"\n'
    assert cdrs.to_csv_bytes(plain.slice(0, 0)) == b"a,b\n"


def _rated_files(decimals: int, extra: str = "") -> tuple:
    """A parsed and rated file holding every kind of row, with catalog decimals `decimals`."""
    catalog = parse_catalog(CATALOG.replace("decimals: 2", f"decimals: {decimals}").replace('"0.10"', '"1.234567"'))
    compiled = compile_catalog(catalog)
    rows = [
        _row(cdr_id="r1"), _row(cdr_id="r2", usage="123456789"), _row(cdr_id="r3", usage="0"),
        _row(cdr_id="m1", usage="x"), _row(cdr_id="r1"), _row(cdr_id="u1", account="nobody"),
        _row(cdr_id="s1", service="video"), _row(cdr_id="d1", destination="33"),
        _row(cdr_id="", start=None), _row(cdr_id="r4" + extra, destination=""),
    ]
    table = _table(rows).append_column("note", pa.array(["n"] * 9 + [None], pa.string()))
    parsed = cdrs.parse_cdrs(table, compiled, accounts={"a": Plan("std", ("d1",))})
    return parsed, cdrs.rate_cdrs(compiled, parsed, catalog.timezone), compiled


@pytest.mark.parametrize("decimals, extra, chunk", [(0, "", 1 << 16), (2, "", 3), (6, "", 1),
                                                    (2, ",", 4), (2, '"', 1 << 16)])
def test_write_rated_csv_writes_what_write_rated_writes(decimals, extra, chunk, monkeypatch, tmp_path):
    # the byte buffer path (no value needs quotes) and Arrow's path (some do) give the same file
    monkeypatch.setattr(cdrs, "_WRITE_CHUNK", chunk)
    parsed, rated, compiled = _rated_files(decimals, extra)
    expected = cdrs.to_csv_bytes(cdrs.rated_table(parsed, rated, compiled, decimals))
    cdrs.write_rated_csv(parsed, rated, compiled, decimals, tmp_path / "out.csv")
    buf = io.BytesIO()
    cdrs.write_rated_csv(parsed, rated, compiled, decimals, buf)
    assert (tmp_path / "out.csv").read_bytes() == buf.getvalue() == expected
    lines = list(csv.reader(io.StringIO(expected.decode(), newline="")))
    assert lines[0][-9:] == ["note", *cdrs.OUTPUT_COLUMNS]
    # 123456789 SMS at 1.234567 = 152415677.625363, rounded half up; less 5% of that, rounded
    amounts = {0: ["152415678", "7620784", "144794894"], 2: ["152415677.63", "7620783.88", "144794893.75"],
               6: ["152415677.625363", "7620783.881268", "144794893.744095"]}[decimals]
    assert lines[2][7:] == ["rated", "", "DE", "", "123456789", *amounts]
    assert [r[7] for r in lines[1:]] == ["rated", "rated", "rated", "rejected", "duplicate", "rejected",
                                         "rejected", "rejected", "rejected", "rated"]


def test_write_rated_csv_of_an_empty_file(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("cdr_id,account,service,start,usage,destination\n")
    compiled = compile_catalog(parse_catalog(CATALOG))
    parsed = cdrs.parse_cdrs(cdrs.read_cdr_table(path), compiled, default_plan=Plan("std"))
    rated = cdrs.rate_cdrs(compiled, parsed, "Europe/Berlin")
    buf = io.BytesIO()
    cdrs.write_rated_csv(parsed, rated, compiled, 2, buf)
    assert buf.getvalue() == cdrs.to_csv_bytes(cdrs.rated_table(parsed, rated, compiled, 2))
    assert buf.getvalue().decode().count("\n") == 1


def test_chunked_and_large_string_tables_parse_and_write_alike(catalog):
    # files read in several blocks give chunked columns; large_string has 64-bit offsets
    compiled = compile_catalog(catalog)
    rows = [_row(cdr_id=f"c{i}", usage=str(i), start=None if i == 3 else "2024-03-04T09:00:00Z")
            for i in range(7)] + [_row(cdr_id="c1")]
    one = _table(rows)
    chunked = pa.concat_tables([one.slice(0, 3), one.slice(3, 2), one.slice(5)])
    large = one.cast(pa.schema([(c, pa.large_string()) for c in one.column_names]))
    outputs = set()
    for table in (one, chunked, large):
        parsed = cdrs.parse_cdrs(table, compiled, default_plan=Plan("std"))
        rated = cdrs.rate_cdrs(compiled, parsed, catalog.timezone)
        buf = io.BytesIO()
        cdrs.write_rated_csv(parsed, rated, compiled, 2, buf)
        outputs.add(buf.getvalue())
    assert len(outputs) == 1
    lines = outputs.pop().decode().splitlines()
    assert lines[4].endswith(",rejected,malformed:start,,,0,0.00,0.00,0.00")
    assert lines[-1].endswith(",duplicate,duplicate,,,0,0.00,0.00,0.00")
    assert lines[3].endswith(",rated,,DE,,2,0.20,0.00,0.20")


@pytest.mark.parametrize("decimals", [0, 6])
def test_warm_up_on_a_catalog_without_bands(decimals):
    compiled = compile_catalog(parse_catalog(CATALOG.replace("decimals: 2", f"decimals: {decimals}")))
    assert cdrs.warm_up(compiled, "Europe/Berlin") is None


def test_write_rated_csv_refuses_unrounded_amounts_before_writing():
    parsed, rated, compiled = _rated_files(2)
    rated.charge[0] += 1  # 1 micro-unit: not a whole cent
    buf = io.BytesIO()
    with pytest.raises(ValueError, match="do not fit in 2 decimals"):
        cdrs.write_rated_csv(parsed, rated, compiled, 2, buf)
    assert buf.getvalue() == b""


def test_parse_cdrs_with_the_id_order_given_parses_alike(catalog):
    compiled = compile_catalog(catalog)
    rows = [_row(cdr_id="b", usage="x"), _row(cdr_id="b"), _row(cdr_id=None), _row(cdr_id="a"),
            _row(cdr_id="b")]
    table = _table(rows)
    assert cdrs.sort_cdr_ids(table).to_pylist() == [2, 3, 0, 1, 4]  # "" first; ties in file order
    a = cdrs.parse_cdrs(table, compiled, default_plan=Plan("std"))
    b = cdrs.parse_cdrs(table, compiled, default_plan=Plan("std"), id_order=cdrs.sort_cdr_ids(table))
    assert a.batch.pre_reason.tolist() == b.batch.pre_reason.tolist() == [
        cdrs.MALFORMED, 0, cdrs.MALFORMED, 0, cdrs.DUPLICATE]
    assert a.batch.cdr_rank.tolist() == b.batch.cdr_rank.tolist() == [2, 3, 0, 1, 4]


@pytest.mark.parametrize("note", ["plain", "needs, quotes"])
def test_usage_too_large_to_charge_is_malformed_usage_on_both_writers(catalog, note):
    # 0.10 per message: 90071992547 messages = 9007199254.70 = 9007199254700000 micro, below
    # 2^53 = 9007199254740992; one more message reaches 9007199254800000: malformed:usage
    compiled = compile_catalog(catalog)
    rows = [_row(cdr_id="ok", usage="90071992547"), _row(cdr_id="big", usage="90071992548"),
            _row(cdr_id="bad", usage="x")]
    table = _table(rows).append_column("note", pa.array([note] * 3, pa.string()))
    parsed = cdrs.parse_cdrs(table, compiled, default_plan=Plan("std"))
    rated = cdrs.rate_cdrs(compiled, parsed, catalog.timezone)
    out = io.BytesIO()
    cdrs.write_rated_csv(parsed, rated, compiled, 2, out)
    got = {r["cdr_id"]: (r["status"], r["reason"], r["rated_usage"], r["charge"])
           for r in csv.DictReader(io.StringIO(out.getvalue().decode()))}
    assert got == {"ok": ("rated", "", "90071992547", "9007199254.70"),
                   "big": ("rejected", "malformed:usage", "0", "0.00"),
                   "bad": ("rejected", "malformed:usage", "0", "0.00")}
    assert cdrs.summarize(rated).text(2) == ("rated 1, duplicate 0, rejected 2, "
                                            "total net charge 9007199254.70")
