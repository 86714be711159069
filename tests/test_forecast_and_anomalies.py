"""Month-end spend forecasts (point, 80% interval, measured coverage) and anomaly flags, on simulated traffic."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from vbgateway import Gateway, VirtualClock, analytics
from vbgateway.analytics.forecast import forecast_spend
from vbgateway.reports import invoice_data, invoice_total_html
from vbgateway.simulation import Scenario, load_scenario, simulate


@pytest.fixture(scope="module")
def months_db(tmp_path_factory) -> Path:
    """Four months of low traffic for three tenants (weekdays busy, weekends quiet): about 15,000 replies."""
    db = tmp_path_factory.mktemp("months") / "months.duckdb"
    simulate(Scenario.parse({"name": "months", "start": "2026-01-01T00:00:00Z", "duration": "120d", "seed": 3,
                             "tenants": 3, "gateways": 1, "traffic": {"sessions_per_hour": 1}}), db=db)
    return db


def test_a_steady_weekly_pattern_is_forecast_exactly_with_no_spread():
    weekdays = np.arange(28) % 7
    spend = np.array([10.0, 10, 10, 10, 10, 2, 2])[weekdays]
    ahead = np.array([0, 1, 2, 3, 4, 5, 6, 0])
    point, low, high = forecast_spend(spend, weekdays, ahead)
    assert (point, low, high) == (54.0 + 10.0, 64.0, 64.0)  # a week (5 x 10 + 2 x 2), then a Monday


def test_today_counts_its_spend_so_far_when_that_is_more_than_forecast():
    weekdays = np.arange(14) % 7
    point, _, _ = forecast_spend(np.full(14, 5.0), weekdays, np.array([0, 1]), today_so_far=8.0)
    assert point == 13.0


def test_the_interval_is_the_same_for_the_same_question_and_holds_the_point():
    rng = np.random.default_rng(1)
    weekdays = np.arange(56) % 7
    spend = 10 + rng.normal(0, 2, 56)
    first = forecast_spend(spend, weekdays, np.arange(10) % 7, seed=5)
    assert first == forecast_spend(spend, weekdays, np.arange(10) % 7, seed=5)
    assert first[1] < first[0] < first[2]


def test_month_to_date_is_exact_and_a_month_over_is_its_spend(months_db: Path):
    with Gateway.open_reader(months_db) as gw:
        tenant = gw.list_tenants()[0].id
        as_of = datetime(2026, 3, 15, 10, tzinfo=UTC)
        forecast = analytics.month_end_forecast(gw, tenant, as_of=as_of)
        spent = gw.sql("""SELECT sum(cost_usd) AS c FROM usage_events WHERE tenant_id = ?
                          AND created_at >= '2026-03-01' AND created_at < '2026-03-16'""", [tenant]).c[0]
        assert forecast.month == "2026-03" and forecast.month_to_date_usd == spent
        assert forecast.history_days == 56 and forecast.remaining_days == 17
        assert forecast.low_usd <= forecast.point_usd <= forecast.high_usd
        over = analytics.month_end_forecast(gw, tenant, month="2026-02", as_of=as_of)
        february = gw.sql("""SELECT sum(cost_usd) AS c FROM usage_events WHERE tenant_id = ?
                             AND created_at >= '2026-02-01' AND created_at < '2026-03-01'""", [tenant]).c[0]
        assert over.remaining_days == 0 and over.month_to_date_usd == february
        assert over.point_usd == over.low_usd == over.high_usd == february.quantize(Decimal("0.01"))


def test_the_80_percent_interval_holds_70_to_90_percent_of_simulated_month_ends(months_db: Path):
    with Gateway.open_reader(months_db) as gw:
        backtest = analytics.forecast_backtest(gw, "2026-01-01", "2026-12-31")
    figures = analytics.forecast_coverage(backtest)
    assert sorted(set(backtest.month)) == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert figures["forecasts"] > 300
    assert 0.70 <= figures["coverage"] <= 0.90, figures
    assert figures["mape_pct"] < 10


def test_the_rollup_carries_a_forecast_only_when_asked(months_db: Path, tmp_path: Path):
    import httpx
    from live_server import LiveServer

    from vbgateway.api import create_app

    db = tmp_path / "copy.duckdb"
    db.write_bytes(months_db.read_bytes())
    with Gateway.open(db, clock=VirtualClock(datetime(2026, 4, 10, 12, tzinfo=UTC))) as gw:
        tenant = gw.list_tenants()[0]
        _, key = gw.create_api_key(tenant.id)
        with LiveServer(create_app(gw)) as server, httpx.Client(base_url=server.url, headers={"X-API-Key": key}) as http:
            plain = http.get("/v1/usage/rollup", params={"from": "2026-04-01", "to": "2026-04-10"}).json()
            body = http.get("/v1/usage/rollup",
                            params={"from": "2026-04-01", "to": "2026-04-10", "forecast": "true"}).json()
            expected = analytics.month_end_forecast(gw, tenant.id)
    assert "forecast" not in plain
    assert {k: v for k, v in body.items() if k != "forecast"} == plain  # the existing fields, unchanged
    assert body["forecast"] == {
        "month": "2026-04", "asOf": "2026-04-10", "monthToDateUsd": float(expected.month_to_date_usd),
        "pointUsd": float(expected.point_usd), "lowUsd": float(expected.low_usd),
        "highUsd": float(expected.high_usd), "interval": 0.8, "historyDays": 56, "remainingDays": 21,
        "method": "day-of-week means, residual bootstrap"}


def test_an_invoice_of_a_month_in_progress_says_where_it_is_heading(months_db: Path):
    with Gateway.open_reader(months_db) as gw:
        tenant = gw.list_tenants()[0].id
        running = invoice_data(gw, tenant, "2026-04", now=datetime(2026, 4, 20, tzinfo=UTC))
        final = invoice_data(gw, tenant, "2026-03", now=datetime(2026, 4, 20, tzinfo=UTC))
    assert "At this pace" in invoice_total_html(running) and running.meta["forecast"].month == "2026-04"
    assert final.meta["forecast"] is None and "At this pace" not in invoice_total_html(final)


# ------------------------------------------------------------------------------------------------- anomalies
@pytest.fixture(scope="module")
def outage_db(tmp_path_factory) -> Path:
    """The vendor_a_outage example, with the week before it run first as history (lighter traffic)."""
    example = load_scenario("vendor_a_outage")
    scenario = example.model_copy(update={
        "start": example.start - timedelta(days=7), "duration": example.duration + timedelta(days=7),
        "traffic": example.traffic.model_copy(update={"sessions_per_hour": 12.0})})
    db = tmp_path_factory.mktemp("outage") / "outage.duckdb"
    simulate(scenario, db=db)
    return db


def test_the_vendor_a_outage_is_flagged_on_its_day_and_only_then(outage_db: Path):
    with Gateway.open_reader(outage_db) as gw:
        flagged = analytics.anomalies(gw, None, "2026-02-24", "2026-03-03")
    assert set(flagged.day) == {date(2026, 3, 3)}
    vendor_a = flagged[(flagged.provider == "vendorA") & (flagged.metric == "error_rate")]
    assert len(vendor_a) == 2 and set(vendor_a.direction) == {"high"}  # both tenants use vendorA first


def test_a_normal_week_flags_nothing(tmp_path: Path):
    db = tmp_path / "week.duckdb"
    simulate(load_scenario("normal_week"), db=db)
    with Gateway.open_reader(db) as gw:
        scores = analytics.anomaly_scores(gw, None, "2026-03-02", "2026-03-08")
    assert not scores.flagged.any()
    assert scores.z.notna().sum() > 20  # days with enough history were judged, not skipped


# ------------------------------------------------------------------------------------------------- clients and dashboard
@pytest.mark.tenant_clients
def test_both_tenant_clients_give_the_forecast_of_the_gateway(gw, acme, agent, clock, run):
    session = acme.create_session(agent.id)
    for _ in range(12):
        run(acme.send_message(session.id, "Where is my invoice?"))
        clock.advance(86_400)
    expected = analytics.month_end_forecast(gw, acme.id)
    forecast = acme.usage_forecast()
    assert (forecast.month, forecast.as_of.date(), forecast.month_to_date_usd, forecast.point_usd, forecast.low_usd,
            forecast.high_usd, forecast.history_days) == (
        expected.month, expected.as_of.date(), expected.month_to_date_usd, expected.point_usd, expected.low_usd,
        expected.high_usd, expected.history_days)
    assert forecast.history_days == 12 and forecast.month_to_date_usd > 0
    assert acme.usage_forecast("2025-12").point_usd == 0  # a month before any usage


def test_the_dashboard_gauge_says_where_the_month_is_heading():
    from vbgateway.widgets.usage import gauge_html

    forecast = analytics.SpendForecast("tnt_x", "2026-01", datetime(2026, 1, 10, tzinfo=UTC), Decimal("3.2"),
                                       Decimal("9.50"), Decimal("8.75"), Decimal("10.40"), 56, 22)
    html = gauge_html(Decimal("3.2"), Decimal("10"), forecast)
    assert "At this pace: $9.50 by month end (80% interval $8.75 – $10.40) · may pass the limit" in html
    assert "At this pace" not in gauge_html(Decimal("3.2"), Decimal("10"))


def test_a_month_at_either_end_of_the_calendar_is_forecast_too(gw):
    tenant, _ = gw.create_tenant("Edge Corp")
    last = analytics.month_end_forecast(gw, tenant.id, month="9999-12")
    first = analytics.month_end_forecast(gw, tenant.id, month="0001-01")
    assert (last.remaining_days, last.point_usd) == (31, 0) and (first.remaining_days, first.point_usd) == (0, 0)
