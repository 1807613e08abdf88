"""A no-op `ccs.v1.Charging` server: a server model of `ccs serve`, no work behind it.

The ceiling `benchmarks/charging.py` measures ccs against, in the same server model as the
ccs node it is compared with: a sync `grpc.server` with a ThreadPoolExecutor (`--threads`,
16 as `ccs serve`), or a `grpc.aio` server (`--aio`); in one process or in `--workers N`
processes on the same port (SO_REUSEPORT, as `ccs serve --workers N`: an idle parent and N
serving children). Its Charge answers one fixed ChargeResponse (a 2001 with one grant, the
size of a usual answer) without reading the request. Run by the benchmark as its own process:

    .venv/bin/python benchmarks/noop_charging.py --listen 127.0.0.1:PORT [--workers 2] [--aio]

prints `listening on HOST:PORT` once serving, and stops (with its children) on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto.ccs.v1 import charging_pb2, charging_pb2_grpc, common_pb2  # noqa: E402

THREADS = 16  # ccs serve --threads default
OPTIONS = (("grpc.so_reuseport", 1),)  # as charging.server.GRPC_OPTIONS

FIXED = charging_pb2.ChargeResponse(
    result_code=2001, session_id="noop", request_number=0, charged="0.0000",
    available="100000.00",
    grants=[charging_pb2.ServiceGrant(rating_group=1, result_code=2001,
                                      granted=common_pb2.Units(seconds=60),
                                      validity_time_s=300)])


class NoopCharging(charging_pb2_grpc.ChargingServicer):
    def Charge(self, request, context):
        return FIXED


class AioNoopCharging(charging_pb2_grpc.ChargingServicer):
    async def Charge(self, request, context):
        return FIXED


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def serve_sync(listen: str, threads: int) -> int:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=OPTIONS)
    charging_pb2_grpc.add_ChargingServicer_to_server(NoopCharging(), server)
    port = server.add_insecure_port(listen)
    if port == 0:
        print(f"noop_charging: cannot listen on {listen}", file=sys.stderr)
        return 1
    server.start()
    print(f"listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    return 0


def serve_aio(listen: str) -> int:
    async def go() -> int:
        server = grpc.aio.server(options=OPTIONS)
        charging_pb2_grpc.add_ChargingServicer_to_server(AioNoopCharging(), server)
        port = server.add_insecure_port(listen)
        if port == 0:
            print(f"noop_charging: cannot listen on {listen}", file=sys.stderr)
            return 1
        await server.start()
        print(f"listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(1)
        return 0

    return asyncio.run(go())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0",
                    help="HOST:PORT (port 0: a free one; with --workers > 1 a real port)")
    ap.add_argument("--threads", type=int, default=THREADS, help="sync server threads (16)")
    ap.add_argument("--workers", type=int, default=1, help="serving processes (1)")
    ap.add_argument("--aio", action="store_true", help="a grpc.aio server")
    args = ap.parse_args(argv)
    if not args.listen.startswith(("127.", "[::1]", "localhost:")):
        ap.error("--listen: loopback addresses only")
    if args.workers <= 1:
        return serve_aio(args.listen) if args.aio else serve_sync(args.listen, args.threads)
    if args.listen.endswith(":0"):
        ap.error("--listen: --workers > 1 needs a real port")
    argv_child = [sys.executable, __file__, "--listen", args.listen, "--threads",
                  str(args.threads)] + (["--aio"] if args.aio else [])
    return run_processes(argv_child, args.workers, args.listen)


def run_processes(argv_child: list[str], workers: int, listen: str) -> int:
    """`workers` copies of `argv_child` (each prints `listening on ...` when it serves, on
    the same port), then wait for SIGTERM or SIGINT (or one of them dying) and stop them."""
    children = [subprocess.Popen(argv_child, stdout=subprocess.PIPE, text=True,
                                 preexec_fn=_die_with_parent) for _ in range(workers)]
    for child in children:
        if not child.stdout.readline().startswith("listening on"):
            for c in children:
                c.terminate()
            return 1
    print(f"listening on {listen} ({workers} processes)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if any(c.poll() is not None for c in children):
            print("a worker died", file=sys.stderr)
            break
    for c in children:
        c.terminate()
    for c in children:
        c.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
