"""A prototype of the asyncio server model: `ccs.v1.Charging/Charge` on a `grpc.aio` server,
the credit-control script through `redis.asyncio`, one event loop per process.

Not `ccs serve`: Charge only (no Accounts, Billing, WatchNotifications, health, sweeper or
metrics interceptor), for `benchmarks/charging.py --models aio-w1` to measure against an aio
no-op server. It runs the node's own code: `to_request` / `to_response` of the servicer and
the engine's `Charger.settle_steps` (the sync node's INITIAL, UPDATE, TERMINATE and direct
debit, I/O left out), whose one script call per attempt it awaits on redis.asyncio. What the
warm path does not cover (a subscriber, account or plan not cached yet; CHECK_BALANCE,
PRICE_ENQUIRY and REFUND) runs on the sync engine in a thread, as `ccs serve` would.

    .venv/bin/python benchmarks/charging_aio.py --catalog FILE --redis URL \\
        --listen 127.0.0.1:PORT [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accounts.errors import AccountError, UnknownAccount  # noqa: E402
from accounts.online import SESSION_TTL_S, queue_index  # noqa: E402
from charging import charge as C  # noqa: E402
from charging.servicer import BadRequest, to_request, to_response  # noqa: E402
from proto.ccs.v1 import charging_pb2_grpc  # noqa: E402

OPTIONS = (("grpc.so_reuseport", 1),)
_COLD = ("CHECK_BALANCE", "PRICE_ENQUIRY", "REFUND")  # events the sync engine answers


class AioCharging(charging_pb2_grpc.ChargingServicer):
    def __init__(self, charger: C.Charger, notifier, aredis, pool: ThreadPoolExecutor):
        self.charger = charger
        self.notifier = notifier
        self.ar = aredis
        self.pool = pool
        self.decimals = charger.compiled.decimals

    async def Charge(self, request, context):
        try:
            req = to_request(request, self.charger.catalog)
        except BadRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            ans = await self.charge(req)
        except C.Contention as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except AccountError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.notifier is not None:  # publishes (a sync call) only when a threshold is
            self.notifier.after_charge(req, ans, self.charger._now())  # crossed: rare
        return to_response(request, ans, self.decimals)

    async def _sync(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def charge(self, req: C.Request) -> C.Answer:
        c = self.charger
        account = c._subscribers.get(req.subscriber)
        warm = account is not None and account in c.store._meta and account in c._subs
        if not warm or (req.kind == "EVENT" and req.action in _COLD):
            return await self._sync(c.charge, req)
        steps = c.settle_steps(req, account)
        try:
            call = next(steps)
            while True:
                call = steps.send(await self.online_call(*call))
        except StopIteration as done:
            return done.value
        except UnknownAccount:  # a cached subscriber that changed: the sync engine resolves
            c._subscribers.pop(req.subscriber, None)
            return await self._sync(c.charge, req)

    async def online_call(self, account, sid, number, params, now, index) -> dict:
        """OnlineStore.call on redis.asyncio: the script and the expiry index in one
        pipeline; a stale claim read again and the call retried once."""
        online = self.charger.online
        params = dict(params, ttl=str(SESSION_TTL_S), done_ttl=str(SESSION_TTL_S))
        for retry in (False, True):
            cached = account in online.store._meta
            if not cached:
                await self._sync(online.store._claim, account, "subscriber")
            script, keys, argv = online.prepare("online", account, sid, number, params, now)
            reply = await self._script(script, keys, argv, account, index)
            ans = online.answer(account, reply, final=retry or not cached)
            if ans is not None:
                return ans
        raise AssertionError("unreachable")  # pragma: no cover

    async def _script(self, script, keys, argv, account, index, loaded=False):
        from redis.exceptions import NoScriptError

        pipe = self.ar.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *argv)
        queue_index(pipe, account, index)
        out = await pipe.execute(raise_on_error=False)
        if isinstance(out[0], NoScriptError) and not loaded:
            await self.ar.script_load(script.source)
            return await self._script(script, keys, argv, account, index, loaded=True)
        for x in out:
            if isinstance(x, Exception):
                raise x
        return out[0]


async def serve(args) -> int:
    import redis
    import redis.asyncio as aioredis

    from accounts.store import AccountStore
    from charging.cli import _charging
    from rating.catalog import load_catalog

    catalog = load_catalog(args.catalog)
    store = AccountStore(redis.Redis.from_url(args.redis), catalog)
    charger, notifier = _charging(store, catalog, argparse.Namespace(validity=300,
                                                                     low_balance=None))
    ar = aioredis.Redis.from_url(args.redis, max_connections=256)
    pool = ThreadPoolExecutor(max_workers=4)
    server = grpc.aio.server(options=OPTIONS)
    charging_pb2_grpc.add_ChargingServicer_to_server(AioCharging(charger, notifier, ar, pool),
                                                     server)
    port = server.add_insecure_port(args.listen)
    if port == 0:
        print(f"charging_aio: cannot listen on {args.listen}", file=sys.stderr)
        return 1
    await server.start()
    print(f"listening on {args.listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await ar.aclose()
    pool.shutdown(wait=False)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--redis", required=True, help="Redis URL")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--workers", type=int, default=1, help="processes on the port (1)")
    args = ap.parse_args(argv)
    if args.workers > 1:
        from noop_charging import run_processes

        return run_processes([sys.executable, __file__, "--catalog", args.catalog, "--redis",
                              args.redis, "--listen", args.listen], args.workers, args.listen)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
