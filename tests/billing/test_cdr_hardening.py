"""`ccs rate` attacked from outside (issue 11): totals beyond int64, stray quotes, dates at the
ends of the calendar, bytes that are not UTF-8, a reader that leaves; and a fuzz of the CSV
path: every line accounted for, good rows never changed by garbage around them."""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import cdr_read, cdrs
from billing.cli import register
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from rating.cycles import cycle_of
from rating.engine import Plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rating"))
from reference import malformed_column as reference_malformed  # noqa: E402
from test_rate_cli import CATALOG  # noqa: E402  (EUR, 4 decimals; sms 0.09, DE_MOBILE peak voice 0.05 + 0.12/min)

HEADER = "cdr_id,account,service,start,usage,destination\n"
VOICE = "alice,voice,2026-11-24T10:00:00Z,60,4915112345678"  # 0.05 + 0.12 = 0.1700


def rate(tmp_path: Path, body: str | bytes, *extra: str, catalog: str = CATALOG) -> tuple[int, list[dict]]:
    """`ccs rate --tariff std` in process on a CDR file; (exit code, rows of the rated CSV)."""
    (tmp_path / "catalog.yaml").write_text(catalog)
    path = tmp_path / "cdrs.csv"
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    parser = argparse.ArgumentParser(prog="ccs")
    register(parser.add_subparsers())
    args = parser.parse_args(["rate", "--catalog", str(tmp_path / "catalog.yaml"), "--cdrs", str(path),
                              "--tariff", "std", "--out", str(tmp_path / "out.csv"), *extra])
    code = args.func(args)
    if code != 0:
        return code, []
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as f:
        return code, list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# item 3: totals are exact Python ints, and nothing fails once output was written


def test_summary_total_is_exact_far_beyond_int64(tmp_path, capsys):
    # each SMS costs 100079991719 * 0.09 = 9007199254.71 (just below 2^53 micro-units); 51,201
    # of them are 4.6e20 micro-units: an int64 sum wrapped to 9007197667.9196
    rows = "".join(f"s{i},a{i % 97},sms,2026-11-24T10:00:00Z,100079991719,4930\n" for i in range(51_201))
    code, out = rate(tmp_path, HEADER + rows)
    assert code == 0 and len(out) == 51_201 and out[0]["net_charge"] == "9007199254.7100"
    assert capsys.readouterr().err == (
        "ccs rate: rated 51201, duplicate 0, rejected 0, total net charge 461177609040406.7100\n")


def test_summary_of_a_total_past_int64_is_not_an_error_after_the_output(tmp_path, capsys):
    # 1,100 of them wrapped to a negative total that format_money refused: a ValueError
    # traceback after the rated file had been written
    rows = "".join(f"s{i},a{i},sms,2026-11-24T10:00:00Z,100079991719,4930\n" for i in range(1_100))
    code, out = rate(tmp_path, HEADER + rows)
    assert code == 0 and len(out) == 1_100
    assert capsys.readouterr().err == (
        "ccs rate: rated 1100, duplicate 0, rejected 0, total net charge 9907919180181.0000\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50))
def test_exact_sum_is_the_python_sum(values):
    assert cdrs.exact_sum(np.array(values, np.int64)) == sum(values)


# ---------------------------------------------------------------------------------------------
# item 7: a quote that does not close on its line breaks that row only


def test_a_stray_opening_quote_rejects_its_row_only(tmp_path, capsys):
    # the issue's file, smaller: row 11 ends in ,"4915112345678 and no quote ever closes it
    lines = [f"q{i},{VOICE}" if i != 11 else f'q{i},alice,voice,2026-11-24T10:00:00Z,60,"4915112345678'
             for i in range(1, 1001)]
    code, out = rate(tmp_path, HEADER + "\n".join(lines) + "\n")
    assert code == 0
    assert capsys.readouterr().err == "ccs rate: rated 999, duplicate 0, rejected 1, total net charge 169.8300\n"
    assert [r["cdr_id"] for r in out] == [f"q{i}" for i in range(1, 1001)]
    assert (out[10]["status"], out[10]["reason"], out[10]["destination"]) == (
        "rejected", "malformed:destination", '"4915112345678')
    assert {(r["status"], r["net_charge"]) for r in out[:10] + out[11:]} == {("rated", "0.1700")}


def test_a_stray_quote_in_a_quoted_file_does_not_swallow_the_next_lines(tmp_path, capsys):
    # every field quoted: the stray quote would close at the next line's first quote, and two
    # stray quotes could join all the lines between them into one row
    def quoted(i):
        return ",".join(f'"{v}"' for v in f"q{i},{VOICE}".split(","))
    lines = [quoted(i) for i in range(1, 101)]
    lines[4] = lines[4][:-1]  # row 5: its last quote is missing
    lines[49] = lines[49].replace('"alice"', '"ali"ce"', 1)  # a quote inside a field: text
    lines[59] = lines[59].replace(',"60",', ',"60,', 1)  # row 60: `"60,"4915...`: one field, 5 in all
    code, out = rate(tmp_path, HEADER + "\n".join(lines) + "\n")
    assert code == 0
    assert capsys.readouterr().err == "ccs rate: rated 98, duplicate 0, rejected 2, total net charge 16.6600\n"
    assert [r["cdr_id"] for r in out] == [f"q{i}" for i in range(1, 101)]
    assert (out[4]["reason"], out[4]["destination"]) == ("malformed:destination", '"4915112345678')
    assert out[49]["account"] == 'alice"' and out[49]["status"] == "rated"  # `"ali"ce"` reads `alice"`
    assert (out[59]["reason"], out[59]["usage"], out[59]["destination"]) == (
        "malformed:usage", '60,4915112345678"', "")


def test_an_open_quote_names_its_column_and_the_rest_of_the_line_is_kept_raw(tmp_path):
    body = HEADER + "\n".join([
        'c1,"al,ice,voice,2026-11-24T10:00:00Z,60,4930',  # account: a quote from here on
        'c2,bob,voice,2026-11-24T10:00:00Z,60,4930,"note, open',  # open past the columns
        'c3,bob,voice,2026-11-24T10:00:00Z,60,4930',
        'c4,bob,voice,2026-11-24T10:00:00Z,60,"4930',  # the last line, no line end after it
    ])
    code, out = rate(tmp_path, body)
    assert code == 0
    assert [(r["cdr_id"], r["status"], r["reason"]) for r in out] == [
        ("c1", "rejected", "malformed:account"), ("c2", "rejected", "malformed:destination"),
        ("c3", "rated", ""), ("c4", "rejected", "malformed:destination")]
    assert out[0]["account"] == '"al,ice,voice,2026-11-24T10:00:00Z,60,4930' and out[0]["service"] == ""


def test_a_header_with_an_open_quote_is_refused(tmp_path, capsys):
    code, _ = rate(tmp_path, 'cdr_id,account,service,start,usage,"destination\nc1,' + VOICE + "\n")
    assert code == 2
    assert capsys.readouterr().err == f"ccs rate: {tmp_path / 'cdrs.csv'}:1: header: a quoted name does not close on its line\n"


def test_open_quotes_across_arrow_blocks(tmp_path, monkeypatch):
    # small blocks: Arrow reads a quoted line break across a block edge as an error, inside a
    # block as one row; either way each line stays a row, in its place
    monkeypatch.setattr(cdr_read, "BLOCK_SIZE", 1 << 10)
    lines = [f"q{i},{VOICE}" for i in range(1, 301)]
    for k in (7, 40, 41, 150, 299):
        lines[k] = lines[k].replace(",60,", ',"60,', 1)
    lines[100] = lines[100] + ",extra"
    lines[200] = "q201,alice"
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "\r\n".join(lines) + "\r\n\r\n")
    table = cdr_read.read_cdr_table(path)
    assert table.column("cdr_id").to_pylist() == [f"q{i}" for i in range(1, 301)]
    parsed = cdrs.parse_cdrs(table, compile_catalog(parse_catalog(CATALOG)), default_plan=Plan("std"))
    bad = {int(i): cdrs.CDR_COLUMNS[j] for i, j in enumerate(parsed.malformed_column) if j >= 0}
    assert bad == {7: "usage", 40: "usage", 41: "usage", 150: "usage", 299: "usage",
                   100: "destination", 200: "service"}


# ---------------------------------------------------------------------------------------------
# item 11: starts at the ends of the calendar


def test_starts_beyond_the_years_cycles_can_compute_are_malformed(tmp_path):
    body = HEADER + "".join(f"{k},alice,sms,{start},1,4930\n" for k, start in [
        ("y1", "9999-12-31T23:30:00Z"), ("y2", "0001-01-01T00:00:00+23:59"),
        ("y3", "0002-01-01T00:00:00+23:59"), ("y4", "9998-12-31T23:59:59-23:59"),
        ("y5", "2026-11-24T10:00:00Z")])
    for catalog in (CATALOG, CATALOG.replace("Europe/Berlin", "Pacific/Kiritimati"),
                    CATALOG.replace("Europe/Berlin", "Pacific/Pago_Pago")):
        for day in ("1", "31"):
            code, out = rate(tmp_path, body, "--bill-cycle-day", day, catalog=catalog)
            assert code == 0
            assert [(r["status"], r["reason"], r["net_charge"]) for r in out] == [
                ("rejected", "malformed:start", "0.0000"), ("rejected", "malformed:start", "0.0000"),
                ("rated", "", "0.0900"), ("rated", "", "0.0900"), ("rated", "", "0.0900")]


def test_cycle_numbers_over_the_whole_calendar_step_per_cycle_used():
    # a start in year 2 and one in 9998: the cycles between them are not walked one by one
    rng = np.random.default_rng(7)
    starts = np.concatenate([np.array([-62104060800 + 400 * 86400, 253370764799 - 3 * 86400], np.int64),
                             rng.integers(1706745600, 1738000000, 300)])
    for tz in ("Europe/Berlin", "Pacific/Kiritimati"):
        for day in (1, 29, 31):
            idx = cdrs.cycle_index(starts, np.ones(len(starts), bool), tz, day)
            months = [int(n[:4]) * 12 + int(n[5:]) for n in (cycle_of(int(s), day, tz) for s in starts)]
            assert idx.tolist() == [m - min(months) for m in months]


# ---------------------------------------------------------------------------------------------
# item 16: bytes that are not UTF-8 are refused naming line and column


def test_a_byte_that_is_not_utf8_is_named_by_line_and_column(tmp_path, capsys):
    lines = [f"q{i},{VOICE}".encode() for i in range(1, 5001)]
    lines[3999] = lines[3999].replace(b"alice", b"al\xffce")
    code, _ = rate(tmp_path, HEADER.encode() + b"\n".join(lines) + b"\n")
    assert code == 2
    assert capsys.readouterr().err == f"ccs rate: {tmp_path / 'cdrs.csv'}:4001: column 'account': not UTF-8 (byte 0xff)\n"


@pytest.mark.parametrize("body, line, where, byte", [
    (b'"c1","alice","voice","2026-11-24T10:00:00Z","60","4930"\n"c2","bob","v\xe9","x"\n', 3, "column 'service'", 0xE9),
    (b"c1,alice,voice,2026-11-24T10:00:00Z,60,4930,\xc3\n", 2, "field 7 (past the header)", 0xC3),
    (b"c1,alice,voice,2026-11-24T10:00:00Z,60,4930\n\nc2,\xed\xa0\x80,sms\n", 4, "column 'account'", 0xED),
    (b"c1,alice,voice,2026-11-24T10:00:00Z,60,49\xf0\x9f\x98", 2, "column 'destination'", 0xF0),
])
def test_not_utf8_anywhere(tmp_path, body, line, where, byte):
    # quoted or not, in a ragged row, past the header, a surrogate, a sequence cut by the end
    path = tmp_path / "c.csv"
    path.write_bytes(HEADER.encode() + body)
    with pytest.raises(cdrs.CdrFileError) as exc:
        cdrs.read_cdr_table(path)
    assert str(exc.value) == f"{path}:{line}: {where}: not UTF-8 (byte 0x{byte:02x})"


def test_a_header_that_is_not_utf8(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes(b"cdr_id,acc\xffount,service,start,usage,destination\n")
    with pytest.raises(cdrs.CdrFileError, match=re.escape(f"{path}:1: header: not UTF-8 (byte 0xff)")):
        cdrs.read_cdr_table(path)


def test_utf8_text_and_a_byte_order_mark_pass(tmp_path):
    code, out = rate(tmp_path, "\ufeff" + HEADER + "c1,Zoë 🐙,voice,2026-11-24T10:00:00Z,60,4930\n")
    assert code == 0 and out[0]["account"] == "Zoë 🐙" and out[0]["status"] == "rated"


# ---------------------------------------------------------------------------------------------
# item 17: a reader that closes standard output early


def test_a_closed_stdout_pipe_ends_quietly(tmp_path):
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "cdrs.csv").write_text(HEADER + "".join(f"q{i},{VOICE}\n" for i in range(50_000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "charging.cli", "rate", "--catalog", str(tmp_path / "catalog.yaml"),
         "--cdrs", str(tmp_path / "cdrs.csv"), "--tariff", "std"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(100)  # what `head -c 100` reads; then it leaves
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141  # 128 + SIGPIPE, as the shell reports `cat big | head`
    assert first.startswith(b"cdr_id,account,service,start,usage,destination,status,")
    assert err == b""


def test_an_unwritable_out_still_says_so(tmp_path, capsys):
    code, _ = rate(tmp_path, HEADER + f"c1,{VOICE}\n", "--out", str(tmp_path / "no" / "such.csv"))
    assert code == 2
    assert capsys.readouterr().err.startswith(f"ccs rate: --out {tmp_path / 'no' / 'such.csv'}: cannot write: ")


# ---------------------------------------------------------------------------------------------
# fuzz: random CDR files through the CSV path


def _lines(data: bytes) -> list[bytes]:
    """Physical lines (LF, CR LF, CR end one), the last one even without a line end."""
    parts = re.split(rb"\r\n|\r|\n", data)
    return parts[:-1] if parts and parts[-1] == b"" else parts


def _quote_closes(line: str) -> bool:
    """Whether every quoted field of a line closes on it: a char-by-char reading of the rule."""
    quoted, field_start, i = False, True, 0
    while i < len(line):
        c = line[i]
        if quoted:
            if c == '"':
                if line[i + 1:i + 2] == '"':
                    i += 1
                else:
                    quoted = False
        elif c == '"' and field_start:
            quoted = True
        field_start = c == "," and not quoted
        i += 1
    return not quoted


def _reference_fields(line: str) -> list[str]:
    return next(csv.reader([line], strict=False))


_GOOD_START = st.builds(
    lambda y, mo, d, h, m, s, z: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{m:02d}:{s:02d}{z}",
    st.sampled_from([2, 1970, 2024, 2026, 9998]), st.integers(1, 12), st.integers(1, 28),
    st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.sampled_from(["Z", "+23:59", "-05:30", "+01"]))
_USAGE = st.integers(0, 10**18 - 1).map(str) | st.sampled_from(["0", "1", "60", "100079991719", "9" * 18])
_PIECES = st.sampled_from([
    '"', '""', ",", ",,", '","', "\n", "\r", "\r\n", "\ufeff", "é", "🐙", "\u2028", "\x00", "-1", "1e3",
    "9" * 19, "99999999999999999999", "9999-12-31T23:30:00Z", "0001-01-01T00:00:00+23:59",
    "2026-11-24T10:00:00Z", "alice", "voice", "sms", "49", " ",
]) | st.text(alphabet="abc019,\"\r\n é", max_size=8)


@st.composite
def _files(draw):
    """(file bytes, the good rows' lines): good CDR rows with garbage between them."""
    good = []
    for k in range(draw(st.integers(0, 8))):
        good.append(",".join([f"G{k}", draw(st.sampled_from(["alice", "bob"])),
                              draw(st.sampled_from(["voice", "sms", "data"])), draw(_GOOD_START),
                              draw(_USAGE), draw(st.sampled_from(["", "4930", "4915112345678", "1"]))]))
    chunks = []
    for line in good:
        chunks.append(draw(st.lists(_PIECES, max_size=12).map("".join)))
        chunks.append(line + draw(st.sampled_from(["\n", "\r\n", "\r"])))
    chunks.append(draw(st.lists(_PIECES, max_size=12).map("".join)))
    garbage = [c for c in chunks[0::2]]
    # Garbage must not hold a well-formed CDR (it would count, as it should); its lines that
    # do are dropped. A garbage chunk also ends its line, so it never joins a good row.
    cleaned = []
    for g in garbage:
        keep = [ln for ln in _lines(g.encode()) if ln == b"" or not _well_formed(ln.decode())]
        cleaned.append("\n".join(x.decode() for x in keep) + ("\n" if keep else ""))
    text = HEADER + "".join(c for pair in zip(cleaned, chunks[1::2] + [""], strict=False) for c in pair)
    data = text.encode()
    if draw(st.integers(0, 9)) == 0:  # now and then a byte that is not UTF-8
        at = draw(st.integers(len(HEADER), len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + data[at:]
    return data, good


def _well_formed(line: str) -> bool:
    if not _quote_closes(line):
        return False
    fields = _reference_fields(line) if line else []
    if len(fields) != len(cdrs.CDR_COLUMNS):
        return False
    return reference_malformed(dict(zip(cdrs.CDR_COLUMNS, fields, strict=True))) is None


def _results(compiled, path: Path, bill_cycle_day) -> tuple[cdrs.ParsedCdrs, object, list[tuple]]:
    table = cdrs.read_cdr_table(path)
    parsed = cdrs.parse_cdrs(table, compiled, default_plan=Plan("std"))
    rated = cdrs.rate_cdrs(compiled, parsed, "Europe/Berlin", bill_cycle_day)
    status, label = cdrs.status_and_reason(parsed, rated)
    ok = rated.reason == 0  # amounts of rows not rated mean nothing
    rows = list(zip(parsed.table.column("cdr_id").to_pylist(), status.tolist(), label.tolist(),
                    *(np.where(ok, a, 0).tolist() for a in (rated.rated_usage, rated.charge, rated.net_charge)),
                    strict=True))
    return parsed, rated, rows


@pytest.fixture(scope="module")
def compiled():
    return compile_catalog(parse_catalog(CATALOG))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(_files(), st.sampled_from([None, 1, 31]), st.sampled_from([16 << 20, 1 << 10]))
def test_fuzz_every_line_is_a_row_and_good_rows_never_change(tmp_path, compiled, monkeypatch, case,
                                                             bill_cycle_day, block):
    data, good = case
    monkeypatch.setattr(cdr_read, "BLOCK_SIZE", block)
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    lines = _lines(data)[1:]
    try:
        texts = [ln.decode("utf-8") for ln in lines]
    except UnicodeDecodeError:
        # refused, naming the first line that is not UTF-8
        first = next(k for k, ln in enumerate(lines) if not _decodes(ln))
        with pytest.raises(cdrs.CdrFileError, match=rf"^{re.escape(str(path))}:{first + 2}: .*: not UTF-8 \(byte 0x"):
            cdrs.read_cdr_table(path)
        return
    parsed, rated, rows = _results(compiled, path, bill_cycle_day)
    rows_expected = [t for t in texts if t]
    summary = cdrs.summarize(rated)
    assert summary.rated + summary.duplicate + summary.rejected == len(rows_expected) == len(rows)
    # each row holds its line's fields: Python's csv module reading that line alone
    for k, text in enumerate(rows_expected):
        got = [parsed.table.column(c)[k].as_py() for c in cdrs.CDR_COLUMNS]
        if _quote_closes(text):
            want = _reference_fields(text)[:6]
            assert got == want + [None] * (6 - len(want))
        else:
            assert rows[k][1] == 2 and cdrs.REASON_LABELS[rows[k][2]].startswith("malformed:")
    # the good rows rate exactly as they do in a file of their own
    alone = tmp_path / "alone.csv"
    alone.write_text(HEADER + "".join(line + "\n" for line in good))
    _, _, want = _results(compiled, alone, bill_cycle_day)
    assert [r for r in rows if r[0] is not None and re.fullmatch(r"G\d+", r[0])] == want


def _decodes(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
