"""The plain-SQL reference of the bill-run benchmark: what a team without ccs would write.

The CDR files are loaded into the same database by its fastest bulk path (PostgreSQL: COPY
FROM STDIN in CSV format; SQLite: the sqlite3 module's executemany over csv.reader rows, in
one transaction, synchronous=OFF), then priced by one SQL statement (the destination by the
longest of the 2..6-digit prefixes, a left join per length; a join to the rate table; first
and next increments; a GROUP BY per account and service) and summed into bill totals (usage
lines rounded to cents, the base offer's fee, tax), stored in a table.

It does less than ccs (no time bands, tiers, discounts, allowances, proration, account
discounts, families beyond summing children into the parent, cycles, duplicates, validation):
a cheaper job, so the ratio against it is on the safe side.
"""

from __future__ import annotations

import csv
import time

TABLES = ("ref_bills", "ref_usage", "ref_cdrs", "ref_rates", "ref_accounts", "ref_prefixes")


def reference_rows(catalog, compiled, specs, base_tariff) -> tuple[list, list, list]:
    """(prefix rows, rate rows, account rows) of the reference's three small tables.

    Rates: the first entry of each tariff, service and destination without a band, else the
    service's catch-all (destination ''); data's first tier only. Accounts: the tariff and
    fee of the base offer the account starts the cycle with, the account its bill goes to.
    """
    prefixes = [(p, name) for name, ps in catalog.destinations.items() for p in ps if p]
    rates = []
    for tname, tariff in catalog.tariffs.items():
        for svc, entries in tariff.items():
            seen = set()
            for e in entries:
                dest = e.destination or ""
                if e.band is not None or dest in seen:
                    continue
                seen.add(dest)
                rates.append((tname, svc, dest, e.tiers[0].price, e.per, e.first, e.next,
                              e.connect_fee))
    accounts = []
    for s in specs:
        fee = 0
        tariff = ""
        if s.subs:
            offer = catalog.offers[s.subs[0][0]]
            tariff, fee = offer.tariff, int(offer.recurring or 0)
        accounts.append((s.id, tariff or base_tariff, s.parent or s.id, fee))
    return prefixes, rates, accounts


_PRICE = """
INSERT INTO ref_usage (account, service, cdrs, usage, charge)
SELECT account, service, count(*), sum(usage), sum(charge) FROM (
  SELECT account, service, usage,
    CASE WHEN usage = 0 THEN 0 ELSE
      ((CASE WHEN usage <= first_inc THEN first_inc
             ELSE first_inc + (usage - first_inc + next_inc - 1) / next_inc * next_inc END)
       * price + per / 2) / per + connect END AS charge
  FROM (
    SELECT c.account, c.service, c.usage,
      COALESCE(d.price, s.price) AS price, COALESCE(d.per, s.per) AS per,
      COALESCE(d.first_inc, s.first_inc) AS first_inc,
      COALESCE(d.next_inc, s.next_inc) AS next_inc, COALESCE(d.connect, s.connect) AS connect
    FROM ref_cdrs c
    JOIN ref_accounts a ON a.account = c.account
    LEFT JOIN ref_prefixes p6 ON p6.prefix = substr(c.destination, 1, 6)
    LEFT JOIN ref_prefixes p5 ON p5.prefix = substr(c.destination, 1, 5)
    LEFT JOIN ref_prefixes p4 ON p4.prefix = substr(c.destination, 1, 4)
    LEFT JOIN ref_prefixes p3 ON p3.prefix = substr(c.destination, 1, 3)
    LEFT JOIN ref_prefixes p2 ON p2.prefix = substr(c.destination, 1, 2)
    LEFT JOIN ref_rates d ON d.tariff = a.tariff AND d.service = c.service
      AND d.dest = COALESCE(p6.dest, p5.dest, p4.dest, p3.dest, p2.dest, 'WORLD')
    JOIN ref_rates s ON s.tariff = a.tariff AND s.service = c.service AND s.dest = ''
  ) m
) priced
GROUP BY account, service
"""

_BILLS = """
INSERT INTO ref_bills (account, subtotal, tax, total)
SELECT bill_to, subtotal, (subtotal * {vat} + 50) / 100 / 10000 * 10000,
       subtotal + (subtotal * {vat} + 50) / 100 / 10000 * 10000
FROM (
  SELECT a.bill_to, CAST(sum(a.fee + COALESCE(u.amount, 0)) AS BIGINT) AS subtotal
  FROM ref_accounts a
  LEFT JOIN (SELECT account, sum((charge + 5000) / 10000 * 10000) AS amount
             FROM ref_usage GROUP BY account) u ON u.account = a.account
  GROUP BY a.bill_to
) t
"""


def _ddl(big: str) -> list[str]:
    return [
        "CREATE TABLE ref_prefixes (prefix TEXT PRIMARY KEY, dest TEXT NOT NULL)",
        f"CREATE TABLE ref_rates (tariff TEXT, service TEXT, dest TEXT, price {big}, per {big},"
        f" first_inc {big}, next_inc {big}, connect {big}, PRIMARY KEY (tariff, service, dest))",
        f"CREATE TABLE ref_accounts (account TEXT PRIMARY KEY, tariff TEXT, bill_to TEXT, fee {big})",
        f"CREATE TABLE ref_cdrs (cdr_id TEXT, account TEXT, service TEXT, start TEXT, usage {big},"
        " destination TEXT)",
        f"CREATE TABLE ref_usage (account TEXT, service TEXT, cdrs {big}, usage {big}, charge {big},"
        " PRIMARY KEY (account, service))",
        f"CREATE TABLE ref_bills (account TEXT PRIMARY KEY, subtotal {big}, tax {big}, total {big})",
    ]


def run_postgres(url: str, files, small: tuple, vat_percent: int) -> dict:
    """The reference on PostgreSQL (a psycopg URL of the benchmark's database)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for t in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        for stmt in _ddl("BIGINT"):
            conn.execute(stmt)
        _load_small_pg(conn, small)
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for path in files:
                with cur.copy("COPY ref_cdrs FROM STDIN (FORMAT csv, HEADER true)") as copy, \
                        open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        copy.write(chunk)
        conn.execute("ANALYZE ref_cdrs")
        t1 = time.perf_counter()
        conn.execute(_PRICE)
        t2 = time.perf_counter()
        conn.execute(_BILLS.format(vat=vat_percent))
        t3 = time.perf_counter()
        out = _figures(conn.execute, t0, t1, t2, t3)
        for t in TABLES:
            conn.execute(f"DROP TABLE {t}")
    return out


def _load_small_pg(conn, small) -> None:
    prefixes, rates, accounts = small
    with conn.cursor() as cur:
        for table, rows in (("ref_prefixes", prefixes), ("ref_rates", rates),
                            ("ref_accounts", accounts)):
            with cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    conn.execute("ANALYZE")


def run_sqlite(path: str, files, small: tuple, vat_percent: int) -> dict:
    """The reference on the SQLite file at `path` (the database ccs used)."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB
        for t in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {t}")
        for stmt in _ddl("INTEGER"):
            conn.execute(stmt)
        prefixes, rates, accounts = small
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO ref_prefixes VALUES (?, ?)", prefixes)
        conn.executemany("INSERT INTO ref_rates VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rates)
        conn.executemany("INSERT INTO ref_accounts VALUES (?, ?, ?, ?)", accounts)
        conn.execute("COMMIT")
        t0 = time.perf_counter()
        conn.execute("BEGIN")
        for p in files:
            with open(p, newline="") as fh:
                rows = csv.reader(fh)
                next(rows)
                conn.executemany("INSERT INTO ref_cdrs VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        t1 = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute(_PRICE)
        conn.execute("COMMIT")
        t2 = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute(_BILLS.format(vat=vat_percent))
        conn.execute("COMMIT")
        t3 = time.perf_counter()
        out = _figures(conn.execute, t0, t1, t2, t3)
        for t in TABLES:
            conn.execute(f"DROP TABLE {t}")
        conn.execute("VACUUM")
    finally:
        conn.close()
    return out


def _figures(execute, t0, t1, t2, t3) -> dict:
    cdrs = execute("SELECT count(*) FROM ref_cdrs").fetchone()[0]
    priced = execute("SELECT coalesce(sum(cdrs), 0) FROM ref_usage").fetchone()[0]
    bills, total = execute("SELECT count(*), coalesce(sum(total), 0) FROM ref_bills").fetchone()
    return {"load_s": round(t1 - t0, 3), "price_s": round(t2 - t1, 3),
            "bills_s": round(t3 - t2, 3), "seconds": round(t3 - t0, 3), "cdrs": int(cdrs),
            "priced": int(priced), "bills": int(bills), "total_micro": int(total),
            "sql_cdrs_per_s": round(int(cdrs) / (t3 - t0))}


def vat(catalog) -> int:
    """The catalog's tax percent as a whole number (the reference's integer arithmetic)."""
    if catalog.tax is None:
        return 0
    p = catalog.tax.percent
    if p.denominator != 1:
        raise ValueError("the reference needs a whole tax percent")
    return int(p.numerator)


__all__ = ["reference_rows", "run_postgres", "run_sqlite", "vat"]
