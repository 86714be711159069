"""Behaviour the fast paths of the generator, the rollup and the export must keep."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from vbgateway import Gateway, GatewayError, VirtualClock, analytics
from vbgateway.errors import RowsRejectedError
from vbgateway.export import export_usage
from vbgateway.synthetic import ROW_GROUP_ROWS, SyntheticSpec, create_tenants, generate, month_batches, populate
from vbgateway.synthetic.columns import prefixed_ids
from vbgateway.synthetic.generator import _bin_counts

PRICES = {"vendorA": Decimal("0.002"), "vendorB": Decimal("0.0031234")}


@pytest.mark.parametrize("numbers", [[0], [9, 10, 99, 100, 5, 12_345_678_901], [7, 3, 1_000_000, 999_999, 0],
                                     list(range(99_990, 100_020))[::-1]])
def test_ids_are_prefix_and_decimal_number(numbers):
    expected = [[f"{prefix}{n}" for n in numbers] for prefix in ("evt_x", "m")]

    assert [a.to_pylist() for a in prefixed_ids(["evt_x", "m"], np.array(numbers))] == expected


def _rows(table: pa.Table) -> pa.Table:
    plain = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                                  for f in table.schema]))
    return plain.take(pc.sort_indices(plain, [("id", "ascending")]))


def test_tenant_ids_only_decide_the_order_of_rows_not_the_rows():
    spec = SyntheticSpec(events=6_000, tenants=3, agents_per_tenant=1, weights=[3, 2, 1], start=date(2025, 1, 1),
                         end=date(2025, 2, 28), seed=5)
    agents = [["a0"], ["a1"], ["a2"]]
    forward = list(month_batches(spec, ["t0", "t1", "t2"], agents, PRICES))
    backward = list(month_batches(spec, ["t2", "t1", "t0"], agents, PRICES))  # the same tenants, ids in reverse order

    for (u0, a0, c0, x0), (u1, a1, c1, x1) in zip(forward, backward):
        assert c0.tolist() == c1.tolist() and x0.tolist() == x1.tolist()
        renamed = {"t0": "t2", "t1": "t1", "t2": "t0"}
        for t0, t1 in ((u0, u1), (a0, a1)):
            r0, r1 = _rows(t0), _rows(t1)
            r0 = r0.set_column(1, "tenant_id", pa.array([renamed[t] for t in r0.column("tenant_id").to_pylist()]))
            assert r0.equals(r1)
        tenants = u1.column("tenant_id").to_pylist()
        assert tenants == sorted(tenants)  # clustered by tenant id, so zonemaps can skip other tenants
        times = u1.column("created_at").cast(pa.int64()).to_numpy()
        same = np.array(tenants[1:]) == np.array(tenants[:-1])
        assert np.all(times[1:][same] >= times[:-1][same])


def test_bulk_inserts_leave_only_whole_row_groups(tmp_path):
    with Gateway.open(tmp_path / "rg.duckdb", clock=VirtualClock()) as gw:
        result = populate(gw, SyntheticSpec(events=300_000, tenants=2, start=date(2025, 1, 1), end=date(2025, 3, 31),
                                            seed=2))
        for table, rows in (("usage_events", result.usage_rows), ("provider_call_events", result.attempt_rows)):
            sizes = gw.sql(f"""SELECT row_group_id, sum(count)::BIGINT AS n FROM pragma_storage_info('{table}')
                               WHERE column_name = 'created_at' AND segment_type <> 'VALIDITY'
                               GROUP BY ALL ORDER BY row_group_id""").n.tolist()
            assert sizes[:-1] == [ROW_GROUP_ROWS] * (len(sizes) - 1) and sum(sizes) == rows


def test_rollup_top_is_a_whole_number_and_zero_gives_no_agents(tmp_path):
    with Gateway.open(tmp_path / "top.duckdb", clock=VirtualClock()) as gw:
        result = populate(gw, SyntheticSpec(events=2_000, tenants=1, agents_per_tenant=3, seed=4))
        tenant = result.tenant_ids[0]
        none = analytics.rollup(gw, tenant, "2025-01-01", "2025-12-31", top=0)
        two = analytics.rollup(gw, tenant, "2025-01-01", "2025-12-31", top=2)
        with pytest.raises(GatewayError) as info:
            analytics.rollup(gw, tenant, "2025-01-01", "2025-12-31", top=-1)

    assert none.top_agents.empty and list(none.top_agents.columns) == list(two.top_agents.columns)
    assert len(two.top_agents) == 2 and list(two.top_agents.index) == [0, 1]
    assert none.totals == two.totals and none.totals["cost_usd"] == result.cost_usd
    assert info.value.code == "VALIDATION_ERROR"


def test_export_groups_interleaved_tenants_and_keeps_scan_order(tmp_path):
    db = tmp_path / "mixed.duckdb"
    spec = SyntheticSpec(events=3_000, tenants=2, start=date(2025, 5, 1), end=date(2025, 5, 31), seed=1)
    with Gateway.open(db, clock=VirtualClock()) as gw:
        first = populate(gw, spec)
        agents = [[a.id for a in gw.as_tenant(t).list_agents()] for t in first.tenant_ids]
        second = generate(gw, replace(spec, seed=2, tag="two"), first.tenant_ids, agents)
    with Gateway.open_reader(db) as gw:  # both tenants twice in May: tenants are not grouped in the table
        scan = gw.sql("SELECT tenant_id, id FROM usage_events ORDER BY rowid")

    written = export_usage(db, tmp_path / "lake")

    assert written.rows == first.usage_rows + second.usage_rows
    assert written.cost_usd == first.cost_usd + second.cost_usd
    for tenant in first.tenant_ids:
        ids = pq.read_table(tmp_path / "lake" / f"tenant_id={tenant}" / "month=2025-05").column("id").to_pylist()
        assert ids == scan.id[scan.tenant_id == tenant].tolist()


@pytest.mark.parametrize("seed", range(6))
def test_bin_counts_are_those_of_a_binary_search_per_draw(seed):
    rng = np.random.default_rng(seed)
    weights = rng.random(int(rng.integers(1, 3_000)))
    weights[rng.random(len(weights)) < 0.2] = 0  # tenants with no traffic: repeated boundaries
    weights[0] += 1e-3
    cdf = np.cumsum(weights / weights.sum())
    cdf /= cdf[-1]
    grid = np.arange(0, 1 << 14, 7) / (1 << 14)  # draws on cell edges, on boundaries and just below them
    draws = np.concatenate([rng.random(50_000), grid, cdf[cdf < 1], np.nextafter(cdf[cdf < 1], 0)])

    expected = np.bincount(np.searchsorted(cdf, draws, side="right"), minlength=len(cdf))

    assert _bin_counts(cdf, draws).tolist() == expected.tolist()


def _plain(table: pa.Table) -> pa.Table:
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                                 for f in table.schema]))


def test_generated_tables_hold_the_drawn_rows_in_order(tmp_path):
    spec = SyntheticSpec(events=5_000, tenants=3, agents_per_tenant=2, weights=[1, 2, 3], start=date(2025, 3, 1),
                         end=date(2025, 5, 31), seed=11)
    with Gateway.open(tmp_path / "order.duckdb", clock=VirtualClock()) as gw:
        tenants, agents = create_tenants(gw, spec)
        result = generate(gw, spec, tenants, agents)
        prices = {p: gw.prices.price_per_1k(p) for p in ("vendorA", "vendorB")}
    drawn = list(month_batches(spec, tenants, agents, prices))  # the same seed: the same rows
    with duckdb.connect(str(tmp_path / "order.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        for i, table in enumerate(("usage_events", "provider_call_events")):
            expected = _plain(pa.concat_tables([month[i] for month in drawn]))
            stored = con.sql(f"SELECT {', '.join(expected.column_names)} FROM {table} ORDER BY rowid").to_arrow_table()
            assert stored.cast(expected.schema).equals(expected), table  # inserted side by side, each in order
    assert (result.usage_rows, result.attempt_rows) == (sum(m[0].num_rows for m in drawn),
                                                        sum(m[1].num_rows for m in drawn))


def _store_counts(gw: Gateway) -> tuple[int, int]:
    return tuple(int(gw.sql(f"SELECT count(*) AS n FROM {t}").n[0]) for t in ("usage_events", "provider_call_events"))


@pytest.fixture
def one_month(tmp_path):
    spec = SyntheticSpec(events=2_000, tenants=2, start=date(2025, 1, 1), end=date(2025, 1, 31), seed=3)
    with Gateway.open(tmp_path / "many.duckdb", clock=VirtualClock()) as gw:
        tenants, agents = create_tenants(gw, spec)
        prices = {p: gw.prices.price_per_1k(p) for p in ("vendorA", "vendorB")}
        usage, attempts, _, _ = next(month_batches(spec, tenants, agents, prices))
        yield gw, usage, attempts


def test_bulk_insert_many_appends_every_table(one_month):
    gw, usage, attempts = one_month

    written = gw.store.bulk_insert_many({"usage_events": usage, "provider_call_events": attempts})
    again = gw.store.bulk_insert_many({"usage_events": usage})

    assert written == {"usage_events": usage.num_rows, "provider_call_events": attempts.num_rows}
    assert again == {"usage_events": usage.num_rows}
    assert _store_counts(gw) == (2 * usage.num_rows, attempts.num_rows)


def test_bulk_insert_many_lands_nothing_when_one_table_fails(one_month):
    gw, usage, attempts = one_month
    broken = attempts.drop_columns(["latency_ms"])  # NOT NULL in provider_call_events: its insert fails

    with pytest.raises(RowsRejectedError) as info:
        gw.store.bulk_insert_many({"usage_events": usage, "provider_call_events": broken})
    assert info.value.code == "ROWS_REJECTED" and "latency_ms" in str(info.value)

    assert _store_counts(gw) == (0, 0)  # the usage rows, inserted fine, were rolled back too
    gw.store.bulk_insert_many({"usage_events": usage, "provider_call_events": attempts})  # still usable
    assert _store_counts(gw) == (usage.num_rows, attempts.num_rows)


def test_bulk_insert_many_refuses_other_tables_before_writing(one_month):
    gw, usage, _ = one_month

    for tables in ({"usage_events": usage, "tenants": usage}, {}):
        with pytest.raises(GatewayError) as info:
            gw.store.bulk_insert_many(tables)
        assert info.value.code == "VALIDATION_ERROR"
    assert _store_counts(gw) == (0, 0)


def test_bulk_insert_many_refuses_a_read_only_store(one_month, tmp_path):
    gw, usage, _ = one_month
    gw.close()

    with Gateway.open_reader(tmp_path / "many.duckdb") as reader:
        with pytest.raises(GatewayError) as info:
            reader.store.bulk_insert_many({"usage_events": usage})
        assert _store_counts(reader) == (0, 0)
    assert "read-only" in str(info.value)


def test_a_failed_bulk_insert_raises_its_own_error_and_leaves_the_store_usable(one_month):
    gw, usage, attempts = one_month

    with pytest.raises(RowsRejectedError) as info:  # not "transaction aborted" from cleaning up after it
        gw.store.bulk_insert("provider_call_events", attempts.drop_columns(["latency_ms"]))
    assert "latency_ms" in str(info.value) and isinstance(info.value.__cause__, duckdb.ConstraintException)

    assert gw.store.bulk_insert("usage_events", usage) == usage.num_rows
    assert _store_counts(gw) == (usage.num_rows, 0)
