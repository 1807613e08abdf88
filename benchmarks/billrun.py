"""Bill-run benchmark: one cycle of 100,000 accounts and 10M CDRs in CSV, on PostgreSQL and
SQLite, against the plain-SQL way of a team without ccs in the same run (benchmarks/README.md).

    .venv/bin/python benchmarks/billrun.py                                  # full size
    .venv/bin/python benchmarks/billrun.py --accounts 10000 --cdrs 1000000  # quick

Set-up (not timed, reported): a private redis-server on a free port (AOF, appendfsync
everysec) gets the accounts through the store's scripts (benchmarks/billrun_setup.py), a
share of them charged online through the charging engine; the CDRs are written as CSV files.
For each database (a fresh PostgreSQL database on 127.0.0.1:5432, dropped after; a SQLite
file), a fresh process opens it (schema by the migrations), loads the catalog and the numba
kernels, then runs `billing.billrun.run` for the cycle with the files: timed from the call
(files in) to its return (bills stored, prepaid fees debited). Then the plain-SQL reference
(benchmarks/billrun_sql.py) runs on the same database and files. Prints progress and stage
times on stderr, then one JSON line: PostgreSQL's figures at the top, SQLite's under "sqlite".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGETS = {"cdrs_per_s": 500_000, "ratio": 20, "accounts_per_hour": 10_000_000,
           "peak_rss_mb": 4096}


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --- the timed run, in a fresh process ----------------------------------------------------------


class Stages:
    """Inclusive wall time and calls per wrapped function (the run's stages)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, t0: float, c0: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, owner, attr: str, name: str, *, consume: bool = False,
             classmethod_: bool = False) -> None:
        raw = owner.__dict__[attr] if classmethod_ else getattr(owner, attr)
        fn = raw.__func__ if classmethod_ else raw

        def timed(*a, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                out = fn(*a, **k)
                return list(out) if consume else out
            finally:
                self.add(name, t0, c0)

        setattr(owner, attr, classmethod(timed) if classmethod_ else timed)

    def report(self) -> dict:
        return {k: {"s": round(v, 3), "cpu_s": round(self.cpu[k], 3), "calls": self.calls[k]}
                for k, v in self.seconds.items()}


def install_stages() -> Stages:
    import accounts.snapshot as snap
    from billing import billrun, cdrs, offline, render

    st = Stages()
    st.wrap(snap, "snapshot", "snapshot", consume=True)
    st.wrap(offline.AccountIndex, "build", "account_index", classmethod_=True)
    for owner, attr, name in (
            (billrun, "_file_hash", "file_hash"), (cdrs, "read_cdr_table", "read_csv"),
            (cdrs, "parse_cdrs", "parse"), (offline.AccountIndex, "plan_of", "plan_assignment"),
            (offline.AccountIndex, "months_of", "cycle_assignment"),
            (offline, "initial_standing", "standing"), (offline, "_take_sorted", "take_sorted"),
            (offline, "rating_rows", "rating_order"),
            (offline, "rate_batch", "rate"), (offline, "_group_sums_sorted", "aggregate"),
            (billrun, "rate_file", "rate_file"), (billrun, "import_file", "import_file"),
            (billrun, "online_usage", "online_usage"), (billrun, "online_records", "online"),
            (billrun, "offline_usage", "offline_usage"),
            (billrun, "late_adjustments", "late_adjustments"),
            (billrun, "build_bills", "build_bills"), (render, "bill_json", "json_export"),
            (billrun, "_bill_export", "json_export"),
            (billrun, "_store_bills", "store_bills"),
            (billrun, "_debit_prepaid_fees", "prepaid_fees")):
        if hasattr(owner, attr):  # a stage that a later version no longer has is left out
            st.wrap(owner, attr, name)
    for attr in ("bulk_insert", "insert_rows"):  # the SQL writes, by table
        if hasattr(billrun, attr):
            _wrap_insert(st, billrun, attr)
    return st


def _wrap_insert(st: Stages, owner, attr: str) -> None:
    inner = getattr(owner, attr)

    def insert(conn, table, *a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return inner(conn, table, *a, **k)
        finally:
            st.add("sql_insert:" + getattr(table, "name", str(table)), t0, c0)

    setattr(owner, attr, insert)


def child(cfg: dict) -> None:
    import redis
    import sqlalchemy as sa

    from accounts.store import AccountStore
    from billing import billrun, cdrs, offline
    from billing.db import open_database
    from billing.models import Base
    from rating.catalog import load_catalog
    from rating.compiler import compile_catalog

    catalog = load_catalog(cfg["catalog"])
    compiled = compile_catalog(catalog)
    engine = open_database(cfg["db"])
    store = AccountStore(redis.Redis.from_url(cfg["redis"]), catalog)
    cdrs.warm_up(compiled, catalog.timezone)
    if hasattr(offline, "warm_up"):  # the run's own kernels: compiled once after a change
        offline.warm_up(catalog, compiled)
    stages = install_stages()
    if cfg.get("gc") == "off":  # an experiment: how much the cyclic GC costs the run
        import gc

        gc.disable()
    profiler = None
    if cfg.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    summary = billrun.run(engine, store, catalog, compiled, cycle=cfg["cycle"],
                          cdr_files=cfg["files"])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(cfg["profile"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bills, lines = Base.metadata.tables["bills"], Base.metadata.tables["bill_lines"]
    digest = hashlib.sha256()
    with engine.connect() as conn:
        n_lines = conn.execute(sa.select(sa.func.count()).select_from(lines)).scalar()
        for (export,) in conn.execute(sa.select(bills.c.export).order_by(bills.c.id)):
            digest.update(export.encode())
    engine.dispose()
    print(json.dumps({
        "seconds": seconds, "cpu_s": round(cpu, 3), "peak_rss_mb": round(rss),
        "stages": stages.report(),
        "accounts_billed": summary.accounts_billed, "invoices": summary.invoices,
        "statements": summary.statements, "cdrs_rated": summary.cdrs_rated,
        "cdrs_rejected": summary.cdrs_rejected, "fees_debited": summary.fees_debited,
        "fees_refused": len(summary.fees_refused), "bill_lines": n_lines,
        "exports_sha256": digest.hexdigest()}))


# --- the parent: set-up, both databases, the reference, the JSON line ---------------------------


def _pg_database(admin: str, name: str, create: bool) -> str:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    eng = sa.create_engine(admin.replace("postgresql://", "postgresql+psycopg://", 1),
                           isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        if create:
            conn.execute(sa.text(f'create database "{name}"'))
        else:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
    eng.dispose()
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def measure(kind: str, url: str, redis_url: str, tmp: Path, files, n_cdrs: int,
            small, vat: int, args) -> dict:
    from benchmarks import billrun_sql as ref
    from benchmarks.billrun_setup import CYCLE

    cfg = {"db": url, "redis": redis_url, "catalog": str(tmp / "catalog.yaml"),
           "files": [str(f) for f in files], "cycle": CYCLE}
    if args.profile:
        cfg["profile"] = str(tmp / f"profile-{kind}.pstats")
    load_before = load()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg)], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    load_after = load()
    out = {"seconds": round(got["seconds"], 3), "cpu_s": got["cpu_s"],
           "cdrs_per_s": round(n_cdrs / got["seconds"]),
           "accounts_per_hour": round(got["accounts_billed"] / got["seconds"] * 3600),
           "peak_rss_mb": got["peak_rss_mb"], "load_avg_1m": [load_before, load_after]}
    out.update({k: got[k] for k in ("accounts_billed", "invoices", "statements", "cdrs_rated",
                                    "cdrs_rejected", "fees_debited", "fees_refused",
                                    "bill_lines", "exports_sha256", "stages")})
    log(f"{kind}: ccs {got['seconds']:.2f} s, {out['cdrs_per_s']:,} CDRs/s, "
        f"{out['accounts_per_hour']:,} accounts/h, peak {got['peak_rss_mb']} MB, "
        f"load {load_before} -> {load_after}")
    for name, v in sorted(got["stages"].items(), key=lambda kv: -kv[1]["s"]):
        log(f"    {name:28s} {v['s']:8.3f} s  cpu {v['cpu_s']:8.3f} s  x{v['calls']}")
    if args.profile:
        _print_profile(cfg["profile"])
    if args.no_sql:
        return out
    load_before = load()
    if kind == "postgres":
        sql = ref.run_postgres(url, files, small, vat)
    else:
        sql = ref.run_sqlite(url.removeprefix("sqlite:///"), files, small, vat)
    sql["load_avg_1m"] = [load_before, load()]
    log(f"{kind}: plain SQL {sql['seconds']:.2f} s (load {sql['load_s']} s, price "
        f"{sql['price_s']} s, bills {sql['bills_s']} s), {sql['sql_cdrs_per_s']:,} CDRs/s, "
        f"{sql['bills']:,} bills, load {sql['load_avg_1m']}")
    out["sql_cdrs_per_s"] = sql["sql_cdrs_per_s"]
    out["ratio"] = round(out["cdrs_per_s"] / sql["sql_cdrs_per_s"], 2)
    out["sql"] = sql
    return out


def _print_profile(path: str) -> None:
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(path, stream=buf).sort_stats("tottime").print_stats(30)
    log(buf.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--cdrs", type=int, default=10_000_000)
    p.add_argument("--files", type=int, default=1, help="CDR files the CDRs are split into")
    p.add_argument("--online-share", type=float, default=0.02,
                   help="share of bill-cycle-day-1 accounts charged online (3 events each)")
    p.add_argument("--db", choices=("both", "postgres", "sqlite"), default="both")
    p.add_argument("--pg-admin", default=PG_ADMIN)
    p.add_argument("--profile", action="store_true", help="cProfile the runs (top 30 on stderr)")
    p.add_argument("--no-sql", action="store_true", help="skip the plain-SQL reference")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    from accounts.embedded import EmbeddedRedis
    from accounts.store import AccountStore
    from benchmarks import billrun_setup as S
    from benchmarks import billrun_sql as ref
    from rating.catalog import parse_catalog
    from rating.compiler import compile_catalog

    tmp = Path(tempfile.mkdtemp(prefix="ccs-billrun-"))
    pg_name = f"ccs_bench_{uuid.uuid4().hex[:10]}"
    pg_made = False
    server = EmbeddedRedis(tmp / "redis", appendfsync="everysec")
    result: dict = {"bench": "billrun", "accounts": args.accounts, "cdrs": args.cdrs,
                    "files": args.files, "cycle": S.CYCLE, "nproc": os.cpu_count(),
                    "python": platform.python_version(), "load_avg_start": load()}
    try:
        text, prefixes = S.catalog_text()
        (tmp / "catalog.yaml").write_text(text)
        catalog = parse_catalog(text)
        compiled = compile_catalog(catalog)
        server.start()
        store = AccountStore(server.client(), catalog, clock=lambda: S.CLOCK)
        t0 = time.perf_counter()
        specs = S.account_specs(args.accounts)
        S.create_accounts(store, specs)
        t1 = time.perf_counter()
        events = S.online_events(store, catalog, compiled, specs, args.online_share)
        t2 = time.perf_counter()
        files = S.cdr_files(tmp, args.cdrs, args.files, prefixes, specs, catalog.timezone)
        t3 = time.perf_counter()
        size = sum(f.stat().st_size for f in files)
        result["setup"] = {"accounts_s": round(t1 - t0, 1), "online_events": events,
                           "online_s": round(t2 - t1, 1), "cdr_files_s": round(t3 - t2, 1),
                           "csv_mb": round(size / 1e6),
                           "families": len({s.parent for s in specs if s.parent}),
                           "children": sum(1 for s in specs if s.parent),
                           "prepaid": sum(1 for s in specs if s.prepaid),
                           "redis_used_memory_mb": round(
                               server.client().info("memory")["used_memory"] / 2**20)}
        log(f"set-up: {args.accounts:,} accounts through the scripts in {t1 - t0:.1f} s, "
            f"{events} online events in {t2 - t1:.1f} s, {args.cdrs:,} CDRs in {len(files)} "
            f"CSV file(s) ({size / 1e6:.0f} MB) in {t3 - t2:.1f} s")
        small = ref.reference_rows(catalog, compiled, specs, next(iter(catalog.tariffs)))
        vat = ref.vat(catalog)
        runs = {}
        if args.db in ("both", "postgres"):
            url = _pg_database(args.pg_admin, pg_name, create=True)
            pg_made = True
            runs["postgres"] = measure("postgres", url, server.url, tmp, files, args.cdrs,
                                       small, vat, args)
        if args.db in ("both", "sqlite"):
            runs["sqlite"] = measure("sqlite", f"sqlite:///{tmp / 'ccs.db'}", server.url, tmp,
                                     files, args.cdrs, small, vat, args)
        if len(runs) == 2:
            result["same_bills_both_databases"] = (runs["postgres"]["exports_sha256"]
                                                   == runs["sqlite"]["exports_sha256"])
        top = runs.get("postgres") or {}
        result.update(top)
        if "sqlite" in runs and "postgres" in runs:
            result["sqlite"] = runs["sqlite"]
        elif "sqlite" in runs:
            result["sqlite"] = runs["sqlite"]
        result["load_avg_end"] = load()
        result["targets"] = TARGETS
        for name, fig in (("postgres", top), ("sqlite", runs.get("sqlite") or {})):
            if fig:
                result.setdefault("targets_met", {})[name] = {
                    k: (fig[k] <= v if k == "peak_rss_mb" else fig[k] >= v)
                    for k, v in TARGETS.items() if k in fig}
    finally:
        server.stop()
        if pg_made:
            _pg_database(args.pg_admin, pg_name, create=False)
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
