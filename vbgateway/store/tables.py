"""Every table of the database, defined once: name, columns, SQL types and keys.

A table is a row class (a ``NamedTuple`` whose fields are the columns, in
order, each annotated with its SQL type) plus its keys. Everything else is
derived from it: the DDL of the migrations (``schema.py``), the journal's
columns and the bulk apply (``batch.py``), the INSERT statements of the
control plane and of the simulation's merge, and the typed rows the send
path hands the store (``MessageRow(...)`` rather than a positional list).

Adding a column is one line: a field at the end of its row class, annotated
with ``Since(n)``, the migration that adds it (``ALTER TABLE ... ADD COLUMN``
puts it last, so field order and column order stay the same). Rows of that
class built by older code, or journal lines written before it, lack the
value: the journal reads it as NULL, so an added column is nullable.
"""

# No ``from __future__ import annotations``: the row classes' annotations are read as objects when a
# ``Table`` is defined, without evaluating strings (which cost each process ten milliseconds at start-up).
from datetime import datetime
from decimal import Decimal
from typing import Annotated, NamedTuple

from .table_model import (
    BigInt,
    Column,
    Day,
    Int,
    Json,
    MaybeInt,
    MaybeStamp,
    MaybeText,
    Money,
    Price,
    Rate,
    Ratio,
    RatioList,
    Since,
    Sql,
    Stamp,
    Table,
    Text,
    TextList,
    Total,
)

__all__ = [
    "AGENTS", "AGGREGATE_TABLES", "API_KEYS", "BREAKER_TRANSITIONS", "BUDGETS", "BUDGET_ALERTS", "BULK_TABLES",
    "CONTROL_TABLES", "DAILY_MESSAGES", "DAILY_SESSIONS", "DAILY_USAGE", "IDEMPOTENCY_RECORDS", "JOURNALED_TABLES",
    "JOURNAL_ENTRIES", "JOURNAL_STATE", "MESSAGES", "PRICE_VERSIONS", "PROVIDERS", "PROVIDER_CALL_EVENTS",
    "RATE_LIMITS", "REQUEST_REFUSALS", "SCHEMA_MIGRATIONS", "SESSIONS", "SESSION_ACTIVITY", "SESSION_DAYS", "TABLES",
    "USAGE_EVENTS", "AgentRow", "ApiKeyRow", "BreakerTransitionRow", "BudgetAlertRow", "BudgetRow", "Column",
    "DailyMessagesRow", "DailySessionsRow", "DailyUsageRow", "IdempotencyRow", "JournalRow", "JournalStateRow",
    "MessageRow", "MigrationRow", "PriceVersionRow", "ProviderCallRow", "ProviderRow", "RateLimitRow",
    "RequestRefusalRow", "SessionActivityRow", "SessionDayRow", "SessionRow", "Since", "Sql", "Table", "TenantRow",
    "UsageEventRow", "table_named",
]


# ----------------------------------------------------------------- control plane
class TenantRow(NamedTuple):
    id: Text
    name: Text
    created_at: Stamp


class ApiKeyRow(NamedTuple):
    id: Text
    tenant_id: Text
    key_hash: Text  # SHA-256 of the key: the key itself is shown once and never stored
    key_prefix: Text
    created_at: Stamp
    revoked_at: MaybeStamp
    # Migration 3 (governance/keys.py): NULL scopes grant every scope, also scopes added later.
    scopes: Annotated[list[str] | None, Sql("VARCHAR[]"), Since(3)] = None
    expires_at: Annotated[datetime | None, Sql("TIMESTAMPTZ"), Since(3)] = None  # a rotated key's grace end
    last_used_at: Annotated[datetime | None, Sql("TIMESTAMPTZ"), Since(3)] = None  # written at flush and close
    rotated_at: Annotated[datetime | None, Sql("TIMESTAMPTZ"), Since(3)] = None
    replaced_by: Annotated[str | None, Sql("VARCHAR"), Since(3)] = None  # the key rotation made


class AgentRow(NamedTuple):
    id: Text
    tenant_id: Text
    name: Text
    primary_provider: Text
    fallback_provider: MaybeText
    system_prompt: Text
    enabled_tools: TextList
    created_at: Stamp
    updated_at: Stamp
    max_output_tokens: Annotated[int | None, Sql("INTEGER"), Since(2)]  # NULL (agents of older databases): 1024


class BudgetRow(NamedTuple):
    """A tenant's monthly spend limit (one per tenant; no row, no limit)."""

    tenant_id: Text
    monthly_usd: Money
    alert_at: RatioList  # shares of the limit, ascending, each logged and recorded once a month
    created_at: Stamp
    updated_at: Stamp


class RateLimitRow(NamedTuple):
    """A tenant's or a key's rate limit (governance/rate_limits.py); NULL: no limit of that kind."""

    subject_id: Text  # the tenant's id (tnt_...) or the key's (key_...)
    tenant_id: Text
    kind: Text  # "tenant" or "key"
    requests_per_minute: MaybeInt
    tokens_per_minute: MaybeInt
    updated_at: Stamp


# ----------------------------------------------------------------- data plane (through the journal)
class SessionRow(NamedTuple):
    id: Text
    tenant_id: Text
    agent_id: Text
    customer_id: MaybeText
    status: Text
    metadata: Json
    created_at: Stamp
    last_activity_at: Stamp


class MessageRow(NamedTuple):
    id: Text
    tenant_id: Text
    session_id: Text
    position: Int
    role: Text
    content: Text
    channel: Text
    request_id: Text
    created_at: Stamp


class ProviderCallRow(NamedTuple):
    id: Text
    tenant_id: Text
    session_id: Text
    agent_id: Text
    request_id: Text
    provider: Text
    status: Text
    http_status: MaybeInt
    latency_ms: Int
    retries: Int
    error_code: MaybeText
    created_at: Stamp


class UsageEventRow(NamedTuple):
    id: Text
    tenant_id: Text
    session_id: Text
    agent_id: Text
    message_id: Text
    request_id: Text
    provider: Text
    channel: Text
    tokens_in: Int
    tokens_out: Int
    usd_per_1k_tokens: Price  # the single rate; for input and output priced apart, the higher one
    cost_usd: Money
    created_at: Stamp
    # The rates billed when input and output are priced apart; NULL for a single rate (both are
    # usd_per_1k_tokens x 1000), as on every event billed before prices had two rates.
    usd_per_1m_input: Annotated[Decimal | None, Sql("DECIMAL(18, 4)"), Since(6)] = None
    usd_per_1m_output: Annotated[Decimal | None, Sql("DECIMAL(18, 4)"), Since(6)] = None


class IdempotencyRow(NamedTuple):
    tenant_id: Text
    key: Text
    request_hash: Text
    message_id: Text
    response: Json  # the reply as first answered, replayed for a repeated key
    created_at: Stamp


class BudgetAlertRow(NamedTuple):
    """A threshold of a tenant's budget crossed in a UTC month: committed in the journal record of the reply
    that crossed it, so the ledger and its alerts cannot disagree."""

    tenant_id: Text
    month: Text  # "2026-03"
    threshold: Ratio
    crossed_at: Stamp
    spent_usd: Money  # the month's committed spend once that reply counted
    monthly_usd: Money  # the limit then


class SessionActivityRow(NamedTuple):
    """Not a table: a session's new ``last_activity_at``, folded into ``sessions`` when applied.

    ``created_at`` (the session's) lets the UPDATE skip the row groups of
    older sessions; journal lines written before it was added lack it.
    """

    id: Text
    last_activity_at: Stamp
    created_at: Stamp


class RequestRefusalRow(NamedTuple):
    """A request refused before any provider was called (RATE_LIMIT_EXCEEDED, BUDGET_EXCEEDED), for analytics.

    Buffered and journaled in batches (governance/refusals.py): a refusal costs no fsync of its own.
    """

    tenant_id: Text
    key_id: MaybeText  # NULL: the operator's client (``Gateway.as_tenant``, the simulation)
    session_id: MaybeText
    request_id: MaybeText
    code: Text
    created_at: Stamp  # when the request was refused (`at` is an SQL keyword)
    details: Json


class BreakerTransitionRow(NamedTuple):
    """A provider's circuit breaker changed state (``governance/breaker.py``).

    Breakers live in each gateway process, so ``gateway_id`` names the
    process (its breaker set) and ``seq`` orders its transitions; the counts
    are what the breaker saw when it decided.
    """

    gateway_id: Text
    seq: Int
    provider: Text
    from_state: Text  # closed | open | half_open
    to_state: Text
    reason: Text  # consecutive_failures | failure_rate | cooldown_elapsed | probe_succeeded | probe_failed
    consecutive_failures: Int
    window_calls: Int
    window_failures: Int
    created_at: Stamp  # when the state changed (a cooldown ends at its opening plus cooldown_s)


# ----------------------------------------------------------------- configured providers and their prices
class ProviderRow(NamedTuple):
    """A provider configured as data (``vbgateway providers add``): never its API key, only where to read it."""

    name: Text
    kind: Text  # "openai": any OpenAI-style chat completions service
    base_url: Text
    model: Text
    api_key_env: MaybeText  # the environment variable holding the key
    created_at: Stamp


class PriceVersionRow(NamedTuple):
    """A provider's rates from ``effective_from`` on (until its next version)."""

    provider: Text
    effective_from: Stamp
    usd_per_1m_input: Rate
    usd_per_1m_output: Rate
    created_at: Stamp
# ----------------------------------------------------------------- daily aggregates (``aggregates.py``)
class DailyUsageRow(NamedTuple):
    """Billed replies of one UTC day, summed per tenant, agent, provider, channel and unit price."""

    tenant_id: Text
    day: Day
    agent_id: Text
    provider: Text
    channel: Text
    usd_per_1k_tokens: Price
    replies: BigInt
    tokens_in: BigInt
    tokens_out: BigInt
    cost_usd: Total


class DailyMessagesRow(NamedTuple):
    """Messages (user and assistant) of one UTC day per tenant and channel."""

    tenant_id: Text
    day: Day
    channel: Text
    messages: BigInt


class DailySessionsRow(NamedTuple):
    """Sessions with billed replies, counted so that any range of days gives exact distinct counts.

    ``dimension`` is ``tenant`` (``value`` empty), ``agent``, ``provider`` or
    ``channel``. A session counts once on each day it was used within that
    dimension's value, with ``gap_days``: days since its previous day of use
    there (0 on its first). The distinct sessions of days ``a``..``b`` are
    the counts with ``a <= day <= b`` and ``gap_days = 0 OR day - gap_days < a``:
    each session once, on its first day of use inside the range.
    """

    tenant_id: Text
    day: Day
    dimension: Text
    value: Text
    gap_days: Int
    sessions: BigInt


class SessionDayRow(NamedTuple):
    """Each day a session was used, per agent, provider and channel: what keeps ``daily_sessions`` exact."""

    tenant_id: Text
    session_id: Text
    day: Day
    agent_id: Text
    provider: Text
    channel: Text


# ----------------------------------------------------------------- bookkeeping
class JournalStateRow(NamedTuple):
    id: Int
    applied_seq: BigInt  # the last journal line DuckDB holds
    open_count: BigInt  # how many times a writer opened the database (seeds ids of reopened runs)


class MigrationRow(NamedTuple):
    version: Int
    name: Text
    applied_at: Stamp


JournalRow = (SessionRow | MessageRow | ProviderCallRow | UsageEventRow | IdempotencyRow | SessionActivityRow
              | BudgetAlertRow | RequestRefusalRow | BreakerTransitionRow)


TENANTS = Table("tenants", TenantRow, primary_key=("id",))
API_KEYS = Table("api_keys", ApiKeyRow, primary_key=("id",), unique=("key_hash",))
AGENTS = Table("agents", AgentRow, primary_key=("id",))
# High-volume tables carry no primary-key index: ids are generated unique, exactly-once is enforced by
# the journal, and an ART index over tens of millions of rows would cost memory and insert speed for nothing.
SESSIONS = Table("sessions", SessionRow, journaled=True, bulk=True, session_column="id")
MESSAGES = Table("messages", MessageRow, journaled=True, bulk=True, session_column="session_id")
PROVIDER_CALL_EVENTS = Table("provider_call_events", ProviderCallRow, journaled=True, bulk=True,
                             session_column="session_id")
USAGE_EVENTS = Table("usage_events", UsageEventRow, journaled=True, bulk=True)
IDEMPOTENCY_RECORDS = Table("idempotency_records", IdempotencyRow, primary_key=("tenant_id", "key"), journaled=True)
JOURNAL_STATE = Table("journal_state", JournalStateRow, primary_key=("id",))
SCHEMA_MIGRATIONS = Table("schema_migrations", MigrationRow, primary_key=("version",))
SESSION_ACTIVITY = Table("session_activity", SessionActivityRow)  # journal entries only: never a DuckDB table
BUDGETS = Table("budgets", BudgetRow, primary_key=("tenant_id",), since=2)
BUDGET_ALERTS = Table("budget_alerts", BudgetAlertRow, primary_key=("tenant_id", "month", "threshold"), journaled=True,
                      since=2)
RATE_LIMITS = Table("rate_limits", RateLimitRow, primary_key=("subject_id",), since=3)
REQUEST_REFUSALS = Table("request_refusals", RequestRefusalRow, journaled=True, since=3)
BREAKER_TRANSITIONS = Table("breaker_transitions", BreakerTransitionRow, journaled=True, since=4)
PROVIDERS = Table("providers", ProviderRow, primary_key=("name",), since=6)
PRICE_VERSIONS = Table("price_versions", PriceVersionRow, primary_key=("provider", "effective_from"), since=6)
# The aggregates carry no index either (an ART index over them took more room than the events they sum):
# a write finds its rows by joining on the key, and DuckDB's min/max of the day (and of the tenant, rows
# being inserted in (tenant, day) order) skips the rest. ``aggregates.AGGREGATE_KEYS`` names each key.
DAILY_USAGE = Table("daily_usage", DailyUsageRow, since=5)
DAILY_MESSAGES = Table("daily_messages", DailyMessagesRow, since=5)
DAILY_SESSIONS = Table("daily_sessions", DailySessionsRow, since=5)
SESSION_DAYS = Table("session_days", SessionDayRow, since=5)

# In the order the migrations created them (and analysts see them listed).
TABLES: tuple[Table, ...] = (TENANTS, API_KEYS, AGENTS, SESSIONS, MESSAGES, PROVIDER_CALL_EVENTS, USAGE_EVENTS,
                             IDEMPOTENCY_RECORDS, JOURNAL_STATE, BUDGETS, BUDGET_ALERTS, RATE_LIMITS, REQUEST_REFUSALS,
                             BREAKER_TRANSITIONS, DAILY_USAGE, DAILY_MESSAGES, DAILY_SESSIONS, SESSION_DAYS,
                             PROVIDERS, PRICE_VERSIONS)
# Set up once and copied to every simulation instance. Not ``budgets``: an instance enforces its share of a
# tenant's budget, given to it in memory (simulation/budgets.py), and its database keeps no budget. Not the
# configured providers: instances call the simulated vendors.
CONTROL_TABLES: tuple[Table, ...] = (TENANTS, API_KEYS, AGENTS, RATE_LIMITS)
JOURNALED_TABLES: tuple[Table, ...] = tuple(t for t in TABLES if t.journaled)
BULK_TABLES: tuple[Table, ...] = tuple(t for t in TABLES if t.bulk)
JOURNAL_ENTRIES: tuple[Table, ...] = (*JOURNALED_TABLES, SESSION_ACTIVITY)  # what a journal line may hold
# Derived from usage_events and messages in the same transaction as they are written: never written alone.
AGGREGATE_TABLES: tuple[Table, ...] = (DAILY_USAGE, DAILY_MESSAGES, DAILY_SESSIONS, SESSION_DAYS)

_BY_NAME = {t.name: t for t in (*TABLES, SCHEMA_MIGRATIONS, SESSION_ACTIVITY)}


def table_named(name: str) -> Table:
    """The definition of table ``name`` (KeyError for a name that is not ours)."""
    return _BY_NAME[name]
