"""One exception family for everything the gateway refuses or cannot do.

Every error a caller can see is a ``GatewayError`` with a stable ``code``, the
HTTP status the /v1 API answers with, a human ``message`` and JSON-safe
``details``. Callers branch on ``code`` (or on the subclass), never on text.

Hierarchy::

    GatewayError                      (code, message, details, http_status)
    ├── AuthenticationError           INVALID_API_KEY        401  (unknown, revoked or expired key)
    │                                 OPERATOR_SECRET_REQUIRED 401, INVALID_OPERATOR_SECRET 403
    │                                 (the local service's operator routes, /metrics from another machine)
    │                                 METRICS_LOOPBACK_ONLY 403 (/metrics from another machine, no secret)
    ├── InsufficientScopeError        INSUFFICIENT_SCOPE     403  (details: required, granted)
    ├── ValidationError               VALIDATION_ERROR       400
    │   ├── InvalidAudioError         INVALID_AUDIO          400
    │   ├── ScenarioError             INVALID_SCENARIO       400  (a simulation scenario that cannot run)
    │   │                             SCENARIO_NOT_FOUND          (no example scenario of that name)
    │   └── RowsRejectedError         ROWS_REJECTED          400  (rows a table's constraints refuse)
    ├── NotFoundError                 NOT_FOUND              404
    │   ├── AgentNotFoundError        AGENT_NOT_FOUND        404
    │   └── SessionNotFoundError      SESSION_NOT_FOUND      404
    │                                 PROVIDER_NOT_FOUND          (``vbgateway providers``: no such provider)
    ├── BudgetExceededError           BUDGET_EXCEEDED        402  (the tenant's monthly budget cannot cover the reply)
    ├── IdempotencyConflictError      IDEMPOTENCY_CONFLICT   409
    ├── PayloadTooLargeError          PAYLOAD_TOO_LARGE      413
    ├── RateLimitExceededError        RATE_LIMIT_EXCEEDED    429  (details.retryAfterMs; HTTP: Retry-After)
    ├── AllProvidersFailedError       ALL_PROVIDERS_FAILED   502  (503 + Retry-After: every circuit open, failing fast)
    ├── DatabaseError                 DATABASE_ERROR         500  (cannot open/create/read/write the file)
    │   ├── DatabaseBusyError         DATABASE_BUSY          503  (another gateway holds it or its journal)
    │   └── DatabaseTooNewError       DATABASE_TOO_NEW       500  (written by a newer vbgateway)
    ├── UnsupportedPythonError        UNSUPPORTED_PYTHON     500  (the virtual loop is unverified on this Python)
    ├── ReportError                   REPORT_FAILED          500  (a report notebook failed)
    │                                 REPORT_BUSY                 (another run writes to the output folder)
    │                                 REPORT_UNAVAILABLE          (notebook tooling or a report notebook missing)
    └── InternalError                 INTERNAL_ERROR         500

Raised as a plain ``GatewayError`` by ``vbgateway providers``: PROVIDER_EXISTS 409 (the name is
taken) and PROVIDER_IN_USE 409 (agents name the provider to be removed).

The database, report and internal errors never reach an HTTP client as such: the API answers them as
INTERNAL_ERROR; they exist so that the CLI and notebooks can say what is wrong.

Foreign exceptions (pydantic, DuckDB, audio parsing) are translated at the
boundary with ``raise ... from exc`` so the cause stays in the traceback but
never in what a client is shown: no ``duckdb`` exception leaves the store.

Two codes exist only on the wire, answered by the HTTP layer itself:
METHOD_NOT_ALLOWED 405 (with an ``Allow`` header) and SERVICE_UNAVAILABLE 503
(``/health`` when the database does not answer; the HTTP client raises it as
a ``GatewayError`` when a local service is down).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AgentNotFoundError",
    "AllProvidersFailedError",
    "AuthenticationError",
    "BudgetExceededError",
    "DatabaseBusyError",
    "DatabaseError",
    "DatabaseTooNewError",
    "GatewayError",
    "IdempotencyConflictError",
    "InsufficientScopeError",
    "InternalError",
    "InvalidAudioError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitExceededError",
    "ReportError",
    "RowsRejectedError",
    "ScenarioError",
    "SessionNotFoundError",
    "StreamInterruptedError",
    "UnsupportedPythonError",
    "ValidationError",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    Subclasses fix ``default_code`` and ``http_status``; the base can also be
    raised with any code, which keeps ``GatewayError(code=...)`` usable by
    callers that only know the wire code.
    """

    default_code: ClassVar[str] = "INTERNAL_ERROR"
    default_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = dict(details or {})
        self.http_status = http_status or self.default_status

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again, when the gateway said (``details['retryAfterMs']`` / 1000):
        a rate limit's 429, or the 503 of every circuit breaker open. None otherwise."""
        value = self.details.get("retryAfterMs")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value / 1000

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` object of the API's error envelope (without requestId)."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class AuthenticationError(GatewayError):
    default_code = "INVALID_API_KEY"
    default_status = 401


class InsufficientScopeError(GatewayError):
    """The key is valid but lacks the scope this operation needs (``details['required']``)."""

    default_code = "INSUFFICIENT_SCOPE"
    default_status = 403


class ValidationError(GatewayError):
    default_code = "VALIDATION_ERROR"
    default_status = 400


class InvalidAudioError(ValidationError):
    default_code = "INVALID_AUDIO"
    default_status = 400


class ScenarioError(ValidationError):
    """A scenario that cannot be run; the message names the field and what is wrong."""

    default_code = "INVALID_SCENARIO"


class RowsRejectedError(ValidationError):
    """Rows a table refuses (a missing value, a duplicate key, a value of the wrong type); none was written."""

    default_code = "ROWS_REJECTED"


class NotFoundError(GatewayError):
    default_code = "NOT_FOUND"
    default_status = 404


class AgentNotFoundError(NotFoundError):
    default_code = "AGENT_NOT_FOUND"


class SessionNotFoundError(NotFoundError):
    default_code = "SESSION_NOT_FOUND"


class BudgetExceededError(GatewayError):
    """The most this reply can cost does not fit in what is left of the tenant's monthly budget.

    Raised before any provider is called; ``details`` holds ``limit``,
    ``spent`` and ``reserved`` (USD, this UTC month), what the request
    would have reserved (``requested``), the ``month`` and the ``requestId``.
    """

    default_code = "BUDGET_EXCEEDED"
    default_status = 402


class IdempotencyConflictError(GatewayError):
    default_code = "IDEMPOTENCY_CONFLICT"
    default_status = 409


class PayloadTooLargeError(GatewayError):
    default_code = "PAYLOAD_TOO_LARGE"
    default_status = 413


class RateLimitExceededError(GatewayError):
    """A tenant's or a key's rate limit refused the request before any provider was called.

    ``details``: ``retryAfterMs`` (when the same request would be admitted,
    if nothing else is sent meanwhile), ``limit`` (``requestsPerMinute`` or
    ``tokensPerMinute``), ``scope`` (``tenant`` or ``key``) and ``value``.
    """

    default_code = "RATE_LIMIT_EXCEEDED"
    default_status = 429



class AllProvidersFailedError(GatewayError):
    """Every provider of the chain failed; ``details['attempts']`` lists each try."""

    default_code = "ALL_PROVIDERS_FAILED"
    default_status = 502


class StreamInterruptedError(GatewayError):
    """A streamed reply's provider failed after its first text reached the client: the stream ends,
    nothing is billed, and no other provider is asked (it could not continue the text)."""

    default_code = "STREAM_INTERRUPTED"
    default_status = 502


class DatabaseError(GatewayError):
    """The database file cannot be created, opened or read."""

    default_code = "DATABASE_ERROR"
    default_status = 500


class DatabaseBusyError(DatabaseError):
    """Another gateway (in this or another process) holds the database file."""

    default_code = "DATABASE_BUSY"
    default_status = 503


class DatabaseTooNewError(DatabaseError):
    """The database was migrated by a newer vbgateway: this code does not know its schema."""

    default_code = "DATABASE_TOO_NEW"


class UnsupportedPythonError(GatewayError):
    """The virtual loop cannot vouch for this Python's asyncio internals (``asyncio_internals``)."""

    default_code = "UNSUPPORTED_PYTHON"
    default_status = 500


class ReportError(GatewayError):
    """A report could not be produced; the message names the job and, when it was code, the cell."""

    default_code = "REPORT_FAILED"
    default_status = 500


class InternalError(GatewayError):
    default_code = "INTERNAL_ERROR"
    default_status = 500
