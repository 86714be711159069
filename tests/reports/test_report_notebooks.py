"""Specification of the report notebooks and ``vbgateway report``: papermill runs against the fixture database.

Three notebook executions are shared by the whole module (kernel starts are
slow); a fourth checks how a failing cell is reported.
"""

from __future__ import annotations

import re
from decimal import Decimal

import nbformat
import pandas as pd
import pyarrow.parquet as pq
import pytest
from invoice_support import printed_lines, printed_total

from vbgateway import analytics
from vbgateway.charts import usd
from vbgateway.cli import main
from vbgateway.commands.report import resolve_month
from vbgateway.reports import ReportError, ReportJob, empty_notice_html, invoice_data, output_lock, run_reports

JUNE = ("2025-06-01", "2025-06-30")


def exact_sum(reader, tenant, start, end) -> Decimal:
    lower, upper = analytics.day_range(start, end)
    return Decimal(reader.sql("SELECT coalesce(sum(cost_usd), 0) AS c FROM usage_events WHERE tenant_id = ? "
                              "AND created_at >= ? AND created_at < ?", [tenant, lower, upper]).c[0])


@pytest.fixture(scope="module")
def runs(fixture_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "reports"
    db = str(fixture_db.path)
    usage = main(["report", "usage", "--db", db, "--tenant", fixture_db.bulk, "--tenant", fixture_db.empty,
                  "--from", JUNE[0], "--to", JUNE[1], "--out", str(out)])
    invoice = main(["report", "invoice", "--db", db, "--tenant", fixture_db.bulk, "--month", "2025-06",
                    "--out", str(out)])
    return out, usage, invoice


def folder(out, kind, tenant, period):
    return out / kind / tenant / period


def test_report_runs_exit_zero(runs):
    _, usage, invoice = runs

    assert (usage, invoice) == (0, 0)


def test_usage_report_writes_notebook_html_csv_and_parquet(runs, fixture_db):
    out, _, _ = runs
    where = folder(out, "usage", fixture_db.bulk, "2025-06-01_2025-06-30")

    assert (where / "usage_report.ipynb").exists() and (where / "usage_report.html").exists()
    for table in ("totals", "kpis", "daily", "by_provider", "monthly", "latency", "reliability", "recent_events"):
        assert (where / "data" / f"{table}.csv").exists() and (where / "data" / f"{table}.parquet").exists()


def test_usage_html_total_reconciles_with_usage_events_to_the_cent(runs, fixture_db, reader):
    out, _, _ = runs
    page = (folder(out, "usage", fixture_db.bulk, "2025-06-01_2025-06-30") / "usage_report.html").read_text()
    total = exact_sum(reader, fixture_db.bulk, *JUNE)

    assert total > 1 and usd(total) in page


def test_usage_csv_and_parquet_totals_are_exact(runs, fixture_db, reader):
    out, _, _ = runs
    data = folder(out, "usage", fixture_db.bulk, "2025-06-01_2025-06-30") / "data"
    total = exact_sum(reader, fixture_db.bulk, *JUNE)
    csv_total = Decimal(pd.read_csv(data / "totals.csv", dtype=str).cost_usd[0])
    by_provider = sum(Decimal(v) for v in pd.read_csv(data / "by_provider.csv", dtype=str).cost_usd)
    daily = sum(Decimal(v) for v in pd.read_csv(data / "daily.csv", dtype=str).cost_usd)

    assert csv_total == by_provider == daily == total
    assert pq.read_table(data / "totals.parquet").column("cost_usd")[0].as_py() == total


def test_html_is_self_contained_without_code(runs, fixture_db):
    out, _, _ = runs
    page = (folder(out, "usage", fixture_db.bulk, "2025-06-01_2025-06-30") / "usage_report.html").read_text()

    assert "<svg" in page
    assert not re.search(r"<script[^>]+src=", page) and "cdn" not in page.lower()
    assert "reports.open_db" not in page and "tenant_id = " not in page


def test_usage_report_of_an_empty_tenant_renders_zeros_and_says_so(runs, fixture_db):
    out, _, _ = runs
    page = (folder(out, "usage", fixture_db.empty, "2025-06-01_2025-06-30") / "usage_report.html").read_text()
    totals = pd.read_csv(folder(out, "usage", fixture_db.empty, "2025-06-01_2025-06-30") / "data" / "totals.csv")

    assert "No billed usage" in page and "$0.00" in page
    assert float(totals.cost_usd[0]) == 0 and int(totals.replies[0]) == 0


def test_invoice_lines_add_up_to_the_printed_total_and_the_csv_keeps_the_exact_figures(runs, fixture_db, reader):
    out, _, _ = runs
    where = folder(out, "invoice", fixture_db.bulk, "2025-06")
    page = (where / "invoice.html").read_text()
    lines = pd.read_csv(where / "data" / "lines.csv", dtype=str)
    total = exact_sum(reader, fixture_db.bulk, *JUNE)
    printed = printed_lines(page)

    assert printed_total(page) == ("Total due", sum(printed, Decimal(0)))  # June 2025 is over
    assert printed == [Decimal(v) for v in lines.amount_rounded_usd] and "rounded to the cent" in page
    assert abs(sum(printed, Decimal(0)) - total) <= Decimal("0.005") * len(printed)
    assert sum(Decimal(v) for v in lines.amount_usd) == total
    assert Decimal(re.search(r"Exact total: ([\d.]+) USD", page).group(1)) == total
    assert len(lines) == 4 and set(lines.provider) == {"vendorA", "vendorB"}


def test_invoice_footer_makes_it_reproducible(runs, fixture_db, reader):
    out, _, _ = runs
    page = (folder(out, "invoice", fixture_db.bulk, "2025-06") / "invoice.html").read_text()
    count, _, digest = analytics.billed_events_digest(reader, fixture_db.bulk, "2025-06")

    assert digest in page and f"Billed events: {count:,}" in page
    assert reader.prices.digest() in page and "vbgateway: 0." in page and "Generated: " in page


def test_executed_notebook_keeps_the_injected_parameters(runs, fixture_db):
    out, _, _ = runs
    nb = nbformat.read(folder(out, "invoice", fixture_db.bulk, "2025-06") / "invoice.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]

    assert injected and fixture_db.bulk in injected[0].source and "2025-06" in injected[0].source


def test_an_invoice_for_an_empty_tenant_is_zero_and_says_so(reader, fixture_db):
    data = invoice_data(reader, fixture_db.empty, "2025-06")

    assert data.empty and data.meta["total_due_usd"] == 0 and "No billed usage" in empty_notice_html(data)


def test_a_failing_cell_is_named_and_its_notebook_kept(fixture_db, tmp_path):
    broken = nbformat.v4.new_notebook()
    broken.cells = [nbformat.v4.new_code_cell('db = ""\ntenant_id = "all"\nstart = ""\nend = ""\ndata_dir = ""'),
                    nbformat.v4.new_code_cell("ratio = 1 / 0")]
    broken.cells[0].metadata["tags"] = ["parameters"]
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nb").mkdir()
    nbformat.write(broken, tmp_path / "nb" / "usage_report.ipynb")
    job = ReportJob("usage", "all", *(analytics.parse_day(d, "d") for d in JUNE))

    with pytest.raises(ReportError) as info:
        run_reports([job], fixture_db.path, tmp_path / "out", notebook_dir=tmp_path / "nb", progress=False)

    assert "cell 1" in info.value.message and "ZeroDivisionError" in info.value.message
    assert (tmp_path / "out" / "failed" / "usage-all-2025-06-01_2025-06-30.ipynb").exists()
    assert not (tmp_path / "out" / "usage" / "all" / "2025-06-01_2025-06-30").exists()


def test_a_second_run_on_the_same_output_waits_then_fails_clearly(fixture_db, tmp_path, capsys):
    with output_lock(tmp_path, 1):
        code = main(["report", "usage", "--db", str(fixture_db.path), "--tenant", fixture_db.bulk,
                     "--from", JUNE[0], "--to", JUNE[1], "--out", str(tmp_path), "--lock-wait", "0"])

    assert code == 2 and "another vbgateway report run is writing" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["usage", "--tenant", "all"], "give a period"),
    (["usage", "--tenant", "all", "--from", "2025-06-01"], "give both --from and --to"),
    (["usage", "--tenant", "all", "--from", "2025-06-30", "--to", "2025-06-01"], "'from' must not be after 'to'"),
    (["invoice", "--tenant", "all", "--month", "2025-06"], "an invoice is for one tenant"),
    (["invoice", "--tenant", "tnt_nobody", "--month", "2025-06"], "NOT_FOUND"),
    (["invoice", "--all-tenants", "--from", "2025-06-01", "--to", "2025-06-30"], "an invoice needs --month"),
])
def test_bad_requests_exit_2_with_a_clear_message(fixture_db, tmp_path, capsys, argv, message):
    code = main(["report", *argv, "--db", str(fixture_db.path), "--out", str(tmp_path)])

    assert code == 2 and message in capsys.readouterr().err


def test_a_missing_database_exits_2(tmp_path, capsys):
    code = main(["report", "usage", "--db", str(tmp_path / "nope.duckdb"), "--tenant", "all",
                 "--month", "2025-06", "--out", str(tmp_path)])

    assert code == 2 and "no database at" in capsys.readouterr().err


def test_relative_months_for_cron():
    assert re.fullmatch(r"\d{4}-\d{2}", resolve_month("previous"))
    assert resolve_month("previous") < resolve_month("current")
    assert resolve_month("2025-06") == "2025-06"
