"""`ccs demo` (what `make demo` runs): an operator's day on embedded defaults, then a clean stop.

    ccs demo [--out demo-output] [--small | --accounts N --seconds S] [--seed S] [--data-dir D]

1. the example catalog; its own redis-server (AOF on, fsync always) and SQLite database in a
   temporary folder (or --data-dir);
2. an operator of N accounts made by `charging.gen_plan` (prepaid, postpaid with credit
   limits, families, add-ons, top-ups, suspended accounts), loaded through the store's verbs;
3. the node in this process (build_node with a Charger and /metrics), all on a clock set to
   the last day of the previous month: ten minutes of its evening replayed in S seconds at
   the machine's pace (`charging.demo_day`: voice, data, SMS; final grants; a top-up that
   re-authorises a call);
4. a roaming partner's file of offline CDRs (`charging.gen.make_cdrs`), the bill run of the
   month with it, finalize (the ledgers archived), the arrears run, every bill exported;
5. the ledger audit, the charts and `<out>/index.html` (`charging.demo_page`).

Everything it started (node, redis-server) is stopped at the end, on an error and on Ctrl-C
or SIGTERM. Exit 0 done, 1 a step failed (one line on stderr), 2 bad options, 130 interrupted.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
PREFIX = "acc"
DAY_FROM = (18, 0)  # the evening peak of the demo day, local time
DAY_MINUTES = 10  # of the day, replayed in --seconds
OPERATOR = "ccs demo operator"
# what the demo writes into --out (removed first, nothing else is touched there)
OUT_FILES = ("index.html", "accounts.csv", "day.json", "latency.png", "throughput.png",
             "result_codes.png", "revenue.png", "prepaid_balances.png")
OUT_GLOBS = ("roaming-*.csv",)


@dataclass(frozen=True)
class Size:
    accounts: int
    seconds: float
    cdrs: int


DEFAULT = Size(3000, 30.0, 30_000)
SMALL = Size(150, 4.0, 1_500)


class DemoError(Exception):
    """A step that failed; the message says which and why (one line)."""


def _say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def add_arguments(p) -> None:
    """The options of `ccs demo` (charging.cli registers the command)."""
    p.add_argument("--out", default="demo-output", metavar="DIR",
                   help="where the page, charts and bills go (default %(default)s)")
    p.add_argument("--small", action="store_true",
                   help=f"a reduced size: {SMALL.accounts} accounts, {SMALL.seconds:g} s of "
                        "traffic (for tests)")
    p.add_argument("--accounts", type=int, default=None, metavar="N",
                   help=f"accounts of the operator (default {DEFAULT.accounts})")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help=f"seconds of replayed traffic (default {DEFAULT.seconds:g})")
    p.add_argument("--seed", type=int, default=1, help="of the operator and its traffic")
    p.add_argument("--data-dir", default=None,
                   help="keep the demo's redis-server data and database in DIR/ccs-demo "
                        "(replaced by the next run; default: a temporary folder, removed at "
                        "the end)")


def _size(args) -> Size:
    base = SMALL if args.small else DEFAULT
    accounts = base.accounts if args.accounts is None else args.accounts
    seconds = base.seconds if args.seconds is None else args.seconds
    if not 10 <= accounts <= 200_000:
        raise ValueError(f"--accounts: expected 10..200000, got {accounts}")
    if not 1 <= seconds <= 3600:
        raise ValueError(f"--seconds: expected 1..3600, got {seconds:g}")
    return Size(accounts, seconds, max(1000, accounts * base.cdrs // base.accounts))


def demo_day(today: date) -> date:
    """The operator's day: the last day of the month before `today`."""
    return today.replace(day=1) - timedelta(days=1)


def _local(d: date, hour: int, minute: int, tz: str) -> int:
    return int(datetime(d.year, d.month, d.day, hour, minute, tzinfo=ZoneInfo(tz)).timestamp())


def _clean(out: Path) -> None:
    """Remove what an earlier demo wrote into `out`, and nothing else."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in OUT_FILES:
            (out / name).unlink(missing_ok=True)
        for pattern in OUT_GLOBS:
            for p in out.glob(pattern):
                p.unlink()
        if (out / "bills").is_dir():
            shutil.rmtree(out / "bills")
    except OSError as exc:
        raise DemoError(f"--out: cannot use {str(out)!r}: {exc.strerror or exc}") from None


# --- the operator ---------------------------------------------------------------------------

def on_day_one(plan, cycle: str) -> None:
    """Every account on bill-cycle day 1, so the month's cycle ends with the demo day; dates
    inside an account's own cycle move to the same share of the month."""
    from rating.cycles import cycle_dates

    start1, end1 = cycle_dates(cycle, 1)
    for a in plan:
        if a.bill_cycle_day == 1:
            continue
        s0, e0 = cycle_dates(cycle, a.bill_cycle_day)

        def move(text, s0=s0, e0=e0):
            d = date.fromisoformat(text)
            if not s0 <= d < e0:
                return text
            return (start1 + timedelta(days=(d - s0).days * (end1 - start1).days
                                       // (e0 - s0).days)).isoformat()

        for s in a.subscriptions:
            s["from"] = move(s["from"])
            s["to"] = s["to"] and move(s["to"])
        a.bill_cycle_day = 1


def story_account(plan):
    """The prepaid account of the re-authorisation story: active, on its own, smart_m only;
    the plan gives it a low balance (one top-up of 1.00)."""
    from charging.demo_day import StoryAccount

    heads = {a.parent for a in plan if a.parent}
    for a in plan:
        if a.payment == "prepaid" and a.status == "active" and not a.parent \
                and a.account not in heads and {s["offer"] for s in a.subscriptions} == {"smart_m"}:
            a.topups = ["1.00"]
            return StoryAccount(a.account, a.msisdns[0], "1.00")
    raise DemoError("the plan has no prepaid smart_m account for the re-authorisation story")


def ensure_variety(plan) -> None:
    """A small plan still has a suspended account (the plan's share is 1 %)."""
    if not any(a.status == "suspended" for a in plan):
        heads = {a.parent for a in plan if a.parent}
        plain = [a for a in plan if a.account not in heads and not a.parent]
        plain[-1].status = "suspended"


def plan_text_line(plan, catalog) -> str:
    base = {o for o, offer in catalog.offers.items() if offer.tariff is not None}
    pre = sum(a.payment == "prepaid" for a in plan)
    families = {a.parent for a in plan if a.parent}
    addons = sum(s["offer"] not in base for a in plan for s in a.subscriptions)
    return (f"prepaid {pre}, postpaid {len(plan) - pre}; {len(families)} families with "
            f"{sum(bool(a.parent) for a in plan)} children; "
            f"{sum(a.status != 'active' for a in plan)} suspended; {addons} add-ons; "
            f"{sum(len(a.topups) for a in plan)} top-ups")


# --- the run ----------------------------------------------------------------------------------

class _Interrupted(KeyboardInterrupt):
    pass


def _on_term(signum, frame):
    raise _Interrupted()


def run_demo(args) -> int:
    try:
        size = _size(args)
    except ValueError as exc:
        print(f"ccs demo: {exc}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _on_term)
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            return _run(args, size, stack, started)
    except KeyboardInterrupt:
        print("[demo] interrupted: everything the demo started is stopped", file=sys.stderr)
        return 130
    except DemoError as exc:
        print(f"ccs demo: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - whatever failed: one line, everything stopped
        first = (str(exc).splitlines() or [""])[0]
        print(f"ccs demo: failed: {type(exc).__name__}: {first} (everything the demo "
              "started is stopped)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args, size: Size, stack: ExitStack, started: float) -> int:
    from accounts.embedded import EmbeddedRedis
    from accounts.store import AccountStore
    from billing import cdrs
    from billing.db import open_database
    from charging.charge import Charger
    from charging.demo_day import DayClock
    from charging.gen_plan import load_plan, make_plan, plan_text
    from charging.notifications import Notifier
    from charging.server import build_node, check_health
    from rating.catalog import load_catalog
    from rating.compiler import compile_catalog
    from rating.money import parse_money

    out = Path(args.out)
    _clean(out)
    timings: dict[str, float] = {}
    mark = [time.monotonic()]

    def lap(name: str) -> float:
        now = time.monotonic()
        timings[name] = round(now - mark[0], 2)
        mark[0] = now
        return timings[name]

    catalog_path = EXAMPLES / "catalog.yaml"
    catalog = load_catalog(catalog_path)
    compiled = compile_catalog(catalog)
    tz = catalog.timezone
    day = demo_day(datetime.now(ZoneInfo(tz)).date())
    cycle = day.strftime("%Y-%m")
    _say(f"an operator's day on embedded defaults: {size.accounts} accounts, {DAY_MINUTES} "
         f"minutes of {day.isoformat()} in {size.seconds:g} s of traffic -> {out}/")
    offers = ", ".join(f"{n} ({'base, tariff ' + o.tariff if o.tariff else 'add-on'})"
                       for n, o in catalog.offers.items())
    _say(f"1/7 catalog {catalog_path}: offers {offers}; "
         f"{sum(len(p) for p in catalog.destinations.values())} prefixes; {catalog.currency}, "
         f"{tz}")

    if args.data_dir:  # kept after the run; only its ccs-demo folder is the demo's
        work = Path(args.data_dir) / "ccs-demo"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="ccs-demo-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
    redis_server = EmbeddedRedis(work / "redis").start()
    stack.callback(redis_server.stop)
    engine = open_database(f"sqlite:///{work / 'ccs.db'}")
    stack.callback(engine.dispose)
    _say(f"2/7 redis-server {redis_server.binary} (pid {redis_server.process.pid}) on "
         f"{redis_server.url} (AOF on, fsync always); bills in SQLite {work / 'ccs.db'}")

    # --- the operator, loaded in the morning of the day
    clock = DayClock(_local(day, 7, 0, tz))
    r = redis_server.client()
    store = AccountStore(r, catalog, clock=clock)
    plan = make_plan(catalog, size.accounts, args.seed, cycle, PREFIX)
    on_day_one(plan, cycle)
    ensure_variety(plan)
    who = story_account(plan)
    (out / "accounts.csv").write_text(plan_text(plan, "csv"))
    lap("plan")
    stats = load_plan(store, plan, threads=32)
    if stats.errors:
        raise DemoError(f"loading the operator: {stats.errors[0]}")
    _say(f"3/7 the operator on {day.isoformat()}: {stats.accounts} accounts loaded in "
         f"{lap('load'):.1f} s through the store's verbs ({plan_text_line(plan, catalog)}); "
         f"plan in {out / 'accounts.csv'}")

    # --- the node and its evening
    charger = Charger(store, catalog, compiled, clock=clock)
    notifier = Notifier(r, low_balance=parse_money("2.00"))
    node = build_node("127.0.0.1:0", store=store, catalog=catalog, charger=charger,
                      notifier=notifier, metrics_listen="127.0.0.1:0")
    stack.callback(node.stop, 1.0)
    target = f"127.0.0.1:{node.port}"
    status = check_health(target)
    if status != "SERVING":
        raise DemoError(f"the node on {target} answers health {status}")
    day_start = _local(day, *DAY_FROM, tz)
    _say(f"4/7 the node on {target} (health {status}, metrics "
         f"http://127.0.0.1:{node.metrics_port}/metrics), on the demo clock: "
         f"{day.isoformat()} {DAY_FROM[0]:02d}:{DAY_FROM[1]:02d} + {DAY_MINUTES} minutes "
         f"({tz}) in {size.seconds:g} s; voice, data and SMS of the operator's accounts "
         "as fast as the node answers ...")
    day_result = _play(catalog, size, day_start, clock, who, r, node, target, args.seed)
    lap("day")
    _report_day(day_result, tz)

    # --- the night: offline CDRs, the bill run, finalize, arrears, export
    from accounts.snapshot import snapshot
    from billing.billrun import online_usage

    clock.set(_local(day, 23, 59, tz), 1.0)
    facts = list(snapshot(store))
    online = _by_service(online_usage(store, facts, cycle))
    roaming = out / f"roaming-{cycle}.csv"
    made = _roaming(catalog, plan, size.cdrs, cycle, args.seed, roaming)
    _say(f"5/7 offline CDRs of a roaming partner: {roaming} ({made})")
    cdrs.warm_up(compiled, tz)
    lap("cdrs")
    night = _bill(engine, store, catalog, compiled, cycle, roaming, facts, out, day, lap)

    from accounts.audit import audit
    from billing.archive import history_check

    findings = audit(r, history=history_check(engine))
    audit_line = (f"ledger audit of {len(facts)} accounts (Redis from the archive's "
                  "checkpoints, the archive in the database): "
                  + ("clean" if not findings else f"{len(findings)} finding(s)"))
    _say(f"7/7 {audit_line}")
    for f in findings[:10]:
        _say(f"  {f.account} {f.field}: stored {f.stored}, replayed {f.replayed}")
    lap("audit")

    from charging.demo_page import write_page

    after = list(snapshot(store))
    page = write_page(out, catalog=catalog, day=day, cycle=cycle, size=size, plan=plan,
                      plan_line=plan_text_line(plan, catalog), day_result=day_result,
                      online=online, night=night, facts=after, audit_line=audit_line,
                      findings=findings, timings=timings, tz=tz,
                      redis_line=f"redis-server {redis_server.binary}, AOF on, fsync always")
    lap("page")
    (out / "day.json").write_text(json.dumps({**day_result.figures, "timings": timings},
                                             sort_keys=True, indent=1) + "\n")
    _say(f"charts: {', '.join(p.name for p in page.charts)}; bills: {night['bills_dir']}/")
    stack.close()
    _say(f"node and redis-server stopped; done in {time.monotonic() - started:.1f} s")
    _say(f"open {page.index.resolve()} (file://{page.index.resolve()})")
    return 1 if findings else 0


def _play(catalog, size, day_start, clock, who, r, node, target, seed):
    from charging.demo_day import play_day

    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=int(size.seconds), desc="[demo] the evening", file=sys.stderr,
                   leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/"
                                           "{total_fmt} s{postfix}")
    try:
        return play_day(target=target, catalog=catalog, accounts=size.accounts, prefix=PREFIX,
                        seconds=size.seconds, minutes=DAY_MINUTES, day_start=day_start,
                        clock=clock, who=who, r=r, metrics_port=node.metrics_port, seed=seed,
                        bar=bar)
    except RuntimeError as exc:
        raise DemoError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()


def _report_day(d, tz: str) -> None:
    from charging.demo_day import RESULT_NAMES, clock_text

    f = d.figures
    for line in d.story:
        _say(f"  {line}")
    _say(f"  replay {clock_text(d.start, tz)}-{clock_text(d.end, tz)}: {f['sessions']} "
         f"sessions, {f['requests']} requests in {f['seconds']:.1f} s: {f['tps']:.0f} "
         f"requests/s; latency p50 {f['p50_ms']:.1f} ms, p95 {f['p95_ms']:.1f} ms, p99 "
         f"{f['p99_ms']:.1f} ms")
    codes = _codes(f["results"])
    _say("  answers: " + ", ".join(f"{c} {RESULT_NAMES.get(c, '')} {n}".replace("  ", " ")
                                   for c, n in sorted(codes.items()))
         + f"; failed calls {f['failed']}; {d.cut} sessions cut by a final grant")
    _say("  notifications streamed: " + (", ".join(f"{k} {v}" for k, v in
                                                   sorted(d.notifications.items())) or "none"))
    _say(f"  the node's /metrics counted {d.node_requests} answered Charge requests (the "
         f"replay's {f['answered']} and the story's {d.story_requests})")


def _codes(results: dict) -> dict:
    """{type: {code: n}} -> {code: n}"""
    out: dict[str, int] = {}
    for counts in results.values():
        for code, n in counts.items():
            out[code] = out.get(code, 0) + n
    return out


def _by_service(per_account: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for sums in per_account.values():
        for svc, v in sums.items():
            out[svc] = out.get(svc, 0) + v
    return dict(sorted(out.items()))


def _roaming(catalog, plan, count: int, cycle: str, seed: int, path: Path) -> str:
    from charging.gen import make_cdrs
    from charging.gen_cdrs import write_table

    table, injected = make_cdrs(catalog, plan, count, cycle, seed + 1000, inject=6)
    write_table(path, table, quoting="none")
    mix = ", ".join(f"{x['values']} {x['counts']}"
                    for x in table.column("service").value_counts().to_pylist() if x["values"])
    return f"{count} CDRs of {cycle}: {mix}; {sum(injected.values())} malformed on purpose"


def _bill(engine, store, catalog, compiled, cycle, roaming, facts, out, day, lap) -> dict:
    """The bill run with the roaming file, finalize, the arrears run, the export; what the
    console and the page show."""
    from sqlalchemy import select

    from billing.arrears import arrears_run
    from billing.billrun import finalize, offline_usage, run
    from billing.models import Base
    from billing.render import export_stem, write_export
    from rating.money import format_money

    dec = catalog.billing.decimals
    s = run(engine, store, catalog, compiled, cycle=cycle, cdr_files=[roaming], facts=facts)
    lap("bill run")
    d = s.as_dict(dec)
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(d["cdrs_rejected"].items())) or "none"
    _say(f"6/7 bill run {cycle}: {d['accounts_billed']} bills ({d['invoices']} invoices, "
         f"{d['statements']} statements) in {d['seconds']:.1f} s; roaming CDRs rated "
         f"{d['cdrs_rated']}, rejected {sum(d['cdrs_rejected'].values())} ({rejected}); "
         f"usage revenue {', '.join(f'{k} {v}' for k, v in d['revenue'].items()) or 'none'}; "
         f"prepaid fees debited {d['fees_debited']}, refused {len(d['fees_refused'])}")
    with engine.connect() as conn:
        offline = _by_service(offline_usage(conn, cycle))
    done = finalize(engine, cycle, store)
    lap("finalize")
    a = done.archive
    _say(f"    finalize {cycle}: {int(done)} bills final; ledgers archived: {a.entries} entries "
         f"of {a.accounts} accounts moved from Redis to the database")
    as_of = day + timedelta(days=1)
    actions = arrears_run(engine, store, as_of=as_of, grace_days=catalog.billing.grace_days)
    t = Base.metadata.tables["bills"]
    with engine.connect() as conn:
        docs = [json.loads(x) for (x,) in conn.execute(
            select(t.c.export).where(t.c.cycle == cycle).order_by(t.c.account))]
    bills_dir = out / "bills"
    write_export(docs, bills_dir, operator=OPERATOR)
    lap("export")
    due = [b for b in docs if b["type"] == "invoice"]
    total_due = sum(_micro(b["amount_due"]) for b in due)
    due_dates = sorted({b["due_date"] for b in due})
    _say(f"    exported {len(docs)} bills to {bills_dir}/ (HTML, JSON, summary.csv); "
         f"{len(due)} invoices, {format_money(total_due, dec)} {catalog.currency} due by "
         f"{', '.join(due_dates) or '-'}")
    _say(f"    arrears run as of {as_of.isoformat()}: {len(actions)} action(s) (an account is "
         f"suspended when a final bill is unpaid {catalog.billing.grace_days} days after its "
         "due date)")
    return {"summary": d, "offline": offline, "finalized": int(done), "archive": a,
            "arrears": actions, "arrears_as_of": as_of.isoformat(), "bills": docs,
            "bills_dir": bills_dir, "stems": {b["account"]: export_stem(b["account"])
                                              for b in docs},
            "total_due": format_money(total_due, dec), "due_dates": due_dates,
            "invoices": len(due)}


def _micro(text: str) -> int:
    from rating.money import parse_money

    return parse_money(text, "amount_due", allow_negative=True)
