"""``vbgateway budget set|show``: an operator's limits, by tenant id or name, clear errors, nothing changed on bad input."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from vbgateway import Gateway, SystemClock, VirtualClock
from vbgateway.cli import main
from vbgateway.providers import VendorA, VendorB


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, str]:
    """A database with tenant "Acme Corporation": (path, its id)."""
    path = tmp_path / "ops.duckdb"
    with Gateway.open(path) as gw:
        tenant, _ = gw.create_tenant("Acme Corporation")
    return path, tenant.id


def stored(path: Path) -> list[tuple]:
    with Gateway.open(path, clock=VirtualClock()) as gw:
        return gw.store.query_rows("SELECT tenant_id, monthly_usd, alert_at FROM budgets ORDER BY ALL")


def file_state(path: Path) -> tuple[int, int]:
    return path.stat().st_size, path.stat().st_mtime_ns


def test_set_by_name_then_show_by_id(db, capsys):
    path, tenant_id = db
    assert main(["budget", "set", "Acme Corporation", "--monthly-usd", "50", "--alert-at", "0.5,0.9", "--db",
                 str(path)]) == 0
    assert f"tenant {tenant_id}: budget 50 USD" in capsys.readouterr().out
    assert stored(path) == [(tenant_id, Decimal("50"), [Decimal("0.5"), Decimal("0.9")])]
    assert main(["budget", "show", tenant_id, "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "budget 50 USD" in out and "spent     0.000000 USD (0.0%)" in out and "alerts at 50%, 90%" in out


def test_the_default_alerts_and_none_at_all(db, capsys):
    path, tenant_id = db
    main(["budget", "set", tenant_id, "--monthly-usd", "12.5", "--db", str(path)])
    assert stored(path)[0][2] == [Decimal("0.5"), Decimal("0.8"), Decimal("1")]
    main(["budget", "set", tenant_id, "--monthly-usd", "12.5", "--alert-at", "", "--db", str(path)])
    assert stored(path)[0][2] == []
    assert "alerts at none" in capsys.readouterr().out


def test_remove_then_show_says_no_budget(db, capsys):
    path, tenant_id = db
    main(["budget", "set", tenant_id, "--monthly-usd", "5", "--db", str(path)])
    assert main(["budget", "set", tenant_id, "--remove", "--db", str(path)]) == 0
    assert stored(path) == []
    main(["budget", "show", "Acme Corporation", "--db", str(path)])
    assert capsys.readouterr().out.splitlines()[-1] == f"tenant {tenant_id}: no budget"


@pytest.mark.parametrize("args, code", [
    (["--monthly-usd", "-5"], "VALIDATION_ERROR"),
    (["--monthly-usd", "0"], "VALIDATION_ERROR"),
    (["--monthly-usd", "fifty"], "VALIDATION_ERROR"),
    (["--monthly-usd", "0.00000000001"], "VALIDATION_ERROR"),
    (["--monthly-usd", "5", "--alert-at", "0.8,0.5"], "VALIDATION_ERROR"),
    (["--monthly-usd", "5", "--alert-at", "1.5"], "VALIDATION_ERROR"),
    (["--monthly-usd", "5", "--alert-at", "half"], "VALIDATION_ERROR"),
    (["--monthly-usd", "5", "--remove"], "VALIDATION_ERROR"),
    (["--remove", "--alert-at", "0.5"], "VALIDATION_ERROR"),
    ([], "VALIDATION_ERROR"),
])
def test_bad_input_is_one_line_with_its_code_and_the_file_is_untouched(db, capsys, args, code):
    path, tenant_id = db
    main(["budget", "set", tenant_id, "--monthly-usd", "7", "--db", str(path)])
    before = file_state(path)
    assert main(["budget", "set", tenant_id, *args, "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vbgateway: {code}: ") and err.count("\n") == 1 and "Traceback" not in err
    assert file_state(path) == before  # not even opened: no migration, no checkpoint
    assert stored(path)[0][1] == 7


@pytest.mark.parametrize("action", [["set", "Nobody Inc", "--monthly-usd", "5"], ["show", "tnt_nobody00000000000000"]])
def test_an_unknown_tenant_is_not_found(db, capsys, action):
    path, _ = db
    assert main(["budget", *action, "--db", str(path)]) == 2
    assert capsys.readouterr().err.startswith("vbgateway: NOT_FOUND: ")
    assert stored(path) == []


def test_a_missing_database_is_not_created(tmp_path, capsys):
    missing = tmp_path / "nothing.duckdb"
    assert main(["budget", "set", "Acme", "--monthly-usd", "5", "--db", str(missing)]) == 2
    assert main(["budget", "show", "Acme", "--db", str(missing)]) == 2
    assert capsys.readouterr().err.count("DATABASE_ERROR") == 2 and not missing.exists()


def test_show_prints_spend_and_crossed_alerts(db, capsys):
    path, tenant_id = db
    quick = {"vendorA": VendorA(latency_ms=(0, 0), failure_rate=0.0), "vendorB": VendorB(latency_ms=(0, 0))}
    clock = SystemClock()  # this month, as the command's
    with Gateway.open(path, clock=clock, providers=quick) as gw:
        client = gw.as_tenant(tenant_id)
        agent = client.create_agent(name="S", primary_provider="vendorA", system_prompt="Be brief.")
        session = client.create_session(agent.id)
        cost = clock.run(client.send_message(session.id, "hello")).metadata.usage.cost_usd
        gw.set_budget(tenant_id, cost * 2, alert_at=(0.5,))
        month = gw.budgets.month
    with Gateway.open_reader(path) as reader:
        budget = reader.get_budget(tenant_id)
    assert budget is not None and budget.month == month and budget.spent_usd == cost
    run = subprocess.run([sys.executable, "-m", "vbgateway.cli", "budget", "show", tenant_id, "--db", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "(50.0%)" in run.stdout and "crossed 50% at" in run.stdout
