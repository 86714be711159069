"""What a key may do: the scope vocabulary, and which scope each /v1 operation needs.

Written down once, here: the tenant client checks a scope in every method,
the HTTP route class checks the scope of its operation before reading the
body, and ``/openapi.json`` and docs/gateway.md state the same table.

Scopes are flat (none implies another): a key holds exactly the scopes it
was given. A key given no scopes holds all of them, also scopes added in
later versions (its ``scopes`` column is NULL). ``GET /v1/me`` needs no
scope: any valid key may see who it is and what it may do.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import ValidationError

__all__ = ["ALL_SCOPES", "OPEN_ROUTES", "ROUTE_SCOPES", "SCOPES", "parse_scopes", "scope_for_route"]

SCOPES: dict[str, str] = {
    "agents:read": "list and read the tenant's agents",
    "agents:write": "create and change agents",
    "chat": "open sessions and send chat and voice messages, also by /v1/chat/completions (rate limits count these sends)",
    "sessions:read": "read sessions and their transcripts",
    "usage:read": "usage rollup, events and monthly cost",
}
ALL_SCOPES: frozenset[str] = frozenset(SCOPES)

# (method, path template) -> the scope it needs. Every /v1 route of a tenant key is listed here or in
# OPEN_ROUTES: the route class refuses to build a route that is in neither (a new endpoint must say).
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/v1/agents"): "agents:read",
    ("GET", "/v1/agents/{agentId}"): "agents:read",
    ("POST", "/v1/agents"): "agents:write",
    ("PUT", "/v1/agents/{agentId}"): "agents:write",
    ("POST", "/v1/sessions"): "chat",
    ("POST", "/v1/sessions/{sessionId}/messages"): "chat",
    ("POST", "/v1/sessions/{sessionId}/voice"): "chat",
    ("GET", "/v1/sessions/{sessionId}"): "sessions:read",
    ("GET", "/v1/sessions/{sessionId}/transcript"): "sessions:read",
    ("GET", "/v1/usage/rollup"): "usage:read",
    ("GET", "/v1/usage/events"): "usage:read",
    ("GET", "/v1/usage/monthly"): "usage:read",
    ("POST", "/v1/chat/completions"): "chat",  # the OpenAI-compatible front door (api/routes_openai.py)
    ("GET", "/v1/models"): "agents:read",
    ("GET", "/v1/models/{model}"): "agents:read",
}
OPEN_ROUTES: frozenset[tuple[str, str]] = frozenset({("GET", "/v1/me")})


def scope_for_route(methods: Iterable[str] | None, path: str) -> str | None:
    """The scope a route needs (None: any valid key); a route in neither table is a programming error."""
    needed: set[str | None] = set()
    for method in methods or ():
        if (method, path) in OPEN_ROUTES:
            needed.add(None)
        elif (method, path) in ROUTE_SCOPES:
            needed.add(ROUTE_SCOPES[(method, path)])
        else:
            raise RuntimeError(f"{method} {path} names no scope: add it to governance/scopes.py")
    if len(needed) != 1:
        raise RuntimeError(f"{path}: one route, one scope (got {sorted(map(str, needed))})")
    return needed.pop()


def parse_scopes(value: object) -> frozenset[str] | None:
    """Scopes as given to ``create_api_key``: None (every scope), one name, or names; VALIDATION_ERROR otherwise."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if isinstance(names, (bytes, dict)) or not isinstance(names, Iterable):
        raise ValidationError("scopes is a set of scope names", details={"field": "scopes"})
    given = list(names)
    unknown = sorted({str(name)[:64] for name in given if not isinstance(name, str) or name not in SCOPES})
    if unknown:
        raise ValidationError(f"unknown scope(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(SCOPES))}",
                              details={"field": "scopes", "unknown": unknown, "known": sorted(SCOPES)})
    if not given:
        raise ValidationError("a key needs at least one scope (None gives every scope)", details={"field": "scopes"})
    return frozenset(given)
