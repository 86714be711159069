"""Panels over a real gateway on a virtual clock, and a guard that no callback failed silently.

ipywidgets' CallbackDispatcher logs (rather than raises) exceptions of click
handlers, and our panels catch their own; so every test here fails if a panel
recorded an unexpected exception or ipywidgets logged one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from vbgateway import VirtualClock
from vbgateway.providers import VendorA, VendorB
from vbgateway.widgets import AgentEditor, ChatPanel, LoginPanel, UsageDashboard, open_workbench

START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
HEALTHY = {"failure_rate": 0.0, "rate_limit_rate": 0.0, "spike_rate": 0.0}


@pytest.fixture
def clock():
    return VirtualClock(start=START)


@pytest.fixture
def providers():
    return {"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)}


@pytest.fixture
def bench(tmp_path, clock, providers):
    workbench = open_workbench(tmp_path / "data" / "gw.duckdb", clock=clock, providers=providers, seed=5)
    yield workbench
    workbench.close()


@pytest.fixture
def gw(bench):
    return bench.gateway


@pytest.fixture
def panels():
    """Every panel a test builds; after the test, none may have recorded an unexpected exception."""
    built: list = []
    yield built
    for panel in built:
        assert panel.failures == [], f"{type(panel).__name__} swallowed {panel.failures!r}"


@pytest.fixture(autouse=True)
def no_callback_errors(caplog):
    caplog.set_level(logging.WARNING)
    yield
    swallowed = [r.getMessage() for r in caplog.records if "Exception in" in r.getMessage()]
    assert swallowed == [], swallowed


@pytest.fixture
def login(bench, panels):
    panel = LoginPanel(bench.gateway, api_key=bench.api_key)
    panels.append(panel)
    return panel


@pytest.fixture
def editor(login, panels):
    panel = AgentEditor(login)
    panels.append(panel)
    return panel


@pytest.fixture
def chat(login, panels):
    panel = ChatPanel(login)
    panels.append(panel)
    return panel


@pytest.fixture
def dashboard(login, panels, tmp_path):
    panel = UsageDashboard(login, reports_dir=tmp_path / "reports", monthly_limit_usd=0.002)
    panels.append(panel)
    return panel


@pytest.fixture
def count():
    """``count(gw, table, where)``: rows in a table, to check what the database holds."""
    def rows(gw, table: str, where: str = "TRUE") -> int:
        return int(gw.sql(f"SELECT count(*) AS n FROM {table} WHERE {where}")["n"][0])
    return rows
