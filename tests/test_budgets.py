"""Budgets: set and read, refused before any provider call, reservations that replace exactly, alerts, months."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway.errors import BudgetExceededError
from vbgateway.pricing import Rates
from vbgateway.providers import VendorA, VendorB

PROMPT = "You are a careful support agent. " * 6  # 198 characters: input tokens dominate a reservation
PRICE_A, PRICE_B = Decimal("0.002"), Decimal("0.003")


def healthy() -> dict[str, object]:
    return {"vendorA": VendorA(seed=1, failure_rate=0.0, spike_rate=0.0),
            "vendorB": VendorB(seed=2, rate_limit_rate=0.0, spike_rate=0.0)}


@pytest.fixture
def gw(db_path, clock):
    gateway = Gateway.open(db_path, clock=clock, seed=1234, providers=healthy())
    yield gateway
    gateway.close()


@pytest.fixture
def tenant(gw):
    tenant, key = gw.create_tenant("Acme Corporation")
    return tenant, gw.connect(key)


@pytest.fixture
def session(tenant):
    _, client = tenant
    agent = client.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt=PROMPT, max_output_tokens=40)
    return client.create_session(agent.id)


def reservation(history_chars: int, content: str, max_out: int = 40, price: Decimal = PRICE_B) -> Decimal:
    """What a request reserves: input tokens as the vendors count them plus max_output_tokens, at the dearest price."""
    tokens_in = math.ceil((len(PROMPT) + history_chars + len(content)) / 4)
    return Decimal(tokens_in + max_out) * price / 1000


def spent_in_duckdb(gw: Gateway, tenant_id: str) -> Decimal:
    return Decimal(gw.store.query_rows("SELECT coalesce(sum(cost_usd), 0) FROM usage_events WHERE tenant_id = ?",
                                       [tenant_id])[0][0])


# ---------------------------------------------------------------------- setting and reading
def test_a_tenant_has_no_budget_until_one_is_set(gw, tenant):
    assert gw.get_budget(tenant[0].id) is None
    assert tenant[1].budget() is None


def test_set_budget_returns_the_budget_of_this_utc_month(gw, tenant, clock):
    budget = gw.set_budget(tenant[0].id, Decimal("50"), alert_at=(0.5, 0.8, 1.0))
    assert budget is not None and budget == gw.get_budget(tenant[0].id) == tenant[1].budget()
    assert (budget.month, budget.monthly_usd, budget.spent_usd, budget.reserved_usd, budget.remaining_usd) == \
        ("2026-01", Decimal("50"), 0, 0, Decimal("50"))
    assert budget.alert_at == [Decimal("0.5"), Decimal("0.8"), Decimal("1")] and budget.alerts == []


def test_a_budget_is_stored_and_survives_reopening(gw, tenant, db_path, clock):
    gw.set_budget(tenant[0].id, "12.5", alert_at=["0.25"])
    gw.close()
    with Gateway.open(db_path, clock=clock) as again:
        budget = again.get_budget(tenant[0].id)
        assert budget is not None and (budget.monthly_usd, budget.alert_at) == (Decimal("12.5"), [Decimal("0.25")])
        row = again.sql("SELECT monthly_usd, alert_at FROM budgets").iloc[0]
        assert Decimal(row.monthly_usd) == Decimal("12.5")


def test_changing_a_budget_keeps_one_row_and_none_removes_it(gw, tenant):
    gw.set_budget(tenant[0].id, 10)
    gw.set_budget(tenant[0].id, 20, alert_at=())
    assert gw.sql("SELECT count(*) AS n FROM budgets")["n"][0] == 1
    assert gw.get_budget(tenant[0].id).monthly_usd == 20
    assert gw.set_budget(tenant[0].id, None) is None
    assert gw.get_budget(tenant[0].id) is None and gw.sql("SELECT count(*) AS n FROM budgets")["n"][0] == 0


@pytest.mark.parametrize("monthly_usd, alert_at, code", [
    (Decimal("-1"), (0.5,), "VALIDATION_ERROR"),
    (0, (0.5,), "VALIDATION_ERROR"),
    (50.0, (0.5,), "VALIDATION_ERROR"),  # a float is not exact money
    ("fifty", (0.5,), "VALIDATION_ERROR"),
    (Decimal("NaN"), (0.5,), "VALIDATION_ERROR"),
    (Decimal("Infinity"), (0.5,), "VALIDATION_ERROR"),
    (True, (0.5,), "VALIDATION_ERROR"),
    (Decimal("0.00000000001"), (0.5,), "VALIDATION_ERROR"),  # 11 places: more than the store keeps
    (Decimal("1E13"), (0.5,), "VALIDATION_ERROR"),
    (50, (0.8, 0.5), "VALIDATION_ERROR"),  # unsorted
    (50, (0.5, 0.5), "VALIDATION_ERROR"),  # not strictly ascending
    (50, (0,), "VALIDATION_ERROR"),
    (50, (-0.5,), "VALIDATION_ERROR"),
    (50, (1.5,), "VALIDATION_ERROR"),  # could never be crossed
    (50, "0.5", "VALIDATION_ERROR"),
    (50, ("half",), "VALIDATION_ERROR"),
    (50, tuple(i / 20 for i in range(1, 13)), "VALIDATION_ERROR"),  # more than 10
])
def test_bad_input_is_refused_with_a_code_and_changes_nothing(gw, tenant, row_counts, monthly_usd, alert_at, code):
    gw.set_budget(tenant[0].id, 7)
    before = row_counts()
    with pytest.raises(GatewayError) as info:
        gw.set_budget(tenant[0].id, monthly_usd, alert_at=alert_at)
    assert info.value.code == code and info.value.http_status == 400
    assert row_counts() == before
    budget = gw.get_budget(tenant[0].id)
    assert budget.monthly_usd == 7 and budget.alert_at == [Decimal("0.5"), Decimal("0.8"), Decimal("1")]


@pytest.mark.parametrize("tenant_id", ["tnt_doesnotexist000000000", 42, None])
def test_an_unknown_tenant_is_not_found_and_nothing_is_written(gw, row_counts, tenant_id):
    before = row_counts()
    for call in (lambda: gw.set_budget(tenant_id, 5), lambda: gw.set_budget(tenant_id, None),
                 lambda: gw.get_budget(tenant_id)):
        with pytest.raises(GatewayError) as info:
            call()
        assert info.value.code == "NOT_FOUND"
    assert row_counts() == before


# ---------------------------------------------------------------------- refusing
def test_a_request_that_does_not_fit_is_refused_before_any_provider_call_and_writes_only_its_refusal(
        gw, tenant, session, clock, row_counts):
    needed = reservation(0, "hello")
    gw.set_budget(tenant[0].id, needed - Decimal("0.0000001"))
    calls = {name: p.calls for name, p in gw.providers.items()}
    before, pending = row_counts(), gw.store.pending_records
    with pytest.raises(BudgetExceededError) as info:
        clock.run(tenant[1].send_message(session.id, "hello"))
    error = info.value
    assert (error.code, error.http_status) == ("BUDGET_EXCEEDED", 402)
    assert error.details == {"limit": float(needed - Decimal("0.0000001")), "spent": 0.0, "reserved": 0.0,
                             "requested": float(needed), "month": "2026-01", "requestId": error.details["requestId"]}
    assert error.details["requestId"].startswith("req_")
    assert {name: p.calls for name, p in gw.providers.items()} == calls
    assert gw.store.pending_records == pending  # the refusal row waits in memory (governance/refusals.py)
    assert row_counts() == {**before, "request_refusals": before["request_refusals"] + 1}  # a read hands it over
    assert gw.get_budget(tenant[0].id).reserved_usd == 0


def test_a_request_that_fits_exactly_is_answered_and_costs_no_more_than_it_reserved(gw, tenant, session, clock):
    needed = reservation(0, "hello")
    gw.set_budget(tenant[0].id, needed)
    reply = clock.run(tenant[1].send_message(session.id, "hello"))
    assert reply.metadata.usage.tokens_out <= 40
    assert reply.metadata.usage.cost_usd <= needed
    budget = gw.get_budget(tenant[0].id)
    assert (budget.spent_usd, budget.reserved_usd) == (reply.metadata.usage.cost_usd, 0)
    assert budget.remaining_usd == needed - reply.metadata.usage.cost_usd


def test_the_dearest_provider_of_the_chain_prices_the_reservation(gw, tenant, clock):
    _, client = tenant
    only_a = client.create_agent(name="A only", primary_provider="vendorA", fallback_provider=None,
                                 system_prompt=PROMPT, max_output_tokens=40)
    session = client.create_session(only_a.id)
    gw.set_budget(tenant[0].id, reservation(0, "hi", price=PRICE_A))  # enough at vendorA's price alone
    assert clock.run(client.send_message(session.id, "hi")).metadata.provider_used == "vendorA"


def test_a_price_version_added_at_run_time_changes_what_the_next_reservation_holds(gw, tenant, session, clock):
    _, client = tenant
    gw.set_budget(tenant[0].id, Decimal("0.0000001"))  # less than any reply: each request shows what it would hold
    with pytest.raises(BudgetExceededError) as before:
        clock.run(client.send_message(session.id, "hello"))
    assert Decimal(str(before.value.details["requested"])) == reservation(0, "hello", price=PRICE_B)
    dearer = Decimal("0.006")
    gw.prices.add_versions("vendorB", [Rates.per_1k(dearer, clock.now())])
    with pytest.raises(BudgetExceededError) as after:
        clock.run(client.send_message(session.id, "hello"))
    assert Decimal(str(after.value.details["requested"])) == reservation(0, "hello", price=dearer)
    gw.set_budget(tenant[0].id, reservation(0, "hello", price=dearer) - Decimal("1E-7"))  # fit the old price only
    with pytest.raises(BudgetExceededError):
        clock.run(client.send_message(session.id, "hello"))


def test_the_reservation_grows_with_the_conversation(gw, tenant, session, clock):
    _, client = tenant
    first = clock.run(client.send_message(session.id, "hello"))
    history = len("hello") + len(first.message.content)
    gw.set_budget(tenant[0].id, first.metadata.usage.cost_usd + reservation(history, "again") - Decimal("1E-7"))
    with pytest.raises(BudgetExceededError) as info:
        clock.run(client.send_message(session.id, "again"))
    assert Decimal(str(info.value.details["requested"])) == reservation(history, "again")


def test_a_tenant_without_a_budget_is_never_refused_and_another_tenants_budget_does_not_touch_it(gw, tenant,
                                                                                                  session, clock):
    other, _ = gw.create_tenant("Globex")
    gw.set_budget(other.id, Decimal("0.000001"))
    for i in range(5):
        clock.run(tenant[1].send_message(session.id, f"message {i}"))
    assert gw.get_budget(tenant[0].id) is None and gw.get_budget(other.id).spent_usd == 0


# ---------------------------------------------------------------------- reservations come back
def test_a_failed_request_gives_its_reservation_back(db_path, clock):
    failing = {"vendorA": VendorA(seed=1, failure_rate=1.0), "vendorB": VendorB(seed=2, failure_rate=1.0)}
    with Gateway.open(db_path, clock=clock, providers=failing) as gw:
        tenant, key = gw.create_tenant("Acme")
        client = gw.connect(key)
        agent = client.create_agent(name="S", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt=PROMPT, max_output_tokens=40)
        session = client.create_session(agent.id)
        gw.set_budget(tenant.id, reservation(0, "hello"))  # room for exactly one request in flight
        for _ in range(3):
            with pytest.raises(GatewayError) as info:
                clock.run(client.send_message(session.id, "hello"))
            assert info.value.code == "ALL_PROVIDERS_FAILED"  # never BUDGET_EXCEEDED: nothing leaked
        assert (gw.get_budget(tenant.id).spent_usd, gw.get_budget(tenant.id).reserved_usd) == (0, 0)


def test_a_cancelled_request_gives_its_reservation_back(gw, tenant, session, clock):
    gw.set_budget(tenant[0].id, reservation(0, "hello"))

    async def cancel_while_the_vendor_answers() -> None:
        task = asyncio.ensure_future(tenant[1].send_message(session.id, "hello"))
        await clock.sleep(0.01)  # the vendor takes at least 50 ms
        assert gw.get_budget(tenant[0].id).reserved_usd == reservation(0, "hello")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clock.run(cancel_while_the_vendor_answers())
    assert gw.get_budget(tenant[0].id).reserved_usd == 0
    assert clock.run(tenant[1].send_message(session.id, "hello")).metadata.usage.cost_usd > 0  # it fits again


def test_a_reply_whose_commit_fails_is_not_counted(gw, tenant, session, clock):
    gw.set_budget(tenant[0].id, 1)

    async def close_the_store_while_the_vendor_answers() -> None:
        task = asyncio.ensure_future(tenant[1].send_message(session.id, "hello"))
        await clock.sleep(0.01)
        gw.store.close()
        with pytest.raises(GatewayError) as info:
            await task
        assert info.value.code == "DATABASE_ERROR"

    clock.run(close_the_store_while_the_vendor_answers())
    budget = tenant[1].budget()  # the ledger is in memory: it still answers
    assert (budget.spent_usd, budget.reserved_usd) == (0, 0)


def test_an_idempotent_replay_reserves_nothing(gw, tenant, session, clock):
    first = clock.run(tenant[1].send_message(session.id, "hello", idempotency_key="k1"))
    gw.set_budget(tenant[0].id, first.metadata.usage.cost_usd)  # spent in full: a new request cannot fit
    replay = clock.run(tenant[1].send_message(session.id, "hello", idempotency_key="k1"))
    assert replay.metadata.idempotency.replayed and replay.message.id == first.message.id
    with pytest.raises(BudgetExceededError):
        clock.run(tenant[1].send_message(session.id, "hello", idempotency_key="k2"))


def test_spend_counts_replies_made_before_the_budget_was_set(gw, tenant, session, clock):
    costs = [clock.run(tenant[1].send_message(session.id, f"m{i}")).metadata.usage.cost_usd for i in range(3)]
    assert gw.set_budget(tenant[0].id, 1).spent_usd == sum(costs) == spent_in_duckdb(gw, tenant[0].id)


# ---------------------------------------------------------------------- alerts
def test_each_threshold_is_recorded_and_logged_once_a_month(gw, tenant, session, clock, caplog):
    caplog.set_level(logging.WARNING, logger="vbgateway.budgets")
    _, client = tenant
    first = clock.run(client.send_message(session.id, "hello")).metadata.usage.cost_usd
    limit = first * 10
    gw.set_budget(tenant[0].id, limit, alert_at=(0.2, 0.3, 0.9))
    costs = [first]
    while sum(costs) < limit * Decimal("0.4"):
        fresh = client.create_session(session.agent_id)  # a fresh conversation: every request reserves alike
        costs.append(clock.run(client.send_message(fresh.id, "hello")).metadata.usage.cost_usd)
    rows = gw.sql("SELECT threshold, month, spent_usd, monthly_usd FROM budget_alerts ORDER BY threshold")
    assert [Decimal(t) for t in rows["threshold"]] == [Decimal("0.2"), Decimal("0.3")]
    assert set(rows["month"]) == {"2026-01"} and all(Decimal(m) == limit for m in rows["monthly_usd"])
    running = [sum(costs[: i + 1]) for i in range(len(costs))]
    for threshold, spent in zip(rows["threshold"], rows["spent_usd"], strict=True):
        assert Decimal(spent) == next(s for s in running if s >= Decimal(threshold) * limit)  # the crossing reply
    budget = gw.get_budget(tenant[0].id)
    assert [a.threshold for a in budget.alerts] == [Decimal("0.2"), Decimal("0.3")]
    assert len([r for r in caplog.records if "threshold crossed" in r.getMessage()]) == 2


def test_a_new_limit_below_this_months_spend_records_its_crossed_thresholds_at_once(gw, tenant, session, clock):
    cost = clock.run(tenant[1].send_message(session.id, "hello")).metadata.usage.cost_usd
    budget = gw.set_budget(tenant[0].id, cost * 2, alert_at=(0.25, 0.5, 0.9))
    assert [(a.threshold, a.spent_usd, a.crossed_at) for a in budget.alerts] == \
        [(Decimal("0.25"), cost, clock.now()), (Decimal("0.5"), cost, clock.now())]
    gw.set_budget(tenant[0].id, cost * 2, alert_at=(0.25, 0.5, 0.9))  # the same again: recorded once
    assert gw.sql("SELECT count(*) AS n FROM budget_alerts")["n"][0] == 2


def test_alerts_are_read_back_after_reopening(gw, tenant, session, clock, db_path):
    cost = clock.run(tenant[1].send_message(session.id, "hello")).metadata.usage.cost_usd
    gw.set_budget(tenant[0].id, cost, alert_at=(1,))
    gw.close()
    with Gateway.open(db_path, clock=clock) as again:
        [alert] = again.get_budget(tenant[0].id).alerts
        assert (alert.threshold, alert.spent_usd, alert.crossed_at) == (1, cost, clock.now())


# ---------------------------------------------------------------------- months
def test_a_new_utc_month_starts_from_its_own_spend(db_path):
    clock = VirtualClock(start=datetime(2026, 1, 31, 23, 59, 50, tzinfo=UTC))
    with Gateway.open(db_path, clock=clock, providers=healthy(), seed=3) as gw:
        tenant, key = gw.create_tenant("Acme")
        client = gw.connect(key)
        agent = client.create_agent(name="S", primary_provider="vendorA", fallback_provider="vendorB",
                                    system_prompt=PROMPT, max_output_tokens=40)
        session = client.create_session(agent.id)
        january = clock.run(client.send_message(session.id, "hello")).metadata.usage.cost_usd
        gw.set_budget(tenant.id, january * 3, alert_at=(0.3,))
        assert gw.get_budget(tenant.id).spent_usd == january and len(gw.get_budget(tenant.id).alerts) == 1
        clock.advance(60)
        budget = gw.get_budget(tenant.id)
        assert (budget.month, budget.spent_usd, budget.alerts) == ("2026-02", 0, [])
        february = clock.run(client.send_message(session.id, "hello again")).metadata.usage.cost_usd
        budget = gw.get_budget(tenant.id)
        assert budget.spent_usd == february and [a.threshold for a in budget.alerts] == [Decimal("0.3")]
        assert list(gw.sql("SELECT month FROM budget_alerts ORDER BY month")["month"]) == ["2026-01", "2026-02"]
    clock.advance(60)
    with Gateway.open(db_path, clock=clock) as again:  # the spend of the month is read back from DuckDB
        assert again.get_budget(tenant.id).spent_usd == february


# ---------------------------------------------------------------------- drafted sessions
def test_a_drafted_session_refused_leaves_nothing_and_one_admitted_is_stored_with_its_reply(gw, tenant, session, run):
    tenant_row, client = tenant
    agent_id = session.agent_id
    gw.set_budget(tenant_row.id, Decimal("0.000001"))
    draft = client.draft_session(agent_id, "customer-9")
    with pytest.raises(BudgetExceededError):
        run(client.send_message(draft.id, "Hello"))
    assert client.forget_draft(draft.id)
    with pytest.raises(GatewayError) as gone:
        client.get_session(draft.id)
    assert gone.value.code == "SESSION_NOT_FOUND"
    refusal = gw.sql("SELECT code, session_id FROM request_refusals")
    assert list(refusal.code) == ["BUDGET_EXCEEDED"] and refusal.session_id.isna().all()
    assert list(gw.sql("SELECT id FROM sessions").id) == [session.id]

    gw.set_budget(tenant_row.id, None)
    kept = client.draft_session(agent_id, "customer-9")
    assert gw.sql("SELECT count(*) AS n FROM sessions WHERE id = ?", [kept.id]).n[0] == 0  # not before its reply
    reply = run(client.send_message(kept.id, "Hello"))
    assert not client.forget_draft(kept.id)  # stored with its reply: kept
    stored = client.get_session(kept.id)
    assert (stored.customer_id, stored.last_activity_at) == ("customer-9", reply.message.created_at)
    assert [m.role for m in client.transcript(kept.id).messages] == ["user", "assistant"]
