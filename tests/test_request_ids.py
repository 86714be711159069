"""A caller may name the request (the HTTP API passes its X-Request-Id)."""

import pytest

from vbgateway import GatewayError
from vbgateway.ids import IdFactory

pytestmark = pytest.mark.tenant_clients


def test_a_given_request_id_names_the_reply_the_attempts_and_the_usage_event(gw, acme, agent, run):
    session = acme.create_session(agent.id)
    request_id = IdFactory(7).new("req")
    reply = run(acme.send_message(session.id, "Hello", request_id=request_id))
    assert reply.metadata.request_id == request_id
    usage = gw.sql("SELECT request_id FROM usage_events")
    events = gw.sql("SELECT DISTINCT request_id FROM provider_call_events")
    assert list(usage.request_id) == [request_id] and list(events.request_id) == [request_id]


@pytest.mark.parametrize("bad", ["", "req_short", "msg_0123456789abcdefghjk", "req_" + "!" * 20, 42])
def test_a_malformed_request_id_is_refused_and_nothing_is_billed(gw, acme, agent, run, bad):
    session = acme.create_session(agent.id)
    with pytest.raises(GatewayError) as caught:
        run(acme.send_message(session.id, "Hello", request_id=bad))
    assert caught.value.code == "VALIDATION_ERROR"
    assert int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]) == 0
