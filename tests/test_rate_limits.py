"""Rate limits per tenant and per key, on a VirtualClock: exact admitted counts, Retry-After, tokens settled.

The vendors answer at once and never fail (unless a test says otherwise), so the only thing that moves
the clock is the test itself: every count below is exact.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway.errors import AllProvidersFailedError, RateLimitExceededError
from vbgateway.governance.rate_limits import Bucket
from vbgateway.governance.refusals import REFUSAL_BATCH
from vbgateway.models import RateLimit
from vbgateway.providers import VendorA, VendorB

START = datetime(2026, 1, 1, tzinfo=UTC)
PROMPT = "You are helpful."  # 16 characters


def vendors(latency_ms: float = 0.0, failure_rate: float = 0.0) -> dict[str, object]:
    return {"vendorA": VendorA(latency_ms=(latency_ms, latency_ms), failure_rate=failure_rate, seed=1),
            "vendorB": VendorB(latency_ms=(latency_ms, latency_ms), failure_rate=failure_rate, rate_limit_rate=0.0,
                               seed=2)}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=START, commit_window_s=0.0)  # a reply's commit takes no virtual time either


@pytest.fixture
def gw(db_path, clock):
    gateway = Gateway.open(db_path, clock=clock, providers=vendors(), seed=7)
    yield gateway
    gateway.close()


@pytest.fixture
def tenant(gw):
    return gw.create_tenant("Acme Corporation")[0]


def session_of(client) -> str:
    agent = client.create_agent(name="Support", primary_provider="vendorA", fallback_provider="vendorB",
                                system_prompt=PROMPT)
    return client.create_session(agent.id).id


async def attempt(client, session_id: str, content: str = "Hello") -> int | None:
    """None when admitted, else the refusal's retryAfterMs."""
    try:
        await client.send_message(session_id, content)
    except RateLimitExceededError as exc:
        return exc.details["retryAfterMs"]
    return None


def data_rows(gw) -> dict[str, int]:
    """Rows of every table but request_refusals (a read: pending refusals are handed over first)."""
    tables = gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")["table_name"]
    return {t: int(gw.sql(f'SELECT count(*) AS n FROM "{t}"')["n"][0]) for t in tables if t != "request_refusals"}


# --------------------------------------------------------------------------- setting limits
def test_a_limit_is_set_read_back_and_survives_a_reopen(db_path, clock):
    with Gateway.open(db_path, clock=clock) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        assert gw.get_rate_limit(tenant.id) is None
        limit = gw.set_rate_limit(tenant.id, requests_per_minute=600, tokens_per_minute=200_000)
        assert limit == RateLimit(requests_per_minute=600, tokens_per_minute=200_000) == gw.get_rate_limit(tenant.id)
    with Gateway.open(db_path, clock=clock) as gw:
        assert gw.get_rate_limit(tenant.id) == limit
        assert gw.set_rate_limit(tenant.id, requests_per_minute=5) == RateLimit(requests_per_minute=5)  # tokens: none
        assert gw.set_rate_limit(tenant.id) is None  # both None: removed
    with Gateway.open(db_path, clock=clock) as gw:
        assert gw.get_rate_limit(tenant.id) is None
        assert gw.sql("SELECT count(*) AS n FROM rate_limits")["n"][0] == 0


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "60", 10**9 + 1])
def test_a_bad_limit_is_refused_and_the_old_one_stays(gw, tenant, bad):
    gw.set_rate_limit(tenant.id, requests_per_minute=60)
    for kwargs in ({"requests_per_minute": bad}, {"tokens_per_minute": bad}):
        with pytest.raises(GatewayError) as info:
            gw.set_rate_limit(tenant.id, **kwargs)
        assert info.value.code == "VALIDATION_ERROR"
    assert gw.get_rate_limit(tenant.id) == RateLimit(requests_per_minute=60)
    with pytest.raises(GatewayError) as info:
        gw.create_api_key(tenant.id, rate_limit={"requests_per_minute": bad})
    assert info.value.code == "VALIDATION_ERROR" and len(gw.list_api_keys(tenant.id)) == 1


def test_unknown_rate_limit_fields_and_unknown_tenants_are_refused(gw, tenant):
    for limit in ({"rpm": 5}, [("requests_per_minute", 5)], 60):
        with pytest.raises(GatewayError) as info:
            gw.create_api_key(tenant.id, rate_limit=limit)
        assert info.value.code == "VALIDATION_ERROR"
    with pytest.raises(GatewayError) as info:
        gw.set_rate_limit("tnt_nobody", requests_per_minute=5)
    assert info.value.code == "NOT_FOUND"


# --------------------------------------------------------------------------- the algorithm, exactly
def test_sixty_a_minute_admits_a_minute_of_burst_then_one_a_second(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=60)
    client = gw.as_tenant(tenant.id)
    session = session_of(client)

    async def every_half_second_for_three_minutes() -> list[float]:
        admitted = []
        for i in range(361):
            if await attempt(client, session) is None:
                admitted.append(i * 0.5)
            await clock.sleep(0.5)
        return admitted

    admitted = clock.run(every_half_second_for_three_minutes())
    assert len(admitted) == 60 + 180  # limit * (1 + t / 60), with demand to spare
    assert admitted[:119] == [i * 0.5 for i in range(119)]  # the burst drains at half the pace it is spent
    assert admitted[119:] == [float(t) for t in range(60, 181)]  # then exactly one a second


def test_an_interval_that_is_not_a_whole_number_of_microseconds_is_still_exact(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=7)  # one every 8.571428... s
    client = gw.as_tenant(tenant.id)
    session = session_of(client)

    async def every_second_for_ten_minutes() -> int:
        admitted = 0
        for _ in range(601):
            admitted += await attempt(client, session) is None
            await clock.sleep(1.0)
        return admitted

    assert clock.run(every_second_for_ten_minutes()) == 7 + 70  # the 70th refill lands exactly at t = 600 s


def test_retry_after_says_when_the_same_request_is_admitted(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=60)
    client = gw.as_tenant(tenant.id)
    session = session_of(client)

    async def drain_then_wait() -> list[int | None]:
        seen = [await attempt(client, session) for _ in range(60)]
        seen.append(await attempt(client, session))
        await clock.sleep(0.25)
        seen.append(await attempt(client, session))
        await clock.sleep(0.75)
        seen.append(await attempt(client, session))
        seen.append(await attempt(client, session))
        return seen

    seen = clock.run(drain_then_wait())
    assert seen[:60] == [None] * 60
    assert seen[60:] == [1000, 750, None, 1000]


def test_the_refusal_names_the_limit_and_exposes_retry_after(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=1)
    client = gw.as_tenant(tenant.id)
    session = session_of(client)
    clock.run(client.send_message(session, "Hello"))
    with pytest.raises(RateLimitExceededError) as info:
        clock.run(client.send_message(session, "Hello"))
    error = info.value
    assert (error.code, error.http_status) == ("RATE_LIMIT_EXCEEDED", 429)
    assert error.details == {"retryAfterMs": 60_000, "limit": "requestsPerMinute", "scope": "tenant", "value": 1}
    assert error.retry_after == 60.0


# --------------------------------------------------------------------------- tokens
def test_tokens_are_charged_at_admission_and_settled_from_the_reply(db_path, clock):
    with Gateway.open(db_path, clock=clock, providers=vendors(latency_ms=100), seed=7) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        gw.set_rate_limit(tenant.id, tokens_per_minute=2_000)  # an admission charges ~6 in + 1024 out
        client = gw.as_tenant(tenant.id)
        session = session_of(client)
        replies = [clock.run(client.send_message(session, "Hello")) for _ in range(5)]  # each settles before the next
        used = sum(r.metadata.usage.tokens_in + r.metadata.usage.tokens_out for r in replies)
        assert used + 1_030 < 2_000

        async def two_at_once() -> list[object]:
            return await asyncio.gather(client.send_message(session, "Hi"), client.send_message(session, "Hi"),
                                        return_exceptions=True)

        clock.run(clock.sleep(60))  # a full bucket again
        first, second = clock.run(two_at_once())
        assert not isinstance(first, BaseException)  # 1,030 + ~1,030 estimated do not fit in 2,000 together
        assert isinstance(second, RateLimitExceededError) and second.details["limit"] == "tokensPerMinute"


def test_admission_charges_the_input_estimate_plus_1024_output_tokens_and_the_reply_settles_it(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, tokens_per_minute=1_060)
    client = gw.as_tenant(tenant.id)
    session = session_of(client)
    reply = clock.run(client.send_message(session, "Hello"))  # 16 + 5 characters: 6 tokens in, plus 1,024 out
    used = reply.metadata.usage.tokens_in + reply.metadata.usage.tokens_out
    assert reply.metadata.usage.tokens_in == 6
    with pytest.raises(RateLimitExceededError) as info:
        clock.run(client.send_message(session, "Hello"))
    # In the bucket: what the reply used (not 1,030). The next charge: the history's tokens plus 1,024,
    # which fits 1,060 alone but not on top of what the first used.
    second = -(-(len(PROMPT) + len("Hello") + len(reply.message.content) + len("Hello")) // 4) + 1024
    assert second <= 1_060 < used + second
    wait_us = -(-(used + second - 1_060) * 60_000_000 // 1_060)
    assert info.value.details["retryAfterMs"] == -(-wait_us // 1000)
    clock.run(clock.sleep(wait_us / 1_000_000))
    clock.run(client.send_message(session, "Hello"))


def test_a_failed_request_gets_its_tokens_back_but_still_counts_as_a_request(db_path, clock):
    with Gateway.open(db_path, clock=clock, providers=vendors(failure_rate=1.0), seed=7) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        gw.set_rate_limit(tenant.id, requests_per_minute=2, tokens_per_minute=1_100)
        client = gw.as_tenant(tenant.id)
        session = session_of(client)
        for _ in range(2):  # without the refund the second would not fit 1,100 tokens
            with pytest.raises(AllProvidersFailedError):
                clock.run(client.send_message(session, "Hello"))
        with pytest.raises(RateLimitExceededError) as info:
            clock.run(client.send_message(session, "Hello"))
        assert info.value.details["limit"] == "requestsPerMinute"


# --------------------------------------------------------------------------- tenant and key
def test_a_key_s_own_limit_binds_that_key_and_the_tenant_s_binds_all_of_them(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=6)
    _, limited = gw.create_api_key(tenant.id, rate_limit={"requests_per_minute": 2})
    _, other = gw.create_api_key(tenant.id)
    a, b, operator = gw.connect(limited), gw.connect(other), gw.as_tenant(tenant.id)
    session = session_of(operator)

    async def sends() -> list[tuple[str, int | None]]:
        results = []
        for who, client in (("a", a), ("a", a), ("a", a), ("b", b), ("b", b), ("operator", operator),
                            ("b", b), ("b", b), ("operator", operator)):
            results.append((who, await attempt(client, session)))
        return results

    results = clock.run(sends())
    assert [wait is None for _, wait in results] == [True, True, False, True, True, True, True, False, False]
    assert [wait for _, wait in results if wait is not None] == [30_000, 10_000, 10_000]  # key: 2/min; tenant: 6/min
    with pytest.raises(RateLimitExceededError) as info:
        clock.run(a.send_message(session, "Hello"))
    assert (info.value.details["scope"], info.value.details["retryAfterMs"]) == ("key", 30_000)  # the longer wait
    assert gw.list_api_keys(tenant.id)[1].rate_limit == RateLimit(requests_per_minute=2)


def test_a_key_limit_alone_leaves_the_tenant_s_other_clients_free(gw, tenant, clock):
    _, limited = gw.create_api_key(tenant.id, rate_limit={"requests_per_minute": 1})
    client, operator = gw.connect(limited), gw.as_tenant(tenant.id)
    session = session_of(operator)
    clock.run(client.send_message(session, "Hello"))
    with pytest.raises(RateLimitExceededError) as info:
        clock.run(client.send_message(session, "Hello"))
    assert info.value.details["scope"] == "key"
    for _ in range(5):
        clock.run(operator.send_message(session, "Hello"))


def test_an_idempotent_replay_is_not_counted(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=1)
    client = gw.as_tenant(tenant.id)
    session = session_of(client)
    first = clock.run(client.send_message(session, "Hello", idempotency_key="k-1"))
    again = clock.run(client.send_message(session, "Hello", idempotency_key="k-1"))
    assert again.metadata.idempotency.replayed and again.message.id == first.message.id


# --------------------------------------------------------------------------- refusals cost nothing
def test_a_refusal_calls_no_provider_and_writes_only_its_refusal_row(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=1)
    _, key = gw.create_api_key(tenant.id)
    client = gw.connect(key)
    session = session_of(gw.as_tenant(tenant.id))
    clock.run(client.send_message(session, "Hello"))
    before = data_rows(gw)
    for _ in range(3):
        with pytest.raises(RateLimitExceededError):
            clock.run(client.send_message(session, "Hello"))
    assert data_rows(gw) == before  # no provider call, message, usage event or session change
    rows = gw.sql("SELECT tenant_id, key_id, session_id, code, created_at, details FROM request_refusals")
    assert list(rows["code"]) == ["RATE_LIMIT_EXCEEDED"] * 3
    assert set(rows["tenant_id"]) == {tenant.id} and set(rows["session_id"]) == {session}
    assert set(rows["key_id"]) == {client.key_id} and set(rows["created_at"]) == {clock.now()}
    assert json.loads(rows["details"][0]) == {"retryAfterMs": 60_000, "limit": "requestsPerMinute",
                                              "scope": "tenant", "value": 1}


def test_refusals_are_journaled_one_record_per_batch_and_the_rest_a_second_later(gw, tenant, clock):
    gw.set_rate_limit(tenant.id, requests_per_minute=1)
    client = gw.as_tenant(tenant.id)
    session = session_of(client)
    clock.run(client.send_message(session, "Hello"))

    async def refusals() -> list[int]:
        pending = [gw.store.pending_records]
        for i in range(REFUSAL_BATCH + 10):
            await attempt(client, session)
            if i in (REFUSAL_BATCH - 2, REFUSAL_BATCH - 1, REFUSAL_BATCH + 9):
                pending.append(gw.store.pending_records)
        await clock.sleep(1.0)  # the timer journals what is left
        pending.append(gw.store.pending_records)
        return pending

    base, before_full, full, more, later = clock.run(refusals())
    assert (before_full, full, more, later) == (base, base + 1, base + 1, base + 2)
    assert gw.sql("SELECT count(*) AS n FROM request_refusals")["n"][0] == REFUSAL_BATCH + 10


def test_refusals_still_waiting_reach_the_table_at_close(db_path, clock):
    with Gateway.open(db_path, clock=clock, providers=vendors()) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        gw.set_rate_limit(tenant.id, requests_per_minute=1)
        client = gw.as_tenant(tenant.id)
        session = session_of(client)
        clock.run(client.send_message(session, "Hello"))
        for _ in range(3):
            with pytest.raises(RateLimitExceededError):
                clock.run(client.send_message(session, "Hello"))
    with Gateway.open(db_path, clock=clock) as gw:
        assert gw.sql("SELECT count(*) AS n FROM request_refusals")["n"][0] == 3


def test_a_reopened_gateway_starts_with_full_buckets(db_path, clock):
    with Gateway.open(db_path, clock=clock, providers=vendors()) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
        gw.set_rate_limit(tenant.id, requests_per_minute=2)
        client = gw.as_tenant(tenant.id)
        session = session_of(client)
        assert [clock.run(attempt(client, session)) for _ in range(3)] == [None, None, 30_000]
    with Gateway.open(db_path, clock=clock, providers=vendors()) as gw:
        client = gw.as_tenant(tenant.id)
        assert [clock.run(attempt(client, session)) for _ in range(3)] == [None, None, 30_000]


def test_the_same_traffic_is_refused_the_same_way_twice(tmp_path):
    def run(path) -> list[int | None]:
        clock = VirtualClock(start=START)
        with Gateway.open(path, clock=clock, providers=vendors(latency_ms=120), seed=3) as gw:
            tenant, _ = gw.create_tenant("Acme Corporation")
            gw.set_rate_limit(tenant.id, requests_per_minute=20, tokens_per_minute=5_000)
            client = gw.as_tenant(tenant.id)
            session = session_of(client)

            async def traffic() -> list[int | None]:
                waits: list[int | None] = []
                for i in range(60):
                    waits.append(await attempt(client, session, "Hello " * (i % 7 + 1)))
                    await clock.sleep(0.7)
                return waits

            return clock.run(traffic())

    first, second = run(tmp_path / "a.duckdb"), run(tmp_path / "b.duckdb")
    assert first == second and None in first and any(w is not None for w in first)


# --------------------------------------------------------------------------- the bucket and shares
def admit_all(bucket: Bucket, attempts: int, now_us: int = 0) -> int:
    admitted = 0
    for _ in range(attempts):
        if bucket.wait(now_us, 1) == 0:
            bucket.take(now_us, 1)
            admitted += 1
    return admitted


def test_a_bucket_shared_by_two_instances_admits_half_the_burst_and_half_the_rate():
    whole, half = Bucket(60), Bucket(60, instances=2)
    assert (admit_all(whole, 100), admit_all(half, 100)) == (60, 30)
    assert (whole.wait(0, 1), half.wait(0, 1)) == (1_000_000, 2_000_000)  # microseconds


def test_a_request_larger_than_the_burst_passes_only_when_the_bucket_is_full():
    bucket = Bucket(100)  # one token every 0.6 s
    assert bucket.wait(0, 250) == 0
    bucket.take(0, 250)  # 150 s of tokens: 90 s beyond a full minute
    assert bucket.wait(0, 1) == 151 * 600_000  # one token fits once the debt is back under a minute
    assert bucket.wait(0, 250) == 250 * 600_000  # the big one only once the bucket is full again
