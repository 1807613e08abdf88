"""The bills people read: the canonical bill JSON, a printable HTML page, a summary CSV, and the
export folder a bill run writes (docs: notes/BILLRUN.md "Bill JSON").

Every function checks the bill first (``check_bill``) and refuses a malformed one with a
``BillFormatError`` (a ValueError) naming the key, before anything is rendered or written.
Money stays the bills' decimal strings; sums printed on the page (a section's sum) are added up
in int micro-units (rating.money) and printed with the bill's own number of decimals.
Output depends on nothing but the arguments: the same bill gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path

import jinja2

from rating.money import MoneyError, format_money, parse_money

BILL_KEYS = (
    "account", "cycle", "status", "type", "currency", "period_start", "period_end", "due_date",
    "cycle_days", "lines", "subtotal", "account_discount", "tax", "total", "amount_due",
)
TEXT_KEYS = (
    "account", "cycle", "status", "currency", "period_start", "period_end", "due_date",
)
MONEY_KEYS = ("subtotal", "account_discount", "tax", "total", "amount_due")
LINE_KEYS = ("kind", "name", "account", "amount")
SECTION_KINDS = ("usage", "recurring", "one_time", "adjustment")  # lines 1-3, per account
BILL_LEVEL_KINDS = ("account_discount", "tax")  # lines 5-6, over the whole bill
TYPES = {"invoice": "Invoice", "statement": "Statement"}
STATUSES = ("draft", "final")
SUMMARY_COLUMNS = (
    "account", "cycle", "type", "status", "currency", "subtotal", "account_discount", "tax",
    "total", "amount_due", "lines",
)
STATEMENT_NOTE = "Nothing to pay: charged to your prepaid balance"
KIND_LABELS = {
    "usage": "Usage", "recurring": "Recurring fee", "one_time": "One-time fee",
    "adjustment": "Adjustment", "account_discount": "Account discount", "tax": "Tax",
}
_LATE = re.compile(r"late:([0-9]{4}-[0-9]{2}):(.+)")  # adjustment of a late CDR's cycle

# export file names
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)]
)
MAX_STEM_BYTES = 200  # + ".html" and the temporary ".<stem>.<16 hex>.tmp" stay below 255
SUMMARY_NAME = "summary.csv"


class BillFormatError(ValueError):
    """A bill that is not of the Bill JSON format; ``field`` names the key (``lines[2].amount``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# ---------------------------------------------------------------------------------------------
# checking


def check_bill(bill: object, where: str = "") -> dict:
    """``bill`` if it is of the Bill JSON format, else a BillFormatError naming the key (prefixed
    by ``where``, e.g. ``bills[3].``). Extra keys are kept; floats are refused anywhere."""
    if not isinstance(bill, dict):
        raise BillFormatError(where.rstrip(".") or "bill",
                              f"expected a JSON object (dict), got {type(bill).__name__}")
    _check_json_value(bill, where.rstrip("."))
    for key in BILL_KEYS:
        if key not in bill:
            raise BillFormatError(f"{where}{key}", "missing from the bill")
    for key in TEXT_KEYS:
        if not isinstance(bill[key], str) or not bill[key]:
            raise BillFormatError(f"{where}{key}", f"expected a non-empty string, got {bill[key]!r}")
    if bill["type"] not in TYPES:
        raise BillFormatError(f"{where}type", f"expected 'invoice' or 'statement', got {bill['type']!r}")
    if bill["status"] not in STATUSES:
        raise BillFormatError(f"{where}status", f"expected 'draft' or 'final', got {bill['status']!r}")
    days = bill["cycle_days"]
    if isinstance(days, bool) or not isinstance(days, int):
        raise BillFormatError(f"{where}cycle_days", f"expected an integer, got {days!r}")
    for key in MONEY_KEYS:
        _money(bill[key], f"{where}{key}")
    if bill["type"] == "statement" and _money(bill["amount_due"], f"{where}amount_due") != 0:
        raise BillFormatError(f"{where}amount_due",
                              f"a statement has nothing to pay, got {bill['amount_due']!r}")
    lines = bill["lines"]
    if not isinstance(lines, list):
        raise BillFormatError(f"{where}lines", f"expected a list, got {type(lines).__name__}")
    for i, line in enumerate(lines):
        _check_line(line, f"{where}lines[{i}]", bill["account"])
    return bill


def _check_line(line: object, field: str, owner: str) -> None:
    if not isinstance(line, dict):
        raise BillFormatError(field, f"expected an object (dict), got {type(line).__name__}")
    for key in LINE_KEYS:
        if key not in line:
            raise BillFormatError(f"{field}.{key}", "missing from the line")
    kind, name, account = line["kind"], line["name"], line["account"]
    if kind not in SECTION_KINDS + BILL_LEVEL_KINDS:
        raise BillFormatError(f"{field}.kind",
                              f"expected one of {', '.join(SECTION_KINDS + BILL_LEVEL_KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise BillFormatError(f"{field}.name", f"expected a non-empty string, got {name!r}")
    if not isinstance(account, str):
        raise BillFormatError(f"{field}.account", f"expected a string, got {account!r}")
    if kind in BILL_LEVEL_KINDS and account:
        raise BillFormatError(f"{field}.account",
                              f"a {kind} line is bill-level (account ''), got {account!r}")
    if account and account == owner:
        raise BillFormatError(f"{field}.account",
                              f"the owner's lines have account '', got the owner's id {account!r}")
    _money(line["amount"], f"{field}.amount")


def _money(value: object, field: str) -> int:
    if not isinstance(value, str):  # an int is no decimal string either
        raise BillFormatError(field, f"expected a decimal string, got {type(value).__name__} {value!r}")
    try:
        return parse_money(value, field)
    except MoneyError as e:
        raise BillFormatError(field, e.message) from None


def _check_json_value(value: object, field: str) -> None:
    """Only what json.dumps writes back exactly: dict with str keys, list, str (UTF-8
    encodable), int, bool, None. A float is refused: money is a decimal string."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise BillFormatError(f"{field}.{key!r}" if field else repr(key),
                                      f"keys must be strings, got {type(key).__name__}")
            _check_json_value(item, f"{field}.{key}" if field else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, f"{field}[{i}]")
    elif isinstance(value, float):
        raise BillFormatError(field or "bill",
                              f"a float ({value!r}) is not allowed: amounts are decimal strings")
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BillFormatError(field or "bill", "text that is not valid Unicode (a lone surrogate)") from None
    elif not (value is None or isinstance(value, int)):  # bool is an int
        raise BillFormatError(field or "bill", f"{type(value).__name__} is not a JSON value")


def _check_bills(bills: object) -> list[dict]:
    """The bills sorted by (account, cycle); refuses a second bill of an account and cycle."""
    if not isinstance(bills, Sequence) or isinstance(bills, str | bytes):
        raise BillFormatError("bills", f"expected a list of bills, got {type(bills).__name__}")
    seen: dict[tuple[str, str], int] = {}
    for i, bill in enumerate(bills):
        check_bill(bill, f"bills[{i}].")
        key = (bill["account"], bill["cycle"])
        if key in seen:
            raise BillFormatError(f"bills[{i}]", f"a second bill of account {key[0]!r} cycle "
                                                 f"{key[1]!r} (the first is bills[{seen[key]}])")
        seen[key] = i
    return sorted(bills, key=lambda b: (b["account"], b["cycle"]))


# ---------------------------------------------------------------------------------------------
# JSON and CSV


def bill_json(bill: dict) -> bytes:
    """The canonical export of one bill: sorted keys, 2-space indent, UTF-8, one final newline."""
    check_bill(bill)
    return (json.dumps(bill, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def summary_csv(bills: list[dict]) -> bytes:
    """One header row (SUMMARY_COLUMNS) and one row per bill, by account (then cycle); amounts
    as in the bills, ``lines`` is the number of bill lines. UTF-8, "\\n" line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for bill in _check_bills(bills):
        writer.writerow([bill[c] for c in SUMMARY_COLUMNS[:-1]] + [len(bill["lines"])])
    return out.getvalue().encode("utf-8")


# ---------------------------------------------------------------------------------------------
# HTML

_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
            autoescape=True,  # every value is escaped; the templates hold no |safe
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
    return _ENV


def bill_html(bill: dict, *, operator: str = "ccs", generated: str | None = None) -> str:
    """One printable HTML page of ``bill`` (inline CSS, no scripts, no external assets).

    Sections: the owner's lines ("Account <id>"), then one per child account in the bill's
    order, each with its sum; then subtotal, account discount lines, tax, total, and the amount
    due (a statement says STATEMENT_NOTE instead). ``generated`` (any text, e.g. a timestamp)
    is printed in the footer when given; without it the page depends on the bill alone."""
    check_bill(bill)
    if not isinstance(operator, str) or not operator:
        raise BillFormatError("operator", f"expected a non-empty string, got {operator!r}")
    if generated is not None and not isinstance(generated, str):
        raise BillFormatError("generated", f"expected a string or None, got {generated!r}")
    decimals = max(_places(a) for a in _amounts(bill))
    owner = bill["account"]
    sections: dict[str, list[dict]] = {"": []}
    discounts, taxes = [], []
    for line in bill["lines"]:
        row = _row(line)
        if line["kind"] == "account_discount":
            discounts.append(row)
        elif line["kind"] == "tax":
            taxes.append(row)
        else:
            sections.setdefault(line["account"], []).append(row)
    context = {
        "operator": operator,
        "generated": generated,
        "type_label": TYPES[bill["type"]],
        "statement": bill["type"] == "statement",
        "draft": bill["status"] == "draft",
        "account": owner,
        "cycle": bill["cycle"],
        "period_start": bill["period_start"],
        "period_end": bill["period_end"],
        "due_date": bill["due_date"],
        "currency": bill["currency"],
        "sections": [
            {"account": account or owner, "child": bool(account), "lines": rows,
             "sum": format_money(sum(r["micro"] for r in rows), decimals)}
            for account, rows in sections.items()
        ],
        "subtotal": bill["subtotal"],
        "discounts": discounts,
        "taxes": taxes,
        "tax": bill["tax"],
        "total": bill["total"],
        "amount_due": bill["amount_due"],
        "note": STATEMENT_NOTE,
    }
    return _env().get_template("bill.html.j2").render(context)


def _row(line: dict) -> dict:
    kind, name = line["kind"], line["name"]
    label = KIND_LABELS[kind]
    late = _LATE.fullmatch(name) if kind == "adjustment" else None
    if late:
        label, name = f"Late usage of {late.group(1)}", late.group(2)
    return {"label": label, "name": name, "amount": line["amount"],
            "micro": parse_money(line["amount"])}


def _amounts(bill: dict) -> Iterable[str]:
    yield from (bill[k] for k in MONEY_KEYS)
    yield from (line["amount"] for line in bill["lines"])


def _places(amount: str) -> int:
    return len(amount.partition(".")[2])


# ---------------------------------------------------------------------------------------------
# the export folder


def export_stem(account: str) -> str:
    """The file name (without extension) of an account's export files.

    Kept: ASCII letters, digits, '.', '_', '-'. Every other character, '%' included, becomes
    '%XX' per byte of its UTF-8 (uppercase hex), so a name never holds '/', '\\', NUL or
    non-ASCII; a leading '.' becomes '%2E' (no hidden file, never '.' or '..'); a Windows
    device name (CON, NUL, COM1, ... before the first '.') gets its first letter encoded.
    The mapping is one to one (percent-decoding gives the account back). Account ids of
    accounts.keys.check_account_id (1-64 of [A-Za-z0-9_.-], a letter or digit first) are kept
    unchanged unless they are a Windows device name."""
    if not isinstance(account, str) or not account:
        raise BillFormatError("account", f"expected a non-empty string, got {account!r}")
    stem = "".join(
        ch if ch in _SAFE_CHARS else "".join(f"%{b:02X}" for b in ch.encode("utf-8"))
        for ch in account
    )
    if stem.startswith(".") or stem.partition(".")[0].upper() in _WINDOWS_DEVICES:
        stem = f"%{ord(stem[0]):02X}{stem[1:]}"
    if len(stem) > MAX_STEM_BYTES:
        raise BillFormatError("account", f"account id too long for a file name ({len(stem)} "
                                         f"bytes encoded, at most {MAX_STEM_BYTES})")
    return stem


def write_export(bills: list[dict], out_dir: Path, *, operator: str = "ccs") -> list[Path]:
    """Write ``<stem>.json`` (bill_json) and ``<stem>.html`` (bill_html) for every bill and
    ``summary.csv`` (summary_csv) into ``out_dir`` (created if missing); stem = export_stem.

    Returns the paths written: per bill by account, its .json then its .html, then summary.csv.
    Everything is checked and rendered before the first file is written: a bad bill writes
    nothing. Each file is written to a temporary '.<name>.<random>.tmp' in ``out_dir``, fsynced
    and renamed over its name (os.replace), so a crash leaves whole files only. One bill per
    account (the names are per account). Two accounts differing only in letter case are refused
    where ``out_dir`` is on a case-insensitive file system (their files would overwrite)."""
    ordered = _check_bills(bills)
    out_dir = Path(out_dir)
    stems: dict[str, str] = {}
    for bill in ordered:
        account = bill["account"]
        if account in stems:
            raise BillFormatError("bills", f"two bills of account {account!r} (cycles "
                                           f"{', '.join(b['cycle'] for b in ordered if b['account'] == account)}):"
                                           " an export folder holds one cycle")
        stems[account] = export_stem(account)
    files: list[tuple[str, bytes]] = []
    for bill in ordered:
        stem = stems[bill["account"]]
        files.append((f"{stem}.json", bill_json(bill)))
        files.append((f"{stem}.html", bill_html(bill, operator=operator).encode("utf-8")))
    files.append((SUMMARY_NAME, summary_csv(ordered)))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BillFormatError("out_dir", f"cannot create {str(out_dir)!r}: {e.strerror}") from None
    _refuse_case_collisions(stems, out_dir)
    written = []
    for name, data in files:
        written.append(_write_atomic(out_dir, name, data))
    _fsync_dir(out_dir)
    return written


def _refuse_case_collisions(stems: dict[str, str], out_dir: Path) -> None:
    folded: dict[str, str] = {}
    for account, stem in stems.items():
        other = folded.setdefault(stem.lower(), account)
        if other != account and _case_insensitive(out_dir):
            raise BillFormatError(
                "bills", f"accounts {other!r} and {account!r} differ only in letter case and "
                         f"{str(out_dir)!r} is on a case-insensitive file system")


def _case_insensitive(directory: Path) -> bool:
    """Whether ``directory`` folds letter case: a probe file in lower case, looked up in upper."""
    probe = directory / f".case-probe-{secrets.token_hex(8)}.tmp"
    probe.touch(exist_ok=False)
    try:
        return (directory / probe.name.upper()).exists()
    finally:
        probe.unlink()


def _write_atomic(directory: Path, name: str, data: bytes) -> Path:
    target = directory / name
    while True:
        tmp = directory / f".{name}.{secrets.token_hex(8)}.tmp"
        try:  # O_EXCL: never someone else's file; mode 0o666 minus the umask, as open() does
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
