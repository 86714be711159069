"""The governance sections of the reports as HTML: budget on the invoice, refusals and breakers on usage.

Each section is a heading, a table and (where a picture helps) a chart
rendered offline to inline SVG, or a plain "none" when there is nothing to
show, so a reader can tell "no refusals" from "section missing". Money is
printed from exact Decimals, to the cent, as the invoice lines are.
"""

from __future__ import annotations

import html
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import altair as alt
import pandas as pd

from .. import charts
from .data import ReportData

__all__ = ["breaker_section_html", "budget_curve_chart", "budget_section_html", "percent", "refusals_chart",
           "refusals_section_html"]

_RED, _AMBER = "#ef4444", "#f59e0b"


def percent(share: Any) -> str:
    """``93.4%``: a share of the budget, rounded half-up to a tenth of a percent from its exact Decimal."""
    value = (Decimal(str(share)) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{value}%"


def _section(title: str, body: str) -> str:
    return f'<h2 style="font-family:Helvetica,Arial,sans-serif">{html.escape(title)}</h2>{body}'


def _none(what: str) -> str:
    return f'<p class="vb-none" style="font-family:Helvetica,Arial,sans-serif;color:#4b5563">{html.escape(what)}: none.</p>'


def budget_curve_chart(curve: pd.DataFrame, limit: Decimal, thresholds: list[Decimal],
                       title: str = "Cumulative spend this month vs the budget (USD)") -> alt.LayerChart:
    """The month's spend day by day as a line, the limit as a red rule, each alert threshold as a dashed one."""
    data = pd.DataFrame({"day": pd.to_datetime(curve["day"]).dt.strftime("%Y-%m-%d"),
                         "cumulative_usd": [float(v) for v in curve["cumulative_usd"]]})
    line = alt.Chart(data).mark_line(color=charts.PALETTE[0], point=True).encode(
        x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d", labelAngle=0)),
        y=alt.Y("cumulative_usd:Q", title="USD"),
        tooltip=["day", alt.Tooltip("cumulative_usd:Q", format="$,.2f")])
    marks = pd.DataFrame({"usd": [float(limit)] + [float(limit * t) for t in thresholds],
                          "what": ["limit"] + [f"alert {percent(t)}" for t in thresholds]})
    limit_rule = alt.Chart(marks.iloc[:1]).mark_rule(color=_RED, strokeWidth=2).encode(y="usd:Q", tooltip=["what"])
    alert_rules = alt.Chart(marks.iloc[1:]).mark_rule(color=_AMBER, strokeDash=[4, 3]).encode(y="usd:Q",
                                                                                               tooltip=["what"])
    layered: alt.LayerChart = (alt.layer(line, limit_rule, alert_rules)
                               .properties(title=title, width=charts.WIDTH, height=charts.HEIGHT)
                               .configure_view(strokeWidth=0)
                               .configure_title(font="Helvetica", fontSize=14, anchor="start", color="#111827"))
    return layered


def budget_section_html(data: ReportData) -> str:
    """The invoice's budget: limit, spend and peak share, the alerts crossed, and the curve against the limit."""
    budget, alerts = data.tables["budget"], data.tables["budget_alerts"]
    if budget.empty:
        return _section("Budget", _none("Monthly budget"))
    row = budget.iloc[0]
    limit = Decimal(str(row.monthly_usd))
    facts = pd.DataFrame([{"Monthly budget": charts.usd(limit), "Spent this month": charts.usd(row.spent_usd),
                           "Peak use": percent(row.peak_share), "Alerts at": row.alert_at or "–"}])
    body = facts.to_html(index=False, classes="vb-budget", border=0)
    if alerts.empty:
        body += _none("Alerts crossed")
    else:
        shown = pd.DataFrame({"Threshold": [percent(t) for t in alerts.threshold],
                              "Crossed at (UTC)": [f"{pd.Timestamp(t).tz_convert('UTC'):%Y-%m-%d %H:%M:%S}"
                                                   for t in alerts.crossed_at],
                              "Spent then": [charts.usd(v) for v in alerts.spent_usd],
                              "Budget then": [charts.usd(v) for v in alerts.monthly_usd]})
        body += shown.to_html(index=False, classes="vb-alerts", border=0)
    thresholds = [Decimal(t.strip().rstrip("%")) / 100 for t in str(row.alert_at).split(",") if t.strip()]
    body += charts.svg_html(budget_curve_chart(data.tables["budget_curve"], limit, thresholds))
    return _section("Budget", body)


def refusals_chart(daily: pd.DataFrame, title: str = "Refused requests per day") -> alt.Chart:
    """Stacked bars per UTC day: rate-limit refusals and budget refusals."""
    long = daily.melt(id_vars=["tenant_id", "day"], value_vars=["rate_limit_refusals", "budget_refusals"],
                      var_name="code", value_name="requests")
    long["day"] = pd.to_datetime(long["day"]).dt.strftime("%Y-%m-%d")
    long["code"] = long["code"].map({"rate_limit_refusals": "rate limit", "budget_refusals": "budget"})
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d", labelAngle=0)),
        y=alt.Y("sum(requests):Q", title="requests", stack="zero"),
        color=alt.Color("code:N", scale=alt.Scale(domain=["rate limit", "budget"], range=[_AMBER, _RED]),
                        title="refused by"),
        tooltip=["day", "code", "tenant_id", alt.Tooltip("requests:Q", format=",")])
    styled: alt.Chart = charts._style(chart, title)  # the house style of every report chart
    return styled


def refusals_section_html(data: ReportData) -> str:
    """Requests the gateway turned away before calling a provider: per tenant, per day, and a chart."""
    daily, per_tenant = data.tables["refusals_daily"], data.tables["refusals_by_tenant"]
    if daily.empty:
        return _section("Refused requests", _none("Rate-limit and budget refusals"))
    counts = ["rate_limit_refusals", "budget_refusals"]
    captions = {"tenant_id": "Tenant", "day": "Day (UTC)", "rate_limit_refusals": "Rate-limit refusals",
                "budget_refusals": "Budget refusals"}
    body = charts.svg_html(refusals_chart(daily))
    body += charts.style_table(per_tenant, counts=counts, captions=captions, caption="Refusals per tenant").to_html()
    body += charts.style_table(daily, counts=counts, captions=captions, caption="Refusals per tenant and day").to_html()
    return _section("Refused requests", body)


def breaker_section_html(data: ReportData) -> str:
    """How long each provider's circuit breaker kept it out of use (summed over gateway processes)."""
    table = data.tables["breaker_open_time"]
    if table.empty:
        return _section("Circuit breakers", _none("Breaker open time"))
    long = table.melt(id_vars="provider", value_vars=["open_s", "half_open_s"], var_name="state", value_name="s")
    long["state"] = long["state"].map({"open_s": "open", "half_open_s": "half_open"})
    chart = alt.Chart(long).mark_bar().encode(
        y=alt.Y("provider:N", title=None), x=alt.X("sum(s):Q", title="seconds", stack="zero"),
        color=alt.Color("state:N", scale=alt.Scale(domain=["open", "half_open"],
                                                   range=[charts.BREAKER_COLORS["open"],
                                                          charts.BREAKER_COLORS["half_open"]])),
        tooltip=["provider", "state", alt.Tooltip("s:Q", format=",.1f")])
    body = charts.svg_html(charts._style(chart, "Time out of use per provider (s)", height=120))
    captions = {"provider": "Provider", "opened": "Times opened", "open_s": "Open (s)",
                "half_open_s": "Half-open (s)", "not_closed_s": "Not closed (s)"}
    body += charts.style_table(table, counts=["opened", "open_s", "half_open_s", "not_closed_s"], captions=captions,
                               caption="Breaker open time per provider").to_html()
    return _section("Circuit breakers", body)
