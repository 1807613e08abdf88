"""The page of `ccs demo`: `<out>/index.html` (templates/demo_index.html.j2) and its charts.

    latency.png, throughput.png, result_codes.png   the replay's (charging.replay_charts)
    revenue.png                                     usage revenue by service: online, offline
    prepaid_balances.png                            prepaid accounts by balance after the run

Every link is relative (`bills/acc000001.html`, `latency.png`), so the folder works when
opened from disk or moved. Money stays int micro-units and decimal strings; the charts get
numbers only to draw bars, their labels are the exact amounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2
import numpy as np

from accounts.presentation import money_text
from charging.demo_day import RESULT_NAMES, clock_text
from charging.replay import TYPES
from rating.money import format_money

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass
class Page:
    index: Path
    charts: list[Path]


def nice_step(span: int, bins: int = 12) -> int:
    """A bin width of 1, 2 or 5 x 10^k micro-units covering `span` in about `bins` bins."""
    raw = max(1, span // bins)
    k = 10 ** (len(str(raw)) - 1)
    for m in (1, 2, 5, 10):
        if m * k >= raw:
            return m * k
    return 10 * k  # pragma: no cover


def balance_bins(balances: list[int], decimals: int):
    """(labels, counts): prepaid balances (micro) in bins of a nice width, exact integers."""
    if not balances:
        return [], []
    values = np.array(balances, np.int64)
    unit = 10 ** 6
    lo, hi = int(values.min()) // unit * unit, (int(values.max()) // unit + 1) * unit
    step = max(unit, nice_step(hi - lo))
    lo = lo // step * step
    n = -(-(hi - lo) // step)  # bins: ceil
    edges = lo + step * np.arange(n + 1, dtype=np.int64)
    counts = np.bincount(np.searchsorted(edges, values, side="right") - 1,
                         minlength=len(edges) - 1)[:len(edges) - 1]
    places = 0 if step % unit == 0 else decimals
    labels = [f"{format_money(int(a), places)}..{format_money(int(b), places)}"
              for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return labels, [int(c) for c in counts]


def write_charts(out: Path, rec, revenue: list[dict], balances: list[int], currency: str,
                 decimals: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from charging.replay_charts import write_charts as replay_charts

    paths = replay_charts(out, rec) if rec.requests else []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [r["service"] for r in revenue]
    online = np.array([r["online_micro"] for r in revenue], np.int64)
    offline = np.array([r["offline_micro"] for r in revenue], np.int64)
    scale = 10 ** 6  # bar heights in currency units, only to draw them
    ax.bar(names, online / scale, label="online (the day, the node)", color="tab:blue")
    bars = ax.bar(names, offline / scale, bottom=online / scale,
                  label="offline (the roaming file)", color="tab:orange")
    ax.bar_label(bars, labels=[r["billed"] for r in revenue])
    ax.set(title="Usage revenue by service on the bills (tax excluded)",
           ylabel=currency)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    paths.append(_save(fig, out / "revenue.png", plt))

    labels, counts = balance_bins(balances, decimals)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(range(len(counts)), counts, color="tab:green")
    ax.bar_label(bars)
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set(title=f"Prepaid accounts by balance after the bill run ({len(balances)} accounts)",
           xlabel=f"balance ({currency})", ylabel="accounts")
    paths.append(_save(fig, out / "prepaid_balances.png", plt))
    return paths


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def revenue_rows(online: dict, offline: dict, billed: dict, decimals: int,
                 bill_decimals: int) -> list[dict]:
    """Per service: online and offline (micro; shown with the rating's `decimals`) and the
    billed usage lines (text, rounded once per line to the bills' decimals)."""
    rows = []
    for svc in sorted(set(online) | set(offline) | set(billed)):
        on, off = online.get(svc, 0), offline.get(svc, 0)
        rows.append({"service": svc, "online_micro": on, "offline_micro": off,
                     "online": format_money(on, decimals), "offline": format_money(off, decimals),
                     "billed": billed.get(svc, format_money(0, bill_decimals))})
    return rows


def write_page(out: Path, *, catalog, day, cycle, size, plan, plan_line, day_result, online,
               night, facts, audit_line, findings, timings, tz, redis_line) -> Page:
    """The charts and index.html into `out`; `night` is what charging.demo._bill returns."""
    dec = catalog.billing.decimals
    s = night["summary"]
    revenue = revenue_rows(online, night["offline"], s["revenue"], catalog.rounding.decimals,
                           dec)
    prepaid = [f for f in facts if f.credit_limit == 0]
    charts = write_charts(out, day_result.recorder, revenue, [f.balance for f in prepaid],
                          catalog.currency, dec)
    negative = [f for f in facts if f.balance < 0]
    f = day_result.figures
    codes = sorted({c for r in f["results"].values() for c in r})
    bills = [{"account": b["account"], "type": b["type"], "total": b["total"],
              "amount_due": b["amount_due"], "status": b["status"],
              "href": f"bills/{quote(night['stems'][b['account']])}.html",
              "json": f"bills/{quote(night['stems'][b['account']])}.json",
              "children": len({ln["account"] for ln in b["lines"] if ln["account"]})}
             for b in night["bills"]]
    a = night["archive"]
    context = {
        "title": f"ccs demo: an operator's day, {day.isoformat()}",
        "day": day.isoformat(), "cycle": cycle, "tz": tz, "currency": catalog.currency,
        "size": size, "plan_line": plan_line, "redis_line": redis_line,
        "accounts": len(plan), "fig": f, "cut": day_result.cut,
        "window": f"{clock_text(day_result.start, tz)}-{clock_text(day_result.end, tz)}",
        "story": day_result.story, "notifications": sorted(day_result.notifications.items()),
        "node_requests": day_result.node_requests, "story_requests": day_result.story_requests,
        "types": [t for t in TYPES if f["by_type"][t]], "codes": codes,
        "code_names": {c: RESULT_NAMES.get(c, "") for c in codes},
        "revenue": revenue,
        "revenue_total": format_money(sum(int(_micro(r["billed"])) for r in revenue), dec),
        "summary": s, "bills": bills, "invoices": night["invoices"],
        "total_due": night["total_due"], "due_dates": ", ".join(night["due_dates"]) or "-",
        "finalized": night["finalized"], "archive": a,
        "arrears": [{"account": x.account, "action": x.action,
                     "overdue": format_money(x.overdue, dec)} for x in night["arrears"]],
        "arrears_as_of": night["arrears_as_of"],
        "grace_days": catalog.billing.grace_days,
        "negative": len(negative),
        "negative_prepaid": sum(1 for x in negative if x.credit_limit == 0),
        "negative_sum": money_text(sum(x.balance for x in negative)),
        "suspended": sum(1 for x in facts if x.status == "suspended"),
        "prepaid": len(prepaid),
        "charts": [p.name for p in charts],
        "audit_line": audit_line, "findings": findings[:50], "timings": timings,
        "roaming": f"roaming-{cycle}.csv",
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    index = out / "index.html"
    index.write_text(env.get_template("demo_index.html.j2").render(context), encoding="utf-8")
    return Page(index, charts)


def _micro(text: str) -> int:
    from rating.money import parse_money

    return parse_money(text)
