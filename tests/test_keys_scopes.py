"""Keys: scopes enforced per method, expiry and rotation on the gateway's clock, last use without I/O per request.

Each test of the tenant client runs against the embedded client and the HTTP one (``tenant_clients``); the
gateway runs on a ``VirtualClock``, so expiry and a rotation's grace are exact instants.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from types import SimpleNamespace

import pytest

from vbgateway import Gateway, GatewayError
from vbgateway.audio import synthesize
from vbgateway.governance import ALL_SCOPES, SCOPES
from vbgateway.store.tables import API_KEYS

pytestmark = pytest.mark.tenant_clients

AGENT = {"name": "Support", "primary_provider": "vendorA", "fallback_provider": "vendorB",
         "system_prompt": "You are helpful.", "enabled_tools": []}
SPEECH = synthesize("hello there")

# Every method of the tenant client, the scope it needs, and a call that succeeds with that scope.
async def _drain(stream):
    return [item async for item in stream]


OPERATIONS = {
    "list_agents": ("agents:read", lambda c, x: c.list_agents()),
    "get_agent": ("agents:read", lambda c, x: c.get_agent(x.agent)),
    "create_agent": ("agents:write", lambda c, x: c.create_agent(**AGENT)),
    "update_agent": ("agents:write", lambda c, x: c.update_agent(x.agent, name="Renamed")),
    "create_session": ("chat", lambda c, x: c.create_session(x.agent)),
    "send_message": ("chat", lambda c, x: x.run(c.send_message(x.session, "Hello"))),
    "stream_message": ("chat", lambda c, x: x.run(_drain(c.stream_message(x.session, "Hello")))),
    "send_voice": ("chat", lambda c, x: x.run(c.send_voice(x.session, SPEECH))),
    "get_session": ("sessions:read", lambda c, x: c.get_session(x.session)),
    "transcript": ("sessions:read", lambda c, x: c.transcript(x.session)),
    "usage_rollup": ("usage:read", lambda c, x: c.usage_rollup("2026-01-01", "2026-01-31")),
    "usage_events": ("usage:read", lambda c, x: c.usage_events("2026-01-01", "2026-01-31")),
    "usage_monthly": ("usage:read", lambda c, x: c.usage_monthly(3)),
    "usage_forecast": ("usage:read", lambda c, x: c.usage_forecast()),
}


@pytest.fixture
def tenant(gw):
    return gw.create_tenant("Acme Corporation")[0]


@pytest.fixture
def world(gw, tenant, run):
    """An agent and a session of the tenant, made by the operator (who holds every scope)."""
    operator = gw.as_tenant(tenant.id)
    agent = operator.create_agent(**AGENT)
    return SimpleNamespace(agent=agent.id, session=operator.create_session(agent.id).id, run=run)


def refused(call, code: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        call()
    assert info.value.code == code, info.value
    return info.value


def invalid_key(call) -> None:
    error = refused(call, "INVALID_API_KEY")
    assert error.http_status == 401 and error.message == "missing or invalid API key"


# --------------------------------------------------------------------------- scopes
def test_a_key_made_the_old_way_holds_every_scope(gw, tenant, tenant_client):
    key_id, key = gw.create_api_key(tenant.id)
    client = tenant_client(gw, key)
    assert client.scopes == ALL_SCOPES and client.key_id == key_id
    assert gw.list_api_keys(tenant.id)[-1].scopes == sorted(SCOPES)


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_a_key_with_one_scope_may_call_exactly_the_methods_of_that_scope(gw, tenant, world, tenant_client, scope):
    _, key = gw.create_api_key(tenant.id, scopes={scope})
    client = tenant_client(gw, key)
    assert client.scopes == {scope}
    assert client.budget() is None  # as GET /v1/me: any valid key sees its tenant's budget (none here)
    for name, (needed, call) in OPERATIONS.items():
        if needed == scope:
            call(client, world)
        else:
            error = refused(lambda: call(client, world), "INSUFFICIENT_SCOPE")  # noqa: B023 (called at once)
            assert error.http_status == 403, name
            assert error.details["required"] == needed, name
            assert error.details["granted"] == [scope], name


@pytest.mark.embedded_only
def test_every_method_of_the_tenant_client_names_its_scope():
    from vbgateway.tenant import TenantClient

    methods = {name for name in vars(TenantClient) if not name.startswith("_") and callable(vars(TenantClient)[name])}
    # budget: no scope; the rest need "chat" and exist only embedded (create_session_async: grouped commits;
    # draft_session, forget_draft: the OpenAI front door's sessions)
    assert methods - {"require", "budget"} == set(OPERATIONS) | {"create_session_async", "draft_session",
                                                                  "forget_draft"}
    gw = Gateway.open(":memory:")
    tenant, _ = gw.create_tenant("Scoped")
    _, key = gw.create_api_key(tenant.id, scopes={"sessions:read"})
    reader = gw.connect(key)
    agent = gw.as_tenant(tenant.id).create_agent(**AGENT)
    for call in (lambda: reader.draft_session(agent.id), lambda: reader.forget_draft("ses_x")):
        assert refused(call, "INSUFFICIENT_SCOPE").details["required"] == "chat"
    gw.close()


def test_a_refused_scope_changes_nothing(gw, tenant, world, tenant_client, row_counts):
    _, key = gw.create_api_key(tenant.id, scopes={"agents:read"})
    client = tenant_client(gw, key)
    before = row_counts()
    refused(lambda: client.create_agent(**AGENT), "INSUFFICIENT_SCOPE")
    refused(lambda: world.run(client.send_message(world.session, "Hello")), "INSUFFICIENT_SCOPE")
    assert row_counts() == before


@pytest.mark.embedded_only
@pytest.mark.parametrize("scopes", [{"chat", "billing:write"}, set(), ["CHAT"], 42, [None], b"chat"])
def test_unknown_or_no_scopes_are_refused_and_nothing_is_written(gw, tenant, row_counts, scopes):
    before = row_counts()
    error = refused(lambda: gw.create_api_key(tenant.id, scopes=scopes), "VALIDATION_ERROR")
    assert error.details["field"] == "scopes"
    assert row_counts() == before


@pytest.mark.embedded_only
def test_one_scope_may_be_given_as_a_string_and_the_operator_holds_every_scope(gw, tenant):
    _, key = gw.create_api_key(tenant.id, scopes="usage:read")
    assert gw.connect(key).scopes == {"usage:read"}
    assert gw.as_tenant(tenant.id).scopes == ALL_SCOPES and gw.as_tenant(tenant.id).key_id is None


# --------------------------------------------------------------------------- expiry
def test_an_expired_key_is_refused_exactly_like_a_revoked_one(gw, tenant, clock, tenant_client):
    _, key = gw.create_api_key(tenant.id, expires_at=clock.now() + timedelta(hours=1))
    client = tenant_client(gw, key)
    assert client.list_agents() == []
    clock.advance(3599.999)
    assert client.list_agents() == []
    clock.advance(0.001)
    invalid_key(client.list_agents)  # a client connected before the expiry too
    invalid_key(lambda: tenant_client(gw, key))
    revoked_id, revoked = gw.create_api_key(tenant.id)
    gw.revoke_api_key(revoked_id)
    invalid_key(lambda: tenant_client(gw, revoked))


@pytest.mark.embedded_only
@pytest.mark.parametrize("when", ["past", "now", "naive", "text"])
def test_an_expiry_that_is_not_a_future_aware_time_is_refused(gw, tenant, clock, row_counts, when):
    value = {"past": clock.now() - timedelta(seconds=1), "now": clock.now(),
             "naive": (clock.now() + timedelta(days=1)).replace(tzinfo=None), "text": "2030-01-01T00:00:00Z"}[when]
    before = row_counts()
    refused(lambda: gw.create_api_key(tenant.id, expires_at=value), "VALIDATION_ERROR")
    assert row_counts() == before


@pytest.mark.embedded_only
def test_expiry_and_scopes_survive_a_reopen(db_path, clock):
    with Gateway.open(db_path, clock=clock) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        _, key = gw.create_api_key(tenant.id, scopes={"chat"}, expires_at=clock.now() + timedelta(minutes=5))
    with Gateway.open(db_path, clock=clock) as gw:
        client = gw.connect(key)
        assert client.scopes == {"chat"} and client.expires_at == clock.now() + timedelta(minutes=5)
        clock.advance(300)
        invalid_key(lambda: gw.connect(key))


# --------------------------------------------------------------------------- rotation
def test_rotation_gives_a_new_key_and_the_old_one_works_for_the_grace_period(gw, tenant, clock, tenant_client):
    old_id, old = gw.create_api_key(tenant.id, scopes={"agents:read", "chat"}, rate_limit={"requests_per_minute": 7})
    old_client = tenant_client(gw, old)
    rotated_at = clock.now()
    new_id, new = gw.rotate_api_key(old_id, grace_s=600)
    assert new_id != old_id and new != old
    new_client = tenant_client(gw, new)
    assert new_client.scopes == {"agents:read", "chat"}
    keys = {k.id: k for k in gw.list_api_keys(tenant.id)}
    assert keys[new_id].rate_limit == keys[old_id].rate_limit and keys[new_id].rate_limit.requests_per_minute == 7
    assert (keys[old_id].status, keys[old_id].replaced_by, keys[old_id].rotated_at) == ("grace", new_id, rotated_at)
    assert keys[old_id].expires_at == rotated_at + timedelta(seconds=600)
    assert (keys[new_id].status, keys[new_id].expires_at) == ("active", None)
    clock.advance(599.5)
    assert old_client.list_agents() == [] and tenant_client(gw, old).list_agents() == []
    clock.advance(0.5)
    invalid_key(old_client.list_agents)
    invalid_key(lambda: tenant_client(gw, old))
    assert new_client.list_agents() == []
    assert {k.id: k.status for k in gw.list_api_keys(tenant.id)}[old_id] == "expired"


@pytest.mark.embedded_only
def test_a_rotation_with_no_grace_refuses_the_old_key_at_once_and_keeps_an_earlier_expiry(gw, tenant, clock):
    first_id, first = gw.create_api_key(tenant.id)
    gw.rotate_api_key(first_id, grace_s=0)
    invalid_key(lambda: gw.connect(first))
    soon = clock.now() + timedelta(seconds=60)
    second_id, _ = gw.create_api_key(tenant.id, expires_at=soon)
    third_id, _ = gw.rotate_api_key(second_id, grace_s=3600)
    keys = {k.id: k for k in gw.list_api_keys(tenant.id)}
    assert keys[second_id].expires_at == soon  # the grace never outlives the key's own expiry
    assert keys[third_id].expires_at == soon  # and the successor inherits that expiry


@pytest.mark.embedded_only
@pytest.mark.parametrize("grace", [-1, float("nan"), float("inf"), True, "3600", None, 90 * 86400 + 1])
def test_a_bad_grace_is_refused_and_nothing_changes(gw, tenant, row_counts, grace):
    key_id, key = gw.create_api_key(tenant.id)
    before = row_counts()
    refused(lambda: gw.rotate_api_key(key_id, grace_s=grace), "VALIDATION_ERROR")
    assert row_counts() == before
    assert gw.connect(key).key_id == key_id and gw.list_api_keys(tenant.id)[-1].status == "active"


@pytest.mark.embedded_only
def test_only_an_active_key_that_was_never_rotated_can_be_rotated(gw, tenant, clock):
    key_id, _ = gw.create_api_key(tenant.id)
    successor, _ = gw.rotate_api_key(key_id)
    error = refused(lambda: gw.rotate_api_key(key_id), "VALIDATION_ERROR")
    assert error.details == {"keyId": key_id, "replacedBy": successor}
    gw.revoke_api_key(successor)
    refused(lambda: gw.rotate_api_key(successor), "NOT_FOUND")
    refused(lambda: gw.rotate_api_key("key_doesnotexist000000"), "NOT_FOUND")
    expiring, _ = gw.create_api_key(tenant.id, expires_at=clock.now() + timedelta(seconds=1))
    clock.advance(1)
    refused(lambda: gw.rotate_api_key(expiring), "NOT_FOUND")


@pytest.mark.embedded_only
def test_a_rotated_key_is_stored_only_as_its_hash(gw, tenant):
    key_id, _ = gw.create_api_key(tenant.id)
    new_id, new = gw.rotate_api_key(key_id)
    stored = gw.sql("SELECT key_hash FROM api_keys WHERE id = ?", [new_id])["key_hash"][0]
    assert stored == hashlib.sha256(new.encode()).hexdigest()
    for table in gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")["table_name"]:
        assert new[3:] not in gw.sql(f'SELECT * FROM "{table}"').to_string(), table


@pytest.mark.embedded_only
def test_the_grace_survives_a_reopen(db_path, clock):
    with Gateway.open(db_path, clock=clock) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        key_id, old = gw.create_api_key(tenant.id)
        gw.rotate_api_key(key_id, grace_s=30)
    with Gateway.open(db_path, clock=clock) as gw:
        assert gw.connect(old).key_id == key_id
        clock.advance(30)
        invalid_key(lambda: gw.connect(old))


# --------------------------------------------------------------------------- revocation and last use
def test_revoking_a_key_refuses_a_client_already_connected_with_it(gw, tenant, tenant_client):
    key_id, key = gw.create_api_key(tenant.id)
    client = tenant_client(gw, key)
    assert client.list_agents() == []
    gw.revoke_api_key(key_id)
    invalid_key(client.list_agents)


def test_last_use_is_the_time_of_the_latest_request(gw, tenant, world, clock, tenant_client):
    gw.create_api_key(tenant.id)
    assert gw.list_api_keys(tenant.id)[-1].last_used_at is None
    clock.advance(5)
    client = tenant_client(gw, gw.create_api_key(tenant.id)[1])  # connecting is a use: it authenticates
    assert gw.list_api_keys(tenant.id)[-1].last_used_at == clock.now()
    assert gw.list_api_keys(tenant.id)[-2].last_used_at is None
    clock.advance(10)
    world.run(client.send_message(world.session, "Hello"))
    used = gw.list_api_keys(tenant.id)[-1].last_used_at
    assert used is not None and clock.now() - timedelta(seconds=5) <= used <= clock.now()  # the vendors take time
    clock.advance(60)
    client.get_session(world.session)
    assert gw.list_api_keys(tenant.id)[-1].last_used_at == clock.now()


@pytest.mark.embedded_only
def test_last_use_reaches_the_table_at_a_read_or_a_close_not_per_request(db_path, clock):
    with Gateway.open(db_path, clock=clock) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        key_id, key = gw.create_api_key(tenant.id)
        client = gw.connect(key)
        for _ in range(50):
            client.list_agents()
            clock.advance(1)
        assert gw.store.key_by_id(key_id).last_used_at is None  # the row, read without a flush: fifty uses, no write
        assert gw.list_api_keys(tenant.id)[-1].last_used_at == clock.now() - timedelta(seconds=1)
        stored = gw.sql("SELECT last_used_at FROM api_keys WHERE id = ?", [key_id])["last_used_at"][0]  # a flush
        assert stored == clock.now() - timedelta(seconds=1)
        client.list_agents()
        last = clock.now()
    with Gateway.open(db_path, clock=clock) as gw:  # written by the close
        assert gw.list_api_keys(tenant.id)[-1].last_used_at == last
        assert list(gw.sql("SELECT last_used_at FROM api_keys WHERE id = ?", [key_id])["last_used_at"]) == [last]


@pytest.mark.embedded_only
def test_the_key_columns_follow_the_table_definition(gw):
    columns = gw.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'api_keys' "
                     "ORDER BY ordinal_position")["column_name"]
    assert list(columns) == list(API_KEYS.column_names)
    assert {"scopes", "expires_at", "last_used_at", "rotated_at", "replaced_by"} <= set(columns)
