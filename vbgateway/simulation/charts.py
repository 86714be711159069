"""Altair charts of simulation results (render offline with ``vbgateway.charts.to_png``).

The outage chart is the one the platform team asks for first: replies per
vendor over time with the incident windows shaded, so a fallback carrying
the traffic is visible at a glance.
"""

from __future__ import annotations

from typing import cast

import altair as alt
import pandas as pd

from ..charts import PALETTE
from .compare import Comparison
from .results import SimulationResult

__all__ = ["incident_frame", "outage_fallback_chart", "policy_comparison_chart", "policy_timeline_chart"]

_VENDOR_COLORS = alt.Scale(domain=["vendorA", "vendorB", "failed"], range=[PALETTE[0], PALETTE[1], PALETTE[3]])


def incident_frame(result: SimulationResult) -> pd.DataFrame:
    """One row per incident: vendor, kind, start, end (for shading)."""
    sc = result.scenario
    rows = [{"vendor": i.vendor, "kind": i.kind, "label": i.label or f"{i.vendor} {i.kind.replace('_', ' ')}",
             "start": pd.Timestamp(i.window(sc.start)[0]), "end": pd.Timestamp(i.window(sc.start)[1])}
            for i in sc.incidents]
    return pd.DataFrame(rows, columns=["vendor", "kind", "label", "start", "end"])


def _long_timeline(result: SimulationResult, freq: str) -> pd.DataFrame:
    timeline = result.timeline(freq)
    series = [c for c in timeline.columns if c.startswith("replies_")] + ["failed"]
    long = timeline[["minute", *series]].melt(id_vars=["minute"], var_name="served_by", value_name="count")
    long["served_by"] = long.served_by.str.removeprefix("replies_")
    return long


def outage_fallback_chart(result: SimulationResult, freq: str = "10min", start: object = None, end: object = None,
                          title: str | None = None) -> alt.LayerChart:
    """Stacked replies per vendor (and failures) per ``freq``, incident windows shaded."""
    long = _long_timeline(result, freq)
    if start is not None:
        long = long[long.minute >= pd.Timestamp(start)]
    if end is not None:
        long = long[long.minute < pd.Timestamp(end)]
    area = alt.Chart(long).mark_area(interpolate="step-after").encode(
        x=alt.X("minute:T", title="simulated time (UTC)"),
        y=alt.Y("count:Q", stack="zero", title=f"messages per {freq}"),
        color=alt.Color("served_by:N", scale=_VENDOR_COLORS, title="answered by"),
        tooltip=["minute:T", "served_by:N", "count:Q"])
    layers: list[alt.Chart] = []
    incidents = incident_frame(result)
    if not incidents.empty:
        layers.append(alt.Chart(incidents).mark_rect(opacity=0.12, color="#ef4444").encode(
            x="start:T", x2="end:T", tooltip=["label:N", "start:T", "end:T"]))
        layers.append(alt.Chart(incidents).mark_text(align="left", dx=4, dy=8, baseline="top", color="#b91c1c").encode(
            x="start:T", y=alt.value(0), text="label:N"))
    chart = alt.layer(*layers, area) if layers else alt.layer(area)
    return cast("alt.LayerChart", chart.properties(
        width=640, height=260, title=title or f"{result.scenario.name}: who answered ({result.summary()['policy']})"))


def policy_comparison_chart(comparison: Comparison) -> alt.HConcatChart:
    """Success rate, p95 latency and cost per 1,000 replies, one bar per policy."""
    table = comparison.table.drop(columns=["cost_usd", "cost_per_1k_replies_usd"])
    table["cost_per_1k"] = comparison.table.cost_per_1k_replies_usd.astype(float)
    table["success_pct"] = table.success_rate.astype(float) * 100
    base = alt.Chart(table).encode(y=alt.Y("policy:N", sort=None, title=None),
                                   color=alt.Color("fallback:N", scale=alt.Scale(range=[PALETTE[3], PALETTE[2]])))
    def bars(field: str, title: str) -> alt.Chart:
        return cast("alt.Chart", base.mark_bar().encode(
            x=alt.X(f"{field}:Q", title=title), tooltip=["policy:N", alt.Tooltip(f"{field}:Q", format=".3f")]
        ).properties(width=180, height=24 * max(1, len(table))))
    return alt.hconcat(bars("success_pct", "success %"), bars("latency_p95_ms", "p95 latency (ms)"),
                       bars("cost_per_1k", "USD per 1,000 replies"))


def policy_timeline_chart(comparison: Comparison, freq: str = "10min") -> alt.Chart:
    """Failed messages over time, one line per policy."""
    frame = comparison.timelines(freq)
    return cast("alt.Chart", alt.Chart(frame).mark_line(interpolate="step-after").encode(
        x=alt.X("minute:T", title="simulated time (UTC)"), y=alt.Y("failed:Q", title=f"failed per {freq}"),
        color=alt.Color("policy:N")).properties(width=640, height=220, title="Failed messages per policy"))
