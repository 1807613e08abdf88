"""Where a Charge request's CPU goes in the node, without gRPC: the servicer's Charge (with the
metrics interceptor and the notifier, as `ccs serve` runs them) called in process on the
benchmark's traffic, against an embedded redis-server.

    .venv/bin/python benchmarks/charging_profile.py                 # CPU us per request
    .venv/bin/python benchmarks/charging_profile.py --profile 25    # + cProfile, top 25

Prints the node's CPU per request (process time, so Redis's own work is not in it, the
client side of the round trip is) and, with --profile, the cProfile top by own time. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from charging_load import MIX, UNIT, VOICE_DESTS, session_steps  # noqa: E402

CATALOG = ROOT / "docs" / "examples" / "catalog.yaml"


class Context:
    """The few ServicerContext calls the interceptor and servicer make on a good request."""

    def code(self):
        return None

    def details(self):
        return b""

    def is_active(self) -> bool:
        return True

    def abort(self, code, details):
        raise RuntimeError(f"{code}: {details}")


def messages(accounts: list[str], n: int, seed: int = 1):
    """`n` ChargeRequests of whole sessions in the benchmark's mix, sessions interleaved
    16 at a time (as many sessions in flight do)."""
    from proto.ccs.v1 import charging_pb2 as pb

    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    live: list = []
    made = 0
    sid = 0
    while made < n:
        while len(live) < 16:
            sid += 1
            live.append([f"p{sid}", rng.choice(accounts),
                         session_steps(rng.choice(kinds), rng.choice(VOICE_DESTS)), 0])
        s = live[rng.randrange(len(live))]
        kind, action, rg, svc, dest, requested, used = s[2][s[3]]
        unit = pb.ServiceUnit(rating_group=rg, service=svc, destination=dest)
        if requested is not None:
            setattr(unit.requested, UNIT[svc], requested)
        if used:
            setattr(unit.used, UNIT[svc], used)
        msg = pb.ChargeRequest(session_id=s[0], request_type=pb.RequestType.Value(kind),
                               request_number=s[3], subscriber=s[1], units=[unit])
        if action:
            msg.event_action = pb.EventAction.Value(action)
        msg.event_time.seconds = int(time.time())
        yield msg
        made += 1
        s[3] += 1
        if s[3] == len(s[2]):
            live.remove(s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=500)
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="cProfile the measured pass and print its top N by own time")
    args = ap.parse_args(argv)

    from accounts.embedded import EmbeddedRedis
    from accounts.store import AccountStore
    from charging.cli import _charging
    from charging.interceptors import MetricsInterceptor, NodeMetrics
    from charging.servicer import ChargingService
    from rating.catalog import load_catalog

    tmp = Path(tempfile.mkdtemp(prefix="ccs-profile-"))
    with EmbeddedRedis(data_dir=tmp / "redis", appendfsync="always") as server:
        catalog = load_catalog(CATALOG)
        store = AccountStore(server.client(), catalog)
        ids = [f"b{i:05d}" for i in range(args.accounts)]
        for i, a in enumerate(ids):
            store.create(a, offers=(("smart_m", "flat_l")[i % 2],))
            store.topup(a, 100_000 * 1_000_000, op_id=f"seed-{a}")
        charger, notifier = _charging(store, catalog, argparse.Namespace(
            validity=300, low_balance=None))
        service = ChargingService(charger, notifier)
        metrics = NodeMetrics(charger, store.r)
        import grpc

        handler = grpc.unary_unary_rpc_method_handler(service.Charge)
        wrapped = MetricsInterceptor(metrics).intercept_service(
            lambda _d: handler, type("D", (), {"method": "/ccs.v1.Charging/Charge"})())
        call = wrapped.unary_unary
        ctx = Context()
        for msg in messages(ids, len(ids) + 2000, seed=7):  # warm: every account cached
            call(msg, ctx)
        batch = list(messages(ids, args.requests, seed=11))
        prof = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waits
        codes: dict[int, int] = {}
        trips0 = charger.round_trips
        t0, c0 = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        for msg in batch:
            rc = call(msg, ctx).result_code
            codes[rc] = codes.get(rc, 0) + 1
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        trips = charger.round_trips - trips0
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
    out = {"bench": "charging_profile", "requests": len(batch), "codes": codes,
           "node_cpu_us_per_request": round(1e6 * cpu / len(batch), 1),
           "wall_us_per_request": round(1e6 * wall / len(batch), 1),
           "round_trips_per_request": round(trips / len(batch), 3), "profiled": bool(prof)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
