"""Report data and the papermill runner behind ``vbgateway report``.

The notebooks under ``notebooks/reports/`` stay small: they call
``usage_data`` / ``invoice_data`` here (so the figures in the HTML and in the
CSV/Parquet files come from one computation) and draw with ``charts``. The
runner executes them with papermill, one job per tenant and period, and
writes each job's folder atomically under an output lock, so cron runs that
overlap neither clobber nor interleave.

Reading never blocks the gateway for long: a report opens a read-only
gateway (``Gateway.open_reader``), computes every table, and closes it before
anything is rendered.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__, analytics
from .clock import SystemClock
from .errors import DatabaseError, GatewayError, InternalError, ValidationError
from .gateway import Gateway

__all__ = [
    "NOTEBOOKS",
    "ReportData",
    "ReportError",
    "ReportJob",
    "default_notebook_dir",
    "demo_database",
    "empty_notice_html",
    "header_html",
    "invoice_data",
    "invoice_footer_html",
    "open_db",
    "output_lock",
    "plan",
    "run_job",
    "run_reports",
    "save_tables",
    "to_html",
    "usage_data",
]

RECENT_EVENTS = 25
CENT = Decimal("0.01")


class ReportError(GatewayError):
    """A report could not be produced; the message names the job and, when it was code, the cell."""

    default_code = "REPORT_FAILED"
    default_status = 500


@dataclass
class ReportData:
    """Everything one report shows: its tables (written out as CSV and Parquet) and facts about it."""

    kind: str
    tenant_id: str
    tenant_name: str
    start: date
    end: date
    tables: dict[str, pd.DataFrame]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return int(self.meta.get("event_count", 0)) == 0


# ---------------------------------------------------------------------------- opening


def demo_database() -> Path:
    """A small synthetic database in a temp folder: what a report notebook uses when ``db`` is empty.

    It lets every notebook in the repo run as it is (nbval, a first look)
    without a gateway having served traffic.
    """
    from .clock import VirtualClock
    from .synthetic import SyntheticSpec, populate

    path = Path(tempfile.mkdtemp(prefix="vbgateway-demo-")) / "demo.duckdb"
    with Gateway.open(path, clock=VirtualClock()) as gw:
        populate(gw, SyntheticSpec(events=20_000, tenants=3, start=date(2025, 1, 1), end=date(2025, 12, 31), seed=7))
    return path


@contextmanager
def open_db(db: str | Path, wait_s: float = 60.0) -> Iterator[Gateway]:
    """A read-only gateway on ``db`` that works while another process serves traffic on it."""
    path = Path(db).expanduser().resolve() if str(db) else demo_database()
    if not path.exists():
        raise DatabaseError(f"no database at {path}", details={"path": str(path)})
    gw = Gateway.open_reader(path, wait_s=wait_s)
    try:
        yield gw
    finally:
        gw.close()


def _tenant(gw: Gateway, tenant_id: str) -> tuple[str | None, str]:
    """(scope for analytics, display name); ``"all"`` is every tenant."""
    if tenant_id == "all":
        return None, "All tenants"
    tenant = gw.get_tenant(tenant_id)
    return tenant.id, tenant.name


# ---------------------------------------------------------------------------- data


def usage_data(gw: Gateway, tenant_id: str, start: object, end: object) -> ReportData:
    """Every table of the usage report for one tenant (or ``"all"``) and UTC days ``start``..``end``."""
    first, last = (analytics.parse_day(start, "start"), analytics.parse_day(end, "end"))
    analytics.day_range(first, last)
    scope, name = _tenant(gw, tenant_id)
    roll = analytics.rollup(gw, scope, first, last, top=10)
    rel = analytics.reliability(gw, scope, first, last)
    daily = analytics.daily(gw, scope, first, last)
    month_end = pd.Timestamp(last, tz="UTC").to_pydatetime()
    replies = int(daily.replies.sum())
    totals = pd.DataFrame([{"replies": replies, **roll.totals}])
    tables = {
        "totals": totals,
        "kpis": analytics.compare(gw, scope, first, last, current=rel),
        "by_provider": roll.by_provider,
        "top_agents": roll.top_agents,
        "daily": daily,
        "monthly": analytics.monthly(gw, scope, now=month_end),
        "by_channel": analytics.by_channel(gw, scope, first, last),
        "latency": analytics.latency(gw, scope, first, last),
        "reliability": pd.DataFrame([rel.summary]),
        "reliability_by_provider": rel.by_provider,
        "error_codes": rel.error_codes,
        "recent_events": analytics.events(gw, scope, first, last, limit=RECENT_EVENTS),
    }
    if scope is None:
        tables["by_tenant"] = analytics.by_tenant(gw, first, last)
    meta = {"event_count": replies, "cost_usd": roll.totals["cost_usd"], "generated_at": _now(),
            "version": __version__, "previous": analytics.previous_period(first, last)}
    return ReportData("usage", tenant_id, name, first, last, tables, meta)


def invoice_data(gw: Gateway, tenant_id: str, month: str) -> ReportData:
    """The lines, total and reproducibility footer of one tenant's statement for a calendar month."""
    first, last = analytics.month_range(month)
    scope, name = _tenant(gw, tenant_id)
    if scope is None:
        raise ValidationError("an invoice is for one tenant, not 'all'", details={"field": "tenant_id"})
    lines = analytics.invoice_lines(gw, scope, month)
    count, total, digest = analytics.billed_events_digest(gw, scope, month)
    line_sum = sum((Decimal(v) for v in lines.amount_usd), Decimal(0))
    if line_sum != total or int(lines.replies.sum()) != count:
        raise InternalError("invoice lines do not add up to the billed events; refusing to issue it")
    prices = {p: gw.prices.price_per_1k(p) for p in gw.prices.providers}
    matches = all(prices.get(p) == Decimal(u) for p, u in zip(lines.provider, lines.unit_price_usd_per_1k))
    meta = {
        "invoice_number": f"VB-{first:%Y%m}-{scope.removeprefix('tnt_')[:12].upper()}",
        "event_count": count, "total_usd": total, "total_due_usd": total.quantize(CENT, rounding=ROUND_HALF_UP),
        "events_sha256": digest, "price_table_sha": gw.prices.digest(), "prices_match": matches,
        "version": __version__, "generated_at": _now(), "month": f"{first:%Y-%m}",
    }
    summary = pd.DataFrame([{k: (str(v) if isinstance(v, Decimal) else v) for k, v in
                             {"tenant_id": scope, "tenant_name": name, **meta}.items()}])
    return ReportData("invoice", scope, name, first, last, {"lines": lines, "summary": summary}, meta)


def _now() -> str:
    return SystemClock().now().strftime("%Y-%m-%d %H:%M:%S UTC")


def save_tables(data: ReportData, data_dir: str | Path) -> list[Path]:
    """Write every table as CSV (exact decimals as text) and Parquet (decimal128) into ``data_dir``."""
    if not str(data_dir):
        return []
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in data.tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), folder / f"{name}.parquet")
        written += [folder / f"{name}.csv", folder / f"{name}.parquet"]
    return written


# ---------------------------------------------------------------------------- HTML pieces

_PAGE_CSS = """<style>
.vb-head{font-family:Helvetica,Arial,sans-serif;border-bottom:3px solid #2563eb;padding:4px 0 12px;margin-bottom:8px}
.vb-head h1{font-size:26px;margin:0;color:#111827}.vb-head .vb-sub{color:#4b5563;font-size:14px;margin-top:4px}
.vb-note{font-family:Helvetica,Arial,sans-serif;background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;
 padding:10px 14px;color:#92400e;margin:8px 0}
.vb-foot{font-family:Menlo,Consolas,monospace;font-size:12px;color:#374151;border-top:1px solid #d1d5db;
 padding-top:8px;margin-top:16px;line-height:1.6}
.vb-total{font-family:Helvetica,Arial,sans-serif;font-size:20px;font-weight:600;text-align:right;margin:12px 0}
.vb-row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
</style>"""


def header_html(data: ReportData) -> str:
    """Title block: what, for whom, which days, compared with which days."""
    esc = html.escape
    if data.kind == "invoice":
        title = f"Statement {esc(data.meta['invoice_number'])}"
        sub = f"{esc(data.tenant_name)} ({esc(data.tenant_id)}) · billing period {data.start:%B %Y} (UTC)"
    else:
        prev = data.meta["previous"]
        title = "Usage and cost report"
        who = esc(data.tenant_name) + ("" if data.tenant_id == "all" else f" ({esc(data.tenant_id)})")
        sub = (f"{who} · {data.start:%Y-%m-%d} to {data.end:%Y-%m-%d} (UTC, inclusive) · "
               f"compared with {prev[0]:%Y-%m-%d} to {prev[1]:%Y-%m-%d}")
    return f'{_PAGE_CSS}<div class="vb-head"><h1>{title}</h1><div class="vb-sub">{sub}</div></div>'


def empty_notice_html(data: ReportData) -> str:
    """Said out loud when there is nothing to show, so zeros are not mistaken for a failure."""
    if not data.empty:
        return ""
    period = f"{data.start:%B %Y}" if data.kind == "invoice" else f"{data.start} to {data.end}"
    return (f'<div class="vb-note"><b>No billed usage</b> for {html.escape(data.tenant_name)} in {period}. '
            "Every figure below is zero.</div>")


def invoice_footer_html(data: ReportData) -> str:
    """The facts that make a statement reproducible from ``usage_events``."""
    m = data.meta
    prices = "matches the billed unit prices" if m["prices_match"] else "differs from some billed unit prices"
    rows = [
        ("Billed events", f"{m['event_count']:,}"),
        ("Exact total", f"{m['total_usd']} USD"),
        ("Events checksum", f"sha256 {m['events_sha256']}"),
        ("Price table", f"{m['price_table_sha']} ({prices})"),
        ("vbgateway", m["version"]),
        ("Generated", m["generated_at"]),
    ]
    body = "<br>".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in rows)
    return f'{_PAGE_CSS}<div class="vb-foot">{body}</div>'


# ---------------------------------------------------------------------------- the runner

NOTEBOOKS = {"usage": "usage_report.ipynb", "invoice": "invoice.ipynb"}
LOCK_NAME = ".vbgateway-report.lock"
_HTML_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def default_notebook_dir() -> Path:
    """``notebooks/reports`` of the checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "notebooks" / "reports"


@dataclass(frozen=True)
class ReportJob:
    """One notebook execution: a kind, a tenant (or ``"all"``) and a period."""

    kind: str
    tenant_id: str
    start: date
    end: date

    @property
    def period(self) -> str:
        return f"{self.start:%Y-%m}" if self.kind == "invoice" else f"{self.start}_{self.end}"

    @property
    def label(self) -> str:
        return f"{self.kind} report for {self.tenant_id}, {self.period}"

    def folder(self, out: Path) -> Path:
        return out / self.kind / self.tenant_id / self.period

    def parameters(self, db: Path, data_dir: Path) -> dict[str, str]:
        base = {"db": str(db), "tenant_id": self.tenant_id, "data_dir": str(data_dir)}
        if self.kind == "invoice":
            return {**base, "month": f"{self.start:%Y-%m}"}
        return {**base, "start": str(self.start), "end": str(self.end)}


def plan(db: str | Path, kind: str, tenants: Sequence[str] | None, start: object = None, end: object = None,
         month: str | None = None) -> list[ReportJob]:
    """Validate the request against the database and list its jobs (``tenants=None``: every tenant)."""
    if kind not in NOTEBOOKS:
        raise ValidationError(f"report kind is one of {sorted(NOTEBOOKS)}", details={"kind": kind})
    if month is not None:
        first, last = analytics.month_range(month)
    elif kind == "invoice":
        raise ValidationError("an invoice needs --month YYYY-MM", details={"field": "month"})
    else:
        first, last = analytics.parse_day(start, "from"), analytics.parse_day(end, "to")
        analytics.day_range(first, last)
    with open_db(db) as gw:
        ids = [t.id for t in gw.list_tenants()] if tenants is None else list(tenants)
        for tenant_id in ids:
            if tenant_id == "all" and kind == "invoice":
                raise ValidationError("an invoice is for one tenant; use --all-tenants for one each")
            if tenant_id != "all":
                gw.get_tenant(tenant_id)
    return [ReportJob(kind, t, first, last) for t in ids]


@contextmanager
def output_lock(out: Path, wait_s: float) -> Iterator[None]:
    """One writer per output folder: a second run (say, cron overlapping itself) waits, then gives up."""
    import fcntl

    from .clock import real_deadline, real_time_left, wait_real

    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a+") as handle:
        deadline = real_deadline(wait_s)
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if real_time_left(deadline) <= 0:
                    raise ReportError(f"another vbgateway report run is writing to {out}; gave up after {wait_s:.0f} s",
                                      code="REPORT_BUSY") from None
                wait_real(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def to_html(notebook_path: Path) -> str:
    """A self-contained page without code cells and without any script from the network."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"vb_report.html.j2": _HTML_TEMPLATE})],
                            template_file="vb_report.html.j2", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook_path, as_version=4))
    return body


def _source_cell(executed: Path, cell: int | None) -> int | None:
    """The failing cell's index in the notebook as written (papermill inserts a cell for the parameters)."""
    if cell is None or not executed.exists():
        return cell
    import nbformat

    cells = [c for c in nbformat.read(executed, as_version=4).cells  # papermill's own error banner goes first
             if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    return cell - sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:cell])


def _failure(job: ReportJob, exc: Exception, kept: Path) -> ReportError:
    """Name the job, the cell (counted from 0 in the notebook as written) and the error, and the kept notebook."""
    cell = _source_cell(kept, getattr(exc, "cell_index", None))
    source = str(getattr(exc, "source", "") or "").strip().splitlines()
    where = f" in cell {cell}" + (f" ({source[0][:60]!r})" if source else "") if cell is not None else ""
    what = f"{getattr(exc, 'ename', type(exc).__name__)}: {str(getattr(exc, 'evalue', exc)).strip()[:300]}"
    return ReportError(f"{job.label} failed{where}: {what} (executed notebook kept at {kept})",
                       details={"cell": cell, "notebook": str(kept)})


def run_job(job: ReportJob, db: Path, out: Path, *, notebook_dir: Path | None = None,
            kernel_name: str = "python3", timeout_s: int = 600) -> Path:
    """Execute one report into a temporary folder, then move it into place in one rename."""
    import papermill

    source = (notebook_dir or default_notebook_dir()) / NOTEBOOKS[job.kind]
    if not source.exists():
        raise ReportError(f"report notebook not found: {source}", details={"notebook": str(source)})
    final = job.folder(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the published folder should read like any other
    executed = work / NOTEBOOKS[job.kind]
    try:
        papermill.execute_notebook(str(source), str(executed), parameters=job.parameters(db, work / "data"),
                                   kernel_name=kernel_name, progress_bar=False, log_output=False,
                                   execution_timeout=timeout_s, cwd=str(work))
        (work / executed.with_suffix(".html").name).write_text(to_html(executed), encoding="utf-8")
    except Exception as exc:
        kept = out / "failed" / f"{job.kind}-{job.tenant_id}-{job.period}.ipynb"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if executed.exists():
            shutil.copyfile(executed, kept)
        shutil.rmtree(work, ignore_errors=True)
        raise _failure(job, exc, kept) from exc
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


@contextmanager
def _kernel_chatter_to(log: Path) -> Iterator[Any]:
    """Kernels inherit file descriptor 2 and warn on it; under cron that is mail for nothing.

    Their stderr goes to ``log``; the caller gets a handle on the real stderr
    for the progress bar and keeps it for its own messages.
    """
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as handle:
        os.dup2(handle.fileno(), 2)
    real = os.fdopen(os.dup(saved), "w")
    try:
        yield real
    finally:
        real.flush()
        real.close()
        os.dup2(saved, 2)
        os.close(saved)


def run_reports(jobs: Sequence[ReportJob], db: str | Path, out: str | Path, *, progress: bool | None = None,
                notebook_dir: Path | None = None, lock_wait_s: float = 600.0, kernel_name: str = "python3") -> list[Path]:
    """Run every job under the output lock, with a progress bar on a terminal (none under cron)."""
    from tqdm import tqdm

    db_path, out_path = Path(db).expanduser().resolve(), Path(out).expanduser().resolve()
    done: list[Path] = []
    with output_lock(out_path, lock_wait_s), _kernel_chatter_to(out_path / ".vbgateway-report.log") as stderr:
        bar = tqdm(jobs, unit="report", disable=None if progress is None else not progress, leave=False, file=stderr)
        for job in bar:
            bar.set_description(f"{job.kind} {job.tenant_id} {job.period}")
            done.append(run_job(job, db_path, out_path, notebook_dir=notebook_dir, kernel_name=kernel_name))
    return done
