"""The package as a user installs it: a real wheel in a fresh venv, run from a folder outside the checkout.

The wheel is built offline from a copy of exactly what it is built from
(``pyproject.toml``, ``README.md``, ``vbgateway/``), so anything the commands
need but the wheel lacks (report notebooks, example scenarios) makes this test
fail. The fresh venv gets ``vbgateway`` from the wheel only; its dependencies
(DuckDB, papermill, ...) come from the environment running the tests through
a ``.pth`` line, which Python appends after the venv's own site-packages, so
the wheel's copy always wins. nbconvert's HTML templates are data files of
that environment (``share/jupyter``), found through ``JUPYTER_PATH``, as a
``pip install 'vbgateway[notebooks]'`` would put them in the venv itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from decimal import Decimal
from pathlib import Path

import pytest

from vbgateway.charts import usd

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

PROBE = """
import json, vbgateway
from jupyter_client.kernelspec import KernelSpecManager
from vbgateway.reports import default_notebook_dir
from vbgateway.simulation.examples import EXAMPLES_DIR, example_names
print(json.dumps({"module": vbgateway.__file__, "notebooks": sorted(p.name for p in default_notebook_dir().iterdir()),
                  "examples": str(EXAMPLES_DIR), "names": example_names(),
                  "kernel": KernelSpecManager().get_kernel_spec("python3").argv[0]}))
"""


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{argv} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with vbgateway installed from a wheel built here, and the environment to run it in."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "vbgateway", source / "vbgateway", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(base / "dist"), str(source)], base, clean)
    (wheel,) = (base / "dist").glob("vbgateway-*.whl")

    env_dir = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], base, clean)
    python = env_dir / "bin" / "python"
    # Installed before the .pth exists, so pip sees an empty venv and the checkout's own install stays untouched.
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        base, clean)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, clean)
                .stdout.strip())
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_vbgateway_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    jupyter = base / "jupyter"
    jupyter.mkdir()
    (jupyter / "nbconvert").symlink_to(Path(sys.prefix) / "share" / "jupyter" / "nbconvert")
    env = {**clean, "PATH": f"{env_dir / 'bin'}{os.pathsep}{clean.get('PATH', '')}", "JUPYTER_PATH": str(jupyter),
           "JUPYTER_DATA_DIR": str(base / "jupyter-data"), "IPYTHONDIR": str(base / "ipython")}
    return env_dir, env


def test_the_installed_package_and_its_kernel_come_from_the_wheel(venv, tmp_path):
    env_dir, env = venv
    probe = run([str(env_dir / "bin" / "python"), "-c", PROBE], tmp_path, env)
    found = json.loads(probe.stdout)

    assert Path(found["module"]).is_relative_to(env_dir) and Path(found["examples"]).is_relative_to(env_dir)
    assert found["notebooks"] == ["invoice.ipynb", "usage_report.ipynb"]
    assert found["names"] == ["normal_week", "rate_limit_storm", "vendor_a_outage"]
    assert found["kernel"] in ("python", str(env_dir / "bin" / "python"))  # "python" means the venv's own


def test_seed_simulate_and_report_from_a_folder_outside_the_checkout(venv, tmp_path):
    env_dir, env = venv
    cli = str(env_dir / "bin" / "vbgateway")
    assert not tmp_path.is_relative_to(REPO)

    seeded = run([cli, "seed"], tmp_path, env)
    assert "DEMO API KEYS" in seeded.stdout and (tmp_path / "data" / "vbgateway.duckdb").exists()
    acme = re.search(r"Acme Corporation\s+(tnt_\w+)", seeded.stdout).group(1)

    simulated = run([cli, "simulate", "vendor_a_outage", "--db", "data/vbgateway.duckdb", "--quiet", "--json"],
                    tmp_path, env)
    summary = json.loads(simulated.stdout.strip().splitlines()[-1])
    assert summary["scenario"] == "vendor_a_outage" and summary["replies"] > 1000

    usage = run([cli, "report", "usage", "--tenant", "all", "--from", "2026-03-03", "--to", "2026-03-03", "--quiet"],
                tmp_path, env)
    invoice = run([cli, "report", "invoice", "--tenant", acme, "--month", "2026-03", "--quiet"], tmp_path, env)

    usage_page = (tmp_path / "reports" / "usage" / "all" / "2026-03-03_2026-03-03" / "usage_report.html")
    invoice_page = tmp_path / "reports" / "invoice" / acme / "2026-03" / "invoice.html"
    assert str(usage_page.parent) in usage.stdout and str(invoice_page.parent) in invoice.stdout
    assert usd(Decimal(summary["cost_usd"])) in usage_page.read_text()
    assert re.search(r'vb-total">(Total due|Month to date, not final): \$\d+\.\d\d<', invoice_page.read_text())
    assert (invoice_page.parent / "data" / "lines.csv").exists()
