"""What a report shows: its tables and facts, computed once for the HTML and the CSV/Parquet files.

The report notebooks call ``usage_data`` / ``invoice_data`` so that the
figures on the page and in the data files come from one computation.
Reading never blocks the gateway for long: a report opens a read-only
gateway (``open_db``), computes every table, and closes it before anything
is rendered.

An invoice prints each line rounded half-up to the cent and a total that is
the sum of those printed lines, so the page adds up line by line; the exact
amounts stay in the data files and the footer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__, analytics
from ..clock import SystemClock
from ..errors import DatabaseError, InternalError, ValidationError
from ..gateway import Gateway
from .governance import budget_tables, refusal_tables

__all__ = [
    "CENT",
    "ReportData",
    "demo_database",
    "invoice_data",
    "month_is_over",
    "open_db",
    "prices_match",
    "round_to_cents",
    "save_tables",
    "usage_data",
]

RECENT_EVENTS = 25
CENT = Decimal("0.01")


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
    from ..clock import VirtualClock
    from ..synthetic import SyntheticSpec, populate

    path = Path(tempfile.mkdtemp(prefix="vbgateway-demo-")) / "demo.duckdb"
    with Gateway.open(path, clock=VirtualClock()) as gw:
        populate(gw, SyntheticSpec(events=20_000, tenants=3, start=date(2025, 1, 1), end=date(2025, 12, 31), seed=7))
    return path


@contextmanager
def open_db(db: str | Path, wait_s: float = 60.0) -> Iterator[Gateway]:
    """A read-only gateway on ``db`` that works while another process serves traffic on it.

    ``db`` may also be a lake or an export folder (``vbgateway.lake``): the same reports, read from Parquet.
    """
    from ..lake import is_lake, open_lake

    if str(db) and is_lake(db):
        with open_lake(db) as lake:
            yield lake
        return
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
    tables["anomalies"] = analytics.anomalies(gw, scope, first, last)
    tables["forecast"] = _forecasts(gw, scope, last)
    tables.update(refusal_tables(gw, scope, first, last))
    meta = {"event_count": replies, "cost_usd": roll.totals["cost_usd"], "generated_at": _now(),
            "version": __version__, "previous": analytics.previous_period(first, last)}
    return ReportData("usage", tenant_id, name, first, last, tables, meta)


def _forecasts(gw: Gateway, scope: str | None, last: date) -> pd.DataFrame:
    """Month-end spend at this pace for the month of ``last`` (one row per tenant; a month over is its spend)."""
    rows = [f.as_dict() for f in analytics.month_end_forecasts(gw, scope, month=f"{last:%Y-%m}")]
    columns = ["tenant_id", "month", "as_of", "month_to_date_usd", "point_usd", "low_usd", "high_usd", "interval",
               "history_days", "remaining_days", "method"]
    return pd.DataFrame(rows, columns=columns)


def round_to_cents(amounts: Iterable[object]) -> tuple[list[Decimal], Decimal]:
    """Each amount rounded half-up to the cent, and the sum of those: the figures an invoice prints."""
    rounded = [(a if isinstance(a, Decimal) else Decimal(str(a))).quantize(CENT, rounding=ROUND_HALF_UP)
               for a in amounts]
    return rounded, sum(rounded, Decimal("0.00"))


def month_is_over(first: date, now: datetime) -> bool:
    """Whether the calendar month starting on ``first`` has ended at ``now`` (UTC): only then is its invoice final."""
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return now.astimezone(UTC) >= datetime(following.year, following.month, 1, tzinfo=UTC)


def invoice_data(gw: Gateway, tenant_id: str, month: str, *, now: datetime | None = None) -> ReportData:
    """The lines, total and reproducibility footer of one tenant's statement for a calendar month.

    ``now`` (default: the gateway's clock) decides whether the month is over:
    a statement for a month still in progress is marked month to date, not final.
    """
    first, last = analytics.month_range(month)
    scope, name = _tenant(gw, tenant_id)
    if scope is None:
        raise ValidationError("an invoice is for one tenant, not 'all'", details={"field": "tenant_id"})
    lines = analytics.invoice_lines(gw, scope, month)
    count, total, digest = analytics.billed_events_digest(gw, scope, month)
    line_sum = sum((Decimal(v) for v in lines.amount_usd), Decimal(0))
    if line_sum != total or int(lines.replies.sum()) != count:
        raise InternalError("invoice lines do not add up to the billed events; refusing to issue it")
    rounded, total_due = round_to_cents(lines.amount_usd)
    lines["amount_rounded_usd"] = pd.Series(rounded, index=lines.index, dtype=pd.ArrowDtype(pa.decimal128(38, 2)))
    matches = prices_match(gw, lines)
    as_of = (now or gw.clock.now()).astimezone(UTC)
    final = month_is_over(first, as_of)
    meta = {
        "invoice_number": f"VB-{first:%Y%m}-{scope.removeprefix('tnt_')[:12].upper()}",
        "event_count": count, "total_usd": total, "total_due_usd": total_due, "rounding_usd": total_due - total,
        "final": final, "as_of": f"{as_of:%Y-%m-%d %H:%M:%S} UTC",
        "events_sha256": digest, "price_table_sha": gw.prices.digest(), "prices_match": matches,
        "version": __version__, "generated_at": _now(), "month": f"{first:%Y-%m}",
    }
    summary = pd.DataFrame([{k: (str(v) if isinstance(v, Decimal) else v) for k, v in
                             {"tenant_id": scope, "tenant_name": name, **meta}.items()}])
    # A month still running also says where it is heading ("at this pace"); the statement's figures stay exact.
    meta["forecast"] = None if final else analytics.month_end_forecast(gw, scope, month=month, as_of=as_of)
    tables = {"lines": lines, "summary": summary, **budget_tables(gw, scope, first, last)}
    return ReportData("invoice", scope, name, first, last, tables, meta)


def prices_match(gw: Gateway, lines: pd.DataFrame) -> bool:
    """Whether every line's rates are a version of its provider's prices in the gateway's price table."""
    known = {(p, r.usd_per_1m_input, r.usd_per_1m_output) for p in gw.prices.providers for r in gw.prices.versions(p)}
    billed = zip(lines.provider, lines.usd_per_1m_input, lines.usd_per_1m_output, strict=True)
    return all((p, Decimal(i), Decimal(o)) in known for p, i, o in billed)


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
