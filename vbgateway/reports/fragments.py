"""The HTML pieces the report notebooks display around their charts and tables.

They take a ``ReportData`` and return markup (or a styled table), so what a
report prints can be checked without running a notebook. Every piece carries
the page's small stylesheet: a notebook may show any of them first.
``vbgateway.charts`` (and Altair with it) is imported only by the pieces that
need it, so reading report data (``vbgateway export``) does not load it.
"""

from __future__ import annotations

import html
from typing import Any

from .data import ReportData

__all__ = [
    "ROUNDING_RULE",
    "empty_notice_html",
    "header_html",
    "invoice_footer_html",
    "invoice_lines_table",
    "invoice_total_html",
    "outlook_tables",
    "pace_html",
]

ROUNDING_RULE = ("Each line is rounded to the cent (half up); the total is the sum of the rounded lines. "
                 "Exact amounts are in the footer and in the data files (lines.csv, amount_usd).")

_PAGE_CSS = """<style>
.vb-head{font-family:Helvetica,Arial,sans-serif;border-bottom:3px solid #2563eb;padding:4px 0 12px;margin-bottom:8px}
.vb-head h1{font-size:26px;margin:0;color:#111827}.vb-head .vb-sub{color:#4b5563;font-size:14px;margin-top:4px}
.vb-note{font-family:Helvetica,Arial,sans-serif;background:#fffbeb;border:1px solid #fcd34d;border-radius:8px;
 padding:10px 14px;color:#92400e;margin:8px 0}
.vb-foot{font-family:Menlo,Consolas,monospace;font-size:12px;color:#374151;border-top:1px solid #d1d5db;
 padding-top:8px;margin-top:16px;line-height:1.6}
.vb-total{font-family:Helvetica,Arial,sans-serif;font-size:20px;font-weight:600;text-align:right;margin:12px 0}
.vb-rule{font-family:Helvetica,Arial,sans-serif;font-size:12px;color:#4b5563;text-align:right}
.vb-row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
</style>"""

_LINE_CAPTIONS = {"agent_name": "Agent", "provider": "Provider", "replies": "Replies",
                  "usd_per_1m_input": "USD per 1M tokens in", "usd_per_1m_output": "USD per 1M tokens out",
                  "tokens_in": "Tokens in", "tokens_out": "Tokens out", "tokens_total": "Tokens",
                  "amount_rounded_usd": "Amount"}


def header_html(data: ReportData) -> str:
    """Title block: what, for whom, which days, compared with which days (or whether the invoice is final)."""
    esc = html.escape
    if data.kind == "invoice":
        title = f"Statement {esc(data.meta['invoice_number'])}"
        sub = f"{esc(data.tenant_name)} ({esc(data.tenant_id)}) · billing period {data.start:%B %Y} (UTC)"
        if not data.meta["final"]:
            sub += f" · <b>month to date, not final</b> (as of {esc(data.meta['as_of'])})"
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


def invoice_lines_table(data: ReportData) -> Any:
    """The charges, one row per agent, provider and pair of rates, each amount as rounded for the total."""
    from ..charts import style_table  # Altair comes with it: loaded only where a notebook draws

    lines = data.tables["lines"].drop(columns=["agent_id", "amount_usd"])
    return style_table(lines, money=["amount_rounded_usd"], prices=["usd_per_1m_input", "usd_per_1m_output"],
                       counts=["replies", "tokens_in", "tokens_out", "tokens_total"], captions=_LINE_CAPTIONS,
                       caption="Charges per agent and provider")


def invoice_total_html(data: ReportData) -> str:
    """The sum of the printed lines, labelled "Total due" only once the month is over; then the rounding rule."""
    from ..charts import usd

    label = "Total due" if data.meta["final"] else "Month to date, not final"
    return (f'{_PAGE_CSS}<div class="vb-total">{label}: {usd(data.meta["total_due_usd"])}</div>'
            f'{pace_html(data.meta.get("forecast"))}<div class="vb-rule">{html.escape(ROUNDING_RULE)}</div>')


def pace_html(forecast: Any) -> str:
    """"At this pace": a month still running, heading for its end (``analytics.SpendForecast``), or nothing."""
    from ..charts import usd

    if forecast is None or forecast.history_days == 0:
        return ""
    return (f'<div class="vb-rule">At this pace: {usd(forecast.point_usd)} by the end of {forecast.month} '
            f'({forecast.interval:.0%} interval {usd(forecast.low_usd)} to {usd(forecast.high_usd)}; '
            f'{html.escape(forecast.method)}, from {forecast.history_days} days of history)</div>')


def outlook_tables(data: ReportData) -> tuple[Any, Any]:
    """The usage report's forecast and anomaly tables, each with a caption saying how it was made."""
    from ..charts import style_table

    forecast = data.tables["forecast"].drop(columns=["as_of", "method", "interval"])
    flagged = data.tables["anomalies"]
    return (style_table(forecast, money=["month_to_date_usd", "point_usd", "low_usd", "high_usd"],
                        counts=["history_days", "remaining_days"],
                        caption="Month-end spend at this pace, with an 80% interval (day-of-week means, "
                                "residual bootstrap)"),
            style_table(flagged, caption=f"{len(flagged)} anomalous days: robust z-score against the same kind of "
                                         "day (weekday or weekend) in the previous 28, |z| > 3.5"))


def invoice_footer_html(data: ReportData) -> str:
    """The facts that make a statement reproducible from ``usage_events``."""
    m = data.meta
    prices = "matches the billed unit prices" if m["prices_match"] else "differs from some billed unit prices"
    rows = [
        ("Billed events", f"{m['event_count']:,}"),
        ("Exact total", f"{m['total_usd']} USD"),
        ("Rounding of the lines", f"{m['rounding_usd']:+} USD"),
        ("Events checksum", f"sha256 {m['events_sha256']}"),
        ("Price table", f"{m['price_table_sha']} ({prices})"),
        ("Status", "final" if m["final"] else f"month to date, not final (as of {m['as_of']})"),
        ("vbgateway", m["version"]),
        ("Generated", m["generated_at"]),
    ]
    body = "<br>".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in rows)
    return f'{_PAGE_CSS}<div class="vb-foot">{body}</div>'
