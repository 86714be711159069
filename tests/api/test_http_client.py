"""What only the HTTP tenant client does: connecting, retrying 429/503, idempotency keys on every send.

The behaviour it shares with the embedded client is specified once, in the
top-level tests marked ``tenant_clients``, which run against both. Here a
real HTTP hop (``FlakyFront``, a uvicorn server on loopback) stands between
the client and a real gateway server: it forwards requests, or refuses them
with 429/503 and a Retry-After, or forwards one and then loses the answer, as
a test scripts it. The client waits on a ``VirtualClock``, so every wait is
measured exactly and none takes real time.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from api_support import make_wav, new_tenant
from live_server import LiveServer

import vbgateway
from vbgateway import GatewayError, VirtualClock
from vbgateway.client import HttpRetryPolicy, HttpTenantClient
from vbgateway.client.retry import retry_after_seconds
from vbgateway.errors import AgentNotFoundError, AllProvidersFailedError, AuthenticationError, IdempotencyConflictError

LOSE = "lose"  # forward the request, then answer 503 as if the gateway's answer was lost on the way


@dataclass
class Refuse:
    status: int
    retry_after: str | None = None
    code: str = "SERVICE_UNAVAILABLE"


@dataclass
class FlakyFront:
    """An ASGI app that forwards to ``upstream`` unless its script says otherwise; it records what it saw."""

    upstream: str
    script: list[object] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw = [(k, v) for k, v in scope["headers"] if k not in (b"host", b"content-length")]
        self.seen.append((scope["method"], scope["path"], {k.decode(): v.decode("latin-1") for k, v in raw}))
        action = self.script.pop(0) if self.script else None
        if isinstance(action, Refuse):
            await self._refuse(send, action)
            return
        query = scope["query_string"].decode()
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            answer = await client.request(scope["method"], scope["path"] + (f"?{query}" if query else ""),
                                          content=body, headers=raw)
        if action == LOSE:
            await self._refuse(send, Refuse(503))
            return
        headers = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k in ("content-type", "x-request-id")]
        await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": answer.content})

    @staticmethod
    async def _refuse(send, refusal: Refuse) -> None:
        body = json.dumps({"error": {"code": refusal.code, "message": "not now", "details": {"why": "test"},
                                     "requestId": "req_0123456789abcdefghjk"}}).encode()
        headers = [(b"content-type", b"application/json")]
        if refusal.retry_after is not None:
            headers.append((b"retry-after", refusal.retry_after.encode()))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def front_server(server):
    front = FlakyFront(server.url)
    with LiveServer(front) as live:
        yield front, live.url


@pytest.fixture
def front(front_server):
    front, _ = front_server
    front.script.clear()
    front.seen.clear()
    return front


@pytest.fixture
def key(gateway, http) -> str:
    return new_tenant(gateway, http, "Client").key


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def client(front, front_server, key, clock):
    """A client of ``key`` through the flaky front, waiting on ``clock``."""
    with vbgateway.connect(front_server[1], key, clock=clock) as made:
        front.seen.clear()  # the key's check at connect
        yield made


@pytest.fixture
def session(client):
    agent = client.create_agent(name="Retry", primary_provider="vendorA", system_prompt="You are patient.")
    return client.create_session(agent.id)


def sends(front: FlakyFront) -> list[dict[str, str]]:
    return [headers for method, path, headers in front.seen if method == "POST" and path.endswith(("/messages",
                                                                                                    "/voice"))]


def usage_events(gateway, session_id: str) -> int:
    return int(gateway.sql("SELECT count(*) AS n FROM usage_events WHERE session_id = ?", [session_id])["n"][0])


# --- connecting -----------------------------------------------------------------------------


def test_connect_returns_the_keys_tenant_client(server, gateway, http):
    tenant = new_tenant(gateway, http, "Hello")
    with vbgateway.connect(server.url, tenant.key) as client:
        assert isinstance(client, HttpTenantClient)
        embedded = gateway.connect(tenant.key).tenant
        assert client.id == tenant.id and client.tenant.name == embedded.name
        assert client.tenant.created_at == embedded.created_at.replace(microsecond=embedded.created_at.microsecond
                                                                       // 1000 * 1000)  # the wire's milliseconds
        assert client.base_url == server.url and tenant.id in repr(client)


@pytest.mark.parametrize("bad_key", ["sk_unknown", "", None, 42, "k" * 257])
def test_connect_with_a_bad_key_is_invalid_api_key(server, bad_key):
    with pytest.raises(AuthenticationError) as info:
        vbgateway.connect(server.url, bad_key)
    assert (info.value.code, info.value.http_status) == ("INVALID_API_KEY", 401)


def test_a_gateway_that_does_not_answer_is_service_unavailable_after_bounded_retries(clock):
    with socket_without_server() as url, pytest.raises(GatewayError) as info:
        vbgateway.connect(url, "sk_anything", clock=clock)
    assert (info.value.code, info.value.http_status) == ("SERVICE_UNAVAILABLE", 503)
    assert clock.monotonic() == pytest.approx(0.25 + 0.5 + 1.0)  # four tries, waits doubling from 0.25 s


def test_a_refused_connection_retries_only_what_is_safe_to_repeat(gateway, key):
    from vbgateway.api import create_app

    slept: list[float] = []
    with LiveServer(create_app(gateway)) as live:
        client = vbgateway.connect(live.url, key, sleep=slept.append)
    with client:  # the server has stopped: every connection is refused
        with pytest.raises(GatewayError) as created:
            client.create_agent(name="Lost", primary_provider="vendorA", system_prompt="p")
        assert created.value.code == "SERVICE_UNAVAILABLE" and slept == []  # a create might have happened
        with pytest.raises(GatewayError):
            client.get_agent("agt_0000000000000000000a")
        assert slept == [0.25, 0.5, 1.0]  # a read is safe to repeat


# --- 429 and 503 ----------------------------------------------------------------------------


def test_a_429_is_tried_again_after_its_retry_after(client, front, clock):
    front.script[:] = [Refuse(429, "2", "RATE_LIMITED"), Refuse(429, "3", "RATE_LIMITED")]
    assert client.list_agents() == []
    assert len(front.seen) == 3
    assert clock.monotonic() == 5.0


def test_a_503_with_an_http_date_waits_until_then(client, front, clock):
    later = clock.now() + timedelta(seconds=7)
    front.script[:] = [Refuse(503, format_datetime(later, usegmt=True))]
    assert client.list_agents() == []
    assert clock.monotonic() == pytest.approx(7.0)


def test_without_retry_after_the_waits_double(client, front, clock):
    front.script[:] = [Refuse(503), Refuse(503), Refuse(429)]
    client.list_agents()
    assert clock.monotonic() == pytest.approx(0.25 + 0.5 + 1.0)


def test_after_the_last_attempt_the_refusal_is_raised_with_its_code(client, front, clock):
    front.script[:] = [Refuse(503, "1")] * 4
    with pytest.raises(GatewayError) as info:
        client.list_agents()
    assert (info.value.code, info.value.http_status, info.value.details) == ("SERVICE_UNAVAILABLE", 503,
                                                                             {"why": "test"})
    assert len(front.seen) == 4 and clock.monotonic() == 3.0
    assert "request id: req_0123456789abcdefghjk" in info.value.__notes__


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once(front, front_server, key, clock):
    with vbgateway.connect(front_server[1], key, clock=clock, retry=HttpRetryPolicy(max_wait_s=30)) as client:
        front.script[:] = [Refuse(429, "3600", "RATE_LIMITED")]
        front.seen.clear()
        with pytest.raises(GatewayError) as info:
            client.list_agents()
    assert (info.value.code, info.value.http_status) == ("RATE_LIMITED", 429)
    assert len(front.seen) == 1 and clock.monotonic() == 0


def test_the_waits_of_one_call_are_bounded_together(front, front_server, key, clock):
    policy = HttpRetryPolicy(attempts=10, total_wait_s=10)
    with vbgateway.connect(front_server[1], key, clock=clock, retry=policy) as client:
        front.script[:] = [Refuse(503, "4")] * 5
        with pytest.raises(GatewayError):
            client.list_agents()
    assert clock.monotonic() == 8.0  # a third wait would pass 10 s


def test_coroutines_wait_on_the_clock_too(client, front, clock, session):
    front.script[:] = [Refuse(503, "2")]
    reply = asyncio.run(client.send_message(session.id, "Hello"))
    assert reply.message.content and clock.monotonic() == 2.0


def test_a_fail_fast_503_is_raised_at_once_whatever_its_retry_after(client, front, clock, session):
    """Every circuit open: the gateway's answer, not a refusal to work (the embedded client raises it too)."""
    async def stream() -> None:
        async for _ in client.stream_message(session.id, "Hello"):
            pass

    calls = {"sync": lambda: client.list_agents(),
             "coroutine": lambda: asyncio.run(client.send_message(session.id, "Hello")),
             "stream": lambda: asyncio.run(stream())}
    for name, call in calls.items():
        front.script[:] = [Refuse(503, "5", "ALL_PROVIDERS_FAILED")]
        front.seen.clear()
        with pytest.raises(AllProvidersFailedError) as info:
            call()
        assert info.value.http_status == 503 and len(front.seen) == 1, name
    assert clock.monotonic() == 0
    front.script[:] = [Refuse(503, "5", "SERVICE_UNAVAILABLE")]  # any other 503 is still waited out
    assert len(client.list_agents()) == 1 and clock.monotonic() == 5.0


# --- idempotency keys -----------------------------------------------------------------------


def test_every_send_carries_an_idempotency_key_of_its_own(client, front, session):
    asyncio.run(client.send_message(session.id, "Hello"))
    asyncio.run(client.send_message(session.id, "Hello"))
    asyncio.run(client.send_voice(session.id, make_wav(400)))
    keys = [headers.get("idempotency-key") for headers in sends(front)]
    assert len(keys) == 3 and all(keys) and len(set(keys)) == 3


def test_a_retried_send_repeats_its_key(client, front, session):
    front.script[:] = [Refuse(503, "1"), None, Refuse(429, "1")]
    asyncio.run(client.send_message(session.id, "Hello"))
    asyncio.run(client.send_voice(session.id, make_wav(400), idempotency_key="mine"))
    keys = [headers["idempotency-key"] for headers in sends(front)]
    assert keys[0] == keys[1] and keys[2:] == ["mine", "mine"]


@pytest.mark.parametrize("given_key", [None, "order-7"])
def test_a_send_whose_answer_was_lost_is_billed_once(client, front, gateway, session, given_key):
    front.script[:] = [LOSE]
    reply = asyncio.run(client.send_message(session.id, "Bill me once", idempotency_key=given_key))
    assert len(sends(front)) == 2  # the first reached the gateway and was billed; its answer did not come back
    assert usage_events(gateway, session.id) == 1
    assert [m.role for m in client.transcript(session.id).messages] == ["user", "assistant"]
    assert reply.message.id == client.transcript(session.id).messages[-1].id
    assert reply.metadata.idempotency.key == given_key


def test_a_voice_turn_whose_answer_was_lost_is_billed_once(client, front, gateway, session):
    front.script[:] = [LOSE]
    voice = asyncio.run(client.send_voice(session.id, make_wav(600)))
    assert voice.reply.metadata.channel == "voice" and voice.audio.startswith(b"RIFF")
    assert usage_events(gateway, session.id) == 1
    assert (voice.reply.metadata.idempotency.key, voice.reply.metadata.idempotency.replayed) == (None, False)


def test_a_key_of_the_clients_own_never_meets_the_callers(client, session):
    first = asyncio.run(client.send_message(session.id, "Same words"))
    again = asyncio.run(client.send_message(session.id, "Same words"))
    assert first.message.id != again.message.id  # two calls without a key are two replies, as embedded


def test_a_conflicting_key_is_the_embedded_error_class(client, session):
    asyncio.run(client.send_message(session.id, "One", idempotency_key="k"))
    with pytest.raises(IdempotencyConflictError):
        asyncio.run(client.send_message(session.id, "Two", idempotency_key="k"))


# --- errors and loops -----------------------------------------------------------------------


def test_an_error_answer_becomes_the_embedded_class_with_code_message_and_details(client, server, key, gateway):
    with pytest.raises(AgentNotFoundError) as remote:
        client.get_agent("agt_0000000000000000000a")
    with pytest.raises(AgentNotFoundError) as local:
        gateway.connect(key).get_agent("agt_0000000000000000000a")
    assert (remote.value.code, remote.value.message, remote.value.details, remote.value.http_status) == (
        local.value.code, local.value.message, local.value.details, local.value.http_status)


def test_an_unknown_error_code_keeps_its_code_and_status(client, front):
    front.script[:] = [Refuse(418, code="TEAPOT")]
    with pytest.raises(GatewayError) as info:
        client.list_agents()
    assert (type(info.value), info.value.code, info.value.http_status) == (GatewayError, "TEAPOT", 418)


def test_coroutines_work_on_one_event_loop_after_another(client, session):
    for text in ("first loop", "second loop"):
        async def send(text: str = text):
            try:
                return await client.send_message(session.id, text)
            finally:
                await client.aclose()

        assert asyncio.run(send()).message.content
    assert [m.content for m in client.transcript(session.id).messages[::2]] == ["first loop", "second loop"]


def test_fifty_concurrent_sends_share_one_pool(client, session, gateway):
    async def burst():
        try:
            return await asyncio.gather(*(client.send_message(session.id, f"Message {i}") for i in range(50)))
        finally:
            await client.aclose()

    replies = asyncio.run(burst())
    assert len({r.message.id for r in replies}) == 50
    assert usage_events(gateway, session.id) == 50


def test_a_gateway_on_a_unix_socket(gateway, http, tmp_path):
    from vbgateway.api import create_app

    tenant = new_tenant(gateway, http, "Socket")
    path = str(tmp_path / "gw.sock")
    with LiveServer(create_app(gateway), uds=path), vbgateway.connect("http://gateway", tenant.key, uds=path) as c:
        agent = c.create_agent(name="Local", primary_provider="vendorB", system_prompt="p")
        assert c.list_agents() == [agent]
        reply = asyncio.run(c.send_message(c.create_session(agent.id).id, "Over a socket"))
        assert reply.metadata.provider_used == "vendorB"


# --- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "seconds"), [
    ("0", 0.0), ("12", 12.0), (" 3 ", 3.0), ("Wed, 01 Jan 2026 00:00:09 GMT", 9.0),
    ("Tue, 31 Dec 2025 23:59:00 GMT", 0.0), ("soon", None), ("-1", None), ("1.5", None), (None, None)])
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after_seconds(header, datetime(2026, 1, 1, tzinfo=UTC)) == seconds


@pytest.mark.parametrize("fields", [{"attempts": 0}, {"backoff_s": -1}, {"max_wait_s": -0.5}, {"total_wait_s": -1}])
def test_a_policy_that_cannot_work_is_refused(fields):
    with pytest.raises(ValueError):
        HttpRetryPolicy(**fields)


class socket_without_server:
    """A loopback URL whose port nobody listens on (bound, never listening: nothing else can take it)."""

    def __enter__(self) -> str:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
