"""Specification of billing: exact decimal costs, one usage event per reply,
reconciliation over many seeded messages, and input that is refused (and
billed nothing) or stored exactly as sent."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from vbgateway import Gateway, GatewayError, PriceTable, VirtualClock
from vbgateway.errors import AllProvidersFailedError, ValidationError
from vbgateway.providers import VendorA, VendorB

pytestmark = pytest.mark.tenant_clients

START = datetime(2026, 1, 1, tzinfo=UTC)
HEALTHY = {"failure_rate": 0.0, "rate_limit_rate": 0.0}
PRICE = {"vendorA": Decimal("0.002"), "vendorB": Decimal("0.003")}


def fetch(gw: Gateway, sql: str, params: list | None = None) -> list[tuple]:
    """Rows straight from DuckDB (DECIMAL columns as ``Decimal``), after the gateway applied what is pending."""
    gw.sql("SELECT 1")  # every read through the gateway applies pending journal records first
    con = duckdb.connect(str(gw.store.path))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def count(gw: Gateway, table: str) -> int:
    return int(gw.sql(f"SELECT count(*) AS n FROM {table}")["n"][0])


def expected_cost(provider: str, tokens_in: int, tokens_out: int) -> Decimal:
    return Decimal(tokens_in + tokens_out) * PRICE[provider] / 1000


@pytest.fixture
def healthy(tmp_path, tenant_client, runner):
    """A gateway whose vendors always answer at once: one attempt per reply; yields (run, gateway, tenant client)."""
    clock = VirtualClock(start=START)
    gw = Gateway.open(tmp_path / "billing.duckdb", clock=clock,
                      providers={"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)},
                      seed=3)
    _, key = gw.create_tenant("Billing GmbH")
    yield runner(clock), gw, tenant_client(gw, key)
    gw.close()


# --- the price table ------------------------------------------------------------------------


def test_the_contract_example_120_plus_40_tokens_at_0_003_costs_exactly_0_00048() -> None:
    cost = PriceTable().cost("vendorB", 120, 40)
    assert isinstance(cost, Decimal)
    assert cost == Decimal("0.00048")


@pytest.mark.parametrize(("provider", "tokens_in", "tokens_out", "cost"), [
    ("vendorA", 0, 0, "0"),
    ("vendorA", 1, 0, "0.000002"),
    ("vendorB", 1, 0, "0.000003"),
    ("vendorA", 120, 40, "0.00032"),
    ("vendorB", 120, 40, "0.00048"),
    ("vendorA", 12345, 6789, "0.038268"),
    ("vendorB", 12345, 6789, "0.057402"),
    ("vendorB", 8001, 7, "0.024024"),
])
def test_cost_is_tokens_in_plus_out_over_1000_times_the_price_exactly(
        provider: str, tokens_in: int, tokens_out: int, cost: str) -> None:
    assert PriceTable().cost(provider, tokens_in, tokens_out) == Decimal(cost)


def test_the_default_prices_are_0_002_for_vendor_a_and_0_003_for_vendor_b() -> None:
    assert PriceTable().as_dict() == PRICE


def test_a_seven_decimal_price_on_a_single_token_is_still_exact() -> None:
    assert PriceTable({"p": "0.0000001"}).cost("p", 1, 0) == Decimal("1E-10")


@pytest.mark.parametrize("price", [0.002, 1.0, float("nan")], ids=["0.002", "1.0", "nan"])
def test_price_table_rejects_floats(price: float) -> None:
    with pytest.raises(ValidationError):
        PriceTable({"vendorA": price})


@pytest.mark.parametrize("price", ["-0.001", Decimal("-1"), -1], ids=["str", "decimal", "int"])
def test_price_table_rejects_negative_prices(price) -> None:
    with pytest.raises(ValidationError):
        PriceTable({"vendorA": price})


@pytest.mark.parametrize("price", ["0.00000001", Decimal("0.12345678"), "1E-8"])
def test_price_table_rejects_more_than_seven_decimal_places(price) -> None:
    with pytest.raises(ValidationError):
        PriceTable({"vendorA": price})


@pytest.mark.parametrize("price", ["NaN", "Infinity", "-Infinity"])
def test_price_table_rejects_non_finite_prices(price: str) -> None:
    with pytest.raises(ValidationError):
        PriceTable({"vendorA": price})


@pytest.mark.parametrize("price", ["0.0000001", Decimal("0.002"), 0, 2, "15"])
def test_price_table_accepts_strings_decimals_and_ints_up_to_seven_places(price) -> None:
    assert PriceTable({"vendorA": price}).price_per_1k("vendorA") == Decimal(str(price))


def test_a_gateway_refuses_a_provider_without_a_price(tmp_path) -> None:
    with pytest.raises(GatewayError) as info:
        Gateway.open(tmp_path / "unpriced.duckdb", providers={"vendorA": VendorA(seed=1), "vendorC": VendorB(seed=2)},
                     clock=VirtualClock(start=START))
    assert info.value.code == "VALIDATION_ERROR" and "vendorC" in info.value.message
    Gateway.open(tmp_path / "unpriced.duckdb", clock=VirtualClock(start=START)).close()  # the file was let go


# --- the cost of a reply --------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["vendorA", "vendorB"])
def test_reply_cost_and_usage_event_cost_agree_to_the_last_digit(healthy, provider: str) -> None:
    run, gw, tenant = healthy
    agent = tenant.create_agent(name="P", primary_provider=provider, system_prompt="You are a billing test.")
    session = tenant.create_session(agent.id)
    reply = run(tenant.send_message(session.id, "How much does this cost?"))
    usage = reply.metadata.usage
    assert reply.metadata.provider_used == provider
    assert usage.pricing.usd_per_1k_tokens == PRICE[provider]
    assert usage.cost_usd == expected_cost(provider, usage.tokens_in, usage.tokens_out)
    [(cost, price, tokens_in, tokens_out, row_provider)] = fetch(
        gw, "SELECT cost_usd, usd_per_1k_tokens, tokens_in, tokens_out, provider FROM usage_events")
    assert isinstance(cost, Decimal)
    assert str(cost) == str(usage.cost_usd)
    assert (price, tokens_in, tokens_out, row_provider) == (PRICE[provider], usage.tokens_in, usage.tokens_out,
                                                            provider)


def test_the_wire_usage_shows_tokens_cost_and_price_as_numbers(healthy) -> None:
    run, _gw, tenant = healthy
    agent = tenant.create_agent(name="P", primary_provider="vendorB", system_prompt="You are a billing test.")
    session = tenant.create_session(agent.id)
    reply = run(tenant.send_message(session.id, "Hello"))
    usage = reply.model_dump(by_alias=True, mode="json")["metadata"]["usage"]
    assert usage == {"tokensIn": reply.metadata.usage.tokens_in, "tokensOut": reply.metadata.usage.tokens_out,
                     "costUsd": float(reply.metadata.usage.cost_usd), "pricing": {"usdPer1kTokens": 0.003}}


def test_custom_prices_are_charged(tmp_path) -> None:
    clock = VirtualClock(start=START)
    with Gateway.open(tmp_path / "custom.duckdb", clock=clock, prices={"vendorA": "0.0123457", "vendorB": "1"},
                      providers={"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)},
                      seed=3) as gw:
        _, key = gw.create_tenant("Custom")
        tenant = gw.connect(key)
        agent = tenant.create_agent(name="P", primary_provider="vendorA", system_prompt="You are priced.")
        session = tenant.create_session(agent.id)
        usage = clock.run(tenant.send_message(session.id, "Hello")).metadata.usage
        assert usage.cost_usd == Decimal(usage.tokens_in + usage.tokens_out) * Decimal("0.0123457") / 1000
        [(cost,)] = fetch(gw, "SELECT cost_usd FROM usage_events")
        assert cost == usage.cost_usd


# --- reconciliation over many seeded messages -------------------------------------------------

MESSAGES_PER_SESSION = 20
SESSIONS = 10


class Traffic:
    """200 seeded messages through flaky vendors, with everything each reply said."""

    def __init__(self, path: Path) -> None:
        self.clock = VirtualClock(start=START)
        self.gw = Gateway.open(path, clock=self.clock, seed=2026, providers={
            "vendorA": VendorA(seed=11, failure_rate=0.3),
            "vendorB": VendorB(seed=12, failure_rate=0.1, rate_limit_rate=0.2)})
        _, key = self.gw.create_tenant("Traffic Inc")
        tenant = self.gw.connect(key)
        agents = [
            tenant.create_agent(name="A then B", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt="You are helpful."),
            tenant.create_agent(name="B then A", primary_provider="vendorB", fallback_provider="vendorA",
                                system_prompt="You are a very patient support agent who explains things slowly."),
            tenant.create_agent(name="A alone", primary_provider="vendorA", fallback_provider=None,
                                system_prompt="Short answers only."),
        ]
        self.replies = []
        self.failures = 0
        self.token_mismatches: list[tuple[str, int, int]] = []

        async def conversation(index: int) -> None:
            agent = agents[index % len(agents)]
            session = tenant.create_session(agent.id, customer_id=f"customer_{index}")
            history: list[str] = []
            for turn in range(MESSAGES_PER_SESSION):
                content = f"Question {turn} from customer {index}: " + "why? " * ((index * 7 + turn * 3) % 23)
                try:
                    reply = await tenant.send_message(session.id, content)
                except AllProvidersFailedError:
                    self.failures += 1
                    continue
                chars = len(agent.system_prompt) + sum(map(len, history)) + len(content)
                if reply.metadata.usage.tokens_in != math.ceil(chars / 4):
                    self.token_mismatches.append((reply.message.id, reply.metadata.usage.tokens_in,
                                                  math.ceil(chars / 4)))
                history += [content, reply.message.content]
                self.replies.append(reply)

        async def main() -> None:
            await asyncio.gather(*(conversation(i) for i in range(SESSIONS)))

        self.clock.run(main())


@pytest.fixture(scope="module")
def traffic(tmp_path_factory):
    result = Traffic(tmp_path_factory.mktemp("traffic") / "traffic.duckdb")
    yield result
    result.gw.close()


def test_the_seeded_traffic_mixes_vendors_fallbacks_and_failures(traffic) -> None:
    assert len(traffic.replies) + traffic.failures == SESSIONS * MESSAGES_PER_SESSION
    assert {r.metadata.provider_used for r in traffic.replies} == {"vendorA", "vendorB"}
    assert any(r.metadata.fallback_used for r in traffic.replies)
    assert any(len(r.metadata.attempts) > 1 for r in traffic.replies)


def test_the_sum_of_usage_event_costs_equals_the_sum_of_reply_costs_exactly(traffic) -> None:
    [(total,)] = fetch(traffic.gw, "SELECT SUM(cost_usd) FROM usage_events")
    assert isinstance(total, Decimal)
    assert total == sum((r.metadata.usage.cost_usd for r in traffic.replies), Decimal(0))


def test_each_usage_event_has_the_cost_of_its_reply_to_the_last_digit(traffic) -> None:
    stored = dict(fetch(traffic.gw, "SELECT message_id, cost_usd FROM usage_events"))
    assert {message_id: str(cost) for message_id, cost in stored.items()} == {
        r.message.id: str(r.metadata.usage.cost_usd) for r in traffic.replies}


def test_every_reply_costs_its_tokens_at_its_providers_price(traffic) -> None:
    for reply in traffic.replies:
        usage = reply.metadata.usage
        assert usage.cost_usd == expected_cost(reply.metadata.provider_used, usage.tokens_in, usage.tokens_out)


def test_there_is_exactly_one_usage_event_per_assistant_message(traffic) -> None:
    rows = fetch(traffic.gw, """
        SELECT m.id, count(u.id) FROM messages m LEFT JOIN usage_events u ON u.message_id = m.id
        WHERE m.role = 'assistant' GROUP BY m.id""")
    assert len(rows) == len(traffic.replies)
    assert {n for _, n in rows} == {1}
    orphans = fetch(traffic.gw, """
        SELECT count(*) FROM usage_events u LEFT JOIN messages m ON m.id = u.message_id AND m.role = 'assistant'
        WHERE m.id IS NULL""")
    assert orphans == [(0,)]


def test_every_user_message_has_exactly_one_assistant_reply_with_the_same_request_id(traffic) -> None:
    rows = fetch(traffic.gw, """
        SELECT request_id, count(*) FILTER (WHERE role = 'user'), count(*) FILTER (WHERE role = 'assistant'),
               max(position) FILTER (WHERE role = 'assistant') - max(position) FILTER (WHERE role = 'user')
        FROM messages GROUP BY request_id""")
    assert len(rows) == len(traffic.replies)
    assert {(users, assistants, gap) for _, users, assistants, gap in rows} == {(1, 1, 1)}


def test_usage_events_carry_the_request_id_of_their_messages(traffic) -> None:
    mismatched = fetch(traffic.gw, """
        SELECT count(*) FROM usage_events u JOIN messages m ON m.id = u.message_id WHERE m.request_id <> u.request_id""")
    assert mismatched == [(0,)]


def test_failed_requests_are_logged_but_never_billed(traffic) -> None:
    assert traffic.failures > 0
    [(unbilled_requests,)] = fetch(traffic.gw, """
        SELECT count(DISTINCT p.request_id) FROM provider_call_events p
        WHERE p.request_id NOT IN (SELECT request_id FROM usage_events)""")
    assert unbilled_requests == traffic.failures


def test_tokens_in_follow_ceil_of_system_prompt_plus_history_over_four(traffic) -> None:
    assert traffic.token_mismatches == []


def test_tokens_out_follow_ceil_of_the_reply_over_four(traffic) -> None:
    assert all(r.metadata.usage.tokens_out == math.ceil(len(r.message.content) / 4) for r in traffic.replies)


# --- refused input is billed nothing ----------------------------------------------------------


@pytest.mark.parametrize("content", [
    "", "   ", "\n\t ", "x" * 32_001, 42, None, b"bytes", ["list"], "nul \x00 inside", "lone surrogate \ud800",
], ids=["empty", "spaces", "whitespace", "32001-chars", "int", "none", "bytes", "list", "nul", "surrogate"])
def test_invalid_content_is_a_validation_error_and_nothing_is_written_or_billed(
        gw, acme, agent, run, row_counts, content) -> None:
    session = acme.create_session(agent.id)
    before = row_counts()
    with pytest.raises(GatewayError) as info:
        run(acme.send_message(session.id, content))
    assert (info.value.code, info.value.http_status) == ("VALIDATION_ERROR", 400)
    assert row_counts() == before
    assert gw.providers["vendorA"].calls == gw.providers["vendorB"].calls == 0


def test_content_of_exactly_32000_characters_is_accepted_and_billed(healthy) -> None:
    run, gw, tenant = healthy
    agent = tenant.create_agent(name="P", primary_provider="vendorA", system_prompt="abcd")
    session = tenant.create_session(agent.id)
    reply = run(tenant.send_message(session.id, "y" * 32_000))
    assert reply.metadata.usage.tokens_in == 1 + 8000
    assert len(tenant.transcript(session.id).messages[0].content) == 32_000
    assert count(gw, "usage_events") == 1


# --- hostile content round-trips -------------------------------------------------------------

HOSTILE = [
    "'; DROP TABLE usage_events; --",
    "Robert'); DELETE FROM messages WHERE ('1'='1",
    'He said "hello" and \'goodbye\' and `whoami` and $(rm -rf /)',
    "emoji 🎉👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "line one\nline two\r\nline three\ttabbed\n",
    "RTL \u202eoverride\u202c مرحبا بالعالم שלום עולם",
    "back\\slash %_ wildcards {json: [1, 2]} <script>alert(1)</script>",
    "  leading and trailing spaces  ",
    "zero\u200bwidth and combining e\u0301",
]


@pytest.mark.parametrize("content", HOSTILE, ids=[f"hostile-{i}" for i in range(len(HOSTILE))])
def test_hostile_content_round_trips_exactly_through_the_transcript(gw, acme, agent, run, content: str) -> None:
    session = acme.create_session(agent.id)
    reply = run(acme.send_message(session.id, content))
    messages = acme.transcript(session.id).messages
    assert [(m.role, m.content) for m in messages] == [("user", content), ("assistant", reply.message.content)]
    stored = gw.sql("SELECT content FROM messages WHERE session_id = ? AND role = 'user'", [session.id])
    assert list(stored["content"]) == [content]
    assert count(gw, "usage_events") == 1
