"""Fixtures of the account store tests: a settable clock, a small catalog, a store on the shared
redis-server, and the ledger's running balance.

A module picks its catalog by overriding `accounts_catalog` (with `make_catalog`); `store` and
`open_store` then use it. Values the tests assert on (EUR, T0, ...) stay in the test modules.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from accounts.store import AccountStore
from rating.model import Catalog, Rounding, Service

# the clocks' start: 10 Nov 2026 12:00 UTC, cycle 2026-11 of a bill cycle day 1
_START = int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp())
_SERVICES = {"voice": ("seconds", 300), "sms": ("events", 1)}


class Clock:
    """The store's clock: `clock.t = ...` moves time for the store that holds it."""

    def __init__(self, t: int = _START):
        self.t = t

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def make_catalog():
    """make_catalog(offers=None, services=None) -> an EUR, Europe/Berlin catalog with voice
    (seconds, quota 300) and sms (events), plus `services` {name: (unit, quota)}, no tariffs."""

    def build(offers=None, services=None) -> Catalog:
        units = {**_SERVICES, **(services or {})}
        svc = {n: Service(n, u, q) for n, (u, q) in units.items()}
        return Catalog("EUR", "Europe/Berlin", Rounding(), {}, (), {}, {}, svc, offers=offers or {})

    return build


@pytest.fixture
def accounts_catalog(make_catalog):
    """The catalog of `store`: no offers unless a test module overrides this fixture."""
    return make_catalog()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(redis_client, clock, accounts_catalog):
    return AccountStore(redis_client, accounts_catalog, clock=clock, grace_s=30)


@pytest.fixture
def open_store(accounts_catalog):
    """open_store(client) -> a store over another Redis client, with a clock of its own."""

    def open_(client) -> AccountStore:
        return AccountStore(client, accounts_catalog, clock=Clock())

    return open_


@pytest.fixture
def balances_along_ledger():
    """balances_along_ledger(store, account_id) -> the main balance after each ledger entry."""

    def replay(store, account_id) -> list[int]:
        balance, out = 0, []
        for e in store.ledger(account_id, count=10_000):
            balance += e.get("balance", 0)
            out.append(balance)
        return out

    return replay
