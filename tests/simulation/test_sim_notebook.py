"""notebooks/05_simulation.ipynb: committed clean, parameterised, and runs top to bottom."""

from __future__ import annotations

from pathlib import Path

import duckdb
import nbformat
import papermill

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05_simulation.ipynb"


def test_committed_without_outputs_with_one_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "scenario_path =" in tagged[0].source and "policies =" in tagged[0].source


def test_runs_top_to_bottom_with_papermill_parameters(tmp_path):
    db = tmp_path / "nb.duckdb"
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               parameters={"db_path": str(db), "duration": "3h"}, cwd=str(NOTEBOOK.parent),
                               progress_bar=False)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM usage_events").fetchone()[0] > 100
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) or "application/vnd.vegalite.v5+json" in o.get("data", {})
               or "text/html" in o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs)
