"""``vbgateway keys create|list|revoke|rotate`` and ``vbgateway limits set|show``: an operator's governance.

Each opens the database given by ``--db`` (which must exist: a typo must not
create an empty one), does one thing and closes it; a server holding the
file answers DATABASE_BUSY (stop it first: it keeps keys and limits in
memory), except ``limits set``, which asks a serving gateway instead
(serving.py). Every input is checked before anything is written, so a refused
command changes nothing. ``TENANT`` is a tenant's id (``tnt_...``) or its
exact name.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from ..errors import DatabaseError, ValidationError
from ..gateway import Gateway
from ..governance.scopes import SCOPES
from ..models import RateLimit, Tenant, iso_timestamp
from .basics import DEFAULT_DB
from .serving import add_serving_options, serving_gateway, tenant_id_of

__all__ = ["register"]


def _open(db: str) -> Gateway:
    if db != ":memory:" and not Path(db).exists():
        raise DatabaseError(f"no database at {db} (give --db, or create one with `vbgateway seed`)",
                            details={"path": db})
    return Gateway.open(db)


def _tenant(gw: Gateway, given: str) -> Tenant:
    """The tenant of an id, or of a name exactly one tenant has (a shared name is refused, never guessed)."""
    return gw.get_tenant(given) if given.startswith("tnt_") else gw.tenant_named(given)


def _instant(text: str) -> datetime:
    """``--expires-at``: ISO 8601 with a time zone (``2026-07-01T00:00:00Z``)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"--expires-at {text[:60]!r} is not an ISO 8601 time, e.g. 2026-07-01T00:00:00Z",
                              details={"field": "expiresAt"}) from None
    if value.tzinfo is None:
        raise ValidationError("--expires-at needs a time zone, e.g. 2026-07-01T00:00:00Z", details={"field": "expiresAt"})
    return value


def _limit_text(limit: RateLimit | None) -> str:
    if limit is None:
        return "none"
    parts = [f"{limit.requests_per_minute:,} requests/min" if limit.requests_per_minute is not None else "",
             f"{limit.tokens_per_minute:,} tokens/min" if limit.tokens_per_minute is not None else ""]
    return ", ".join(part for part in parts if part)


def _when(value: datetime | None) -> str:
    return iso_timestamp(value) if value is not None else "-"


# ------------------------------------------------------------------------------ keys
def _create(args: argparse.Namespace) -> int:
    expires_at = _instant(args.expires_at) if args.expires_at is not None else None
    with _open(args.db) as gw:
        tenant = _tenant(gw, args.tenant)
        limit = {"requests_per_minute": args.rpm, "tokens_per_minute": args.tpm}
        key_id, key = gw.create_api_key(tenant.id, scopes=args.scope, expires_at=expires_at,
                                        rate_limit=limit if args.rpm is not None or args.tpm is not None else None)
        info = gw.keys.info(key_id)
    print(f"API key for {tenant.name} ({tenant.id}), shown once, stored only as a hash:")
    print(f"  {key}")
    print(f"  id {key_id}  scopes {' '.join(info.scopes)}  expires {_when(info.expires_at)}  "
          f"rate limit {_limit_text(info.rate_limit)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _open(args.db) as gw:
        tenant = _tenant(gw, args.tenant)
        keys = gw.list_api_keys(tenant.id)
    print(f"{tenant.name} ({tenant.id}): {len(keys)} key(s)")
    for k in keys:
        rotated = f"  rotated {_when(k.rotated_at)} to {k.replaced_by}" if k.replaced_by else ""
        print(f"  {k.id}  {k.prefix}  {k.status:<7}  scopes {' '.join(k.scopes)}")
        print(f"      created {_when(k.created_at)}  expires {_when(k.expires_at)}  last used {_when(k.last_used_at)}"
              f"  revoked {_when(k.revoked_at)}  rate limit {_limit_text(k.rate_limit)}{rotated}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with _open(args.db) as gw:
        gw.revoke_api_key(args.key_id)
    print(f"revoked {args.key_id}: it is refused from now on")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    with _open(args.db) as gw:
        key_id, key = gw.rotate_api_key(args.key_id, args.grace_s)
        grace_end = gw.keys.info(args.key_id).expires_at
    print(f"new API key {key_id}, shown once, stored only as a hash (same tenant, scopes, expiry, rate limit):")
    print(f"  {key}")
    print(f"  {args.key_id} keeps working until {_when(grace_end)}, then is refused")
    return 0


# ------------------------------------------------------------------------------ limits
def _set_limits(args: argparse.Namespace) -> int:
    if args.remove and (args.rpm is not None or args.tpm is not None):
        raise ValidationError("--remove takes no --rpm or --tpm", details={"field": "remove"})
    if not args.remove and args.rpm is None and args.tpm is None:
        raise ValidationError("give --rpm and/or --tpm (the tenant's whole limit), or --remove",
                              details={"field": "rpm"})
    serving = serving_gateway(args)
    if serving is not None:  # a gateway serves the file: it changes its own limiter and stores the change
        tenant_id = tenant_id_of(args, args.tenant)
        answer = serving.call("PUT", f"/v1/operator/tenants/{tenant_id}/rate-limit",
                              {"requestsPerMinute": args.rpm, "tokensPerMinute": args.tpm})
        limit = None if answer["rateLimit"] is None else RateLimit.model_validate(answer["rateLimit"])
        print(f"{tenant_id}: rate limit {_limit_text(limit)}")
        return 0
    with _open(args.db) as gw:
        tenant = _tenant(gw, args.tenant)
        limit = gw.set_rate_limit(tenant.id, requests_per_minute=args.rpm, tokens_per_minute=args.tpm)
    print(f"{tenant.name} ({tenant.id}): rate limit {_limit_text(limit)}")
    return 0


def _show_limits(args: argparse.Namespace) -> int:
    with _open(args.db) as gw:
        tenant = _tenant(gw, args.tenant)
        limit = gw.get_rate_limit(tenant.id)
        keys = [k for k in gw.list_api_keys(tenant.id) if k.rate_limit is not None and k.status in ("active", "grace")]
    print(f"{tenant.name} ({tenant.id}): rate limit {_limit_text(limit)} (burst: one minute's allowance)")
    for k in keys:
        print(f"  key {k.id} ({k.prefix}, {k.status}): {_limit_text(k.rate_limit)}")
    return 0


def _whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a limit is at least 1 (remove it with --remove)")
    return value


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    db_help = f"database file (default {DEFAULT_DB}); it must exist"
    keys = sub.add_parser("keys", help="create, list, revoke and rotate API keys (scopes, expiry, rate limit)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="a new key for a tenant, printed once")
    create.add_argument("tenant", metavar="TENANT", help="tenant id (tnt_...) or exact name")
    create.add_argument("--scope", action="append", choices=sorted(SCOPES), metavar="SCOPE",
                        help=f"repeat for each scope; default all ({', '.join(sorted(SCOPES))})")
    create.add_argument("--expires-at", metavar="ISO", help="e.g. 2026-07-01T00:00:00Z; default never")
    create.add_argument("--rpm", type=_whole, help="the key's own requests per minute")
    create.add_argument("--tpm", type=_whole, help="the key's own tokens per minute")
    create.set_defaults(func=_create)
    listing = keys_sub.add_parser("list", help="a tenant's keys: status, scopes, expiry, last use, rotation")
    listing.add_argument("tenant", metavar="TENANT", help="tenant id (tnt_...) or exact name")
    listing.set_defaults(func=_list)
    revoke = keys_sub.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(func=_revoke)
    rotate = keys_sub.add_parser("rotate", help="a new key now; the old one works for --grace-s more seconds")
    rotate.add_argument("key_id", metavar="KEY_ID")
    rotate.add_argument("--grace-s", type=_seconds, default=3600.0, help="seconds the old key keeps working (3600)")
    rotate.set_defaults(func=_rotate)

    limits = sub.add_parser("limits", help="a tenant's rate limit (requests and tokens per minute)")
    limits_sub = limits.add_subparsers(dest="limits_command", required=True)
    put = limits_sub.add_parser("set", help="set the tenant's whole limit (a kind not given: no limit of it)")
    put.add_argument("tenant", metavar="TENANT", help="tenant id (tnt_...) or exact name")
    put.add_argument("--rpm", type=_whole, help="requests (sends) per minute")
    put.add_argument("--tpm", type=_whole, help="tokens per minute (input plus the agent's max output at admission)")
    put.add_argument("--remove", action="store_true", help="remove the tenant's limit")
    add_serving_options(put)
    put.set_defaults(func=_set_limits)
    show = limits_sub.add_parser("show", help="the tenant's limit and its keys' own limits")
    show.add_argument("tenant", metavar="TENANT", help="tenant id (tnt_...) or exact name")
    show.set_defaults(func=_show_limits)
    for parser in (create, listing, revoke, rotate, put, show):
        parser.add_argument("--db", default=DEFAULT_DB, help=db_help)
