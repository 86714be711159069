"""Agents: created, validated, partially updated, listed and persisted per tenant."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from vbgateway import Gateway, GatewayError

pytestmark = pytest.mark.tenant_clients

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
WIRE_KEYS = {"id", "name", "primaryProvider", "fallbackProvider", "systemPrompt", "enabledTools", "maxOutputTokens",
             "createdAt", "updatedAt"}
VALID = {"name": "Support", "primary_provider": "vendorA", "fallback_provider": "vendorB",
         "system_prompt": "You are helpful.", "enabled_tools": ["InvoiceLookup"]}


def agent_count(gw) -> int:
    return int(gw.sql("SELECT count(*) AS n FROM agents")["n"][0])


def error_fields(error: GatewayError) -> set[str]:
    """The fields named in a validation error, in snake_case."""
    fields = {e["field"].split(".")[0] for e in error.details.get("errors", [])}
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", f).lower() for f in fields}


def test_create_agent_with_all_fields(acme, clock):
    agent = acme.create_agent(**VALID)
    assert agent.id.startswith("agt_")
    assert (agent.name, agent.primary_provider, agent.fallback_provider) == ("Support", "vendorA", "vendorB")
    assert agent.system_prompt == "You are helpful."
    assert agent.enabled_tools == ["InvoiceLookup"]
    assert agent.created_at == agent.updated_at == clock.now()
    assert acme.get_agent(agent.id) == agent


def test_agent_wire_shape_has_exactly_the_contract_keys(agent):
    wire = agent.model_dump(by_alias=True, mode="json")
    assert set(wire) == WIRE_KEYS
    assert wire["primaryProvider"] == "vendorA" and wire["fallbackProvider"] == "vendorB"
    assert wire["enabledTools"] == ["InvoiceLookup"]


def test_agent_wire_timestamps_are_iso_utc_with_milliseconds(acme, clock):
    clock.advance(1.2345)
    wire = acme.create_agent(**VALID).model_dump(by_alias=True, mode="json")
    assert ISO_MS_Z.match(wire["createdAt"]) and ISO_MS_Z.match(wire["updatedAt"])
    assert wire["createdAt"] == "2026-01-01T00:00:01.234Z"


def test_create_accepts_a_camel_case_mapping(acme):
    agent = acme.create_agent({"name": "Billing", "primaryProvider": "vendorB", "fallbackProvider": "vendorA",
                               "systemPrompt": "Be exact.", "enabledTools": ["InvoiceLookup", "RefundIssue"]})
    assert (agent.primary_provider, agent.fallback_provider) == ("vendorB", "vendorA")
    assert agent.enabled_tools == ["InvoiceLookup", "RefundIssue"]


@pytest.mark.parametrize("fallback", ["none", None])
def test_none_string_and_null_both_mean_no_fallback(acme, fallback):
    agent = acme.create_agent({**VALID, "fallback_provider": fallback})
    assert agent.fallback_provider is None
    assert agent.model_dump(by_alias=True, mode="json")["fallbackProvider"] is None


def test_fallback_may_be_omitted(acme):
    agent = acme.create_agent(name="Solo", primary_provider="vendorA", system_prompt="p")
    assert agent.fallback_provider is None and agent.enabled_tools == []


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 123}, "name"),
    ({"name": None}, "name"),
    ({"system_prompt": ""}, "system_prompt"),
    ({"system_prompt": " \n\t"}, "system_prompt"),
    ({"system_prompt": 5}, "system_prompt"),
    ({"primary_provider": "vendorZ"}, "primary_provider"),
    ({"primary_provider": ""}, "primary_provider"),
    ({"fallback_provider": "vendorZ"}, "fallback_provider"),
    ({"fallback_provider": "vendorA"}, "fallback_provider"),
    ({"enabled_tools": "InvoiceLookup"}, "enabled_tools"),
    ({"enabled_tools": {"InvoiceLookup": True}}, "enabled_tools"),
    ({"enabled_tools": ["InvoiceLookup", 7]}, "enabled_tools"),
    ({"enabled_tools": ["has space"]}, "enabled_tools"),
    ({"enabled_tools": ["1starts_with_digit"]}, "enabled_tools"),
    ({"enabled_tools": [""]}, "enabled_tools"),
    ({"enabled_tools": ["x" * 65]}, "enabled_tools"),
    ({"enabled_tools": ["InvoiceLookup", "InvoiceLookup"]}, "enabled_tools"),
    ({"enabled_tools": [f"Tool{i}" for i in range(33)]}, "enabled_tools"),
    ({"temperature": 0.2}, "temperature"),
])
def test_invalid_agent_is_a_validation_error_naming_the_field_and_writes_nothing(acme, gw, change, field):
    before = agent_count(gw)
    with pytest.raises(GatewayError) as info:
        acme.create_agent(**{**VALID, **change})
    assert info.value.code == "VALIDATION_ERROR" and info.value.http_status == 400
    assert field in error_fields(info.value)
    assert agent_count(gw) == before
    assert acme.list_agents() == []


def test_missing_required_fields_are_each_named(acme):
    with pytest.raises(GatewayError) as info:
        acme.create_agent({})
    assert {"name", "primary_provider", "system_prompt"} <= error_fields(info.value)


def test_update_changes_only_the_given_fields(acme, agent, clock):
    clock.advance(90)
    updated = acme.update_agent(agent.id, system_prompt="You are brief.")
    assert updated.system_prompt == "You are brief."
    unchanged = {"id", "name", "primary_provider", "fallback_provider", "enabled_tools", "created_at"}
    assert updated.model_dump(include=unchanged) == agent.model_dump(include=unchanged)
    assert updated.created_at == agent.created_at
    assert updated.updated_at == agent.updated_at + timedelta(seconds=90) == clock.now()
    assert acme.get_agent(agent.id) == updated


def test_update_accepts_a_camel_case_mapping(acme, agent):
    updated = acme.update_agent(agent.id, {"enabledTools": [], "primaryProvider": "vendorB", "fallbackProvider": "vendorA"})
    assert (updated.primary_provider, updated.fallback_provider, updated.enabled_tools) == ("vendorB", "vendorA", [])


@pytest.mark.parametrize("fallback", [None, "none"])
def test_update_removes_the_fallback(acme, agent, fallback):
    updated = acme.update_agent(agent.id, fallback_provider=fallback)
    assert updated.fallback_provider is None
    assert acme.get_agent(agent.id).fallback_provider is None
    assert updated.system_prompt == agent.system_prompt


@pytest.mark.parametrize("change", [
    {"fallback_provider": "vendorA"},
    {"primary_provider": "vendorB"},
    {"primary_provider": "vendorZ"},
    {"name": ""},
    {"system_prompt": "  "},
    {"enabled_tools": ["a b"]},
    {"colour": "blue"},
    {"fallback_provider": None, "name": None},
])
def test_update_to_an_invalid_state_fails_and_changes_nothing(acme, agent, gw, clock, change):
    clock.advance(5)
    with pytest.raises(GatewayError) as info:
        acme.update_agent(agent.id, **change)
    assert info.value.code == "VALIDATION_ERROR"
    assert acme.get_agent(agent.id) == agent
    stored = gw.sql("SELECT name, primary_provider, fallback_provider, updated_at FROM agents WHERE id = ?", [agent.id])
    assert (stored["name"][0], stored["primary_provider"][0], stored["fallback_provider"][0]) == (
        agent.name, agent.primary_provider, agent.fallback_provider)
    assert stored["updated_at"][0].to_pydatetime() == agent.updated_at


@pytest.mark.parametrize("agent_id", ["agt_doesnotexist000000", "", "ses_x", None, 42, "..", ".", "agt_a/b", "a?b#c",
                                      "agt_%2F", "x" * 300])
def test_get_agent_of_an_unknown_id_is_agent_not_found(acme, agent_id):
    with pytest.raises(GatewayError) as info:
        acme.get_agent(agent_id)
    assert (info.value.code, info.value.http_status) == ("AGENT_NOT_FOUND", 404)


def test_update_agent_of_an_unknown_id_is_agent_not_found(acme):
    with pytest.raises(GatewayError) as info:
        acme.update_agent("agt_doesnotexist000000", name="New")
    assert (info.value.code, info.value.http_status) == ("AGENT_NOT_FOUND", 404)


def test_list_agents_returns_the_tenants_agents_in_creation_order(acme, globex):
    created = [acme.create_agent(**{**VALID, "name": f"Agent {i}"}) for i in range(8)]
    globex.create_agent(**VALID)
    assert [a.id for a in acme.list_agents()] == [a.id for a in created]


def test_list_agents_keeps_creation_order_across_clock_ticks(acme, clock):
    created = []
    for i in range(5):
        clock.advance(1)
        created.append(acme.create_agent(**{**VALID, "name": f"Agent {i}"}))
    assert [a.id for a in acme.list_agents()] == [a.id for a in created]


def test_agents_survive_closing_and_reopening_the_database(gw, acme, agent, db_path, clock):
    updated = acme.update_agent(agent.id, name="Renamed", fallback_provider=None)
    tenant_id = acme.id
    gw.close()
    with Gateway.open(db_path, clock=clock) as again:
        client = again.as_tenant(tenant_id)
        assert client.get_agent(agent.id) == updated
        assert client.list_agents() == [updated]
