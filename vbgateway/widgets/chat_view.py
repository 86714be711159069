"""HTML for the chat: bubbles, a reply being written, the metadata line under a reply, a failed send's attempts.

Kept apart from ``ChatPanel`` so the look can change without touching the send logic.
"""

from __future__ import annotations

from typing import Any

from ..models import Reply
from .style import badge, esc, fmt_usd, table_html

__all__ = ["attempts_table", "bubble_html", "interrupted_html", "reply_meta_html", "writing_html"]


def bubble_html(role: str, text: str, *, note: str = "", failed: bool = False) -> str:
    """One chat bubble; user bubbles sit on the right."""
    cls = "failed" if failed else role
    body = f'<div class="vb-bubble {cls}">{esc(text)}</div>'
    extra = f'<div class="vb-meta" style="text-align:right">{note}</div>' if note and role == "user" else ""
    if role == "user":
        return f'<div class="vb-row-user">{body}</div>{extra}'
    return body


def writing_html(text: str) -> str:
    """An assistant bubble still being written: the text so far and a typing indicator after it."""
    return (f'<div class="vb-bubble assistant writing">{esc(text)}'
            '<span class="vb-typing" title="the agent is writing"><i></i><i></i><i></i></span></div>')


def interrupted_html(text: str, code: str, note: str) -> str:
    """A reply cut off after some text: the text that arrived, marked, and what it means for billing."""
    return (f'<div class="vb-bubble assistant interrupted">{esc(text)}</div>'
            f'<div class="vb-meta">{badge(f"interrupted · {code}", "err")} · {esc(note)}</div>')


def reply_meta_html(reply: Reply) -> str:
    """Provider, tokens, cost, latency and markers for fallback, retries and replays."""
    meta = reply.metadata
    usage = meta.usage
    latency = sum(a.latency_ms for a in meta.attempts)
    parts = [badge(meta.provider_used),
             f"tokens {usage.tokens_in} in / {usage.tokens_out} out",
             f"cost {fmt_usd(usage.cost_usd)}" + (" (billed earlier)" if meta.idempotency.replayed else ""),
             f"latency {latency} ms"]
    calls = sum(1 for a in meta.attempts if a.status != "skipped")  # a circuit breaker's skip is no call
    if calls > 1:
        parts.append(f"{calls} attempts")
    if meta.fallback_used:
        skipped = any(a.status == "skipped" and a.provider == meta.primary_attempted for a in meta.attempts)
        why = "skipped: circuit open" if skipped else "failed"
        parts.append(badge(f"↪ fallback used ({meta.primary_attempted} {why})", "warn"))
    if meta.idempotency.replayed:
        parts.append(badge("replayed · no new charge", "ok"))
    if meta.idempotency.key:
        parts.append(f'key <code>{esc(meta.idempotency.key)}</code>')
    if meta.channel == "voice":
        parts.append(badge("voice", "muted"))
    return '<div class="vb-meta">' + " · ".join(parts) + "</div>"


def attempts_table(attempts: list[dict[str, Any]]) -> str:
    """The attempts of a failed request (``details["attempts"]``, camelCase or snake_case keys)."""
    def get(item: dict[str, Any], *names: str) -> Any:
        return next((item[n] for n in names if n in item and item[n] is not None), "")
    rows = [[get(a, "provider"), get(a, "retries"), get(a, "status"), get(a, "httpStatus", "http_status"),
             get(a, "errorCode", "error_code"), f"{get(a, 'latencyMs', 'latency_ms')} ms"] for a in attempts]
    return table_html(["provider", "try", "status", "HTTP", "error", "latency"], rows, numeric={1, 3, 5})
