"""POST .../messages is answered by ``MessagesFastPath`` exactly as FastAPI's route answers it.

Both doors call one handler (``vbgateway.api.messages.answer_message``); what
each does itself is authenticate, read the body and sit in the middleware
stack. A differential test: the same requests go to the app as built and to
the same app with the fast path taken out (two gateways with identical
seeded vendors), and every answer must match in status, headers, error
envelope and reply shape. Bodies cover odd content types, what Python's json
reads and orjson does not, nested extras, chunked bodies and a body over the
limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from api_support import ORIGIN, LiveServer, Tenant, fast_providers, new_tenant

from vbgateway import Gateway
from vbgateway.api import create_app
from vbgateway.api.fastpath import MessagesFastPath

IGNORED_HEADERS = {"date", "content-length"}  # the generated reply text may differ in length


def _app(gateway: Gateway, fast: bool) -> object:
    app = create_app(gateway)
    if not fast:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not MessagesFastPath]
    return app


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Tenant]]:
    """A tenant with a session on each of two servers: the app as built, and without its fast path."""
    tenants, stack = [], []
    for fast in (True, False):
        gateway = Gateway.open(tmp_path_factory.mktemp("fast" if fast else "plain") / "api.duckdb",
                               providers=fast_providers())
        server = LiveServer(_app(gateway, fast)).__enter__()
        client = httpx.Client(base_url=server.url, timeout=20)
        tenant = new_tenant(gateway, client, "Pair")
        tenant.session_id = tenant.session()["id"]  # type: ignore[attr-defined]
        tenants.append(tenant)
        stack.append((gateway, server, client))
    yield tenants
    for gateway, server, client in stack:
        client.close()
        server.__exit__()
        gateway.close()


def _normalised(response: httpx.Response, session_id: str) -> dict:
    """What must match between the two apps: everything but ids, timestamps and generated text."""
    headers = {k: (v if k.startswith("access-control") or k in ("vary", "content-type", "allow") else "*")
               for k, v in response.headers.items() if k not in IGNORED_HEADERS}
    assert response.headers["x-request-id"].startswith("req_")
    try:
        body = response.json()
    except json.JSONDecodeError:
        return {"status": response.status_code, "headers": headers, "text": response.text}
    if "error" in body:
        error = dict(body["error"])
        assert error.pop("requestId") == response.headers["x-request-id"]
        error = json.loads(json.dumps(error).replace(session_id, "<session>"))
        return {"status": response.status_code, "headers": headers, "error": error}
    if not body["metadata"]["idempotency"]["replayed"]:  # a replay repeats the first request's id
        assert body["metadata"]["requestId"] == response.headers["x-request-id"]
    shape = {key: sorted(value) if isinstance(value, dict) else type(value).__name__ for key, value in body.items()}
    metadata = body["metadata"]
    return {"status": response.status_code, "headers": headers, "shape": shape,
            "role": body["message"]["role"], "provider": metadata["providerUsed"],
            "attempts": [(a["provider"], a["status"]) for a in metadata["attempts"]],
            "idempotency": metadata["idempotency"]}


def _both(pair: list[Tenant], *, path: str = "/messages", content: bytes | Iterator[bytes] | None = None,
          headers: dict[str, str] | None = None, key: bool = True) -> list[dict]:
    answers = []
    for tenant in pair:
        sent = {**(tenant.headers if key else {}), **(headers or {})}
        body = content() if callable(content) else content
        response = tenant.http.post(f"/v1/sessions/{tenant.session_id}{path}", content=body,  # type: ignore[attr-defined]
                                    headers=sent)
        answers.append(_normalised(response, tenant.session_id))  # type: ignore[attr-defined]
    return answers


JSON = {"Content-Type": "application/json"}

BODIES = [
    pytest.param(b'{"content": "Hello"}', JSON, id="plain"),
    pytest.param(b'{"role": "user", "content": "Hello"}', JSON, id="with-role"),
    pytest.param(b'{"content": "Hello", "surprise": 1, "more": null}', JSON, id="flat-extras"),
    pytest.param(b'{"content": "Hello", "nested": {"a": [1, 2]}}', JSON, id="nested-extras"),
    pytest.param(b'{"content": "Hello", "x": NaN}', JSON, id="nan-python-json-only"),
    pytest.param(b'{"content": "Hello", "big": 123456789012345678901234567890}', JSON, id="bigint"),
    pytest.param(b'{"content": "\\ud83d\\ude00 ok"}', JSON, id="escaped-emoji"),
    pytest.param(b'{"content": "lone \\ud800"}', JSON, id="lone-surrogate"),
    pytest.param('{"content": "caf\u00e9"}'.encode(), {"Content-Type": "application/json; charset=utf-8"},
                 id="charset"),
    pytest.param(b'{"content": "Hello"}', {"Content-Type": "APPLICATION/JSON"}, id="upper-case-type"),
    pytest.param(b'{"content": "Hello"}', {"Content-Type": "application/json garbage"}, id="odd-type"),
    pytest.param(b'{"content": "Hello"}', {"Content-Type": "application/problem+json"}, id="plus-json"),
    pytest.param(b'{"content": "Hello"}', {"Content-Type": "text/plain"}, id="text-plain"),
    pytest.param(b'{"content": "Hello"}', {}, id="no-content-type"),
    pytest.param(b'\xef\xbb\xbf{"content": "Hello"}', JSON, id="utf8-bom"),
    pytest.param('{"content": "Hello"}'.encode("utf-16"), JSON, id="utf-16"),
    pytest.param(b'{"content": ""}', JSON, id="empty-content"),
    pytest.param(b'{"content": 5}', JSON, id="number-content"),
    pytest.param(b'{"content": null}', JSON, id="null-content"),
    pytest.param(b'{"role": "assistant", "content": "Hi"}', JSON, id="assistant-role"),
    pytest.param(b'{"role": null, "content": "Hi"}', JSON, id="null-role"),
    pytest.param(b'{}', JSON, id="empty-object"),
    pytest.param(b'[{"content": "Hi"}]', JSON, id="array"),
    pytest.param(b'"Hi"', JSON, id="string"),
    pytest.param(b'', JSON, id="empty-body"),
    pytest.param(b'{"content": ', JSON, id="broken-json"),
    pytest.param(b'{"content": "' + b"x" * (1024 * 1024) + b'"}', JSON, id="over-1-mb"),
]


@pytest.mark.parametrize(("content", "headers"), BODIES)
def test_every_body_gets_the_same_answer_with_or_without_the_fast_path(pair, content, headers):
    fast, plain = _both(pair, content=content, headers=headers)
    assert fast == plain


def test_a_chunked_body_gets_the_same_answer(pair):
    def chunks() -> Iterator[bytes]:
        yield b'{"content": '
        yield b'"Hello in parts"}'

    fast, plain = _both(pair, content=chunks, headers=JSON)
    assert fast == plain and fast["status"] == 201


def test_a_chunked_body_over_the_limit_is_refused_the_same(pair):
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 32768  # 1.25 MB, no Content-Length

    fast, plain = _both(pair, content=chunks, headers=JSON)
    assert fast == plain and fast["status"] == 413


@pytest.mark.parametrize("headers", [{"X-API-Key": "sk_wrong"}, {}], ids=["bad-key", "no-key"])
def test_a_bad_key_is_refused_before_the_body_is_read_on_both(pair, headers):
    fast, plain = _both(pair, content=b"{not json", headers={**JSON, **headers}, key=False)
    assert fast == plain and fast["status"] == 401


def test_unknown_sessions_and_other_paths_answer_the_same(pair):
    for path in ("x/messages", "/messages/", "/messages/extra"):
        fast, plain = _both(pair, path=path, content=b'{"content": "Hi"}', headers=JSON)
        assert fast == plain


def test_idempotency_keys_replay_conflict_and_refuse_the_same(pair):
    for content, key in ((b'{"content": "Once"}', "k-1"), (b'{"content": "Once"}', "k-1"),
                         (b'{"content": "Twice"}', "k-1"), (b'{"content": "Once"}', "k" * 256),
                         (b'{"content": "Once"}', "")):
        fast, plain = _both(pair, content=content, headers={**JSON, "Idempotency-Key": key})
        assert fast == plain


def test_cors_headers_are_the_same_on_the_fast_path(pair):
    fast, plain = _both(pair, content=b'{"content": "Hi"}', headers={**JSON, "Origin": ORIGIN})
    assert fast == plain
    assert fast["headers"]["access-control-allow-origin"] == ORIGIN
