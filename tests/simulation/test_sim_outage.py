"""During a vendorA outage the fallback vendor carries the traffic."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from vbgateway.charts import to_png
from vbgateway.simulation import simulate
from vbgateway.simulation.charts import outage_fallback_chart


@pytest.fixture(scope="module")
def outage(outage_scenario):
    return simulate(outage_scenario)


def test_fallback_carries_the_traffic_inside_the_outage_window(outage, outage_scenario):
    result = outage
    first, last = outage_scenario.incidents[0].window(outage_scenario.start)
    rows = result.rows
    inside = rows[(rows.sent_at >= pd.Timestamp(first + timedelta(minutes=1)))
                  & (rows.sent_at < pd.Timestamp(last - timedelta(minutes=1)))]
    before = rows[rows.sent_at < pd.Timestamp(first)]
    ok_inside = inside[inside.outcome == "ok"]
    assert len(inside) > 50
    assert (ok_inside.vendor_used == "vendorB").all()
    assert ok_inside.fallback_used.all()
    assert len(ok_inside) / len(inside) > 0.95
    assert (before[before.outcome == "ok"].vendor_used == "vendorA").mean() > 0.8
    timeline = result.timeline("10min")
    window = timeline[(timeline.minute >= pd.Timestamp(first))
                      & (timeline.minute + pd.Timedelta(minutes=11) <= pd.Timestamp(last))]
    assert len(window) >= 7
    assert window.replies_vendorA.sum() == 0 and window.replies_vendorB.sum() > 0


def test_vendor_load_counts_the_failed_tries_on_the_primary(outage):
    load = outage.vendor_load().set_index("vendor")
    assert load.loc["vendorA", "calls"] > load.loc["vendorA", "replies"]
    assert load.loc["vendorB", "calls_as_fallback"] > 0
    assert abs(load.reply_share.sum() - 1.0) < 1e-9


def test_the_outage_chart_renders_offline(outage):
    png = to_png(outage_fallback_chart(outage, freq="15min"), scale=1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
