"""DuckDB settings changed for a piece of work come back as they were, even when the work fails."""

from __future__ import annotations

import duckdb
import pytest

from vbgateway.errors import ValidationError
from vbgateway.store.settings import temporarily

_READ = "SELECT current_setting('threads'), current_setting('preserve_insertion_order'), current_setting('TimeZone')"


def test_settings_hold_inside_the_block_and_are_restored_after_it():
    con = duckdb.connect(":memory:")
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'Europe/Paris'")
    before = con.execute(_READ).fetchall()[0]
    with temporarily(con, threads=1, preserve_insertion_order=False, TimeZone="America/New_York"):
        assert con.execute(_READ).fetchall()[0] == (1, False, "America/New_York")
    assert con.execute(_READ).fetchall()[0] == before


def test_settings_are_restored_when_the_block_fails():
    con = duckdb.connect(":memory:")
    before = con.execute(_READ).fetchall()[0]
    with pytest.raises(duckdb.CatalogException), temporarily(con, preserve_insertion_order=not before[1], threads=1):
        con.execute("SELECT * FROM no_such_table")
    assert con.execute(_READ).fetchall()[0] == before


def test_an_unknown_setting_is_refused_before_anything_changes():
    con = duckdb.connect(":memory:")
    before = con.execute(_READ).fetchall()[0]
    with pytest.raises(ValidationError) as info, temporarily(con, threads=1, no_such_setting=3):
        pass
    assert "no_such_setting" in str(info.value)
    assert con.execute(_READ).fetchall()[0] == before


def test_a_value_refused_halfway_puts_back_the_settings_already_changed():
    con = duckdb.connect(":memory:")
    before = con.execute(_READ).fetchall()[0]
    with pytest.raises(ValidationError) as info, \
            temporarily(con, threads=1, preserve_insertion_order=not before[1], memory_limit="not a size"):
        pass
    assert info.value.details["setting"] == "memory_limit"
    assert con.execute(_READ).fetchall()[0] == before
