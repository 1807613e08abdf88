"""Property tests: the engine (`rate_batch`, and `ccs rate` through billing/cdrs.py) agrees with
the plain reference rater to the micro-unit on random catalogs and CDR sets."""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import COLUMNS, malformed_column, parse_start, reference_rate, start_instant  # noqa: E402

from billing.cli import register  # noqa: E402
from rating.catalog import parse_catalog  # noqa: E402
from rating.compiler import compile_catalog  # noqa: E402
from rating.engine import REASONS, Accumulators, CdrBatch, Plan, rate_batch  # noqa: E402
from rating.money import format_money, parse_money  # noqa: E402

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIMEZONES = ("Europe/Berlin", "America/New_York", "UTC", "Australia/Lord_Howe",
             "America/Santiago", "Asia/Kolkata")
# UTC instants near offset changes of the zones above, and a leap day and a month end
PIVOTS = (
    1711846800,  # 2024-03-31T01:00Z  EU summer time starts
    1729990800,  # 2024-10-27T01:00Z  EU summer time ends
    1710054000,  # 2024-03-10T07:00Z  US
    1730613600,  # 2024-11-03T06:00Z  US
    1712415600,  # 2024-04-06T15:00Z  Lord Howe (30 min change)
    1728142200,  # 2024-10-05T15:30Z  Lord Howe
    1712458800,  # 2024-04-07T03:00Z  Santiago (at local midnight)
    1725768000,  # 2024-09-08T04:00Z  Santiago
    1709164800,  # 2024-02-29T00:00Z
    1711929600,  # 2024-04-01T00:00Z
)
ACCOUNTS = ("A0", "A1", "A2")
SERVICES = ("voice", "sms", "data")

# now and then free or 1 micro-unit: prices that let CDRs of 2^52 units rate (and overflow)
money = (st.integers(0, 300_000) | st.sampled_from([0, 1])).map(lambda m: format_money(m, 6))
settings.register_profile("ccs", deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _hhmm(half_hours: int) -> str:
    return f"{half_hours // 2:02d}:{30 * (half_hours % 2):02d}"


@st.composite
def catalogs(draw):
    """(YAML text, plans per account) of a small valid catalog."""
    prefixes = draw(st.lists(st.text("1249", max_size=4), min_size=1, max_size=8, unique=True))
    n_dest = draw(st.integers(1, min(4, len(prefixes))))
    owner = draw(st.lists(st.integers(0, n_dest - 1), min_size=len(prefixes), max_size=len(prefixes)))
    dests = {f"D{k}": [p for p, o in zip(prefixes, owner, strict=False) if o == k] for k in range(n_dest)}
    bands = {}
    for b in range(draw(st.integers(0, 3))):
        band = {}
        if draw(st.booleans()):
            band["days"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=6, unique=True))
        if draw(st.booleans()):  # half-hour edges: 02:00-03:00 is where DST bites
            lo = draw(st.integers(0, 47))
            band["from"], band["to"] = _hhmm(lo), _hhmm(draw(st.integers(lo + 1, 48)))
        bands[f"B{b}"] = band
    tariffs = {}
    for t in range(draw(st.integers(1, 2))):
        services = draw(st.lists(st.sampled_from(SERVICES), min_size=2, max_size=3, unique=True))
        tariff = {}
        for s in services:
            entries = []
            for _ in range(draw(st.integers(1, 4))):
                e = {}
                if draw(st.booleans()):
                    e["destination"] = draw(st.sampled_from(sorted(dests)))
                if bands and draw(st.booleans()):
                    e["band"] = draw(st.sampled_from(sorted(bands)))
                if draw(st.booleans()):
                    e["per"] = draw(st.sampled_from([1, 7, 60, 1024]))
                if draw(st.booleans()):
                    e["increments"] = [draw(st.sampled_from([1, 30, 60, 100])), draw(st.sampled_from([1, 6, 30]))]
                if draw(st.booleans()):
                    e["connect_fee"] = draw(money)
                if draw(st.booleans()):
                    e["price"] = draw(money)
                else:
                    edges = sorted(draw(st.lists(st.integers(1, 3000), max_size=2, unique=True)))
                    e["tiers"] = [{"upto": u, "price": draw(money)} for u in edges] + [{"price": draw(money)}]
                entries.append(e)
            tariff[s] = entries
        tariffs[f"T{t}"] = tariff
    discounts = {}
    for k in range(draw(st.integers(0, 2))):
        basis = draw(st.sampled_from(["usage", "charge"]))
        starts = sorted(draw(st.lists(st.integers(1, 400), max_size=2, unique=True)))
        percents = st.sampled_from(["0", "10", "12.5", "33.333333", "50", "100"])
        tiers = [{"from": 0, "percent": draw(percents)}]
        for s in starts:
            tiers.append({"from": format_money(s * 100, 6) if basis == "charge" else s, "percent": draw(percents)})
        if basis == "charge":
            tiers[0]["from"] = "0"
        discounts[f"K{k}"] = {"service": draw(st.sampled_from(SERVICES)), "basis": basis, "tiers": tiers}
    doc = {
        "currency": "EUR",
        "timezone": draw(st.sampled_from(TIMEZONES)),
        "rounding": {"decimals": draw(st.integers(0, 6)), "method": draw(st.sampled_from(["half_up", "up", "down"]))},
        "destinations": dests,
        "time_bands": bands,
        "tariffs": tariffs,
        "discounts": discounts,
    }
    plans = {
        a: Plan(draw(st.sampled_from(sorted(tariffs))),
                tuple(draw(st.lists(st.sampled_from(sorted(discounts)), unique=True)) if discounts else ()))
        for a in ACCOUNTS
    }
    return yaml.safe_dump(doc, sort_keys=False), plans


# Fractions of a second: equal instants written differently (.5, .50), the smallest and the
# largest, and none; CDRs in the same whole second are ordered by them (rule 6).
FRACTIONS = ("", "", "", ".0", ".1", ".5", ".50", ".9", ".000000001", ".999999999", ".123456")


def _iso(epoch: int, offset_min: int, fraction: str = "") -> str:
    from datetime import datetime, timedelta, timezone

    t = datetime.fromtimestamp(epoch, timezone(timedelta(minutes=offset_min)))
    zone = t.isoformat()[19:] if offset_min else "Z"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


@st.composite
def cdr_rows(draw, unique_ids: bool = False):
    n = draw(st.integers(0, 30))
    ids = (draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n, unique=True)) if unique_ids
           else draw(st.lists(st.integers(0, 120), min_size=n, max_size=n)))
    rows = []
    epochs = []
    for i in range(n):
        # 10^15 and 2^53 - 1 reach the 2^53 limits of rated usage and charge on most entries;
        # two CDRs of 2^52 on a free entry bring the tier standing to 2^53 (overflow)
        usage = str(draw(st.integers(0, 5000) | st.sampled_from([0, 1, 59, 60, 61, 10**9, 10**12,
                                                                  10**15, 2**52, 2**53 - 1])))
        row = {"cdr_id": f"c{ids[i]}", "account": draw(st.sampled_from(ACCOUNTS * 3 + ("A9",))),
               "service": draw(st.sampled_from(SERVICES * 3 + ("video",))),
               "usage": usage, "destination": draw(st.text("12459", max_size=6))}
        if rows and draw(st.booleans()):
            # the same whole second as an earlier row, now and then of the same account,
            # service and number too: only the fractions (then the ids) order their tiers
            j = draw(st.integers(0, len(rows) - 1))
            epoch = epochs[j]
            if draw(st.integers(0, 2)):
                row.update({c: rows[j][c] for c in ("account", "service", "destination")})
        else:
            epoch = draw(st.sampled_from(PIVOTS)) + draw(st.integers(-3 * 3600, 3 * 3600))
        epochs.append(epoch)
        row["start"] = _iso(epoch, draw(st.sampled_from([0, 0, 60, 120, -300, 330, 630])),
                            draw(st.sampled_from(FRACTIONS)))
        if not unique_ids and draw(st.integers(0, 9)) == 0:  # now and then a garbled field
            col = draw(st.sampled_from(COLUMNS))
            row[col] = draw(st.sampled_from(["", "x", "-1", "2024-03-31T02:30:00", "1.5"]))
        rows.append(row)
    return rows


def _fraction(text):
    t = start_instant(text)
    return 0 if t is None else t - parse_start(text)


def _engine_rate(catalog, rows, plans_by_account):
    """rate_batch on a batch built here in plain Python (independent of billing/cdrs.py)."""
    compiled = compile_catalog(catalog)
    names = list(plans_by_account)
    plans = [plans_by_account[a] for a in names]
    n = len(rows)
    # the tie-break of CDRs in the same whole second: fraction of the second, then cdr_id
    rank = np.empty(n, np.int64)
    rank[sorted(range(n), key=lambda i: (_fraction(rows[i]["start"]), rows[i]["cdr_id"]))] = np.arange(n)
    cols = {k: [] for k in ("account", "plan", "service", "start", "usage", "dest", "dest_len", "pre_reason")}
    bad_col, seen = [], set()
    for row in rows:
        bad = malformed_column(row)
        bad_col.append(bad)
        pre = 1 if bad else 2 if row["cdr_id"] in seen else 0
        if not bad:
            seen.add(row["cdr_id"])
        acct = names.index(row["account"]) if not bad and row["account"] in names else -1
        pre = pre or (3 if acct < 0 else 0)
        cols["account"].append(acct)
        cols["plan"].append(acct)
        cols["service"].append(compiled.service_id.get(row["service"], -1) if not bad else -1)
        cols["start"].append(parse_start(row["start"]) or 0)
        cols["usage"].append(int(row["usage"]) if not bad else 0)
        d = row["destination"] if not bad else ""
        cols["dest"].append(int(d) if d else 0)
        cols["dest_len"].append(len(d))
        cols["pre_reason"].append(pre)
    dtypes = {"account": np.int32, "plan": np.int32, "service": np.int32, "dest_len": np.int8, "pre_reason": np.int8}
    batch = CdrBatch(cdr_rank=rank, **{k: np.array(v, dtypes.get(k, np.int64)) for k, v in cols.items()})
    rated = rate_batch(compiled, batch, plans, Accumulators.zeros(compiled, len(names)))
    out = []
    for i in range(n):
        r = int(rated.reason[i])
        located = r in (0, REASONS.index("no_rate"))
        out.append({
            "status": "rated" if r == 0 else "duplicate" if r == 2 else "rejected",
            # a well-formed row the engine calls malformed has a usage beyond its entry's limit
            "reason": f"malformed:{bad_col[i] or 'usage'}" if r == 1 else REASONS[r],
            "destination_name": compiled.destination_names[rated.dest_name[i]] if located and rated.dest_name[i] >= 0 else "",
            "band": compiled.band_names[rated.band[i]] if located and rated.band[i] >= 0 else "",
            **{k: int(getattr(rated, k)[i]) if r == 0 else 0
               for k in ("rated_usage", "charge", "discount", "net_charge")},
        })
    return out


def _assert_agree(expected, got, rows):
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"row {i} {rows[i]}: engine {g} != reference {e}"


@settings(settings.get_profile("ccs"), max_examples=200)
@given(catalogs(), cdr_rows())
def test_rate_batch_agrees_with_reference(cat, rows):
    text, plans = cat
    catalog = parse_catalog(text)
    _assert_agree(reference_rate(catalog, rows, plans), _engine_rate(catalog, rows, plans), rows)


def _ccs_rate(text, rows, plans, bill_cycle_day):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "catalog.yaml").write_text(text)
        with open(tmp / "cdrs.csv", "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            w.writerows(rows)
        with open(tmp / "accounts.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["account", "tariff", "discounts"])
            w.writerows([a, p.tariff, ";".join(p.discounts)] for a, p in plans.items())
        argv = ["rate", "--catalog", str(tmp / "catalog.yaml"), "--cdrs", str(tmp / "cdrs.csv"),
                "--accounts", str(tmp / "accounts.csv"), "--out", str(tmp / "out.csv")]
        if bill_cycle_day:
            argv += ["--bill-cycle-day", str(bill_cycle_day)]
        parser = argparse.ArgumentParser()
        register(parser.add_subparsers())
        args = parser.parse_args(argv)
        assert args.func(args) == 0
        with open(tmp / "out.csv", newline="") as f:
            return list(csv.DictReader(f))


@settings(settings.get_profile("ccs"), max_examples=80)
@given(catalogs(), cdr_rows(), st.none() | st.integers(1, 31))
def test_ccs_rate_agrees_with_reference(cat, rows, bill_cycle_day):
    text, plans = cat
    catalog = parse_catalog(text)
    expected = reference_rate(catalog, rows, plans, bill_cycle_day)
    decimals = catalog.rounding.decimals
    out = _ccs_rate(text, rows, plans, bill_cycle_day)
    got = []
    for row, r in zip(rows, out, strict=True):
        assert {c: r[c] for c in COLUMNS} == row  # input columns written back unchanged
        for k in ("charge", "discount", "net_charge"):
            assert len(r[k].partition(".")[2]) == decimals, r[k]
        got.append({
            "status": r["status"], "reason": r["reason"], "destination_name": r["destination_name"],
            "band": r["band"], "rated_usage": int(r["rated_usage"]),
            **{k: parse_money(r[k]) for k in ("charge", "discount", "net_charge")},
        })
    _assert_agree(expected, got, rows)


@settings(settings.get_profile("ccs"), max_examples=60)
@given(catalogs(), cdr_rows(unique_ids=True), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(cat, rows, rnd: random.Random):
    text, plans = cat
    catalog = parse_catalog(text)
    before = dict(zip((r["cdr_id"] for r in rows), _engine_rate(catalog, rows, plans), strict=False))
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    after = dict(zip((r["cdr_id"] for r in shuffled), _engine_rate(catalog, shuffled, plans), strict=False))
    assert after == before
