"""Same scenario and seed: identical rows and identical database contents."""

from __future__ import annotations

import pytest

from vbgateway.simulation import simulate


@pytest.fixture(scope="module")
def first(tmp_path_factory, scenario):
    return simulate(scenario, tmp_path_factory.mktemp("det") / "a.duckdb")


def test_two_runs_of_one_seeded_scenario_produce_the_same_digest_rows_and_database(tmp_path, scenario, first):
    second = simulate(scenario, tmp_path / "b.duckdb")
    assert len(first.rows) > 300
    assert first.database_digest is not None
    assert first.database_digest == second.database_digest
    assert first.traffic_digest == second.traffic_digest
    assert first.rows.equals(second.rows)
    assert first.digest() == second.digest()


def test_another_seed_gives_other_traffic_and_another_digest(tmp_path, scenario, first):
    other = simulate(scenario.model_copy(update={"seed": 6}), tmp_path / "b.duckdb")
    assert first.traffic_digest != other.traffic_digest
    assert first.database_digest != other.database_digest


def test_database_timestamps_are_simulated_not_wall_clock(tmp_path, scenario):
    result = simulate(scenario, tmp_path / "a.duckdb", keep_open=True)
    try:
        span = result.gateway.sql("SELECT min(created_at) AS lo, max(created_at) AS hi FROM usage_events")
    finally:
        result.close()
    assert span.lo[0] >= scenario.start
    assert span.hi[0] <= scenario.stop + (scenario.duration / 6)  # sessions begun late may run a little over


def test_rows_hold_one_line_per_generated_message(scenario, first, make_scenario):
    rows = first.rows
    assert list(rows.message) == list(range(len(rows)))
    assert set(rows.outcome) <= {"ok", "failed"}
    assert (rows.attempts >= 1).all()
    ok = rows[rows.outcome == "ok"]
    assert (ok.cost_units > 0).all() and ok.vendor_used.notna().all()
    assert make_scenario().traffic == scenario.traffic


WALL_FIGURES = {"wall_s", "sim_msgs_per_wall_s", "virtual_s_per_wall_s"}


def test_instances_in_parallel_processes_give_exactly_what_one_process_gives(tmp_path, scenario, first):
    parallel = simulate(scenario, tmp_path / "p.duckdb", workers=2, progress=lambda *_: None)
    assert parallel.database_digest == first.database_digest
    assert parallel.rows.equals(first.rows)
    one, two = first.summary(), parallel.summary()
    assert {k: v for k, v in one.items() if k not in WALL_FIGURES} == {k: v for k, v in two.items()
                                                                          if k not in WALL_FIGURES}


def test_each_gateway_instance_serves_its_own_share_of_the_sessions(tmp_path, scenario):
    result = simulate(scenario, tmp_path / "a.duckdb", keep_open=True)
    try:
        ids = result.gateway.sql("SELECT count(DISTINCT id) AS n, count(*) AS rows FROM messages")
        sessions = result.gateway.sql("SELECT count(*) AS n FROM sessions")
    finally:
        result.close()
    assert ids.n[0] == ids.rows[0]  # instances never draw the same id
    assert sessions.n[0] == result.rows.session.nunique()
    single = simulate(scenario.model_copy(update={"gateways": 1}), tmp_path / "b.duckdb")
    assert single.traffic_digest == result.traffic_digest  # same customers, served by one instance
    assert len(single.rows) == len(result.rows)


def test_a_second_run_into_the_same_database_adds_to_it_without_replaying_the_first(tmp_path, scenario):
    db = tmp_path / "twice.duckdb"
    once = simulate(scenario, db, keep_open=True)
    try:
        billed_once = once.gateway.sql("SELECT count(*) AS n FROM usage_events").n[0]
    finally:
        once.close()
    again = simulate(scenario, db, keep_open=True)
    try:
        billed_twice = again.gateway.sql("SELECT count(*) AS n FROM usage_events").n[0]
        distinct = again.gateway.sql("SELECT count(DISTINCT id) AS n FROM usage_events").n[0]
    finally:
        again.close()
    assert billed_once > 300
    assert billed_twice == distinct == 2 * billed_once  # new ids, and no key of the first run replayed
    assert again.rows.replayed.sum() == once.rows.replayed.sum()


def test_the_instances_shares_of_the_workload_make_up_the_whole_traffic(scenario):
    from vbgateway.simulation.workload import Workload

    whole = [plan for hour in Workload(scenario).sessions() for plan in hour]
    shares = [Workload(scenario, share=(k, 3)) for k in range(3)]
    parts = [plan for share in shares for hour in share.sessions() for plan in hour]
    assert sorted((p.index, p.messages) for p in parts) == [(p.index, p.messages) for p in whole]
    assert all(plan.index % 3 == k for k, share in enumerate(shares) for hour in Workload(scenario, share=(k, 3))
               .sessions() for plan in hour)
    full = Workload(scenario)
    list(full.sessions())
    assert {share.digest for share in shares} == {full.digest}  # every share drew the whole traffic


def test_the_digest_put_together_from_the_instances_is_the_digest_of_the_merged_database(tmp_path, scenario):
    """Instances sum their own tables before the merge; the sums must describe the merged file exactly."""
    from vbgateway import Gateway
    from vbgateway.simulation.digest import table_digest

    db = tmp_path / "twice.duckdb"
    simulate(scenario, db, workers=2)  # a first run: the second run's digest must count its rows too
    second = simulate(scenario.model_copy(update={"seed": 8}), db)
    with Gateway.open_reader(db) as gw:
        assert table_digest(gw) == second.database_digest


@pytest.mark.parametrize("change", [
    "UPDATE usage_events SET cost_usd = cost_usd + 0.0000000001 WHERE id = (SELECT min(id) FROM usage_events)",
    "UPDATE messages SET created_at = created_at + INTERVAL 1 MICROSECOND WHERE id = (SELECT max(id) FROM messages)",
    "UPDATE provider_call_events SET error_code = 'x' WHERE id = (SELECT min(id) FROM provider_call_events)",
    "UPDATE sessions SET metadata = '{\"a\": 1}' WHERE id = (SELECT min(id) FROM sessions)",
])
def test_the_database_digest_sees_one_changed_value_and_comes_back_when_it_is_undone(tmp_path, scenario, change):
    import duckdb

    from vbgateway import Gateway
    from vbgateway.simulation.digest import table_digest

    db, table = tmp_path / "one.duckdb", change.split()[1]
    result = simulate(scenario, db)
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE saved AS SELECT * FROM {table}")
    con.execute(change)
    con.close()
    with Gateway.open_reader(db) as gw:
        assert table_digest(gw) != result.database_digest
    con = duckdb.connect(str(db))
    con.execute(f"DELETE FROM {table}")
    con.execute(f"INSERT INTO {table} SELECT * FROM saved")
    con.execute("DROP TABLE saved")
    con.close()
    with Gateway.open_reader(db) as gw:
        assert table_digest(gw) == result.database_digest


@pytest.mark.parametrize("ordered, vacuum_tasks", [(True, 100), (False, 7)])
def test_merging_leaves_the_callers_duckdb_settings_as_they_were(scenario, ordered, vacuum_tasks):
    """The merge inserts unordered and without vacuum; a connection handed in keeps its own settings."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"SET preserve_insertion_order = {str(ordered).lower()}")
    con.execute(f"SET max_vacuum_tasks = {vacuum_tasks}")
    result = simulate(scenario, con)
    settings = con.execute("SELECT current_setting('preserve_insertion_order'), current_setting('max_vacuum_tasks')")
    assert settings.fetchall()[0] == (ordered, vacuum_tasks)
    assert con.execute("SELECT count(*) FROM messages").fetchall()[0][0] == 2 * int((result.rows.outcome == "ok").sum())
    con.close()


def test_an_instance_process_serves_its_share_without_loading_pandas_or_pyarrow(tmp_path, scenario):
    """Instance processes run side by side; pandas and pyarrow (together about 100 MB a process) are the parent's."""
    import pickle
    import subprocess
    import sys

    from vbgateway.simulation import runner
    from vbgateway.simulation.instances import InstanceSpec

    target = runner.open_target(tmp_path / "target.duckdb", scenario.start)
    run_number, _, control = runner.prepare_target(target, scenario)
    target.close()
    spec = InstanceSpec(scenario, 0, run_number, str(tmp_path / "gateway-0.duckdb"), control, 0.01, 1000, False)
    spec_path = tmp_path / "gateway-0.spec"
    spec_path.write_bytes(pickle.dumps(spec))
    code = ("import sys; from vbgateway.simulation.instances import _child; code = _child(sys.argv[1]); "
            "print('pandas' in sys.modules, 'pyarrow' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(spec_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False False"
    with open(tmp_path / "gateway-0.result", "rb") as handle:
        result = pickle.load(handle)
    assert len(result.recorder) > 100 and result.table_sums["messages"][0] > 200


@pytest.mark.parametrize("where", ["processes", "here"])
def test_a_run_whose_last_instance_fails_leaves_none_of_its_instances_rows_in_the_target(tmp_path, scenario, where):
    """Instances are merged as each ends, but in one transaction: a failure later undoes the earlier merges.

    Both ways of running them: in processes (one at a time) and one after another in this process.
    """
    from vbgateway.errors import DatabaseError
    from vbgateway.simulation import runner
    from vbgateway.simulation.instances import InstanceSpec

    target = runner.open_target(tmp_path / "target.duckdb", scenario.start)
    run_number, _, control = runner.prepare_target(target, scenario)
    (tmp_path / "gateway-1.duckdb").write_bytes(b"not a database file")
    specs = [InstanceSpec(scenario, k, run_number, str(tmp_path / f"gateway-{k}.duckdb"), control, 0.01, 1000, False)
             for k in (0, 1)]
    seen: list[int] = []
    with pytest.raises(DatabaseError):  # one at a time: instance 0 ends (and is merged) before 1 starts
        if where == "processes":
            runner._run_in_processes_and_merge(specs, 1, tmp_path, lambda _, done: seen.append(done), target)
        else:
            runner._run_here_and_merge(specs, lambda _, done: seen.append(done), target)
    assert max(seen) > 100  # instance 0 served its share
    assert [target.query_rows(f"SELECT count(*) FROM {table}")[0][0]
            for table in ("sessions", "messages", "usage_events")] == [0, 0, 0]
    assert target.query_rows("SELECT count(*) FROM agents")[0][0] > 0  # the set-up before the run stays
    target.close()
