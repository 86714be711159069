"""Shared fixtures: a seeded gateway on a virtual clock over a real DuckDB file."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from vbgateway import Gateway, VirtualClock

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return VirtualClock(start=START)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "gw.duckdb"


@pytest.fixture
def gw(db_path, clock):
    gateway = Gateway.open(db_path, clock=clock, seed=1234)
    yield gateway
    gateway.close()


@pytest.fixture
def acme(gw):
    _, key = gw.create_tenant("Acme Corporation")
    return gw.connect(key)


@pytest.fixture
def globex(gw):
    _, key = gw.create_tenant("Globex")
    return gw.connect(key)


@pytest.fixture
def agent(acme):
    return acme.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                             system_prompt="You are helpful.", enabled_tools=["InvoiceLookup"])


@pytest.fixture
def run(clock):
    """Run a coroutine on the virtual clock: ``run(acme.send_message(...))``."""
    return lambda coro: clock.run(coro)


@pytest.fixture
def row_counts(gw):
    """A function returning {table: row count} for every table, to check that nothing was written."""
    def counts() -> dict[str, int]:
        tables = gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
        return {t: int(gw.sql(f'SELECT count(*) AS n FROM "{t}"')["n"][0]) for t in sorted(tables["table_name"])}
    return counts
