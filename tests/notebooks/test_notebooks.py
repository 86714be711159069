"""The four workbench notebooks: committed clean, and they run top to bottom on a fresh checkout.

nbval runs them as the README's readers would (default parameters, so the
database ``../data/vbgateway.duckdb`` is created and seeded) inside a copy of
the notebooks folder, never touching the repository's own data. Papermill
checks that the ``parameters`` cell really steers a run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import nbformat
import papermill
import pytest

from vbgateway.client.service import find_service, stop_service

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["01_getting_started.ipynb", "02_agents.ipynb", "03_try_it.ipynb", "04_usage.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_and_with_a_parameters_cell(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), f"{name}: strip the outputs"
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'db_path = "../data/vbgateway.duckdb"' in tagged[0].source
    assert "api_key = None" in tagged[0].source


def test_every_notebook_runs_top_to_bottom_under_nbval_on_a_fresh_checkout(tmp_path):
    shutil.copytree(NOTEBOOKS, tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in NAMES:  # only ours: other notebooks in the folder belong to other test modules
        assert (tmp_path / "notebooks" / name).exists()
    paths = [f"notebooks/{name}" for name in NAMES]
    db = tmp_path / "data" / "vbgateway.duckdb"
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name", "python3",
                                 "-q", "-p", "no:cacheprovider", "-o", "addopts=", *paths],
                                cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert find_service(db) is not None  # the four kernels shared one service, which outlives them
    finally:
        stop_service(db)
    with duckdb.connect(str(db), read_only=True) as con:  # stopped: the file is complete and free
        assert con.execute("SELECT count(*) FROM tenants").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 3  # two seeded, one demo key


def test_the_parameters_cell_chooses_the_database_and_runs_keep_one_demo_key(tmp_path):
    db = tmp_path / "elsewhere" / "chat.duckdb"
    try:
        for run in range(2):
            papermill.execute_notebook(str(NOTEBOOKS / "03_try_it.ipynb"), str(tmp_path / f"out{run}.ipynb"),
                                       parameters={"db_path": str(db)}, kernel_name="python3", cwd=str(NOTEBOOKS),
                                       progress_bar=False)
    finally:
        stop_service(db)
    assert (Path(f"{db}.demo-key.json").stat().st_mode & 0o777) == 0o600
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM tenants").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 3  # not one more per run
        assert con.execute("SELECT count(*) FROM usage_events").fetchone()[0] in (0, 1, 2)
