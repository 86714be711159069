"""`make demo` beyond the chat: simulated history once per database, then reports."""

from pathlib import Path

from vbgateway import Gateway
from vbgateway.demo import render_reports, simulate_history


def test_history_is_simulated_once_and_reports_are_written_for_it(tmp_path: Path) -> None:
    db, out, said = tmp_path / "demo.duckdb", tmp_path / "reports", []
    assert simulate_history(db, said.append, days=2) is True
    with Gateway.open_reader(db) as reader:
        billed = int(reader.sql("SELECT count(*) AS n FROM usage_events").n[0])
        tenants = {t.name for t in reader.list_tenants()}
        today = reader.clock.now().date()
    assert billed > 100 and tenants == {"Acme Corporation", "GlobalTech Industries"}
    assert simulate_history(db, said.append, days=2) is False  # a second `make demo` adds nothing
    with Gateway.open_reader(db) as reader:
        assert int(reader.sql("SELECT count(*) AS n FROM usage_events").n[0]) == billed
    written = render_reports(db, out, said.append)
    assert len(written) == 5  # the all-tenants usage report; last month's and this month's invoice per tenant
    pages = [page for folder in written for page in Path(folder).glob("*.html")]
    assert len(pages) == 5 and all(page.stat().st_size > 10_000 for page in pages)
    assert any(str(folder) in line for folder in written for line in said)
    invoices = [page for page in pages if page.name == "invoice.html"]
    final = [page.read_text() for page in invoices if page.parent.name != today.strftime("%Y-%m")]
    to_date = [page.read_text() for page in invoices if page.parent.name == today.strftime("%Y-%m")]
    assert len(final) == len(to_date) == 2
    assert all("Total due: $" in text and "Month to date, not final" not in text for text in final)
    assert all("Month to date, not final: $" in text and "Total due" not in text for text in to_date)
