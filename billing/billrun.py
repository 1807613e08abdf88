"""The bill run of one cycle (billing.md): CDR files rated and stored, online records summed,
fees, discounts and tax, one bill per paying account, stored; prepaid fees debited once.

    files -> billing.offline.rate_file (kernels) -> rated_usage (SQL)
    accounts (Redis snapshot) + rated_usage + online records + late CDRs -> billing.bill -> bills

Re-runs of a draft cycle replace its bills with the same bytes; a final cycle never changes.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from billing import bill as B
from billing import cdrs
from billing.db import delete_in, insert_rows, write_transaction
from billing.models import Base
from billing.offline import AccountIndex, distinct, paused_gc, rate_file
from rating.cycles import cycle_bounds, cycle_name, month_number, parse_cycle
from rating.money import parse_money, round_micro

T = Base.metadata.tables


class BillRunError(ValueError):
    """A run that cannot be done as asked (a final cycle, a file that is not a CDR file)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def check_cycle(cycle) -> str:
    """A cycle a bill may have: 'YYYY-MM' of the years 1970..2999 (the dates accounts keep)."""
    try:
        year, _ = parse_cycle(cycle)
    except ValueError:
        raise BillRunError("--cycle", f"expected YYYY-MM, got {str(cycle)[:40]!r}") from None
    if not 1970 <= year <= 2999:
        raise BillRunError("--cycle", f"{cycle}: bills are of the years 1970..2999")
    return cycle


def parse_partition(text: str | None) -> tuple[int, int]:
    """'K/N' (1 <= K <= N <= 4096) -> (K, N); None -> (1, 1)."""
    if text is None:
        return 1, 1
    k, _, n = str(text).partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n) <= 4096):
        raise BillRunError("--partition", f"expected K/N with 1 <= K <= N <= 4096, got {text!r}")
    return int(k), int(n)


def partition_of(root: str, n: int) -> int:
    """The partition (1..n) of a family, by its root account id: stable across runs."""
    return zlib.crc32(root.encode()) % n + 1


@dataclass
class RunSummary:
    cycle: str
    partition: str
    accounts_billed: int = 0
    invoices: int = 0
    statements: int = 0
    cdrs_rated: int = 0
    cdrs_rejected: dict[str, int] = field(default_factory=dict)
    files_imported: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    revenue: dict[str, int] = field(default_factory=dict)  # service -> micro (usage lines)
    fees_debited: int = 0
    fees_refused: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self, decimals: int) -> dict:
        from rating.money import format_money

        d = dict(self.__dict__)
        d["revenue"] = {k: format_money(v, decimals) for k, v in sorted(self.revenue.items())}
        d["seconds"] = round(self.seconds, 3)
        return d


# --- the family tree ------------------------------------------------------------------------


def roots_of(facts: list) -> dict[str, str]:
    """account -> the top of its family (itself when it has no parent)."""
    parent = {f.id: f.parent for f in facts}
    out: dict[str, str] = {}
    for a in parent:
        seen, x = [], a
        while parent.get(x) and x not in seen:
            seen.append(x)
            x = parent[x]
        out[a] = x
    return out


# --- database reads --------------------------------------------------------------------------


def cycle_status(conn, cycle: str) -> str | None:
    return conn.execute(select(T["cycles"].c.status).where(T["cycles"].c.cycle == cycle)).scalar()


def saved_states(conn, cycle: str) -> dict[str, str]:
    t = T["cycle_standing"]
    return dict(conn.execute(select(t.c.account, t.c.state).where(t.c.cycle == cycle)).all())


def seen_digests(conn, cycle: str):
    """The sorted digests of the cdr ids that files imported before rated in `cycle`."""
    import numpy as np

    t = T["cdr_digests"]
    parts = [np.frombuffer(raw, dtype="<u8") for (raw,) in
             conn.execute(select(t.c.digests).where(t.c.cycle == cycle))]
    if not parts:
        return np.zeros(0, np.uint64)
    return distinct(np.concatenate(parts).astype(np.uint64))


def fees_posted(conn, cycle: str) -> dict[str, int]:
    """account -> the fees of `cycle` debited from its balance (fee_postings)."""
    t = T["fee_postings"]
    return {a: int(v) for a, v in conn.execute(
        select(t.c.account, func.sum(t.c.amount)).where(t.c.cycle == cycle)
        .group_by(t.c.account))}


def _locked_status(conn, cycle: str) -> str | None:
    """The cycle's status, its row locked until the transaction ends (PostgreSQL: FOR UPDATE;
    SQLite's write transaction holds the whole database already): a run storing bills and a
    finalisation of the cycle take turns, and two runs of one cycle replace each other's bills
    instead of colliding."""
    q = select(T["cycles"].c.status).where(T["cycles"].c.cycle == cycle)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return conn.execute(q).scalar()


def cycle_statuses(conn) -> dict[str, str]:
    """cycle -> status, every cycle ever run."""
    return dict(conn.execute(select(T["cycles"].c.cycle, T["cycles"].c.status)).all())


# --- importing CDR files ---------------------------------------------------------------------


@paused_gc()
def import_file(conn, catalog, compiled, index: AccountIndex, path: Path, data_hash: str,
                table, run_id: int, summary: RunSummary, *, retry: bool = False) -> None:
    """Rate one CDR table (read from `path`, whose content has SHA-256 `data_hash`) and store
    what it adds, in the caller's transaction. `retry`: the file was imported before with
    rows a later run may rate (`cdr_files.retry`); its rows rated then are duplicates by
    their ids now, and what the others add is added to what the file gave before."""
    files = T["cdr_files"]
    result = rate_file(catalog, compiled, index, table,
                       cycle_status=lambda c: cycle_status(conn, c),
                       saved_states=lambda c: saved_states(conn, c),
                       seen_digests=lambda c: seen_digests(conn, c))
    rejected = sum(result.rejected.values()) - result.seen_before
    if retry:
        conn.execute(update(files).where(files.c.hash == data_hash).values(
            rated=files.c.rated + result.rated, rejected=rejected, retry=result.retry,
            run_id=run_id))
    else:
        conn.execute(files.insert().values(
            hash=data_hash, name=path.name, rows=result.rows, rated=result.rated,
            rejected=rejected, retry=result.retry, imported_at=int(time.time()),
            run_id=run_id))
    names = compiled.service_names
    account_of = [f.id for f in index.facts]
    stand = T["cycle_standing"]
    usage_rows, late_rows, states = [], [], []
    for cu in result.cycles:
        if cu.late:
            billed = _next_open(cycle_statuses(conn), cu.cycle)
            late_rows.extend((data_hash, cid, account_of[r], cu.cycle, billed, names[s], net)
                             for cid, r, s, net in cu.late_rows)
        else:
            usage_rows.extend((data_hash, account_of[r], cu.cycle, names[s], *v)
                              for r, s, v in zip(cu.group_row.tolist(),
                                                 cu.group_service.tolist(),
                                                 cu.group_sums.tolist(), strict=True))
        touched = cu.touched.tolist()
        ids = [account_of[r] for r in touched]
        stale = ids
        if conn.dialect.name == "sqlite":
            # the write lock was taken before the saved states were read (BEGIN IMMEDIATE):
            # the rows of the cycle are exactly those
            stale = [i for i in ids if i in cu.saved]
        delete_in(conn, stand, stand.c.account, stale, where=stand.c.cycle == cu.cycle)
        states.extend(zip(ids, [cu.cycle] * len(ids), cu.standing.states(touched, compiled),
                          strict=True))
    usage_columns = ["file_hash", "account", "cycle", "service", "cdrs", "usage",
                     "rated_usage", "covered", "net_charge"]
    if retry:
        _add_usage(conn, usage_columns, usage_rows)
    else:
        insert_rows(conn, T["rated_usage"], usage_columns, usage_rows)
    insert_rows(conn, T["late_cdrs"], ["file_hash", "cdr_id", "account", "cycle",
                                       "billed_cycle", "service", "net_charge"], late_rows)
    insert_rows(conn, stand, ["account", "cycle", "state"], states)
    digests = T["cdr_digests"]
    for cu in result.cycles:
        if not len(cu.digests):
            continue
        mine = cu.digests
        if retry:
            old = conn.execute(select(digests.c.digests).where(
                digests.c.file_hash == data_hash, digests.c.cycle == cu.cycle)).scalar()
            if old is not None:
                import numpy as np

                mine = np.union1d(np.frombuffer(old, dtype="<u8").astype(np.uint64), mine)
                conn.execute(delete(digests).where(digests.c.file_hash == data_hash,
                                                   digests.c.cycle == cu.cycle))
        conn.execute(digests.insert().values(file_hash=data_hash, cycle=cu.cycle,
                                             digests=mine.astype("<u8").tobytes()))
    summary.files_imported.append(str(path))
    summary.cdrs_rated += result.rated
    for k, v in result.rejected.items():
        if retry and k == "duplicate":
            v -= result.seen_before  # rated by the file's first import: not rejections
        if v:
            summary.cdrs_rejected[k] = summary.cdrs_rejected.get(k, 0) + v


def _add_usage(conn, columns: list[str], rows: list[tuple]) -> None:
    """Add a retried import's sums to the file's rows (a retry rates a few rows only)."""
    t = T["rated_usage"]
    for row in rows:
        v = dict(zip(columns, row, strict=True))
        done = conn.execute(update(t).where(
            t.c.file_hash == v["file_hash"], t.c.account == v["account"],
            t.c.cycle == v["cycle"], t.c.service == v["service"]).values(
            cdrs=t.c.cdrs + v["cdrs"], usage=t.c.usage + v["usage"],
            rated_usage=t.c.rated_usage + v["rated_usage"], covered=t.c.covered + v["covered"],
            net_charge=t.c.net_charge + v["net_charge"]))
        if done.rowcount == 0:
            conn.execute(t.insert().values(**v))


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise BillRunError("--cdrs", f"{path}: cannot read: {exc.strerror or exc}") from None
    return h.hexdigest()


# --- gathering a cycle's figures ---------------------------------------------------------------


@paused_gc()
def offline_usage(conn, cycle: str) -> dict[str, dict[str, int]]:
    t = T["rated_usage"]
    out: dict[str, dict[str, int]] = defaultdict(dict)
    q = select(t.c.account, t.c.service, func.sum(t.c.net_charge)).where(
        t.c.cycle == cycle).group_by(t.c.account, t.c.service)
    for account, service, net in conn.execute(q):
        out[account][service] = int(net)
    return out


def late_adjustments(conn, cycle: str) -> dict[str, dict[str, int]]:
    t = T["late_cdrs"]
    out: dict[str, dict[str, int]] = defaultdict(dict)
    q = select(t.c.account, t.c.cycle, t.c.service, func.sum(t.c.net_charge)).where(
        t.c.billed_cycle == cycle).group_by(t.c.account, t.c.cycle, t.c.service)
    for account, original, service, net in conn.execute(q):
        out[account][f"late:{original}:{service}"] = int(net)
    return out


@dataclass
class OnlineRecords:
    """What the node's rated records give a cycle's bills: `usage` (account -> service ->
    micro) of sessions started in the cycle, `late` (account -> adjustment name -> micro) of
    records of a final cycle that no final bill summed yet (a session that ended, or an event
    refunded, after its cycle was finalised), and `read` (account -> the records' raw members,
    both kinds), which a finalisation archives and removes from Redis."""

    usage: dict[str, dict[str, int]]
    late: dict[str, dict[str, int]]
    read: dict[str, list]
    # the same records as online_records rows (account, cdr_id, cycle, service, start,
    # net_charge, record), decoded once as they were read
    archive: list[tuple] = field(default_factory=list)


def online_usage(store, facts: list, cycle: str, *, batch: int = 2000,
                 ) -> dict[str, dict[str, int]]:
    """Sum of the node's rated records per account and service over each account's cycle."""
    return online_records(store, facts, cycle, batch=batch).usage


@paused_gc()
def online_records(store, facts: list, cycle: str, *, conn=None, batch: int = 2000,
                   ) -> OnlineRecords:
    """The node's records of `cycle` (and, with `conn`, the late ones of final cycles whose
    next open cycle this is), read in pipelines of `batch` accounts. A finalisation removes
    the records its bills summed, so a record older than the cycle still in Redis was billed
    by no final bill: either its cycle is still a draft (its own run bills it) or it is late."""
    from accounts.keys import AccountKeys
    from accounts.online import records_key
    from rating.cycles import cycle_of

    roots = roots_of(facts)
    tz = store.catalog.timezone
    bounds: dict[int, tuple[int, str]] = {}  # bill cycle day -> (start, "(end")
    statuses: dict[str, str] = {}
    if conn is not None:
        statuses = cycle_statuses(conn)
    out = OnlineRecords({}, {}, {})
    candidates: list[tuple[str, dict, bytes]] = []
    for lo in range(0, len(facts), batch):
        part = facts[lo:lo + batch]
        pipe = store.r.pipeline(transaction=False)
        for f in part:
            span = bounds.get(f.bill_cycle_day)
            if span is None:
                start, end = cycle_bounds(cycle, f.bill_cycle_day, tz)
                span = bounds[f.bill_cycle_day] = (start, f"({end}")
            low = "-inf" if conn is not None else span[0]
            pipe.zrangebyscore(records_key(AccountKeys(f.id, roots[f.id])), low, span[1])
        for f, raw in zip(part, pipe.execute(), strict=True):
            if not raw:
                continue
            start = bounds[f.bill_cycle_day][0]
            sums = None
            for item in raw:
                rec = json.loads(item)
                if int(rec["start"]) >= start:
                    if sums is None:
                        sums = out.usage.setdefault(f.id, {})
                    svc = rec["service"]
                    sums[svc] = sums.get(svc, 0) + int(rec["net_charge"])
                    out.read.setdefault(f.id, []).append(item)
                    out.archive.append(_archived(f.id, cycle, rec, item))
                    continue
                own = cycle_of(int(rec["start"]), f.bill_cycle_day, tz)
                if statuses.get(own) == "final" and _next_open(statuses, own) == cycle:
                    rec["cycle"] = own
                    candidates.append((f.id, rec, item))
    if candidates:
        _late_online(conn, candidates, out)
    return out


def _next_open(statuses: dict[str, str], cycle: str) -> str:
    """The first cycle after `cycle` that is not final (where its late items are billed)."""
    m = month_number(cycle) + 1
    while statuses.get(cycle_name(m)) == "final":
        m += 1
    return cycle_name(m)


def _late_online(conn, candidates, out: OnlineRecords) -> None:
    """Late records that an interrupted finalisation already archived are not billed again."""
    t = T["online_records"]
    by_account: dict[str, list] = defaultdict(list)
    for account, rec, item in candidates:
        by_account[account].append((rec, item))
    for account, items in by_account.items():
        ids = [rec["cdr_id"] for rec, _ in items]
        done = set(conn.execute(select(t.c.cdr_id).where(
            t.c.account == account, t.c.cdr_id.in_(ids))).scalars())
        for rec, item in items:
            if rec["cdr_id"] in done:
                continue
            name = f"late:{rec['cycle']}:{rec['service']}"
            adj = out.late.setdefault(account, {})
            adj[name] = adj.get(name, 0) + int(rec["net_charge"])
            out.read.setdefault(account, []).append(item)
            out.archive.append(_archived(account, rec["cycle"], rec, item))


def _archived(account: str, own_cycle: str, rec: dict, item) -> tuple:
    return (account, rec["cdr_id"], own_cycle, rec["service"], int(rec["start"]),
            int(rec["net_charge"]), item.decode() if isinstance(item, bytes) else item)


def archive_online(conn, cycle: str, archive: list[tuple]) -> None:
    """Keep the records a final bill of `cycle` summed in the database (online_records), in
    the caller's transaction; `trim_online` then removes them from Redis."""
    rows = [(a, cdr_id, own, cycle, svc, start, net, raw)
            for a, cdr_id, own, svc, start, net, raw in archive]
    t = T["online_records"]
    # a finalisation interrupted before its trim, repeated, meets its own rows: replace them
    conn.execute(delete(t).where(t.c.billed_cycle == cycle))
    insert_rows(conn, t, ["account", "cdr_id", "cycle", "billed_cycle", "service", "start",
                          "net_charge", "record"], rows)


def trim_online(store, facts: list, read: dict[str, list], *, batch: int = 2000) -> int:
    """Remove from Redis exactly the records a final bill summed (ZREM by member: a record
    the node writes meanwhile stays, and is billed later as late)."""
    from accounts.keys import AccountKeys
    from accounts.online import records_key

    roots = roots_of(facts)
    items = [(a, m) for a, ms in read.items() for m in ms]
    removed = 0
    for lo in range(0, len(items), batch * 10):
        pipe = store.r.pipeline(transaction=False)
        for account, member in items[lo:lo + batch * 10]:
            pipe.zrem(records_key(AccountKeys(account, roots[account])), member)
        removed += sum(pipe.execute())
    return removed


# --- the run ----------------------------------------------------------------------------------


def run(engine, store, catalog, compiled, *, cycle: str, cdr_files=(), partition=(1, 1),
        facts: list | None = None, progress=None, final: bool = False) -> RunSummary:
    """Bill `cycle` for the families of `partition` (K, N). Importing `cdr_files` is one
    transaction per file; the bills of the partition are replaced in one transaction.
    `progress(step)`, when given, is called as each step is done (1 + files + 3 steps)."""

    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    from accounts.snapshot import snapshot

    t0 = time.perf_counter()
    check_cycle(cycle)
    k, n = partition
    summary = RunSummary(cycle, f"{k}/{n}")
    with engine.connect() as conn:
        if cycle_status(conn, cycle) == "final":
            raise BillRunError("--cycle", f"cycle {cycle} is final: its bills never change "
                               "(late CDRs go into the next open cycle)")
    # every file is read (and refused) before anything is written
    loaded, seen = [], set()
    for path in map(Path, cdr_files):
        data_hash = _file_hash(path)
        with engine.connect() as conn:
            known = conn.execute(select(T["cdr_files"].c.retry).where(
                T["cdr_files"].c.hash == data_hash)).first()
        if (known is not None and not known[0]) or data_hash in seen:
            summary.files_skipped.append(str(path))
            continue
        seen.add(data_hash)
        try:
            loaded.append((path, data_hash, cdrs.read_cdr_table(path), known is not None))
        except cdrs.CdrFileError as exc:
            raise BillRunError("--cdrs", str(exc)) from None
    facts = list(snapshot(store)) if facts is None else facts
    index = AccountIndex.build(catalog, facts)
    step(f"{len(facts)} accounts read")
    with write_transaction(engine) as conn:
        if cycle_status(conn, cycle) is None:
            conn.execute(T["cycles"].insert().values(cycle=cycle, status="draft"))
        run_id = conn.execute(T["bill_runs"].insert().values(
            cycle=cycle, partition=summary.partition, started_at=int(time.time()))
        ).inserted_primary_key[0]
    for path, data_hash, table, retry in loaded:
        try:
            with write_transaction(engine) as conn:
                import_file(conn, catalog, compiled, index, path, data_hash, table, run_id,
                            summary, retry=retry)
        except IntegrityError:
            # another run (a partition run beside this one) imported the same content first:
            # its transaction won, this one wrote nothing
            summary.files_skipped.append(str(path))
        del table
        step(f"{path.name} rated")
    loaded.clear()
    roots = roots_of(facts)
    mine = [f for f in facts if partition_of(roots[f.id], n) == k]
    with engine.connect() as conn:
        records = online_records(store, mine, cycle, conn=conn)
    step("online records read")
    with write_transaction(engine) as conn:
        if _locked_status(conn, cycle) == "final":
            raise BillRunError("--cycle", f"cycle {cycle} was finalised during this run: its "
                               "bills are final, nothing was changed")
        offline = offline_usage(conn, cycle)
        late = late_adjustments(conn, cycle)
        for account, adj in records.late.items():
            mine_adj = late.setdefault(account, {})
            for name, v in adj.items():
                mine_adj[name] = mine_adj.get(name, 0) + v
        bills = build_bills(catalog, mine, roots, cycle, records.usage, offline, late,
                            status="final" if final else "draft",
                            posted=fees_posted(conn, cycle))
        _store_bills(conn, catalog, bills, cycle, run_id)
        if final:
            archive_online(conn, cycle, records.archive)
            conn.execute(update(T["cycles"]).where(T["cycles"].c.cycle == cycle).values(
                status="final", finalized_at=int(time.time())))
            from billing.payments import allocate_unallocated

            allocate_unallocated(conn, sorted({b["account"] for b in bills}))
    step(f"{len(bills)} bills stored")
    if final:
        trim_online(store, mine, records.read)
    _debit_prepaid_fees(engine, store, catalog, mine, roots, cycle, summary)
    step("prepaid fees debited")
    for b in bills:
        summary.accounts_billed += 1
        if b["type"] == "invoice":
            summary.invoices += 1
        else:
            summary.statements += 1
        for line in b["lines"]:
            if line["kind"] == "usage":
                summary.revenue[line["name"]] = summary.revenue.get(line["name"], 0) + \
                    parse_money(line["amount"], "amount")
    summary.seconds = time.perf_counter() - t0
    with write_transaction(engine) as conn:
        conn.execute(update(T["bill_runs"]).where(T["bill_runs"].c.id == run_id).values(
            finished_at=int(time.time()), accounts_billed=summary.accounts_billed,
            cdrs_rated=summary.cdrs_rated, cdrs_rejected=sum(summary.cdrs_rejected.values()),
            summary=json.dumps(summary.as_dict(catalog.billing.decimals), sort_keys=True)))
    return summary


def _sections(catalog, fam: list, online, offline, late) -> list[B.Section]:
    """Lines 1-3 of each account of a family: its usage (offline plus online, per service),
    subscriptions and late-CDR adjustments. Only read: the facts' subscriptions are shared."""
    out = []
    for f in fam:
        off, on = offline.get(f.id), online.get(f.id)
        if on is None:
            usage = dict(off) if off else {}
        else:
            usage = dict(off) if off else {}
            for svc, v in on.items():
                usage[svc] = usage.get(svc, 0) + v
        adj = late.get(f.id)
        out.append(B.Section(f.id, usage, f.subscriptions, dict(adj) if adj else {}))
    return out


def _has_content(catalog, sections: list[B.Section], period: B.Period) -> bool:
    for s in sections:
        if s.usage or s.adjustments:
            return True
        if any(B.active_days(sub, period) > 0 or period.first <= B._day(sub["from"]) < period.after
               for sub in s.subscriptions):
            return True
    return False


@paused_gc()
def build_bills(catalog, facts: list, roots: dict, cycle: str, online, offline, late, *,
                status: str = "draft", posted: dict[str, int] | None = None) -> list[dict]:
    """One bill per family with something to bill in the cycle (usage, an adjustment, or a
    subscription active or starting in it), by root account id. `posted` (account -> micro):
    the cycle's fees already debited from balances; on an invoice they are not due again,
    nor is the online usage of a prepaid child (paid from its own balance)."""
    posted = posted or {}
    dec = catalog.billing.decimals
    families: dict[str, list] = defaultdict(list)
    for f in facts:
        families[roots[f.id]].append(f)
    by_id = {f.id: f for f in facts}
    periods: dict[int, B.Period] = {}  # bill cycle day -> the cycle's period
    bills = []
    for root in sorted(families):
        owner = by_id.get(root)
        if owner is None:
            continue
        kin = families[root]
        fam = [owner] if len(kin) == 1 else [owner] + sorted(
            (f for f in kin if f.id != root), key=lambda f: f.id)
        period = periods.get(owner.bill_cycle_day)
        if period is None:
            period = periods[owner.bill_cycle_day] = B.Period.of(cycle, owner.bill_cycle_day)
        sections = _sections(catalog, fam, online, offline, late)
        if not _has_content(catalog, sections, period):
            continue
        prepaid = owner.credit_limit == 0
        paid = 0
        if not prepaid:
            paid = sum(posted.get(f.id, 0) for f in fam)
            paid += sum(round_micro(sum(online.get(f.id, {}).values()), dec)
                        for f in fam[1:] if f.credit_limit == 0)
        bills.append(B.build_bill(
            catalog, owner=sections[0], children=sections[1:], period=period,
            status=status, prepaid=prepaid, currency=owner.currency, paid_from_balance=paid))
    return bills


_BILL_COLUMNS = ["id", "account", "cycle", "status", "type", "currency", "period_start",
                 "period_end", "due_date", "subtotal", "account_discount", "tax", "total",
                 "amount_due", "paid", "export", "run_id"]
_LINE_COLUMNS = ["bill_id", "position", "kind", "name", "account", "amount"]


@paused_gc()
def _store_bills(conn, catalog, bills: list[dict], cycle: str, run_id: int) -> None:
    """Replace the bills of `bills` (and their lines) in the database; a cycle that has no
    bill yet has none to delete."""
    t, lines = T["bills"], T["bill_lines"]
    ids = [f"{b['account']}/{cycle}" for b in bills]
    if conn.execute(select(t.c.id).where(t.c.cycle == cycle).limit(1)).first() is not None:
        delete_in(conn, lines, lines.c.bill_id, ids)
        delete_in(conn, t, t.c.id, ids)
    parsed: dict[str, int] = {}  # amount text -> micro-units: bills repeat their amounts

    def micro(text) -> int:
        v = parsed.get(text)
        if v is None:
            v = parsed[text] = parse_money(text)
        return v

    rows, line_rows = [], []
    for bid, b in zip(ids, bills, strict=True):
        rows.append((bid, b["account"], cycle, b["status"], b["type"], b["currency"],
                     b["period_start"], b["period_end"], b["due_date"], micro(b["subtotal"]),
                     micro(b["account_discount"]), micro(b["tax"]), micro(b["total"]),
                     micro(b["amount_due"]), 0, _bill_export(b, micro), run_id))
        line_rows.extend((bid, i, ln["kind"], ln["name"], ln["account"], micro(ln["amount"]))
                         for i, ln in enumerate(b["lines"]))
    insert_rows(conn, t, _BILL_COLUMNS, rows)
    insert_rows(conn, lines, _LINE_COLUMNS, line_rows)


class _Unusual(Exception):
    """A bill the fast export does not write: `billing.render.bill_json` does (or refuses it)."""


def _bill_export(bill: dict, micro) -> str:
    """`billing.render.bill_json(bill).decode()`, the same text, written without the generic
    JSON encoder (json.dumps with an indent runs in Python: 60% of storing a bill) for a bill
    of exactly the Bill JSON keys that passes every check of `render.check_bill`; any other
    bill goes through bill_json, which writes it or refuses it naming the key. `micro` parses
    an amount (a MoneyError when it is not one)."""
    from billing import render as R

    if not _EXPORT:
        _EXPORT.extend((frozenset(R.BILL_KEYS), sorted(R.BILL_KEYS), frozenset(R.LINE_KEYS),
                        frozenset(R.SECTION_KINDS + R.BILL_LEVEL_KINDS)))
    keys, order, line_keys, kinds = _EXPORT
    try:
        if bill.keys() != keys or type(bill["cycle_days"]) is not int:
            raise _Unusual
        owner = bill["account"]
        for k in R.TEXT_KEYS:
            if type(bill[k]) is not str or not bill[k]:
                raise _Unusual
        if bill["type"] not in R.TYPES or bill["status"] not in R.STATUSES:
            raise _Unusual
        for k in R.MONEY_KEYS:
            if type(bill[k]) is not str:
                raise _Unusual
            micro(bill[k])
        if bill["type"] == "statement" and micro(bill["amount_due"]) != 0:
            raise _Unusual
        lines = bill["lines"]
        if type(lines) is not list:
            raise _Unusual
        items = []
        for ln in lines:
            if type(ln) is not dict or ln.keys() != line_keys:
                raise _Unusual
            kind, name, account, amount = ln["kind"], ln["name"], ln["account"], ln["amount"]
            if (type(kind) is not str or kind not in kinds or type(name) is not str or not name
                    or type(account) is not str or type(amount) is not str
                    or (account and (kind in R.BILL_LEVEL_KINDS or account == owner))):
                raise _Unusual
            micro(amount)
            items.append(f'    {{\n      "account": {_enc(account)},\n      "amount": '
                         f'{_enc(amount)},\n      "kind": {_enc(kind)},\n      "name": '
                         f'{_enc(name)}\n    }}')
        parts = []
        for k in order:
            if k == "lines":
                v = "[\n" + ",\n".join(items) + "\n  ]" if items else "[]"
            elif k == "cycle_days":
                v = str(bill[k])
            else:
                v = _enc(bill[k])
            parts.append(f'  "{k}": {v}')
        text = "{\n" + ",\n".join(parts) + "\n}\n"
        text.encode("utf-8")  # a lone surrogate: bill_json refuses it
        return text
    except (_Unusual, ValueError, UnicodeError):
        return R.bill_json(bill).decode()


_EXPORT: list = []  # (bill keys, their sorted order, line keys, line kinds) of billing.render
_enc = json.encoder.encode_basestring  # json.dumps(ensure_ascii=False) of one string


def _debit_prepaid_fees(engine, store, catalog, facts, roots, cycle, summary) -> None:
    """A prepaid family's fees, debited from each account's balance through the accounts
    layer once per subscription, fee and cycle: the posting row records what was debited,
    and the op id (derived from the account, cycle, subscription, fee and amount) makes a
    debit whose row was lost (a crash between them) a replay. When a re-run finds a fee of
    another amount (a subscription that ended since: another proration), or no longer
    finds it, the difference is given back or taken, and the row follows."""
    from accounts.errors import AccountError

    postings = T["fee_postings"]
    done: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)  # account -> fees posted
    with engine.connect() as conn:
        for a, key, fee, amt in conn.execute(
                select(postings.c.account, postings.c.subscription, postings.c.fee,
                       postings.c.amount).where(postings.c.cycle == cycle)):
            done[a][(key, fee)] = int(amt)
    by_id = {f.id: f for f in facts}
    for f in facts:
        owner = by_id.get(roots[f.id])
        if owner is None or owner.credit_limit != 0:
            continue
        period = B.Period.of(cycle, owner.bill_cycle_day)
        section = B.Section(f.id, {}, [dict(s) for s in f.subscriptions], {})
        wanted = {(key, fee): amount for key, fee, amount in B.fee_lines(catalog, section,
                                                                         period)}
        mine = done.get(f.id, {})
        for posted in mine:
            wanted.setdefault(posted, 0)
        for (key, fee), amount in wanted.items():
            before = mine.get((key, fee))
            if before == amount or (before is None and amount == 0):
                continue
            change = amount - (before or 0)
            op_id = "fee:" + hashlib.sha256(
                f"{f.id}|{cycle}|{key}|{fee}|{amount}".encode()).hexdigest()[:32]
            try:
                store.adjust(f.id, -change, op_id=op_id, reason=f"fee {cycle} {key} {fee}")
            except AccountError as exc:
                summary.fees_refused.append(f"{f.id} {key} {fee}: {exc}")
                continue
            with write_transaction(engine) as conn:
                if before is None:
                    conn.execute(postings.insert().values(
                        account=f.id, cycle=cycle, subscription=key, fee=fee, amount=amount,
                        op_id=op_id, posted_at=int(time.time())))
                else:
                    conn.execute(update(postings).where(
                        postings.c.account == f.id, postings.c.cycle == cycle,
                        postings.c.subscription == key, postings.c.fee == fee).values(
                        amount=amount, op_id=op_id, posted_at=int(time.time())))
            summary.fees_debited += 1


class Finalized(int):
    """What `finalize` answers: the number of bills it finalised (an int: 0 when the cycle
    was final already), and ``archive``, the ledger archive's summary (None without a
    store)."""

    archive = None

    def __new__(cls, bills: int, archive=None):
        obj = super().__new__(cls, bills)
        obj.archive = archive
        return obj


def finalize(engine, cycle: str, store=None, *, compiled=None) -> Finalized:
    """Freeze `cycle`: its bills become final and never change again. Returns the number of
    bills finalised; a second finalize does nothing to the bills.

    With `store` (the accounts layer), the bills are built once more as they stand (every CDR
    of the cycle imported since, late CDRs routed to it, the node's records up to now) and
    stored final in the same transaction that makes the cycle final; the online records they
    summed move to the database (online_records) and out of Redis, so any record of the
    cycle written later is billed as late in the next open cycle; unallocated payments of
    the accounts go to their now final bills; then the ledgers of the cycle and earlier are
    archived (billing.archive.archive_ledgers). A second finalize completes a finalisation
    that was interrupted after its commit (the trim of Redis, the ledger archive).
    Without a store, the bills are frozen as last built."""
    from billing.render import bill_json

    check_cycle(cycle)
    with engine.connect() as conn:
        status = cycle_status(conn, cycle)
    if status is None:
        raise BillRunError("--cycle", f"cycle {cycle} was never run")
    bills = 0
    if store is not None:
        from accounts.snapshot import snapshot
        from rating.compiler import compile_catalog

        facts = list(snapshot(store))
        if status != "final":
            compiled = compiled if compiled is not None else compile_catalog(store.catalog)
            summary = run(engine, store, store.catalog, compiled, cycle=cycle, facts=facts,
                          final=True)
            bills = summary.accounts_billed
        else:
            _retrim(engine, store, facts, cycle)
        from billing.archive import archive_ledgers

        return Finalized(bills, archive_ledgers(engine, store, cycle=cycle))
    with write_transaction(engine) as conn:
        if _locked_status(conn, cycle) != "final":
            t = T["bills"]
            rows = conn.execute(select(t.c.id, t.c.export).where(t.c.cycle == cycle)).all()
            for bid, export in rows:
                doc = json.loads(export)
                doc["status"] = "final"
                conn.execute(update(t).where(t.c.id == bid).values(
                    status="final", export=bill_json(doc).decode()))
            conn.execute(update(T["cycles"]).where(T["cycles"].c.cycle == cycle).values(
                status="final", finalized_at=int(time.time())))
            from billing.payments import allocate_unallocated

            allocate_unallocated(conn, sorted({bid.rsplit("/", 1)[0] for bid, _ in rows}))
            bills = len(rows)
    return Finalized(bills, None)


def _retrim(engine, store, facts: list, cycle: str) -> None:
    """Remove from Redis the records a final bill of `cycle` summed (archived already): what
    a finalisation interrupted between its commit and its trim left."""
    t = T["online_records"]
    read: dict[str, list] = defaultdict(list)
    with engine.connect() as conn:
        for account, record in conn.execute(select(t.c.account, t.c.record).where(
                t.c.billed_cycle == cycle)):
            read[account].append(record)
    known = {f.id for f in facts}
    trim_online(store, facts, {a: m for a, m in read.items() if a in known})
