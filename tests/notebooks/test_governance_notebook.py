"""notebooks/06_governance.ipynb: committed clean, small by default, and runs top to bottom under nbval.

nbval runs it as a reader would (default parameters, a copy of the
notebook in a temporary folder); papermill checks that the figures it
prints come from the parameters it was given.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "06_governance.ipynb"


def _printed(notebook: nbformat.NotebookNode) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_committed_without_outputs_with_one_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "strip the outputs"
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in ('scenario_path = "vendor_a_outage"', 'duration = "3h"', "breaker = {", "monthly_budget_usd = "):
        assert line in tagged[0].source


def test_runs_top_to_bottom_under_nbval(tmp_path):
    shutil.copyfile(NOTEBOOK, tmp_path / NOTEBOOK.name)
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-kernel-name", "python3", "-q",
                             "-p", "no:cacheprovider", "-o", "addopts=", NOTEBOOK.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_breaker_cuts_wasted_calls_and_the_budget_runs_out_when_the_pace_says(tmp_path):
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                               parameters={"monthly_budget_usd": "1000", "duration": "2h"})
    text = _printed(nbformat.read(out, as_version=4))
    before, after = (int(n.replace(",", "")) for n in re.search(r"wasted calls ([\d,]+) -> ([\d,]+)", text).groups())
    assert after < before / 2  # vendorA's tries are skipped while its circuit is open
    assert "failed replies 0 -> 0" in text
    assert "$1,000.00" in text and re.search(r"within this month\s+False", text)
