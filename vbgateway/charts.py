"""Altair chart builders and small HTML pieces shared by the report notebooks and the widgets.

Every builder takes a DataFrame exactly as ``vbgateway.analytics`` returns it
and gives back an Altair chart; nothing here queries the database. Money
arrives as exact Decimals and is turned into floats only to be drawn.

Charts must work offline: ``to_svg`` / ``to_png`` render through vl-convert
(a local engine, no network), and ``svg_html`` wraps the SVG for inline
display. Never let Altair's default renderer run in a report: it loads
vega-embed from a CDN.
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

import pandas as pd


def _skip_iri_grammar() -> None:
    """Keep jsonschema from compiling an RFC 3987 grammar we never use.

    Altair imports jsonschema, which builds a full IRI grammar with lark at
    import time whenever the optional ``rfc3987-syntax`` package is present
    (Jupyter pulls it in): 2.5 s of every report's 15 s budget here. Altair
    validates no IRIs, so before jsonschema's first import we mark that
    optional module absent; once jsonschema is loaded we change nothing.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


_skip_iri_grammar()

import altair as alt  # noqa: E402  (after the guard above)

__all__ = [
    "BREAKER_COLORS",
    "PALETTE",
    "breaker_spans",
    "breaker_timeline_chart",
    "by_channel_chart",
    "daily_cost_chart",
    "error_codes_chart",
    "format_value",
    "kpi_tile",
    "kpi_tiles_html",
    "latency_chart",
    "monthly_cost_chart",
    "provider_breakdown_chart",
    "reliability_chart",
    "row_html",
    "style_table",
    "svg_html",
    "to_png",
    "to_svg",
    "usd",
]

PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b"]
BREAKER_COLORS = {"closed": "#10b981", "half_open": "#f59e0b", "open": "#ef4444"}
WIDTH = 520
HEIGHT = 220
CENT = Decimal("0.01")


def _num(value: Any) -> float:
    """A float for drawing; Decimals, NA and None included (None and NA become 0)."""
    if value is None or (not isinstance(value, (str, Decimal)) and pd.isna(value)):
        return 0.0
    return float(value)


def _floats(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    out = df.copy()
    for column in columns:
        out[column] = [_num(v) for v in out[column]]
    return out


def _colors(providers: Iterable[str]) -> alt.Scale:
    names = sorted(set(providers))
    return alt.Scale(domain=names, range=[PALETTE[i % len(PALETTE)] for i in range(len(names))])


def _style(chart: alt.Chart, title: str, height: int = HEIGHT) -> alt.Chart:
    styled: alt.Chart = (chart.properties(title=title, width=WIDTH, height=height)
            .configure_view(strokeWidth=0)
            .configure_axis(labelFont="Helvetica", titleFont="Helvetica", gridColor="#e5e7eb", labelColor="#374151")
            .configure_title(font="Helvetica", fontSize=14, anchor="start", color="#111827")
            .configure_legend(labelFont="Helvetica", titleFont="Helvetica", orient="top"))
    return styled


# ---------------------------------------------------------------------------- charts


def monthly_cost_chart(df: pd.DataFrame, title: str = "Monthly cost by provider (USD)") -> alt.Chart:
    """Stacked bars from ``analytics.monthly``: one column per provider, a ``month`` column."""
    providers = [c for c in df.columns if c != "month"]
    long = df.melt(id_vars="month", value_vars=providers, var_name="provider", value_name="cost_usd")
    long = _floats(long, ["cost_usd"])
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("month:O", title=None, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("sum(cost_usd):Q", title="USD", stack="zero"),
        color=alt.Color("provider:N", scale=_colors(providers), title="provider"),
        tooltip=["month", "provider", alt.Tooltip("cost_usd:Q", format="$,.4f")])
    return _style(chart, title)


def daily_cost_chart(df: pd.DataFrame, title: str = "Daily cost (USD)") -> alt.Chart:
    """Bars of cost per UTC day from ``analytics.daily`` (``day``, ``cost_usd``, ``replies``)."""
    data = _floats(df[["day", "cost_usd", "replies"]], ["cost_usd", "replies"])
    data["day"] = pd.to_datetime(data["day"]).dt.strftime("%Y-%m-%d")
    bar = max(2.0, WIDTH / max(1, len(data)) * 0.75)
    chart = alt.Chart(data).mark_bar(color=PALETTE[0], size=bar).encode(
        x=alt.X("day:T", title=None, axis=alt.Axis(format="%b %d", labelAngle=0)),
        y=alt.Y("cost_usd:Q", title="USD"),
        tooltip=["day", alt.Tooltip("cost_usd:Q", format="$,.4f"), alt.Tooltip("replies:Q", format=",")])
    return _style(chart, title)


def provider_breakdown_chart(df: pd.DataFrame, title: str = "Cost by provider (USD)") -> alt.Chart:
    """Horizontal bars from ``Rollup.by_provider`` (``provider``, ``cost_usd``, ``tokens_total``)."""
    data = _floats(df[["provider", "cost_usd", "tokens_total"]], ["cost_usd", "tokens_total"])
    chart = alt.Chart(data).mark_bar().encode(
        y=alt.Y("provider:N", title=None, sort="-x"),
        x=alt.X("cost_usd:Q", title="USD"),
        color=alt.Color("provider:N", scale=_colors(data.provider), legend=None),
        tooltip=["provider", alt.Tooltip("cost_usd:Q", format="$,.4f"), alt.Tooltip("tokens_total:Q", format=",")])
    return _style(chart, title, max(60, 40 * len(data)))


def by_channel_chart(df: pd.DataFrame, title: str = "Cost by channel (USD)") -> alt.Chart:
    """Horizontal bars from ``analytics.by_channel``."""
    data = _floats(df[["channel", "cost_usd", "replies"]], ["cost_usd", "replies"])
    chart = alt.Chart(data).mark_bar(color=PALETTE[2]).encode(
        y=alt.Y("channel:N", title=None), x=alt.X("cost_usd:Q", title="USD"),
        tooltip=["channel", alt.Tooltip("cost_usd:Q", format="$,.4f"), alt.Tooltip("replies:Q", format=",")])
    return _style(chart, title, max(60, 40 * len(data)))


def latency_chart(df: pd.DataFrame, title: str = "Latency per provider (ms, every try)") -> alt.Chart:
    """Grouped bars of p50 / p95 / p99 from ``analytics.latency``."""
    long = df.melt(id_vars="provider", value_vars=["p50_ms", "p95_ms", "p99_ms"], var_name="percentile",
                   value_name="ms")
    long["percentile"] = long["percentile"].str.replace("_ms", "", regex=False)
    long = _floats(long, ["ms"])
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("percentile:N", title=None, sort=["p50", "p95", "p99"]),
        xOffset=alt.XOffset("provider:N"),
        y=alt.Y("ms:Q", title="ms"),
        color=alt.Color("provider:N", scale=_colors(long.provider), title="provider"),
        tooltip=["provider", "percentile", alt.Tooltip("ms:Q", format=",.0f")])
    return _style(chart, title)


def reliability_chart(df: pd.DataFrame, title: str = "Tries per provider") -> alt.Chart:
    """Stacked ok / failed tries per provider from ``Reliability.by_provider``."""
    long = df.melt(id_vars="provider", value_vars=["ok", "failed"], var_name="status", value_name="tries")
    long = _floats(long, ["tries"])
    chart = alt.Chart(long).mark_bar().encode(
        y=alt.Y("provider:N", title=None), x=alt.X("tries:Q", title="tries", stack="zero"),
        color=alt.Color("status:N", scale=alt.Scale(domain=["ok", "failed"], range=["#10b981", "#ef4444"])),
        tooltip=["provider", "status", alt.Tooltip("tries:Q", format=",")])
    return _style(chart, title, max(60, 40 * long.provider.nunique()))


def error_codes_chart(df: pd.DataFrame, title: str = "Failed tries by error code") -> alt.Chart:
    """Stacked bars of error codes per provider from ``Reliability.error_codes``."""
    data = _floats(df[["provider", "error_code", "attempts"]], ["attempts"])
    chart = alt.Chart(data).mark_bar().encode(
        y=alt.Y("provider:N", title=None), x=alt.X("attempts:Q", title="failed tries", stack="zero"),
        color=alt.Color("error_code:N", scale=alt.Scale(range=PALETTE[3:] + PALETTE[:3]), title="error"),
        tooltip=["provider", "error_code", alt.Tooltip("attempts:Q", format=",")])
    return _style(chart, title, max(60, 40 * max(1, data.provider.nunique())))


def breaker_spans(df: pd.DataFrame, until: object = None) -> pd.DataFrame:
    """``analytics.breaker_transitions`` as spans: one row per state a breaker was in, from when to when.

    A state lasts until the breaker's next transition; the last one until
    ``until`` (default: the latest transition, so it shows as a point in time).
    Lanes name the provider, and the gateway process when there are several.
    """
    columns = ["lane", "provider", "state", "start", "end", "reason"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    data = df.sort_values(["gateway_id", "provider", "seq"], ignore_index=True)
    last = pd.Timestamp(until) if until is not None else data.created_at.max()
    ends = data.groupby(["gateway_id", "provider"]).created_at.shift(-1)
    several = data.gateway_id.nunique() > 1
    lanes = [f"{p} · {g[-6:]}" if several else p for p, g in zip(data.provider, data.gateway_id, strict=True)]
    return pd.DataFrame({"lane": lanes, "provider": data.provider, "state": data.to_state, "start": data.created_at,
                         "end": ends.fillna(max(last, data.created_at.max())), "reason": data.reason})[columns]


def breaker_timeline_chart(df: pd.DataFrame, until: object = None,
                           title: str = "Circuit breakers over time") -> alt.LayerChart:
    """One lane per provider, coloured by state (closed, half-open, open), from ``analytics.breaker_transitions``;
    a dot marks each transition."""
    spans = breaker_spans(df, until)
    color = alt.Color("state:N", title="state", scale=alt.Scale(domain=list(BREAKER_COLORS),
                                                                range=list(BREAKER_COLORS.values())))
    base = alt.Chart(spans).encode(y=alt.Y("lane:N", title=None), color=color)
    bars = base.mark_bar(height=14).encode(
        x=alt.X("start:T", title="time (UTC)"), x2="end:T",
        tooltip=["provider:N", "state:N", "reason:N", alt.Tooltip("start:T", format="%Y-%m-%d %H:%M:%S"),
                 alt.Tooltip("end:T", format="%Y-%m-%d %H:%M:%S")])
    dots = base.mark_point(filled=True, size=16, opacity=0.8).encode(
        x="start:T", tooltip=["provider:N", "state:N", "reason:N"])
    layered: Any = alt.layer(bars, dots)  # styled as every chart here (``_style`` is typed for plain charts)
    styled: Any = _style(layered, title, max(60, 34 * max(1, spans.lane.nunique())))
    return cast("alt.LayerChart", styled)


# ---------------------------------------------------------------------------- offline rendering


def to_svg(chart: alt.TopLevelMixin) -> str:
    """SVG text of a chart, rendered locally by vl-convert (no network, no JavaScript)."""
    import vl_convert as vlc

    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=_vl_version())


def to_png(chart: alt.TopLevelMixin, scale: float = 2.0) -> bytes:
    """PNG bytes of a chart, rendered locally by vl-convert."""
    import vl_convert as vlc

    return vlc.vegalite_to_png(chart.to_dict(), scale=scale, vl_version=_vl_version())


def _vl_version() -> str | None:
    """The Vega-Lite version Altair writes ("6.4" for v6.4.1) when this vl-convert has it, else its default."""
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return wanted if wanted in getattr(vlc, "get_vegalite_versions", list)() else None


def svg_html(chart: alt.TopLevelMixin) -> str:
    """An inline ``<div>`` holding the chart's SVG, for HTML reports that must work offline."""
    return f'<div class="vb-chart">{to_svg(chart)}</div>'


def row_html(*items: alt.TopLevelMixin) -> str:
    """Charts side by side (wrapping on narrow screens), each as inline SVG."""
    cells = "".join(svg_html(item) for item in items)
    return f'<div style="display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start">{cells}</div>'


# ---------------------------------------------------------------------------- figures and tiles


def usd(value: Any, places: int = 2) -> str:
    """``$1,234.56``: money rounded half-up to ``places`` (cents by default) from its exact Decimal."""
    amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.{places}f}"


def format_value(value: Any, unit: str) -> str:
    """A KPI value as people read it: usd, count, ms or ratio (shown as a percentage)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "usd":
        return usd(value, 4 if abs(Decimal(str(value))) < 1 and value != 0 else 2)
    if unit == "ratio":
        return f"{float(value) * 100:.1f}%"
    if unit == "ms":
        return f"{float(value):,.0f} ms"
    return f"{int(value):,}"


def kpi_tile(label: str, value: str, change_pct: float | None = None, good: str = "neutral",
             previous: str | None = None) -> str:
    """One KPI tile as HTML: the figure, and its change against the previous period, coloured by meaning."""
    if change_pct is None or math.isnan(change_pct):
        # no ratio to show: the previous period was zero (or absent)
        delta, color = ("no change" if previous is None or value == previous else "new"), "#6b7280"
    else:
        arrow = "▲" if change_pct > 0 else ("▼" if change_pct < 0 else "■")
        delta = f"{arrow} {abs(change_pct):.1f}%"
        improved = (change_pct > 0) if good == "up" else (change_pct < 0)
        color = "#6b7280" if good == "neutral" or change_pct == 0 else ("#059669" if improved else "#dc2626")
    before = f'<div class="vb-prev">previous: {html.escape(previous)}</div>' if previous is not None else ""
    return (f'<div class="vb-tile"><div class="vb-label">{html.escape(label)}</div>'
            f'<div class="vb-value">{html.escape(value)}</div>'
            f'<div class="vb-delta" style="color:{color}">{html.escape(delta)}</div>{before}</div>')


TILE_CSS = """<style>
.vb-tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px;margin:8px 0 16px}
.vb-tile{border:1px solid #e5e7eb;border-radius:10px;padding:12px 14px;background:#fff;
 font-family:Helvetica,Arial,sans-serif;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.vb-label{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.vb-value{font-size:24px;font-weight:600;color:#111827;margin:4px 0}
.vb-delta{font-size:13px;font-weight:600}.vb-prev{font-size:11px;color:#9ca3af;margin-top:2px}
</style>"""


def kpi_tiles_html(comparison: pd.DataFrame) -> str:
    """A grid of tiles from ``analytics.compare``: value, change and previous value per KPI."""
    tiles = [kpi_tile(r.label, format_value(r.current, r.unit), r.change_pct, r.good, format_value(r.previous, r.unit))
             for r in comparison.itertuples()]
    return TILE_CSS + '<div class="vb-tiles">' + "".join(tiles) + "</div>"


def _label(column: str) -> str:
    """``cost_usd`` -> ``Cost (USD)``: column names as people read them."""
    text = column.replace("_usd_per_1k", " (USD per 1k)").replace("_usd", " (USD)").replace("_ms", " (ms)")
    text = text.replace("_", " ")
    return text[:1].upper() + text[1:]


def style_table(df: pd.DataFrame, money: Iterable[str] = (), counts: Iterable[str] = (),
                ratios: Iterable[str] = (), ms: Iterable[str] = (), captions: Mapping[str, str] | None = None,
                caption: str | None = None, prices: Iterable[str] = ()) -> Any:
    """A pandas Styler with money to the cent, unit prices exact, thousands separators and a quiet house style."""
    formats: dict[str, Any] = {}
    for column in prices:
        formats[column] = lambda v: f"{Decimal(str(v)).normalize():f}" if v is not None and not pd.isna(v) else "–"
    for column in money:
        formats[column] = lambda v: usd(v) if v is not None and not pd.isna(v) else "–"
    for column in counts:
        formats[column] = lambda v: f"{int(v):,}" if v is not None and not pd.isna(v) else "–"
    for column in ratios:
        formats[column] = lambda v: f"{float(v) * 100:.1f}%" if v is not None and not pd.isna(v) else "–"
    for column in ms:
        formats[column] = lambda v: f"{float(v):,.0f}" if v is not None and not pd.isna(v) else "–"
    labels = {c: (captions or {}).get(c) or _label(c) for c in df.columns}
    shown = df.rename(columns=labels)
    formats = {labels[k]: v for k, v in formats.items() if k in df.columns}
    styler = shown.style.format(formats).hide(axis="index")
    styler = styler.set_table_styles([
        {"selector": "", "props": "border-collapse:collapse;font-family:Helvetica,Arial,sans-serif;font-size:13px"},
        {"selector": "th", "props": "background:#f3f4f6;color:#374151;text-align:left;padding:6px 10px;"
                                    "border-bottom:1px solid #d1d5db"},
        {"selector": "td", "props": "padding:5px 10px;border-bottom:1px solid #f0f0f0"},
        {"selector": "caption", "props": "caption-side:top;text-align:left;font-weight:600;padding:4px 0"},
    ])
    numeric = [c for c in shown.columns if c in formats]
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right"})
    return styler.set_caption(caption) if caption else styler
