"""notebooks/07_forecast_and_replay.ipynb: committed clean, parameterised, and runs headless under nbval."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAME = "07_forecast_and_replay.ipynb"


def test_committed_without_outputs_with_one_parameters_cell():
    notebook = nbformat.read(NOTEBOOKS / NAME, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'db_path = "../data/forecast.duckdb"' in tagged[0].source


def test_runs_top_to_bottom_under_nbval_in_a_copy_of_the_folder(tmp_path: Path):
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS / NAME, tmp_path / "notebooks" / NAME)  # its database goes to the copy's ../data
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name", "python3", "-q",
                             "-p", "no:cacheprovider", "-o", "addopts=", f"notebooks/{NAME}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    with duckdb.connect(str(tmp_path / "data" / "forecast.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM usage_events").fetchone()[0] > 10_000
        assert con.execute("SELECT count(*) FROM daily_usage").fetchone()[0] > 0
