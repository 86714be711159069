"""Tenant isolation: another tenant's ids behave exactly like ids that do not exist."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vbgateway import Gateway, GatewayError
from vbgateway.audio import synthesize

pytestmark = pytest.mark.tenant_clients

UNKNOWN = SimpleNamespace(agent="agt_" + "0" * 20, session="ses_" + "0" * 20)
WAV = synthesize("hello there")

OPERATIONS = {
    "get_agent": lambda client, ids, run: client.get_agent(ids.agent),
    "update_agent": lambda client, ids, run: client.update_agent(ids.agent, name="Hijacked"),
    "update_agent_remove_fallback": lambda client, ids, run: client.update_agent(ids.agent, fallback_provider=None),
    "create_session": lambda client, ids, run: client.create_session(ids.agent, customer_id="c9"),
    "get_session": lambda client, ids, run: client.get_session(ids.session),
    "transcript": lambda client, ids, run: client.transcript(ids.session),
    "send_message": lambda client, ids, run: run(client.send_message(ids.session, "Hello")),
    "send_message_idempotent": lambda client, ids, run: run(client.send_message(ids.session, "Hello",
                                                                                idempotency_key="k-1")),
    "send_voice": lambda client, ids, run: run(client.send_voice(ids.session, WAV)),
}


def refusal(action) -> tuple:
    """Everything a caller can observe of a refusal, minus the id it echoes back."""
    with pytest.raises(GatewayError) as info:
        action()
    error = info.value
    return type(error), error.code, error.http_status, error.message, sorted(error.details)


@pytest.fixture
def acme_ids(acme, agent, run):
    """Ids owned by acme, with some history behind them."""
    session = acme.create_session(agent.id, customer_id="c1")
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    return SimpleNamespace(agent=agent.id, session=session.id)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_another_tenants_id_is_refused_exactly_like_an_unknown_id(globex, acme_ids, run, operation):
    action = OPERATIONS[operation]
    foreign = refusal(lambda: action(globex, acme_ids, run))
    unknown = refusal(lambda: action(globex, UNKNOWN, run))
    assert foreign == unknown
    assert foreign[2] == 404


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_refused_foreign_id_writes_nothing(globex, acme_ids, row_counts, gw, run, operation):
    before = row_counts()
    agents_before = gw.sql("SELECT * FROM agents ORDER BY id")
    refusal(lambda: OPERATIONS[operation](globex, acme_ids, run))
    assert row_counts() == before
    assert gw.sql("SELECT * FROM agents ORDER BY id").equals(agents_before)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_isolation_holds_with_cold_caches_after_reopening(gw, acme, globex, acme_ids, db_path, clock, operation):
    globex_id = globex.id
    gw.close()
    with Gateway.open(db_path, clock=clock) as again:
        other = again.as_tenant(globex_id)
        run = again.clock.run
        action = OPERATIONS[operation]
        assert refusal(lambda: action(other, acme_ids, run)) == refusal(lambda: action(other, UNKNOWN, run))


def test_the_owner_still_sees_its_data_after_foreign_attempts(acme, globex, acme_ids, run):
    for operation in OPERATIONS.values():
        refusal(lambda operation=operation: operation(globex, acme_ids, run))
    assert acme.get_agent(acme_ids.agent).name == "Support"
    assert len(acme.transcript(acme_ids.session).messages) == 2
    assert globex.list_agents() == []


def test_the_same_idempotency_key_in_two_tenants_is_independent(acme, globex, acme_ids, run):
    other_agent = globex.create_agent(name="G", primary_provider="vendorB", system_prompt="p")
    other_session = globex.create_session(other_agent.id)
    reply = run(globex.send_message(other_session.id, "Something else", idempotency_key="k-1"))
    assert reply.metadata.idempotency.replayed is False
    assert reply.message.session_id == other_session.id
