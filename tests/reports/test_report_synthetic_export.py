"""Specification of the synthetic generator and of ``vbgateway export``."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import duckdb
import pytest

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway.cli import main
from vbgateway.export import MANIFEST, export_usage
from vbgateway.synthetic import SyntheticSpec, populate


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "syn.duckdb"
    with Gateway.open(path, clock=VirtualClock()) as gw:
        result = populate(gw, SyntheticSpec(events=20_000, tenants=4, start=date(2025, 11, 1), end=date(2026, 1, 31),
                                            weights=[4, 3, 2, 1], seed=3))
    return path, result


def test_generator_totals_match_the_database_to_the_last_decimal(synthetic):
    path, result = synthetic
    with Gateway.open_reader(path) as gw:
        per_tenant = gw.sql("SELECT tenant_id, count(*) AS n, sum(cost_usd) AS c FROM usage_events GROUP BY ALL")

    assert result.usage_rows == 20_000 == int(per_tenant.n.sum())
    rows = zip(per_tenant.tenant_id, per_tenant.n, per_tenant.c, strict=True)
    assert {t: (int(n), Decimal(c)) for t, n, c in rows} == result.per_tenant
    assert result.cost_usd == sum(Decimal(c) for c in per_tenant.c)


def test_generator_costs_are_tokens_times_unit_price(synthetic):
    path, _ = synthetic
    with Gateway.open_reader(path) as gw:
        wrong = gw.sql("SELECT count(*) AS n FROM usage_events "
                       "WHERE cost_usd * 1000 <> (tokens_in + tokens_out) * usd_per_1k_tokens").n[0]

    assert wrong == 0


def test_generator_is_deterministic_for_a_seed(tmp_path):
    totals = []
    for run in range(2):
        with Gateway.open(tmp_path / f"{run}.duckdb", clock=VirtualClock()) as gw:
            totals.append(populate(gw, SyntheticSpec(events=3_000, tenants=2, seed=9)).cost_usd)

    assert totals[0] == totals[1]


def test_generator_writes_a_reply_per_successful_try(synthetic):
    path, result = synthetic
    with Gateway.open_reader(path) as gw:
        ok = int(gw.sql("SELECT count(*) AS n FROM provider_call_events WHERE status = 'ok'").n[0])

    assert ok == result.usage_rows and result.attempt_rows > result.usage_rows


def test_bad_spec_is_a_validation_error():
    with pytest.raises(GatewayError) as info:
        SyntheticSpec(tenants=2, weights=[1.0]).validate()
    assert info.value.code == "VALIDATION_ERROR"


@pytest.fixture(scope="module")
def exported(synthetic, tmp_path_factory):
    path, result = synthetic
    out = tmp_path_factory.mktemp("lake") / "usage"
    return out, export_usage(path, out), result


def test_export_is_readable_with_hive_partitioning_and_complete(exported):
    out, written, result = exported
    row = duckdb.sql(f"SELECT count(*), sum(cost_usd), count(DISTINCT tenant_id), count(DISTINCT month) "
                     f"FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)").fetchall()[0]

    assert row[0] == written.rows == result.usage_rows
    assert Decimal(row[1]) == written.cost_usd == result.cost_usd
    assert (row[2], row[3]) == (4, 3)


def test_export_partitions_are_tenant_then_month(exported):
    out, _, result = exported
    folders = {(p.parent.parent.name, p.parent.name) for p in out.rglob("*.parquet")}

    assert {t for t, _ in folders} == {f"tenant_id={t}" for t in result.tenant_ids}
    assert {m for _, m in folders} == {"month=2025-11", "month=2025-12", "month=2026-01"}


def test_export_partition_holds_only_its_month(exported):
    out, _, _ = exported
    bad = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true) "
                     "WHERE strftime(timezone('UTC', created_at), '%Y-%m') <> month").fetchall()[0][0]

    assert bad == 0


def test_export_writes_a_manifest(exported):
    out, written, _ = exported
    manifest = json.loads((out / MANIFEST).read_text())

    assert manifest["rows"] == written.rows and Decimal(manifest["cost_usd"]) == written.cost_usd


def test_export_cli_replaces_an_earlier_export(synthetic, exported, capsys):
    path, _ = synthetic
    out, _, _ = exported

    assert main(["export", "--db", str(path), "--out", str(out)]) == 0
    assert "exported 20,000 usage events" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_export_refuses_a_folder_that_is_not_an_export(synthetic, tmp_path, capsys):
    path, _ = synthetic
    (tmp_path / "precious.txt").write_text("keep me")

    assert main(["export", "--db", str(path), "--out", str(tmp_path)]) == 2
    assert "not a vbgateway export" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_export_of_a_missing_database_fails_clearly(tmp_path, capsys):
    assert main(["export", "--db", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "out")]) == 2
    assert "no database at" in capsys.readouterr().err
