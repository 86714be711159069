"""Specification of providers as configured data: ``vbgateway providers add|list|price|remove``, loading, naming.

The command runs in process through ``vbgateway.cli.main`` over a real
database file; the end-to-end case serves the gateway over HTTP (uvicorn on
loopback) in front of the local OpenAI-compatible upstream.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer
from upstream_support import UPSTREAM_KEY as KEY

from vbgateway import Gateway, SystemClock, VirtualClock
from vbgateway.api import create_app
from vbgateway.cli import main
from vbgateway.errors import GatewayError

ADD = ["--kind", "openai", "--model", "upstream-model", "--api-key-env", "UPSTREAM_KEY",
       "--usd-per-1m-input", "0.15", "--usd-per-1m-output", "0.6"]



@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gw.duckdb"


def cli(*args: str, db: Path) -> int:
    return main(["providers", *args, "--db", str(db)])


def add(db: Path, name: str = "real", base_url: str = "http://127.0.0.1:9/v1", *extra: str) -> int:
    return cli("add", name, "--base-url", base_url, *ADD, *extra, db=db)


def config_tables(db: Path) -> tuple[list[tuple], list[tuple]]:
    with Gateway.open(db, clock=VirtualClock()) as gw:
        return (gw.store.query_rows("SELECT * FROM providers ORDER BY ALL"),
                gw.store.query_rows("SELECT * FROM price_versions ORDER BY ALL"))


# --- add, list, remove ---------------------------------------------------------------------


def test_an_added_provider_is_stored_with_its_prices_and_without_its_key(db, monkeypatch, capsys):
    monkeypatch.setenv("UPSTREAM_KEY", KEY)
    assert add(db) == 0
    providers, prices = config_tables(db)
    assert [p[:5] for p in providers] == [("real", "openai", "http://127.0.0.1:9/v1", "upstream-model",
                                            "UPSTREAM_KEY")]
    assert [(p[0], p[2], p[3]) for p in prices] == [("real", Decimal("0.15"), Decimal("0.6"))]
    assert KEY not in capsys.readouterr().out and KEY.encode() not in db.read_bytes()


def test_a_gateway_opening_the_database_offers_the_provider_to_agents(db):
    add(db)
    with Gateway.open(db, clock=VirtualClock()) as gw:
        assert set(gw.providers) == {"vendorA", "vendorB", "real"}
        _, key = gw.create_tenant("Acme")
        agent = gw.connect(key).create_agent(name="R", primary_provider="real", fallback_provider="vendorA",
                                             system_prompt="You are real.")
        assert agent.primary_provider == "real"
        rates = gw.prices.rates_at("real", gw.clock.now())
        assert (rates.usd_per_1m_input, rates.usd_per_1m_output) == (Decimal("0.15"), Decimal("0.6"))


def test_an_agent_naming_an_unknown_provider_is_refused_with_the_known_ones(db):
    add(db)
    with Gateway.open(db, clock=VirtualClock()) as gw:
        _, key = gw.create_tenant("Acme")
        with pytest.raises(GatewayError) as info:
            gw.connect(key).create_agent(name="R", primary_provider="unreal", system_prompt="x")
    assert info.value.code == "VALIDATION_ERROR" and "real, vendorA, vendorB" in info.value.message


def test_list_shows_every_provider_with_its_rates_and_whether_its_key_is_set(db, capsys, monkeypatch):
    add(db)
    capsys.readouterr()
    monkeypatch.delenv("UPSTREAM_KEY", raising=False)
    assert cli("list", "--json", db=db) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert list(listed) == ["vendorA", "vendorB", "real"]
    assert (listed["vendorA"]["kind"], listed["vendorA"]["usdPer1mInput"]) == ("built-in", "2")
    assert listed["real"] | {"priceVersions": None} == {
        "name": "real", "kind": "openai", "baseUrl": "http://127.0.0.1:9/v1", "model": "upstream-model",
        "apiKeyEnv": "UPSTREAM_KEY", "apiKeySet": False, "usdPer1mInput": "0.15", "usdPer1mOutput": "0.6",
        "priceVersions": None, "agents": 0}


@pytest.mark.parametrize(("args", "says"), [
    (["bad name", "--base-url", "http://x/v1"], "provider name"),
    (["none", "--base-url", "http://x/v1"], "reserved"),
    (["vendorA", "--base-url", "http://x/v1"], "already exists"),
    (["ok", "--base-url", "ftp://x/v1"], "http:// or https://"),
    (["ok", "--base-url", "https://user:secret@x/v1"], "no credentials"),
    (["ok", "--base-url", "http://x/v1?key=1"], "no query"),
    (["ok", "--base-url", "http://x:port/v1"], "not a usable URL"),
], ids=["name", "none", "built-in", "scheme", "credentials", "query", "port"])
def test_bad_input_is_refused_with_its_reason_and_changes_nothing(db, capsys, args, says):
    add(db)
    before = config_tables(db)
    capsys.readouterr()
    assert cli("add", *args, *ADD, db=db) == 2
    assert says in capsys.readouterr().err
    assert config_tables(db) == before


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--usd-per-1m-input", "0.00001", "at most 4 decimal places"),
    ("--usd-per-1m-input", "-1", "non-negative"),
    ("--usd-per-1m-output", "lots", "not a number"),
    ("--usd-per-1m-output", "NaN", "finite"),
    ("--api-key-env", "sk-live-123", "environment variable"),
    ("--model", " padded ", "model name"),
])
def test_bad_prices_keys_and_models_are_refused_and_change_nothing(db, capsys, flag, value, says):
    add(db)
    before = config_tables(db)
    capsys.readouterr()
    args = [*ADD]
    args[args.index(flag) + 1] = value
    assert cli("add", "other", "--base-url", "http://x/v1", *args, db=db) == 2
    assert says in capsys.readouterr().err
    assert config_tables(db) == before


def test_a_provider_an_agent_uses_cannot_be_removed_and_the_refusal_names_the_agent(db, capsys):
    add(db)
    with Gateway.open(db, clock=VirtualClock()) as gw:
        _, key = gw.create_tenant("Acme")
        agent = gw.connect(key).create_agent(name="R", primary_provider="vendorA", fallback_provider="real",
                                             system_prompt="x")
    before = config_tables(db)
    capsys.readouterr()
    assert cli("remove", "real", db=db) == 2
    err = capsys.readouterr().err
    assert "PROVIDER_IN_USE" in err and agent.id in err
    assert config_tables(db) == before


def test_an_unused_provider_is_removed_with_its_prices(db):
    add(db)
    assert cli("remove", "real", db=db) == 0
    assert config_tables(db) == ([], [])
    with Gateway.open(db, clock=VirtualClock()) as gw:
        assert set(gw.providers) == {"vendorA", "vendorB"}


@pytest.mark.parametrize(("name", "code"), [("vendorA", "VALIDATION_ERROR"), ("ghost", "PROVIDER_NOT_FOUND")])
def test_built_in_and_unknown_providers_cannot_be_removed(db, capsys, name, code):
    add(db)
    capsys.readouterr()
    assert cli("remove", name, db=db) == 2
    assert code in capsys.readouterr().err


def test_a_new_price_version_takes_effect_at_its_time(db, capsys):
    add(db)
    assert cli("price", "real", "--usd-per-1m-input", "0.3", "--usd-per-1m-output", "1.2",
               "--effective-from", "2026-02-01T00:00:00Z", db=db) == 0
    with Gateway.open(db, clock=VirtualClock()) as gw:
        before = gw.prices.rates_at("real", gw.clock.now())  # the clock starts on 2026-01-01
        gw.clock.advance(31 * 86400)
        after = gw.prices.rates_at("real", gw.clock.now())
    assert (before.usd_per_1m_input, after.usd_per_1m_input) == (Decimal("0.15"), Decimal("0.3"))


def test_the_same_effective_time_twice_is_refused(db, capsys):
    add(db)
    args = ["price", "real", "--usd-per-1m-input", "0.3", "--usd-per-1m-output", "1.2",
            "--effective-from", "2026-02-01T00:00:00Z"]
    assert cli(*args, db=db) == 0
    before = config_tables(db)
    assert cli(*args, db=db) == 2
    assert config_tables(db) == before


def test_a_database_held_by_a_gateway_is_busy_for_the_command(db, capsys):
    with Gateway.open(db, clock=VirtualClock()):
        assert add(db) == 2
    assert "DATABASE_BUSY" in capsys.readouterr().err


# --- end to end: the HTTP API in front of the upstream ------------------------------------------


def test_an_agent_on_a_configured_provider_answers_over_the_http_api_billed_by_real_usage(db, upstream, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", KEY)
    upstream.reset()
    add(db, "real", upstream.url)
    with Gateway.open(db, clock=SystemClock()) as gw:
        _, key = gw.create_tenant("Acme")
        with LiveServer(create_app(gw)) as live, httpx.Client(base_url=live.url, headers={"X-API-Key": key},
                                                              timeout=20) as http:
            spec = http.get("/openapi.json").json()["components"]["schemas"]["AgentSpec"]["properties"]
            assert "real" in spec["primaryProvider"]["enum"]
            agent = http.post("/v1/agents", json={"name": "R", "primaryProvider": "real",
                                                  "fallbackProvider": "vendorB", "systemPrompt": "x"}).json()["agent"]
            session = http.post("/v1/sessions", json={"agentId": agent["id"]}).json()["session"]
            reply = http.post(f"/v1/sessions/{session['id']}/messages", json={"role": "user", "content": "hi"}).json()
            me = http.get("/v1/me").json()
    usage, answer = reply["metadata"]["usage"], upstream.answered[-1].usage
    assert reply["metadata"]["providerUsed"] == "real"
    assert (usage["tokensIn"], usage["tokensOut"]) == (answer["prompt_tokens"], answer["completion_tokens"])
    assert usage["pricing"] == {"usdPer1kTokens": 0.0006, "usdPer1mInput": 0.15, "usdPer1mOutput": 0.6}
    assert me["pricing"]["real"] == usage["pricing"]


def test_the_openapi_enum_of_provider_names_follows_a_provider_added_to_a_running_gateway(db):
    from vbgateway.providers.admin import add_provider

    with Gateway.open(db, clock=VirtualClock()) as gw, LiveServer(create_app(gw)) as live, \
            httpx.Client(base_url=live.url, timeout=20) as http:
        def names() -> list[str]:
            return http.get("/openapi.json").json()["components"]["schemas"]["AgentSpec"]["properties"][
                "primaryProvider"]["enum"]

        assert names() == ["vendorA", "vendorB"]
        add_provider(gw, "later", base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None,
                     usd_per_1m_input="1", usd_per_1m_output="2")
        assert names() == ["later", "vendorA", "vendorB"]
