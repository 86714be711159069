"""Agents' max_output_tokens: 1024 unless set, validated, stored (older databases too), and never exceeded."""

from __future__ import annotations

import asyncio

import duckdb
import pytest

from vbgateway import Gateway, GatewayError
from vbgateway.providers import ChatTurn, ProviderRequest, VendorA, VendorB
from vbgateway.store.schema import MIGRATIONS

pytestmark = pytest.mark.tenant_clients

SPEC = {"name": "Support", "primary_provider": "vendorA", "fallback_provider": "vendorB",
        "system_prompt": "You are helpful."}


def test_an_agent_may_answer_1024_tokens_unless_told_otherwise(acme):
    agent = acme.create_agent(**SPEC)
    assert agent.max_output_tokens == 1024
    assert agent.model_dump(by_alias=True, mode="json")["maxOutputTokens"] == 1024


def test_max_output_tokens_is_set_changed_and_kept(acme, gw, db_path, clock):
    agent = acme.create_agent(**SPEC, max_output_tokens=64)
    assert acme.get_agent(agent.id).max_output_tokens == 64
    updated = acme.update_agent(agent.id, {"maxOutputTokens": 8})
    assert updated.max_output_tokens == 8 and updated.system_prompt == SPEC["system_prompt"]
    assert acme.update_agent(agent.id, name="Renamed").max_output_tokens == 8  # a patch without it keeps it
    stored = gw.sql("SELECT max_output_tokens FROM agents WHERE id = ?", [agent.id])
    assert list(stored["max_output_tokens"]) == [8]


@pytest.mark.parametrize("value", [0, -1, 32_769, "100", 1.5, 1e300, float("nan"), True, None, [100]])
def test_a_bad_max_output_tokens_is_refused_and_changes_nothing(acme, gw, value):
    with pytest.raises(GatewayError) as info:
        acme.create_agent(**SPEC, max_output_tokens=value)
    assert info.value.code == "VALIDATION_ERROR" and info.value.http_status == 400
    assert acme.list_agents() == []
    agent = acme.create_agent(**SPEC, max_output_tokens=50)
    with pytest.raises(GatewayError) as info:
        acme.update_agent(agent.id, max_output_tokens=value)
    assert info.value.code == "VALIDATION_ERROR"
    assert acme.get_agent(agent.id).max_output_tokens == 50


@pytest.mark.parametrize("limit", [1, 32_768, 100.0])
def test_the_ends_of_the_range_and_whole_numbers_written_as_floats_are_accepted(acme, limit):
    """100.0 is an integer to JSON Schema (the OpenAPI document's language), so it is taken as 100."""
    agent = acme.create_agent(**SPEC, max_output_tokens=limit)
    assert agent.max_output_tokens == limit and isinstance(agent.max_output_tokens, int)


@pytest.mark.parametrize("limit", [1, 3, 10])
def test_a_reply_never_holds_more_output_tokens_than_its_agent_allows(acme, run, limit):
    agent = acme.create_agent(**SPEC, max_output_tokens=limit)
    session = acme.create_session(agent.id)
    for i in range(5):
        reply = run(acme.send_message(session.id, f"question {i}: where is my invoice?"))
        assert 1 <= reply.metadata.usage.tokens_out <= limit
        assert len(reply.message.content) <= 4 * limit


@pytest.mark.parametrize("vendor", [VendorA, VendorB])
def test_the_simulated_vendors_stop_at_the_requests_limit(vendor):
    request = ProviderRequest("Be kind.", (ChatTurn("user", "hello"),), (), "req_1", max_output_tokens=2)
    unbounded = ProviderRequest("Be kind.", (ChatTurn("user", "hello"),), (), "req_1")
    provider = vendor(seed=3, failure_rate=0.0, rate_limit_rate=0.0, latency_ms=(0, 0))
    same = vendor(seed=3, failure_rate=0.0, rate_limit_rate=0.0, latency_ms=(0, 0))
    cut, whole = asyncio.run(provider.complete(request)), asyncio.run(same.complete(unbounded))
    assert cut.tokens_out == 2 and whole.tokens_out > 2
    assert whole.text.startswith(cut.text) and cut.tokens_in == whole.tokens_in


@pytest.mark.embedded_only
def test_agents_of_a_database_from_before_the_column_answer_1024_tokens(tmp_path, clock):
    from test_schema import FROZEN_MIGRATION_1  # the schema as migration 1 wrote it

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(FROZEN_MIGRATION_1)
        con.execute("INSERT INTO tenants VALUES ('tnt_old', 'Old Corp', '2025-06-01 00:00:00+00')")
        con.execute("INSERT INTO agents VALUES ('agt_old', 'tnt_old', 'Old agent', 'vendorA', NULL, 'Be kind.', [], "
                    "'2025-06-01 00:00:00+00', '2025-06-01 00:00:00+00')")
    with Gateway.open(path, clock=clock) as gw:
        agent = gw.as_tenant("tnt_old").get_agent("agt_old")
        assert agent.max_output_tokens == 1024 and agent.name == "Old agent"
        assert gw.sql("SELECT max(version) AS v FROM schema_migrations")["v"][0] == MIGRATIONS[-1].version
