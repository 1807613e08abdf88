"""A no-op `ccs.v1.Charging` server: the server model of `ccs serve`, no work behind it.

The ceiling `benchmarks/charging.py` measures ccs against: a sync `grpc.server` with a
ThreadPoolExecutor of 16 workers (as `charging.server.build_node`), whose Charge answers one
fixed ChargeResponse (a 2001 with one grant, the size of a usual answer) without reading the
request. Run by the benchmark as its own process:

    .venv/bin/python benchmarks/noop_charging.py --listen 127.0.0.1:0

prints `listening on HOST:PORT` once serving, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto.ccs.v1 import charging_pb2, charging_pb2_grpc, common_pb2  # noqa: E402

WORKERS = 16  # charging.server.build_node's default max_workers

FIXED = charging_pb2.ChargeResponse(
    result_code=2001, session_id="noop", request_number=0, charged="0.0000",
    available="100000.00",
    grants=[charging_pb2.ServiceGrant(rating_group=1, result_code=2001,
                                      granted=common_pb2.Units(seconds=60),
                                      validity_time_s=300)])


class NoopCharging(charging_pb2_grpc.ChargingServicer):
    def Charge(self, request, context):
        return FIXED


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: a free one)")
    ap.add_argument("--workers", type=int, default=WORKERS, help="server threads (default 16)")
    args = ap.parse_args(argv)
    if not args.listen.startswith(("127.", "[::1]", "localhost:")):
        ap.error("--listen: loopback addresses only")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    charging_pb2_grpc.add_ChargingServicer_to_server(NoopCharging(), server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print(f"noop_charging: cannot listen on {args.listen}", file=sys.stderr)
        return 1
    server.start()
    print(f"listening on {args.listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
