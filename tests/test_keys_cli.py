"""``vbgateway keys ...`` and ``vbgateway limits ...``: an operator's governance over one database file.

Run in-process through ``vbgateway.cli.main``; once as a real process. Every refused command leaves the
database as it was.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vbgateway import Gateway, VirtualClock
from vbgateway.cli import main
from vbgateway.models import RateLimit

KEY = re.compile(r"\bsk_[A-Za-z0-9_-]{20,}")
KEY_ID = re.compile(r"\bkey_[0-9a-z]{20}\b")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ops.duckdb"
    with Gateway.open(path) as gw:
        gw.create_tenant("Acme Corporation")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(db: Path) -> dict[str, list[tuple]]:
    with Gateway.open(db, clock=VirtualClock()) as gw:
        return {t: sorted(map(tuple, gw.sql(f"SELECT * FROM {t}").astype(str).values.tolist()))
                for t in ("tenants", "api_keys", "rate_limits")}


def tenant_id(db: Path) -> str:
    with Gateway.open(db) as gw:
        return gw.list_tenants()[0].id


def test_keys_create_prints_the_key_once_with_its_scopes_expiry_and_limit(db, capsys):
    code, out, _ = run(capsys, "keys", "create", "Acme Corporation", "--scope", "chat", "--scope", "usage:read",
                       "--expires-at", "2030-01-01T00:00:00Z", "--rpm", "60", "--db", str(db))
    assert code == 0
    [key] = KEY.findall(out)
    with Gateway.open(db) as gw:
        client = gw.connect(key)
        assert client.scopes == {"chat", "usage:read"}
        info = gw.keys.info(client.key_id)
        assert info.rate_limit == RateLimit(requests_per_minute=60)
        assert info.expires_at.isoformat() == "2030-01-01T00:00:00+00:00"
    assert "chat usage:read" in out and "2030-01-01T00:00:00.000Z" in out and "60 requests/min" in out


def test_keys_list_rotate_and_revoke_by_tenant_name_or_id(db, capsys):
    _, out, _ = run(capsys, "keys", "create", tenant_id(db), "--db", str(db))
    [key_id] = KEY_ID.findall(out)
    code, out, _ = run(capsys, "keys", "rotate", key_id, "--grace-s", "120", "--db", str(db))
    assert code == 0
    [new_key] = KEY.findall(out)
    new_id = next(k for k in KEY_ID.findall(out) if k != key_id)
    assert f"{key_id} keeps working until" in out
    code, out, _ = run(capsys, "keys", "list", "Acme Corporation", "--db", str(db))
    assert code == 0 and "3 key(s)" in out
    assert re.search(rf"{key_id}\s+\S+\s+grace", out) and f"to {new_id}" in out
    assert KEY.findall(out) == []  # a listing never shows a key
    assert run(capsys, "keys", "revoke", key_id, "--db", str(db))[0] == 0
    _, out, _ = run(capsys, "keys", "list", "Acme Corporation", "--db", str(db))
    assert re.search(rf"{key_id}\s+\S+\s+revoked", out)
    with Gateway.open(db) as gw:
        assert gw.connect(new_key).key_id == new_id


def test_limits_set_and_show(db, capsys):
    code, out, _ = run(capsys, "limits", "set", "Acme Corporation", "--rpm", "600", "--tpm", "200000", "--db", str(db))
    assert code == 0 and "600 requests/min, 200,000 tokens/min" in out
    run(capsys, "keys", "create", "Acme Corporation", "--rpm", "5", "--db", str(db))
    code, out, _ = run(capsys, "limits", "show", "Acme Corporation", "--db", str(db))
    assert code == 0 and "600 requests/min, 200,000 tokens/min" in out and "5 requests/min" in out
    with Gateway.open(db) as gw:
        assert gw.get_rate_limit(gw.list_tenants()[0].id) == RateLimit(requests_per_minute=600,
                                                                        tokens_per_minute=200_000)
    assert run(capsys, "limits", "set", "Acme Corporation", "--remove", "--db", str(db))[0] == 0
    _, out, _ = run(capsys, "limits", "show", "Acme Corporation", "--db", str(db))
    assert "rate limit none" in out


@pytest.mark.parametrize("argv", [
    ("keys", "create", "Nobody Inc"),
    ("keys", "create", "Acme Corporation", "--expires-at", "2030-01-01T00:00:00"),   # no time zone
    ("keys", "create", "Acme Corporation", "--expires-at", "2001-01-01T00:00:00Z"),  # the past
    ("keys", "create", "Acme Corporation", "--expires-at", "next week"),
    ("keys", "rotate", "key_doesnotexist000000"),
    ("keys", "rotate", "KEY", "--grace-s", "-5"),
    ("keys", "revoke", "key_doesnotexist000000"),
    ("limits", "set", "Acme Corporation"),
    ("limits", "set", "Acme Corporation", "--rpm", "5", "--remove"),
    ("limits", "set", "tnt_doesnotexist000000", "--rpm", "5"),
])
def test_bad_input_is_one_line_with_a_code_and_changes_nothing(db, capsys, argv):
    _, out, _ = run(capsys, "keys", "create", "Acme Corporation", "--db", str(db))
    [key_id] = KEY_ID.findall(out)
    before = snapshot(db)
    code, out, err = run(capsys, *(key_id if a == "KEY" else a for a in argv), "--db", str(db))
    assert code == 2 and out == ""
    assert re.fullmatch(r"vbgateway: [A-Z_]+: .+\n", err), err
    assert snapshot(db) == before


@pytest.mark.parametrize("argv", [("keys", "create", "Acme Corporation"), ("keys", "list", "Acme Corporation")])
def test_a_name_two_tenants_share_is_refused_and_never_guessed(db, capsys, argv):
    with Gateway.open(db) as gw:
        gw.create_tenant("Acme Corporation")  # a second tenant of the same name
    before = snapshot(db)
    code, out, err = run(capsys, *argv, "--db", str(db))
    assert code == 2 and out == "" and not KEY.findall(err)
    assert err.startswith("vbgateway: VALIDATION_ERROR: 2 tenants are named 'Acme Corporation'"), err
    assert snapshot(db) == before
    code, out, _ = run(capsys, "keys", "create", tenant_id(db), "--db", str(db))  # by id it works
    assert code == 0 and KEY.findall(out)


@pytest.mark.parametrize("argv", [("keys", "create", "Acme Corporation", "--scope", "admin"),
                                  ("limits", "set", "Acme Corporation", "--rpm", "0"),
                                  ("limits", "set", "Acme Corporation", "--tpm", "lots")])
def test_argument_errors_are_refused_by_the_parser_and_change_nothing(db, capsys, argv):
    before = snapshot(db)
    with pytest.raises(SystemExit) as info:
        main([*argv, "--db", str(db)])
    assert info.value.code == 2 and "error:" in capsys.readouterr().err
    assert snapshot(db) == before


def test_a_missing_database_is_an_error_and_is_not_created(tmp_path, capsys):
    missing = tmp_path / "typo.duckdb"
    code, _, err = run(capsys, "keys", "list", "Acme Corporation", "--db", str(missing))
    assert code == 2 and err.startswith("vbgateway: DATABASE_ERROR: no database at")
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_the_command_runs_as_a_process(db):
    done = subprocess.run([sys.executable, "-m", "vbgateway.cli", "limits", "set", "Acme Corporation", "--rpm", "9",
                           "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "9 requests/min" in done.stdout
