"""Small scenarios (a few hundred to a few thousand messages) so the suite stays fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vbgateway.simulation import Scenario

START = "2026-03-03T00:00:00Z"


def small_scenario(**changes: Any) -> Scenario:
    """Two tenants, five busy hours, one 429 blip: ~1,000 messages in about a second."""
    data: dict[str, Any] = {
        "name": "small",
        "start": START,
        "duration": "5h",
        "seed": 5,
        "tenants": 2,
        "traffic": {"sessions_per_hour": 40, "daily_profile": {"hourly": [1.0] * 24},
                    "think_time_s": {"mean": 8, "min": 1, "max": 60, "shape": "exponential"},
                    "voice_share": 0.1, "client_retry_share": 0.05},
    }
    data.update(changes)
    return Scenario.parse(data)


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return small_scenario()


@pytest.fixture(scope="session")
def make_scenario() -> Callable[..., Scenario]:
    """``small_scenario`` for tests that change it (``from conftest import`` picks whichever conftest came first)."""
    return small_scenario


@pytest.fixture(scope="session")
def outage_scenario() -> Scenario:
    return small_scenario(
        name="outage", agents=[{"name": "Support", "primary": "vendorA", "fallback": "vendorB"}],
        incidents=[{"vendor": "vendorA", "kind": "outage", "start": "2h", "end": "3h30m", "label": "vendorA down"}])
