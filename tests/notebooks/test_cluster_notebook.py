"""notebooks/08_cluster.ipynb: committed clean, a quarter for 200 tenants by default, and runs under nbval small.

nbval runs a notebook with the parameters it holds; papermill first writes
a copy whose parameters are a day for three tenants (``prepare_only``), and
nbval runs that copy top to bottom on its own local cluster.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import nbformat
import papermill

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "08_cluster.ipynb"


def test_committed_without_outputs_with_a_quarter_for_200_tenants_in_its_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "strip the outputs"
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in ("days = 91", "tenants = 200", 'cluster = "local:2"', 'scenario_path = "vendor_a_outage"'):
        assert line in tagged[0].source


def test_runs_top_to_bottom_under_nbval_at_a_small_size(tmp_path):
    small = tmp_path / "08_cluster_small.ipynb"
    db, lake = tmp_path / "cluster.duckdb", tmp_path / "lake"
    papermill.execute_notebook(str(NOTEBOOK), str(small), prepare_only=True, kernel_name="python3", parameters={
        "days": 1, "tenants": 3, "messages": 2500, "gateways": 3, "db_path": str(db), "lake_path": str(lake)})
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name", "python3", "-q",
                             "-p", "no:cacheprovider", "-o", "addopts=", str(small)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT tenant_id) FROM usage_events").fetchone()[0] == 3
        billed = con.execute("SELECT count(*) FROM usage_events").fetchone()[0]
    assert billed > 1500
    assert (lake / "_vbgateway_lake.json").exists() and any((lake / "usage_events").rglob("*.parquet"))
