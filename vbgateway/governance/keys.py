"""API keys: scopes, expiry, rotation with a grace period, last use.

A key is stored only as its SHA-256 (``api_keys.key_hash``); the key itself
is returned once, by ``create`` or ``rotate``. What a presented key allows
is a ``KeyGrant``: its tenant, its scopes and the instant it stops working.
The gateway caches grants by key hash, and every tenant client built from a
key holds the same grant object, so revoking a key, or the end of a
rotation's grace, refuses a client that is already connected too.

- **Expiry.** ``expires_at`` (on the gateway's clock): from then on the key
  is refused exactly as a revoked or unknown one (``INVALID_API_KEY``, 401).
- **Rotation.** ``rotate(key_id, grace_s)`` makes a new key with the same
  tenant, scopes, expiry and rate limit; the old one keeps working for
  ``grace_s`` seconds of the gateway's clock (its ``expires_at`` becomes the
  end of the grace), then is refused. A key is rotated once: rotate its
  successor next time.
- **Last use.** Each authenticated use notes the time in a dict (no I/O on
  the send path); the times are written to ``api_keys.last_used_at`` in one
  statement when the store is flushed (every analytical read) and at close.
  ``list`` shows the newest either way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from ..errors import AuthenticationError, InsufficientScopeError, NotFoundError, ValidationError
from ..ids import hash_api_key, key_display_prefix, new_api_key
from ..models import ApiKeyInfo, RateLimit, Tenant
from ..store.tables import ApiKeyRow, RateLimitRow
from .rate_limits import parse_rate_limit
from .scopes import ALL_SCOPES, parse_scopes

if TYPE_CHECKING:
    from ..clock import Clock
    from ..ids import IdFactory
    from ..store import Store
    from .rate_limits import RateLimiter

__all__ = ["MAX_API_KEY_CHARS", "MAX_GRACE_S", "OPERATOR_GRANT", "KeyGrant", "KeyHolder", "KeyRing"]

MAX_API_KEY_CHARS = 256
MAX_GRACE_S = 90 * 86400  # a rotation's grace: at most 90 days
_log = logging.getLogger("vbgateway.governance")


@dataclass(slots=True)
class KeyGrant:
    """What one presented key allows; ``key_id`` None is the operator (every scope, never expires)."""

    key_id: str | None
    scopes: frozenset[str]
    expires_at: datetime | None = None  # also set by a revocation and by a rotation's grace


OPERATOR_GRANT = KeyGrant(None, ALL_SCOPES)


class KeyHolder:
    """What a tenant client knows of the key it was connected with, answered alike by the embedded
    client and the HTTP one (whose grant is what ``/v1/me`` said at ``connect``; the server still
    checks each request)."""

    tenant: Tenant
    _grant: KeyGrant

    @property
    def id(self) -> str:
        """The tenant's id."""
        return self.tenant.id

    @property
    def key_id(self) -> str | None:
        """The id of the key this client was connected with (None: the operator's embedded client)."""
        return self._grant.key_id

    @property
    def scopes(self) -> frozenset[str]:
        """What the key may do (governance/scopes.py)."""
        return self._grant.scopes

    @property
    def expires_at(self) -> datetime | None:
        """When the key stops working (its expiry, a rotation's grace end, a revocation); None: never."""
        return self._grant.expires_at


def _invalid() -> AuthenticationError:
    return AuthenticationError("missing or invalid API key")


def _status(row: ApiKeyRow, now: datetime) -> Literal["active", "grace", "expired", "revoked"]:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and now >= row.expires_at:
        return "expired"
    return "grace" if row.replaced_by is not None else "active"


class KeyRing:
    """Issues, checks, rotates and revokes a gateway's keys."""

    def __init__(self, store: Store, clock: Clock, ids: IdFactory, limits: RateLimiter) -> None:
        self._store = store
        self._clock = clock
        self._ids = ids
        self._limits = limits
        self._grants: dict[str, tuple[Tenant, KeyGrant]] = {}  # key hash -> grant
        self._by_id: dict[str, KeyGrant] = {}
        self._used: dict[str, datetime] = {}  # key id -> last use not yet written

    # ------------------------------------------------------------------ checking
    def authenticate(self, api_key: object) -> tuple[Tenant, KeyGrant]:
        """The tenant and grant of a presented key; INVALID_API_KEY when unknown, revoked or expired."""
        if not isinstance(api_key, str) or not api_key or len(api_key) > MAX_API_KEY_CHARS:
            raise _invalid()
        key_hash = hash_api_key(api_key)
        found = self._grants.get(key_hash)
        if found is None:
            found = self._load(key_hash)
        self.require(found[1], None)
        return found

    def _load(self, key_hash: str) -> tuple[Tenant, KeyGrant]:
        stored = self._store.key_by_hash(key_hash)
        if stored is None or stored[0].revoked_at is not None:
            raise _invalid()
        row, tenant = stored
        grant = KeyGrant(row.id, ALL_SCOPES if row.scopes is None else frozenset(row.scopes), row.expires_at)
        self._grants[key_hash] = (tenant, grant)
        self._by_id[row.id] = grant
        return tenant, grant

    def require(self, grant: KeyGrant, scope: str | None) -> None:
        """Refuse an expired key (INVALID_API_KEY) or a missing scope (INSUFFICIENT_SCOPE); note the use."""
        key_id = grant.key_id
        if key_id is None:
            return
        now = self._clock.now()
        if grant.expires_at is not None and now >= grant.expires_at:
            raise _invalid()
        if scope is not None and scope not in grant.scopes:
            raise InsufficientScopeError(f"this key lacks the scope {scope!r}",
                                         details={"required": scope, "granted": sorted(grant.scopes)})
        self._used[key_id] = now

    # ------------------------------------------------------------------ issuing
    def create(self, tenant: Tenant, *, scopes: object = None, expires_at: object = None,
               rate_limit: object = None) -> tuple[str, str]:
        """A new key for ``tenant``: (key id, the key, shown this once)."""
        granted = parse_scopes(scopes)
        expiry = self._expiry(expires_at)
        limit = parse_rate_limit(rate_limit)
        api_key, now = new_api_key(), self._clock.now()
        row = ApiKeyRow(self._ids.new("key"), tenant.id, hash_api_key(api_key), key_display_prefix(api_key), now,
                        None, None if granted is None else sorted(granted), expiry)
        self._store.insert_key(row, self._limit_row(row, limit, now))
        if limit is not None:
            self._limits.configure(row.id, tenant.id, "key", limit)
        return row.id, api_key

    def _expiry(self, value: object) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationError("expires_at is a timezone-aware datetime (e.g. UTC)", details={"field": "expiresAt"})
        if value <= self._clock.now():
            raise ValidationError("expires_at must be in the future", details={"field": "expiresAt"})
        return value

    @staticmethod
    def _limit_row(key: ApiKeyRow, limit: RateLimit | None, now: datetime) -> RateLimitRow | None:
        if limit is None:
            return None
        return RateLimitRow(key.id, key.tenant_id, "key", limit.requests_per_minute, limit.tokens_per_minute, now)

    def rotate(self, key_id: object, grace_s: object = 3600) -> tuple[str, str]:
        """A successor for an active key: (new key id, new key); the old key works ``grace_s`` more seconds."""
        if (isinstance(grace_s, bool) or not isinstance(grace_s, (int, float)) or not math.isfinite(grace_s)
                or not 0 <= grace_s <= MAX_GRACE_S):
            raise ValidationError(f"grace_s is a number of seconds from 0 to {MAX_GRACE_S}", details={"field": "graceS"})
        old = self._store.key_by_id(key_id) if isinstance(key_id, str) else None
        now = self._clock.now()
        if old is None or _status(old, now) in ("revoked", "expired"):
            raise NotFoundError("no active API key with that id", details={"keyId": str(key_id)[:100]})
        if old.replaced_by is not None:
            raise ValidationError(f"{old.id} was already rotated; rotate its successor {old.replaced_by}",
                                  details={"keyId": old.id, "replacedBy": old.replaced_by})
        grace_end = now + timedelta(seconds=grace_s)
        old_expiry = grace_end if old.expires_at is None else min(old.expires_at, grace_end)
        api_key = new_api_key()
        new = ApiKeyRow(self._ids.new("key"), old.tenant_id, hash_api_key(api_key), key_display_prefix(api_key), now,
                        None, old.scopes, old.expires_at)
        limit = self._limits.limit_of(old.id)
        if not self._store.rotate_key(old.id, old_expiry, now, new, self._limit_row(new, limit, now)):
            raise NotFoundError("no active API key with that id", details={"keyId": old.id})
        if limit is not None:
            self._limits.configure(new.id, new.tenant_id, "key", limit)
        grant = self._by_id.get(old.id)
        if grant is not None:
            grant.expires_at = old_expiry
        return new.id, api_key

    def revoke(self, key_id: object) -> None:
        """Refuse the key from now on, connected clients included."""
        now = self._clock.now()
        if not isinstance(key_id, str) or not self._store.revoke_api_key(key_id, now):
            raise NotFoundError("no active API key with that id", details={"keyId": str(key_id)[:100]})
        grant = self._by_id.pop(key_id, None)
        if grant is not None:
            grant.expires_at = now
        self._grants = {h: found for h, found in self._grants.items() if found[1].key_id != key_id}

    # ------------------------------------------------------------------ reading
    def list_keys(self, tenant_id: str) -> list[ApiKeyInfo]:
        """A tenant's keys, oldest first, with their state as of now."""
        now = self._clock.now()
        return [self._info(row, now) for row in self._store.key_rows(tenant_id)]

    def info(self, key_id: str) -> ApiKeyInfo:
        """One key as ``list_keys`` shows it; NOT_FOUND for an unknown id."""
        row = self._store.key_by_id(key_id) if isinstance(key_id, str) else None
        if row is None:
            raise NotFoundError("no API key with that id", details={"keyId": str(key_id)[:100]})
        return self._info(row, self._clock.now())

    def _info(self, row: ApiKeyRow, now: datetime) -> ApiKeyInfo:
        used = self._used.get(row.id)
        last = used if used is not None and (row.last_used_at is None or used > row.last_used_at) else row.last_used_at
        return ApiKeyInfo(id=row.id, tenant_id=row.tenant_id, prefix=row.key_prefix, created_at=row.created_at,
                          revoked_at=row.revoked_at, scopes=sorted(ALL_SCOPES if row.scopes is None else row.scopes),
                          expires_at=row.expires_at, last_used_at=last, rotated_at=row.rotated_at,
                          replaced_by=row.replaced_by, rate_limit=self._limits.limit_of(row.id),
                          status=_status(row, now))

    def write_usage(self) -> None:
        """Write the last uses noted since the previous call (one statement); a failure is logged and retried."""
        used, self._used = self._used, {}
        if not used:
            return
        try:
            self._store.write_last_used(used)
        except Exception:
            for key_id, at in used.items():  # kept for the next flush, unless a newer use came meanwhile
                self._used.setdefault(key_id, at)
            _log.warning("could not record the last use of %d API keys; will retry", len(used), exc_info=True)
