"""Tenants and API keys: keys are shown once, stored hashed, and revocable at once."""

from __future__ import annotations

import hashlib

import pytest

from vbgateway import Gateway, GatewayError, TenantClient


def test_create_tenant_returns_the_tenant_and_its_key_once(gw):
    tenant, key = gw.create_tenant("Acme Corporation")
    assert tenant.id.startswith("tnt_")
    assert tenant.name == "Acme Corporation"
    assert isinstance(key, str) and key.startswith("sk_")
    assert gw.get_tenant(tenant.id) == tenant


def test_the_database_stores_only_the_sha256_of_a_key(gw):
    tenant, key = gw.create_tenant("Acme Corporation")
    rows = gw.sql("SELECT key_hash FROM api_keys WHERE tenant_id = ?", [tenant.id])
    assert list(rows["key_hash"]) == [hashlib.sha256(key.encode()).hexdigest()]


def test_the_clear_key_appears_in_no_table(gw):
    _, key = gw.create_tenant("Acme Corporation")
    gw.create_api_key(gw.list_tenants()[0].id)
    tables = gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")["table_name"]
    for table in tables:
        dump = gw.sql(f'SELECT * FROM "{table}"').to_string()
        assert key not in dump, table
        assert key[3:] not in dump, table


def test_connect_with_the_key_gives_the_tenant_client(gw):
    tenant, key = gw.create_tenant("Acme Corporation")
    client = gw.connect(key)
    assert isinstance(client, TenantClient)
    assert client.tenant == tenant


@pytest.mark.parametrize("bad_key", [
    "sk_" + "x" * 43,            # unknown
    "",                          # empty
    "   ",                       # blank
    None,                        # not a string
    12345,
    b"sk_bytes",
    ["sk_list"],
    "sk_" + "a" * 10_000,        # very long
])
def test_a_bad_key_is_invalid_api_key_401(gw, bad_key):
    gw.create_tenant("Acme Corporation")
    with pytest.raises(GatewayError) as info:
        gw.connect(bad_key)
    assert info.value.code == "INVALID_API_KEY"
    assert info.value.http_status == 401


def test_create_api_key_gives_a_second_working_key(gw):
    tenant, first = gw.create_tenant("Acme Corporation")
    key_id, second = gw.create_api_key(tenant.id)
    assert key_id.startswith("key_")
    assert second != first
    assert gw.connect(second).tenant.id == tenant.id
    assert gw.connect(first).tenant.id == tenant.id


def test_revoke_makes_connect_fail_at_once(gw):
    tenant, _ = gw.create_tenant("Acme Corporation")
    key_id, key = gw.create_api_key(tenant.id)
    gw.revoke_api_key(key_id)
    with pytest.raises(GatewayError) as info:
        gw.connect(key)
    assert info.value.code == "INVALID_API_KEY"


def test_revoke_makes_connect_fail_even_after_a_cached_connect(gw):
    tenant, first = gw.create_tenant("Acme Corporation")
    key_id, key = gw.create_api_key(tenant.id)
    gw.connect(key)
    gw.connect(key)
    gw.revoke_api_key(key_id)
    with pytest.raises(GatewayError) as info:
        gw.connect(key)
    assert info.value.code == "INVALID_API_KEY"
    assert gw.connect(first).tenant.id == tenant.id


def test_revoke_is_recorded_with_the_clock_time(gw, clock):
    tenant, _ = gw.create_tenant("Acme Corporation")
    key_id, _ = gw.create_api_key(tenant.id)
    clock.advance(30)
    gw.revoke_api_key(key_id)
    revoked = gw.sql("SELECT revoked_at FROM api_keys WHERE id = ?", [key_id])["revoked_at"][0]
    assert revoked.to_pydatetime() == clock.now()


@pytest.mark.parametrize("key_id", ["key_doesnotexist0000000", "", None, 42])
def test_revoking_an_unknown_key_id_is_not_found(gw, key_id):
    with pytest.raises(GatewayError) as info:
        gw.revoke_api_key(key_id)
    assert info.value.code == "NOT_FOUND"
    assert info.value.http_status == 404


def test_revoking_a_key_twice_is_not_found(gw):
    tenant, _ = gw.create_tenant("Acme Corporation")
    key_id, _ = gw.create_api_key(tenant.id)
    gw.revoke_api_key(key_id)
    with pytest.raises(GatewayError) as info:
        gw.revoke_api_key(key_id)
    assert info.value.code == "NOT_FOUND"


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "x" * 201, None, 123, ["Acme"], "Ac\x00me", "bad \ud800 surrogate"])
def test_a_bad_tenant_name_is_a_validation_error_and_creates_nothing(gw, row_counts, name):
    before = row_counts()
    with pytest.raises(GatewayError) as info:
        gw.create_tenant(name)
    assert info.value.code == "VALIDATION_ERROR"
    assert info.value.http_status == 400
    assert row_counts() == before


def test_a_tenant_name_of_200_characters_is_accepted(gw):
    tenant, _ = gw.create_tenant("x" * 200)
    assert gw.get_tenant(tenant.id).name == "x" * 200


@pytest.mark.parametrize("name", [
    "O'Brien & \"Sons\"",
    "'; DROP TABLE tenants; --",
    "Robert'); DELETE FROM api_keys; --",
    "Rocket 🚀 Labs 👩‍🚀",
    "شركة الاتصالات",
    "\u202eevil\u202c",
    "  padded name  ",
    "back\\slash %_ wildcard",
])
def test_a_hostile_but_valid_tenant_name_round_trips_exactly(gw, name):
    tenant, key = gw.create_tenant(name)
    assert tenant.name == name
    assert gw.get_tenant(tenant.id).name == name
    assert gw.connect(key).tenant.name == name
    assert list(gw.sql("SELECT name FROM tenants WHERE id = ?", [tenant.id])["name"]) == [name]
    assert gw.sql("SELECT count(*) AS n FROM api_keys")["n"][0] == 1


def test_reopening_a_seeded_database_does_not_reuse_ids(db_path, clock):
    with Gateway.open(db_path, clock=clock, seed=1234) as first:
        before, _ = first.create_tenant("Acme Corporation")
    with Gateway.open(db_path, clock=clock, seed=1234) as again:
        after, key = again.create_tenant("Globex")
        assert after.id != before.id
        assert {t.id for t in again.list_tenants()} == {before.id, after.id}
        assert again.connect(key).tenant.id == after.id
