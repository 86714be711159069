"""Monthly budgets that cannot be overrun: reserve before any provider call, settle with the reply's commit.

Why reservations: a budget checked after the call lets a burst of concurrent
requests overspend by up to the concurrency, since each saw the spend from
before the others. Here every request reserves, before any provider is
called, the most it can cost: its input tokens (counted as the vendors count
them) plus its agent's ``max_output_tokens``, at the price of the dearest
provider of its chain. A vendor never answers with more output tokens than
that and a retry or fallback bills one reply at most, so the real cost never
exceeds the reservation. A request is refused (BUDGET_EXCEEDED) when

    committed spend this month + open reservations + its reservation > limit

so ``committed spend <= limit`` holds at every instant, whatever the
interleaving: the check and the reservation are one synchronous step on
the event loop, and nothing awaits in between. A refusal is noted in
``request_refusals`` as a rate limit's is (``refusals.py``: rows in memory,
journaled in batches), so refusing touches neither a provider nor DuckDB.

The ledger is in memory, on the send path only dict look-ups and integer
sums: money is counted in units of 10^-10 USD (the store's exact
``DECIMAL(24, 10)``), and a price per 1,000 tokens with at most 7 places is
a whole number of units per token, so a reservation is one integer product
(a tenant without a budget: one look-up before the call, and the month's
spend noted with its reply). It is built when the gateway opens
from DuckDB: the month's committed spend per tenant (after the journal's
leftovers are applied, so a ``kill -9`` loses nothing committed), the
budgets and the alerts recorded. Reservations live only in memory: after
a crash they are gone and the committed spend is the truth.

Settling: right before a reply's rows are committed (``charge``), its
reservation is replaced by its real cost, in one step; a threshold that
cost crosses becomes a ``BudgetAlertRow`` in that same journal record, so
the ledger and its alerts cannot disagree. If the commit then fails, the
cost is taken back (``Hold.abandon``); if the caller is cancelled while its
queued record is being written, the cost stays (the record commits all
the same). Any other failure before the commit (every provider failed, a
cancellation, a bug) gives the reservation back.

Months are UTC calendar months on the gateway's clock (a ``VirtualClock`` in
a simulation): at the first request or reply of a new month the ledger
moves on, the spend starting from what DuckDB held for that month at open
(usually nothing). Reservations carry over: their replies are charged to
the month they are committed in.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import BudgetExceededError
from ..providers.base import ProviderRequest, estimate_tokens
from ..store.tables import BudgetAlertRow, BudgetRow
from .budget_values import MONEY_PLACES, Budget, BudgetAlert, month_bounds, month_label, plain_decimal

if TYPE_CHECKING:
    from ..clock import Clock
    from ..pricing import PriceTable, Rates
    from .refusals import RefusalLog

__all__ = ["BudgetLedger", "Hold", "from_units", "to_units"]

_log = logging.getLogger("vbgateway.budgets")
_RESERVED, _CHARGED, _DONE = 0, 1, 2
_MONEY_PLACES = MONEY_PLACES
_TOKEN_PLACES = MONEY_PLACES - 3  # a price is per 1,000 tokens: units per token = price x 10^7

AlertEntry = tuple[Decimal, datetime, int]  # (threshold, crossed_at, spent in units)


def to_units(amount: Decimal) -> int:
    """Exact USD (at most 10 places, as the store keeps money) as an integer count of 10^-10 USD."""
    units = amount.scaleb(MONEY_PLACES)
    whole = int(units)
    if whole != units:
        raise ValueError(f"{amount} USD has more than {MONEY_PLACES} decimal places")
    return whole


def from_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-MONEY_PLACES)


_UNITS_PER_USD = float(10**MONEY_PLACES)
_EXACT_FLOAT = 2**53


def _usd_float(units: int) -> float:
    """``float(from_units(units))`` without the Decimal: both operands are exact floats, so the division
    rounds once, exactly as the Decimal's conversion does."""
    if -_EXACT_FLOAT <= units <= _EXACT_FLOAT:
        return units / _UNITS_PER_USD
    return float(from_units(units))


@dataclass(frozen=True, slots=True)
class _Limit:
    """A tenant's limit (in units), its thresholds, and the spend at which the next unrecorded one is crossed."""

    monthly_usd: Decimal
    units: int
    alert_at: tuple[Decimal, ...]
    next_alert: int | None  # units; None: every threshold of this month is recorded


def _limit(monthly_usd: Decimal, alert_at: tuple[Decimal, ...], alerts: Sequence[AlertEntry]) -> _Limit:
    units = to_units(monthly_usd)
    crossed = {entry[0] for entry in alerts}
    due = [math.ceil(t * units) for t in alert_at if t not in crossed]  # spend >= t x limit, in whole units
    return _Limit(monthly_usd, units, alert_at, min(due) if due else None)


class Hold:
    """One request's reservation (units), from admission to its reply's commit (or its failure)."""

    __slots__ = ("_ledger", "amount", "cost", "crossed", "month", "state", "tenant_id")

    def __init__(self, ledger: BudgetLedger, tenant_id: str, amount: int) -> None:
        self._ledger = ledger
        self.tenant_id = tenant_id
        self.amount = amount
        self.state = _RESERVED
        self.cost = 0
        self.month = ""  # the month the reply was charged to
        self.crossed: list[Decimal] = []

    def abandon(self, exc: BaseException) -> None:
        """The send ended with ``exc``: give the reservation back, or take back a cost whose commit failed."""
        self._ledger._abandon(self, exc)


class BudgetLedger:
    """Per tenant: this month's committed spend, open reservations, limits and recorded alerts."""

    def __init__(self, clock: Clock, prices: PriceTable, refusals: RefusalLog | None = None) -> None:
        self._clock = clock
        self._prices = prices
        self._refusals = refusals  # BUDGET_EXCEEDED is noted there, as rate-limit refusals are (refusals.py)
        self._unit_prices: dict[str, tuple[Rates, int]] = {}  # the rates, and their units of 10^-10 USD per token
        self._start, self._end = month_bounds(clock.now())
        self.month = month_label(self._start)
        self._limits: dict[str, _Limit] = {}
        self._spent: dict[str, int] = {}  # every tenant's, this month (a budget set later starts from it)
        self._reserved: dict[str, int] = {}
        self._alerts: dict[str, list[AlertEntry]] = {}  # this month's
        self._later_spent: dict[str, dict[str, int]] = {}  # month -> tenant -> spend DuckDB held at open
        self._later_alerts: dict[str, dict[str, list[AlertEntry]]] = {}
        self.loaded = False

    # ------------------------------------------------------------------ opening
    def load(self, budgets: Iterable[BudgetRow], spend: Iterable[tuple[str, str, Decimal]],
             alerts: Iterable[BudgetAlertRow]) -> None:
        """What DuckDB holds: the budgets, (tenant, month, spend) and alerts of this month and any later one."""
        for tenant_id, month, amount in spend:
            target = self._spent if month == self.month else self._later_spent.setdefault(month, {})
            target[tenant_id] = target.get(tenant_id, 0) + to_units(Decimal(amount))
        for row in alerts:
            into = self._alerts if row.month == self.month else self._later_alerts.setdefault(row.month, {})
            into.setdefault(row.tenant_id, []).append((plain_decimal(row.threshold), row.crossed_at.astimezone(UTC),
                                                       to_units(Decimal(row.spent_usd))))
        for entries in (self._alerts, *self._later_alerts.values()):
            for listed in entries.values():
                listed.sort(key=lambda entry: entry[0])
        for budget in budgets:
            thresholds = tuple(plain_decimal(t) for t in budget.alert_at)
            self._limits[budget.tenant_id] = _limit(plain_decimal(budget.monthly_usd), thresholds,
                                                    self._alerts.get(budget.tenant_id, ()))
        self.loaded = True

    @property
    def month_start(self) -> datetime:
        return self._start

    def _roll(self, at: datetime) -> None:
        """Move on to the month holding ``at`` (never back)."""
        if at < self._end:
            return
        self._start, self._end = month_bounds(at)
        self.month = month_label(self._start)
        self._spent = self._later_spent.pop(self.month, {})
        self._alerts = self._later_alerts.pop(self.month, {})
        for stale in [m for m in (*self._later_spent, *self._later_alerts) if m < self.month]:
            self._later_spent.pop(stale, None)
            self._later_alerts.pop(stale, None)
        self._limits = {tenant_id: _limit(limit.monthly_usd, limit.alert_at, self._alerts.get(tenant_id, ()))
                        for tenant_id, limit in self._limits.items()}
        _log.info("budgets: month %s begins", self.month)

    def _unit_price(self, provider: str) -> int:
        """A provider's newest price in units per token (exact: at most 7 places per 1,000 tokens).

        Cached with the ``Rates`` it came from: a version added at run time
        (``PriceTable.add_versions``) is a new object, so the next reservation
        converts it instead of holding the old price.
        """
        rates = self._prices.rates_at(provider)
        cached = self._unit_prices.get(provider)
        if cached is not None and cached[0] is rates:
            return cached[1]
        price = int(rates.usd_per_1k_tokens.scaleb(_TOKEN_PLACES))
        self._unit_prices[provider] = (rates, price)
        return price

    # ------------------------------------------------------------------ the send path
    def reserve(self, tenant_id: str, chain: Sequence[tuple[str, Any]], request: ProviderRequest,
                key_id: str | None = None, session_id: str | None = None) -> Hold | None:
        """Reserve the most ``request`` can cost, or refuse it (BUDGET_EXCEEDED); None: the tenant has no budget.

        ``chain``: the agent's (provider name, provider) pairs, primary first.
        A refusal is noted in ``request_refusals`` with ``key_id`` and ``session_id``.
        """
        limit = self._limits.get(tenant_id)
        if limit is None:
            return None
        now = self._clock.now()
        if now >= self._end:
            self._roll(now)
        per_token = 0
        for name, _ in chain:
            price = self._unit_price(name)
            if price > per_token:
                per_token = price
        amount = (estimate_tokens(request.input_chars()) + (request.max_output_tokens or 0)) * per_token
        spent = self._spent.get(tenant_id, 0)
        reserved = self._reserved.get(tenant_id, 0)
        if spent + reserved + amount > limit.units:
            raise self._refused(tenant_id, limit, spent, reserved, amount, request.request_id, key_id, session_id)
        self._reserved[tenant_id] = reserved + amount
        return Hold(self, tenant_id, amount)

    def _refused(self, tenant_id: str, limit: _Limit, spent: int, reserved: int, amount: int, request_id: str,
                 key_id: str | None, session_id: str | None) -> BudgetExceededError:
        """The refusal, noted; raised by the caller, whose frame then holds no reference to it.

        A frame holding the exception it raises is a reference cycle (exception, traceback,
        frame): under a burst of refusals those cycles, each with the request's objects, are
        what the cycle collector spends its time on.
        """
        error = BudgetExceededError(
            f"this request could cost up to {from_units(amount)} USD, more than what is left of the tenant's "
            f"budget for {self.month}", details={
                "limit": float(limit.monthly_usd), "spent": _usd_float(spent), "reserved": _usd_float(reserved),
                "requested": _usd_float(amount), "month": self.month, "requestId": request_id})
        if self._refusals is not None:
            self._refusals.record(tenant_id, key_id, session_id, request_id, error)
        return error

    def charge(self, tenant_id: str, hold: Hold | None, cost: Decimal, at: datetime, rows: list[Any]) -> None:
        """A reply of ``cost`` made at ``at`` is about to be committed with ``rows``: it replaces its reservation.

        Alerts it crosses are appended to ``rows``, to commit in the same record.
        """
        units = int(cost.scaleb(_MONEY_PLACES))  # a reply's cost is quantized to 10 places (pricing.py): exact
        if hold is not None:
            self._reserved[tenant_id] -= hold.amount
            hold.state, hold.cost = _CHARGED, units
        if at >= self._end:
            self._roll(at)
        elif at < self._start:  # made before the month turned: last month's, nothing to count now
            return
        spent = self._spent.get(tenant_id, 0) + units
        self._spent[tenant_id] = spent
        if hold is not None:
            hold.month = self.month
        limit = self._limits.get(tenant_id)
        if limit is None or limit.next_alert is None or spent < limit.next_alert:
            return
        crossed = self._record_crossings(tenant_id, limit, spent, at, rows)
        if hold is not None:
            hold.crossed = crossed

    def _record_crossings(self, tenant_id: str, limit: _Limit, spent: int, at: datetime,
                          rows: list[Any]) -> list[Decimal]:
        entries = self._alerts.setdefault(tenant_id, [])
        done = {entry[0] for entry in entries}
        crossed = [t for t in limit.alert_at if t not in done and spent >= t * limit.units]
        spent_usd = from_units(spent)
        for threshold in crossed:
            entries.append((threshold, at, spent))
            rows.append(BudgetAlertRow(tenant_id, self.month, threshold, at, spent_usd, limit.monthly_usd))
            _log.warning("budget alert: tenant %s has spent %s USD of its %s USD budget for %s (%s%% threshold crossed)",
                         tenant_id, spent_usd, limit.monthly_usd, self.month, plain_decimal(threshold * 100))
        entries.sort(key=lambda entry: entry[0])
        self._limits[tenant_id] = _limit(limit.monthly_usd, limit.alert_at, entries)
        return crossed

    def _abandon(self, hold: Hold, exc: BaseException) -> None:
        if hold.state == _RESERVED:
            self._reserved[hold.tenant_id] -= hold.amount
        elif hold.state == _CHARGED and not isinstance(exc, asyncio.CancelledError) and hold.month == self.month:
            # the commit failed: the reply is not billed, and the alerts it recorded were not committed
            tenant_id = hold.tenant_id
            self._spent[tenant_id] = self._spent.get(tenant_id, 0) - hold.cost
            if hold.crossed:
                kept = [e for e in self._alerts.get(tenant_id, []) if e[0] not in hold.crossed]
                self._alerts[tenant_id] = kept
                limit = self._limits.get(tenant_id)
                if limit is not None:
                    self._limits[tenant_id] = _limit(limit.monthly_usd, limit.alert_at, kept)
        hold.state = _DONE

    # ------------------------------------------------------------------ control plane
    def catch_up(self) -> None:
        """Move on to the clock's month, if it has begun (before a status or a change)."""
        now = self._clock.now()
        if now >= self._end:
            self._roll(now)

    def due_alerts(self, tenant_id: str, monthly_usd: Decimal, alert_at: tuple[Decimal, ...],
                   at: datetime) -> list[BudgetAlertRow]:
        """The alerts a new limit would record at once: thresholds this month's spend has already crossed."""
        self.catch_up()
        spent = from_units(self._spent.get(tenant_id, 0))
        done = {entry[0] for entry in self._alerts.get(tenant_id, ())}
        return [BudgetAlertRow(tenant_id, self.month, t, at, spent, monthly_usd)
                for t in alert_at if t not in done and spent >= t * monthly_usd]

    def set_limit(self, tenant_id: str, monthly_usd: Decimal, alert_at: tuple[Decimal, ...],
                  recorded: Sequence[BudgetAlertRow]) -> None:
        """Apply a limit the store has saved, with the alerts ``due_alerts`` found (and the store recorded)."""
        entries = self._alerts.setdefault(tenant_id, [])
        for row in recorded:
            entries.append((row.threshold, row.crossed_at, to_units(row.spent_usd)))
            _log.warning("budget alert: tenant %s has spent %s USD of its new %s USD budget for %s "
                         "(%s%% threshold crossed)", tenant_id, row.spent_usd, monthly_usd, row.month,
                         plain_decimal(row.threshold * 100))
        entries.sort(key=lambda entry: entry[0])
        self._limits[tenant_id] = _limit(monthly_usd, alert_at, entries)

    def remove(self, tenant_id: str) -> None:
        """No limit from now on (its reservations in flight settle as usual)."""
        self._limits.pop(tenant_id, None)

    def has_budget(self, tenant_id: str) -> bool:
        return tenant_id in self._limits

    def limits(self) -> dict[str, tuple[Decimal, tuple[Decimal, ...]]]:
        """Every tenant's (monthly_usd, alert_at)."""
        return {tenant_id: (limit.monthly_usd, limit.alert_at) for tenant_id, limit in self._limits.items()}

    def spent(self, tenant_id: str) -> Decimal:
        """Committed spend of ``tenant_id`` this month (budget or not)."""
        self.catch_up()
        return from_units(self._spent.get(tenant_id, 0))

    def status(self, tenant_id: str) -> Budget | None:
        """The tenant's budget as it stands now; None without one."""
        self.catch_up()
        limit = self._limits.get(tenant_id)
        if limit is None:
            return None
        spent = self._spent.get(tenant_id, 0)
        reserved = self._reserved.get(tenant_id, 0)
        alerts = [BudgetAlert(threshold=t, crossed_at=at, spent_usd=from_units(amount))
                  for t, at, amount in self._alerts.get(tenant_id, ())]
        return Budget(month=self.month, monthly_usd=limit.monthly_usd, spent_usd=from_units(spent),
                      reserved_usd=from_units(reserved), remaining_usd=from_units(max(0, limit.units - spent - reserved)),
                      alert_at=list(limit.alert_at), alerts=alerts)
