"""CDR files: validating CDR tables into engine batches, rating them by cycle, writing rated CSVs.

All per-row work is columnar (pyarrow compute, numpy, `billing.kernels`); Python loops only run
per distinct value (plans, cycles). Reading the files is `billing.cdr_read` (re-exported here).
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from billing import kernels as BK
from billing.cdr_read import (  # noqa: F401  (re-exported: callers read files through cdrs)
    ACCOUNT_COLUMNS,
    CDR_COLUMNS,
    EXTRA_FIELDS,
    PLAIN,
    AccountPlans,
    CdrFileError,
    _flat,
    _string_buffers,
    nonempty,
    read_accounts,
    read_cdr_table,
)
from rating.cycles import cycle_months
from rating.engine import REASONS, Accumulators, CdrBatch, Plan, RatedBatch, rate_batch

OUTPUT_COLUMNS = (
    "status", "reason", "destination_name", "band", "rated_usage", "charge", "discount", "net_charge",
)

MALFORMED = REASONS.index("malformed")
DUPLICATE = REASONS.index("duplicate")
UNKNOWN_ACCOUNT = REASONS.index("unknown_account")
NO_RATE = REASONS.index("no_rate")
USAGE_COLUMN = CDR_COLUMNS.index("usage")
MAX_DIGITS = 18  # int64 holds any 18-digit number; 19 could overflow


# ---------------------------------------------------------------------------------------------
# validation


def parse_start(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISO 8601 times with an offset or Z -> (UTC epoch seconds int64, fraction of a second in
    nanoseconds int64, valid bool); the instant is seconds + nanoseconds / 10^9.

    Accepted: `YYYY-MM-DD` `T` (or `t`, space) `HH:MM:SS`, optional `.` and 1..9 fraction
    digits, then `Z`/`z`, `+HH`, `+HHMM` or `+HH:MM`. A time without an offset is refused: it
    does not say which instant it is. Bands and cycles use the whole second (their edges are
    whole seconds); the fraction only orders CDRs that start in the same second.
    """
    offsets, data = _string_buffers(arr)
    n = len(offsets) - 1
    epoch, nanos, ok = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.bool_)
    BK._parse_starts(offsets, data, epoch, nanos, ok)
    return epoch, nanos, ok


def _order_within_second(rank: np.ndarray, nanos: np.ndarray) -> None:
    """Make `rank` (the cdr_id ranks, a permutation) rank rows by (fraction of a second,
    cdr_id), in place: the engine breaks ties of whole-second starts by it (rule 6)."""
    if not nanos.any():
        return  # the usual file, whole seconds: the id ranks already are that order
    # nanos < 10^9 and rank < n: the key is unique and fits int64 below 9 * 10^9 rows
    key = nanos * len(rank) + rank
    rank[np.argsort(key)] = np.arange(len(rank))


def _digits(arr: pa.Array, min_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digit strings -> (int64 value, int8 length, valid bool); invalid rows get 0."""
    if arr.null_count:
        arr = pc.fill_null(arr, "x")
    offsets, data = _string_buffers(arr)
    n = len(offsets) - 1
    value, length, ok = np.empty(n, np.int64), np.empty(n, np.int8), np.empty(n, np.bool_)
    BK._parse_digits(offsets, data, min_len, MAX_DIGITS, value, length, ok)
    return value, length, ok



@dataclass
class ParsedCdrs:
    """A CDR table made ready for the engine."""

    table: pa.Table  # the input columns, strings, file order
    batch: CdrBatch  # engine columns, same order
    malformed_column: np.ndarray  # int8 index into CDR_COLUMNS of the first bad column, -1 none
    plans: list[Plan]  # batch.plan indexes this
    n_accounts: int  # accumulator rows


def parse_cdrs(
    table: pa.Table,
    compiled,
    accounts: AccountPlans | Mapping[str, Plan] | None = None,
    default_plan: Plan | None = None,
    id_order: pa.Array | None = None,
) -> ParsedCdrs:
    """Validate a CDR table and build the engine batch.

    With `accounts`, CDRs of other accounts are `unknown_account`; with `default_plan` instead,
    every account in the file is known and rated with that plan. `id_order` is
    `sort_cdr_ids(table)` if the caller already has it.
    """
    if (accounts is None) == (default_plan is None):
        raise ValueError("give exactly one of accounts and default_plan")
    col = {c: _flat(table.column(c)) for c in CDR_COLUMNS}
    if id_order is not None:
        return _parse_columns(table, col, id_order, compiled, accounts, default_plan)
    with ThreadPoolExecutor(1) as pool:
        # Arrow sorts the ids on a second thread (it releases the GIL) meanwhile.
        sorting = pool.submit(sort_cdr_ids, table)
        return _parse_columns(table, col, sorting.result, compiled, accounts, default_plan)


def sort_cdr_ids(table: pa.Table) -> pa.Array:
    """Row indices of a CDR table in the lexicographic order of cdr_id; a stable sort."""
    ids = _flat(table.column("cdr_id"))
    return pc.sort_indices(pc.fill_null(ids, "") if ids.null_count else ids)


def _parse_columns(table, col, id_order, compiled, accounts, default_plan) -> ParsedCdrs:
    """`parse_cdrs` given the columns; id_order: the sorted id indices or a callable giving them."""
    n = table.num_rows
    start, start_nanos, start_ok = parse_start(col["start"])
    usage, _, usage_ok = _digits(col["usage"], 1)
    dest, dest_len, dest_ok = _digits(col["destination"], 0)
    checks = [
        nonempty(col["cdr_id"]), nonempty(col["account"]), nonempty(col["service"]),
        start_ok, usage_ok, dest_ok,
    ]
    broken = None
    if EXTRA_FIELDS in table.column_names:
        # A line whose shape broke (`billing.cdr_read._with_bad_rows`): a quote left open in
        # a CDR column fails that column; past them (too many fields, an open quote in
        # another column) the values cannot be told apart: the last column is named.
        shape = pc.fill_null(_flat(table.column(EXTRA_FIELDS)), "\x00")
        for j, c in enumerate(CDR_COLUMNS):
            checks[j] = checks[j] & ~pc.equal(shape, c).to_numpy(zero_copy_only=False)
        broken = pc.not_equal(shape, "\x00").to_numpy(zero_copy_only=False)
        table = table.drop_columns([EXTRA_FIELDS])
    malformed_column = np.full(n, -1, np.int8)
    for j in range(len(checks) - 1, -1, -1):  # last assignment wins: the first bad column
        malformed_column[~checks[j]] = j
    if broken is not None:
        malformed_column[broken & (malformed_column < 0)] = len(CDR_COLUMNS) - 1
    malformed = malformed_column >= 0

    pre = np.zeros(n, np.int8)
    pre[malformed] = MALFORMED

    # Duplicates among well-formed rows only: a garbled row must not shadow a good one. A
    # stable sort keeps equal ids in file order, so the first good row of each run is the
    # original; the same sort gives the id ranks, which the fractions of a second of the
    # starts then refine into the engine's tie-break.
    ids = col["cdr_id"]
    order = (id_order() if callable(id_order) else id_order).to_numpy().view(np.int64)
    rank = np.empty(n, np.int64)
    duplicate = np.empty(n, np.bool_)
    BK._duplicates_and_rank(order, *_string_buffers(ids), ~malformed, rank, duplicate)
    _order_within_second(rank, start_nanos)
    pre[duplicate] = DUPLICATE

    acct_col = pc.fill_null(col["account"], "")
    if accounts is not None:
        if not isinstance(accounts, AccountPlans):
            accounts = AccountPlans.from_dict(accounts)
        plans = accounts.plans
        plan_of = np.append(accounts.plan_of, np.int32(-1))
        account = pc.fill_null(pc.index_in(acct_col, value_set=accounts.names), -1)
        account = account.to_numpy().astype(np.int32)
        plan = plan_of[account]  # -1 -> the trailing -1
        n_accounts = len(accounts.names)
    else:
        enc = pc.dictionary_encode(acct_col)
        account = enc.indices.to_numpy().astype(np.int32)
        plans = [default_plan]
        plan = np.zeros(n, np.int32)
        n_accounts = len(enc.dictionary)
    # in place: no more arrays of the file's size than the batch needs
    account[malformed] = -1
    plan[account < 0] = -1
    pre[(pre == 0) & (account < 0)] = UNKNOWN_ACCOUNT

    services = sorted(compiled.service_id, key=compiled.service_id.get)
    service = pc.fill_null(
        pc.index_in(pc.fill_null(col["service"], ""), value_set=pa.array(services, pa.string())), -1
    ).to_numpy()
    service = np.array([compiled.service_id[s] for s in services] + [-1], np.int32)[service]
    for values, blank in ((service, -1), (usage, 0), (dest, 0), (dest_len, 0)):
        values[malformed] = blank

    batch = CdrBatch(
        account=account,
        plan=plan,
        service=service,
        start=start,
        usage=usage,
        dest=dest,
        dest_len=dest_len,
        cdr_rank=rank,
        pre_reason=pre,
    )
    return ParsedCdrs(table, batch, malformed_column, plans, n_accounts)


# ---------------------------------------------------------------------------------------------
# cycles and rating


def cycle_index(start: np.ndarray, usable: np.ndarray, timezone: str, bill_cycle_day: int) -> np.ndarray:
    """Cycle number (0 = the earliest cycle of a usable row, counted in months) of every CDR
    start; rows not `usable` get 0. The arithmetic is `rating.cycles.cycle_months`."""
    months = cycle_months(start, usable, timezone, bill_cycle_day)
    if not usable.any():
        return np.zeros(len(start), np.int64)
    return np.where(usable, months - months[usable].min(), 0)


def _take_batch(batch: CdrBatch, rows: np.ndarray) -> CdrBatch:
    return CdrBatch(**{f: getattr(batch, f)[rows] for f in batch.__dataclass_fields__})


def rate_cdrs(compiled, parsed: ParsedCdrs, timezone: str, bill_cycle_day: int | None = None) -> RatedBatch:
    """Rate a parsed file: one cycle, or per bill cycle with fresh accumulators for each."""
    batch = parsed.batch
    if bill_cycle_day is None:
        return rate_batch(compiled, batch, parsed.plans, Accumulators.zeros(compiled, parsed.n_accounts))
    usable = batch.pre_reason != MALFORMED
    cycle = cycle_index(batch.start, usable, timezone, bill_cycle_day)
    order = np.argsort(cycle, kind="stable")
    bounds = np.flatnonzero(np.diff(cycle[order])) + 1
    parts = []
    for rows in np.split(order, bounds):
        acc = Accumulators.zeros(compiled, parsed.n_accounts)
        parts.append((rows, rate_batch(compiled, _take_batch(batch, rows), parsed.plans, acc)))
    fields = list(RatedBatch.__dataclass_fields__)
    out = {}
    for f in fields:
        first = getattr(parts[0][1], f)
        arr = np.empty(len(cycle), first.dtype)
        for rows, rated in parts:
            arr[rows] = getattr(rated, f)
        out[f] = arr
    return RatedBatch(**out)


def warm_up(compiled, timezone: str) -> None:
    """Load every numba kernel that rating a file uses (from numba's on-disk cache) by
    rating and writing one made-up CDR; `ccs rate` does this while its file is being read."""
    row = {"cdr_id": "w", "account": "w", "service": "", "start": "2024-01-01T00:00:00Z",
           "usage": "0", "destination": ""}
    table = pa.table({c: pa.array([v], pa.string()) for c, v in row.items()})
    parsed = parse_cdrs(table, compiled, accounts={})
    write_rated_csv(parsed, rate_cdrs(compiled, parsed, timezone), compiled, compiled.decimals, io.BytesIO())


# ---------------------------------------------------------------------------------------------
# output


def format_money_array(micro: np.ndarray, decimals: int) -> pa.Array:
    """Vectorized `rating.money.format_money`: int64 micro-units already rounded -> strings."""
    micro = np.asarray(micro, np.int64)
    step = 10 ** (6 - decimals)
    if np.any(micro % step):
        raise ValueError(f"amounts do not fit in {decimals} decimals")
    neg = micro < 0
    a = np.abs(micro)
    whole = pc.cast(pa.array(a // 1_000_000), pa.string())
    if decimals:
        frac = pc.utf8_lpad(pc.cast(pa.array((a % 1_000_000) // step), pa.string()), decimals, "0")
        whole = pc.binary_join_element_wise(whole, frac, ".")
    if neg.any():
        whole = pc.if_else(pa.array(neg), pc.binary_join_element_wise("-", whole, ""), whole)
    return whole


def _labels(index: np.ndarray, names: list[str]) -> pa.Array:
    """Strings from an int index into `names`; -1 gives an empty string."""
    idx = np.asarray(index, np.int64)
    table = pa.array(list(names) + [""], pa.string())
    return table.take(pa.array(np.where(idx < 0, len(names), idx)))


def malformed_columns(parsed: ParsedCdrs, rated: RatedBatch) -> np.ndarray:
    """`parsed.malformed_column` completed by the engine: a well-formed row the engine
    rejects as malformed has a usage its rate entry cannot charge below 2^53 micro-units
    (`rating.compiler.usage_limit`), and is named `malformed:usage`."""
    flagged = (rated.reason == MALFORMED) & (parsed.malformed_column < 0)
    if not flagged.any():
        return parsed.malformed_column
    return np.where(flagged, np.int8(USAGE_COLUMN), parsed.malformed_column).astype(np.int8)


def status_and_reason(parsed: ParsedCdrs, rated: RatedBatch) -> tuple[np.ndarray, np.ndarray]:
    """Status code (0 rated, 1 duplicate, 2 rejected) and reason label index per row.

    Reason labels are `REASONS` followed by `malformed:<column>` for each CDR column.
    """
    reason = rated.reason.astype(np.int64)
    column = malformed_columns(parsed, rated)
    label = np.where(column >= 0, len(REASONS) + column, reason)
    status = np.where(reason == 0, 0, np.where(reason == DUPLICATE, 1, 2))
    return status, label


REASON_LABELS = list(REASONS) + [f"malformed:{c}" for c in CDR_COLUMNS]
STATUS_LABELS = ["rated", "duplicate", "rejected"]


def rated_table(parsed: ParsedCdrs, rated: RatedBatch, compiled, decimals: int) -> pa.Table:
    """The input columns followed by the rated columns, input order.

    Rows not rated have zero amounts; of them only `no_rate` rows name destination and band.
    """
    status, label = status_and_reason(parsed, rated)
    ok = rated.reason == 0
    # where a row was found and why it has no rate helps the operator; other rejections
    # (duplicates, unknown accounts, ...) stop before that and show none
    located = ok | (rated.reason == NO_RATE)
    zero = np.zeros(len(ok), np.int64)
    out = parsed.table.drop_columns([c for c in OUTPUT_COLUMNS if c in parsed.table.column_names])
    new = {
        "status": _labels(status, STATUS_LABELS),
        "reason": _labels(label, REASON_LABELS),
        "destination_name": _labels(np.where(located, rated.dest_name, -1), compiled.destination_names),
        "band": _labels(np.where(located, rated.band, -1), compiled.band_names),
        "rated_usage": pc.cast(pa.array(np.where(ok, rated.rated_usage, zero)), pa.string()),
        "charge": format_money_array(np.where(ok, rated.charge, zero), decimals),
        "discount": format_money_array(np.where(ok, rated.discount, zero), decimals),
        "net_charge": format_money_array(np.where(ok, rated.net_charge, zero), decimals),
    }
    for name, arr in new.items():
        out = out.append_column(name, arr)
    return out


def _header_line(names: list[str], quoted: bool) -> bytes:
    """The header row, quoted like the rows: every name in quotes (inner quotes doubled) or none."""
    if quoted:
        names = ['"' + name.replace('"', '""') + '"' for name in names]
    return (",".join(names) + "\n").encode()


def write_rated(table: pa.Table, out) -> None:
    """Write the rated table as CSV to a path or binary file object.

    Arrow's "needed" style quotes every string; plain values are written unquoted unless some
    value (or column name) holds a comma, quote or line break, and then every string (and
    every column name) is quoted. The header is written here: Arrow quotes it always.
    """
    special = "[,\"\r\n]"
    # The rated columns hold statuses, reasons, catalog names (letters, digits, _ . -) and
    # numbers: only the input columns can need quotes.
    needs_quotes = any(
        pc.any(pc.match_substring_regex(pc.fill_null(col, ""), special)).as_py()
        for name, col in zip(table.column_names, table.columns, strict=False)
        if name not in OUTPUT_COLUMNS and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
    ) or any(c in name for name in table.column_names for c in ',"\r\n')
    style = "needed" if needs_quotes else "none"
    options = pacsv.WriteOptions(quoting_style=style, include_header=False)
    with _binary_out(out) as f:
        f.write(_header_line(table.column_names, needs_quotes))
        pacsv.write_csv(table, f, write_options=options)


def _row_labels(compiled) -> tuple[np.ndarray, np.ndarray]:
    """Every `status,reason,destination_name,band,` text a rated row can have, in the order
    `billing.kernels._write_rows` indexes them, as (int64 offsets, uint8 data)."""
    dests = list(compiled.destination_names) + [""]
    bands = list(compiled.band_names) + [""]
    texts = []
    for head in ("rated,,", f"rejected,{REASONS[NO_RATE]},"):  # rows that name where they went
        for d in dests:
            texts.extend(f"{head}{d},{b}," for b in bands)
    for status in STATUS_LABELS:
        texts.extend(f"{status},{label},,," for label in REASON_LABELS)
    enc = [t.encode() for t in texts]
    offsets = np.zeros(len(enc) + 1, np.int64)
    offsets[1:] = np.cumsum([len(t) for t in enc])
    return offsets, np.frombuffer(b"".join(enc), np.uint8)


def write_rated_csv(parsed: ParsedCdrs, rated: RatedBatch, compiled, decimals: int, out) -> None:
    """Write the rated CSV of a parsed file to a path or binary file object.

    Byte for byte what `write_rated(rated_table(...), out)` writes, built by one kernel pass
    into a byte buffer when no value needs quoting (the usual case); otherwise by Arrow.
    """
    table = parsed.table.drop_columns([c for c in OUTPUT_COLUMNS if c in parsed.table.column_names])
    names = table.column_names + list(OUTPUT_COLUMNS)
    strings = [(f, c) for f, c in zip(table.schema, table.columns, strict=True)
               if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)]
    cols = [_string_buffers(c) for _, c in strings]
    # a column the reader marked PLAIN was looked at already (`billing.cdr_read._mark_plain`)
    looked = [f.metadata == PLAIN for f, _ in strings]
    if (len(cols) < table.num_columns or any(ch in name for name in names for ch in ',"\r\n')
            or any(not seen and BK._has_special(data, off[0], off[-1])
                   for seen, (off, data) in zip(looked, cols, strict=True))):
        write_rated(rated_table(parsed, rated, compiled, decimals), out)
        return
    step = 10 ** (6 - decimals)
    if not BK._amounts_fit(rated.reason, rated.charge, rated.discount, rated.net_charge, step):
        raise ValueError(f"amounts do not fit in {decimals} decimals")
    n = table.num_rows
    column = malformed_columns(parsed, rated)
    lab_off, lab_data = _row_labels(compiled)
    row_max = len(cols) + int(np.diff(lab_off).max()) + 21 + 3 * 29 + 1  # besides the input fields
    header = _header_line(names, quoted=False)  # no name needs quotes on this path
    # Chunks of rows are formatted on two threads (the kernels release the GIL), each chunk's
    # input fields first copied side by side, into a few buffers used in turn; chunks are
    # written in order as they come. No array of the file's size is made.
    slots = [[np.empty((_WRITE_CHUNK + 1, len(cols)), np.int64), np.empty(0, np.uint8),
              np.empty(0, np.uint8)] for _ in range(_IN_FLIGHT)]

    def chunk(slot: int, lo: int, hi: int) -> np.ndarray:
        chunk_off, chunk_data, buf = slots[slot]
        size = sum(int(off[hi] - off[lo]) for off, _ in cols)
        if len(chunk_data) < size:
            chunk_data = slots[slot][1] = np.empty(size, np.uint8)
        if len(buf) < size + (hi - lo) * row_max + 16:
            buf = slots[slot][2] = np.empty(size + (hi - lo) * row_max + 16, np.uint8)
        at = 0
        for k, (off, data) in enumerate(cols):
            at = BK._stage_column(off, data, lo, hi, k, chunk_off, chunk_data, at)
        used = BK._write_rows(
            buf, chunk_off[: hi - lo + 1], chunk_data, lo, rated.reason, column,
            rated.dest_name, rated.band, rated.rated_usage, rated.charge, rated.discount,
            rated.net_charge, lab_off, lab_data, len(compiled.destination_names),
            len(compiled.band_names), len(REASONS), len(REASON_LABELS), DUPLICATE, NO_RATE,
            decimals)
        return buf[:used]

    with _binary_out(out) as f, ThreadPoolExecutor(2) as pool:
        f.write(header)
        pending: deque = deque()
        for k, lo in enumerate(range(0, n, _WRITE_CHUNK)):
            if len(pending) == _IN_FLIGHT:
                f.write(memoryview(pending.popleft().result()))
            pending.append(pool.submit(chunk, k % _IN_FLIGHT, lo, min(n, lo + _WRITE_CHUNK)))
        while pending:
            f.write(memoryview(pending.popleft().result()))


_WRITE_CHUNK = 1 << 15
_IN_FLIGHT = 4


@contextmanager
def _binary_out(out):
    if isinstance(out, (str, Path)):
        with open(out, "wb") as f:
            yield f
    else:
        yield out


@dataclass
class Summary:
    rated: int
    duplicate: int
    rejected: int
    net_charge: int  # micro-units, sum over rated rows: a Python int, exact at any size

    def text(self, decimals: int) -> str:
        from rating.money import format_money

        return (
            f"rated {self.rated}, duplicate {self.duplicate}, rejected {self.rejected}, "
            f"total net charge {format_money(self.net_charge, decimals)}"
        )


def summarize(rated: RatedBatch) -> Summary:
    ok = rated.reason == 0
    dup = rated.reason == DUPLICATE
    return Summary(
        rated=int(ok.sum()),
        duplicate=int(dup.sum()),
        rejected=int((~ok & ~dup).sum()),
        net_charge=exact_sum(rated.net_charge[ok]),
    )


def exact_sum(values: np.ndarray) -> int:
    """The exact sum of int64 values, as a Python int (numpy's own int64 sum wraps around).

    Each value is split into its high and low 32 bits; a part's sum over 2^30 values stays
    below 2^62, so the int64 sums of the parts are exact, and are joined as Python ints."""
    v = np.asarray(values, np.int64)
    total = 0
    for a in range(0, len(v), 1 << 30):
        part = v[a:a + (1 << 30)]
        total += (int((part >> 32).sum()) << 32) + int((part & 0xFFFFFFFF).sum())
    return total


def to_csv_bytes(table: pa.Table) -> bytes:
    """The CSV text of a rated table (small tables; tests and tools)."""
    buf = io.BytesIO()
    write_rated(table, buf)
    return buf.getvalue()
