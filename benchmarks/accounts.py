"""Benchmark of the Redis account store: reserve + commit pairs from N threads.

Runs against a fresh embedded redis-server per fsync mode (appendfsync always, everysec),
on many accounts, on one hot account, and on children sharing one parent; prints per-op
latency p50/p99 and throughput, then one JSON line {"bench": "accounts", ...} last.

    .venv/bin/python benchmarks/accounts.py [--threads 8] [--accounts 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accounts.audit import audit  # noqa: E402
from accounts.embedded import EmbeddedRedis  # noqa: E402
from accounts.store import AccountStore  # noqa: E402
from rating.model import Catalog, Rounding, Service  # noqa: E402

EUR = 1_000_000
PHASES = ("many", "hot", "family")


def make_catalog() -> Catalog:
    services = {"voice": Service("voice", "seconds", 60), "sms": Service("sms", "events", 1)}
    return Catalog("EUR", "Europe/Berlin", Rounding(), {}, (), {}, {}, services)


def percentile(sorted_ns: list[int], q: float) -> float:
    """The q-quantile (nearest rank) of sorted nanosecond samples, in milliseconds."""
    if not sorted_ns:
        return 0.0
    i = min(len(sorted_ns) - 1, max(0, int(round(q * len(sorted_ns))) - 1))
    return sorted_ns[i] / 1e6


def setup(server: EmbeddedRedis, n_accounts: int, threads: int) -> dict[str, list[str]]:
    """Prepaid accounts with plenty of money: many singles, one hot account, and a family of
    `threads` children with no money of their own under one funded parent."""
    store = AccountStore(server.client(), make_catalog())
    singles = [f"acc{i:06d}" for i in range(n_accounts)]
    kids = [f"kid{i:03d}" for i in range(threads)]

    def make(account_id, parent=None, money=10**6 * EUR):
        store.create_account(account_id, parent=parent)
        if money:
            store.topup(account_id, money, op_id=f"seed-{account_id}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(make, singles + ["hot", "parent"]))
        list(pool.map(lambda k: make(k, "parent", 0), kids))
    return {"many": singles, "hot": ["hot"], "family": kids}


def run_phase(server, accounts: list[str], threads: int, seconds: float, tag: str) -> dict:
    """`threads` workers, each with its own connection, doing reserve + commit(release) pairs
    for `seconds`; worker w uses accounts[w::threads] in turn (all the hot one if single)."""
    lat = {"reserve": [], "commit": []}
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    refused = [0]

    def worker(w: int) -> None:
        store = AccountStore(server.client(), make_catalog())
        mine = accounts[w::threads] or accounts
        res_ns, com_ns, no = [], [], 0
        start.wait()
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            account = mine[i % len(mine)]
            session = f"{tag}-{w}-{i}"
            t0 = time.perf_counter_ns()
            r = store.reserve(account, session, op_id=f"r-{session}", money=EUR, service="sms")
            t1 = time.perf_counter_ns()
            if r.code != "ok":
                no += 1
            store.commit(
                account, session, op_id=f"c-{session}", charge=EUR // 2, units=0,
                service="sms", counters={"bench|tier|sms": 1}, release=True,
            )  # fmt: skip
            t2 = time.perf_counter_ns()
            res_ns.append(t1 - t0)
            com_ns.append(t2 - t1)
            i += 1
        with lock:
            lat["reserve"].extend(res_ns)
            lat["commit"].extend(com_ns)
            refused[0] += no

    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    pairs = len(lat["reserve"])
    out = {"pairs": pairs, "refused": refused[0], "seconds": round(elapsed, 2),
           "ops_per_s": round(2 * pairs / elapsed, 1)}  # fmt: skip
    for op, samples in lat.items():
        samples.sort()
        out[f"{op}_p50_ms"] = round(percentile(samples, 0.50), 3)
        out[f"{op}_p99_ms"] = round(percentile(samples, 0.99), 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    ap.add_argument("--accounts", type=int, default=1000, help="accounts of the 'many' run")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    ap.add_argument("--fsync", default="always,everysec", help="appendfsync modes to run")
    ap.add_argument("--phases", default=",".join(PHASES), help="subset of many,hot,family")
    ap.add_argument("--no-audit", action="store_true", help="skip the ledger audit after a mode")
    args = ap.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    if not set(phases) <= set(PHASES) or args.threads < 1 or args.accounts < 1:
        ap.error("--phases must name many, hot or family; --threads, --accounts >= 1")
    results: dict = {}
    clean = True
    for mode in args.fsync.split(","):
        with EmbeddedRedis(appendfsync=mode) as server:
            t0 = time.perf_counter()
            groups = setup(server, args.accounts, args.threads)
            print(f"[{mode}] setup of {args.accounts + 2 + args.threads} accounts: "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
            results[mode] = {}
            for phase in phases:
                r = run_phase(server, groups[phase], args.threads, args.seconds, f"{mode}-{phase}")
                results[mode][phase] = r
                print(
                    f"[{mode}] {phase:6s} {r['ops_per_s']:9.1f} ops/s  "
                    f"reserve p50 {r['reserve_p50_ms']:.3f} p99 {r['reserve_p99_ms']:.3f} ms  "
                    f"commit p50 {r['commit_p50_ms']:.3f} p99 {r['commit_p99_ms']:.3f} ms  "
                    f"({r['pairs']} pairs, {r['refused']} refused)",
                    flush=True,
                )
            if not args.no_audit:
                findings = audit(server.client())
                clean = clean and not findings
                print(f"[{mode}] audit: {len(findings)} findings", flush=True)
    print(json.dumps({
        "bench": "accounts", "threads": args.threads, "accounts": args.accounts,
        "seconds": args.seconds, "audit_clean": clean if not args.no_audit else None,
        "results": results,
    }))  # fmt: skip
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
