"""perfmon.collect(): deltas equal the work done, resets and restarts never give
negative or inflated deltas, concurrent runs never double-count, idle costs nothing."""

from __future__ import annotations

import os
import threading
import time

import psycopg
import pytest

from helpers import PROBE, collect, flush, probe_calls, run_probe


def assert_no_negative_deltas(conn: psycopg.Connection) -> None:
    for table, columns in {
        "statement_history": ["calls", "plans", "exec_ms", "rows", "shared_hit", "shared_read"],
        "table_history": ["seq_scan", "seq_tup_read", "idx_tup_fetch", "n_tup_ins", "heap_blks_hit"],
        "database_history": ["xact_commit", "blks_hit", "tup_returned", "sessions"],
        "index_history": ["idx_scan", "idx_blks_hit"],
    }.items():
        negative = " OR ".join(f"{c} < 0" for c in columns)
        assert conn.execute(
            f"SELECT count(*) FROM perfmon.{table} WHERE {negative}").fetchone() == (0,), table


def test_first_sample_is_a_baseline(probe: psycopg.Connection) -> None:
    run_probe(probe, 3)
    first = collect(probe)
    assert first["stages"]["statements"]["baseline"] is True
    assert first["stages"]["statements"].get("stored", 0) == 0
    assert probe_calls(probe) == []
    assert all("error" not in stage for stage in first["stages"].values()), first


def test_statement_deltas_equal_the_work_done(probe: psycopg.Connection) -> None:
    collect(probe)
    run_probe(probe, 7)
    collect(probe)
    run_probe(probe, 3)
    collect(probe)
    assert probe_calls(probe) == [7, 3]
    rows = probe.execute(
        """SELECT h.rows FROM perfmon.statement_history h JOIN perfmon.statements s USING (stmt_id)
           WHERE s.query LIKE 'SELECT count(*) FROM probe%' ORDER BY h.ts""").fetchall()
    assert rows == [(7,), (3,)]


def test_table_and_index_deltas_equal_the_work_done(probe: psycopg.Connection) -> None:
    flush(probe)
    collect(probe)
    run_probe(probe, 4)  # four sequential scans of probe
    probe.execute("INSERT INTO probe SELECT g, 'y' FROM generate_series(101, 150) g")
    # One index scan, whatever the planner thinks of so small a table.
    probe.execute("SET enable_seqscan = off")
    probe.execute("SELECT * FROM probe WHERE id = 7")
    probe.execute("RESET enable_seqscan")
    flush(probe)
    collect(probe)
    row = probe.execute(
        """SELECT h.seq_scan, h.n_tup_ins, h.n_live_tup FROM perfmon.table_history h
           JOIN perfmon.relations r USING (rel_id) WHERE r.rel_name = 'probe'""").fetchall()
    assert row == [(4, 50, 150)]
    idx = probe.execute(
        """SELECT h.idx_scan FROM perfmon.index_history h
           JOIN perfmon.relations r USING (rel_id) WHERE r.rel_name = 'probe_pkey'""").fetchall()
    assert idx == [(1,)]


def test_idle_statements_and_tables_cost_nothing(probe: psycopg.Connection) -> None:
    # The fixture's 100 fresh rows are over autovacuum's analyze threshold: an autoanalyze
    # landing between two collects moves the table's counters, which is not idleness.
    probe.execute("VACUUM ANALYZE probe")
    flush(probe)
    collect(probe)
    collect(probe)
    flush(probe)
    quiet = collect(probe)["stages"]
    assert quiet["tables"].get("stored", 0) == 0
    assert quiet["indexes"].get("stored", 0) == 0
    # Only pgperfmon's own "SELECT perfmon.collect()" and the flush ran in between.
    assert quiet["statements"]["stored"] <= 2


def test_statements_reset_gives_no_negative_or_inflated_delta(probe: psycopg.Connection) -> None:
    collect(probe)
    run_probe(probe, 5)
    collect(probe)
    run_probe(probe, 50)
    probe.execute("SELECT pg_stat_statements_reset()")
    run_probe(probe, 2)
    after_reset = collect(probe)["stages"]["statements"]
    assert after_reset["baseline"] is True
    run_probe(probe, 4)
    collect(probe)
    assert probe_calls(probe) == [5, 4]
    assert_no_negative_deltas(probe)


def test_a_statement_reset_alone_gives_its_new_counters_as_delta(probe: psycopg.Connection) -> None:
    # pg_stat_statements_reset(userid, dbid, queryid) removes one entry and leaves
    # stats_reset alone; the entry made again by the next call counts from zero.
    probe.execute("INSERT INTO probe SELECT g, 'z' FROM generate_series(101, 1100) g")
    many = "SELECT id, pg_sleep(%s) FROM probe WHERE id <= %s"
    slow = "SELECT v, pg_sleep(%s) FROM probe WHERE id = %s"

    def history(text: str) -> list[tuple]:
        return probe.execute(
            """SELECT h.calls, h.rows FROM perfmon.statement_history h
               JOIN perfmon.statements s USING (stmt_id) WHERE s.query = %s ORDER BY h.ts""",
            (text,)).fetchall()

    def reset(text: str) -> None:
        key = probe.execute("SELECT userid, dbid, queryid FROM pg_stat_statements WHERE query = %s",
                            (text,)).fetchone()
        probe.execute("SELECT pg_stat_statements_reset(%s, %s, %s)", key)

    collect(probe)
    for _ in range(2):
        probe.execute(many, (0.0, 1000)).fetchall()  # fast, 1000 rows each
    probe.execute(slow, (0.08, 1)).fetchall()
    collect(probe)
    reset("SELECT id, pg_sleep($1) FROM probe WHERE id <= $2")
    reset("SELECT v, pg_sleep($1) FROM probe WHERE id = $2")
    for _ in range(3):
        probe.execute(many, (0.02, 1)).fetchall()  # more calls and time, fewer rows
    for _ in range(2):
        probe.execute(slow, (0.05, 1)).fetchall()  # every counter up, only the maximum down
    stage = collect(probe)["stages"]["statements"]
    assert history("SELECT id, pg_sleep($1) FROM probe WHERE id <= $2") == [(2, 2000), (3, 3)]
    assert history("SELECT v, pg_sleep($1) FROM probe WHERE id = $2") == [(1, 1), (2, 2)]
    assert stage["gaps"] >= 2, stage  # what ran between the previous sample and each reset is lost
    assert_no_negative_deltas(probe)


def test_stats_reset_gives_no_negative_delta(probe: psycopg.Connection) -> None:
    flush(probe)
    collect(probe)
    run_probe(probe, 6)
    flush(probe)
    collect(probe)
    run_probe(probe, 30)
    probe.execute("SELECT pg_stat_reset()")
    run_probe(probe, 1)
    flush(probe)
    stages = collect(probe)["stages"]
    assert stages["tables"]["baseline"] is True
    run_probe(probe, 2)
    flush(probe)
    collect(probe)
    seq_scans = [r[0] for r in probe.execute(
        """SELECT h.seq_scan FROM perfmon.table_history h
           JOIN perfmon.relations r USING (rel_id) WHERE r.rel_name = 'probe' ORDER BY h.ts""")]
    assert seq_scans == [6, 2]
    assert_no_negative_deltas(probe)


def test_a_database_reset_while_busy_is_a_gap_never_a_negative_delta(
        probe: psycopg.Connection, server) -> None:
    # pg_stat_reset() in another database, then enough work there that the counters
    # compared before (commits, rollbacks, blocks, rows returned, sessions) pass their
    # old values; tup_inserted does not.
    other = server.create_database()
    try:
        with psycopg.connect(server.dsn(other), autocommit=True) as c:
            # Larger than a quarter of shared_buffers: every scan reads it again.
            c.execute("CREATE TABLE t AS SELECT generate_series(1, 1500000) AS i")
            flush(c)
        collect(probe)
        collect(probe)
        with psycopg.connect(server.dsn(other), autocommit=True) as c:
            c.execute("SELECT pg_stat_reset()")
        for _ in range(3):
            with psycopg.connect(server.dsn(other), autocommit=True) as c:
                for _ in range(5):
                    c.execute("SELECT count(*) FROM t").fetchall()
                flush(c)
        sample = collect(probe)
        after_reset = sample["stages"]["databases"]
        with psycopg.connect(server.dsn(other), autocommit=True) as c:
            for _ in range(3):
                c.execute("SELECT count(*) FROM t").fetchall()
            flush(c)
        collect(probe)
        rows = probe.execute(
            """SELECT h.xact_commit, h.tup_inserted FROM perfmon.database_history h
               JOIN perfmon.databases d USING (datid)
               WHERE d.datname = %s AND h.ts >= %s ORDER BY h.ts""",
            (other, sample["ts"])).fetchall()
        assert after_reset.get("gaps", 0) >= 1, after_reset  # and no row at that sample:
        assert len(rows) == 1 and rows[0][0] >= 3 and rows[0][1] is None, rows
        assert_no_negative_deltas(probe)
    finally:
        server.drop_database(other)


def test_eviction_is_counted_as_gaps(probe: psycopg.Connection) -> None:
    collect(probe)
    # A different pg_stat_statements_info().dealloc than the one recorded means evictions.
    probe.execute("""UPDATE perfmon.state_sources SET extra = jsonb_build_object('dealloc',
                     (SELECT dealloc FROM pg_stat_statements_info()) - 3)
                     WHERE source = 'statements'""")
    stage = collect(probe)["stages"]["statements"]
    assert stage["evicted"] == 3
    assert stage["gaps"] >= 3


def test_a_statement_whose_text_is_unavailable_is_stored_and_named_later(
        probe: psycopg.Connection) -> None:
    # pg_stat_statements gives NULL texts when it cannot read its query file (here made
    # unreadable; a failed garbage collection of the file does the same to every entry).
    if os.geteuid() != 0:
        pytest.fail("this test makes the server's query text file unreadable and needs root "
                    "(CI runs as root)")
    datadir = probe.execute("SHOW data_directory").fetchone()[0]
    texts = os.path.join(datadir, "pg_stat_tmp", "pgss_query_texts.stat")
    collect(probe)
    run_probe(probe, 3)  # a new statement (its text written to the file while it could be)
    mode = os.stat(texts).st_mode
    os.chmod(texts, 0)
    try:
        assert probe.execute(
            "SELECT count(*) FROM pg_stat_statements WHERE query IS NOT NULL").fetchone() == (0,)
        blind = collect(probe)["stages"]["statements"]
    finally:
        os.chmod(texts, mode)
    assert "error" not in blind, blind
    assert blind["new_statements"] >= 1
    unnamed = probe.execute(
        "SELECT count(*) FROM perfmon.statements WHERE query = '<query text unavailable>'"
    ).fetchone()[0]
    assert unnamed >= 1
    run_probe(probe, 2)
    collect(probe)
    assert probe_calls(probe) == [3, 2]  # the text came back: the statement has its name
    assert probe.execute(
        "SELECT count(*) FROM perfmon.statements WHERE query = '<query text unavailable>'"
    ).fetchone() == (0,)


def test_concurrent_collects_do_not_double_count(probe: psycopg.Connection, installed: str) -> None:
    collect(probe)
    with psycopg.connect(installed) as holder:
        held = holder.execute("SELECT perfmon.collect()").fetchone()[0]
        assert "skipped" not in held
        skipped = collect(probe)  # while the first run's transaction is open
        assert skipped["skipped"] == "another run of this kind is in progress"
        holder.commit()

    stop = threading.Event()
    errors: list[BaseException] = []

    def collector() -> None:
        try:
            with psycopg.connect(installed, autocommit=True) as c:
                while not stop.is_set():
                    c.execute("SELECT perfmon.collect()")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=collector) for _ in range(2)]
    for t in threads:
        t.start()
    with psycopg.connect(installed, autocommit=True) as worker:
        for i in range(40):
            worker.execute(PROBE, (f"c{i}",))
            time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    collect(probe)
    assert sum(probe_calls(probe)) == 40


def test_top_n_keeps_totals_true(probe: psycopg.Connection, installed: str) -> None:
    probe.execute("UPDATE perfmon.config SET value = '10' WHERE key = 'collection.statement_top_n'")
    collect(probe)
    for i in range(25):
        # 25 distinct statements: a different number of output columns each.
        probe.execute("SELECT " + ", ".join(["1"] * (i + 1)) + " FROM probe LIMIT 1")
    stage = collect(probe)["stages"]["statements"]
    assert stage["stored"] == 11  # ten by name and the "(other statements)" row
    other = probe.execute(
        "SELECT calls FROM perfmon.statement_history WHERE stmt_id = 0").fetchone()
    assert other is not None and other[0] >= 15


def test_a_failing_stage_costs_only_its_own_data(probe: psycopg.Connection) -> None:
    probe.execute("""CREATE FUNCTION perfmon.collect_broken(ts timestamptz)
                     RETURNS perfmon.collect_result LANGUAGE plpgsql AS
                     $$ BEGIN RAISE EXCEPTION 'this stage is broken'; END $$""")
    probe.execute("""INSERT INTO perfmon.collectors VALUES
                     ('broken', 'perfmon.collect_broken', 'sample', 15, true, 'test')""")
    collect(probe)
    run_probe(probe, 2)
    stages = collect(probe)["stages"]
    assert stages["broken"]["error"] == "this stage is broken"
    assert stages["statements"]["stored"] >= 1
    assert probe_calls(probe) == [2]
    timings = probe.execute(
        "SELECT count(*) FROM perfmon.collect_timings WHERE stage = 'broken' AND error IS NOT NULL"
    ).fetchone()
    assert timings == (2,)


def test_rates_after_a_failed_databases_stage_divide_by_the_time_covered(
        probe: psycopg.Connection, installed: str) -> None:
    collect(probe)
    good = collect(probe)
    for _ in range(100):
        probe.execute("SELECT txid_current()")
    with psycopg.connect(installed) as holder:
        holder.execute("LOCK perfmon.state_databases IN ACCESS EXCLUSIVE MODE")
        failed = collect(probe)  # the databases stage times out on its lock; the others run
        holder.rollback()
    assert "error" in failed["stages"]["databases"], failed["stages"]
    assert "error" not in failed["stages"]["server"], failed["stages"]
    last = collect(probe)

    def series(ts: str) -> tuple:
        return probe.execute(
            """SELECT tps, commits_per_s, rows_read_per_s, temp_bytes FROM perfmon.database_series
               WHERE ts = %s::timestamptz""", (ts,)).fetchone()

    # The failed sample's database figures are unknown, not 0.
    assert series(failed["ts"]) == (None, None, None, None)
    # The next sample's deltas hold the work of both intervals: its rates divide by both.
    covered_s, commits = probe.execute(
        """SELECT database_interval_s, xact_commit FROM perfmon.server_history
           WHERE ts = %s::timestamptz""", (last["ts"],)).fetchone()
    both_s = probe.execute("SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)::float8",
                           (last["ts"], good["ts"])).fetchone()[0]
    assert commits >= 100
    assert abs(covered_s - both_s) < 0.001, (covered_s, both_s)
    assert abs(float(series(last["ts"])[1]) - commits / both_s) <= 0.01


def test_hostile_relation_names_are_stored_safely(conn: psycopg.Connection) -> None:
    hostile = 'weird "name"; DROP TABLE perfmon.samples; --\u00e9\u4e2d'
    conn.execute(f'CREATE TABLE "{hostile.replace(chr(34), chr(34) * 2)}" (x int)')
    collect(conn)
    assert conn.execute("SELECT rel_name FROM perfmon.relations WHERE rel_name = %s",
                        (hostile,)).fetchone() == (hostile,)
    assert conn.execute("SELECT to_regclass('perfmon.samples') IS NOT NULL").fetchone() == (True,)


def test_settings_changes_are_recorded(conn: psycopg.Connection, server) -> None:
    collect(conn)
    server.execute("ALTER SYSTEM SET work_mem = '7MB'")
    server.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(0.5)
        collect(conn)
        changed = conn.execute(
            "SELECT old_value, new_value FROM perfmon.settings_history WHERE name = 'work_mem'"
        ).fetchall()
        assert changed == [("4096", "7168")]
    finally:
        server.execute("ALTER SYSTEM RESET work_mem")
        server.execute("SELECT pg_reload_conf()")


def test_sizes_are_stored_when_they_change(probe: psycopg.Connection) -> None:
    def probe_sizes() -> list[int]:
        return [r[0] for r in probe.execute(
            """SELECT h.size_bytes FROM perfmon.size_history h
               JOIN perfmon.relations r ON r.rel_id = h.object_id
               WHERE h.kind = 'r' AND r.rel_name = 'probe' ORDER BY h.ts""")]

    first = probe.execute("SELECT perfmon.collect_sizes()").fetchone()[0]
    assert first["stages"]["sizes"]["stored"] >= 2  # this database and the probe table at least
    assert len(probe_sizes()) == 1
    probe.execute("SELECT perfmon.collect_sizes()")
    assert len(probe_sizes()) == 1  # unchanged: nothing stored
    probe.execute("INSERT INTO probe SELECT g, repeat('z', 500) FROM generate_series(1000, 3000) g")
    probe.execute("SELECT perfmon.collect_sizes()")
    sizes = probe_sizes()
    assert len(sizes) == 2 and sizes[1] > sizes[0] + 1_000_000
    database = probe.execute(
        """SELECT count(*) FROM perfmon.size_history
           WHERE kind = 'd' AND object_id = (SELECT oid FROM pg_database
                                             WHERE datname = current_database())""").fetchone()
    assert database[0] >= 2


def test_sizes_skip_a_locked_table_and_take_the_rest(probe: psycopg.Connection, installed: str) -> None:
    """A long VACUUM FULL / CLUSTER / ALTER TABLE holds ACCESS EXCLUSIVE on one table."""
    probe.execute("CREATE TABLE other_t AS SELECT g FROM generate_series(1, 1000) g")
    probe.execute("SELECT perfmon.collect_sizes()")
    probe.execute("INSERT INTO other_t SELECT g FROM generate_series(1, 100000) g")
    probe.execute("INSERT INTO probe SELECT g, repeat('z', 500) FROM generate_series(1000, 3000) g")

    def sizes(name: str) -> int:
        return probe.execute("SELECT count(*) FROM perfmon.size_history h JOIN perfmon.relations r "
                             "ON r.rel_id = h.object_id WHERE h.kind = 'r' AND r.rel_name = %s",
                             (name,)).fetchone()[0]

    def database_sizes() -> int:
        return probe.execute("SELECT count(*) FROM perfmon.size_history WHERE kind = 'd'").fetchone()[0]

    databases = database_sizes()
    with psycopg.connect(installed) as holder:
        holder.execute("LOCK TABLE probe IN ACCESS EXCLUSIVE MODE")
        done = probe.execute("SELECT perfmon.collect_sizes()").fetchone()[0]["stages"]["sizes"]
        holder.rollback()
    assert "error" not in done and done["tables_locked"] == 1, done
    assert (sizes("other_t"), sizes("probe")) == (2, 1)   # the locked table keeps its last size
    assert database_sizes() > databases
    probe.execute("SELECT perfmon.collect_sizes()")
    assert sizes("probe") == 2
