"""One fixture database per module: real gateway traffic plus synthetic volume with known totals.

Kernel starts are slow, so the papermill tests share one database and run
only a few notebooks; everything else reads it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from vbgateway import Gateway, VirtualClock
from vbgateway.providers import VendorA, VendorB
from vbgateway.synthetic import SyntheticSpec, generate


@dataclass
class Fixture:
    path: Path
    live: str  # a tenant with real gateway traffic on 2026-01-05
    bulk: str  # a tenant with synthetic traffic through 2025
    empty: str  # a tenant that never sent anything
    bulk_cost: Decimal
    bulk_events: int
    fallbacks: int  # replies of the live tenant served by the fallback provider
    live_replies: int


def build(path: Path) -> Fixture:
    clock = VirtualClock(start=datetime(2026, 1, 5, 9, tzinfo=UTC))
    providers = {"vendorA": VendorA(failure_rate=0.6, seed=11), "vendorB": VendorB(seed=12)}
    with Gateway.open(path, clock=clock, providers=providers, seed=5) as gw:
        live, _ = gw.create_tenant("Acme Live")
        bulk, _ = gw.create_tenant("Globex Bulk")
        empty, _ = gw.create_tenant("Initech Empty")
        client = gw.as_tenant(live.id)
        agent = client.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt="You are helpful.")
        session = client.create_session(agent.id)

        async def chat() -> list:
            replies = []
            for i in range(40):
                replies.append(await client.send_message(session.id, f"Question number {i}?"))
                clock.advance(60)
            return replies

        replies = clock.run(chat())
        fallbacks = sum(r.metadata.fallback_used for r in replies)
        bulk_client = gw.as_tenant(bulk.id)
        agents = [bulk_client.create_agent(name=f"Bulk {n}", primary_provider="vendorA", fallback_provider="vendorB",
                                           system_prompt="You are synthetic.").id for n in range(2)]
        spec = SyntheticSpec(events=30_000, tenants=1, agents_per_tenant=2, start=date(2025, 1, 1),
                             end=date(2025, 12, 31), seed=21)
        result = generate(gw, spec, [bulk.id], [agents])
    return Fixture(path, live.id, bulk.id, empty.id, result.cost_usd, result.usage_rows, fallbacks, len(replies))


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return build(tmp_path_factory.mktemp("reports") / "fixture.duckdb")


@pytest.fixture(scope="module")
def reader(fixture_db: Fixture):
    gw = Gateway.open_reader(fixture_db.path)
    yield gw
    gw.close()
