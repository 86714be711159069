"""The governance sections of the reports: a tenant's budget on its invoice, refusals and breaker time on usage.

One database holds a tenant that ran past its budget (alerts crossed, then
refused), a tenant over its rate limit, and vendorA down long enough for its
circuit to open for exactly one cooldown; the notebooks run against it with
papermill, and against the shared fixture database where none of that exists.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pytest

from vbgateway import BreakerPolicy, Gateway, RetryPolicy, VirtualClock
from vbgateway.cli import main
from vbgateway.errors import BudgetExceededError, RateLimitExceededError
from vbgateway.providers import VendorA, VendorB
from vbgateway.reports import invoice_data, usage_data
from vbgateway.reports.governance_view import percent

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
STEADY = {"latency_ms": (100, 100), "spike_rate": 0.0, "rate_limit_rate": 0.0}
COOLDOWN_S = 60


@pytest.fixture(scope="module")
def governed(tmp_path_factory):
    path = tmp_path_factory.mktemp("gov") / "gov.duckdb"
    clock = VirtualClock(start=START)
    a, b = VendorA(seed=1, failure_rate=1.0, **STEADY), VendorB(seed=2, failure_rate=0.0, **STEADY)
    with Gateway.open(path, clock=clock, providers={"vendorA": a, "vendorB": b}, retry=RetryPolicy(attempts=1),
                      breaker=BreakerPolicy(failure_threshold=2, cooldown_s=COOLDOWN_S), seed=4) as gw:
        spender, _ = gw.create_tenant("Acme Budget")
        limited, _ = gw.create_tenant("Globex Limited")
        spend, rated = gw.as_tenant(spender.id), gw.as_tenant(limited.id)
        agent = spend.create_agent(name="A", primary_provider="vendorA", fallback_provider="vendorB",
                                   system_prompt="You are helpful.")
        session = spend.create_session(agent.id)
        for _ in range(4):  # vendorA fails twice: its circuit opens, then the rest go straight to vendorB
            clock.run(spend.send_message(session.id, "Hello there"))
        clock.advance(COOLDOWN_S + 1)
        a.profile = b.profile
        for _ in range(2):  # the probe closes the circuit again
            clock.run(spend.send_message(session.id, "Hello there"))
        spent = Decimal(gw.sql("SELECT sum(cost_usd) AS c FROM usage_events").c[0])
        limit = (spent / Decimal("0.9")).quantize(Decimal("1E-10"))
        gw.set_budget(spender.id, limit, alert_at=(Decimal("0.5"), Decimal("0.8")))
        budget_refused = 0
        for _ in range(30):  # on past the limit until the budget refuses
            try:
                clock.run(spend.send_message(session.id, "Hello there"))
            except BudgetExceededError:
                budget_refused += 1
        rated_agent = rated.create_agent(name="R", primary_provider="vendorB", system_prompt="You are brief.")
        rated_session = rated.create_session(rated_agent.id)
        gw.set_rate_limit(limited.id, requests_per_minute=1)
        rate_refused = 0
        for _ in range(4):
            try:
                clock.run(rated.send_message(rated_session.id, "Hi"))
            except RateLimitExceededError:
                rate_refused += 1
        assert budget_refused > 0 and rate_refused == 3
    return path, spender.id, limited.id, budget_refused, rate_refused


@pytest.fixture(scope="module")
def pages(governed, fixture_db, tmp_path_factory):
    path, spender, _, _, _ = governed
    out = tmp_path_factory.mktemp("gov-out")
    codes = [main(["report", "invoice", "--db", str(path), "--tenant", spender, "--month", "2026-01",
                   "--out", str(out)]),
             main(["report", "usage", "--db", str(path), "--tenant", "all", "--from", "2026-01-01",
                   "--to", "2026-01-31", "--out", str(out)]),
             main(["report", "usage", "--db", str(fixture_db.path), "--tenant", fixture_db.live, "--from",
                   "2026-01-01", "--to", "2026-01-31", "--out", str(out)]),
             main(["report", "invoice", "--db", str(fixture_db.path), "--tenant", fixture_db.live, "--month",
                   "2026-01", "--out", str(out)])]
    assert codes == [0, 0, 0, 0]
    read = {
        "invoice": (out / "invoice" / spender / "2026-01" / "invoice.html").read_text(),
        "usage": (out / "usage" / "all" / "2026-01-01_2026-01-31" / "usage_report.html").read_text(),
        "plain_usage": (out / "usage" / fixture_db.live / "2026-01-01_2026-01-31" / "usage_report.html").read_text(),
        "plain_invoice": (out / "invoice" / fixture_db.live / "2026-01" / "invoice.html").read_text(),
    }
    return out, read


def test_the_invoice_shows_the_budget_its_peak_use_and_the_alerts_crossed(governed, pages):
    path, spender, _, _, _ = governed
    out, read = pages
    with Gateway.open_reader(path) as gw:
        month_spend = Decimal(gw.sql("SELECT sum(cost_usd) AS c FROM usage_events WHERE tenant_id = ?",
                                     [spender]).c[0])
        limit = Decimal(gw.sql("SELECT monthly_usd FROM budgets WHERE tenant_id = ?", [spender]).monthly_usd[0])
        alerts = gw.sql("SELECT threshold FROM budget_alerts WHERE tenant_id = ? ORDER BY threshold", [spender])
        data = invoice_data(gw, spender, "2026-01")
    page = read["invoice"]
    budget = data.tables["budget"].iloc[0]

    assert (budget.monthly_usd, budget.spent_usd, budget.peak_share) == (limit, month_spend, month_spend / limit)
    assert percent(month_spend / limit) == "90.0%"  # the limit was set at 90% spent; every later send was refused
    assert "Monthly budget</th>" in page and "Peak use</th>" in page and percent(month_spend / limit) in page
    assert [percent(t) for t in alerts.threshold] == ["50.0%", "80.0%"] and "Cumulative spend" in page and "<svg" in page
    assert all(f"<td>{percent(t)}</td>" in page for t in alerts.threshold)
    assert "<td>50%, 80%</td>" in page  # the thresholds of the budget
    csv = pd.read_csv(out / "invoice" / spender / "2026-01" / "data" / "budget.csv", dtype=str)
    assert Decimal(csv.spent_usd[0]) == month_spend and Decimal(csv.monthly_usd[0]) == limit
    curve = pd.read_csv(out / "invoice" / spender / "2026-01" / "data" / "budget_curve.csv", dtype=str)
    assert len(curve) == 31 and Decimal(curve.cumulative_usd.iloc[-1]) == month_spend


def test_the_usage_report_counts_refusals_per_tenant_and_day(governed, pages):
    _, spender, limited, budget_refused, rate_refused = governed
    out, read = pages
    data_dir = out / "usage" / "all" / "2026-01-01_2026-01-31" / "data"
    per_tenant = pd.read_csv(data_dir / "refusals_by_tenant.csv").set_index("tenant_id")
    daily = pd.read_csv(data_dir / "refusals_daily.csv")

    assert per_tenant.loc[spender].tolist() == [0, budget_refused]
    assert per_tenant.loc[limited].tolist() == [rate_refused, 0]
    assert list(daily.day) == ["2026-01-05", "2026-01-05"]
    page = read["usage"]
    assert "Refusals per tenant" in page and "Rate-limit refusals" in page and page.count("<svg") >= 8


def test_the_usage_report_shows_breaker_open_time_per_provider(pages):
    out, read = pages
    table = pd.read_csv(out / "usage" / "all" / "2026-01-01_2026-01-31" / "data" / "breaker_open_time.csv")
    row = table.set_index("provider").loc["vendorA"]

    assert list(table.provider) == ["vendorA"] and row.opened == 1 and row.open_s == COOLDOWN_S
    assert "Breaker open time per provider" in read["usage"]


def test_a_tenant_of_one_report_sees_only_its_own_refusals(governed):
    path, _, limited, _, rate_refused = governed
    with Gateway.open_reader(path) as gw:
        data = usage_data(gw, limited, "2026-01-01", "2026-01-31")
    assert data.tables["refusals_by_tenant"].to_dict("records") == [
        {"tenant_id": limited, "rate_limit_refusals": rate_refused, "budget_refusals": 0}]


def test_without_budgets_refusals_or_breakers_the_sections_say_none(pages):
    _, read = pages

    assert "Monthly budget: none." in read["plain_invoice"]
    assert "Rate-limit and budget refusals: none." in read["plain_usage"]
    assert "Breaker open time: none." in read["plain_usage"]
    assert re.search(r"<h2[^>]*>Budget</h2>", read["plain_invoice"])
