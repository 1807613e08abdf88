"""`ccs gen ...`: seeded generators of an operator and of its CDR files.

    ccs gen accounts --catalog C --count N --seed S --out plan.csv [--cycle YYYY-MM]
    ccs gen load plan.csv [--redis URL] [--catalog C]
    ccs gen cdrs --accounts plan.csv --catalog C --count N --cycle YYYY-MM --seed S
                 --out cdrs.csv [--inject-malformed K]

Same arguments, same bytes. The plan is `charging.gen_plan`, the CDR columns
`charging.gen_cdrs`. Exit 0 done, 1 refused by the store (or Redis unavailable), 2 bad input
(one line naming the option).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
MALFORMED = ("usage", "start", "destination", "account", "service", "cdr_id")  # in turn


class GenUsage(Exception):
    """Bad input (exit 2); the message names the option."""


def one_line_errors(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """argparse's own errors (a missing option, a bad choice) as one line and exit 2."""
    def error(message: str):
        print(f"ccs {name}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    parser.error = error
    return parser


def int_option(text: str | None, name: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or value < low or (high is not None and value > high):
        top = f"..{high}" if high is not None else " or more"
        raise GenUsage(f"{name}: expected an integer {low}{top}, got {text!r}")
    return value


def _catalog(path: str | None):
    if not path:
        raise GenUsage("--catalog: no catalog given (pass --catalog FILE or set CCS_CATALOG)")
    from rating.catalog import CatalogError, load_catalog

    try:
        return load_catalog(path)
    except (CatalogError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GenUsage(f"--catalog: cannot load {path}: {first}") from None


def _cycle(text: str | None, catalog) -> str:
    from rating.cycles import local_date, parse_cycle

    if text is None:
        return local_date(int(time.time()), catalog.timezone).strftime("%Y-%m")
    try:
        parse_cycle(text)
    except ValueError:
        raise GenUsage(f"--cycle: expected YYYY-MM, got {text!r}") from None
    return text


def _out(path: str) -> Path:
    out = Path(path)
    if not out.parent.is_dir():
        raise GenUsage(f"--out: no folder {str(out.parent)!r}")
    return out


# --- accounts -----------------------------------------------------------------------------

def _accounts(args) -> int:
    from accounts.errors import AccountError
    from accounts.keys import check_account_id
    from charging.gen_plan import make_plan, plan_format, plan_text

    count = int_option(args.count, "--count", 1, 10_000_000)
    seed = int_option(args.seed, "--seed", 0)
    out = _out(args.out)
    catalog = _catalog(args.catalog)
    cycle = _cycle(args.cycle, catalog)
    try:
        check_account_id(args.prefix + "0" * 6)
    except AccountError:
        raise GenUsage(f"--prefix: {args.prefix!r} does not make account ids "
                       "([A-Za-z0-9_.-], a letter or digit first, 64 at most)") from None
    plan = make_plan(catalog, count, seed, cycle, args.prefix)
    out.write_bytes(plan_text(plan, plan_format(out)).encode())
    pre = sum(a.payment == "prepaid" for a in plan)
    kids = sum(bool(a.parent) for a in plan)
    subs = [s for a in plan for s in a.subscriptions]
    base = {o for o, offer in catalog.offers.items() if offer.tariff is not None}
    changes = sum(s["offer"] in base and s["to"] is not None for s in subs)
    print(f"ccs gen accounts: {count} accounts for cycle {cycle} -> {out} (prepaid {pre}, "
          f"postpaid {count - pre}; {len({a.parent for a in plan if a.parent})} families with "
          f"{kids} children; {sum(a.status != 'active' for a in plan)} suspended; "
          f"{len(subs)} subscriptions, {changes} changes of base offer, "
          f"{sum(s['offer'] not in base for s in subs)} add-ons; "
          f"{sum(len(a.topups) for a in plan)} top-ups)")
    return EXIT_OK


# --- load ---------------------------------------------------------------------------------

class _Bar:
    """A progress bar on stderr (tqdm), only when stderr is a terminal."""

    def __init__(self, total: int, desc: str, unit: str):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

    def __call__(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _load(args) -> int:
    import redis

    from accounts.cli import UsageError
    from accounts.cli import _Session as AccountsSession
    from accounts.embedded import RedisUrlError
    from charging.gen_plan import load_plan, read_plan

    threads = int_option(args.threads, "--threads", 1, 64)
    if not Path(args.plan).is_file():
        raise GenUsage(f"PLAN: no such file {args.plan!r}")
    session = AccountsSession(args)
    try:
        try:
            plan = read_plan(args.plan)
            store = session.store
        except UsageError as exc:
            raise GenUsage(str(exc)) from None
        except RedisUrlError as exc:
            raise GenUsage(f"--redis: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            print(f"ccs gen load: Redis unavailable: {exc}", file=sys.stderr)
            return EXIT_REFUSED
        t0 = time.perf_counter()
        bar = _Bar(len(plan), "ccs gen load", "account")
        try:
            stats = load_plan(store, plan, threads=threads, progress=bar)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            print(f"ccs gen load: Redis unavailable: {exc} (loading again is safe)",
                  file=sys.stderr)
            return EXIT_REFUSED
        finally:
            bar.close()
        elapsed = time.perf_counter() - t0
    finally:
        session.close()
    print(f"ccs gen load: {stats.accounts} accounts in {elapsed:.2f} s: created "
          f"{stats.created}, {stats.subscriptions} subscriptions, {stats.topups} top-ups, "
          f"{stats.statuses} status changes; {stats.unchanged} already applied")
    for line in stats.errors[:10]:
        print(f"ccs gen load: refused: {line}", file=sys.stderr)
    if stats.errors:
        print(f"ccs gen load: {len(stats.errors)} account(s) refused", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


# --- CDRs ---------------------------------------------------------------------------------

def make_cdrs(catalog, plan, count: int, cycle: str, seed: int, inject: int = 0):
    """(pyarrow table of the CDR file, {reason: rows injected}). CDRs of the plan's accounts
    (uniformly), starts uniform in each account's `cycle`, in start order."""
    import numpy as np
    import pyarrow as pa

    from charging.gen_cdrs import SERVICES, CdrModel, cdr_table
    from rating.cycles import cycle_bounds

    model = CdrModel.for_catalog(catalog)
    rng = np.random.default_rng(seed)
    cdrs = model.draw(rng, count)
    acc = rng.integers(0, len(plan), count)
    bounds = {d: cycle_bounds(cycle, d, catalog.timezone)
              for d in sorted({a.bill_cycle_day for a in plan})}
    lo = np.array([bounds[a.bill_cycle_day][0] for a in plan], np.int64)
    hi = np.array([bounds[a.bill_cycle_day][1] for a in plan], np.int64)
    start = lo[acc] + (rng.random(count) * (hi - lo)[acc]).astype(np.int64)
    order = np.argsort(start, kind="stable")
    builtin = np.array([SERVICES.index(s) for s in model.services])
    arrays = {"cdr": np.arange(1, count + 1), "account": acc[order],
              "service": builtin[cdrs["service"][order]], "start": start[order],
              "usage": cdrs["usage"][order], "dest": cdrs["dest"][order],
              "dest_len": cdrs["dest_len"][order]}
    names = pa.array([a.account for a in plan], pa.string())
    table = cdr_table(arrays, names, id_prefix=f"c{cycle.replace('-', '')}s{seed}-",
                      id_width=max(9, len(str(count))))
    injected: dict[str, int] = {}
    if inject:
        rows = np.sort(rng.choice(count, size=inject, replace=False))
        for k, column in enumerate(MALFORMED):
            mine = rows[k::len(MALFORMED)]
            if not len(mine):
                continue
            values = table.column(column).to_numpy(zero_copy_only=False).astype(object)
            values[mine] = [_damage(column, v) for v in values[mine]]
            table = table.set_column(table.schema.get_field_index(column), column,
                                     pa.array(values, pa.string()))
            injected[f"malformed:{column}"] = len(mine)
    return table, injected


def _damage(column: str, value: str) -> str:
    """A value `ccs rate` rejects as malformed:<column>."""
    if column == "usage":
        return "-" + value  # negative
    if column == "start":
        return value[:-1]  # no UTC offset: not an instant
    if column == "destination":
        return value[:4] + "x" + value[4:]  # a non-digit
    return ""  # empty cdr_id, account or service


def _cdrs(args) -> int:
    from charging.gen_cdrs import write_table
    from charging.gen_plan import read_plan

    count = int_option(args.count, "--count", 1, 100_000_000)
    seed = int_option(args.seed, "--seed", 0)
    inject = int_option(args.inject_malformed, "--inject-malformed", 0, count)
    if not Path(args.accounts).is_file():
        raise GenUsage(f"--accounts: no such file {args.accounts!r}")
    out = _out(args.out)
    catalog = _catalog(args.catalog)
    cycle = _cycle(args.cycle, catalog)
    plan = read_plan(args.accounts)
    if not plan:
        raise GenUsage(f"--accounts: {args.accounts} has no account")
    table, injected = make_cdrs(catalog, plan, count, cycle, seed, inject)
    write_table(out, table, quoting="none")  # no value holds a comma or a quote
    services = table.column("service").value_counts().to_pylist()
    mix = ", ".join(f"{x['values']} {x['counts']}" for x in services if x["values"])
    bad = "; malformed: " + ", ".join(f"{k.split(':')[1]} {v}" for k, v in injected.items()) \
        if injected else ""
    print(f"ccs gen cdrs: {count} CDRs of {len(plan)} accounts in cycle {cycle} -> {out} "
          f"({mix}{bad})")
    return EXIT_OK


# --- parser -------------------------------------------------------------------------------

def _runner(verb: str, handler):
    def run(args) -> int:
        from charging.gen_cdrs import GenError

        try:
            return handler(args)
        except (GenUsage, GenError) as exc:
            print(f"ccs gen {verb}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"ccs gen {verb}: interrupted", file=sys.stderr)
            return 130

    return run


def register(subparsers) -> None:
    """Add `ccs gen accounts|load|cdrs` to the root parser's subcommands."""
    top = one_line_errors(subparsers.add_parser(
        "gen", help="generate an operator (accounts plan, load it) and CDR files, seeded",
        description="Seeded generators: same arguments, same bytes."), "gen")
    verbs = top.add_subparsers(dest="gen_verb", metavar="VERB", required=True)
    catalog = os.environ.get("CCS_CATALOG")

    p = one_line_errors(verbs.add_parser(
        "accounts", help="write an operator's plan of accounts (CSV, or JSONL for *.jsonl)"),
        "gen accounts")
    p.add_argument("--catalog", default=catalog, help="catalog YAML (default $CCS_CATALOG)")
    p.add_argument("--count", required=True, metavar="N", help="accounts")
    p.add_argument("--seed", default="1", metavar="S", help="default %(default)s")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the plan: CSV (also an accounts file of ccs rate), JSONL if *.jsonl")
    p.add_argument("--cycle", default=None, metavar="YYYY-MM",
                   help="the cycle of mid-cycle changes; subscriptions start the month "
                        "before (default: the current month)")
    p.add_argument("--prefix", default="acc", help="account ids PREFIX000001.. "
                   "(default %(default)s)")
    p.set_defaults(func=_runner("accounts", _accounts))

    p = one_line_errors(verbs.add_parser(
        "load", help="load a plan into the account store (idempotent)"), "gen load")
    p.add_argument("plan", metavar="PLAN", help="a plan of ccs gen accounts")
    p.add_argument("--redis", default=None,
                   help="Redis URL; default $CCS_REDIS_URL, else the embedded redis-server")
    p.add_argument("--catalog", default=catalog, help="catalog YAML (default $CCS_CATALOG)")
    p.add_argument("--data-dir", default=None,
                   help="folder of the embedded redis-server (default $CCS_DATA_DIR or .ccs-data)")
    p.add_argument("--threads", default="8", metavar="N", help="default %(default)s")
    p.set_defaults(func=_runner("load", _load))

    p = one_line_errors(verbs.add_parser(
        "cdrs", help="write a CDR file of a plan's accounts in a cycle"), "gen cdrs")
    p.add_argument("--accounts", required=True, metavar="PLAN", help="a plan of ccs gen accounts")
    p.add_argument("--catalog", default=catalog, help="catalog YAML (default $CCS_CATALOG)")
    p.add_argument("--count", required=True, metavar="N", help="CDRs")
    p.add_argument("--cycle", default=None, metavar="YYYY-MM",
                   help="starts fall in each account's cycle (default: the current month)")
    p.add_argument("--seed", default="1", metavar="S", help="default %(default)s")
    p.add_argument("--out", required=True, metavar="FILE", help="the CDR CSV")
    p.add_argument("--inject-malformed", default="0", metavar="K",
                   help="K rows ccs rate rejects as malformed, one column in turn: "
                        + ", ".join(MALFORMED))
    p.set_defaults(func=_runner("cdrs", _cdrs))
