"""Specification of the ``vbgateway`` command: ``seed`` and ``demo`` over one database file.

Mostly run in-process through ``vbgateway.cli.main`` with ``capsys``; once as a
real ``python -m vbgateway.cli`` process.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from vbgateway import Gateway, GatewayError, VirtualClock
from vbgateway.cli import main

ROOT = Path(__file__).resolve().parents[1]
KEY = re.compile(r"\bsk_[A-Za-z0-9_-]{20,}")
DEMO_TENANTS = {"Acme Corporation", "GlobalTech Industries"}


def counts(db: Path) -> dict[str, int]:
    with Gateway.open(db, clock=VirtualClock()) as gw:
        return {table: int(gw.sql(f"SELECT count(*) AS n FROM {table}")["n"][0])
                for table in ("tenants", "agents", "api_keys", "sessions", "messages", "usage_events")}


@pytest.fixture
def seeded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, int, str]:
    """A database seeded by ``vbgateway seed``: (path, exit code, what it printed)."""
    db = tmp_path / "demo.duckdb"
    code = main(["seed", "--db", str(db)])
    return db, code, capsys.readouterr().out


# --------------------------------------------------------------------------- seed


def test_seed_exits_zero(seeded: tuple[Path, int, str]) -> None:
    _, code, _ = seeded

    assert code == 0


def test_seed_creates_the_two_demo_tenants_and_three_agents(seeded: tuple[Path, int, str]) -> None:
    db, _, _ = seeded

    with Gateway.open(db, clock=VirtualClock()) as gw:
        tenants = {t.name: t for t in gw.list_tenants()}
        agents = {name: [a.name for a in gw.as_tenant(t.id).list_agents()] for name, t in tenants.items()}

    assert set(tenants) == DEMO_TENANTS
    assert sum(len(names) for names in agents.values()) == 3
    assert sorted(agents["Acme Corporation"]) == ["Sales Concierge", "Support Assistant"]
    assert agents["GlobalTech Industries"] == ["IT Helpdesk"]


def test_seed_prints_each_api_key_once_in_a_banner(seeded: tuple[Path, int, str]) -> None:
    _, _, out = seeded

    keys = KEY.findall(out)
    assert len(keys) == 2 and len(set(keys)) == 2
    assert all(out.count(key) == 1 for key in keys)
    assert "API KEYS" in out
    for name in DEMO_TENANTS:
        assert len([line for line in out.splitlines() if name in line and KEY.search(line)]) == 1
    banner = out.splitlines()
    first_bar = next(i for i, line in enumerate(banner) if set(line.strip()) == {"="})
    key_lines = [i for i, line in enumerate(banner) if KEY.search(line)]
    assert all(i > first_bar for i in key_lines)


def test_seed_prints_each_agent_with_its_providers(seeded: tuple[Path, int, str]) -> None:
    _, _, out = seeded

    agent_lines = [line for line in out.splitlines() if re.search(r"\bagt_\w+", line)]
    assert len(agent_lines) == 3
    assert any("Support Assistant" in line and "vendorA -> vendorB" in line for line in agent_lines)
    assert any("IT Helpdesk" in line and "vendorB -> none" in line for line in agent_lines)


def test_the_printed_keys_connect_to_their_tenants(seeded: tuple[Path, int, str]) -> None:
    db, _, out = seeded

    with Gateway.open(db, clock=VirtualClock()) as gw:
        for line in out.splitlines():
            match = KEY.search(line)
            if match:
                tenant = gw.connect(match.group()).tenant
                assert tenant.name in line
                assert tenant.id in line


def test_the_printed_keys_are_stored_only_as_hashes(seeded: tuple[Path, int, str]) -> None:
    db, _, out = seeded

    keys = KEY.findall(out)
    with Gateway.open(db, clock=VirtualClock()) as gw:
        stored = gw.sql("SELECT key_hash, key_prefix FROM api_keys")
    text = " ".join(stored["key_hash"]) + " " + " ".join(stored["key_prefix"])
    assert not any(key in text for key in keys)
    assert db.read_bytes().find(keys[0].encode()) == -1


def test_a_second_seed_says_already_seeded_and_changes_nothing(seeded: tuple[Path, int, str],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    db, _, _ = seeded
    before = counts(db)

    code = main(["seed", "--db", str(db)])

    out = capsys.readouterr().out
    assert code == 0
    assert "already seeded" in out
    assert not KEY.search(out)
    assert counts(db) == before
    assert (before["tenants"], before["agents"], before["api_keys"]) == (2, 3, 2)


def test_the_first_keys_still_work_after_a_second_seed(seeded: tuple[Path, int, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db, _, out = seeded
    main(["seed", "--db", str(db)])
    capsys.readouterr()

    with Gateway.open(db, clock=VirtualClock()) as gw:
        assert {gw.connect(key).tenant.name for key in KEY.findall(out)} == DEMO_TENANTS


def test_seed_as_a_real_process_prints_working_keys(tmp_path: Path) -> None:
    db = tmp_path / "process.duckdb"

    done = subprocess.run([sys.executable, "-m", "vbgateway.cli", "seed", "--db", str(db)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    keys = KEY.findall(done.stdout)
    assert len(keys) == 2
    with Gateway.open(db, clock=VirtualClock()) as gw:
        assert {gw.connect(key).tenant.name for key in keys} == DEMO_TENANTS


def test_an_unknown_key_is_refused_by_the_seeded_database(seeded: tuple[Path, int, str]) -> None:
    db, _, _ = seeded

    with Gateway.open(db, clock=VirtualClock()) as gw, pytest.raises(GatewayError) as raised:
        gw.connect("sk_" + "x" * 43)

    assert raised.value.code == "INVALID_API_KEY"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main([])

    assert raised.value.code == 2


# --------------------------------------------------------------------------- errors: one line, no traceback


def assert_one_line_error(code: int, err: str) -> str:
    """The CLI's promise: a refusal is one line on stderr with its code, and a non-zero exit."""
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.match(r"vbgateway: [A-Z_]+: ", lines[0]), err
    return lines[0]


def test_seed_on_a_database_another_gateway_holds_fails_in_one_line_and_changes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "held.duckdb"
    holder = Gateway.open(db, clock=VirtualClock())
    try:
        code = main(["seed", "--db", str(db)])
        captured = capsys.readouterr()
        line = assert_one_line_error(code, captured.err)
        assert line.startswith("vbgateway: DATABASE_BUSY: ")
        assert not KEY.search(captured.out)
        assert holder.list_tenants() == []
    finally:
        holder.close()


def test_a_file_that_is_not_a_database_is_refused_in_one_line_and_not_reported_as_busy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "notes.duckdb"
    db.write_bytes(b"these are my notes, not a database\n" * 200)

    code = main(["seed", "--db", str(db)])

    line = assert_one_line_error(code, capsys.readouterr().err)
    assert "DATABASE_BUSY" not in line and "locked" not in line  # nobody holds it: the file is not DuckDB
    assert db.read_bytes() == b"these are my notes, not a database\n" * 200


def test_a_db_path_that_cannot_be_created_is_refused_in_one_line_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_directory = tmp_path / "plain-file"
    not_a_directory.write_text("x")

    code = main(["seed", "--db", str(not_a_directory / "demo.duckdb")])

    assert_one_line_error(code, capsys.readouterr().err)


# --------------------------------------------------------------------------- demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """``vbgateway demo`` run once, in-process (real-time vendor latencies: a few seconds): (path, exit code, output)."""
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    output = io.StringIO()
    with redirect_stdout(output):
        code = main(["demo", "--db", str(db), "--chat-only"])
    return db, code, output.getvalue()


def test_demo_exits_zero(demo: tuple[Path, int, str]) -> None:
    _, code, out = demo

    assert code == 0, out


def test_demo_prints_replies_from_both_vendors(demo: tuple[Path, int, str]) -> None:
    _, _, out = demo

    assert re.search(r"\bvendorA\b", out)
    assert re.search(r"\bvendorB\b", out)


def test_demo_prints_a_fallback_and_a_replay(demo: tuple[Path, int, str]) -> None:
    _, _, out = demo

    fallback = [line for line in out.splitlines() if "FALLBACK" in line]
    replayed = [line for line in out.splitlines() if "REPLAYED" in line]
    assert fallback and all("vendorB" in line for line in fallback)
    assert len(replayed) == 1 and "Sales Concierge" in replayed[0]


def test_demo_seeds_the_database_when_needed(demo: tuple[Path, int, str]) -> None:
    db, _, out = demo

    assert "Seeded" in out
    with Gateway.open(db, clock=VirtualClock()) as gw:
        assert {t.name for t in gw.list_tenants()} == DEMO_TENANTS


def test_demo_bills_both_vendors(demo: tuple[Path, int, str]) -> None:
    db, _, _ = demo

    with Gateway.open(db, clock=VirtualClock()) as gw:
        providers = set(gw.sql("SELECT DISTINCT provider FROM usage_events")["provider"])

    assert providers == {"vendorA", "vendorB"}


def test_demo_bills_the_replayed_request_once(demo: tuple[Path, int, str]) -> None:
    db, _, _ = demo

    with Gateway.open(db, clock=VirtualClock()) as gw:
        events = int(gw.sql("SELECT count(*) AS n FROM usage_events")["n"][0])
        requests = int(gw.sql("SELECT count(DISTINCT request_id) AS n FROM usage_events")["n"][0])
        replies = int(gw.sql("SELECT count(*) AS n FROM messages WHERE role = 'assistant'")["n"][0])
        keyed = int(gw.sql("SELECT count(*) AS n FROM idempotency_records")["n"][0])

    assert events == requests == replies
    assert keyed == 1


def test_demo_reports_the_billed_total_it_wrote(demo: tuple[Path, int, str]) -> None:
    db, _, out = demo

    with Gateway.open(db, clock=VirtualClock()) as gw:
        events = int(gw.sql("SELECT count(*) AS n FROM usage_events")["n"][0])

    assert re.search(rf"\b{events} billed replies\b", out)
