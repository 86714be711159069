"""UsageDashboard: what the tenant spent, on what, and how it compares with the period before.

Reads only through the tenant client's analytics (``usage_rollup``,
``usage_events``, ``usage_monthly``, ``usage_forecast``), draws charts with ``vbgateway.charts``
rendered to SVG by vl-convert (offline: no CDN, no frontend extension), and
exports the period's events as CSV.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import ipywidgets as widgets

from ..analytics import Rollup, SpendForecast
from ..governance.budget_values import Budget, plain_decimal
from .base import Panel, guarded
from .login import AnyTenantClient, LoginPanel
from .style import badge, esc, fmt_change, fmt_int, fmt_usd, gap, table_html
from .usage_data import PRESETS, Kpi, Period, budget_shares, export_events_csv, kpis, period_for, previous_period

__all__ = ["RECENT_EVENTS", "UsageDashboard", "budget_gauge_html", "gauge_html", "heading", "kpi_tiles",
           "monthly_chart_svg"]

RECENT_EVENTS = 10


def heading(text: str) -> widgets.HTML:
    return widgets.HTML(f'<div class="vb-title" style="font-size:14px">{esc(text)}</div>')


def kpi_tiles(items: list[Kpi], previous: Period) -> str:
    tiles = []
    for kpi in items:
        text, cls = fmt_change(kpi.current, kpi.previous)
        value = fmt_usd(kpi.current) if kpi.money else fmt_int(kpi.current)
        before = fmt_usd(kpi.previous) if kpi.money else fmt_int(kpi.previous)
        tiles.append(f'<div class="vb-kpi"><div class="label">{esc(kpi.label)}</div><div class="value">{value}</div>'
                     f'<div class="{cls}">{esc(text)}</div><div class="vb-sub">previous {previous.days} days: '
                     f'{before}</div></div>')
    return '<div style="display:flex;flex-wrap:wrap;gap:10px">' + "".join(tiles) + "</div>"


def gauge_html(spent: Decimal, limit: Decimal, forecast: SpendForecast | None = None) -> str:
    """Month-to-date spend as a bar against the monthly limit: green, amber from 75%, red over.

    With ``forecast``, a line below: the month's end at this pace, its 80% interval, and whether
    the interval reaches the limit.
    """
    share = float(spent / limit) if limit > 0 else 1.0
    color = "#10b981" if share < 0.75 else ("#f59e0b" if share < 1 else "#ef4444")
    width = max(0.0, min(share, 1.0)) * 100
    pace = ""
    if forecast is not None and forecast.history_days > 0:
        warn = " · may pass the limit" if limit > 0 and forecast.high_usd > limit else ""
        pace = (f'<div class="vb-sub">At this pace: {fmt_usd(forecast.point_usd)} by month end '
                f'({forecast.interval:.0%} interval {fmt_usd(forecast.low_usd)} – {fmt_usd(forecast.high_usd)}'
                f'){esc(warn)}</div>')
    return (f'<div class="vb-sub">Spend this month against the limit</div>'
            f'<div style="font-size:18px;font-weight:600;margin:2px 0">{fmt_usd(spent)} '
            f'<span class="vb-sub">of {fmt_usd(limit)} · {share * 100:.1f}%</span></div>'
            f'<div class="vb-gauge"><div style="width:{width:.1f}%;background:{color}"></div></div>{pace}')


def budget_gauge_html(budget: Budget) -> str:
    """The tenant's real budget: spend and reservations in flight against the limit, and the alerts crossed.

    Spend is green, amber from 75%, red from 100%; reserved spend (replies in
    flight, at the most they can cost) is the hatched segment after it.
    """
    spent_share, reserved_share = budget_shares(budget)
    color = "#10b981" if spent_share < 0.75 else ("#f59e0b" if spent_share < 1 else "#ef4444")
    hatch = "repeating-linear-gradient(45deg,#93c5fd 0 4px,#dbeafe 4px 8px)"
    crossed = {alert.threshold: alert for alert in budget.alerts}
    marks = []
    for threshold in budget.alert_at:
        label = f"{plain_decimal(threshold * 100)}%"
        alert = crossed.get(threshold)
        marks.append(badge(f"{label} crossed {alert.crossed_at:%b %d %H:%M} UTC", "warn") if alert is not None
                     else badge(f"{label} not reached", "muted"))
    used = float(budget.spent_usd / budget.monthly_usd) * 100 if budget.monthly_usd else 100.0
    return (f'<div class="vb-sub">Budget for {esc(budget.month)} (UTC)</div>'
            f'<div style="font-size:18px;font-weight:600;margin:2px 0">{fmt_usd(budget.spent_usd)} '
            f'<span class="vb-sub">of {fmt_usd(budget.monthly_usd)} · {used:.1f}%</span></div>'
            f'<div class="vb-gauge" style="display:flex">'
            f'<div style="width:{spent_share * 100:.1f}%;background:{color};border-radius:0"></div>'
            f'<div style="width:{reserved_share * 100:.1f}%;background:{hatch};border-radius:0"></div></div>'
            f'<div class="vb-sub">{fmt_usd(budget.reserved_usd)} reserved by replies in flight · '
            f'{fmt_usd(budget.remaining_usd)} left</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:4px;margin-top:4px">{"".join(marks)}</div>')


def monthly_chart_svg(client: AnyTenantClient) -> str:
    """The monthly cost chart as inline SVG (vl-convert renders it locally: no CDN, no JavaScript)."""
    from .. import charts  # Altair takes seconds to import; only the dashboard needs it

    return charts.svg_html(charts.monthly_cost_chart(client.usage_monthly()).properties(width=400, height=200))


class UsageDashboard(Panel):
    """Period presets, KPI tiles, breakdowns, a monthly chart, a spend gauge, recent events, CSV export."""

    def __init__(self, login: LoginPanel, *, reports_dir: str | Path = "reports",
                 monthly_limit_usd: float = 10.0) -> None:
        super().__init__("Usage", "Billed replies of your tenant; days are UTC, both ends included.")
        self.login = login
        self.reports_dir = Path(reports_dir)
        self.period: Period | None = None
        self.exported: Path | None = None
        self.preset = widgets.ToggleButtons(options=PRESETS, value="This month",
                                            style={"button_width": "104px"})
        self.start = widgets.DatePicker(description="From", layout=widgets.Layout(width="200px"),
                                        style={"description_width": "40px"})
        self.end = widgets.DatePicker(description="To", layout=widgets.Layout(width="200px"),
                                      style={"description_width": "40px"})
        self.limit = widgets.BoundedFloatText(value=monthly_limit_usd, min=0.0, max=1e9, step=1,
                                              description="Monthly limit $", style={"description_width": "110px"},
                                              layout=widgets.Layout(width="220px"))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="auto"))
        self.export_button = widgets.Button(description="Export CSV", icon="download",
                                            layout=widgets.Layout(width="auto"))
        self.period_label, self.tiles, self.gauge = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.providers, self.top_agents, self.events = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.chart = widgets.HTML(layout=widgets.Layout(flex="0 1 auto"))
        self.custom_row = widgets.HBox([self.start, self.end], layout=widgets.Layout(display="none"))
        self.preset.observe(lambda _: self.refresh(), "value")
        for control in (self.start, self.end, self.limit):
            control.observe(lambda _: self.refresh(), "value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.export_button.on_click(lambda _: self.export())
        side = gap(widgets.VBox([self.gauge, heading("By provider"), self.providers, heading("Top agents"),
                                 self.top_agents], layout=widgets.Layout(flex="1 1 300px")), 6)
        self.set_body(
            gap(widgets.HBox([self.preset, self.refresh_button, self.limit],
                             layout=widgets.Layout(flex_flow="row wrap", align_items="center")), 8),
            self.custom_row,
            self.period_label, self.tiles,
            gap(widgets.HBox([self.chart, side], layout=widgets.Layout(flex_flow="row wrap")), 18),
            heading("Recent events"), self.events,
            widgets.HBox([self.export_button]),
        )
        login.on_change(lambda _: self.refresh())
        self.refresh()

    @property
    def client(self) -> AnyTenantClient | None:
        return self.login.client

    def current_period(self) -> Period:
        today = self.login.gateway.now().date()
        return period_for(self.preset.value, today, (self.start.value, self.end.value))

    @guarded
    def refresh(self) -> None:
        """Recompute everything for the selected period."""
        self.custom_row.layout.display = None if self.preset.value == "Custom" else "none"
        if self.client is None:
            self.period_label.value = badge("log in to see usage", "muted")
            for part in (self.tiles, self.gauge, self.providers, self.top_agents, self.events, self.chart):
                part.value = ""
            return
        client, period = self.client, self.current_period()
        before = previous_period(period)
        current, previous = client.usage_rollup(period.start, period.end), client.usage_rollup(before.start, before.end)
        self.period = period
        self.period_label.value = (f'<b>{esc(period.label())}</b> <span class="vb-sub">({period.days} days, compared '
                                   f'with {esc(before.label())})</span>')
        self.tiles.value = kpi_tiles(kpis(current, previous), before)
        self._breakdowns(current)
        budget = client.budget()
        self.limit.layout.display = "none" if budget is not None else None  # the field is for tenants without one
        if budget is not None:
            self.gauge.value = budget_gauge_html(budget)
        else:
            today = self.login.gateway.now().date()
            month = client.usage_rollup(today.replace(day=1), today).totals["cost_usd"]
            self.gauge.value = gauge_html(Decimal(month), Decimal(str(self.limit.value)), client.usage_forecast())
        self.chart.value = monthly_chart_svg(client)
        recent = client.usage_events(period.start, period.end, limit=RECENT_EVENTS)
        names = {agent.id: agent.name for agent in client.list_agents()}
        self.events.value = table_html(
            ["time (UTC)", "provider", "channel", "agent", "tokens in", "tokens out", "cost"],
            [[r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.provider, r.channel, names.get(r.agent_id, r.agent_id),
              r.tokens_in, r.tokens_out, fmt_usd(r.cost_usd)] for r in recent.itertuples()], numeric={4, 5, 6})
        self.show("")

    def _breakdowns(self, current: Rollup) -> None:
        total = current.totals["cost_usd"] or Decimal(0)
        share = lambda cost: f"{Decimal(cost) / total * 100:.1f}%" if total else "–"  # noqa: E731
        self.providers.value = table_html(
            ["provider", "sessions", "tokens", "cost", "share"],
            [[r.provider, r.sessions, fmt_int(r.tokens_total), fmt_usd(r.cost_usd), share(r.cost_usd)]
             for r in current.by_provider.itertuples()], numeric={1, 2, 3, 4})
        self.top_agents.value = table_html(
            ["agent", "sessions", "tokens", "cost"],
            [[r.agent_name, r.sessions, fmt_int(r.tokens_total), fmt_usd(r.cost_usd)]
             for r in current.top_agents.itertuples()], numeric={1, 2, 3})

    @guarded
    def export(self) -> Path | None:
        """Write the period's usage events to ``reports_dir`` as CSV."""
        if self.client is None:
            self.show("Log in first.", "error")
            return None
        period = self.current_period()
        self.exported = export_events_csv(self.client, period, self.reports_dir)
        self.show(f"Exported the usage events of {period.label()} to {self.exported}", "ok")
        return self.exported
