"""Reports behind ``vbgateway report``: usage and invoice notebooks run with papermill.

The parts, each readable alone:

- ``data``: what a report shows (tables and facts), computed once for the
  HTML and for the CSV/Parquet files;
- ``fragments``: the HTML pieces the notebooks display around charts and tables;
- ``runner``: planning the jobs and executing the notebooks under an output lock;
- ``governance`` and ``governance_view``: a tenant's budget on its invoice, refused
  requests and breaker open time on the usage report, as tables and as HTML sections.

The notebooks themselves (``notebooks/usage_report.ipynb``, ``notebooks/invoice.ipynb``)
ship inside this package and use the names re-exported here
(``from vbgateway import reports; reports.open_db(...)``).
"""

from __future__ import annotations

from ..errors import ReportError
from .data import (
    CENT,
    ReportData,
    demo_database,
    invoice_data,
    month_is_over,
    open_db,
    round_to_cents,
    save_tables,
    usage_data,
)
from .fragments import (
    ROUNDING_RULE,
    empty_notice_html,
    header_html,
    invoice_footer_html,
    invoice_lines_table,
    invoice_total_html,
    outlook_tables,
    pace_html,
)
from .runner import (
    LOCK_NAME,
    NOTEBOOKS,
    ReportJob,
    default_notebook_dir,
    output_lock,
    plan,
    run_job,
    run_reports,
    to_html,
)

__all__ = [
    "CENT",
    "LOCK_NAME",
    "NOTEBOOKS",
    "ROUNDING_RULE",
    "ReportData",
    "ReportError",
    "ReportJob",
    "default_notebook_dir",
    "demo_database",
    "empty_notice_html",
    "header_html",
    "invoice_data",
    "invoice_footer_html",
    "invoice_lines_table",
    "invoice_total_html",
    "month_is_over",
    "open_db",
    "outlook_tables",
    "output_lock",
    "pace_html",
    "plan",
    "round_to_cents",
    "run_job",
    "run_reports",
    "save_tables",
    "to_html",
    "usage_data",
]
