"""The error envelope back into the exception the embedded client would have raised.

Callers branch on ``GatewayError.code`` or on its subclass, so the HTTP
client must raise ``AgentNotFoundError`` where the embedded client does, with
the same code, message and details. Every code of ``vbgateway.errors`` maps
to its class; a code the client does not know (a newer server's) still
arrives as a ``GatewayError`` carrying that code and status. The request id
of the answer is added as a note, so a traceback names the line to look for
in the server's log.
"""

from __future__ import annotations

from typing import Any

from .. import errors
from ..errors import GatewayError

__all__ = ["ERROR_CLASSES", "error_from_answer", "error_from_event", "unreachable"]


def _error_classes() -> dict[str, type[GatewayError]]:
    classes: dict[str, type[GatewayError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, GatewayError):
            classes.setdefault(cls.default_code, cls)
    return classes


ERROR_CLASSES = _error_classes()


def error_from_answer(status: int, body: Any, request_id: str | None) -> GatewayError:
    """The exception for a non-2xx answer, whether or not its body is the envelope."""
    envelope = body.get("error") if isinstance(body, dict) else None
    if isinstance(envelope, dict) and isinstance(envelope.get("code"), str):
        code = envelope["code"]
        message = str(envelope.get("message", code))
        details = envelope.get("details") if isinstance(envelope.get("details"), dict) else {}
        request_id = envelope.get("requestId") or request_id
    else:  # not our server, or something in between (a proxy) answered
        code = "INTERNAL_ERROR" if status >= 500 else "NOT_FOUND" if status == 404 else "VALIDATION_ERROR"
        message, details = f"the server answered HTTP {status} without an error envelope", {"status": status}
    cls = ERROR_CLASSES.get(code)
    if cls is not None and cls.default_status == status:
        error = cls(message, details=details)
    else:
        error = (cls or GatewayError)(message, code=code, details=details, http_status=status)
    if request_id:
        error.add_note(f"request id: {request_id}")
    return error


def error_from_event(body: Any) -> GatewayError:
    """The exception of a stream's ``error`` event (an envelope without its answer's status)."""
    envelope = body.get("error") if isinstance(body, dict) else None
    code = envelope.get("code") if isinstance(envelope, dict) else None
    known = ERROR_CLASSES.get(code) if isinstance(code, str) else None
    return error_from_answer(known.default_status if known is not None else 502, body, None)


def unreachable(url: str, exc: Exception) -> GatewayError:
    """No answer at all (refused, reset, timed out): the gateway is not available."""
    return GatewayError(f"no answer from the gateway at {url}: {type(exc).__name__}", code="SERVICE_UNAVAILABLE",
                        details={"url": url, "reason": type(exc).__name__}, http_status=503)
