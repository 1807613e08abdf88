"""`ccs rate`: rate a CDR file offline against a catalog and write the rated CSV.

Owns only argument handling and exit codes; reading, validating and writing live in
`billing.cdrs`, rating in `rating.engine`.
"""

from __future__ import annotations

import gc
import sys


def register(subparsers) -> None:
    """Add `ccs rate` to the root parser's subcommands."""
    p = subparsers.add_parser(
        "rate",
        help="rate a CDR file (CSV) against a catalog, offline",
        description="Rate a CDR CSV file against a catalog. Rows are written in input order with "
                    "status, reason, destination_name, band, rated_usage, charge, discount and "
                    "net_charge added. Rejected rows never stop the run (exit 0); unusable "
                    "arguments or files exit 2.",
    )
    p.add_argument("--catalog", required=True, help="catalog YAML")
    p.add_argument("--cdrs", required=True, help="CDR CSV: cdr_id,account,service,start,usage,destination")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--accounts", help="CSV account,tariff,discounts (discounts separated by ';')")
    who.add_argument("--tariff", help="rate every account with this tariff and no discount")
    p.add_argument("--out", help="rated CSV to write (default: standard output)")
    p.add_argument("--bill-cycle-day", type=int, default=None, metavar="D",
                   help="restart tier and discount accumulators at each bill cycle start (1..31); "
                        "default: the whole file is one cycle")
    p.set_defaults(func=run_rate)


def _fail(message: str) -> int:
    print(f"ccs rate: {message}", file=sys.stderr)
    return 2


def run_rate(args) -> int:
    """Run `ccs rate`; returns the exit code (0 done, 2 unusable arguments or files)."""
    # Loading numba and its kernels makes ~10^5 objects, and the cyclic collector ran ~300
    # times over them (0.1 s of a 1 s run); nothing here makes garbage cycles worth finding.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run_rate(args)
    finally:
        if collecting:
            gc.enable()


def _run_rate(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    # Imported here so that `ccs --help` and other subcommands do not pay for numba; and
    # all before the second thread starts: two threads importing at once can each see the
    # other's modules half initialised.
    from billing import cdrs
    from rating import catalog as catalogs
    from rating import compiler

    if args.bill_cycle_day is not None and not 1 <= args.bill_cycle_day <= 31:
        return _fail(f"--bill-cycle-day: expected 1..31, got {args.bill_cycle_day}")
    # The CDR file is read (and its ids sorted) on a second thread, Arrow releasing the GIL,
    # while this one does the GIL-bound start-up: catalog, loading the numba kernels from
    # their cache, accounts. Errors keep their order: the catalog's and the accounts' first.
    pool = ThreadPoolExecutor(1)
    try:
        reading = pool.submit(_read_cdrs, cdrs, args.cdrs)
        return _rate(args, cdrs, catalogs, compiler, reading)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _read_cdrs(cdrs, path: str):
    table = cdrs.read_cdr_table(path)
    return table, cdrs.sort_cdr_ids(table)


def _rate(args, cdrs, catalogs, compiler, reading) -> int:
    try:
        catalog = catalogs.load_catalog(args.catalog)
    except catalogs.CatalogError as exc:
        return _fail(f"catalog {args.catalog} refused:\n{exc}")
    except OSError as exc:
        return _fail(f"catalog {args.catalog}: cannot read: {exc}")
    if args.tariff is not None and args.tariff not in catalog.tariffs:
        known = ", ".join(sorted(catalog.tariffs)) or "none"
        return _fail(f"--tariff: unknown tariff {args.tariff!r} (catalog has: {known})")
    compiled = compiler.compile_catalog(catalog)
    cdrs.warm_up(compiled, catalog.timezone)
    try:
        if args.accounts:
            accounts, default_plan = cdrs.read_accounts(args.accounts, catalog), None
        else:
            accounts, default_plan = None, cdrs.Plan(tariff=args.tariff)
        table, id_order = reading.result()
    except cdrs.CdrFileError as exc:
        return _fail(str(exc))

    parsed = cdrs.parse_cdrs(table, compiled, accounts=accounts, default_plan=default_plan,
                             id_order=id_order)
    rated = cdrs.rate_cdrs(compiled, parsed, catalog.timezone, args.bill_cycle_day)
    decimals = catalog.rounding.decimals
    # Everything that can fail is done before the first byte goes out.
    summary = cdrs.summarize(rated).text(decimals)
    if args.out:
        try:
            cdrs.write_rated_csv(parsed, rated, compiled, decimals, args.out)
        except OSError as exc:
            return _fail(f"--out {args.out}: cannot write: {exc}")
    else:
        try:
            sys.stdout.flush()
            cdrs.write_rated_csv(parsed, rated, compiled, decimals, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            return _reader_gone()
        except OSError as exc:
            return _fail(f"standard output: cannot write: {exc}")
    print(f"ccs rate: {summary}", file=sys.stderr)
    return 0


SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader left


def _reader_gone() -> int:
    """The reader of standard output closed it (`ccs rate ... | head`): stop quietly, as a
    tool killed by SIGPIPE does. Standard output is pointed at /dev/null first, so that
    the interpreter's own flush at exit finds nothing to complain about."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return SIGPIPE_EXIT
