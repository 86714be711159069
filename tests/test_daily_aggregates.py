"""The daily aggregates never disagree with the events: random traffic, replays, bulk rows, merges, crashes.

Every check compares the aggregate tables, and every answer read from them,
with what the events alone give (``aggregate_checks.py``).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from aggregate_checks import assert_aggregates_match_events, assert_tenant_answers_match_events
from test_crash_recovery import Child, assert_consistent, crash_db, run_until_acks  # noqa: F401 (a fixture)

from vbgateway import Gateway, GatewayError, VirtualClock, analytics
from vbgateway.audio import synthesize
from vbgateway.providers import VendorA, VendorB
from vbgateway.simulation import Scenario, simulate
from vbgateway.store import aggregates
from vbgateway.store.schema import MIGRATIONS
from vbgateway.store.tables import SessionActivityRow, UsageEventRow
from vbgateway.synthetic import SyntheticSpec, create_tenants, generate

START = datetime(2026, 1, 5, 9, tzinfo=UTC)  # a Monday


def providers(seed: int) -> dict:
    return {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.25, seed=seed),
            "vendorB": VendorB(latency_ms=(0, 0), failure_rate=0.1, rate_limit_rate=0.1, seed=seed + 1)}


def random_traffic(gw: Gateway, clock: VirtualClock, rng: random.Random, *, days: int = 6) -> list[str]:
    """Two tenants, three agents; sessions reused days later (gaps), voice, replayed keys, reads in between."""
    tenants = []
    for name in ("Acme", "Globex"):
        tenant, _ = gw.create_tenant(name)
        tenants.append(gw.as_tenant(tenant.id))
    agents = [(tenants[0], tenants[0].create_agent(name="Support", primary_provider="vendorA",
                                                   fallback_provider="vendorB", system_prompt="Help.")),
              (tenants[0], tenants[0].create_agent(name="Sales", primary_provider="vendorB", fallback_provider=None,
                                                   system_prompt="Sell.")),
              (tenants[1], tenants[1].create_agent(name="Desk", primary_provider="vendorB",
                                                   fallback_provider="vendorA", system_prompt="Answer."))]
    sessions: list[tuple] = []
    audio = synthesize("where is my order")
    for day in range(days):
        for _ in range(rng.randint(3, 6)):
            client, agent = rng.choice(agents)
            sessions.append((client, client.create_session(agent.id).id))
        for turn in range(rng.randint(15, 30)):
            client, session_id = rng.choice(sessions)  # old sessions come back on later days
            key = f"k{day}-{turn}" if rng.random() < 0.3 else None
            try:
                if rng.random() < 0.15:
                    clock.run(client.send_voice(session_id, audio, idempotency_key=key))
                else:
                    clock.run(client.send_message(session_id, f"question {day}-{turn}", idempotency_key=key))
                if key is not None and rng.random() < 0.5:  # a client retry: replayed, billed once
                    clock.run(client.send_message(session_id, f"question {day}-{turn}", idempotency_key=key))
            except GatewayError as exc:
                assert exc.code in ("ALL_PROVIDERS_FAILED", "IDEMPOTENCY_CONFLICT")
            if rng.random() < 0.1:
                analytics.rollup(gw, client.id, START.date(), START.date() + timedelta(days=days))  # flushes a batch
            clock.advance(rng.uniform(60, 1800))
        clock.advance(86_400 - (clock.now() - START).total_seconds() % 86_400)
    return [t.id for t in tenants]


@pytest.mark.parametrize("flush_records", [1, 7, 5000])
def test_random_traffic_keeps_every_aggregate_equal_to_the_events(tmp_path: Path, flush_records: int) -> None:
    clock = VirtualClock(START)
    with Gateway.open(tmp_path / "agg.duckdb", clock=clock, seed=flush_records, providers=providers(flush_records),
                      flush_records=flush_records) as gw:
        tenants = random_traffic(gw, clock, random.Random(flush_records))
        assert_aggregates_match_events(gw)
        for tenant_id in tenants:
            assert_tenant_answers_match_events(gw, tenant_id, START.date(), START.date() + timedelta(days=6))
            assert_tenant_answers_match_events(gw, tenant_id, START.date() + timedelta(days=2),
                                               START.date() + timedelta(days=3))
    with Gateway.open(tmp_path / "agg.duckdb", clock=clock) as gw:  # and as stored, after a restart
        assert_aggregates_match_events(gw)


def test_bulk_rows_of_days_already_counted_keep_distinct_sessions_exact(tmp_path: Path) -> None:
    """Rows inserted out of order (earlier and in-between days of sessions already counted) re-cut the gaps."""
    clock = VirtualClock(START)
    with Gateway.open(tmp_path / "bulk.duckdb", clock=clock, seed=3, providers=providers(3)) as gw:
        tenants = random_traffic(gw, clock, random.Random(3), days=4)
        known = gw.sql("SELECT DISTINCT tenant_id, session_id, agent_id FROM usage_events ORDER BY session_id LIMIT 12")
        rng = random.Random(4)
        rows = []
        for i, (tenant_id, session_id, agent_id) in enumerate(known.itertuples(index=False)):
            for shift in (-3, -1, 1, 2):  # before, between and after the days it was used
                at = START + timedelta(days=shift + rng.randint(0, 3), hours=rng.randint(0, 12))
                tokens_in, tokens_out = rng.randint(10, 900), rng.randint(5, 300)
                rows.append({"id": f"evt_bulk{i}_{shift}", "tenant_id": tenant_id, "session_id": session_id,
                             "agent_id": agent_id, "message_id": f"msg_bulk{i}_{shift}",
                             "request_id": f"req_bulk{i}_{shift}", "provider": rng.choice(["vendorA", "vendorB"]),
                             "channel": rng.choice(["chat", "voice"]), "tokens_in": tokens_in,
                             "tokens_out": tokens_out, "usd_per_1k_tokens": Decimal("0.002"),
                             "cost_usd": Decimal(tokens_in + tokens_out) * Decimal("0.000002"), "created_at": at})
        gw.store.bulk_insert("usage_events", pa.Table.from_pylist(rows))
        assert_aggregates_match_events(gw)
        for tenant_id in tenants:
            for first in range(-4, 5):
                day = START.date() + timedelta(days=first)
                assert_tenant_answers_match_events(gw, tenant_id, day, day + timedelta(days=2))


def test_a_simulation_merges_its_instances_aggregates_with_its_rows(tmp_path: Path) -> None:
    scenario = Scenario.parse({"name": "agg", "start": "2026-03-02T20:00:00Z", "duration": "8h", "seed": 9,
                               "tenants": 2, "gateways": 3,
                               "traffic": {"sessions_per_hour": 15, "daily_profile": {"hourly": [1.0] * 24},
                                           "think_time_s": {"mean": 900, "min": 60, "max": 7200}}})
    result = simulate(scenario, db=tmp_path / "sim.duckdb")
    with Gateway.open(tmp_path / "sim.duckdb", clock=VirtualClock(scenario.stop)) as gw:
        assert result.tenant_ids and gw.store.query_rows("SELECT count(*) > 100 FROM usage_events") == [(True,)]
        assert gw.store.query_rows("SELECT count(DISTINCT CAST(created_at AS DATE)) FROM usage_events") == [(2,)]
        assert_aggregates_match_events(gw)
        for tenant in gw.list_tenants():
            assert_tenant_answers_match_events(gw, tenant.id, date(2026, 3, 2), date(2026, 3, 3))


def test_a_merged_database_file_adds_its_rows_to_the_aggregates(tmp_path: Path) -> None:
    clock, other = VirtualClock(START), VirtualClock(START + timedelta(days=2))
    with Gateway.open(tmp_path / "other.duckdb", clock=other, seed=8, providers=providers(8)) as gw:
        merged = random_traffic(gw, other, random.Random(8), days=3)
    with Gateway.open(tmp_path / "target.duckdb", clock=clock, seed=7, providers=providers(7)) as gw:
        tenants = random_traffic(gw, clock, random.Random(7), days=3)
        with gw.store.merging() as merge:
            merge.add_file(tmp_path / "other.duckdb")
        assert_aggregates_match_events(gw)
        for tenant_id in tenants + merged:
            assert_tenant_answers_match_events(gw, tenant_id, START.date(), START.date() + timedelta(days=5))


def test_the_migration_fills_the_aggregates_from_the_rows_stored_before(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    clock = VirtualClock(START)
    with Gateway.open(db, clock=clock, seed=5, providers=providers(5)) as gw:
        tenants = random_traffic(gw, clock, random.Random(5), days=3)
    con = duckdb.connect(str(db))  # as a database made before migration 5 left it
    for table in ("daily_usage", "daily_messages", "daily_sessions", "session_days"):
        con.execute(f"DROP TABLE {table}")
    con.execute("DELETE FROM schema_migrations WHERE version = 5")
    con.close()
    with Gateway.open(db, clock=clock) as gw:
        assert gw.store.schema_version == MIGRATIONS[-1].version
        assert_aggregates_match_events(gw)
        for tenant_id in tenants:
            assert_tenant_answers_match_events(gw, tenant_id, START.date(), START.date() + timedelta(days=3))


def test_a_cached_rollup_is_dropped_when_replies_are_applied_and_pending_replies_count(tmp_path: Path) -> None:
    clock = VirtualClock(START)
    with Gateway.open(tmp_path / "cache.duckdb", clock=clock, seed=6, flush_records=10_000,
                      providers={"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0, seed=1)}) as gw:
        tenant, _ = gw.create_tenant("Acme")
        client = gw.as_tenant(tenant.id)
        agent = client.create_agent(name="A", primary_provider="vendorA", fallback_provider=None, system_prompt="x")
        session = client.create_session(agent.id)
        day = START.date()
        first = clock.run(client.send_message(session.id, "hello"))
        assert gw.store.pending_records > 0  # journaled, not applied: a read still sees it
        assert analytics.rollup(gw, tenant.id, day, day).totals["cost_usd"] == first.metadata.usage.cost_usd
        hits = gw.store.answers.hits
        analytics.rollup(gw, tenant.id, day, day)
        assert gw.store.answers.hits == hits + 1  # nothing written since: the kept answer
        second = clock.run(client.send_message(session.id, "again"))
        roll = analytics.rollup(gw, tenant.id, day, day)
        assert roll.totals["cost_usd"] == first.metadata.usage.cost_usd + second.metadata.usage.cost_usd
        assert roll.totals["messages"] == 4 and roll.totals["sessions"] == 1
        roll.by_provider.loc[0, "sessions"] = 99  # a caller's change to its copy is not kept
        assert analytics.rollup(gw, tenant.id, day, day).by_provider.sessions.tolist() == [1]


@pytest.mark.parametrize("flush_records", ["8", "64"])
def test_a_process_killed_mid_traffic_leaves_aggregates_equal_to_the_events(crash_db: Path,  # noqa: F811
                                                                            flush_records: str) -> None:
    lines = run_until_acks(Child(crash_db, "--seed", flush_records, "--flush-records", flush_records), 180)
    assert sum(line[0] == "ACK" for line in lines) >= 180
    with Gateway.open(crash_db, clock=VirtualClock()) as gw:  # the journal's leftovers are applied on open
        assert_consistent(gw)
        assert_aggregates_match_events(gw)
        tenant_id = gw.list_tenants()[0].id
        today = datetime.now(UTC).date()  # the child ran on the system clock
        assert_tenant_answers_match_events(gw, tenant_id, today - timedelta(days=1), today + timedelta(days=1))



def _usage(session_id: str, n: int, at: datetime) -> UsageEventRow:
    return UsageEventRow(f"evt_{n}", "tnt_1", session_id, "agt_1", f"msg_{n}", f"req_{n}", "vendorA", "chat",
                         10, 20, Decimal("0.002"), Decimal("0.0000600000"), at)


def test_a_batch_billing_a_session_without_its_creation_time_reads_all_its_earlier_days(tmp_path: Path) -> None:
    """A record that bills a reply without its session's activity row (a journal line of an older
    version) makes its batch read every earlier day of the sessions, although another record of the
    same batch says its own session is new: that session's creation bounds only its own days."""
    day1, day5 = START, START + timedelta(days=4)
    with Gateway.open(tmp_path / "a.duckdb", clock=VirtualClock(START), flush_records=10**6) as gw:
        gw.store.commit([_usage("ses_old", 1, day1), SessionActivityRow("ses_old", day1, day1)])
        gw.store.flush()
        gw.store.commit([_usage("ses_old", 2, day5)])
        gw.store.commit([_usage("ses_new", 3, day5), SessionActivityRow("ses_new", day5, day5)])
        gw.store.flush()  # the two records in one batch
        assert_aggregates_match_events(gw)
        counts = gw.store.query_rows("SELECT day, gap_days, sessions FROM daily_sessions "
                                     "WHERE dimension = 'tenant' ORDER BY day, gap_days")
        assert counts == [(day1.date(), 0, 1), (day5.date(), 0, 1), (day5.date(), 4, 1)]


def test_bulk_rows_added_in_parts_sized_by_the_memory_limit_keep_every_aggregate_exact(tmp_path: Path) -> None:
    """A bulk insert larger than the memory limit allows at once is added in parts of whole sessions; the
    generator's sessions also span its inserts (a month's last rows go with the next month's)."""
    con = duckdb.connect(str(tmp_path / "parts.duckdb"))
    con.execute("SET threads = 1")
    con.execute("SET memory_limit = '32MiB'")
    assert aggregates._part_rows(con) == 32 * 2**20 // 500  # 67,108 usage rows a part
    spec = SyntheticSpec(events=200_000, tenants=3, start=date(2025, 1, 20), end=date(2025, 2, 10), seed=5)
    with Gateway.open(con, clock=VirtualClock()) as gw:
        tenant_ids, agent_ids = create_tenants(gw, spec)
        generate(gw, spec, tenant_ids, agent_ids)
        [(rows,)] = gw.sql("SELECT count(*) AS n FROM usage_events").itertuples(index=False)
        assert rows > 2 * aggregates._part_rows(con)  # an insert is whole row groups (122,880 rows): in parts
        con.execute("SET memory_limit = '1GiB'")  # for the checks' own queries
        assert_aggregates_match_events(gw)
        for tenant_id in tenant_ids:
            assert_tenant_answers_match_events(gw, tenant_id, date(2025, 1, 25), date(2025, 2, 5))
    with duckdb.connect() as default:
        assert aggregates._part_rows(default) == aggregates.CHUNK_ROWS  # a machine's default: whole months
