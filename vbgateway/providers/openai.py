"""Any OpenAI-style chat completions service: OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp's server...

``OpenAICompatible`` is the chat completions adapter over the HTTP
transport. The request is ``POST {base_url}/chat/completions`` with the
agent's system prompt as the first message; the answer's ``usage``
(``prompt_tokens``, ``completion_tokens``) is what the reply is billed for.
A service that leaves ``usage`` out is billed by the contract's estimate
(ceil(characters / 4)), never for nothing.

Errors as the retry loop reads them: 429 is RATE_LIMITED and 5xx
SERVER_ERROR, both with the ``Retry-After`` they carry; other 4xx are
CLIENT_ERROR (not retried); a 2xx body that is not a chat completion is
BAD_RESPONSE; timeouts and failed connections come from the transport.

The API key is read from the environment variable the provider names, once,
when the provider is built; it lives only in the transport's headers (never
in the database, a ``repr``, a log line or an error). A provider whose
variable is unset still loads, and each call fails at once with
CLIENT_ERROR, so the agent's fallback answers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Self

import orjson

from ..clock import Clock
from ..pricing import Rates
from .base import ProviderError, ProviderRequest, ProviderResponse, estimate_tokens
from .http import HttpTransport
from .wire import AdapterProvider, TextDelta, VendorRequest, VendorResponse, bad_response

__all__ = ["CHAT_PATH", "MissingKeyTransport", "OpenAIChatAdapter", "OpenAICompatible"]

CHAT_PATH = "/chat/completions"


class OpenAIChatAdapter:
    """Our request as a chat completion request for ``model``; its answer (or its stream) as our reply."""

    def __init__(self, vendor: str, model: str) -> None:
        self.vendor = vendor
        self.model = model

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        system = [{"role": "system", "content": request.system_prompt}] if request.system_prompt else []
        body: dict[str, Any] = {"model": self.model, "messages": [*system, *request.messages]}
        if request.max_output_tokens is not None:
            body["max_tokens"] = request.max_output_tokens
        return body

    def build(self, request: ProviderRequest) -> VendorRequest:
        return VendorRequest(CHAT_PATH, self.body(request))

    def build_stream(self, request: ProviderRequest) -> VendorRequest:
        body = {**self.body(request), "stream": True, "stream_options": {"include_usage": True}}
        return VendorRequest(CHAT_PATH, body, headers={"accept": "text/event-stream"}, stream=True)

    def error(self, status: int, retry_after_ms: int | None) -> ProviderError:
        return ProviderError.from_http(self.vendor, status, retry_after_ms)

    def parse(self, request: ProviderRequest, response: VendorResponse) -> ProviderResponse:
        status = response.status
        if not 200 <= status < 300:
            raise self.error(status, response.retry_after_ms)
        try:
            body = response.json()
        except ValueError as exc:
            raise bad_response(self.vendor, status, "a body that is not JSON") from exc
        try:
            text = body["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not text")
        except (KeyError, IndexError, TypeError) as exc:
            raise bad_response(self.vendor, status, "no reply text in its chat completion") from exc
        tokens_in, tokens_out = self.usage(request, text, body.get("usage") if isinstance(body, dict) else None)
        return ProviderResponse(text, tokens_in, tokens_out, body)

    def usage(self, request: ProviderRequest, text: str, usage: object) -> tuple[int, int]:
        """The answer's token counts; the contract's estimate where the service gave none."""
        if isinstance(usage, dict):
            given_in, given_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if _count(given_in) and _count(given_out):
                return int(given_in), int(given_out)  # type: ignore[arg-type]
        return estimate_tokens(request.input_chars()), estimate_tokens(len(text))

    def chunk(self, data: str) -> tuple[str, object]:
        """One ``data:`` payload of a stream: (text it adds, its ``usage`` or None)."""
        try:
            event = orjson.loads(data)
            choices = event.get("choices") or []
            delta = (choices[0].get("delta") or {}).get("content") if choices else None
            return (delta if isinstance(delta, str) else ""), event.get("usage")
        except (ValueError, AttributeError, TypeError) as exc:
            raise bad_response(self.vendor, 200, "a stream event that is not a chat completion chunk") from exc


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class MissingKeyTransport:
    """The transport of a provider whose API key variable is unset: every call fails at once, not retried."""

    def __init__(self, vendor: str, variable: str) -> None:
        self.vendor, self.variable = vendor, variable

    def bind(self, clock: Clock) -> Self:
        return self

    async def send(self, request: VendorRequest) -> VendorResponse:
        raise ProviderError(f"{self.vendor}: the environment variable {self.variable} (its API key) is not set",
                            error_code="CLIENT_ERROR")


class OpenAICompatible(AdapterProvider):
    """An OpenAI-style chat completions service as a provider.

    ``base_url`` is what the OpenAI SDK takes (``https://api.openai.com/v1``,
    ``http://localhost:11434/v1``...); ``prices`` are its rates, which the
    gateway adds to its price table (a ``Rates``, or ``(input, output)`` in
    USD per 1,000,000 tokens). ``environ`` is where ``api_key_env`` is
    looked up (the process environment by default).
    """

    def __init__(self, name: str, base_url: str, model: str, api_key_env: str | None = None,
                 prices: Rates | tuple[object, object] | None = None, *,
                 environ: Mapping[str, str] | None = None, max_connections: int = 256) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.prices = prices if isinstance(prices, Rates) or prices is None else Rates.of(*prices, provider=name)
        self.http: HttpTransport | None = None
        key = (os.environ if environ is None else environ).get(api_key_env) if api_key_env else None
        transport: HttpTransport | MissingKeyTransport
        if api_key_env and not key:
            transport = MissingKeyTransport(name, api_key_env)
        else:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            transport = self.http = HttpTransport(self.base_url, vendor=name, headers=headers,
                                                  max_connections=max_connections)
        self.chat = OpenAIChatAdapter(name, model)
        super().__init__(name, self.chat, transport)

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.name!r}, {self.base_url!r}, model={self.model!r})"

    async def stream(self, request: ProviderRequest) -> AsyncIterator[TextDelta | ProviderResponse]:
        """The reply as it is written: ``TextDelta`` items, then the whole ``ProviderResponse`` with its usage.

        Raises ``ProviderError`` like ``complete`` before the first item, and
        SERVER_ERROR if the stream breaks off before ``[DONE]``.
        """
        if self.http is None:
            await self.transport.send(self.chat.build(request))  # raises: no key
            return
        parts: list[str] = []
        usage: object = None
        async with self.http.stream(self.chat.build_stream(request)) as answer:
            if not 200 <= answer.status < 300:
                await answer.read()
                raise self.chat.error(answer.status, answer.retry_after_ms)
            done = False
            async for line in answer.lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                text, given = self.chat.chunk(data)
                usage = given or usage
                if text:
                    parts.append(text)
                    yield TextDelta(text)
            if not done:
                raise ProviderError(f"{self.name}: the stream ended before [DONE]", error_code="SERVER_ERROR")
        text = "".join(parts)
        tokens_in, tokens_out = self.chat.usage(request, text, usage)
        yield ProviderResponse(text, tokens_in, tokens_out, {"usage": usage} if usage else {})

    async def aclose(self) -> None:
        """Close the connection pool of the running loop."""
        if self.http is not None:
            await self.http.aclose()
