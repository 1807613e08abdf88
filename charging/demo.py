"""`ccs demo` (what `make demo` runs): the node on embedded defaults, end to end, then a clean stop.

Starts a real redis-server (AOF on) in a temporary data folder, starts the gRPC node on a free
port, checks health over gRPC, and stops both, leaving no process behind.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from accounts.embedded import EmbeddedRedis
from charging.server import build_node, check_health


def run_demo(args) -> int:
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="ccs-demo-"))
    started = time.monotonic()
    redis_server = EmbeddedRedis(data_dir / "redis").start()
    print(f"[demo] redis-server {redis_server.binary} on {redis_server.url} (AOF, fsync always)")
    node = None
    try:
        node = build_node("127.0.0.1:0")
        target = f"127.0.0.1:{node.port}"
        print(f"[demo] ccs node listening on {target}")
        status = check_health(target)
        print(f"[demo] health over gRPC: {status}")
        if status != "SERVING":
            return 1
    finally:
        if node is not None:
            node.stop(1.0)
        redis_server.stop()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"[demo] node and redis-server stopped; done in {time.monotonic() - started:.1f}s")
    return 0
