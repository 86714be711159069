"""Sessions: created per agent, validated, touched by each reply, persisted with their transcript."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from vbgateway import Gateway, GatewayError
from vbgateway.store.journal import Journal

pytestmark = pytest.mark.tenant_clients

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def session_count(gw) -> int:
    return int(gw.sql("SELECT count(*) AS n FROM sessions")["n"][0])


def test_create_session_with_customer_id_and_metadata(acme, agent, clock):
    session = acme.create_session(agent.id, customer_id="customer_123", metadata={"source": "web", "n": [1, 2]})
    assert session.id.startswith("ses_")
    assert (session.agent_id, session.customer_id, session.status) == (agent.id, "customer_123", "active")
    assert session.metadata == {"source": "web", "n": [1, 2]}
    assert session.created_at == session.last_activity_at == clock.now()
    assert acme.get_session(session.id) == session


def test_create_session_without_customer_or_metadata(acme, agent):
    session = acme.create_session(agent.id)
    assert session.customer_id is None and session.metadata == {}


def test_session_wire_shape_has_exactly_the_contract_keys(acme, agent):
    wire = acme.create_session(agent.id, customer_id="c1", metadata={"source": "web"}).model_dump(by_alias=True,
                                                                                                  mode="json")
    assert set(wire) == {"id", "agentId", "customerId", "status", "metadata", "createdAt", "lastActivityAt"}
    assert wire["status"] == "active" and wire["agentId"] and wire["metadata"] == {"source": "web"}
    assert ISO_MS_Z.match(wire["createdAt"]) and ISO_MS_Z.match(wire["lastActivityAt"])


def test_session_is_stored_in_the_sessions_table(gw, acme, agent):
    session = acme.create_session(agent.id, customer_id="c1", metadata={"k": "v"})
    row = gw.sql("SELECT tenant_id, agent_id, customer_id, status FROM sessions WHERE id = ?", [session.id])
    assert row.values.tolist() == [[acme.id, agent.id, "c1", "active"]]


@pytest.mark.parametrize("agent_id", ["agt_doesnotexist000000", "", None])
def test_create_session_for_an_unknown_agent_is_agent_not_found(gw, acme, agent_id):
    with pytest.raises(GatewayError) as info:
        acme.create_session(agent_id)
    assert (info.value.code, info.value.http_status) == ("AGENT_NOT_FOUND", 404)
    assert session_count(gw) == 0


@pytest.mark.parametrize("kwargs", [
    {"metadata": ["source", "web"]},
    {"metadata": "source=web"},
    {"metadata": 5},
    {"metadata": {"tags": {"a", "b"}}},
    {"metadata": {"score": float("nan")}},
    {"metadata": {"score": float("inf")}},
    {"metadata": {"raw": b"bytes"}},
    {"metadata": {"obj": object()}},
    {"metadata": {"blob": "x" * 16_400}},
    {"customer_id": "c" * 201},
    {"customer_id": ""},
    {"customer_id": 123},
    {"customer_id": ["c1"]},
    {"customer_id": "c\x00"},
])
def test_invalid_session_input_is_a_validation_error_and_writes_nothing(gw, acme, agent, row_counts, kwargs):
    before = row_counts()
    with pytest.raises(GatewayError) as info:
        acme.create_session(agent.id, **kwargs)
    assert (info.value.code, info.value.http_status) == ("VALIDATION_ERROR", 400)
    assert row_counts() == before


def test_metadata_just_under_the_limit_is_accepted(acme, agent):
    session = acme.create_session(agent.id, metadata={"blob": "x" * 16_000})
    assert len(session.metadata["blob"]) == 16_000


@pytest.mark.parametrize("session_id", ["ses_doesnotexist000000", "", None, 7, "..", "ses/x", "ses_x?y", "x" * 300])
def test_get_session_of_an_unknown_id_is_session_not_found(acme, session_id):
    with pytest.raises(GatewayError) as info:
        acme.get_session(session_id)
    assert (info.value.code, info.value.http_status) == ("SESSION_NOT_FOUND", 404)


def test_last_activity_moves_to_the_replys_time(acme, agent, clock, run):
    session = acme.create_session(agent.id)
    clock.advance(60)
    reply = run(acme.send_message(session.id, "Hello"))
    assert reply.message.created_at > session.created_at
    current = acme.get_session(session.id)
    assert current.last_activity_at == reply.message.created_at
    assert current.created_at == session.created_at
    wire = current.model_dump(by_alias=True, mode="json")
    assert wire["lastActivityAt"] == reply.model_dump(by_alias=True, mode="json")["message"]["createdAt"]


def test_last_activity_is_stored_in_the_database(gw, acme, agent, clock, run, as_served):
    session = acme.create_session(agent.id)
    clock.advance(60)
    reply = run(acme.send_message(session.id, "Hello"))
    stored = gw.sql("SELECT last_activity_at FROM sessions WHERE id = ?", [session.id])["last_activity_at"][0]
    assert as_served(stored.to_pydatetime()) == reply.message.created_at


def test_transcript_lists_messages_oldest_first_and_provider_calls(acme, agent, clock, run):
    session = acme.create_session(agent.id)
    replies = []
    for text in ("Hello", "Where is my invoice?", "Thanks"):
        clock.advance(10)
        replies.append(run(acme.send_message(session.id, text)))
    transcript = acme.transcript(session.id)
    assert transcript.session.id == session.id
    assert [m.role for m in transcript.messages] == ["user", "assistant"] * 3
    assert [m.content for m in transcript.messages[::2]] == ["Hello", "Where is my invoice?", "Thanks"]
    assert [m.id for m in transcript.messages[1::2]] == [r.message.id for r in replies]
    times = [m.created_at for m in transcript.messages]
    assert times == sorted(times)
    attempts = sum(len(r.metadata.attempts) for r in replies)
    assert len(transcript.events) == attempts >= 3
    assert {e.type for e in transcript.events} == {"provider_call"}
    assert [e.created_at for e in transcript.events] == sorted(e.created_at for e in transcript.events)


def test_transcript_wire_shape(acme, agent, run):
    session = acme.create_session(agent.id)
    run(acme.send_message(session.id, "Hello"))
    wire = acme.transcript(session.id).model_dump(by_alias=True, mode="json")
    assert set(wire) == {"session", "messages", "events"}
    assert set(wire["messages"][0]) == {"id", "role", "content", "createdAt"}
    assert set(wire["events"][0]) == {"id", "type", "provider", "status", "latencyMs", "createdAt"}


def test_sessions_and_messages_survive_closing_and_reopening(gw, acme, agent, db_path, clock, run):
    session = acme.create_session(agent.id, customer_id="c1", metadata={"source": "web"})
    for text in ("Hello", "Again"):
        clock.advance(60)
        run(acme.send_message(session.id, text))
    before = acme.transcript(session.id).model_dump(by_alias=True, mode="json")
    tenant_id = acme.id
    gw.close()
    with Gateway.open(db_path, clock=clock) as again:
        after = again.as_tenant(tenant_id).transcript(session.id).model_dump(by_alias=True, mode="json")
    assert after == before
    assert len(after["messages"]) == 4


def test_messages_continue_after_reopening(gw, acme, agent, db_path, clock, run):
    session = acme.create_session(agent.id)
    run(acme.send_message(session.id, "Hello"))
    tenant_id = acme.id
    gw.close()
    with Gateway.open(db_path, clock=clock) as again:
        client = again.as_tenant(tenant_id)
        clock.advance(5)
        reply = again.clock.run(client.send_message(session.id, "Still there?"))
        messages = client.transcript(session.id).messages
        assert [m.role for m in messages] == ["user", "assistant"] * 2
        assert messages[-1].id == reply.message.id
        assert client.get_session(session.id).last_activity_at == reply.message.created_at


@pytest.mark.embedded_only
def test_last_activity_reaches_sessions_created_many_batches_before_beside_newer_ones(gw, acme, agent, clock, run):
    """A flush updates only sessions created since the oldest one it touches; older and newer ones both land."""
    old = acme.create_session(agent.id)
    gw.store.flush()
    clock.advance(3600)
    newer = [acme.create_session(agent.id) for _ in range(3)]
    gw.store.flush()  # the sessions sit in DuckDB, in row groups of their own time
    clock.advance(60)
    replies = {s.id: run(acme.send_message(s.id, "Hello")) for s in (newer[1], old)}  # one batch, old last
    gw.store.flush()
    stored = dict(gw.sql("SELECT id, last_activity_at FROM sessions").itertuples(index=False))
    assert {k: stored[k].to_pydatetime() for k in replies} == {k: r.message.created_at for k, r in replies.items()}
    assert stored[newer[0].id].to_pydatetime() == newer[0].created_at  # untouched


@pytest.mark.embedded_only
def test_activity_journaled_without_the_sessions_creation_time_is_still_applied(gw, acme, agent, clock, db_path):
    """Journal lines from before the creation time was recorded carry two values; recovery must apply them."""
    session = acme.create_session(agent.id)
    gw.close()
    later = clock.now() + timedelta(minutes=5)
    journal = Journal(Path(str(db_path) + ".journal"))  # a line an older gateway left at a crash (seq > applied)
    journal.append([(1000, {"session_activity": [[session.id, {"$ts": later.isoformat()}]]})])
    journal.close()
    with Gateway.open(db_path, clock=clock) as again:
        stored = again.sql("SELECT last_activity_at FROM sessions WHERE id = ?", [session.id])["last_activity_at"][0]
    assert stored.to_pydatetime() == later
