"""Data of the bill-run benchmark (benchmarks/billrun.py): the catalog with offers, 100,000
accounts written into a private redis-server through the store's own Lua scripts (pipelined),
some online usage through the charging engine, and the CDR files. Seeded: same data each run.

The accounts are written by the verbs' real scripts (create, subscribe, unsubscribe, topup)
with the arguments `AccountStore` builds; only the round trips are batched: a pipeline of
lookup-key claims, then a pipeline of scripts per batch of accounts, where the store would
make one call after the other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from accounts.keys import AccountKeys, Claim, lookup_key
from benchmarks import gen
from rating.cycles import cycle_bounds, local_midnight_utc

CYCLE = "2024-03"
CLOCK = int(datetime(2024, 3, 20, 12, tzinfo=UTC).timestamp())  # the store's now at set-up
SWITCH_ON = "2024-03-16"  # base-offer switches (unsubscribe + subscribe)
CANCEL_ON = "2024-03-10"  # add-ons cancelled
NEW_FROM = "2024-03-08"  # new customers: activation fee, no_offer before that day
BASE_OFFERS = ("std_s", "flat_m", "biz_l")
BASE_SHARE = (0.5, 0.3, 0.2)
ADDONS = ("data_plus", "sms_pack", "roam")
BCD_CHOICES = (1, 15, 28, 31)
BCD_SHARE = (0.7, 0.15, 0.1, 0.05)
EUR = 1_000_000

OFFERS_YAML = """\
offers:
  std_s:
    tariff: std
    discounts: [loyal_voice]
    recurring: "9.99"
    one_time:
      - {name: activation, amount: "5.00"}
    allowances:
      - {name: voice_300, service: voice, units: 18000, destinations: [D000, D001, D002, D003]}
      - {name: data_1g, service: data, units: 1073741824}
    account_discount: big_bill
  flat_m:
    tariff: flat
    discounts: [data_spender]
    recurring: "19.99"
    one_time:
      - {name: activation, amount: "9.99"}
    allowances:
      - {name: voice_1000, service: voice, units: 60000}
      - {name: sms_100, service: sms, units: 100}
    account_discount: big_bill
  biz_l:
    tariff: biz
    discounts: [loyal_voice, data_spender]
    recurring: "49.00"
    allowances:
      - {name: voice_3000, service: voice, units: 180000}
      - {name: data_10g, service: data, units: 10737418240}
    account_discount: biz_volume
  data_plus:
    recurring: "4.99"
    allowances:
      - {name: data_5g, service: data, units: 5368709120}
  sms_pack:
    recurring: "1.99"
    allowances:
      - {name: sms_200, service: sms, units: 200}
  roam:
    recurring: "2.99"
    one_time:
      - {name: setup, amount: "1.00"}
    allowances:
      - {name: roam_600, service: voice, units: 600, destinations: [D004, D005, D006, D007]}

account_discounts:
  big_bill: {min_total: "50.00", percent: "5", cap: "10.00"}
  biz_volume: {min_total: "100.00", percent: "8", cap: "40.00"}

tax: {name: VAT, percent: "19"}

billing:
  decimals: 2
  due_days: 14
  grace_days: 10
"""


def catalog_text(seed: int = 1) -> tuple[str, list[str]]:
    """benchmarks/gen.py's rating catalog (3,000 prefixes, three tariffs, two discounts) with
    offers (recurring and one-time fees, allowances, account discounts) and tax."""
    text, prefixes = gen.catalog_yaml(seed)
    return text + OFFERS_YAML, prefixes


@dataclass
class AccountSpec:
    id: str
    bcd: int
    prepaid: bool
    parent: str | None
    subs: list[tuple[str, str, str | None]] = field(default_factory=list)  # offer, from, to
    unsubs: list[tuple[str, str]] = field(default_factory=list)  # offer, on (after subs)
    later: list[tuple[str, str]] = field(default_factory=list)  # offer, from (after unsubs)


def account_specs(n: int, seed: int = 11) -> list[AccountSpec]:
    """`n` accounts a0..a<n-1>: ~7% family parents with 1-4 children each (~12% children,
    same bill cycle day as their parent), 8% prepaid, bill cycle days 1/15/28/31, base offers
    std_s/flat_m/biz_l, add-ons for ~45%, 5% switching base offer on SWITCH_ON, 3% new
    customers from NEW_FROM, 2% cancelling an add-on on CANCEL_ON, 0.5% with no offer."""
    rng = np.random.default_rng(seed)
    bcd = rng.choice(BCD_CHOICES, size=n, p=BCD_SHARE)
    prepaid = rng.random(n) < 0.08
    base = rng.choice(len(BASE_OFFERS), size=n, p=BASE_SHARE)
    kind = rng.random(n)
    addon_draw = rng.random((n, len(ADDONS)))
    since = rng.integers(0, 700, n)  # days before 2024-03-01 the customer joined
    parent = np.full(n, -1, np.int64)
    i = 0
    while i < n:  # families: a parent followed by 1..4 children
        if rng.random() < 0.07 and i + 1 < n:
            kids = int(rng.integers(1, 5))
            for k in range(1, kids + 1):
                if i + k < n:
                    parent[i + k] = i
                    bcd[i + k] = bcd[i]
                    prepaid[i + k] = prepaid[i]
            i += kids + 1
        else:
            i += 1
    out = []
    day0 = np.datetime64("2024-03-01")
    for a in range(n):
        s = AccountSpec(f"a{a}", int(bcd[a]), bool(prepaid[a]),
                        None if parent[a] < 0 else f"a{parent[a]}")
        joined = str(day0 - np.timedelta64(int(since[a]), "D"))
        k = kind[a]
        if k < 0.005:
            out.append(s)  # no offer at all: its CDRs are no_offer
            continue
        start = NEW_FROM if k < 0.035 else joined
        b = BASE_OFFERS[base[a]]
        s.subs.append((b, start, None))
        mine = [ADDONS[j] for j in range(len(ADDONS)) if addon_draw[a, j] < (0.25, 0.15, 0.1)[j]]
        for off in mine:
            s.subs.append((off, start, None))
        if 0.035 <= k < 0.085:  # a base-offer switch mid-cycle
            new = BASE_OFFERS[(base[a] + 1) % len(BASE_OFFERS)]
            s.unsubs.append((b, SWITCH_ON))
            s.later.append((new, SWITCH_ON))
        elif 0.085 <= k < 0.105 and mine:
            s.unsubs.append((mine[0], CANCEL_ON))
        out.append(s)
    return out


# --- writing the accounts through the scripts ---------------------------------------------------


def _queue(store, pipe, verb: str, claim: Claim, op_id: str, params: dict, content) -> None:
    """What AccountStore._run sends for `verb`, queued on `pipe` instead of called."""
    from accounts.store import _FAMILY_VERBS

    keys = claim.keys
    argv = store._args(verb, keys.account_id, op_id, params, content, claim, store.now())
    script_keys = keys.script_keys(op_id)
    if verb in _FAMILY_VERBS:
        script_keys += keys.parent_keys()
    if verb == "create":
        script_keys.append(keys.fence(claim.token))
    getattr(store.scripts, verb)(pipe, script_keys, argv)


def _run_pipe(store, pipe, what: str) -> None:
    for reply in store.scripts.execute(pipe, store.r):
        if isinstance(reply, Exception):
            raise RuntimeError(f"{what}: {reply}")
        if isinstance(reply, list):
            store._result("?", "?", reply)  # raises the store's own error on a refusal


def create_accounts(store, specs: list[AccountSpec], batch: int = 2000) -> None:
    """Every account of `specs` as `AccountStore.create`, `subscribe`, `unsubscribe` and
    `topup` write it, in pipelines of `batch` accounts: parents (and singles) first, then
    children (their parent must exist)."""
    from accounts.validation import credit_limit_arg

    cat = store.catalog
    waves = [[s for s in specs if s.parent is None], [s for s in specs if s.parent is not None]]
    for wave in waves:
        for lo in range(0, len(wave), batch):
            part = wave[lo:lo + batch]
            claims = []
            pipe = store.r.pipeline(transaction=False)
            for s in part:
                root = s.parent or s.id
                claim = Claim(AccountKeys(s.id, root, s.parent), s.bcd, secrets.token_hex(8),
                              f"create:{s.id}")
                claims.append(claim)
                pipe.set(lookup_key(s.id), claim.value, nx=True)
            if not all(pipe.execute()):
                raise RuntimeError("an account id was taken already: use a fresh redis-server")
            pipe = store.r.pipeline(transaction=False)
            for s, claim in zip(part, claims, strict=True):
                store._meta[s.id] = claim
                cl = credit_limit_arg(0 if s.prepaid else None)
                params = {"id": s.id, "currency": cat.currency, "cl": cl, "bcd": str(s.bcd),
                          "msisdns": [], "subs": []}
                if s.parent is not None:
                    params["parent"] = s.parent
                _queue(store, pipe, "create", claim, claim.op_id, params,
                       [cl, s.bcd, s.parent, [], []])
            _run_pipe(store, pipe, "create")
            pipe = store.r.pipeline(transaction=False)
            for s, claim in zip(part, claims, strict=True):
                for i, (offer, start, end) in enumerate(s.subs):
                    sub = store._sub_params(offer, start, end, store.now())
                    _queue(store, pipe, "subscribe", claim, f"sub:{s.id}:{i}", {"sub": sub},
                           [offer, sub["from"], end])
                for i, (offer, on) in enumerate(s.unsubs):
                    on_utc = local_midnight_utc(date.fromisoformat(on), cat.timezone)
                    _queue(store, pipe, "unsubscribe", claim, f"unsub:{s.id}:{i}",
                           {"offer": offer, "on": on, "on_utc": str(on_utc)}, [offer, on])
                for i, (offer, start) in enumerate(s.later):
                    sub = store._sub_params(offer, start, None, store.now())
                    _queue(store, pipe, "subscribe", claim, f"sub2:{s.id}:{i}", {"sub": sub},
                           [offer, sub["from"], None])
                if s.prepaid:
                    amount = 50 * EUR
                    _queue(store, pipe, "topup", claim, f"topup:{s.id}",
                           {"amount": str(amount)}, [amount])
            _run_pipe(store, pipe, "subscribe")


def online_events(store, catalog, compiled, specs: list[AccountSpec], share: float,
                  seed: int = 13) -> int:
    """SMS and voice events charged online (DIRECT_DEBIT through `charging.charge.Charger`, as
    the node does) for a `share` of the accounts with an offer, in the first week of the
    cycle: the node's rated records, counters and allowance use are what the bill run reads.
    Returns the number of events charged."""
    from charging.charge import Charger, Request, UnitRequest

    rng = np.random.default_rng(seed)
    charger = Charger(store, catalog, compiled, clock=lambda: CLOCK)
    mine = [s for s in specs if s.subs and s.bcd == 1 and rng.random() < share]
    t0 = int(datetime(2024, 3, 2, 9, tzinfo=UTC).timestamp())
    n = 0
    for s in mine:
        for k in range(3):
            voice = k == 2
            unit = UnitRequest(1, "voice" if voice else "sms", "4930123456" if voice else "",
                               requested=120 if voice else 1, used=95 if voice else 1)
            ans = charger.charge(Request(f"ev-{s.id}-{k}", "EVENT", 0, s.id,
                                         event_time=t0 + k * 3600 + int(rng.integers(0, 3600)),
                                         action="DIRECT_DEBIT", units=(unit,)))
            n += ans.result_code == 2001
    return n


# --- CDR files --------------------------------------------------------------------------------


def cdr_files(folder: Path, n_cdrs: int, n_files: int, prefixes: list[str],
              specs: list[AccountSpec], timezone: str, seed: int = 2) -> list[Path]:
    """`n_cdrs` CDRs of benchmarks/gen.py (60% voice, 25% SMS, 15% data; Zipf destinations)
    on the accounts of `specs`, each starting inside its account's cycle CYCLE (by its bill
    cycle day), 0.1% for accounts that do not exist; split into `n_files` CSV files in
    start order (as a mediation system delivers them)."""
    n_acc = len(specs)
    cdrs = gen.cdr_arrays(n_cdrs, prefixes, seed=seed, n_accounts=n_acc)
    bcd = np.array([s.bcd for s in specs], np.int64)
    offset = cdrs["start"] - gen.START_2024_03_01  # 0 .. 31 days
    start = np.empty(n_cdrs, np.int64)
    acct = cdrs["account"]
    for d in np.unique(bcd).tolist():
        cs, ce = cycle_bounds(CYCLE, int(d), timezone)
        rows = bcd[acct] == d
        start[rows] = cs + offset[rows] % (ce - cs)
    cdrs["start"] = start
    rng = np.random.default_rng(seed + 1)
    unknown = rng.random(n_cdrs) < 0.001
    cdrs["account"] = np.where(unknown, n_acc + rng.integers(0, 1000, n_cdrs), acct).astype(np.int32)
    order = np.argsort(start, kind="stable")
    paths = []
    for k, rows in enumerate(np.array_split(order, n_files)):
        rows = np.sort(rows) if n_files == 1 else rows
        path = folder / f"cdrs-{k + 1:02d}.csv"
        gen.write_cdr_csv(path, {c: v[rows] for c, v in cdrs.items()})
        paths.append(path)
    return paths
