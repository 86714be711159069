"""A lake written by the workers (``--lake``): the reports read it with the figures of the database, to the cent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from vbgateway.errors import DatabaseError, ValidationError
from vbgateway.export import export_usage
from vbgateway.lake import LAKE_MANIFEST, is_lake, open_source, read_manifest
from vbgateway.lake_compact import compact_lake
from vbgateway.lake_vacuum import vacuum_lake
from vbgateway.reports.data import invoice_data, open_db, usage_data
from vbgateway.simulation import reprice, simulate

PRICES = {"vendorA": "0.0031", "vendorB": "0.0017"}


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) \
            as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def across_months(make_scenario):
    """Five hours across midnight of March 31: two months, so two invoices per tenant."""
    return make_scenario(start="2026-03-31T22:00:00Z")


@pytest.fixture(scope="module")
def run(tmp_path_factory, client, across_months):
    folder = tmp_path_factory.mktemp("lake")
    result = simulate(across_months, folder / "sim.duckdb", cluster=client, lake=str(folder / "lake"))
    return result, folder / "sim.duckdb", folder / "lake"


def _invoice_figures(source, tenant_id: str, month: str) -> tuple:
    with open_db(source) as gw:
        data = invoice_data(gw, tenant_id, month)
    lines = data.tables["lines"].drop(columns=["agent_name"])
    meta = data.meta
    return (lines.to_dict("records"), meta["event_count"], meta["total_usd"], meta["total_due_usd"],
            meta["events_sha256"])


def test_invoices_from_the_lake_equal_invoices_from_the_database_to_the_cent(run):
    result, db, lake = run
    assert is_lake(lake) and not is_lake(db)
    for tenant_id in result.tenant_ids.values():
        for month in ("2026-03", "2026-04"):
            from_db, from_lake = _invoice_figures(db, tenant_id, month), _invoice_figures(lake, tenant_id, month)
            assert from_db[1] > 20  # both months hold billed replies
            assert from_lake == from_db


def test_the_usage_report_and_repricing_read_the_lake_like_the_database(run):
    _, db, lake = run
    tables = []
    for source in (db, lake):
        with open_db(source) as gw:
            tables.append(usage_data(gw, "all", "2026-03-31", "2026-04-01").tables)
    for name in ("totals", "by_provider", "daily", "by_tenant", "latency", "reliability", "by_channel"):
        assert tables[0][name].equals(tables[1][name]), name
    assert reprice(db, PRICES).equals(reprice(lake, PRICES))


def test_the_lake_has_the_export_layout_one_file_per_instance_and_partition(run):
    result, _, lake = run
    run_id = result.cluster["run_id"]
    files = sorted(p.relative_to(lake / "usage_events").as_posix() for p in (lake / "usage_events").rglob("*.parquet"))
    tenants = sorted(result.tenant_ids.values())
    assert files == sorted(f"tenant_id={t}/month={m}/part-{run_id}-{k:03d}.parquet"
                           for t in tenants for m in ("2026-03", "2026-04") for k in range(2))
    assert "tenant_id" not in pq.read_schema(lake / "usage_events" / files[0]).names  # a folder name, as exported
    manifest = read_manifest(lake)
    assert [r["run_id"] for r in manifest["runs"]] == [run_id]
    assert manifest["runs"][0]["database_digest"] == result.database_digest
    assert manifest["runs"][0]["rows"]["usage_events"] == int((result.rows.outcome == "ok").sum())


def test_files_of_a_run_that_was_never_committed_are_not_read(run, tmp_path):
    result, _, lake = run
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    for part in list((copy / "usage_events").rglob("part-*.parquet")):  # a failed run's leftovers
        shutil.copy(part, part.with_name(part.name.replace(result.cluster["run_id"], "0badc0ffee00")))
    with open_source(copy) as gw:
        assert int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]) == int((result.rows.outcome == "ok").sum())


def test_a_lake_only_run_merges_no_rows_on_the_client_and_gives_the_same_digest(run, tmp_path, client, across_months,
                                                                                 make_scenario):
    result, db, _ = run
    lake, control = tmp_path / "only", tmp_path / "control.duckdb"
    alone = simulate(across_months, control, cluster=client, lake=str(lake), lake_only=True)
    assert alone.database_digest == result.database_digest
    assert alone.cluster["merged"] is False
    tenant_id = sorted(alone.tenant_ids.values())[0]
    assert _invoice_figures(lake, tenant_id, "2026-04")[1:] == _invoice_figures(db, tenant_id, "2026-04")[1:]
    with open_db(control) as gw:  # tenants and agents only
        assert int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]) == 0
        assert sorted(gw.sql("SELECT id FROM tenants").id) == sorted(alone.tenant_ids.values())
    # The next month, into the same lake and control database: the same tenants, new ids, both runs read.
    later = simulate(make_scenario(start="2026-05-02T00:00:00Z", seed=6), control, cluster=client, lake=str(lake),
                     lake_only=True)
    assert later.tenant_ids == alone.tenant_ids
    with open_source(lake) as gw:
        billed = gw.sql("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM usage_events")
    expected = int((alone.rows.outcome == "ok").sum()) + int((later.rows.outcome == "ok").sum())
    assert int(billed.n[0]) == int(billed.ids[0]) == expected
    assert len(read_manifest(lake)["runs"]) == 2


def test_an_export_folder_is_a_source_too(run, tmp_path):
    result, db, _ = run
    out = export_usage(db, tmp_path / "export")
    tenant_id = sorted(result.tenant_ids.values())[1]
    assert _invoice_figures(out.path, tenant_id, "2026-03")[1:] == _invoice_figures(db, tenant_id, "2026-03")[1:]


def test_a_folder_that_is_not_a_lake_is_refused_and_left_alone(tmp_path, client, scenario):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValidationError, match="not a vbgateway lake"):
        simulate(scenario, tmp_path / "x.duckdb", cluster=client, lake=str(folder))
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    with pytest.raises(DatabaseError), open_source(tmp_path / "nothing-here"):
        pass
    assert not (tmp_path / "mine" / LAKE_MANIFEST).exists()


def test_runs_submitted_together_share_a_lake_and_each_keeps_its_own_database(tmp_path, client, make_scenario):
    """Two groups of tenants at once (their instances are tasks side by side), one lake, a control database each."""
    from vbgateway.simulation.cluster import simulate_on_cluster

    groups = [make_scenario(tenants=[{"name": f"Group {g} tenant {i}"} for i in range(2)], seed=20 + g) for g in (1, 2)]
    lake = tmp_path / "lake"
    results = simulate_on_cluster([(sc, tmp_path / f"control-{g}.duckdb") for g, sc in enumerate(groups)], client,
                                  lake=str(lake), lake_only=True)
    assert len(read_manifest(lake)["runs"]) == 2
    with open_source(lake) as gw:
        per_tenant = gw.sql("SELECT t.name, count(*) AS n FROM usage_events u JOIN tenants t ON t.id = u.tenant_id "
                            "GROUP BY t.name ORDER BY t.name")
    expected = sorted((name, int(((r.rows.tenant == name) & (r.rows.outcome == "ok")).sum()))
                      for r in results for name in r.tenant_ids)
    assert list(zip(per_tenant.name, per_tenant.n.astype(int))) == expected
    with pytest.raises(ValidationError, match="a database each"):
        simulate_on_cluster([(groups[0], tmp_path / "same.duckdb"), (groups[1], tmp_path / "same.duckdb")], client)


# --- compaction ------------------------------------------------------------------------------


def _partition_files(lake) -> dict[str, list[str]]:
    """Per partition folder (and per table folder), the Parquet files in it."""
    found: dict[str, list[str]] = {}
    for path in sorted(lake.rglob("*.parquet")):
        found.setdefault(path.parent.relative_to(lake).as_posix(), []).append(path.name)
    return found


def _figures(lake, tenant_ids) -> list:
    invoices = [_invoice_figures(lake, t, m) for t in sorted(tenant_ids) for m in ("2026-03", "2026-04")]
    with open_db(lake) as gw:
        report = usage_data(gw, "all", "2026-03-31", "2026-04-01").tables
        tenants = gw.sql("SELECT id, name FROM tenants ORDER BY id")
    return [invoices, {k: report[k].to_dict("records") for k in ("totals", "by_provider", "daily", "by_tenant")},
            tenants.to_dict("records")]


def test_compaction_leaves_one_file_per_partition_and_every_figure_as_it_was(run, tmp_path):
    result, _, lake = run
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    before = _figures(copy, result.tenant_ids.values())
    seen: list[tuple[int, int]] = []
    done = compact_lake(copy, progress=lambda n, total: seen.append((n, total)))
    assert done.runs == 1 and done.run_id and done.files_after < done.files_before
    assert seen[-1][0] == seen[-1][1] == done.files_after
    layout = _partition_files(copy)
    assert all(files == [f"part-{done.run_id}-000.parquet"] for folder, files in layout.items()
               if folder.count("=") == 2), layout  # tenant_id=/month=: the instances' two files are one
    assert sum(len(files) for files in layout.values()) == done.files_after
    assert not list(copy.rglob(f"*{result.cluster['run_id']}*"))  # the replaced files are gone
    manifest = read_manifest(copy)
    (merged,) = manifest["runs"]
    assert merged["run_id"] == done.run_id and merged["compacted"] == read_manifest(lake)["runs"]
    assert _figures(copy, result.tenant_ids.values()) == before
    again = compact_lake(copy)  # one run, one file per folder: nothing to do
    assert again.run_id is None and again.files_before == done.files_after
    assert _figures(copy, result.tenant_ids.values()) == before


def test_compaction_merges_runs_in_time_order_and_keeps_one_row_per_tenant(tmp_path, client, across_months,
                                                                            make_scenario):
    lake, control = tmp_path / "lake", tmp_path / "control.duckdb"
    first = simulate(across_months, control, cluster=client, lake=str(lake), lake_only=True)
    simulate(make_scenario(start="2026-04-01T01:00:00Z", seed=6), control, cluster=client, lake=str(lake),
             lake_only=True)  # its April overlaps the first run's: shared partitions
    with open_source(lake) as gw:
        before = gw.sql("SELECT * FROM usage_events ORDER BY id")
        tenants = gw.sql("SELECT * FROM tenants ORDER BY id")
    shared = [f for f, files in _partition_files(lake).items() if f.startswith("usage_events/") and len(files) > 2]
    assert shared  # two runs of two instances each wrote there
    completed = subprocess.run([sys.executable, "-m", "vbgateway.cli", "lake", "compact", str(lake), "--quiet"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "compacted 2 runs" in completed.stdout and "every row kept" in completed.stdout
    with open_source(lake) as gw:
        assert gw.sql("SELECT * FROM usage_events ORDER BY id").equals(before)
        assert gw.sql("SELECT * FROM tenants ORDER BY id").equals(tenants)
        assert sorted(gw.sql("SELECT id FROM tenants").id) == sorted(first.tenant_ids.values())
    for folder in shared:
        (name,) = _partition_files(lake)[folder]
        created = pq.read_table(lake / folder / name, columns=["created_at"]).column("created_at").to_pylist()
        assert created == sorted(created)  # one file, its rows in time order


def test_compaction_refuses_what_is_not_a_lake_and_a_lake_whose_files_disagree_with_its_manifest(run, tmp_path):
    result, db, lake = run
    out = export_usage(db, tmp_path / "export")
    with pytest.raises(ValidationError, match="export folder"):
        compact_lake(out.path)
    with pytest.raises(DatabaseError, match="no vbgateway lake"):
        compact_lake(tmp_path / "nothing-here")
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    next((copy / "usage_events").rglob("part-*.parquet")).unlink()  # a file lost
    manifest = (copy / LAKE_MANIFEST).read_bytes()
    with open_source(copy) as gw:
        readable = int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0])
    with pytest.raises(DatabaseError, match="other rows than its manifest counts") as refused:
        compact_lake(copy)
    assert refused.value.details["files"]["usage_events"] == readable < refused.value.details["manifest"]["usage_events"]
    assert (copy / LAKE_MANIFEST).read_bytes() == manifest  # nothing committed, nothing removed
    assert list(copy.rglob(f"part-{result.cluster['run_id']}-*.parquet"))
    with open_source(copy) as gw:  # the refused compaction's files are in no committed run: not read
        assert int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]) == readable
    files = sorted(copy.rglob("*.parquet"))
    good = json.loads(manifest)
    for bad in ("{not json", json.dumps({**good, "runs": [{**good["runs"][0], "run_id": "*"}]}),
                json.dumps({**good, "runs": [{**good["runs"][0], "rows": {"usage_events": "many"}}]}),
                json.dumps({"runs": "all"})):
        (copy / LAKE_MANIFEST).write_text(bad)
        with pytest.raises(DatabaseError, match="not one vbgateway wrote"):
            compact_lake(copy)
        with pytest.raises(DatabaseError, match="not one vbgateway wrote"), open_source(copy):
            pass
    assert sorted(copy.rglob("*.parquet")) == files  # a run id of "*" would have matched every file


def _age(path, hours: float) -> None:
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


def test_vacuum_removes_what_no_committed_run_names_once_older_than_the_retention(run, tmp_path):
    result, _, lake = run
    run_id = result.cluster["run_id"]
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    committed = sorted(copy.rglob("*.parquet"))
    failed = []
    for part in committed:  # a failed run's leftovers, every table
        if run_id in part.name:
            failed.append(part.with_name(part.name.replace(run_id, "0badc0ffee00")))
            shutil.copy(part, failed[-1])
    lone = copy / "usage_events" / "tenant_id=tnt_gone" / "month=2026-03"  # a partition only the failed run wrote
    lone.mkdir(parents=True)
    failed.insert(0, lone / "part-0badc0ffee00-000.parquet")
    shutil.copy(failed[1], failed[0])
    folder = failed[1].parent
    killed = folder / f".{'a' * 32}.tmp"  # a writer killed mid-file
    killed.write_bytes(b"PAR1")
    manifest_tmp = copy / f".{LAKE_MANIFEST}.{'b' * 32}.tmp"
    manifest_tmp.write_text("{")
    foreign = [copy / "notes.txt", folder / "part-notes.parquet.bak"]  # not named as vbgateway names its files
    for path in foreign:
        path.write_text("keep me")
    for path in (*failed, killed, manifest_tmp, *foreign):
        _age(path, 30)
    _age(failed[-1], 1)  # perhaps a run still writing: younger than the retention
    with open_source(copy) as gw:
        events = int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0])

    preview = vacuum_lake(copy, dry_run=True)
    assert preview.dry_run and preview.recent == 1 and len(preview.removed) == len(failed) + 1
    assert all((copy / path).exists() for path in preview.removed)
    assert preview.bytes == sum(p.stat().st_size for p in failed[:-1]) + 4 + 1
    done = vacuum_lake(copy)
    assert sorted(done.removed) == sorted(preview.removed) and done.recent == 1 and done.bytes == preview.bytes
    assert not killed.exists() and not manifest_tmp.exists() and failed[-1].exists()
    assert not any(p.exists() for p in failed[:-1])
    assert not (copy / "usage_events" / "tenant_id=tnt_gone").exists()  # the folders it emptied went too
    assert all(p.exists() for p in (*committed, *foreign))
    with open_source(copy) as gw:
        assert int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]) == events
    again = vacuum_lake(copy)
    assert again.removed == () and again.recent == 1

    completed = subprocess.run([sys.executable, "-m", "vbgateway.cli", "lake", "vacuum", str(copy), "--older-than", "0"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "removed 1 file no committed run names" in completed.stdout and "0 younger than 0 h" in completed.stdout
    assert not failed[-1].exists() and all(p.exists() for p in (*committed, *foreign))
    assert sorted(copy.rglob("*.parquet")) == committed


def test_vacuum_finishes_a_compaction_stopped_before_it_removed_the_replaced_files(run, tmp_path):
    result, _, lake = run
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    replaced = sorted(p.relative_to(copy) for p in copy.rglob("*.parquet"))
    done = compact_lake(copy)
    for path in replaced:  # as they were before the compaction's last step, and new
        shutil.copy(lake / path, copy / path)
    with open_source(copy) as gw:
        events = int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0])
    assert events == int((result.rows.outcome == "ok").sum())
    swept = vacuum_lake(copy)  # the manifest names their runs as replaced: gone whatever their age
    assert sorted(swept.removed) == sorted(p.as_posix() for p in replaced) and swept.recent == 0
    assert all(done.run_id in p.name for p in copy.rglob("*.parquet"))
    with open_source(copy) as gw:
        assert int(gw.sql("SELECT count(*) AS n FROM usage_events").n[0]) == events


def test_vacuum_refuses_bad_input_and_changes_nothing(run, tmp_path):
    _, db, lake = run
    with pytest.raises(ValidationError, match="export folder"):
        vacuum_lake(export_usage(db, tmp_path / "export").path)
    with pytest.raises(DatabaseError, match="no vbgateway lake"):
        vacuum_lake(tmp_path / "nothing-here")
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy)
    files = sorted(copy.rglob("*"))
    with pytest.raises(ValidationError, match="zero or more"):
        vacuum_lake(copy, older_than=timedelta(hours=-1))
    (copy / LAKE_MANIFEST).write_text("{not json")  # with no runs it could read, every file would look unnamed
    with pytest.raises(DatabaseError, match="not one vbgateway wrote"):
        vacuum_lake(copy, older_than=timedelta(0))
    for hours in ("-1", "nan", "soon"):
        completed = subprocess.run([sys.executable, "-m", "vbgateway.cli", "lake", "vacuum", str(copy),
                                    "--older-than", hours], capture_output=True, text=True, timeout=120)
        assert completed.returncode != 0 and "Traceback" not in completed.stderr, completed.stderr
    assert sorted(copy.rglob("*")) == files
