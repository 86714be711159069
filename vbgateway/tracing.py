"""OpenTelemetry spans for replies, following the GenAI semantic conventions, when asked for.

Optional twice over: ``opentelemetry`` need not be installed, and a gateway
writes no span unless tracing is switched on (``enable_tracing(gw)``, or the
environment variable ``VBGATEWAY_OTEL=1`` when the gateway opens). Off, the
send path pays one attribute check per reply (``metrics.tracer is None``).

On, the spans are built after the fact from what the reply already holds:
its metadata and its attempt log, with the start and end times they record
(the gateway's clock, so a ``VirtualClock`` dates them in virtual time). The
send path is not wrapped in a context manager and awaits nothing more, and a
span that cannot be written is logged, never raised: tracing can slow
nothing down that it does not need to, and can fail no reply.

Per reply, a CLIENT span ``chat {agent id}`` (``gen_ai.operation.name`` =
``chat``, ``gen_ai.request.model`` = the agent, ``gen_ai.provider.name``
(and the older ``gen_ai.system``) = the provider that answered,
``gen_ai.response.model`` = that provider's model, token usage,
``gen_ai.request.max_tokens``, and ``vbgateway.tenant_id``,
``vbgateway.request_id``, ``vbgateway.cost_usd``...), with one child span
``attempt {provider}`` per provider call: its status, HTTP status, error
code (``error.type``) and latency. A request every provider failed gives the
same span with ``error.type`` and an error status.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gateway import Gateway
    from .models import Reply
    from .providers.base import Provider, ProviderRequest
    from .reliability import AttemptLog

__all__ = ["ENV_VAR", "INSTRUMENTATION_NAME", "ReplyTracer", "disable_tracing", "enable_from_environment",
           "enable_tracing"]

ENV_VAR = "VBGATEWAY_OTEL"
INSTRUMENTATION_NAME = "vbgateway"
_TRUE = frozenset({"1", "true", "yes", "on"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = timedelta(microseconds=1)
_log = logging.getLogger("vbgateway.tracing")


def _ns(at: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (a float timestamp would round)."""
    return (at - _EPOCH) // _NS * 1000


class ReplyTracer:
    """Writes the spans of finished replies through one OpenTelemetry tracer."""

    def __init__(self, tracer: Any, providers: Mapping[str, Provider]) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._tracer = tracer
        self._providers = providers  # the gateway's own map: providers added later are found too
        self._in_context, self._client = trace.set_span_in_context, SpanKind.CLIENT
        self._error = Status(StatusCode.ERROR)
        self._warned = False

    # ------------------------------------------------------------------ hooks (after the fact)
    def reply(self, tenant_id: str, request: ProviderRequest, received_at: datetime, reply: Reply,
              attempts: Sequence[AttemptLog]) -> None:
        """The spans of a billed reply; never raises."""
        try:
            meta, usage = reply.metadata, reply.metadata.usage
            attributes = self._common(tenant_id, meta.request_id, meta.agent_id, meta.provider_used, request)
            attributes.update({
                "gen_ai.response.model": self._model_of(meta.provider_used),
                "gen_ai.response.id": reply.message.id,
                "gen_ai.conversation.id": reply.message.session_id,
                "gen_ai.usage.input_tokens": usage.tokens_in,
                "gen_ai.usage.output_tokens": usage.tokens_out,
                "vbgateway.cost_usd": float(usage.cost_usd),
                "vbgateway.channel": meta.channel,
                "vbgateway.fallback_used": meta.fallback_used,
            })
            self._write(meta.agent_id, attributes, received_at, reply.message.created_at, attempts, None)
        except Exception:
            self._failed_to_write()

    def failed(self, tenant_id: str, request_id: str, agent_id: str, request: ProviderRequest,
               received_at: datetime, attempts: Sequence[AttemptLog], streamed: bool) -> None:
        """The spans of a request no provider answered (``streamed``: text had reached the caller); never raises."""
        try:
            error_code = "STREAM_INTERRUPTED" if streamed else "ALL_PROVIDERS_FAILED"
            first = attempts[0].provider if attempts else None
            attributes = self._common(tenant_id, request_id, agent_id, first, request)
            attributes["error.type"] = error_code
            ended = max((_ended(a) for a in attempts), default=received_at)
            self._write(agent_id, attributes, received_at, max(ended, received_at), attempts, error_code)
        except Exception:
            self._failed_to_write()

    # ------------------------------------------------------------------ spans
    @staticmethod
    def _common(tenant_id: str, request_id: str, agent_id: str, provider: str | None,
                request: ProviderRequest) -> dict[str, Any]:
        attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": agent_id,
                                      "vbgateway.tenant_id": tenant_id, "vbgateway.request_id": request_id}
        if provider is not None:
            attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = provider
        if request.max_output_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_output_tokens
        return attributes

    def _model_of(self, provider: str) -> str:
        model = getattr(self._providers.get(provider), "model", None)
        return model if isinstance(model, str) else provider

    def _write(self, agent_id: str, attributes: dict[str, Any], started: datetime, ended: datetime,
               attempts: Sequence[AttemptLog], error_code: str | None) -> None:
        span = self._tracer.start_span(f"chat {agent_id}", kind=self._client, attributes=attributes,
                                       start_time=_ns(started))
        try:
            parent = self._in_context(span)
            for attempt in attempts:
                child = self._tracer.start_span(f"attempt {attempt.provider}", context=parent, kind=self._client,
                                                attributes=_attempt_attributes(attempt),
                                                start_time=_ns(attempt.started_at))
                if attempt.error_code is not None:
                    child.set_status(self._error)
                child.end(end_time=_ns(_ended(attempt)))
            if error_code is not None:
                span.set_status(self._error)
        finally:
            span.end(end_time=_ns(ended))

    def _failed_to_write(self) -> None:
        if not self._warned:  # once: a broken exporter must not flood the log at every reply
            self._warned = True
            _log.warning("could not write a reply's trace spans (later failures are logged at debug level)",
                         exc_info=True)
        else:
            _log.debug("could not write a reply's trace spans", exc_info=True)


def _ended(attempt: AttemptLog) -> datetime:
    return attempt.started_at + timedelta(milliseconds=attempt.latency_ms)


def _attempt_attributes(attempt: AttemptLog) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": attempt.provider,
                                  "vbgateway.attempt.status": attempt.status,
                                  "vbgateway.attempt.retry": attempt.retries,
                                  "vbgateway.attempt.latency_ms": attempt.latency_ms}
    if attempt.http_status is not None:
        attributes["http.response.status_code"] = attempt.http_status
    if attempt.error_code is not None:
        attributes["error.type"] = attempt.error_code
    return attributes


# ---------------------------------------------------------------------- switching it on and off
def enable_tracing(gw: Gateway, tracer_provider: Any = None) -> bool:
    """Write spans for ``gw``'s replies through ``tracer_provider`` (None: the global one, as installed later too).

    False (and nothing changes) when ``opentelemetry`` is not installed.
    """
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    from . import __version__

    if tracer_provider is None:
        tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__)
    else:
        tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__)
    gw.metrics.tracer = ReplyTracer(tracer, gw.providers)
    return True


def disable_tracing(gw: Gateway) -> None:
    gw.metrics.tracer = None


def enable_from_environment(gw: Gateway, environ: Mapping[str, str] | None = None) -> bool:
    """``enable_tracing(gw)`` if ``VBGATEWAY_OTEL`` says so; a warning if opentelemetry is missing."""
    if (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower() not in _TRUE:
        return False
    if enable_tracing(gw):
        return True
    _log.warning("%s is set but opentelemetry is not installed: no trace spans (pip install opentelemetry-sdk)",
                 ENV_VAR)
    return False
