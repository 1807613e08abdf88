"""CDR and account files read into tables of strings (CDRs) and plans per account (accounts).

Every column is read as text by pyarrow; rows with the wrong number of fields keep their place.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from billing import kernels as BK
from rating.engine import Plan
from rating.model import Catalog

# Required CDR columns, in the order malformed checks run (the first bad one names the reason).
CDR_COLUMNS = ("cdr_id", "account", "service", "start", "usage", "destination")
ACCOUNT_COLUMNS = ("account", "tariff", "discounts")


class CdrFileError(ValueError):
    """A CDR or account file that cannot be used at all (unreadable, a required column missing)."""


def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array for a column; without the copy `combine_chunks` makes even of one chunk."""
    if not isinstance(arr, pa.ChunkedArray):
        return arr
    return arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()


def _string_buffers(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The raw Arrow buffers of a string array, no copy: (int32 or int64 offsets [n + 1],
    uint8 data); nulls read as ""."""
    arr = _flat(arr)
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    buffers = arr.buffers()
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=off_type)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _raw_bytes(path: Path):
    """The file's bytes: mapped when it is a regular file (straight from the page cache, no
    buffer of the file's size to allocate: fresh memory is slow to touch on a VM), else read."""
    with open(path, "rb") as f:
        if path.is_file() and os.fstat(f.fileno()).st_size:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return f.read()


def _header(path: Path, raw) -> tuple[list[str], int]:
    """The header row (the first line, after a byte-order mark) and where the next line starts."""
    lo = 3 if raw[:3] == b"\xef\xbb\xbf" else 0
    ends = [k for k in (raw.find(b"\n", lo), raw.find(b"\r", lo)) if k >= 0]
    stop = min(ends) if ends else len(raw)
    nxt = stop + (2 if raw[stop:stop + 2] == b"\r\n" else 1)
    try:
        text = bytes(raw[lo:stop]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CdrFileError(f"{path}:1: header: not UTF-8 (byte 0x{raw[lo + exc.start]:02x})") from None
    if not text:
        raise CdrFileError(f"{path}: empty file, a header row is required")
    names, broken = split_line(text)
    if broken is not None:
        raise CdrFileError(f"{path}:1: header: a quoted name does not close on its line")
    return names, min(nxt, len(raw))


def split_line(text: str) -> tuple[list[str], int | None]:
    """The fields of one CSV line (no line break in it) and the index of the field whose quote
    does not close (None when all close); that field is the raw rest of the line.

    The one place the file's quoting is read in Python (bad rows and headers only; Arrow
    reads the good rows, `billing.kernels._scan_lines` tells them apart by the same rules).
    """
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            parts, j = [], i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    fields.append(text[i:])
                    return fields, len(fields) - 1
                parts.append(text[j:k])
                if text.startswith('"', k + 1):
                    parts.append('"')
                    j = k + 2
                    continue
                j = k + 1
                break
            e = text.find(",", j)
            e = n if e < 0 else e
            fields.append("".join(parts) + text[j:e])
        else:
            e = text.find(",", i)
            e = n if e < 0 else e
            fields.append(text[i:e])
        if e >= n:
            return fields, None
        i = e + 1


def _read_strings(path: Path, required: tuple[str, ...], threads: bool = True) -> pa.Table:
    """Read a CSV with every column as a string; every non-blank line after the header is one
    row, in file order; a line that is not one plain row keeps its place (`_with_bad_rows`).

    `threads=False` keeps a small file off Arrow's shared thread pool (which may be busy with
    a big one read meanwhile)."""
    path = Path(path)
    try:
        raw = _raw_bytes(path)
    except OSError as exc:
        raise CdrFileError(f"{path}: cannot read: {exc}") from exc
    header, lo = _header(path, raw)
    missing = [c for c in required if c not in header]
    if missing:
        raise CdrFileError(f"{path}: missing required column(s) {', '.join(missing)} in header")
    if len(set(header)) != len(header):
        raise CdrFileError(f"{path}: duplicate column names in header {header}")
    table = _read_rows(path, raw, lo, header, threads)
    return _mark_plain(table, _special_columns(table))


BLOCK_SIZE = 16 << 20  # bytes Arrow parses at a time (one chunk of the table each)
PLAIN = {b"ccs.plain": b"1"}  # field metadata: no value of the column holds , " CR or LF


def _holds(col: pa.ChunkedArray, kernel) -> bool:
    """True when some value of a string column holds what `kernel(data, lo, hi)` looks for."""
    return any(kernel(data, off[0], off[-1]) for off, data in (_string_buffers(c) for c in col.chunks))


def _special_columns(table: pa.Table) -> list[bool]:
    """Per column: some value holds a comma, quote, CR or LF (the rated CSV must quote)."""
    return [_holds(col, BK._has_special) for col in table.columns]


def _mark_plain(table: pa.Table, special: list[bool]) -> pa.Table:
    """The table with `PLAIN` on the fields of its columns that hold no special character:
    the writer then need not look again. A column replaced later gets a new field, unmarked."""
    fields = [f if s else f.with_metadata(PLAIN) for f, s in zip(table.schema, special, strict=True)]
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields))


def _arrow_read(source, header: list[str], threads: bool) -> pa.Table:
    """Arrow's read of a CSV text (its first line, the header, skipped) as strings."""
    try:
        return pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE, use_threads=threads,
                                           column_names=header, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):  # a header and nothing after it
            return pa.table({c: pa.array([], pa.string()) for c in header})
        raise


def _scan(data: np.ndarray, lo: int, width: int, cap: int = 1024):
    """`billing.kernels._scan_lines` over data[lo:]: (counts, bad_row, bad_start, bad_stop,
    bad_next), the bad-row arrays cut to the bad rows found."""
    while True:
        bad = [np.empty(cap, np.int64) for _ in range(4)]
        counts = np.zeros(6, np.int64)
        BK._scan_lines(data, lo, width, *bad, counts)
        if counts[2] <= cap:
            return counts, *(b[: counts[2]] for b in bad)
        cap = int(counts[2])


def _read_rows(path: Path, raw, lo: int, header: list[str], threads: bool) -> pa.Table:
    """Every non-blank line after the header as one row, in file order.

    One native pass (`billing.kernels._scan_lines`) splits the text into lines and finds
    those that are not one plain row: a quote that does not close on its line, another
    number of fields than the header. Arrow reads the others (Arrow alone would let a quote
    run on over line breaks, and at its block edges even drop lines); the bad lines, split
    in Python (only they), are put back in their places: missing fields are nulls, and the
    hidden `EXTRA_FIELDS` column says where the shape broke: the column name of the open
    quote, "" when past the columns (too many fields), null when fields are only missing.
    Bytes that are not UTF-8 refuse the file, naming the line and column.
    """
    data = np.frombuffer(raw, np.uint8)
    width = len(header)
    counts, at, starts, stops, nexts = _scan(data, lo, width)
    if counts[3] >= 0:
        field = int(counts[5])
        where = f"column {header[field]!r}" if field < width else f"field {field + 1} (past the header)"
        raise CdrFileError(f"{path}:{int(counts[4]) + 2}: {where}: not UTF-8 "
                           f"(byte 0x{int(data[counts[3]]):02x})")
    source = pa.py_buffer(raw)
    if len(at):  # the good lines, header first, copied side by side
        keep = np.empty(len(data) - int((nexts - starts).sum()), np.uint8)
        BK._copy_spans(data, np.concatenate([[0], nexts]), np.concatenate([starts, [len(data)]]), keep)
        source = pa.py_buffer(keep)
    try:
        table = _arrow_read(pa.BufferReader(source), header, threads)
    except pa.ArrowInvalid as exc:
        raise CdrFileError(f"{path}: cannot read as CSV: {exc}") from exc
    if table.num_rows + len(at) != counts[0]:  # cannot happen: the scan and Arrow disagree
        raise CdrFileError(f"{path}: cannot read as CSV: {counts[0]} rows, {table.num_rows + len(at)} read")
    if not len(at):
        return table.combine_chunks()
    values: list[list[str | None]] = [[] for _ in range(width)]
    shape: list[str | None] = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        fields, broken = split_line(bytes(raw[a:b]).decode("utf-8"))
        if broken is not None:
            shape.append(header[broken] if broken < width else "")
        else:
            shape.append("" if len(fields) > width else None)
        fields = fields[:width] + [None] * (width - len(fields))
        for j, v in enumerate(fields):
            values[j].append(v)
    cols = {c: _insert(table.column(c), at, pa.array(values[j], pa.string())) for j, c in enumerate(header)}
    cols[EXTRA_FIELDS] = _insert(pa.nulls(table.num_rows, pa.string()), at, pa.array(shape, pa.string()))
    return pa.table(cols).combine_chunks()


def _insert(good: pa.Array | pa.ChunkedArray, at: np.ndarray, rows: pa.Array) -> pa.ChunkedArray:
    """`good` with rows[k] put at index at[k] (ascending) of the result; one slice per run
    of consecutive inserted rows, no copy (the caller combines)."""
    pieces, g, k = [], 0, 0
    at = at.tolist()
    while k < len(at):
        run = k
        while run + 1 < len(at) and at[run + 1] == at[run] + 1:
            run += 1
        before = at[k] - k  # good rows before this run
        pieces += [good.slice(g, before - g), rows.slice(k, run + 1 - k)]
        g, k = before, run + 1
    pieces.append(good.slice(g))
    chunks = [c for p in pieces for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])]
    return pa.chunked_array(chunks, pa.string())


# The hidden column marking rows whose shape is broken (`_with_bad_rows`); parsing drops it.
EXTRA_FIELDS = "\x00extra_fields"


def read_cdr_table(path: str | Path) -> pa.Table:
    """The CDR file as a table of strings, in file order; missing fields are nulls."""
    return _read_strings(Path(path), CDR_COLUMNS)


@dataclass
class AccountPlans:
    """Accounts and their plans, columnar: account i is `names[i]` rated with `plans[plan_of[i]]`."""

    names: pa.Array  # string, distinct
    plan_of: np.ndarray  # int32 index into plans
    plans: list[Plan]  # distinct plans

    @classmethod
    def from_dict(cls, accounts: Mapping[str, Plan]) -> AccountPlans:
        index: dict[tuple, int] = {}  # Plan is not hashable; its fields are
        plans: list[Plan] = []
        plan_of = []
        for p in accounts.values():
            key = (p.tariff, tuple(p.discounts))
            if key not in index:
                index[key] = len(plans)
                plans.append(p)
            plan_of.append(index[key])
        return cls(pa.array(list(accounts), pa.string()), np.array(plan_of, np.int32), plans)

    def as_dict(self) -> dict[str, Plan]:
        return {n: self.plans[k] for n, k in zip(self.names.to_pylist(), self.plan_of.tolist(), strict=False)}


def read_accounts(path: str | Path, catalog: Catalog) -> AccountPlans:
    """Read `account,tariff,discounts` (discounts separated by `;`) into a plan per account.

    The whole file is refused (CdrFileError naming line and field) on any bad row: an account
    file is configuration, and rating half of it would be wrong.
    """
    path = Path(path)
    table = _read_strings(path, ("account", "tariff"), threads=False)
    if EXTRA_FIELDS in table.column_names:
        raise CdrFileError(f"{path}: some rows have the wrong number of fields")
    n = table.num_rows
    names = table.column("account").combine_chunks()
    empty = np.flatnonzero(~nonempty(names))
    if len(empty):
        raise CdrFileError(f"{path}:{empty[0] + 2}: account: empty")
    codes = pc.dictionary_encode(names).indices.to_numpy()
    if len(codes):
        seen = np.concatenate([[-1], np.maximum.accumulate(codes)[:-1]])
        twice = np.flatnonzero(codes <= seen)
        if len(twice):
            raise CdrFileError(f"{path}:{twice[0] + 2}: account: {names[int(twice[0])].as_py()!r} listed twice")
    tariff = table.column("tariff").combine_chunks()
    disc = (table.column("discounts").combine_chunks() if "discounts" in table.column_names
            else pa.array([""] * n, pa.string()))
    # One Python step per distinct (tariff, discounts) pair, not per account.
    combo = pc.binary_join_element_wise(tariff, disc, "\x00")
    enc = pc.dictionary_encode(combo)
    combo_codes = enc.indices.to_numpy()
    first = np.zeros(len(enc.dictionary), np.int64)
    if n:
        present, at = np.unique(combo_codes, return_index=True)
        first[present] = at
    plans = []
    for k, text in enumerate(enc.dictionary.to_pylist()):
        line = first[k] + 2
        t, _, d = text.partition("\x00")
        if t not in catalog.tariffs:
            raise CdrFileError(f"{path}:{line}: tariff: unknown tariff {t!r}")
        names_d = tuple(x.strip() for x in d.split(";") if x.strip())
        for k, x in enumerate(names_d):
            if x not in catalog.discounts:
                raise CdrFileError(f"{path}:{line}: discounts: unknown discount {x!r}")
            if x in names_d[:k]:
                raise CdrFileError(f"{path}:{line}: discounts: discount {x!r} listed twice")
        plans.append(Plan(tariff=t, discounts=names_d))
    return AccountPlans(names, combo_codes.astype(np.int32), plans)


def nonempty(arr: pa.Array) -> np.ndarray:
    """bool per string: not null and not empty."""
    return pc.fill_null(pc.greater(pc.binary_length(arr), 0), False).to_numpy(zero_copy_only=False)
