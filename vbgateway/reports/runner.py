"""The papermill runner behind ``vbgateway report``: one job per tenant and period, safe under cron.

The report notebooks ship inside the package (``vbgateway/reports/notebooks``),
so an installed ``vbgateway`` runs them from any working directory. Each job
executes into a temporary folder next to its destination and is renamed into
place in one step, under an output lock, so cron runs that overlap neither
clobber nor interleave.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from .. import analytics
from ..errors import ReportError, ValidationError
from .data import open_db

__all__ = [
    "LOCK_NAME",
    "NOTEBOOKS",
    "ReportJob",
    "default_notebook_dir",
    "output_lock",
    "plan",
    "run_job",
    "run_reports",
    "to_html",
]

NOTEBOOKS = {"usage": "usage_report.ipynb", "invoice": "invoice.ipynb"}
LOCK_NAME = ".vbgateway-report.lock"
_HTML_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def default_notebook_dir() -> Path:
    """The report notebooks installed with the package."""
    return Path(__file__).resolve().parent / "notebooks"


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

    from ..clock import real_deadline, real_time_left, wait_real

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
    try:
        import papermill
    except ImportError as exc:
        raise ReportError("reports need the notebook tools: pip install 'vbgateway[notebooks]'",
                          code="REPORT_UNAVAILABLE") from exc
    source = (notebook_dir or default_notebook_dir()) / NOTEBOOKS[job.kind]
    if not source.exists():
        raise ReportError(f"report notebook not found: {source}", code="REPORT_UNAVAILABLE",
                          details={"notebook": str(source)})
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
