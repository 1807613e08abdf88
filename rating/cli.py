"""The `ccs catalog` command group: checking a catalog file before it goes live.

`register(subparsers)` is called by the CLI root (charging/cli.py); each subcommand sets
`func=callable(args) -> int` (the exit status).
"""

from __future__ import annotations

import argparse
import sys

from rating.catalog import CatalogError, load_catalog
from rating.model import Catalog


def register(subparsers) -> None:
    """Add `catalog check FILE` to the root parser's subparsers."""
    catalog = subparsers.add_parser("catalog", help="catalog tools")
    sub = catalog.add_subparsers(dest="catalog_command", required=True)
    check = sub.add_parser("check", help="validate a catalog file and summarise it")
    check.add_argument("file", metavar="FILE", help="catalog YAML file")
    check.set_defaults(func=check_command)


def summary(cat: Catalog) -> str:
    """One paragraph of counts, so an operator can see the file says what they meant."""
    n_prefixes = sum(len(p) for p in cat.destinations.values())
    n_entries = sum(len(es) for t in cat.tariffs.values() for es in t.values())
    return (
        f"catalog OK: currency {cat.currency}, timezone {cat.timezone}, rounding "
        f"{cat.rounding.decimals} decimals {cat.rounding.method}; "
        f"{len(cat.destinations)} destinations, {n_prefixes} prefixes, "
        f"{len(cat.time_bands)} time bands, {len(cat.tariffs)} tariffs, {n_entries} rate entries, "
        f"{len(cat.discounts)} discounts, {len(cat.offers)} offers, "
        f"{len(cat.account_discounts)} account discounts, {len(cat.services)} services."
    )


def check_command(args: argparse.Namespace) -> int:
    try:
        cat = load_catalog(args.file)
    except OSError as e:
        print(f"{args.file}: cannot read: {e.strerror or e}", file=sys.stderr)
        return 1
    except CatalogError as e:
        print(str(e), file=sys.stderr)
        print(f"{len(e.issues)} error(s); catalog refused", file=sys.stderr)
        return 1
    print(summary(cat))
    return 0
