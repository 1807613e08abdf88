"""The `ccs` command line: the root parser, `ccs version`, `ccs serve` and `ccs demo`.

This is the composition root: each package contributes its own subcommands through a
`register(subparsers)` function in its `cli` module; nothing else here knows their internals.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import logging
import os
import sys
import threading

# command -> the module that registers it; only the one asked for is imported (a `ccs rate`
# need not pay for importing redis and grpc)
COMMAND_MODULES = {"catalog": "rating.cli", "rate": "billing.cli", "accounts": "accounts.cli",
                   "bill": "billing.bill_cli", "gen": "charging.gen", "replay": "charging.replay"}


def ccs_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ccs")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def _cmd_version(args) -> int:
    print(f"ccs {ccs_version()}")
    return 0


def _cmd_serve(args) -> int:
    import redis

    from accounts.embedded import RedisUrlError, connect
    from accounts.errors import AccountError
    from accounts.validation import check_grace
    from charging.server import ListenError, build_node, wait_for_signal
    from charging.tls import TlsError, load_tls

    try:
        grace_s = check_grace(args.reservation_grace, "--reservation-grace")
        tls = load_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    except (AccountError, TlsError) as exc:
        print(f"ccs serve: {exc}", file=sys.stderr)
        return 2
    catalog = store = sweeper = charger = notifier = engine = None
    if args.catalog:  # before Redis: a refused catalog must not start a server
        from billing.db import DatabaseError, open_database
        from rating.catalog import CatalogError, load_catalog

        try:
            catalog = load_catalog(args.catalog)
        except CatalogError as exc:
            print(f"ccs serve: catalog refused:\n{exc}", file=sys.stderr)
            return 2
        try:  # the bill run's database, for the Billing service
            engine = open_database(args.db, args.data_dir)
        except DatabaseError as exc:
            print(f"ccs serve: {exc}", file=sys.stderr)
            return 2
    try:
        client, embedded = connect(args.redis, args.data_dir)
    except RedisUrlError as exc:
        print(f"ccs serve: {exc}", file=sys.stderr)
        return 2
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"ccs serve: Redis unavailable: {exc}", file=sys.stderr)
        return 1
    worker = args.worker_index  # None: not a worker of a supervisor
    tag = "" if worker is None else f"[worker {worker}] "
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s {tag}%(name)s %(message)s")
    if args.workers > 1 and worker is None:
        client.close()
        try:
            return _supervise(args, _worker_redis_url(args, client), embedded)
        finally:
            if embedded:
                embedded.stop()
    stop_sweeping = threading.Event()
    sweeper_stats = None
    try:
        if catalog is not None:
            from accounts.store import AccountStore
            from accounts.sweeper import SweeperStats

            store = AccountStore(client, catalog, grace_s=grace_s)
            charger, notifier = _charging(store, catalog, args)
            sweeper_stats = SweeperStats()
        where = embedded.url if embedded else (args.redis or os.environ.get("CCS_REDIS_URL") or "shared embedded redis")
        try:
            node = build_node(args.listen, store=store, catalog=catalog, charger=charger,
                              notifier=notifier, admin_listen=args.admin_listen, tls=tls,
                              metrics_listen=args.metrics, sweeper_stats=sweeper_stats,
                              max_workers=args.threads, billing_engine=engine)
        except ListenError as exc:
            print(f"ccs serve: --{exc.role}: {exc}", file=sys.stderr)
            return 1
        if worker is None:
            print(f"ccs node listening on {_listening(args, node)}; redis {where}", flush=True)
        else:
            from charging.server import announce_worker

            announce_worker(worker, node)
        if store is not None and worker in (None, 0):  # one sweeper per supervisor
            sweeper = _start_sweeper(store, stop_sweeping, sweeper_stats)
        wait_for_signal(node, grace=args.grace)
    finally:
        stop_sweeping.set()
        if sweeper is not None:
            sweeper.join(10)
        if embedded:
            embedded.stop()
        if engine is not None:
            engine.dispose()
    return 0


def _worker_redis_url(args, client) -> str | None:
    """The Redis the workers use: --redis, else $CCS_REDIS_URL (inherited: None), else the
    embedded server the supervisor started or found."""
    if args.redis:
        return args.redis
    if os.environ.get("CCS_REDIS_URL"):
        return None
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw['port']}/0"


def _supervise(args, redis_url: str | None, embedded) -> int:
    """`ccs serve --workers N`: N worker processes of this same command on the same ports
    (charging.server.Supervisor), their /metrics merged on --metrics."""
    from types import SimpleNamespace

    from charging.interceptors import serve_merged_metrics
    from charging.server import ListenError, Supervisor

    def host(address: str) -> str:
        return address.rsplit(":", 1)[0]

    base = [sys.executable, "-m", "charging.cli", *args.argv]

    def command(index: int, ports: dict | None) -> list[str]:
        argv = base + ["--worker-index", str(index)]
        if redis_url:
            argv += ["--redis", redis_url]
        if args.metrics:
            argv += ["--metrics", "127.0.0.1:0"]  # private: the supervisor merges them
        if ports is not None:
            argv += ["--listen", f"{host(args.listen)}:{ports['port']}"]
            if args.admin_listen:
                argv += ["--admin-listen", f"{host(args.admin_listen)}:{ports['admin_port']}"]
        return argv

    sup = Supervisor(args.workers, command, grace=args.grace)
    sup.handle_signals()
    metrics_http = metrics_port = None
    if args.metrics:
        try:
            metrics_http, metrics_port = serve_merged_metrics(args.metrics, sup.metrics_ports)
        except (OSError, ValueError) as exc:
            err = ListenError("metrics", args.metrics, str(exc))
            print(f"ccs serve: --metrics: {err}", file=sys.stderr)
            return 1
    try:
        code = sup.start()
        if code:
            return code
        first = sup.ready[0]
        shown = SimpleNamespace(port=first["port"], admin_port=first["admin_port"],
                                metrics_port=metrics_port)
        where = embedded.url if embedded else (redis_url or os.environ.get("CCS_REDIS_URL"))
        print(f"ccs node listening on {_listening(args, shown)}; redis {where}; "
              f"{args.workers} worker processes", flush=True)
        sup.run()
    finally:
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
    return 0


def _charging(store, catalog, args):
    """The credit-control engine and its notifier for `ccs serve`."""
    from charging.charge import Charger
    from charging.notifications import Notifier
    from rating.compiler import compile_catalog

    charger = Charger(store, catalog, compile_catalog(catalog), validity_s=args.validity)
    return charger, Notifier(store.r, args.low_balance)


def _money_arg(text: str) -> int:
    from rating.money import MoneyError, parse_money

    try:
        return parse_money(text, "--low-balance", allow_negative=False)
    except MoneyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _validity_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if not 1 <= v <= 86400:
        raise argparse.ArgumentTypeError(f"--validity: expected 1..86400 seconds, got {text!r}")
    return v


def _listening(args, node) -> str:
    """Where the node listens, for its ready line."""
    def host(address: str) -> str:
        return address.rsplit(":", 1)[0]

    if node.admin_port is None:
        text = f"{host(args.listen)}:{node.port}"
    else:
        text = (f"{host(args.listen)}:{node.port} (Charging); "
                f"admin on {host(args.admin_listen)}:{node.admin_port} (Accounts, Billing)")
    if node.metrics_port is not None:
        text += f"; metrics on http://{host(args.metrics)}:{node.metrics_port}/metrics"
    return text


def _count_arg(name: str, top: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = 0
        if not 1 <= v <= top:
            raise argparse.ArgumentTypeError(f"{name}: expected 1..{top}, got {text!r}")
        return v

    return parse


def _address_arg(text: str) -> str:
    """HOST:PORT (port 0..65535; 0: a free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def _start_sweeper(store, stop: threading.Event, stats=None) -> threading.Thread:
    """Release reservations of silent sessions (validity + grace) while the node runs;
    `stats` (accounts.sweeper.SweeperStats) counts the releases for /metrics."""
    from accounts.sweeper import run_sweeper

    log = logging.getLogger("ccs.sweeper")
    thread = threading.Thread(
        target=run_sweeper, args=(store, stop), name="ccs-sweeper", daemon=True,
        kwargs={"on_error": lambda exc: log.warning("sweep failed: %s", exc), "stats": stats})
    thread.start()
    return thread


def _cmd_demo(args) -> int:
    from charging.demo import run_demo

    return run_demo(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that command's module is imported and registered."""
    parser = argparse.ArgumentParser(
        prog="ccs",
        description="ccs: a convergent real-time charging and billing engine "
                    "(online charging over gRPC, rating, accounts in Redis, bill runs).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("version", help="print the ccs version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("serve", help="run the online charging node (gRPC)")
    p.add_argument("--listen", default=os.environ.get("CCS_LISTEN", "127.0.0.1:50051"),
                   help="HOST:PORT to listen on (port 0: a free one); default %(default)s")
    p.add_argument("--redis", default=None,
                   help="Redis URL; default $CCS_REDIS_URL, else an embedded redis-server")
    p.add_argument("--catalog", default=os.environ.get("CCS_CATALOG"),
                   help="catalog YAML (default $CCS_CATALOG); enables the Accounts service")
    p.add_argument("--data-dir", default=None,
                   help="folder of the embedded redis-server's data (default $CCS_DATA_DIR or .ccs-data)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds to drain on SIGTERM")
    p.add_argument("--reservation-grace", type=int, default=30, metavar="S",
                   help="seconds past a reservation's validity before the sweeper releases it "
                        "(default %(default)s)")
    p.add_argument("--validity", type=_validity_arg, default=300, metavar="S",
                   help="validity_time_s of every grant (default %(default)s)")
    p.add_argument("--low-balance", type=_money_arg, default=None, metavar="AMOUNT",
                   help="raise BALANCE_LOW when a charge takes the available money below it")
    p.add_argument("--db", default=os.environ.get("CCS_DB_URL"), metavar="URL",
                   help="the bill run's database, for the Billing service (default "
                        "$CCS_DB_URL, else <data dir>/ccs.db)")
    p.add_argument("--admin-listen", type=_address_arg, default=None,
                   metavar="HOST:PORT",
                   help="serve Accounts and Billing here only; --listen then serves Charging "
                        "only (default: --listen serves everything)")
    p.add_argument("--metrics", type=_address_arg, default=None,
                   metavar="HOST:PORT", help="serve Prometheus /metrics over HTTP here")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="PEM certificate (chain) of the node: TLS on every gRPC listener")
    p.add_argument("--tls-key", default=None, metavar="FILE",
                   help="PEM private key of --tls-cert (unencrypted)")
    p.add_argument("--tls-client-ca", default=None, metavar="FILE",
                   help="PEM CA certificates: require client certificates they signed "
                        "(mutual TLS)")
    p.add_argument("--workers", type=_count_arg("--workers", 64), default=1, metavar="N",
                   help="node processes sharing the listeners (SO_REUSEPORT; the kernel "
                        "spreads client connections over them); default %(default)s")
    p.add_argument("--threads", type=_count_arg("--threads", 256), default=16, metavar="N",
                   help="gRPC server threads of each process (default %(default)s)")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="run an operator's day on embedded defaults (what `make demo` runs)")
    from charging.demo import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_demo)

    modules = COMMAND_MODULES.values()
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(sub)
    return parser


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell shows for a writer whose reader left


def main(argv: list[str] | None = None) -> int:
    """Run one ccs command. A reader that goes away (`ccs ... | head -1`) ends any command
    quietly with exit 141, whatever it was printing; a standard output that cannot be
    written (closed, a full disk) is one line on stderr and exit 1: never a traceback."""
    try:
        code = _main(argv)
        if sys.stdout is not None:  # None: started with standard output closed
            sys.stdout.flush()  # inside the try: a closed pipe shows up here for buffered output
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if exc.filename is not None or exc.errno not in _STDOUT_ERRNOS:
            raise
        _silence_stdout()
        print(f"ccs: standard output: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return code


_STDOUT_ERRNOS = (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT, errno.EFBIG)


def _silence_stdout() -> None:
    """Point standard output at /dev/null: the interpreter flushes it again at exit."""
    if sys.stdout is None:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    os.close(devnull)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first)
    args = parser.parse_args(argv)
    args.argv = list(argv)  # `ccs serve --workers N` starts its workers with the same
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    code = int(args.func(args) or 0)
    # what the command built is garbage at exit anyway: do not let the collector walk it
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(main())
