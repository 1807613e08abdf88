"""The charts of `ccs replay --charts DIR` (matplotlib, Agg backend: no display needed).

    latency.png       p50 / p95 / p99 latency of answered calls, per second of the run
    throughput.png    answered and failed requests per second (and the --rate target)
    result_codes.png  requests by result code, and failed calls by gRPC status
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def per_second(done_s, latency_s, answered):
    """(second index, p50, p95, p99 in ms of answered calls; answered and failed counts)."""
    done = np.asarray(done_s, np.float64)
    lat = np.asarray(latency_s, np.float64) * 1000
    ok = np.asarray(answered, np.int8) == 1
    sec = np.floor(done).astype(np.int64)
    n = int(sec.max()) + 1 if len(sec) else 0
    answered_n = np.bincount(sec[ok], minlength=n)
    failed_n = np.bincount(sec[~ok], minlength=n)
    pct = np.full((n, 3), np.nan)
    order = np.lexsort((lat[ok], sec[ok]))
    s_ok, l_ok = sec[ok][order], lat[ok][order]
    bounds = np.searchsorted(s_ok, np.arange(n + 1))
    for k in range(n):
        chunk = l_ok[bounds[k]:bounds[k + 1]]
        if len(chunk):
            pct[k] = np.percentile(chunk, [50, 95, 99], method="inverted_cdf")
    return np.arange(n), pct, answered_n, failed_n


def write_charts(folder: Path, rec, rate: float | None = None) -> list[Path]:
    """Write the three PNG files of a `charging.replay.Recorder` into `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    secs, pct, ok_n, failed_n = per_second(rec.done, rec.latency, rec.answered)
    out = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, (name, style) in enumerate((("p50", "-"), ("p95", "--"), ("p99", ":"))):
        ax.plot(secs, pct[:, k], style, marker=".", label=name)
    _over_time(ax, "ccs replay: latency of answered calls, per second", "ms")
    out.append(_save(fig, folder / "latency.png", plt))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(secs, ok_n, marker=".", label="answered")
    if failed_n.any():
        ax.plot(secs, failed_n, marker=".", color="tab:red", label="failed (gRPC status)")
    if rate:
        ax.axhline(rate, linestyle="--", color="grey", label=f"target {rate:g}/s")
    _over_time(ax, "ccs replay: requests per second", "requests")
    out.append(_save(fig, folder / "throughput.png", plt))

    codes: dict[str, int] = {}
    for counts in rec.results.values():
        for code, n in counts.items():
            codes[code] = codes.get(code, 0) + n
    labels = sorted(codes)
    values = [codes[c] for c in labels]
    colors = ["tab:green" if c == "2001" else "tab:orange" for c in labels]
    for status, n in sorted(rec.statuses.items()):
        if status != "OK":
            labels.append(status)
            values.append(n)
            colors.append("tab:red")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(labels, values, color=colors)
    ax.bar_label(bars)
    ax.set(title="ccs replay: requests by result code (red: failed, by gRPC status)",
           ylabel="requests")
    out.append(_save(fig, folder / "result_codes.png", plt))
    return out


def _over_time(ax, title: str, ylabel: str) -> None:
    ax.set(title=title, xlabel="second of the run", ylabel=ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
