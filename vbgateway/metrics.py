"""The gateway's metrics: counted cheaply where things happen, written as Prometheus text when scraped.

Every reply passes through here, so counting must cost next to nothing:
the send path and the HTTP layer only add to plain dicts keyed by label
values (a provider call by provider, error code and duration in ms, from
which outcomes and histogram buckets are derived when scraped); nothing is
formatted, locked or kept alive per reply. ``render()`` (``GET
/metrics``) turns them into prometheus-client metric families, through a
registry of this gateway's own: no module-level state, so two gateways in a
process (tests, simulation instances) never mix their figures.

What is counted (all names start ``vbgateway_``):

- ``http_requests_total{method,route,status}`` and
  ``http_request_duration_seconds{route}``: the route's template, never a
  raw path (ids would explode the label sets); requests no route matched are
  ``route="unmatched"``;
- ``provider_calls_total{provider,outcome}`` (``ok`` or the error code in
  lower case) and ``provider_call_duration_seconds{provider}``;
- ``provider_time_to_first_token_seconds{provider}`` (streaming replies);
- ``replies_total``, ``tokens_total{direction}`` and ``cost_usd_total``,
  each by ``tenant`` (its id) and ``provider``: what was billed;
- ``budget_refusals_total{tenant}`` and ``rate_limit_refusals_total{tenant}``:
  messages refused with BUDGET_EXCEEDED or RATE_LIMIT_EXCEEDED, counted where
  refusals are noted (``governance/refusals.py``, one dict update each);
- ``breaker_state{provider}`` (0 closed, 1 half open, 2 open) and
  ``breaker_transitions_total{provider,to}``: read from the gateway's
  breakers when scraped (``watch_breakers``), so a state costs nothing until
  someone looks. A gateway without a breaker policy has no breaker series;
- named counters and gauges other parts register (``counter``, ``gauge``).

``tracer`` is the gateway's OpenTelemetry span writer (``tracing.py``), or
None: the send path checks that attribute and does nothing more when off.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .governance.breaker import Breakers
    from .reliability import AttemptLog
    from .tracing import ReplyTracer

__all__ = [
    "BREAKER_STATES",
    "COMPUTED_FAMILIES",
    "CONTENT_TYPE",
    "LATENCY_BUCKETS_S",
    "REFUSAL_COUNTERS",
    "REQUEST_BUCKETS_S",
    "GatewayMetrics",
    "Histogram",
    "NamedCounter",
    "NamedGauge",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text format
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}  # the value of a breaker state gauge
COMPUTED_FAMILIES = frozenset({"vbgateway_breaker_state", "vbgateway_breaker_transitions",
                               "vbgateway_breaker_transitions_total"})
REFUSAL_COUNTERS = {"BUDGET_EXCEEDED": "vbgateway_budget_refusals_total",  # refusal code -> its counter
                    "RATE_LIMIT_EXCEEDED": "vbgateway_rate_limit_refusals_total"}
_ZERO = Decimal(0)


class Histogram:
    """Observations per label set into fixed buckets; cumulated only when scraped."""

    __slots__ = ("bounds", "documentation", "labelnames", "name", "series")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], bounds: Sequence[float]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.bounds = tuple(bounds)
        self.series: dict[tuple[str, ...], list[float]] = {}  # labels -> [count per bucket..., +Inf, sum]

    def observe(self, labels: tuple[str, ...], value: float, times: int = 1) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect.bisect_left(self.bounds, value)] += times
        series[-1] += value * times

    def family(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(repr(b) for b in self.bounds), "+Inf"]
        for labels, series in list(self.series.items()):
            running, buckets = 0.0, []
            for edge, count in zip(edges, series[:-1], strict=True):
                running += count
                buckets.append((edge, running))
            family.add_metric(list(labels), buckets, series[-1])
        return family


class NamedCounter:
    """A counter another part of the gateway registers and bumps: ``inc(*label_values, amount=1)``."""

    __slots__ = ("documentation", "labelnames", "name", "values")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def family(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        return family


class NamedGauge(NamedCounter):
    """A value that goes up and down (a breaker's state): ``set(*label_values, value=...)``."""

    __slots__ = ()

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value

    def family(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        return family


class GatewayMetrics:
    """One gateway's figures since it opened."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.request_seconds = Histogram("vbgateway_http_request_duration_seconds",
                                         "Time from a request's first byte to its answer's last.", ("route",),
                                         REQUEST_BUCKETS_S)
        self._attempts: dict[tuple[str, str | None, int], int] = {}  # (provider, error code, ms) -> calls
        self.call_seconds = Histogram("vbgateway_provider_call_duration_seconds",
                                      "Duration of one provider call (one attempt).", ("provider",), LATENCY_BUCKETS_S)
        self.first_token_seconds = Histogram("vbgateway_provider_time_to_first_token_seconds",
                                             "Time from a streaming call's start to its first text.", ("provider",),
                                             LATENCY_BUCKETS_S)
        self.replies: dict[tuple[str, str], list[Any]] = {}  # (tenant, provider) -> [replies, in, out, cost]
        self.named: dict[str, NamedCounter] = {}
        self.counter("vbgateway_budget_refusals_total", "Messages refused because a budget was spent.", ("tenant",))
        self.counter("vbgateway_rate_limit_refusals_total", "Messages refused by a rate limit.", ("tenant",))
        self.breakers: Breakers | None = None  # read when scraped (watch_breakers)
        self.tracer: ReplyTracer | None = None  # OpenTelemetry spans per reply (tracing.py); None: off

    def watch_breakers(self, breakers: Breakers | None) -> None:
        """Report these breakers' states and transitions when scraped (None: a gateway without breakers)."""
        self.breakers = breakers

    def refusal_counts(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Per refusal code, the dict its counter adds to: ``refusals.py`` bumps it with one update."""
        return {code: self.named[name].values for code, name in REFUSAL_COUNTERS.items()}

    # ------------------------------------------------------------------ counting (hot paths)
    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.request_seconds.observe((route,), seconds)

    def attempts(self, attempts: Iterable[AttemptLog]) -> None:
        """Provider calls, each counted by (provider, error code, duration in ms): outcomes and histogram
        buckets are derived from those counts when scraped, so a call costs one dict update here."""
        counts = self._attempts
        for attempt in attempts:
            key = (attempt.provider, attempt.error_code, attempt.latency_ms)
            counts[key] = counts.get(key, 0) + 1

    def reply(self, tenant_id: str, attempts: Iterable[AttemptLog], provider: str, tokens_in: int, tokens_out: int,
              cost_usd: Decimal) -> None:
        """A billed reply: its provider calls, tokens and cost.

        Counted at once rather than noted for later: a batch kept for adding up would keep its
        objects alive past the young generation, and the cycle collector's extra work cost more
        than the adding.
        """
        counts = self._attempts
        for attempt in attempts:
            key = (attempt.provider, attempt.error_code, attempt.latency_ms)
            counts[key] = counts.get(key, 0) + 1
        totals = self.replies.get((tenant_id, provider))
        if totals is None:
            totals = self.replies[(tenant_id, provider)] = [0, 0, 0, _ZERO]
        totals[0] += 1
        totals[1] += tokens_in
        totals[2] += tokens_out
        totals[3] += cost_usd

    def first_token(self, provider: str, seconds: float) -> None:
        self.first_token_seconds.observe((provider,), seconds)

    # ------------------------------------------------------------------ named figures (other parts)
    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> NamedCounter:
        """The counter ``name``, registered on first use (the same object after)."""
        _not_computed(name)
        found = self.named.get(name)
        if found is None:
            found = self.named[name] = NamedCounter(name, documentation, labelnames)
        return found

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> NamedGauge:
        _not_computed(name)
        found = self.named.get(name)
        if found is None:
            found = self.named[name] = NamedGauge(name, documentation, labelnames)
        if not isinstance(found, NamedGauge):
            raise TypeError(f"{name} is a counter, not a gauge")
        return found

    def count(self, name: str, *labels: str, amount: float = 1.0) -> None:
        """Bump a registered counter: ``metrics.count("vbgateway_budget_refusals_total", tenant_id)``."""
        self.named[name].inc(*labels, amount=amount)

    # ------------------------------------------------------------------ scraping
    def families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        requests = CounterMetricFamily("vbgateway_http_requests", "HTTP requests answered, by route and status.",
                                       labels=("method", "route", "status"))
        for request, value in list(self.requests.items()):
            requests.add_metric(list(request), value)
        yield requests
        yield self.request_seconds.family()
        calls = CounterMetricFamily("vbgateway_provider_calls", "Provider calls (attempts), by outcome.",
                                    labels=("provider", "outcome"))
        outcomes: Counter[tuple[str, str]] = Counter()
        durations = Histogram(self.call_seconds.name, self.call_seconds.documentation, ("provider",),
                              LATENCY_BUCKETS_S)
        for (provider, error_code, ms), n in list(self._attempts.items()):
            outcomes[(provider, "ok" if error_code is None else error_code.lower())] += n
            durations.observe((provider,), ms / 1000.0, n)
        for key, value in outcomes.items():
            calls.add_metric(list(key), value)
        yield calls
        yield durations.family()
        yield self.first_token_seconds.family()
        replies = CounterMetricFamily("vbgateway_replies", "Replies billed.", labels=("tenant", "provider"))
        tokens = CounterMetricFamily("vbgateway_tokens", "Tokens billed.", labels=("tenant", "provider", "direction"))
        cost = CounterMetricFamily("vbgateway_cost_usd", "USD billed.", labels=("tenant", "provider"))
        for (tenant, provider), (n, tokens_in, tokens_out, usd) in list(self.replies.items()):
            replies.add_metric([tenant, provider], n)
            tokens.add_metric([tenant, provider, "input"], tokens_in)
            tokens.add_metric([tenant, provider, "output"], tokens_out)
            cost.add_metric([tenant, provider], float(usd))
        yield from (replies, tokens, cost)
        for named in list(self.named.values()):
            yield named.family()
        yield from self._breaker_families()

    def _breaker_families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        states = GaugeMetricFamily("vbgateway_breaker_state",
                                   "A provider's circuit breaker now: 0 closed, 1 half open, 2 open.",
                                   labels=("provider",))
        transitions = CounterMetricFamily("vbgateway_breaker_transitions",
                                          "Circuit breaker state changes, by provider and the state entered.",
                                          labels=("provider", "to"))
        breakers = self.breakers
        if breakers is not None:
            for name, state in breakers.current_states().items():  # an elapsed cooldown shows as half open
                states.add_metric([name], BREAKER_STATES[state])
            for (name, to), n in list(breakers.transition_counts.items()):
                transitions.add_metric([name, to], n)
        yield states
        yield transitions

    def render(self) -> bytes:
        """Every figure in the Prometheus text format."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return bytes(generate_latest(registry))


def _not_computed(name: str) -> None:
    if name in COMPUTED_FAMILIES:
        raise ValueError(f"{name} is computed when scraped (from the gateway's breakers); it cannot be set")


class _Collector:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics.families()
