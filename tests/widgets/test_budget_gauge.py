"""The usage dashboard's spend gauge shows the tenant's real budget: spend, reserved spend and crossed alerts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from vbgateway.governance import Budget, BudgetAlert
from vbgateway.widgets.style import fmt_usd
from vbgateway.widgets.usage import budget_gauge_html
from vbgateway.widgets.usage_data import budget_shares


def budget(spent: str, reserved: str, limit: str = "10", alerts: tuple[str, ...] = ()) -> Budget:
    crossed = [BudgetAlert(threshold=Decimal(t), crossed_at=datetime(2026, 3, 14, 10, 30, tzinfo=UTC),
                           spent_usd=Decimal(spent)) for t in alerts]
    left = max(Decimal(limit) - Decimal(spent) - Decimal(reserved), Decimal(0))
    return Budget(month="2026-03", monthly_usd=Decimal(limit), spent_usd=Decimal(spent),
                  reserved_usd=Decimal(reserved), remaining_usd=left,
                  alert_at=[Decimal("0.5"), Decimal("0.8"), Decimal("1")], alerts=crossed)


def test_the_gauge_splits_the_limit_into_spent_and_reserved():
    assert budget_shares(budget("5", "2")) == (0.5, 0.2)
    spent, reserved = budget_shares(budget("9.5", "2"))
    assert spent == 0.95 and abs(reserved - 0.05) < 1e-12  # never more than the whole bar
    assert budget_shares(budget("0", "0")) == (0.0, 0.0)


def test_the_gauge_names_the_month_the_figures_and_each_threshold():
    html = budget_gauge_html(budget("6", "1.5", alerts=("0.5",)))
    assert "Budget for 2026-03" in html and f"{fmt_usd(Decimal('6'))} " in html and "60.0%" in html
    assert f"{fmt_usd(Decimal('1.5'))} reserved" in html and f"{fmt_usd(Decimal('2.5'))} left" in html
    assert "50% crossed Mar 14 10:30 UTC" in html and "80% not reached" in html and "100% not reached" in html
    assert "width:60.0%" in html and "width:15.0%" in html and "#10b981" in html  # green below 75%


def test_the_dashboard_shows_the_real_budget_instead_of_the_limit_field(gw, login, dashboard, clock):
    client = login.client
    assert "Spend this month against the limit" in dashboard.gauge.value  # no budget yet: the field's limit
    assert dashboard.limit.layout.display is None
    agent = client.list_agents()[0]
    session = client.create_session(agent.id)
    cost = clock.run(client.send_message(session.id, "Where is my invoice?")).metadata.usage.cost_usd
    gw.set_budget(client.id, cost * 4, alert_at=(0.2, 0.9))
    dashboard.refresh_button.click()
    html = dashboard.gauge.value
    assert "Budget for 2026-03" in html and "25.0%" in html and "20% crossed" in html and "90% not reached" in html
    assert dashboard.limit.layout.display == "none"


def test_replies_in_flight_show_as_reserved_spend(gw, login, dashboard, clock):
    client = login.client
    session = client.create_session(client.list_agents()[0].id)
    gw.set_budget(client.id, Decimal("1"))

    async def refresh_while_a_reply_is_in_flight() -> str:
        task = asyncio.ensure_future(client.send_message(session.id, "Where is my order?"))
        await clock.sleep(0.01)  # the vendor is still answering
        dashboard.refresh()
        html = dashboard.gauge.value
        await task
        return html

    html = clock.run(refresh_while_a_reply_is_in_flight())
    reserved = Decimal(html.split(" reserved by replies in flight")[0].rsplit(">", 1)[-1].lstrip("$"))
    assert reserved > 0
    dashboard.refresh()
    assert f"{fmt_usd(Decimal(0))} reserved" in dashboard.gauge.value
