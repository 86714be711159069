"""Specification of ``vbgateway.analytics`` on databases with known events."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway import analytics as a

YEAR = ("2025-01-01", "2025-12-31")
LIVE_DAY = ("2026-01-05", "2026-01-05")


def db_sum(gw, tenant, start, end):
    lower, upper = a.day_range(start, end)
    row = gw.sql("SELECT count(*) AS n, coalesce(sum(cost_usd), 0) AS c FROM usage_events "
                 "WHERE tenant_id = ? AND created_at >= ? AND created_at < ?", [tenant, lower, upper]).iloc[0]
    return int(row.n), Decimal(row.c)


def test_rollup_cost_equals_the_generated_total_exactly(reader, fixture_db):
    roll = a.rollup(reader, fixture_db.bulk, *YEAR)

    assert roll.totals["cost_usd"] == fixture_db.bulk_cost
    assert int(roll.by_provider.cost_usd.sum()) == int(fixture_db.bulk_cost)


def test_daily_lists_every_day_and_adds_up_to_the_rollup(reader, fixture_db):
    daily = a.daily(reader, fixture_db.bulk, *YEAR)

    assert len(daily) == 365
    assert sum(Decimal(c) for c in daily.cost_usd) == fixture_db.bulk_cost
    assert int(daily.replies.sum()) == fixture_db.bulk_events


def test_daily_of_an_empty_tenant_is_zeros(reader, fixture_db):
    daily = a.daily(reader, fixture_db.empty, "2026-01-01", "2026-01-07")

    assert len(daily) == 7 and int(daily.replies.sum()) == 0 and sum(Decimal(c) for c in daily.cost_usd) == 0


def test_by_channel_always_has_chat_openai_and_voice(reader, fixture_db):
    live = a.by_channel(reader, fixture_db.live, *LIVE_DAY)

    assert list(live.channel) == ["chat", "openai", "voice"]
    assert list(live.replies) == [fixture_db.live_replies, 0, 0]


def test_by_channel_adds_up_to_the_total(reader, fixture_db):
    data = a.by_channel(reader, fixture_db.bulk, *YEAR)

    assert sum(Decimal(c) for c in data.cost_usd) == fixture_db.bulk_cost


def test_reliability_of_real_traffic_matches_the_replies(reader, fixture_db):
    rel = a.reliability(reader, fixture_db.live, *LIVE_DAY).summary
    attempts = int(reader.sql("SELECT count(*) AS n FROM provider_call_events WHERE tenant_id = ?",
                              [fixture_db.live]).n[0])

    assert rel["replies"] == fixture_db.live_replies
    assert rel["attempts"] == attempts
    assert rel["fallback_rate"] == pytest.approx(fixture_db.fallbacks / fixture_db.live_replies)
    assert rel["retry_tax_attempts"] == attempts - fixture_db.live_replies


@pytest.fixture(scope="module")
def tries_gw(tmp_path_factory):
    """Four requests with known tries: ok; 2 fails then ok; 3 fails then fallback ok; 6 fails (no reply)."""
    gw = Gateway.open(tmp_path_factory.mktemp("tries") / "t.duckdb", clock=VirtualClock())
    tenant, _ = gw.create_tenant("Tries")
    plan = {"r1": ["A ok"], "r2": ["A 500", "A 500", "A ok"], "r3": ["A 500"] * 3 + ["B ok"],
            "r4": ["A 500"] * 3 + ["B 429"] * 3}
    rows, n = [], 0
    for request, tries in plan.items():
        per_provider: dict[str, int] = {}
        for t in tries:
            provider, status = t.split()
            name = "vendor" + provider
            retries = per_provider.get(name, 0)
            per_provider[name] = retries + 1
            n += 1
            rows.append({"id": f"evt_{n}", "tenant_id": tenant.id, "session_id": "ses_1", "agent_id": "agt_1",
                         "request_id": request, "provider": name, "status": "ok" if status == "ok" else "failed",
                         "http_status": 200 if status == "ok" else int(status), "latency_ms": n * 10,
                         "retries": retries, "error_code": None if status == "ok" else
                         ("SERVER_ERROR" if status == "500" else "RATE_LIMITED"),
                         "created_at": datetime(2026, 1, 2, 0, 0, n, tzinfo=UTC)})
    gw.store.bulk_insert("provider_call_events", pa.Table.from_pylist(rows))
    yield gw, tenant.id
    gw.close()


def test_reliability_rates_and_retry_tax_from_known_tries(tries_gw):
    gw, tenant = tries_gw
    s = a.reliability(gw, tenant, "2026-01-02", "2026-01-02").summary

    assert (s["requests"], s["replies"], s["failed_requests"], s["attempts"]) == (4, 3, 1, 14)
    assert s["attempts_per_reply"] == pytest.approx(14 / 3)
    assert s["retry_rate"] == pytest.approx(3 / 4)
    assert s["fallback_rate"] == pytest.approx(1 / 3)
    assert s["failure_rate"] == pytest.approx(1 / 4)
    assert s["retry_tax_attempts"] == 11
    assert s["failed_attempt_ms"] == sum(range(1, 15)) * 10 - (10 + 40 + 80)


def test_error_codes_per_provider(tries_gw):
    gw, tenant = tries_gw
    codes = a.reliability(gw, tenant, "2026-01-02", "2026-01-02").error_codes

    assert [(p, c, int(n)) for p, c, n in zip(codes.provider, codes.error_code, codes.attempts)] == [
        ("vendorA", "SERVER_ERROR", 8), ("vendorB", "RATE_LIMITED", 3)]


def test_latency_percentiles_per_provider(tries_gw):
    gw, tenant = tries_gw
    lat = a.latency(gw, tenant, "2026-01-02", "2026-01-02").set_index("provider")

    assert int(lat.loc["vendorB", "attempts"]) == 4
    assert lat.loc["vendorB", "p50_ms"] == pytest.approx(125.0)  # 100, 120, 130, 140
    assert lat.loc["vendorA", "p99_ms"] <= lat.loc["vendorA", "max_ms"]


def test_latency_lists_a_provider_without_calls_with_empty_percentiles(reader, fixture_db):
    lat = a.latency(reader, fixture_db.empty, *LIVE_DAY)

    assert list(lat.provider) == ["vendorA", "vendorB"] and list(lat.attempts) == [0, 0]
    assert lat.p95_ms.isna().all()


def test_compare_uses_the_previous_period_of_equal_length(reader, fixture_db):
    table = a.compare(reader, fixture_db.bulk, "2025-03-01", "2025-03-31").set_index("kpi")
    _, now = db_sum(reader, fixture_db.bulk, "2025-03-01", "2025-03-31")
    _, before = db_sum(reader, fixture_db.bulk, "2025-01-29", "2025-02-28")

    assert a.previous_period("2025-03-01", "2025-03-31") == (a.parse_day("2025-01-29", "x"), a.parse_day("2025-02-28", "x"))
    assert table.loc["cost_usd", "current"] == now and table.loc["cost_usd", "previous"] == before
    assert table.loc["cost_usd", "change"] == now - before


def test_compare_of_an_empty_tenant_is_all_zero(reader, fixture_db):
    table = a.compare(reader, fixture_db.empty, *YEAR)

    assert all(v == 0 for v in table.current) and table.change_pct.isna().all()


def test_events_page_newest_first_without_overlap(reader, fixture_db):
    first = a.events(reader, fixture_db.bulk, *YEAR, limit=50)
    second = a.events(reader, fixture_db.bulk, *YEAR, limit=50, offset=50)

    assert list(first.created_at) == sorted(first.created_at, reverse=True)
    assert first.created_at.iloc[-1] >= second.created_at.iloc[0]
    assert not set(first.id) & set(second.id)


def test_monthly_has_twelve_months_with_zeros(reader, fixture_db):
    table = a.monthly(reader, fixture_db.bulk, now=datetime(2026, 1, 15, tzinfo=UTC))

    assert next(iter(table.month)) == "2025-02" and list(table.month)[-1] == "2026-01"
    assert table.loc[table.month == "2026-01", "vendorA"].iloc[0] == 0


def test_invoice_lines_add_up_and_the_digest_is_reproducible(reader, fixture_db):
    lines = a.invoice_lines(reader, fixture_db.bulk, "2025-06")
    count, total, digest = a.billed_events_digest(reader, fixture_db.bulk, "2025-06")
    rows = reader.sql("SELECT id, cost_usd FROM usage_events WHERE tenant_id = ? AND created_at >= ? "
                      "AND created_at < ? ORDER BY id", [fixture_db.bulk, *a.day_range("2025-06-01", "2025-06-30")])
    expected = hashlib.sha256("\n".join(f"{i}:{c}" for i, c in zip(rows.id, rows.cost_usd)).encode()).hexdigest()

    exact = db_sum(reader, fixture_db.bulk, "2025-06-01", "2025-06-30")[1]
    assert sum(Decimal(v) for v in lines.amount_usd) == total == exact
    assert int(lines.replies.sum()) == count == len(rows)
    assert digest == expected
    assert len(lines) == 4  # 2 agents x 2 providers


CALLS = {
    "rollup": lambda gw, s, e: a.rollup(gw, None, s, e),
    "events": lambda gw, s, e: a.events(gw, None, s, e),
    "daily": lambda gw, s, e: a.daily(gw, None, s, e),
    "by_channel": lambda gw, s, e: a.by_channel(gw, None, s, e),
    "latency": lambda gw, s, e: a.latency(gw, None, s, e),
    "reliability": lambda gw, s, e: a.reliability(gw, None, s, e),
    "compare": lambda gw, s, e: a.compare(gw, None, s, e),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_from_after_to_is_a_validation_error(reader, name):
    with pytest.raises(GatewayError) as info:
        CALLS[name](reader, "2026-02-01", "2026-01-01")
    assert info.value.code == "VALIDATION_ERROR"


@pytest.mark.parametrize("start", ["2026-13-01", "yesterday", "", None])
def test_a_malformed_day_is_a_validation_error(reader, start):
    with pytest.raises(GatewayError) as info:
        a.daily(reader, None, start, "2026-01-01")
    assert info.value.code == "VALIDATION_ERROR"


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "2026", "January", None])
def test_a_malformed_month_is_a_validation_error(reader, fixture_db, month):
    with pytest.raises(GatewayError) as info:
        a.invoice_lines(reader, fixture_db.bulk, month)
    assert info.value.code == "VALIDATION_ERROR"


@pytest.mark.parametrize("limit", [0, 1001, "10", True])
def test_events_limit_out_of_range_is_a_validation_error(reader, limit):
    with pytest.raises(GatewayError) as info:
        a.events(reader, None, "2026-01-01", "2026-01-31", limit=limit)
    assert info.value.code == "VALIDATION_ERROR"
