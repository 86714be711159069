"""HealthPanel: the gateway's circuit breakers, one state per provider and a timeline of their transitions.

An operator's panel, not a tenant's: breakers span every tenant, so it takes
the gateway (or the database's local service, read through
``GET /v1/operator/breakers``) rather than a login. The states are those of
the process that serves the traffic; the timeline comes from the
``breaker_transitions`` table, drawn by ``charts.breaker_timeline_chart`` and
rendered to SVG locally (no CDN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import ipywidgets as widgets
import pandas as pd

from ..analytics import breaker_transitions
from ..analytics.breakers import TRANSITION_COLUMNS
from ..gateway import Gateway
from ..governance.breaker import BreakerState
from .base import Panel, guarded
from .login import LoginPanel
from .style import badge, esc, fmt_int
from .workbench import LocalService

__all__ = ["STATE_BADGES", "STATE_COLUMNS", "HealthData", "HealthPanel", "health_data", "policy_html", "states_html",
           "timeline_svg"]

STATE_BADGES = {"closed": ("closed", "ok"), "half_open": ("half-open", "warn"), "open": ("open", "err")}
STATE_COLUMNS = [name for name in BreakerState.__dataclass_fields__]
_NUM = ' class="num"'
_CAMEL = {"failureRate": "failure_rate", "callsInWindow": "calls_in_window", "failuresInWindow": "failures_in_window",
          "consecutiveFailures": "consecutive_failures", "cooldownEndsAt": "cooldown_ends_at",
          "gatewayId": "gateway_id", "fromState": "from_state", "toState": "to_state", "windowCalls": "window_calls",
          "windowFailures": "window_failures", "createdAt": "created_at", "failureThreshold": "failure_threshold",
          "windowSeconds": "window_s", "minimumCalls": "minimum_calls", "cooldownSeconds": "cooldown_s",
          "halfOpenProbes": "half_open_probes", "whenAllOpen": "when_all_open", "countRateLimits": "count_rate_limits"}


@dataclass(frozen=True)
class HealthData:
    """What the panel shows: the breaker policy (None: no breakers), the states, the latest transitions."""

    policy: dict[str, Any] | None
    states: pd.DataFrame  # STATE_COLUMNS, one row per provider
    transitions: pd.DataFrame  # analytics.breaker_transitions' columns, oldest first


def _snake(record: dict[str, Any]) -> dict[str, Any]:
    return {_CAMEL.get(key, key): value for key, value in record.items()}


def health_data(source: Gateway | LocalService, limit: int = 200) -> HealthData:
    """The breakers of an embedded gateway, or of the local service (over its operator route)."""
    if isinstance(source, Gateway):
        states = pd.DataFrame([asdict(v) for v in source.breaker_states().values()], columns=STATE_COLUMNS)
        policy = None if source.breaker is None else source.breaker.model_dump()
        return HealthData(policy, states, breaker_transitions(source, limit=limit))
    answer = source.breakers(limit)
    states = pd.DataFrame([_snake(s) for s in answer["breakers"]], columns=STATE_COLUMNS)
    transitions = pd.DataFrame([_snake(t) for t in answer["transitions"]], columns=list(TRANSITION_COLUMNS))
    for frame, columns in ((states, ("since", "cooldown_ends_at")), (transitions, ("created_at",))):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return HealthData(None if answer["policy"] is None else _snake(answer["policy"]), states, transitions)


def policy_html(policy: dict[str, Any] | None) -> str:
    if policy is None:
        return (badge("no circuit breakers", "muted") + ' <span class="vb-sub">every request calls its providers '
                "as retries and fallback decide (Gateway.open(..., breaker=BreakerPolicy(...)) adds them)</span>")
    triggers = []
    if policy["failure_threshold"] is not None:
        triggers.append(f"{policy['failure_threshold']} failures in a row")
    if policy["failure_rate"] is not None:
        triggers.append(f"{policy['failure_rate']:.0%} failed of at least {policy['minimum_calls']} calls in "
                        f"{policy['window_s']:g} s")
    return (badge("circuit breakers", "ok") + f' <span class="vb-sub">open after {esc(" or ".join(triggers))}; '
            f"closed again after {policy['cooldown_s']:g} s and {policy['half_open_probes']} successful trial "
            f"call(s); every provider open: {esc(policy['when_all_open'].replace('_', ' '))}</span>")


def _when(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def states_html(states: pd.DataFrame) -> str:
    """The states as a table, each state a coloured badge."""
    head = "".join(f"<th{_NUM if i >= 3 else ''}>{h}</th>" for i, h in enumerate(
        ["provider", "state", "since (UTC)", "calls in window", "failure rate", "failures in a row", "probe from"]))
    rows = []
    for s in states.itertuples():
        text, kind = STATE_BADGES.get(s.state, (s.state, "muted"))
        rate = "–" if s.failure_rate is None or pd.isna(s.failure_rate) else f"{s.failure_rate:.0%}"
        cells = [esc(s.provider), badge(text, kind), esc(_when(s.since)), fmt_int(s.calls_in_window), rate,
                 fmt_int(s.consecutive_failures), esc(_when(s.cooldown_ends_at))]
        rows.append("<tr>" + "".join(f"<td{_NUM if i >= 3 else ''}>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    body = "".join(rows) or '<tr><td colspan="7" class="vb-sub">no breakers in this gateway</td></tr>'
    return f'<table class="vb-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def timeline_svg(data: HealthData, until: Any) -> str:
    if data.transitions.empty:
        return '<div class="vb-sub">No breaker has changed state yet.</div>'
    from .. import charts  # Altair takes seconds to import: only when there is something to draw

    return charts.svg_html(charts.breaker_timeline_chart(data.transitions, until=until))


class HealthPanel(Panel):
    """Breaker policy, a state per provider, a timeline of transitions; Refresh reads them again."""

    def __init__(self, gateway: Gateway | LocalService | LoginPanel, *, transitions: int = 200) -> None:
        super().__init__("Gateway health", "Circuit breakers per provider: closed (called), open (skipped: the "
                                           "fallback answers), half-open (trial calls).")
        self.gateway = gateway.gateway if isinstance(gateway, LoginPanel) else gateway
        self.limit = transitions
        self.data: HealthData | None = None
        self.policy, self.states, self.timeline = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="auto"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.set_body(widgets.HBox([self.refresh_button]), self.policy, self.states, self.timeline)
        self.refresh()

    @guarded
    def refresh(self) -> HealthData:
        data = health_data(self.gateway, self.limit)
        self.data = data
        self.policy.value = policy_html(data.policy)
        self.states.value = states_html(data.states)
        self.timeline.value = timeline_svg(data, self.gateway.now())
        self.show("")
        return data
