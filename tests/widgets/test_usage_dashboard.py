"""UsageDashboard: periods, KPI tiles against the previous period, breakdowns, chart, gauge, export."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from decimal import Decimal

import pytest

from vbgateway.widgets.style import fmt_change, fmt_usd
from vbgateway.widgets.usage_data import Period, period_for, previous_period

TODAY = date(2026, 3, 18)


@pytest.fixture
def traffic(login, clock):
    """Three replies on 10 March, then five on 18 March (today) in another session."""
    client = login.client
    agents = client.list_agents()

    def send(agent, n: int) -> None:
        session = client.create_session(agent.id, customer_id="c1")
        for i in range(n):
            clock.run(client.send_message(session.id, f"question {i}"))

    send(agents[0], 3)
    clock.advance(8 * 24 * 3600)
    send(agents[1], 5)
    return client


def period_sum(gw, start: date, end: date) -> tuple[int, Decimal]:
    row = gw.sql("SELECT count(*) AS n, coalesce(sum(cost_usd), 0) AS c FROM usage_events "
                 "WHERE created_at >= ? AND created_at < ?", [start, end + timedelta(days=1)]).iloc[0]
    return int(row.n), Decimal(row.c)


@pytest.mark.parametrize("preset, start, end", [
    ("This month", date(2026, 3, 1), TODAY),
    ("Last 7 days", date(2026, 3, 12), TODAY),
    ("Last 30 days", date(2026, 2, 17), TODAY),
])
def test_presets_cover_the_days_up_to_today(preset, start, end):
    assert period_for(preset, TODAY) == Period(start, end)


def test_custom_dates_are_taken_in_either_order():
    assert period_for("Custom", TODAY, (date(2026, 3, 5), date(2026, 3, 1))) == Period(date(2026, 3, 1), date(2026, 3, 5))


def test_the_previous_period_has_the_same_length_right_before():
    assert previous_period(Period(date(2026, 3, 12), TODAY)) == Period(date(2026, 3, 5), date(2026, 3, 11))


@pytest.mark.parametrize("now, before, text", [(150, 100, "▲ 50.0%"), (50, 100, "▼ 50.0%"), (5, 0, "new"),
                                               (0, 0, "no change")])
def test_change_against_the_previous_period(now, before, text):
    assert fmt_change(now, before)[0] == text


def test_tiles_show_the_period_and_the_change(traffic, dashboard, gw):
    dashboard.preset.value = "Last 7 days"
    n, cost = period_sum(gw, date(2026, 3, 12), TODAY)
    _, before = period_sum(gw, date(2026, 3, 5), date(2026, 3, 11))
    assert n == 5 and before > 0
    assert fmt_usd(cost) in dashboard.tiles.value and fmt_usd(before) in dashboard.tiles.value
    assert fmt_change(cost, before)[0] in dashboard.tiles.value
    assert "2026-03-12 – 2026-03-18" in dashboard.period_label.value


def test_breakdowns_chart_gauge_and_recent_events(traffic, dashboard, gw):
    dashboard.refresh_button.click()
    assert "Sales Concierge" in dashboard.top_agents.value and "Support Assistant" in dashboard.top_agents.value
    assert "vendorA" in dashboard.providers.value and "vendorB" in dashboard.providers.value
    assert "<svg" in dashboard.chart.value and "2026-03" in dashboard.chart.value
    assert "of $0.002000" in dashboard.gauge.value and "#ef4444" in dashboard.gauge.value  # over the limit: red
    assert dashboard.events.value.count("<tr>") == 1 + 8


def test_custom_period_hides_nothing_and_counts_only_its_days(traffic, dashboard):
    dashboard.preset.value = "Custom"
    dashboard.start.value, dashboard.end.value = date(2026, 3, 10), date(2026, 3, 10)
    assert dashboard.custom_row.layout.display is None
    assert dashboard.period == Period(date(2026, 3, 10), date(2026, 3, 10))
    assert dashboard.events.value.count("<tr>") == 1 + 3


def test_export_writes_every_event_of_the_period_to_csv(traffic, dashboard, gw):
    dashboard.export_button.click()
    path = dashboard.exported
    assert path is not None and path.parent == dashboard.reports_dir and str(path) in dashboard.status.value
    rows = list(csv.DictReader(path.open()))
    n, cost = period_sum(gw, date(2026, 3, 1), TODAY)
    assert len(rows) == n == 8 and sum(Decimal(r["cost_usd"]) for r in rows) == cost


def test_an_empty_period_shows_zeros_not_errors(dashboard):
    assert "$0.00" in dashboard.tiles.value and "nothing in this period" in dashboard.events.value


def test_logged_out_the_dashboard_asks_to_log_in(login, dashboard):
    login.logout()
    assert "log in to see usage" in dashboard.period_label.value and dashboard.tiles.value == ""
