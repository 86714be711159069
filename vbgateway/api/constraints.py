"""The input rules of the /v1 API as JSON Schema patterns, for the OpenAPI document.

The server's checks live in the core (``models.py``, ``messaging.py``,
``tenant.py``, ``voice.py``); these patterns say the same thing in the
document, so that generated clients and validators accept exactly what the
server accepts. ``tests/api/test_api_openapi.py`` holds each pattern against
the check it describes.

Written with ``\\xHH`` and ``\\uHHHH`` escapes only: ECMA-262 (the document's
regex dialect), Python's ``re`` and Rust's ``regex`` (what validators run)
read those alike, which is not true of ``\\s`` or ``\\d``.
"""

from __future__ import annotations

from ..message_input import MAX_IDEMPOTENCY_KEY_CHARS
from ..models import MAX_CONTENT_CHARS

__all__ = [
    "CORRELATION_ID",
    "CORRELATION_ID_MAX",
    "DAY",
    "IDEMPOTENCY_KEY",
    "MAX_CONTENT_CHARS",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "NON_BLANK_TEXT",
    "TEXT",
    "TOOL_NAME",
]

# Every character Python's str.strip() removes (str.isspace), which is how the core tells blank text.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

TEXT = r"^[^\x00]*$"
"""Any text without NUL (the core refuses NUL: it cannot be stored or passed on safely)."""

NON_BLANK_TEXT = rf"^[{_SPACE}]*[^\x00{_SPACE}][^\x00]*$"
"""Text with at least one character that is not white space, and no NUL (names, prompts, messages)."""

TOOL_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
"""An enabled tool: 1-64 letters, digits, ``_``, ``.``, ``-``, starting with a letter."""

DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
"""``YYYY-MM-DD`` only (``date.fromisoformat`` alone also reads ``20260131`` and ``2026-W05-6``)."""

# Header values arrive as latin-1 with surrounding white space removed by the HTTP parser.
_VISIBLE_LATIN1 = r"!-~\xa1-\xac\xae-\xff"  # str.isprintable() over latin-1, minus the space
IDEMPOTENCY_KEY = rf"^[{_VISIBLE_LATIN1}]([ {_VISIBLE_LATIN1}]{{0,{MAX_IDEMPOTENCY_KEY_CHARS - 2}}}[{_VISIBLE_LATIN1}])?$"
"""1-255 printable characters (``validate_idempotency_key``)."""

CORRELATION_ID_MAX = 200
CORRELATION_ID = rf"^[!-~]([ -~]{{0,{CORRELATION_ID_MAX - 2}}}[!-~])?$"
"""1-200 printable ASCII characters: safe to repeat in a response header and a log line."""
