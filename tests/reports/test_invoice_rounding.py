"""Invoices add up: the printed lines, each rounded to the cent, sum to the printed total.

Checked on random amounts (the rounding rule alone), on random lines as the
page prints them, and on random billed traffic in a real database. A month
still in progress is printed as month to date, never as "Total due".
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invoice_support import printed_lines, printed_total

from vbgateway import Gateway, VirtualClock
from vbgateway.reports import (
    ROUNDING_RULE,
    ReportData,
    header_html,
    invoice_data,
    invoice_footer_html,
    invoice_lines_table,
    invoice_total_html,
    month_is_over,
    round_to_cents,
    save_tables,
)
from vbgateway.synthetic import SyntheticSpec, generate

EXACT = st.decimals(min_value=0, max_value=Decimal("100000"), places=10, allow_nan=False, allow_infinity=False)
HALF_CENT = Decimal("0.005")
EXAMPLE = itertools.count()


def page_of(data: ReportData) -> str:
    return header_html(data) + invoice_lines_table(data).to_html() + invoice_total_html(data) + invoice_footer_html(data)


def lines_frame(amounts: list[Decimal]) -> pd.DataFrame:
    """Invoice lines shaped as ``analytics.invoice_lines`` returns them."""
    n = len(amounts)
    return pd.DataFrame({
        "agent_id": [f"agt_{i}" for i in range(n)], "agent_name": [f"Agent {i}" for i in range(n)],
        "provider": ["vendorA"] * n, "usd_per_1m_input": pd.Series([Decimal("2.0000")] * n, dtype=object),
        "usd_per_1m_output": pd.Series([Decimal("2.0000")] * n, dtype=object),
        "replies": [1] * n, "tokens_in": [10] * n, "tokens_out": [20] * n, "tokens_total": [30] * n,
        "amount_usd": pd.Series(amounts, dtype=pd.ArrowDtype(pa.decimal128(38, 10))),
    })


def statement(amounts: list[Decimal], final: bool) -> ReportData:
    rounded, total_due = round_to_cents(amounts)
    lines = lines_frame(amounts)
    lines["amount_rounded_usd"] = pd.Series(rounded, dtype=pd.ArrowDtype(pa.decimal128(38, 2)))
    exact = sum(amounts, Decimal(0))
    meta = {"invoice_number": "VB-202506-TEST", "event_count": len(amounts), "total_usd": exact,
            "total_due_usd": total_due, "rounding_usd": total_due - exact, "final": final,
            "as_of": "2025-06-15 12:00:00 UTC", "events_sha256": "0" * 64, "price_table_sha": "p",
            "prices_match": True, "version": "0.1.0", "generated_at": "now", "month": "2025-06"}
    return ReportData("invoice", "tnt_test", "Test Co", date(2025, 6, 1), date(2025, 6, 30), {"lines": lines}, meta)


@settings(max_examples=300)
@given(st.lists(EXACT, max_size=40))
def test_each_line_is_rounded_to_the_cent_and_the_total_is_their_sum(amounts):
    rounded, total = round_to_cents(amounts)

    assert total == sum(rounded, Decimal(0)) and total.as_tuple().exponent == -2
    assert all(r.as_tuple().exponent == -2 and abs(r - a) <= HALF_CENT for r, a in zip(rounded, amounts))
    assert abs(total - sum(amounts, Decimal(0))) <= HALF_CENT * len(amounts)


def test_half_a_cent_rounds_up_on_every_line():
    assert round_to_cents([Decimal("0.005"), Decimal("0.0049999999"), Decimal("1.035")]) == (
        [Decimal("0.01"), Decimal("0.00"), Decimal("1.04")], Decimal("1.05"))


def test_the_demo_statement_that_did_not_add_up_now_does():
    """$0.63 + $0.40 + $0.00 was printed with "Total due: $1.04" (exact 1.037308)."""
    amounts = [Decimal("0.6309420000"), Decimal("0.4036010000"), Decimal("0.0027650000")]
    page = page_of(statement(amounts, final=True))

    assert printed_lines(page) == [Decimal("0.63"), Decimal("0.40"), Decimal("0.00")]
    assert printed_total(page) == ("Total due", Decimal("1.03"))
    assert "Exact total: 1.0373080000 USD" in page and "Rounding of the lines: -0.0073080000 USD" in page


@settings(max_examples=60, deadline=None)
@given(st.lists(EXACT, min_size=1, max_size=25), st.booleans())
def test_printed_lines_sum_to_the_printed_total(amounts, final):
    page = page_of(statement(amounts, final))
    label, total = printed_total(page)

    assert sum(printed_lines(page), Decimal(0)) == total
    assert label == ("Total due" if final else "Month to date, not final")
    assert ROUNDING_RULE.split(";")[0] in page


@pytest.mark.parametrize("now, final", [
    (datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC), False),
    (datetime(2025, 7, 1, 0, 0, tzinfo=UTC), True),
    (datetime(2025, 7, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))), False),  # still June 30 in UTC
    (datetime(2025, 5, 20, tzinfo=UTC), False),  # a month that has not begun is not final either
])
def test_a_month_is_final_only_once_it_is_over_in_utc(now, final):
    assert month_is_over(date(2025, 6, 1), now) is final


def test_december_ends_on_the_first_of_january():
    assert not month_is_over(date(2025, 12, 1), datetime(2025, 12, 31, 23, 59, tzinfo=UTC))
    assert month_is_over(date(2025, 12, 1), datetime(2026, 1, 1, tzinfo=UTC))


def test_an_invoice_for_the_month_in_progress_is_month_to_date(reader, fixture_db):
    data = invoice_data(reader, fixture_db.bulk, "2025-06", now=datetime(2025, 6, 20, 8, tzinfo=UTC))
    page = page_of(data)

    assert data.meta["final"] is False and data.meta["as_of"] == "2025-06-20 08:00:00 UTC"
    assert printed_total(page)[0] == "Month to date, not final" and "Total due" not in page
    assert "month to date, not final" in header_html(data)


def test_an_invoice_for_a_past_month_is_final(reader, fixture_db):
    data = invoice_data(reader, fixture_db.bulk, "2025-06", now=datetime(2025, 7, 1, tzinfo=UTC))

    assert data.meta["final"] is True and printed_total(page_of(data))[0] == "Total due"


@pytest.fixture(scope="module")
def random_db(tmp_path_factory):
    clock = VirtualClock(start=datetime(2025, 7, 2, tzinfo=UTC))
    with Gateway.open(tmp_path_factory.mktemp("invoices") / "random.duckdb", clock=clock) as gw:
        yield gw


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), events=st.integers(1, 400), agents=st.integers(1, 4))
def test_invoices_of_random_billed_traffic_add_up_and_keep_the_exact_figures(random_db, tmp_path, seed, events, agents):
    n = next(EXAMPLE)
    tenant, _ = random_db.create_tenant(f"Random {n}")
    client = random_db.as_tenant(tenant.id)
    agent_ids = [client.create_agent(name=f"Agent {i}", primary_provider="vendorA", fallback_provider="vendorB",
                                     system_prompt="You are random.").id for i in range(agents)]
    spec = SyntheticSpec(events=events, tenants=1, agents_per_tenant=agents, start=date(2025, 6, 1),
                         end=date(2025, 6, 30), seed=seed)
    billed = generate(random_db, spec, [tenant.id], [agent_ids]).cost_usd

    data = invoice_data(random_db, tenant.id, "2025-06")
    page = page_of(data)
    lines = printed_lines(page)
    label, total = printed_total(page)
    save_tables(data, tmp_path / str(n))
    csv = pd.read_csv(tmp_path / str(n) / "lines.csv", dtype=str)

    assert label == "Total due" and sum(lines, Decimal(0)) == total == data.meta["total_due_usd"]
    assert len(lines) == len(csv) and abs(total - billed) <= HALF_CENT * len(lines)
    assert sum(Decimal(v) for v in csv.amount_usd) == data.meta["total_usd"] == billed
    assert [Decimal(v) for v in csv.amount_rounded_usd] == lines
