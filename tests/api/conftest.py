"""A real uvicorn server on loopback over a real DuckDB file, driven by httpx.

One server (and gateway) serves the whole API test session; every test makes
its own tenant, so tests stay independent without paying for a server each.
The server runs in a background thread on its own event loop; the tests
create tenants (an operator action, not part of /v1) on the gateway directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import OPERATOR_SECRET, LiveServer, LogCapture, Tenant, fast_providers, new_tenant

from vbgateway import Gateway, RetryPolicy
from vbgateway.api import create_app


@pytest.fixture(scope="session")
def api_logs() -> Iterator[LogCapture]:
    """Every line the API logs (access and errors, with tracebacks) during the session."""
    capture = LogCapture()
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("vbgateway.api")
    old_level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    yield capture
    logger.removeHandler(capture)
    logger.setLevel(old_level)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway.open(tmp_path_factory.mktemp("api") / "api.duckdb", providers=fast_providers())
    yield gw
    gw.close()


@pytest.fixture(scope="session")
def server(gateway: Gateway, api_logs: LogCapture) -> Iterator[LiveServer]:
    with LiveServer(create_app(gateway)) as live:
        yield live


@pytest.fixture(scope="session")
def failing_server(tmp_path_factory: pytest.TempPathFactory, api_logs: LogCapture) -> Iterator[tuple[LiveServer, str]]:
    """A server whose vendors always fail (no backoff), with one tenant; yields (server, key)."""
    gw = Gateway.open(tmp_path_factory.mktemp("failing") / "failing.duckdb", providers=fast_providers(failing=True),
                      retry=RetryPolicy(attempts=2, backoff_base_s=0.0, backoff_cap_s=0.0))
    _, key = gw.create_tenant("Always Failing Inc")
    with LiveServer(create_app(gw)) as live:
        yield live, key
    gw.close()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


@pytest.fixture
def acme(gateway: Gateway, http: httpx.Client) -> Tenant:
    return new_tenant(gateway, http, "Acme")


@pytest.fixture
def globex(gateway: Gateway, http: httpx.Client) -> Tenant:
    return new_tenant(gateway, http, "Globex")


@pytest.fixture
def operator_server(tmp_path: Path) -> Iterator[tuple[Gateway, httpx.Client]]:
    """A gateway of its own served with the operator routes (``OPERATOR_SECRET``), and a client of it."""
    gateway = Gateway.open(tmp_path / "operator.duckdb", providers=fast_providers())
    try:
        with LiveServer(create_app(gateway, operator_secret=OPERATOR_SECRET)) as live, \
                httpx.Client(base_url=live.url, timeout=20) as http:
            yield gateway, http
    finally:
        gateway.close()
