"""Helpers of the API tests: a live uvicorn server, tenants over HTTP, WAV files, envelope checks.

(A module of its own, not conftest.py, so that test modules can import it.)
"""

from __future__ import annotations

import io
import logging
import uuid
import wave
from dataclasses import dataclass

import httpx
from live_server import LiveServer  # noqa: F401  (re-exported: the API tests import it from here)

from vbgateway import Gateway
from vbgateway.providers import VendorA, VendorB

ORIGIN = "http://localhost:5173"
OPERATOR_SECRET = "op-secret-for-tests-0123456789"  # of the ``operator_server`` fixture (conftest.py)


def fast_providers(*, failing: bool = False) -> dict[str, object]:
    if failing:
        return {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=1.0, seed=1),
                "vendorB": VendorB(latency_ms=(0, 0), failure_rate=1.0, rate_limit_rate=0.0, seed=2)}
    return {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0, seed=1),
            "vendorB": VendorB(latency_ms=(0, 0), rate_limit_rate=0.0, seed=2)}


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Tenant:
    id: str
    key: str
    http: httpx.Client

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.http.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> httpx.Response:
        return self.http.post(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)  # type: ignore[arg-type]

    def put(self, path: str, **kw: object) -> httpx.Response:
        return self.http.put(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)  # type: ignore[arg-type]

    def agent(self, **fields: object) -> dict:
        body = {"name": "Support", "primaryProvider": "vendorA", "fallbackProvider": "vendorB",
                "systemPrompt": "You are helpful.", "enabledTools": ["InvoiceLookup"], **fields}
        response = self.post("/v1/agents", json=body)
        assert response.status_code == 201, response.text
        return response.json()["agent"]

    def session(self, agent_id: str | None = None) -> dict:
        response = self.post("/v1/sessions", json={"agentId": agent_id or self.agent()["id"],
                                                   "customerId": "customer_123", "metadata": {"source": "web"}})
        assert response.status_code == 201, response.text
        return response.json()["session"]


def new_tenant(gateway: Gateway, http: httpx.Client, name: str = "Acme") -> Tenant:
    tenant, key = gateway.create_tenant(f"{name} {uuid.uuid4().hex[:8]}")
    return Tenant(tenant.id, key, http)


def make_wav(ms: int = 1000, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x10\x00\xf0\xff" * (rate * ms // 2000))
    return buffer.getvalue()


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The contract's envelope, with the X-Request-Id header repeated in the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "requestId"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    assert error["requestId"] == response.headers["x-request-id"]
    assert error["requestId"].startswith("req_")
    assert "Traceback" not in response.text
    return error

