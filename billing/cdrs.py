"""CDR files: reading and validating CDR and account CSVs into engine batches, writing rated CSVs.

All per-row work is columnar (pyarrow compute and numpy); Python loops only run per distinct
value (accounts, plans, cycles) or on the slow path for rows with the wrong number of fields.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rating.cycles import cycle_bounds, cycle_of, parse_cycle
from rating.engine import REASONS, Accumulators, CdrBatch, Plan, RatedBatch, rate_batch
from rating.model import Catalog

# Required CDR columns, in the order malformed checks run (the first bad one names the reason).
CDR_COLUMNS = ("cdr_id", "account", "service", "start", "usage", "destination")
OUTPUT_COLUMNS = (
    "status", "reason", "destination_name", "band", "rated_usage", "charge", "discount", "net_charge",
)
ACCOUNT_COLUMNS = ("account", "tariff", "discounts")

MALFORMED = REASONS.index("malformed")
DUPLICATE = REASONS.index("duplicate")
UNKNOWN_ACCOUNT = REASONS.index("unknown_account")
NO_RATE = REASONS.index("no_rate")
MAX_DIGITS = 18  # int64 holds any 18-digit number; 19 could overflow

# ISO 8601 start layout: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH|+HHMM|+HH:MM)
_DIGIT_POS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_START_WIDTH = 19 + 1 + 9 + 6


class CdrFileError(ValueError):
    """A CDR or account file that cannot be used at all (unreadable, a required column missing)."""


# ---------------------------------------------------------------------------------------------
# reading


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        row = next(csv.reader(f), None)
    if not row:
        raise CdrFileError(f"{path}: empty file, a header row is required")
    return row


def _read_strings(path: Path, required: tuple[str, ...]) -> pa.Table:
    """Read a CSV with every column as a string; rows with the wrong field count keep their place."""
    path = Path(path)
    try:
        header = _header(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise CdrFileError(f"{path}: cannot read: {exc}") from exc
    missing = [c for c in required if c not in header]
    if missing:
        raise CdrFileError(f"{path}: missing required column(s) {', '.join(missing)} in header")
    if len(set(header)) != len(header):
        raise CdrFileError(f"{path}: duplicate column names in header {header}")
    bad_rows = []

    def on_invalid(row) -> str:
        bad_rows.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=16 << 20),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise CdrFileError(f"{path}: cannot read as CSV: {exc}") from exc
    if bad_rows:
        # Rows with too few or too many fields are rare; re-read in Python so that they keep
        # their place in the output (pyarrow can only skip them) and get a malformed reason.
        table = _read_strings_slow(path, header)
    return table.combine_chunks()


def _read_strings_slow(path: Path, header: list[str]) -> pa.Table:
    width = len(header)
    cols: list[list[str | None]] = [[] for _ in range(width + 1)]
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if not row:
                continue  # blank lines are skipped, as pyarrow does
            extra = len(row) > width
            row = row[:width] + [None] * (width - len(row))
            for j, v in enumerate(row):
                cols[j].append(v)
            cols[width].append("1" if extra else None)
    arrays = {name: pa.array(cols[j], pa.string()) for j, name in enumerate(header)}
    # Nulls mark missing fields; the extra-fields marker is a hidden column dropped on parse.
    arrays[_EXTRA] = pa.array(cols[width], pa.string())
    return pa.table(arrays)


_EXTRA = "\x00extra_fields"


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
    table = _read_strings(path, ("account", "tariff"))
    if _EXTRA in table.column_names:
        raise CdrFileError(f"{path}: some rows have the wrong number of fields")
    n = table.num_rows
    names = table.column("account").combine_chunks()
    empty = np.flatnonzero(~_nonempty(names))
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
        for x in names_d:
            if x not in catalog.discounts:
                raise CdrFileError(f"{path}:{line}: discounts: unknown discount {x!r}")
        plans.append(Plan(tariff=t, discounts=names_d))
    return AccountPlans(names, combo_codes.astype(np.int32), plans)


# ---------------------------------------------------------------------------------------------
# validation


def _string_matrix(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `width` bytes of every string as a uint8 matrix [n, width] (0-padded) and lengths."""
    arr = pc.fill_null(arr, "")
    n = len(arr)
    buffers = arr.buffers()
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=off_type)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    data = np.concatenate([data, np.zeros(1, np.uint8)])  # a safe index for padding
    lengths = offsets[1:] - offsets[:-1]
    starts = offsets[:-1]
    out = np.zeros((n, width), dtype=np.uint8)
    pad = len(data) - 1
    for j in range(width):
        out[:, j] = data[np.where(j < lengths, starts + j, pad)]
    return out, lengths


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm), vectorized."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_start(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 times with an offset or Z -> (UTC epoch seconds int64, valid bool).

    Accepted: `YYYY-MM-DD` `T` (or `t`, space) `HH:MM:SS`, optional `.` and 1..9 fraction
    digits (dropped: rating works in whole seconds), then `Z`/`z`, `+HH`, `+HHMM` or `+HH:MM`.
    A time without an offset is refused: it does not say which instant it is.
    """
    m, length = _string_matrix(arr, _START_WIDTH)
    n = len(length)
    d = m - np.uint8(48)  # digit values; anything that is not a digit wraps to >= 10
    isdig = d < 10
    ok = (length >= 20) & (length <= _START_WIDTH)
    for p in _DIGIT_POS:
        ok &= isdig[:, p]
    ok &= (m[:, 4] == 45) & (m[:, 7] == 45) & (m[:, 13] == 58) & (m[:, 16] == 58)
    ok &= (m[:, 10] == 84) | (m[:, 10] == 116) | (m[:, 10] == 32)

    def num(*pos):
        v = np.zeros(n, np.int64)
        for p in pos:
            v = v * 10 + d[:, p]
        return v

    year, month, day = num(0, 1, 2, 3), num(5, 6), num(8, 9)
    hour, minute, second = num(11, 12), num(14, 15), num(17, 18)
    dot = m[:, 19] == 46
    run = np.zeros(n, np.int64)  # fraction digits after the dot
    alive = dot.copy()
    for p in range(20, 29):
        alive &= isdig[:, p]
        run += alive
    ok &= ~dot | (run >= 1)
    tz = np.where(dot, 20 + run, 19)
    tzlen = length - tz
    rows = np.arange(n)
    last = _START_WIDTH - 1
    t = [m[rows, np.minimum(tz + k, last)] for k in range(6)]  # the zone designator's bytes
    td = [x - np.uint8(48) for x in t]
    dig = [x < 10 for x in td]
    zulu = (tzlen == 1) & ((t[0] == 90) | (t[0] == 122))
    signed = (t[0] == 43) | (t[0] == 45)
    off_h = td[1].astype(np.int64) * 10 + td[2]
    colon = t[3] == 58
    hhmm = (tzlen == 5) & dig[3] & dig[4]
    hh_mm = (tzlen == 6) & colon & dig[4] & dig[5]
    off_m = np.where(hhmm, td[3].astype(np.int64) * 10 + td[4], 0)
    off_m = np.where(hh_mm, td[4].astype(np.int64) * 10 + td[5], off_m)
    offset_ok = signed & dig[1] & dig[2] & ((tzlen == 3) | hhmm | hh_mm) & (off_h <= 23) & (off_m <= 59)
    ok &= zulu | offset_ok
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    dim = dim + ((month == 2) & leap)
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= dim)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    offset = np.where(offset_ok & ~zulu, (off_h * 3600 + off_m * 60) * np.where(t[0] == 45, -1, 1), 0)
    epoch = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return np.where(ok, epoch, 0), ok


def _digits(arr: pa.Array, min_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digit strings -> (int64 value, int8 length, valid bool); invalid rows get 0."""
    arr = pc.fill_null(arr, "x")
    ok = pc.match_substring_regex(arr, f"^[0-9]{{{min_len},{MAX_DIGITS}}}$")
    length = pc.binary_length(arr)
    usable = pc.and_(ok, pc.greater(length, 0))
    value = pc.cast(pc.if_else(usable, arr, "0"), pa.int64())
    ok_np = ok.to_numpy(zero_copy_only=False)
    return (
        value.to_numpy(),
        np.where(ok_np, length.to_numpy(), 0).astype(np.int8),
        ok_np,
    )


def _nonempty(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.greater(pc.binary_length(arr), 0), False).to_numpy(zero_copy_only=False)


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
) -> ParsedCdrs:
    """Validate a CDR table and build the engine batch.

    With `accounts`, CDRs of other accounts are `unknown_account`; with `default_plan` instead,
    every account in the file is known and rated with that plan.
    """
    if (accounts is None) == (default_plan is None):
        raise ValueError("give exactly one of accounts and default_plan")
    n = table.num_rows
    col = {c: table.column(c).combine_chunks() for c in CDR_COLUMNS}

    start, start_ok = parse_start(col["start"])
    usage, _, usage_ok = _digits(col["usage"], 1)
    dest, dest_len, dest_ok = _digits(col["destination"], 0)
    checks = [
        _nonempty(col["cdr_id"]), _nonempty(col["account"]), _nonempty(col["service"]),
        start_ok, usage_ok, dest_ok,
    ]
    malformed_column = np.full(n, -1, np.int8)
    for j in range(len(checks) - 1, -1, -1):  # last assignment wins: the first bad column
        malformed_column[~checks[j]] = j
    if _EXTRA in table.column_names:
        # A row with too many fields: its last column absorbed text that belongs nowhere.
        extra = pc.is_valid(table.column(_EXTRA)).to_numpy(zero_copy_only=False)
        malformed_column[extra & (malformed_column < 0)] = len(CDR_COLUMNS) - 1
        table = table.drop_columns([_EXTRA])
    malformed = malformed_column >= 0

    pre = np.zeros(n, np.int8)
    pre[malformed] = MALFORMED

    # Duplicates among well-formed rows only: a garbled row must not shadow a good one.
    good = np.flatnonzero(~malformed)
    ids = col["cdr_id"]
    codes = pc.dictionary_encode(ids.take(pa.array(good))).indices.to_numpy()
    if len(codes):
        # dictionary codes are handed out in order of first appearance
        seen = np.concatenate([[-1], np.maximum.accumulate(codes)[:-1]])
        pre[good[codes <= seen]] = DUPLICATE

    rank = np.empty(n, np.int64)
    rank[pc.sort_indices(pc.fill_null(ids, "")).to_numpy()] = np.arange(n, dtype=np.int64)

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
    account = np.where(malformed, -1, account).astype(np.int32)
    plan = np.where(account < 0, -1, plan).astype(np.int32)
    pre[(pre == 0) & (account < 0)] = UNKNOWN_ACCOUNT

    services = sorted(compiled.service_id, key=compiled.service_id.get)
    service = pc.fill_null(
        pc.index_in(pc.fill_null(col["service"], ""), value_set=pa.array(services, pa.string())), -1
    ).to_numpy()
    service = np.array([compiled.service_id[s] for s in services] + [-1], np.int32)[service]

    batch = CdrBatch(
        account=account,
        plan=plan,
        service=np.where(malformed, -1, service).astype(np.int32),
        start=start.astype(np.int64),
        usage=np.where(malformed, 0, usage).astype(np.int64),
        dest=np.where(malformed, 0, dest).astype(np.int64),
        dest_len=np.where(malformed, 0, dest_len).astype(np.int8),
        cdr_rank=rank,
        pre_reason=pre,
    )
    return ParsedCdrs(table, batch, malformed_column, plans, n_accounts)


# ---------------------------------------------------------------------------------------------
# cycles and rating


def cycle_starts(timezone: str, bill_cycle_day: int, first: int, last: int) -> np.ndarray:
    """UTC epochs of consecutive cycle starts (billing.md "Cycles", `rating.cycles`) covering
    the instants first..last: element 0 is the start of the cycle containing `first`."""
    year, month = parse_cycle(cycle_of(first, bill_cycle_day, timezone))
    out = [cycle_bounds(f"{year:04d}-{month:02d}", bill_cycle_day, timezone)[0]]
    while True:  # one step per cycle (month) spanned, not per CDR
        start, end = cycle_bounds(f"{year:04d}-{month:02d}", bill_cycle_day, timezone)
        out.append(end)
        if end > last:
            return np.array(out, np.int64)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def cycle_index(start: np.ndarray, usable: np.ndarray, timezone: str, bill_cycle_day: int) -> np.ndarray:
    """Cycle number (0 = earliest) of every CDR start; rows not `usable` get 0."""
    if not usable.any():
        return np.zeros(len(start), np.int64)
    s = start[usable]
    starts = cycle_starts(timezone, bill_cycle_day, int(s.min()), int(s.max()))
    idx = np.searchsorted(starts, start, side="right") - 1
    return np.where(usable, idx, 0)


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


def status_and_reason(parsed: ParsedCdrs, rated: RatedBatch) -> tuple[np.ndarray, np.ndarray]:
    """Status code (0 rated, 1 duplicate, 2 rejected) and reason label index per row.

    Reason labels are `REASONS` followed by `malformed:<column>` for each CDR column.
    """
    reason = rated.reason.astype(np.int64)
    label = np.where(parsed.malformed_column >= 0, len(REASONS) + parsed.malformed_column, reason)
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


def write_rated(table: pa.Table, out) -> None:
    """Write the rated table as CSV to a path or binary file object.

    Arrow's "needed" style quotes every string; plain values are written unquoted unless some
    value (or column name) holds a comma, quote or line break, and then every string is quoted.
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
    pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(quoting_style=style))


@dataclass
class Summary:
    rated: int
    duplicate: int
    rejected: int
    net_charge: int  # micro-units, sum over rated rows

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
        net_charge=int(rated.net_charge[ok].sum()),
    )


def to_csv_bytes(table: pa.Table) -> bytes:
    """The CSV text of a rated table (small tables; tests and tools)."""
    buf = io.BytesIO()
    write_rated(table, buf)
    return buf.getvalue()
