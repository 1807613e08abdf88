"""CDR and account files read into tables of strings (CDRs) and plans per account (accounts).

Every column is read as text by pyarrow; rows with the wrong number of fields keep their place.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rating.engine import Plan
from rating.model import Catalog

# Required CDR columns, in the order malformed checks run (the first bad one names the reason).
CDR_COLUMNS = ("cdr_id", "account", "service", "start", "usage", "destination")
ACCOUNT_COLUMNS = ("account", "tariff", "discounts")


class CdrFileError(ValueError):
    """A CDR or account file that cannot be used at all (unreadable, a required column missing)."""


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        row = next(csv.reader(f), None)
    if not row:
        raise CdrFileError(f"{path}: empty file, a header row is required")
    return row


def _read_strings(path: Path, required: tuple[str, ...], threads: bool = True) -> pa.Table:
    """Read a CSV with every column as a string; rows with the wrong field count keep their place.

    `threads=False` keeps a small file off Arrow's shared thread pool (which may be busy with
    a big one read meanwhile)."""
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
        # Mapped, not read: the bytes come straight from the page cache, no buffer of the
        # file's size to allocate (fresh memory is slow to touch on a VM).
        table = pacsv.read_csv(
            pa.memory_map(str(path)) if path.is_file() else path,
            read_options=pacsv.ReadOptions(block_size=16 << 20, use_threads=threads),
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
    arrays[EXTRA_FIELDS] = pa.array(cols[width], pa.string())
    return pa.table(arrays)


# The hidden column marking rows with too many fields (`_read_strings_slow`); parsing drops it.
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
