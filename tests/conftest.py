"""Shared fixtures: a private real redis-server per test session, PostgreSQL, the example catalog.

Never a mock: every test that touches Redis or a database talks to a real server.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from accounts.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CATALOG = ROOT / "docs" / "examples" / "catalog.yaml"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    # a SIGTERM to the test run must still stop the server (atexit does not run on signals)
    previous = signal.getsignal(signal.SIGTERM)

    def _on_term(signum, frame):
        server.stop()
        if callable(previous):
            previous(signum, frame)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _on_term)
    yield server
    signal.signal(signal.SIGTERM, previous)
    server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_server):
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def http_port():
    """A real tiny HTTP server on a loopback port: what a wrong `--redis` port may speak."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


ADMIN_CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  DE_MOBILE: ["49151", "49170"]
  DE_FIXED: ["49"]
time_bands:
  any: {}
tariffs:
  std:
    voice:
      - {price: "0.0600", per: 60, increments: [60, 1]}
    sms:
      - {price: "0.0900"}
offers:
  basic:
    tariff: std
    recurring: "9.99"
    allowances:
      - {name: voice_600, service: voice, units: 600}
  sms_pack:
    allowances:
      - {name: sms_100, service: sms, units: 100}
"""


@pytest.fixture(scope="session")
def admin_catalog_path(tmp_path_factory) -> Path:
    """A small catalog for the administration tests (CLI and gRPC): one tariff, two offers."""
    path = tmp_path_factory.mktemp("admin-catalog") / "catalog.yaml"
    path.write_text(ADMIN_CATALOG)
    return path


@pytest.fixture(scope="session")
def catalog():
    from rating.catalog import load_catalog

    return load_catalog(EXAMPLE_CATALOG)


def _pg_base_url() -> str:
    return os.environ.get("CCS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_admin_url():
    """The PostgreSQL server's URL; tests marked `postgres` are skipped where none answers."""
    from sqlalchemy import create_engine, text

    url = _pg_base_url()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not here"
        pytest.skip(f"PostgreSQL not reachable at {url}: {exc}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_admin_url):
    """A fresh, empty database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"ccs_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()) or "pg_admin_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


