"""Specification of prices with input and output rates, versioned in time, and of what is billed with them.

A reply is billed at the rates in effect when it is made and records them;
invoices keep one line per pair of rates and still add up to the cent;
``reprice`` follows versions; a table of single rates is what it always was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vbgateway import Gateway, PriceTable, VirtualClock
from vbgateway.analytics import billed_events_digest, invoice_lines
from vbgateway.errors import GatewayError
from vbgateway.pricing import BEGINNING, Rates
from vbgateway.providers import VendorA, VendorB
from vbgateway.reports import invoice_data
from vbgateway.simulation import reprice

START = datetime(2026, 1, 1, tzinfo=UTC)
CHANGE = datetime(2026, 1, 15, tzinfo=UTC)
HEALTHY = {"failure_rate": 0.0, "rate_limit_rate": 0.0, "latency_ms": (0, 0)}
TOKENS = st.integers(min_value=0, max_value=10**9)


# --- rates and the table ----------------------------------------------------------------------


@given(TOKENS, TOKENS, st.decimals(min_value=0, max_value=100, places=7, allow_nan=False, allow_infinity=False))
def test_a_single_rate_costs_exactly_what_it_did_per_1k_tokens(tokens_in, tokens_out, per_1k):
    old = (Decimal(tokens_in + tokens_out) * per_1k / 1000).quantize(Decimal("1e-10"))
    assert Rates.per_1k(per_1k).cost(tokens_in, tokens_out) == old


@given(TOKENS, TOKENS)
def test_input_and_output_are_billed_apart_exactly(tokens_in, tokens_out):
    rates = Rates.of("0.15", "0.6")
    assert rates.cost(tokens_in, tokens_out) == (tokens_in * Decimal("0.15") + tokens_out * Decimal("0.6")) / 10**6


def test_the_single_rate_of_two_rates_is_the_higher_one_per_1k():
    assert Rates.of("2.5", "10").usd_per_1k_tokens == Decimal("0.01")
    assert Rates.per_1k("0.002").usd_per_1k_tokens == Decimal("0.002")  # as given


def test_a_table_of_single_rates_hashes_as_before_prices_had_versions():
    assert PriceTable().digest() == "4e5a58c42ca714af"  # the digest printed on earlier invoices
    assert PriceTable({"vendorA": "0.004", "vendorB": "0.003"}).digest() == "c376a5d3c14d5c98"
    versioned = PriceTable({"vendorA": [Rates.per_1k("0.002"), Rates.of("4", "8", CHANGE)], "vendorB": "0.003"})
    assert versioned.digest() != PriceTable().digest()


def test_the_rates_in_effect_change_at_the_effective_time():
    table = PriceTable({"vendorA": [Rates.per_1k("0.002"), Rates.of("4", "8", CHANGE)]})
    assert table.rates_at("vendorA", CHANGE - timedelta(microseconds=1)).usd_per_1m_input == 2
    assert table.rates_at("vendorA", CHANGE).usd_per_1m_input == 4
    assert table.rates_at("vendorA").usd_per_1m_output == 8  # no time: the newest
    assert table.cost("vendorA", 1000, 1000, START) == Decimal("0.004")
    assert table.price_per_1k("vendorA", START) == Decimal("0.002")


def test_no_price_before_the_first_version_is_a_clear_error():
    table = PriceTable({"vendorX": [Rates.of("1", "1", CHANGE)]})
    with pytest.raises(GatewayError) as info:
        table.rates_at("vendorX", START)
    assert info.value.code == "VALIDATION_ERROR" and "in effect" in info.value.message


@pytest.mark.parametrize("bad", [0.5, "1.23456", "-1", "abc", True])
def test_bad_rates_are_refused(bad):
    with pytest.raises(GatewayError) as info:
        Rates.of(bad, "1")
    assert info.value.code == "VALIDATION_ERROR"


def test_two_versions_at_one_time_are_refused():
    with pytest.raises(GatewayError):
        PriceTable({"vendorA": [Rates.of("1", "1"), Rates.of("2", "2")]})


def test_a_gateway_refuses_a_provider_whose_first_price_starts_late(tmp_path):
    with pytest.raises(GatewayError) as info:
        Gateway.open(tmp_path / "late.duckdb", clock=VirtualClock(start=START),
                     prices={"vendorA": [Rates.of("1", "1", CHANGE)], "vendorB": "0.003"})
    assert "from the start" in info.value.message


# --- billing across a price change -------------------------------------------------------------


@pytest.fixture
def changed(tmp_path):
    """Replies on vendorA before and after its price changes from 0.002 per 1k to 4 in / 8 out per 1M."""
    clock = VirtualClock(start=START)
    prices = PriceTable({"vendorA": [Rates.per_1k("0.002"), Rates.of("4", "8", CHANGE)], "vendorB": "0.003"})
    gw = Gateway.open(tmp_path / "gw.duckdb", clock=clock, prices=prices, seed=3,
                      providers={"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)})
    tenant, key = gw.create_tenant("Acme")
    client = gw.connect(key)
    agent = client.create_agent(name="A", primary_provider="vendorA", system_prompt="You are billed.")
    session = client.create_session(agent.id)
    replies = [clock.run(client.send_message(session.id, f"message {i}")) for i in range(3)]
    clock.advance((CHANGE - clock.now()).total_seconds())
    replies += [clock.run(client.send_message(session.id, f"later {i}")) for i in range(2)]
    yield gw, tenant, replies
    gw.close()


def test_each_reply_is_billed_at_the_rates_in_effect_when_it_was_made(changed):
    _, _, replies = changed
    pricing = [r.metadata.usage.pricing for r in replies]
    assert [(p.usd_per_1k_tokens, p.usd_per_1m_input, p.usd_per_1m_output) for p in pricing] == (
        [(Decimal("0.002"), None, None)] * 3 + [(Decimal("0.008"), 4, 8)] * 2)  # per 1M only when they differ
    early, late = replies[0].metadata.usage, replies[-1].metadata.usage
    assert early.cost_usd == (early.tokens_in + early.tokens_out) * Decimal("0.002") / 1000
    assert late.cost_usd == (late.tokens_in * 4 + late.tokens_out * 8) / Decimal(10**6)


def test_a_single_rate_keeps_the_contract_shape_and_two_rates_add_theirs(changed):
    _, _, replies = changed
    assert replies[0].model_dump(by_alias=True, mode="json")["metadata"]["usage"]["pricing"] == {
        "usdPer1kTokens": 0.002}
    assert replies[-1].model_dump(by_alias=True, mode="json")["metadata"]["usage"]["pricing"] == {
        "usdPer1kTokens": 0.008, "usdPer1mInput": 4.0, "usdPer1mOutput": 8.0}


def test_the_usage_event_records_the_rates_it_was_billed_at(changed):
    gw, _, replies = changed
    rows = gw.store.query_rows("SELECT usd_per_1k_tokens, usd_per_1m_input, usd_per_1m_output, cost_usd "
                               "FROM usage_events ORDER BY created_at")
    assert [r[:3] for r in rows] == [(Decimal("0.002"), None, None)] * 3 + [(Decimal("0.008"), 4, 8)] * 2
    assert [r[3] for r in rows] == [r.metadata.usage.cost_usd for r in replies]


def test_the_invoice_has_a_line_per_pair_of_rates_and_adds_up_to_the_cent(changed):
    gw, tenant, replies = changed
    lines = invoice_lines(gw, tenant.id, "2026-01")
    assert [(p, Decimal(i), Decimal(o), n) for p, i, o, n in
            zip(lines.provider, lines.usd_per_1m_input, lines.usd_per_1m_output, lines.replies, strict=True)] == [
        ("vendorA", 2, 2, 3), ("vendorA", 4, 8, 2)]
    count, total, _ = billed_events_digest(gw, tenant.id, "2026-01")
    assert sum((Decimal(a) for a in lines.amount_usd), Decimal(0)) == total == sum(
        (r.metadata.usage.cost_usd for r in replies), Decimal(0))
    data = invoice_data(gw, tenant.id, "2026-01")
    assert data.meta["prices_match"] and data.meta["event_count"] == count == 5


def test_reprice_follows_the_versions_of_the_what_if_table(changed):
    gw, _, replies = changed
    what_if = PriceTable({"vendorA": [Rates.of("1", "1"), Rates.of("10", "20", CHANGE)], "vendorB": "0.003"})
    total = reprice(gw, what_if).set_index("tenant").loc["(all tenants)"]
    early, late = replies[:3], replies[3:]
    expected = (sum(r.metadata.usage.tokens_in + r.metadata.usage.tokens_out for r in early)
                + sum(r.metadata.usage.tokens_in * 10 + r.metadata.usage.tokens_out * 20 for r in late))
    assert total.whatif_cost_usd == Decimal(expected) / 10**6
    assert total.cost_usd == sum((r.metadata.usage.cost_usd for r in replies), Decimal(0))


def test_events_billed_at_a_single_rate_name_it_once_and_invoices_read_it_as_both(changed):
    gw, tenant, _ = changed
    path = gw.store.path
    gw.close()
    with duckdb.connect(str(path)) as con:  # an event billed before prices had two rates looks the same
        assert con.execute("SELECT count(*) FROM usage_events WHERE usd_per_1m_input IS NULL "
                           "AND usd_per_1k_tokens = 0.002").fetchone() == (3,)
    with Gateway.open_reader(path) as reader:
        lines = invoice_lines(reader, tenant.id, "2026-01")
    assert [(Decimal(i), Decimal(o)) for i, o in zip(lines.usd_per_1m_input, lines.usd_per_1m_output,
                                                      strict=True)] == [(2, 2), (4, 8)]


def test_a_new_price_version_reaches_a_running_gateway_at_once(tmp_path):
    from vbgateway.providers.admin import set_prices

    clock = VirtualClock(start=START)
    with Gateway.open(tmp_path / "gw.duckdb", clock=clock, seed=1,
                      providers={"vendorA": VendorA(seed=1, **HEALTHY), "vendorB": VendorB(seed=2, **HEALTHY)}) as gw:
        client = gw.connect(gw.create_tenant("Acme")[1])
        session = client.create_session(client.create_agent(name="A", primary_provider="vendorA",
                                                            system_prompt="x").id)
        set_prices(gw, "vendorA", "5", "6", START + timedelta(hours=1))
        before = clock.run(client.send_message(session.id, "hi"))
        clock.advance(3600)
        after = clock.run(client.send_message(session.id, "hi again"))
        stored = gw.store.query_rows("SELECT provider, effective_from FROM price_versions")
    assert before.metadata.usage.pricing.usd_per_1k_tokens == Decimal("0.002")
    assert (after.metadata.usage.pricing.usd_per_1m_input, after.metadata.usage.pricing.usd_per_1m_output) == (5, 6)
    assert [(p, e.astimezone(UTC)) for p, e in stored] == [("vendorA", START + timedelta(hours=1))]
    assert BEGINNING < START
