"""A seeded operator: the plan of `ccs gen accounts` (accounts, MSISDNs, payment types,
families, subscriptions, top-ups), its file (CSV or JSONL) and `ccs gen load`.

Same catalog, count, seed, cycle and prefix: the same plan, byte for byte. Every decision of
account i comes from row i of one block of uniforms drawn up front, so the plan is made in
one numpy draw plus a Python pass that only formats.

The plan CSV is also an accounts file of `ccs rate` (`account,tariff,discounts` are its
first columns: the tariff and discounts of the base offer the account has at the start of
its cycle).
"""

from __future__ import annotations

import csv
import io
import json
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from charging.gen_cdrs import GenError
from rating.cycles import cycle_dates, parse_cycle

PLAN_COLUMNS = ("account", "tariff", "discounts", "payment", "credit_limit", "bill_cycle_day",
                "parent", "status", "msisdns", "subscriptions", "topups")
MAX_ACCOUNTS = 10_000_000  # MSISDNs carry the index in 8 digits
SECOND_SIM = 50_000_000  # the index offset of an account's second MSISDN
# shares of the plan (of accounts that are not in a family unless said)
FAMILY_SHARE = 0.04  # accounts that head a family of 1..3 children
PREPAID_SHARE = 0.6
CREDIT_LIMITS = ("50.00", "100.00", "200.00", "500.00", "unlimited")
POSTPAID_DAYS = (1, 5, 10, 15, 20, 25, 28)  # bill-cycle days of postpaid families
TWO_SIMS, SUSPENDED, CHANGE, ADD_ON, ADD_ON_LATE, LOW = 0.1, 0.01, 0.05, 0.3, 0.5, 0.05
TOPUPS = ("5.00", "10.00", "15.00", "20.00", "30.00", "50.00")
_DRAWS = 18  # uniforms per account (columns of the block; fixed so plans stay comparable)


def id_width(count: int) -> int:
    return max(6, len(str(count)))


def account_id(prefix: str, i: int, count: int) -> str:
    """The id of account i (1-based) of a plan of `count` accounts: `acc000042`."""
    return f"{prefix}{i:0{id_width(count)}d}"


def msisdn_of(prefix: str, i: int, sim: int = 0) -> str:
    """Account i's MSISDN (sim 0) or second MSISDN (sim 1): 49, a block of 3 digits of the
    id prefix (so two plans with other prefixes do not share numbers), 8 digits of i."""
    block = zlib.crc32(prefix.encode()) % 900 + 100
    return f"49{block}{i + sim * SECOND_SIM:08d}"


@dataclass
class PlanAccount:
    account: str
    tariff: str
    discounts: str
    payment: str  # prepaid | postpaid
    credit_limit: str  # "0", a decimal amount, or "unlimited"
    bill_cycle_day: int
    parent: str
    status: str  # active | suspended
    msisdns: list[str]
    subscriptions: list[dict]  # {offer, from, to (None: open)}
    topups: list[str]

    def csv_row(self) -> list[str]:
        subs = ";".join(f"{s['offer']}@{s['from']}..{s['to'] or ''}" for s in self.subscriptions)
        return [self.account, self.tariff, self.discounts, self.payment, self.credit_limit,
                str(self.bill_cycle_day), self.parent, self.status, ";".join(self.msisdns),
                subs, ";".join(self.topups)]

    def json_obj(self) -> dict:
        return {c: getattr(self, c) for c in PLAN_COLUMNS}


def make_plan(catalog, count: int, seed: int, cycle: str, prefix: str = "acc") -> list[PlanAccount]:
    """`count` accounts; subscriptions start the month before `cycle`, changes fall inside
    each account's `cycle`. Parents come before their children."""
    if not 1 <= count <= MAX_ACCOUNTS:
        raise GenError(f"--count: expected 1..{MAX_ACCOUNTS}, got {count}")
    year, month = parse_cycle(cycle)
    base = [o for o in catalog.offers.values() if o.tariff is not None]
    addons = [o for o in catalog.offers.values() if o.tariff is None]
    if not base:
        raise GenError("--catalog: the catalog has no base offer (an offer with a tariff)")
    first = date(year - 1, 12, 1) if month == 1 else date(year, month - 1, 1)
    u = np.random.default_rng(seed).random((count, _DRAWS))
    plan: list[PlanAccount] = []
    parent, kids, parent_bcd = "", 0, 1
    for i in range(1, count + 1):
        r = u[i - 1]
        aid = account_id(prefix, i, count)
        heads = False
        if kids:  # a child: prepaid, on its parent's cycle
            kids -= 1
            pay, limit, bcd, mine = "prepaid", "0", parent_bcd, parent
        else:
            mine = ""
            heads = r[0] < FAMILY_SHARE and i < count
            pay = "postpaid" if heads or r[2] >= PREPAID_SHARE else "prepaid"
            limit = "0" if pay == "prepaid" else CREDIT_LIMITS[int(r[3] * len(CREDIT_LIMITS))]
            bcd = 1 if pay == "prepaid" else POSTPAID_DAYS[int(r[4] * len(POSTPAID_DAYS))]
            if heads:
                kids, parent, parent_bcd = min(1 + int(r[1] * 3), count - i), aid, bcd
        msisdns = [msisdn_of(prefix, i)] + ([msisdn_of(prefix, i, 1)] if r[5] < TWO_SIMS else [])
        status = "suspended" if r[6] < SUSPENDED and not heads else "active"
        start, end = cycle_dates(cycle, bcd)
        days = (end - start).days
        offer = base[int(r[7] * len(base))]
        subs = [{"offer": offer.name, "from": first.isoformat(), "to": None}]
        if len(base) > 1 and r[8] < CHANGE:  # a change of base offer inside the cycle
            on = (start + timedelta(days=1 + int(r[9] * (days - 1)))).isoformat()
            subs[0]["to"] = on
            after = base[(base.index(offer) + 1) % len(base)]
            subs.append({"offer": after.name, "from": on, "to": None})
        if addons and r[10] < ADD_ON:
            addon = addons[int(r[12] * len(addons))]
            on = start + timedelta(days=int(r[17] * days)) if r[11] < ADD_ON_LATE else first
            subs.append({"offer": addon.name, "from": on.isoformat(), "to": None})
        topups: list[str] = []
        if pay == "prepaid" and r[13] < LOW:
            topups = ["1.00"]  # a low balance: its sessions get final grants
        elif pay == "prepaid":
            n = int(r[13] * 2) if mine else 1 + int(r[13] * 3)
            topups = [TOPUPS[int(x * len(TOPUPS))] for x in r[14:14 + n]]
        plan.append(PlanAccount(aid, offer.tariff, ";".join(offer.discounts), pay, limit, bcd,
                                mine, status, msisdns, subs, topups))
    return plan


def plan_text(plan: list[PlanAccount], fmt: str) -> str:
    """The plan file's text: "csv" (a header, then one row per account) or "jsonl"."""
    if fmt == "jsonl":
        return "".join(json.dumps(a.json_obj(), separators=(",", ":")) + "\n" for a in plan)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(PLAN_COLUMNS)
    w.writerows(a.csv_row() for a in plan)
    return out.getvalue()


def plan_format(path: str | Path) -> str:
    return "jsonl" if str(path).lower().endswith((".jsonl", ".json")) else "csv"


def read_plan(path: str | Path) -> list[PlanAccount]:
    """A plan file as written by `plan_text`; GenError naming the line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GenError(f"{path}: cannot read: {exc}") from None
    rows = []
    if plan_format(path) == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise GenError(f"{path}:{n}: not a JSON object") from None
                rows.append((n, obj if isinstance(obj, dict) else {}))
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in PLAN_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise GenError(f"{path}: not a plan of ccs gen accounts: no column {missing[0]}")
        for n, raw in enumerate(reader, 2):
            rows.append((n, _from_csv(raw)))
    return [_account(path, n, obj) for n, obj in rows]


def _from_csv(raw: dict) -> dict:
    obj = dict(raw)
    obj["msisdns"] = [m for m in (raw["msisdns"] or "").split(";") if m]
    obj["topups"] = [t for t in (raw["topups"] or "").split(";") if t]
    subs = []
    for item in (raw["subscriptions"] or "").split(";"):
        offer, _, span = item.partition("@")
        start, _, end = span.partition("..")
        subs.append({"offer": offer, "from": start, "to": end or None})
    obj["subscriptions"] = subs if raw["subscriptions"] else []
    return obj


def _account(path, n: int, obj: dict) -> PlanAccount:
    try:
        values = {c: obj[c] for c in PLAN_COLUMNS}
        values["bill_cycle_day"] = int(values["bill_cycle_day"])
        for key in ("msisdns", "subscriptions", "topups"):
            if not isinstance(values[key], list):
                raise ValueError(key)
        for s in values["subscriptions"]:
            if not isinstance(s, dict) or not s.get("offer") or not s.get("from"):
                raise ValueError("subscriptions")
    except KeyError as exc:
        raise GenError(f"{path}:{n}: {exc.args[0]}: missing") from None
    except (TypeError, ValueError) as exc:
        raise GenError(f"{path}:{n}: {exc.args[0] if exc.args else 'row'}: malformed") from None
    if values["payment"] not in ("prepaid", "postpaid"):
        raise GenError(f"{path}:{n}: payment: expected prepaid or postpaid")
    return PlanAccount(**values)


# --- loading ------------------------------------------------------------------------------

@dataclass
class LoadStats:
    accounts: int = 0
    created: int = 0
    subscriptions: int = 0
    topups: int = 0
    statuses: int = 0
    unchanged: int = 0  # verbs whose op id had been applied already
    errors: list[str] = field(default_factory=list)


def op_ids(a: PlanAccount) -> dict[str, str]:
    """The op ids of an account's verbs, from the plan: a second load changes nothing."""
    ids = {"create": f"gen-{a.account}-create", "status": f"gen-{a.account}-status"}
    ids.update({f"sub{k}": f"gen-{a.account}-sub{k}" for k in range(len(a.subscriptions))})
    ids.update({f"topup{k}": f"gen-{a.account}-topup{k}" for k in range(len(a.topups))})
    return ids


def _load_one(store, a: PlanAccount) -> LoadStats:
    """One account's verbs in order; what each applied, counted."""
    from rating.money import parse_money

    ids, got = op_ids(a), LoadStats(accounts=1)
    limit = None if a.credit_limit == "unlimited" else parse_money(
        a.credit_limit, "credit_limit", allow_negative=False)
    applied = store.create(a.account, credit_limit=limit, msisdns=tuple(a.msisdns),
                           bill_cycle_day=a.bill_cycle_day, parent=a.parent or None,
                           op_id=ids["create"]).applied
    got.created, got.unchanged = int(applied), int(not applied)
    for k, s in enumerate(a.subscriptions):
        applied = store.subscribe(a.account, s["offer"], op_id=ids[f"sub{k}"],
                                  from_date=s["from"], to_date=s["to"]).applied
        got.subscriptions += applied
        got.unchanged += not applied
    for k, amount in enumerate(a.topups):
        applied = store.topup(a.account, parse_money(amount, "topups", allow_negative=False),
                              op_id=ids[f"topup{k}"]).applied
        got.topups += applied
        got.unchanged += not applied
    if a.status != "active":
        applied = store.set_status(a.account, a.status, op_id=ids["status"],
                                   reason="ccs gen").applied
        got.statuses += applied
        got.unchanged += not applied
    return got


def load_plan(store, plan: list[PlanAccount], *, threads: int = 8, progress=None) -> LoadStats:
    """Every account of the plan through the store's verbs (create, subscribe, topup,
    set_status) on `threads` threads: accounts without a parent first, then the children.
    An account the store refuses is reported in `errors` and the others go on; a second load
    of the same plan applies nothing (op ids from the plan)."""
    from accounts.errors import AccountError
    from rating.money import MoneyError

    stats = LoadStats()
    lock = threading.Lock()

    def one(a: PlanAccount) -> None:
        try:
            got = _load_one(store, a)
        except (AccountError, MoneyError) as exc:
            got = LoadStats(accounts=1, errors=[f"{a.account}: {exc}"])
        with lock:
            for name in ("accounts", "created", "subscriptions", "topups", "statuses",
                         "unchanged"):
                setattr(stats, name, getattr(stats, name) + getattr(got, name))
            stats.errors += got.errors
        if progress is not None:
            progress()

    with ThreadPoolExecutor(threads) as pool:
        for wave in ([a for a in plan if not a.parent], [a for a in plan if a.parent]):
            list(pool.map(one, wave))
    return stats
