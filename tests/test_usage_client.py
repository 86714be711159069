"""The tenant client's usage figures: rollup, event pages and monthly costs, in the same types on both clients.

The dashboard, the CSV export and users' notebooks read these DataFrames by
column name and dtype, so the columns, their dtypes and their exact decimal
money are part of the behaviour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from vbgateway import GatewayError
from vbgateway.analytics import Rollup
from vbgateway.audio import synthesize

pytestmark = pytest.mark.tenant_clients

ALL_TIME = ("2020-01-01", "2099-12-31")
EXACT = "decimal128(38, 10)[pyarrow]"
EVENT_DTYPES = {"id": "str", "tenant_id": "str", "session_id": "str", "agent_id": "str", "provider": "str",
                "channel": "str", "tokens_in": "int32", "tokens_out": "int32",
                "cost_usd": "decimal128(24, 10)[pyarrow]", "created_at": "datetime64[us, UTC]", "request_id": "str"}
PROVIDER_DTYPES = {"provider": "str", "sessions": "int64", "tokens_in": "int64", "tokens_out": "int64",
                   "tokens_total": "int64", "cost_usd": EXACT}
AGENT_DTYPES = {"agent_id": "str", "agent_name": "str", "sessions": "int64", "tokens_total": "int64", "cost_usd": EXACT}


def dtypes(frame) -> dict[str, str]:
    return {name: str(dtype).replace("Etc/UTC", "UTC") for name, dtype in frame.dtypes.items()}


@pytest.fixture
def traffic(acme, agent, clock, run):
    """Three chat replies and one voice reply in two sessions, a minute apart; returns the replies, oldest first."""
    first, second = acme.create_session(agent.id), acme.create_session(agent.id)
    replies = []
    for session, text in ((first, "Hello"), (second, "Where is my invoice?"), (first, "Thanks")):
        clock.advance(60)
        replies.append(run(acme.send_message(session.id, text)))
    clock.advance(60)
    replies.append(run(acme.send_voice(second.id, synthesize("one more thing"))).reply)
    return replies


def test_rollup_totals_match_the_replies_to_the_cent(acme, traffic):
    rollup = acme.usage_rollup(*ALL_TIME)
    assert isinstance(rollup, Rollup)
    assert (rollup.start, rollup.end) == (date(2020, 1, 1), date(2099, 12, 31))
    usages = [r.metadata.usage for r in traffic]
    assert rollup.totals == {
        "sessions": 2, "messages": 8, "tokens_in": sum(u.tokens_in for u in usages),
        "tokens_out": sum(u.tokens_out for u in usages),
        "tokens_total": sum(u.tokens_in + u.tokens_out for u in usages),
        "cost_usd": sum((u.cost_usd for u in usages), Decimal(0))}
    assert isinstance(rollup.totals["cost_usd"], Decimal)


def test_rollup_tables_have_the_embedded_columns_and_dtypes(acme, agent, traffic):
    rollup = acme.usage_rollup(*ALL_TIME)
    assert dtypes(rollup.by_provider) == PROVIDER_DTYPES
    assert dtypes(rollup.top_agents) == AGENT_DTYPES
    assert list(rollup.top_agents.agent_id) == [agent.id] and list(rollup.top_agents.agent_name) == ["Support"]
    assert rollup.by_provider.cost_usd.sum() == rollup.totals["cost_usd"]


def test_an_empty_period_has_zero_totals_and_empty_tables_of_the_same_dtypes(acme, traffic):
    rollup = acme.usage_rollup("2020-01-01", "2020-01-31")
    assert rollup.totals == {"sessions": 0, "messages": 0, "tokens_in": 0, "tokens_out": 0, "tokens_total": 0,
                             "cost_usd": Decimal(0)}
    assert rollup.by_provider.empty and dtypes(rollup.by_provider) == PROVIDER_DTYPES
    assert rollup.top_agents.empty and dtypes(rollup.top_agents) == AGENT_DTYPES
    events = acme.usage_events("2020-01-01", "2020-01-31")
    assert events.empty and dtypes(events) == EVENT_DTYPES


def test_days_are_taken_as_dates_datetimes_or_iso_strings(acme, traffic):
    as_text = acme.usage_rollup("2026-01-01", "2026-01-01").totals
    assert as_text["messages"] == 8
    assert acme.usage_rollup(date(2026, 1, 1), date(2026, 1, 1)).totals == as_text
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert acme.usage_rollup(noon, noon).totals == as_text
    assert acme.usage_rollup("2026-01-02", "2026-01-02").totals["messages"] == 0


def test_usage_events_are_the_billed_replies_newest_first_with_their_channel(acme, traffic, as_served):
    events = acme.usage_events(*ALL_TIME)
    assert dtypes(events) == EVENT_DTYPES
    assert list(events.request_id) == [r.metadata.request_id for r in reversed(traffic)]
    assert list(events.channel) == ["voice", "chat", "chat", "chat"]
    assert set(events.tenant_id) == {acme.id}
    assert [Decimal(c) for c in events.cost_usd] == [r.metadata.usage.cost_usd for r in reversed(traffic)]
    served = [as_served(t.to_pydatetime()) for t in events.created_at]
    assert served == [r.message.created_at for r in reversed(traffic)]


def test_usage_events_page_with_limit_and_offset(acme, traffic):
    every = list(acme.usage_events(*ALL_TIME).id)
    pages = [list(acme.usage_events(*ALL_TIME, limit=3, offset=offset).id) for offset in (0, 3, 6)]
    assert pages == [every[:3], every[3:], []]


def test_monthly_costs_cover_the_months_asked_with_zeros(acme, traffic):
    monthly = acme.usage_monthly()
    assert list(monthly.columns) == ["month", "vendorA", "vendorB"]
    assert list(monthly.month)[-3:] == ["2025-11", "2025-12", "2026-01"] and len(monthly) == 12
    assert all(isinstance(value, Decimal) for value in [*monthly.vendorA, *monthly.vendorB])
    total = sum((r.metadata.usage.cost_usd for r in traffic), Decimal(0))
    assert monthly.vendorA.iat[-1] + monthly.vendorB.iat[-1] == total
    assert sum(monthly.vendorA.iloc[:-1]) == 0
    assert list(acme.usage_monthly(2).month) == ["2025-12", "2026-01"]


@pytest.mark.parametrize(("call", "field"), [
    (lambda c: c.usage_rollup("2026-13-01", "2026-12-31"), "from"),
    (lambda c: c.usage_rollup("2026-01-01", 20260131), "to"),
    (lambda c: c.usage_rollup("2026-02-01", "2026-01-01"), None),
    (lambda c: c.usage_events(*ALL_TIME, limit=0), "limit"),
    (lambda c: c.usage_events(*ALL_TIME, limit=1001), "limit"),
    (lambda c: c.usage_events(*ALL_TIME, limit="5"), "limit"),
    (lambda c: c.usage_events(*ALL_TIME, offset=-1), "offset"),
    (lambda c: c.usage_events(*ALL_TIME, offset=True), "offset"),
    (lambda c: c.usage_monthly(0), "months"),
    (lambda c: c.usage_monthly(121), "months"),
], ids=["bad-day", "not-a-day", "from-after-to", "limit-0", "limit-1001", "limit-text", "offset-negative",
        "offset-bool", "months-0", "months-121"])
def test_bad_usage_arguments_are_validation_errors(acme, call, field):
    with pytest.raises(GatewayError) as info:
        call(acme)
    assert (info.value.code, info.value.http_status) == ("VALIDATION_ERROR", 400)
    assert info.value.details.get("field") == field
