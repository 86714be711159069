"""Shared fixtures: a seeded gateway on a virtual clock over a real DuckDB file.

The tenant clients (``acme``, ``globex``, ``tenant_client``) come in two kinds:
the embedded ``TenantClient`` and the HTTP client of ``vbgateway.connect``,
talking to a real uvicorn server on loopback that serves this test's
gateway. A test module marked ``tenant_clients`` runs each of its tests
against both (unless a test is marked ``embedded_only``: store internals), so
the two clients cannot drift apart. Both kinds share the gateway, its clock
and its database file, so a test inspects the same rows either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from live_server import GatewayHost
from upstream_support import UPSTREAM_KEY

from vbgateway import Gateway, VirtualClock
from vbgateway.testing.upstream import Upstream

START = datetime(2026, 1, 1, tzinfo=UTC)
CLIENT_KINDS = ("embedded", "http")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if ("client_kind" in metafunc.fixturenames and definition.get_closest_marker("tenant_clients")
            and not definition.get_closest_marker("embedded_only")):
        metafunc.parametrize("client_kind", CLIENT_KINDS, indirect=True)


@pytest.fixture
def client_kind(request) -> str:
    """``embedded`` or ``http``: which tenant client this test runs against."""
    return getattr(request, "param", "embedded")


@pytest.fixture(scope="session")
def gateway_host():
    """One live uvicorn server for the session; each test's gateways are mounted on it as they are needed."""
    with GatewayHost() as host:
        yield host


@pytest.fixture
def http_loop():
    """The event loop on which the HTTP client's coroutines run in this test (a real one: network I/O)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def tenant_client(client_kind, request):
    """``tenant_client(gateway, api_key)``: that key's tenant client, of this test's kind."""
    if client_kind == "embedded":
        yield lambda gateway, api_key: gateway.connect(api_key)
        return
    import vbgateway
    from vbgateway.api import create_app

    host, loop = request.getfixturevalue("gateway_host"), request.getfixturevalue("http_loop")
    urls: dict[int, str] = {}
    clients = []

    def connect(gateway, api_key):
        if id(gateway) not in urls:
            urls[id(gateway)] = host.mount(create_app(gateway))
        clients.append(vbgateway.connect(urls[id(gateway)], api_key))
        return clients[-1]

    yield connect
    for client in clients:
        loop.run_until_complete(client.aclose())
        client.close()
    for url in urls.values():
        host.unmount(url)


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
def acme(gw, tenant_client):
    _, key = gw.create_tenant("Acme Corporation")
    return tenant_client(gw, key)


@pytest.fixture
def globex(gw, tenant_client):
    _, key = gw.create_tenant("Globex")
    return tenant_client(gw, key)


@pytest.fixture
def agent(acme):
    return acme.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                             system_prompt="You are helpful.", enabled_tools=["InvoiceLookup"])


@pytest.fixture
def runner(client_kind, request):
    """``runner(clock)``: how this test runs the tenant client's coroutines for a gateway on ``clock``.

    On that virtual clock's loop for the embedded client; on a real event loop
    for the HTTP one (network I/O takes real time; the server moves the
    virtual clock as it works).
    """
    if client_kind == "embedded":
        return lambda clock: clock.run
    loop = request.getfixturevalue("http_loop")
    return lambda clock: loop.run_until_complete


@pytest.fixture
def run(clock, runner):
    """Run a coroutine of the tenant client: ``run(acme.send_message(...))``."""
    return runner(clock)


@pytest.fixture
def as_served(client_kind):
    """A timestamp as this test's tenant client returns it: the wire carries milliseconds."""
    if client_kind == "embedded":
        return lambda moment: moment
    return lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@pytest.fixture
def row_counts(gw):
    """A function returning {table: row count} for every table, to check that nothing was written."""
    def counts() -> dict[str, int]:
        tables = gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
        return {t: int(gw.sql(f'SELECT count(*) AS n FROM "{t}"')["n"][0]) for t in sorted(tables["table_name"])}
    return counts


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """The loopback OpenAI-compatible upstream (``UPSTREAM_KEY``), one per test module."""
    with Upstream(api_key=UPSTREAM_KEY) as server:
        yield server
