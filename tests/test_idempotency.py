"""Specification of idempotency keys: a repeat replays and bills nothing, a
different request under the same key is a conflict, keys are per tenant, failed
requests are not remembered, concurrent duplicates share one provider call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway.errors import AllProvidersFailedError, IdempotencyConflictError
from vbgateway.providers import VendorA, VendorB, VendorProfile

pytestmark = pytest.mark.tenant_clients

START = datetime(2026, 1, 1, tzinfo=UTC)
HEALTHY = {"failure_rate": 0.0, "rate_limit_rate": 0.0}
DATA_TABLES = ("messages", "usage_events", "provider_call_events", "idempotency_records")


def counts(gw: Gateway) -> dict[str, int]:
    return {t: int(gw.sql(f"SELECT count(*) AS n FROM {t}")["n"][0]) for t in DATA_TABLES}


def wire(reply) -> dict:
    """The reply as the /v1 API sends it, minus the replay flag."""
    data = reply.model_dump(by_alias=True, mode="json")
    del data["metadata"]["idempotency"]["replayed"]
    return data


@pytest.fixture
def session(acme, agent):
    return acme.create_session(agent.id, customer_id="customer_1")


class Healthy:
    """A gateway whose vendors always answer, so provider call counts are exact.

    ``connect`` and ``runner`` (the ``tenant_client`` and ``runner`` fixtures) make
    its tenant client embedded or over HTTP, and run that client's coroutines;
    without them it is embedded, on its clock.
    """

    def __init__(self, path: Path, connect=Gateway.connect, runner=lambda clock: clock.run, seed: int = 9) -> None:
        self.path = path
        self.clock = VirtualClock(start=START)
        self.vendor_a = VendorA(seed=1, **HEALTHY)
        self.vendor_b = VendorB(seed=2, **HEALTHY)
        self.gw = Gateway.open(path, clock=self.clock, providers={"vendorA": self.vendor_a, "vendorB": self.vendor_b},
                               seed=seed)
        _tenant, self.api_key = self.gw.create_tenant("Idem Ltd")
        self.tenant = connect(self.gw, self.api_key)
        self.run = runner(self.clock)
        self.agent = self.tenant.create_agent(name="I", primary_provider="vendorA", fallback_provider="vendorB",
                                              system_prompt="You are helpful.")
        self.session = self.tenant.create_session(self.agent.id)

    @property
    def calls(self) -> int:
        return self.vendor_a.calls + self.vendor_b.calls


@pytest.fixture
def healthy(tmp_path, tenant_client, runner):
    setup = Healthy(tmp_path / "healthy.duckdb", tenant_client, runner)
    yield setup
    setup.gw.close()


# --- replay ---------------------------------------------------------------------------------


def test_the_first_use_of_a_key_is_not_a_replay_and_echoes_the_key(acme, session, run) -> None:
    reply = run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    assert (reply.metadata.idempotency.key, reply.metadata.idempotency.replayed) == ("k-1", False)


def test_a_reply_without_a_key_has_no_idempotency_key(acme, session, run) -> None:
    reply = run(acme.send_message(session.id, "Hello"))
    assert (reply.metadata.idempotency.key, reply.metadata.idempotency.replayed) == (None, False)


def test_same_key_and_same_content_replays_the_identical_reply(acme, session, run) -> None:
    first = run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    again = run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    assert again.metadata.idempotency.replayed is True
    assert again.message.id == first.message.id
    assert again.message.content == first.message.content
    assert again.metadata.usage == first.metadata.usage
    assert again.metadata.request_id == first.metadata.request_id
    assert wire(again) == wire(first)


def test_a_replay_returns_the_original_message_including_its_timestamp(acme, session, run) -> None:
    first = run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    again = run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    assert again.message == first.message
    stored = acme.transcript(session.id).messages[-1]
    assert (stored.id, stored.created_at) == (again.message.id, again.message.created_at)


def test_a_replay_writes_and_bills_nothing(gw, acme, session, run) -> None:
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    before = counts(gw)
    for _ in range(3):
        run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    assert counts(gw) == before
    assert before["usage_events"] == 1 and before["messages"] == 2


def test_a_replay_calls_no_provider(healthy) -> None:
    healthy.run(healthy.tenant.send_message(healthy.session.id, "Hi", idempotency_key="k"))
    calls = healthy.calls
    healthy.run(healthy.tenant.send_message(healthy.session.id, "Hi", idempotency_key="k"))
    assert healthy.calls == calls == 1


def test_a_replay_does_not_add_to_the_transcript(acme, session, run) -> None:
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    assert [m.role for m in acme.transcript(session.id).messages] == ["user", "assistant"]


# --- conflicts ------------------------------------------------------------------------------


def test_same_key_with_different_content_is_an_idempotency_conflict_409(acme, session, run) -> None:
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    with pytest.raises(IdempotencyConflictError) as info:
        run(acme.send_message(session.id, "Something else", idempotency_key="k-1"))
    assert isinstance(info.value, GatewayError)
    assert (info.value.code, info.value.http_status) == ("IDEMPOTENCY_CONFLICT", 409)


def test_an_idempotency_conflict_writes_nothing(gw, acme, session, run) -> None:
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    before = counts(gw)
    with pytest.raises(IdempotencyConflictError):
        run(acme.send_message(session.id, "Something else", idempotency_key="k-1"))
    assert counts(gw) == before


def test_same_key_on_a_different_session_is_a_different_request_and_conflicts(acme, agent, session, run) -> None:
    other = acme.create_session(agent.id, customer_id="customer_2")
    run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    with pytest.raises(IdempotencyConflictError):
        run(acme.send_message(other.id, "Hello", idempotency_key="k-1"))
    assert acme.transcript(other.id).messages == []


def test_keys_are_per_tenant(gw, acme, globex, agent, session, run) -> None:
    globex_agent = globex.create_agent(name="G", primary_provider="vendorB", fallback_provider="vendorA",
                                       system_prompt="You are Globex.")
    globex_session = globex.create_session(globex_agent.id)
    a = run(acme.send_message(session.id, "Hello", idempotency_key="k-1"))
    g = run(globex.send_message(globex_session.id, "Hello", idempotency_key="k-1"))
    assert a.metadata.idempotency.replayed is False
    assert g.metadata.idempotency.replayed is False
    assert a.message.id != g.message.id
    assert counts(gw)["usage_events"] == 2
    # and each tenant's key still replays its own reply
    assert run(globex.send_message(globex_session.id, "Hello", idempotency_key="k-1")).message.id == g.message.id
    assert run(acme.send_message(session.id, "Hello", idempotency_key="k-1")).message.id == a.message.id


def test_another_tenants_key_with_different_content_is_not_a_conflict(acme, globex, session, run) -> None:
    globex_agent = globex.create_agent(name="G", primary_provider="vendorA", fallback_provider=None,
                                       system_prompt="You are Globex.")
    globex_session = globex.create_session(globex_agent.id)
    run(acme.send_message(session.id, "Hello", idempotency_key="shared"))
    reply = run(globex.send_message(globex_session.id, "Completely different", idempotency_key="shared"))
    assert reply.metadata.idempotency.replayed is False


# --- failures are not remembered ------------------------------------------------------------


@pytest.fixture
def outage(tmp_path, tenant_client, runner):
    """A gateway whose vendors always fail; yields (run, gateway, tenant client, session, vendors)."""
    clock = VirtualClock(start=START)
    vendor_a = VendorA(seed=1, failure_rate=1.0)
    vendor_b = VendorB(seed=2, failure_rate=1.0)
    gw = Gateway.open(tmp_path / "outage.duckdb", clock=clock, providers={"vendorA": vendor_a, "vendorB": vendor_b},
                      seed=5)
    _, key = gw.create_tenant("Outage Co")
    tenant = tenant_client(gw, key)
    agent = tenant.create_agent(name="O", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt="You are helpful.")
    session = tenant.create_session(agent.id)
    yield runner(clock), gw, tenant, session, (vendor_a, vendor_b)
    gw.close()


def test_a_failed_request_is_not_cached_and_its_key_runs_and_bills_once_after_recovery(outage) -> None:
    run, gw, tenant, session, vendors = outage
    with pytest.raises(AllProvidersFailedError):
        run(tenant.send_message(session.id, "Hello", idempotency_key="k-retry"))
    assert counts(gw)["idempotency_records"] == 0
    for vendor in vendors:
        vendor.profile = VendorProfile(failure_rate=0.0)
    reply = run(tenant.send_message(session.id, "Hello", idempotency_key="k-retry"))
    assert reply.metadata.idempotency.replayed is False
    replay = run(tenant.send_message(session.id, "Hello", idempotency_key="k-retry"))
    assert replay.metadata.idempotency.replayed is True
    after = counts(gw)
    assert (after["usage_events"], after["messages"], after["idempotency_records"]) == (1, 2, 1)


def test_a_failed_keyed_request_can_be_retried_on_a_recovered_gateway_over_the_same_file(tmp_path) -> None:
    path = tmp_path / "shared.duckdb"
    clock = VirtualClock(start=START)
    down = Gateway.open(path, clock=clock, providers={"vendorA": VendorA(seed=1, failure_rate=1.0),
                                                      "vendorB": VendorB(seed=2, failure_rate=1.0)}, seed=5)
    _tenant, key = down.create_tenant("Outage Co")
    client = down.connect(key)
    agent = client.create_agent(name="O", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt="You are helpful.")
    session = client.create_session(agent.id)
    with pytest.raises(AllProvidersFailedError):
        clock.run(client.send_message(session.id, "Hello", idempotency_key="k-retry"))
    down.close()

    up = Gateway.open(path, clock=clock, providers={"vendorA": VendorA(seed=3, **HEALTHY),
                                                    "vendorB": VendorB(seed=4, **HEALTHY)}, seed=6)
    try:
        client = up.connect(key)
        reply = clock.run(client.send_message(session.id, "Hello", idempotency_key="k-retry"))
        assert reply.metadata.idempotency.replayed is False
        assert counts(up)["usage_events"] == 1
        assert counts(up)["provider_call_events"] == 6 + 1
    finally:
        up.close()


# --- concurrency ----------------------------------------------------------------------------


def test_fifty_concurrent_sends_of_one_key_share_one_provider_call_and_one_usage_event(healthy) -> None:
    s = healthy

    async def burst():
        return await asyncio.gather(*(s.tenant.send_message(s.session.id, "Hello", idempotency_key="burst")
                                      for _ in range(50)))

    replies = s.run(burst())
    assert s.calls == 1
    assert counts(s.gw)["usage_events"] == 1
    assert counts(s.gw)["messages"] == 2
    assert sorted(r.metadata.idempotency.replayed for r in replies) == [False] + [True] * 49
    assert len({r.message.id for r in replies}) == 1


def test_concurrent_duplicates_through_failing_vendors_still_share_one_call_sequence(gw, acme, agent, run) -> None:
    session = acme.create_session(agent.id)

    async def burst():
        return await asyncio.gather(*(acme.send_message(session.id, "Hello", idempotency_key="burst")
                                      for _ in range(20)))

    replies = run(burst())
    original = next(r for r in replies if not r.metadata.idempotency.replayed)
    assert sum(not r.metadata.idempotency.replayed for r in replies) == 1
    assert counts(gw)["provider_call_events"] == len(original.metadata.attempts)
    assert counts(gw)["usage_events"] == 1


def test_a_duplicate_waiting_on_a_request_whose_caller_gave_up_still_gets_a_reply(tmp_path) -> None:
    clock = VirtualClock(start=START)
    slow = {"vendorA": VendorA(seed=1, **HEALTHY, latency_ms=(1000, 1000), spike_rate=0.0),
            "vendorB": VendorB(seed=2, **HEALTHY)}
    with Gateway.open(tmp_path / "slow.duckdb", clock=clock, providers=slow, seed=5) as gw:
        _, key = gw.create_tenant("Impatient")
        tenant = gw.connect(key)
        agent = tenant.create_agent(name="S", primary_provider="vendorA", fallback_provider=None,
                                    system_prompt="You are slow.")
        session = tenant.create_session(agent.id)

        async def impatient():  # the first caller gives up after 0.5 s (a client timeout or disconnect)
            async with asyncio.timeout(0.5):
                return await tenant.send_message(session.id, "Hello", idempotency_key="k")

        async def patient():  # the same request, retried by the client while the first is in flight
            await clock.sleep(0.1)
            return await tenant.send_message(session.id, "Hello", idempotency_key="k")

        async def both():
            return await asyncio.gather(impatient(), patient(), return_exceptions=True)

        first, second = clock.run(both())
        assert isinstance(first, TimeoutError)
        assert not isinstance(second, BaseException), f"the patient duplicate got {second!r}"
        assert second.message.content
        assert counts(gw)["usage_events"] == 1


def test_concurrent_sends_of_one_key_with_different_content_get_conflicts(healthy) -> None:
    s = healthy

    async def burst():
        return await asyncio.gather(
            *(s.tenant.send_message(s.session.id, f"Message {i}", idempotency_key="race") for i in range(5)),
            return_exceptions=True)

    results = s.run(burst())
    replies = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(replies) == 1 and replies[0].metadata.idempotency.replayed is False
    assert len(errors) == 4
    assert all(isinstance(e, GatewayError) and e.code == "IDEMPOTENCY_CONFLICT" for e in errors)
    assert s.calls == 1
    assert counts(s.gw)["usage_events"] == 1


def test_concurrent_waiters_of_a_failing_request_all_see_the_failure_and_nothing_is_cached(outage) -> None:
    run, gw, tenant, session, _ = outage

    async def burst():
        return await asyncio.gather(*(tenant.send_message(session.id, "Hello", idempotency_key="k")
                                      for _ in range(5)), return_exceptions=True)

    results = run(burst())
    assert all(isinstance(r, AllProvidersFailedError) for r in results)
    assert counts(gw)["provider_call_events"] == 6
    assert counts(gw)["idempotency_records"] == 0


# --- durability -----------------------------------------------------------------------------


def test_a_replay_survives_closing_and_reopening_the_database(tmp_path, tenant_client, runner) -> None:
    first = Healthy(tmp_path / "durable.duckdb", tenant_client, runner)
    original = first.run(first.tenant.send_message(first.session.id, "Hello", idempotency_key="k-d"))
    first.gw.close()

    reopened = Gateway.open(first.path, clock=first.clock, providers={"vendorA": VendorA(seed=11, **HEALTHY),
                                                                      "vendorB": VendorB(seed=12, **HEALTHY)},
                            seed=99)
    try:
        before = counts(reopened)
        again = first.clock.run(reopened.connect(first.api_key).send_message(first.session.id, "Hello",
                                                                             idempotency_key="k-d"))
        assert again.metadata.idempotency.replayed is True
        assert again.message.id == original.message.id
        assert wire(again) == wire(original)  # the HTTP client's reply, as the embedded one (below) sees it
        assert counts(reopened) == before == {"messages": 2, "usage_events": 1, "provider_call_events": 1,
                                              "idempotency_records": 1}
    finally:
        reopened.close()


def test_a_key_reused_with_different_content_after_reopen_is_still_a_conflict(tmp_path, tenant_client, runner) -> None:
    first = Healthy(tmp_path / "durable.duckdb", tenant_client, runner)
    first.run(first.tenant.send_message(first.session.id, "Hello", idempotency_key="k-d"))
    first.gw.close()
    reopened = Gateway.open(first.path, clock=first.clock, seed=99)
    try:
        with pytest.raises(IdempotencyConflictError):
            first.clock.run(reopened.connect(first.api_key).send_message(first.session.id, "Bye",
                                                                         idempotency_key="k-d"))
    finally:
        reopened.close()


# --- key validation -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "k" * 256, 42, b"bytes-key", ["k"], "line\nbreak", "tab\tkey", "nul\x00key"],
                         ids=["empty", "256-chars", "int", "bytes", "list", "newline", "tab", "nul"])
def test_invalid_idempotency_keys_are_validation_errors_and_write_nothing(gw, acme, session, run, key) -> None:
    before = counts(gw)
    with pytest.raises(GatewayError) as info:
        run(acme.send_message(session.id, "Hello", idempotency_key=key))
    assert (info.value.code, info.value.http_status) == ("VALIDATION_ERROR", 400)
    assert counts(gw) == before


@pytest.mark.parametrize("key", ["k", "k" * 255, "order-123/attempt:1", "ключ-🎉", "a key with spaces"],
                         ids=["one-char", "255-chars", "punctuation", "unicode", "spaces"])
def test_valid_idempotency_keys_are_accepted_and_replay(acme, session, run, key: str) -> None:
    first = run(acme.send_message(session.id, "Hello", idempotency_key=key))
    again = run(acme.send_message(session.id, "Hello", idempotency_key=key))
    assert first.metadata.idempotency.key == key
    assert again.metadata.idempotency.replayed is True and again.message.id == first.message.id
