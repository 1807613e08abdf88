"""The ledger archive (docs/billing.md "The ledger archive"): finalising a cycle moves every
account's ledger entries of that cycle and earlier from Redis into the SQL database, keeping a
checkpoint (the account's balances after the last entry moved) from which the audit replays.
Redis then holds, per account, one checkpoint and the entries of the cycles not yet final.

Per batch of accounts (``archive_ledgers``):

1. ``read_cuts``: for each account, the entries after its checkpoint whose ``ts`` (the
   store's clock when the operation ran: the instant its cycle was judged by) is before the
   end of the account's ``cycle`` (cycle_bounds with its own bill-cycle day), up to the first
   that is not: a prefix of the stream. The checkpoint is read before and after the entries,
   so a trim by another archiver in between is seen and the account read again. The new
   state is the audit's replay of those entries from the checkpoint's state.
2. ``write_cuts``: one transaction: the entries into ``ledger_archive`` (account, entry_id,
   fields JSON: the stream entry as stored), a row that exists already left as it is (so a
   re-run after a crash neither fails nor duplicates), and each account's row of
   ``ledger_checkpoints`` moved forward (never back) to the new checkpoint. Committed.
3. ``trim_cuts``: only then, per account one atomic ``accounts/lua/trim_ledger.lua``: XTRIM
   MINID past the last archived entry and the checkpoint hash ``<base>:ckpt`` (id, state,
   cycle, at) written together; refused when the account was re-created or another archiver
   moved the checkpoint since step 1 (that account is then read again, from the new one).
   XTRIM frees only whole stream nodes (about 4 KB), so when at most COMPACT entries are
   left the script writes them again into a fresh stream (same ids, same last id).

A crash between 2 and 3 leaves the entries in both places: the audit replays Redis from the
old checkpoint (the entries are still there), and the next run computes the same cut again,
inserts nothing new and trims. ``archive_findings`` checks the archive itself: replayed from
the creation entry it must give each checkpoint, and what it holds past Redis's checkpoint
must still be in Redis (``ccs accounts audit --db URL``).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from redis.exceptions import NoScriptError

from accounts.audit import AuditFinding, entry_order, read_checkpoint, redis_account_ids, replay
from accounts.cluster import get_many
from accounts.errors import AccountError
from accounts.keys import AccountKeys, lookup_key, parse_lookup
from accounts.model import ledger_entry, pairs, text
from billing.db import bulk_insert, write_transaction
from billing.models import Base
from rating.cycles import cycle_bounds

T = Base.metadata.tables
PAGE = 1_000  # stream entries per XRANGE
BUDGET = 250_000  # entries held in memory per pass over a batch (split over its accounts)
COMPACT = 1_000  # trim_ledger rewrites a stream with at most this many entries left
ROUNDS = 8  # passes over a batch for accounts whose checkpoint another archiver moved
_IN = sa.Table("ledger_in", sa.MetaData(), sa.Column("account", sa.String),
               sa.Column("entry_id", sa.String), sa.Column("fields", sa.Text),
               prefixes=["TEMPORARY"], postgresql_on_commit="drop")


@dataclass
class ArchiveSummary:
    """What one ``archive_ledgers`` call did. ``entries``: removed from Redis (all of them in
    the archive); ``inserted``: rows it added to ``ledger_archive`` (fewer than ``entries``
    when a run interrupted after its commit is completed); ``accounts``: accounts trimmed;
    ``skipped``: reason -> account ids left as they were (``no_creation``: a ledger without
    a checkpoint that does not start with its creation, which the audit reports too;
    ``checkpoint``: an unreadable checkpoint; ``unknown``: re-created or gone meanwhile;
    ``lookup``: an unreadable lookup key; ``unfinished``: a checkpoint other archivers kept
    moving for ROUNDS passes: the next run goes on). A backlog longer than a pass holds
    (BUDGET entries over the batch) takes more passes, each trimming what it archived."""

    cycle: str
    accounts: int = 0
    entries: int = 0
    inserted: int = 0
    compacted: int = 0  # streams written again without their dead bytes (trim_ledger.lua)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Cut:
    """One account's entries to archive: after checkpoint ``since`` (None: from the start)
    up to ``entries[-1]``, and the balances ``state`` they leave (the new checkpoint)."""

    account: str
    keys: AccountKeys
    token: str  # the claim of the account read (the trim refuses another)
    since: str | None
    entries: list[tuple[str, dict]]  # (entry id, stream fields) oldest first
    state: dict
    more: bool = False  # stopped at the pass's limit: the account has more to archive

    @property
    def last(self) -> str:
        return self.entries[-1][0]


_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode  # one encoder


def _fields(raw) -> dict[str, str]:
    """A stream entry's fields as str -> str (``pairs``, without its per-item calls)."""
    try:
        return {k.decode(): v.decode() for k, v in raw.items()}
    except AttributeError:  # a client that decodes replies itself
        return pairs(raw)


# --- step 1: reading ---------------------------------------------------------------------------


@dataclass
class _Reading:
    claim: object
    end: int  # the cycle's end (UTC s): entries with ts below it are archived
    since: str | None = None
    start: dict | None = None
    fresh: bool = True  # the checkpoint is to be read (again)
    entries: list = field(default_factory=list)
    after: str = "-"
    done: bool = False
    more: bool = False
    limit: int = PAGE


def _claims(r, account_ids: list[str], skipped) -> list:
    out = []
    for account_id, raw in zip(account_ids, get_many(r, [lookup_key(i) for i in account_ids]),
                               strict=True):
        if raw is None:
            continue
        try:
            out.append(parse_lookup(account_id, text(raw)))
        except AccountError:
            skipped["lookup"].append(account_id)
    return out


def _page(rd: _Reading, page: list, page_size: int) -> None:
    for raw_id, raw_fields in page:
        entry_id = text(raw_id)
        if rd.since is not None and entry_order(entry_id) <= entry_order(rd.since):
            continue
        fields = _fields(raw_fields)
        if int(fields["ts"]) >= rd.end:
            rd.done = True
            return
        rd.entries.append((entry_id, fields))
        if len(rd.entries) >= rd.limit:
            rd.done = rd.more = True
            return
    if len(page) < page_size:
        rd.done = True
    else:
        rd.after = f"({text(page[-1][0])}"


def read_cuts(store, account_ids, *, cycle: str, page: int | None = None,
              limit: int | None = None, skipped: dict | None = None) -> list[Cut]:
    """Step 1 for ``account_ids``: what each account has to archive for ``cycle`` (accounts
    with nothing to archive are left out), at most ``limit`` entries each (default BUDGET
    over the accounts, at least a page; a cut stopped there has ``more``). Pipelined: one
    MGET and one round trip per page of entries, whatever the number of accounts.
    ``skipped`` (reason -> ids) collects the accounts left out for a reason."""
    r, tz = store.r, store.catalog.timezone
    account_ids = list(account_ids)
    page = PAGE if page is None else page
    limit = max(page, BUDGET // max(1, len(account_ids))) if limit is None else limit
    skipped = defaultdict(list) if skipped is None else skipped
    todo = {c.keys.account_id: _Reading(c, cycle_bounds(cycle, c.bill_cycle_day, tz)[1],
                                        limit=limit)
            for c in _claims(r, account_ids, skipped)}
    reading = list(todo.values())
    while reading:
        pipe = r.pipeline(transaction=False)
        for rd in reading:
            k = rd.claim.keys
            if rd.fresh:
                pipe.hgetall(k.checkpoint)
            else:
                pipe.hget(k.checkpoint, "id")
            pipe.xrange(k.ledger, rd.after, "+", count=page)
            pipe.hget(k.checkpoint, "id")
        replies = pipe.execute()
        for i, rd in enumerate(reading):
            before, entries, after = replies[3 * i: 3 * i + 3]
            if rd.fresh:
                try:
                    rd.since, rd.start = read_checkpoint(before)
                except ValueError:
                    skipped["checkpoint"].append(rd.claim.keys.account_id)
                    rd.done, rd.entries = True, []
                    continue
                before = pairs(before).get("id")
                rd.fresh = False
            else:
                before = None if before is None else text(before)
            after = None if after is None else text(after)
            if not before == after == rd.since:  # trimmed meanwhile: read it again
                rd.fresh, rd.entries, rd.after = True, [], "-"
                continue
            _page(rd, entries, page)
        reading = [rd for rd in reading if not rd.done]
    cuts = []
    for account_id, rd in todo.items():
        if not rd.entries:
            continue
        state = replay([ledger_entry(i, f) for i, f in rd.entries], rd.start)
        if state is None:
            skipped["no_creation"].append(account_id)
            continue
        cuts.append(Cut(account_id, rd.claim.keys, rd.claim.token, rd.since, rd.entries,
                        state, rd.more))
    return cuts


# --- step 2: the SQL archive -------------------------------------------------------------------


def _insert_new(conn, rows: list[dict]) -> int:
    """Insert the archive rows not there yet; returns how many were new."""
    if not rows:
        return 0
    table = T["ledger_archive"]
    if conn.dialect.name == "postgresql":  # COPY into a temporary table, then one INSERT
        _IN.create(conn)
        bulk_insert(conn, _IN, rows, copy_threshold=0)
        return conn.execute(sa.text(
            f"INSERT INTO {table.name} (account, entry_id, fields) "
            "SELECT account, entry_id, fields FROM ledger_in ON CONFLICT DO NOTHING")).rowcount
    # SQLite: the driver's executemany of plain tuples (a Core insert spends more time
    # compiling each row's parameters than SQLite spends inserting it)
    result = conn.exec_driver_sql(
        f"INSERT INTO {table.name} (account, entry_id, fields) VALUES (?, ?, ?) "
        "ON CONFLICT (account, entry_id) DO NOTHING",
        [(x["account"], x["entry_id"], x["fields"]) for x in rows])
    return result.rowcount


def _advance_checkpoints(conn, cuts: list[Cut], cycle: str, now: int) -> None:
    """Each account's ledger_checkpoints row moved to its cut, unless it is there or further
    already (two archivers of different cycles: the row never goes back). The rows are
    locked first on PostgreSQL (SQLite: the transaction holds the write lock)."""
    t = T["ledger_checkpoints"]
    ids = [c.account for c in cuts]
    held: dict[str, str] = {}
    for lo in range(0, len(ids), 500):
        q = sa.select(t.c.account, t.c.entry_id).where(t.c.account.in_(ids[lo:lo + 500]))
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        held.update(conn.execute(q).all())
    fresh, moved = [], []
    for c in cuts:
        row = {"account": c.account, "entry_id": c.last, "cycle": cycle,
               "balances": _dumps(c.state), "created_at": now}
        if c.account not in held:
            fresh.append(row)
        elif entry_order(held[c.account]) < entry_order(c.last):
            moved.append({**row, "who": c.account})
    if fresh:
        conn.execute(sa.insert(t), fresh)
    if moved:
        conn.execute(sa.update(t).where(t.c.account == sa.bindparam("who")).values(
            entry_id=sa.bindparam("entry_id"), cycle=sa.bindparam("cycle"),
            balances=sa.bindparam("balances"), created_at=sa.bindparam("created_at")), moved)


def write_cuts(engine, cuts: list[Cut], *, cycle: str, now: int | None = None) -> int:
    """Step 2: the cuts' entries and checkpoints in one committed transaction; returns the
    number of archive rows that were new."""
    now = int(time.time()) if now is None else now
    rows = [{"account": c.account, "entry_id": i, "fields": _dumps(f)}
            for c in cuts for i, f in c.entries]
    with write_transaction(engine) as conn:
        inserted = _insert_new(conn, rows)
        _advance_checkpoints(conn, cuts, cycle, now)
    return inserted


# --- step 3: the Redis trim --------------------------------------------------------------------


def trim_cuts(store, cuts: list[Cut], *, cycle: str, now: int | None = None) -> list[tuple]:
    """Step 3 (after ``write_cuts`` committed): one trim_ledger script per cut, pipelined;
    returns (code, entries removed, whether the stream was compacted) per cut: code
    'trimmed', 'done', 'moved' or 'unknown'."""
    if not cuts:
        return []
    now = int(time.time()) if now is None else now
    r, script = store.r, store.scripts.trim_ledger
    for attempt in (1, 2):
        pipe = r.pipeline(transaction=False)
        for c in cuts:
            k = c.keys
            pipe.execute_command("EVALSHA", script.sha, 3, k.account, k.ledger, k.checkpoint,
                                 c.token, c.since or "", c.last, _dumps(c.state), cycle,
                                 str(now), str(COMPACT))
        replies = pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(x, NoScriptError) for x in replies):
            script.load(r)  # a restarted or flushed server (every primary of a cluster);
            continue  # a refused EVALSHA did not run, and a trim that ran answers 'done'
        break
    out = []
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
        out.append((text(reply[0]), int(reply[1]), reply[2] == 1))
    return out


# --- the whole archive -------------------------------------------------------------------------


def archive_ledgers(engine, store, *, cycle: str, batch: int = 500,
                    account_ids=None) -> ArchiveSummary:
    """Archive every account's (or ``account_ids``') ledger entries of ``cycle`` and earlier:
    steps 1-3 per batch of ``batch`` accounts. Idempotent: a second call finds nothing to do;
    a call after one interrupted completes it."""
    from accounts.snapshot import account_ids as all_ids

    t0 = time.perf_counter()
    if isinstance(batch, bool) or not isinstance(batch, int) or not 0 < batch <= 10_000:
        raise ValueError(f"batch: expected 1..10000 accounts, got {batch!r}")
    summary = ArchiveSummary(cycle)
    skipped: dict[str, list[str]] = defaultdict(list)
    trimmed: set[str] = set()
    ids = all_ids(store) if account_ids is None else list(account_ids)
    for lo in range(0, len(ids), batch):
        pending, moves = ids[lo:lo + batch], 0
        while pending:
            cuts = read_cuts(store, pending, cycle=cycle, skipped=skipped)
            summary.inserted += write_cuts(engine, cuts, cycle=cycle) if cuts else 0
            pending, moved = [], []
            for cut, (code, removed, compacted) in zip(
                    cuts, trim_cuts(store, cuts, cycle=cycle), strict=True):
                if code == "trimmed":
                    trimmed.add(cut.account)
                    summary.entries += removed
                    summary.compacted += compacted
                    if cut.more:  # a backlog: on from its new checkpoint
                        pending.append(cut.account)
                elif code == "unknown":
                    skipped["unknown"].append(cut.account)
                elif code == "moved":
                    moved.append(cut.account)
            moves += bool(moved)
            if moves > ROUNDS:  # other archivers keep moving these: the next run goes on
                skipped["unfinished"].extend(moved)
                moved = []
            pending += moved
    summary.accounts = len(trimmed)
    summary.skipped = {k: sorted(set(v)) for k, v in sorted(skipped.items()) if v}
    summary.seconds = time.perf_counter() - t0
    return summary


# --- the archive's own check (ccs accounts audit --db URL) -------------------------------------


def _archived(conn, ids: list[str]) -> tuple[dict, dict]:
    """account -> [(entry id, fields JSON)] in stream order; account -> its checkpoint row."""
    ar, ck = T["ledger_archive"], T["ledger_checkpoints"]
    rows: dict[str, list] = defaultdict(list)
    for account, entry_id, fields in conn.execute(
            sa.select(ar.c.account, ar.c.entry_id, ar.c.fields).where(ar.c.account.in_(ids))):
        rows[account].append((entry_id, fields))
    for v in rows.values():
        v.sort(key=lambda x: entry_order(x[0]))
    marks = {a: (e, b) for a, e, b in conn.execute(
        sa.select(ck.c.account, ck.c.entry_id, ck.c.balances).where(ck.c.account.in_(ids)))}
    return rows, marks


def _upto(entries: list[dict], entry_id: str) -> tuple[bool, dict | None]:
    """(whether ``entry_id`` is archived, the replay from nothing up to it)."""
    ids = [e["id"] for e in entries]
    if entry_id not in ids:
        return False, None
    return True, replay(entries[: ids.index(entry_id) + 1])


def _account_findings(account: str, rows: list, mark, since: str | None, state,
                      in_redis: dict) -> list[AuditFinding]:
    out = []
    entries = []
    for entry_id, raw in rows:
        try:
            entries.append(ledger_entry(entry_id, json.loads(raw)))
        except (ValueError, KeyError, TypeError):
            out.append(AuditFinding(account, f"archive:{entry_id}", raw, "unreadable entry"))
    if out:
        return out
    if entries and replay(entries[:1]) is None:
        out.append(AuditFinding(account, "archive", len(entries), "no creation entry first"))
        return out
    if since is not None:
        found, replayed = _upto(entries, since)
        if not found:
            last = entries[-1]["id"] if entries else None
            out.append(AuditFinding(account, "archive", last,
                                    f"no archived entry {since} (the checkpoint's): its "
                                    "history is not in this database"))
        elif replayed != state:
            out.append(AuditFinding(account, "checkpoint", state, replayed))
    if mark is not None:
        found, replayed = _upto(entries, mark[0])
        balances = json.loads(mark[1])
        if not found:
            out.append(AuditFinding(account, "ledger_checkpoints", mark[0], "entry not archived"))
        elif replayed != balances:
            out.append(AuditFinding(account, "ledger_checkpoints", balances, replayed))
    for e, (entry_id, raw) in zip(entries, rows, strict=True):
        if since is not None and entry_order(entry_id) <= entry_order(since):
            continue  # trimmed from Redis: the archive is its only copy
        # archived but not trimmed yet (a run stopped between its commit and its trim):
        # still in Redis, the same
        fields = json.loads(raw)
        if in_redis.get(entry_id) != fields:
            out.append(AuditFinding(account, f"archive:{e['id']}", fields,
                                    in_redis.get(entry_id, "not in Redis")))
    return out


def _chunk_findings(engine, r, chunk: list[str]) -> list[AuditFinding]:
    keys = {}
    for account_id, raw in zip(chunk, get_many(r, [lookup_key(i) for i in chunk]), strict=True):
        if raw is not None:
            keys[account_id] = parse_lookup(account_id, text(raw)).keys
    for _ in range(ROUNDS):  # read again when an archive trimmed one of them meanwhile
        pipe = r.pipeline(transaction=False)
        for k in keys.values():
            pipe.hgetall(k.checkpoint)
        first = dict(zip(keys, pipe.execute(), strict=True))
        with engine.connect() as conn:
            rows, marks = _archived(conn, chunk)
        # the archived entries past the Redis checkpoint (normally none) are read back
        pipe, read_back = r.pipeline(transaction=False), []
        for k in keys.values():
            pipe.hget(k.checkpoint, "id")
        for account_id, k in keys.items():
            since = pairs(first[account_id]).get("id")
            last = rows[account_id][-1][0] if rows.get(account_id) else None
            if last is not None and (since is None or entry_order(last) > entry_order(since)):
                pipe.xrange(k.ledger, f"({since}" if since else "-", last)
                read_back.append(account_id)
        replies = pipe.execute()
        later = [None if x is None else text(x) for x in replies[:len(keys)]]
        if later == [pairs(first[a]).get("id") for a in keys]:
            break
    tail = dict(zip(read_back, replies[len(keys):], strict=True))
    out: list[AuditFinding] = []
    for account_id in chunk:
        if account_id not in keys:
            if rows.get(account_id) or account_id in marks:
                out.append(AuditFinding(account_id, "account", None,
                                        "archived ledger of an account not in Redis"))
            continue
        try:
            since, state = read_checkpoint(first[account_id])
        except ValueError as exc:
            out.append(AuditFinding(account_id, "checkpoint", None, str(exc)))
            continue
        in_redis = {text(e): pairs(f) for e, f in tail.get(account_id, ())}
        out.extend(_account_findings(account_id, rows.get(account_id, []),
                                     marks.get(account_id), since, state, in_redis))
    return out


def archive_findings(engine, r, account_ids=None, *, batch: int = 500) -> list[AuditFinding]:
    """The archived part of the ledgers of ``account_ids`` (default: every account in Redis
    or in the archive): replayed from its creation entry the archive gives the account's
    Redis checkpoint (and its ``ledger_checkpoints`` row), and every archived entry after
    the Redis checkpoint is still in Redis, unchanged. With the Redis audit (from the
    checkpoint on) that covers the whole history. Empty: clean."""
    if account_ids is None:
        ar, ck = T["ledger_archive"], T["ledger_checkpoints"]
        with engine.connect() as conn:
            known = set(conn.execute(sa.select(ar.c.account).distinct()).scalars())
            known |= set(conn.execute(sa.select(ck.c.account)).scalars())
        ids = sorted(known | set(redis_account_ids(r)))
    else:
        ids = list(account_ids)
    out: list[AuditFinding] = []
    for lo in range(0, len(ids), batch):
        out.extend(_chunk_findings(engine, r, ids[lo:lo + batch]))
    return out


def history_check(engine):
    """``accounts.audit.audit(..., history=history_check(engine))``: the audit with the
    archive in ``engine``'s database."""
    return lambda r, account_ids: archive_findings(engine, r, account_ids)
