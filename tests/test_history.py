"""History: retention, rollups, the history views, restarts, and pg_cron at work."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from click.testing import CliRunner

from helpers import collect, flush, probe_calls, run_probe
from pgperfmon import cli, config, deploy


def partitions(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY 1", (f"perfmon.{table}",))]


def test_retention_drops_old_partitions_and_keeps_new(conn: psycopg.Connection) -> None:
    collect(conn)
    conn.execute("SELECT perfmon.maintain_partitions(now() - interval '40 days')")
    old = [p for p in partitions(conn, "samples") if p < "samples_p" + time.strftime(
        "%Y%m%d", time.gmtime(time.time() - 35 * 86400))]
    assert len(old) >= 3
    conn.execute("""INSERT INTO perfmon.samples (server_id, ts, kind, duration_ms, stages)
                    VALUES (1, now() - interval '40 days', 'sample', 1, '{}')""")
    done = conn.execute("SELECT perfmon.maintain()").fetchone()[0]
    assert done["partitions_dropped"] >= len(old)
    remaining = partitions(conn, "samples")
    assert not set(old) & set(remaining)
    today = "samples_p" + time.strftime("%Y%m%d", time.gmtime())
    assert today in remaining
    ahead = config.load(None, env={}).collection.partitions_ahead_days
    assert len([p for p in remaining if p > today]) == ahead
    assert conn.execute("SELECT count(*) FROM perfmon.samples WHERE ts < now() - interval '30 days'"
                        ).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM perfmon.samples").fetchone()[0] >= 1


def test_rollups_sum_the_raw_history_once(probe: psycopg.Connection) -> None:
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '3 days')")
    probe.execute("SELECT perfmon.maintain_partitions(now())")
    # Synthetic history: one row every 10 minutes for three days for statement 0.
    probe.execute("""
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, g, 'sample', 600, 1, '{}'
        FROM generate_series(date_trunc('hour', now()) - interval '3 days', now(), interval '10 min') g;
        INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
        SELECT 1, g, 0, 2, 1.5
        FROM generate_series(date_trunc('hour', now()) - interval '3 days',
                             date_trunc('hour', now()) - interval '1 hour', interval '10 min') g;
    """)
    first = probe.execute("SELECT perfmon.rollup()").fetchone()[0]
    assert first["hours"] >= 71 and first["days"] >= 2
    hourly = probe.execute(
        "SELECT count(*), sum(calls), sum(exec_ms) FROM perfmon.statement_hourly WHERE stmt_id = 0"
    ).fetchone()
    raw = probe.execute(
        "SELECT sum(calls), sum(exec_ms) FROM perfmon.statement_history "
        "WHERE stmt_id = 0 AND ts < date_trunc('hour', now())").fetchone()
    assert hourly[0] == 72 and (hourly[1], hourly[2]) == (raw[0], raw[1])
    daily = probe.execute(
        "SELECT sum(calls) FROM perfmon.statement_daily WHERE stmt_id = 0").fetchone()[0]
    whole_days = probe.execute(
        "SELECT sum(calls) FROM perfmon.statement_history WHERE stmt_id = 0 "
        "AND ts < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'").fetchone()[0]
    assert daily == whole_days
    again = probe.execute("SELECT perfmon.rollup()").fetchone()[0]
    assert again == {"hours": 0, "days": 0}
    assert probe.execute(
        "SELECT sum(calls) FROM perfmon.statement_hourly WHERE stmt_id = 0").fetchone()[0] == hourly[1]
    # top_queries reads rolled-up hours from the rollup and the rest from raw samples.
    last_day = probe.execute(
        "SELECT calls FROM perfmon.top_queries WHERE stmt_id = 0").fetchone()[0]
    expected = probe.execute(
        "SELECT sum(calls) FROM perfmon.statement_history WHERE stmt_id = 0 "
        "AND ts >= date_trunc('hour', now() - interval '24 hours') + interval '1 hour'"
    ).fetchone()[0]
    assert last_day == expected


def test_top_and_slow_queries(probe: psycopg.Connection) -> None:
    probe.execute("UPDATE perfmon.config SET value = '20' "
                  "WHERE key = 'database.performance_thresholds.slow_query_ms'")
    collect(probe)
    run_probe(probe, 5)
    for _ in range(3):
        probe.execute("SELECT pg_sleep(0.05)")
    collect(probe)
    top = probe.execute(
        "SELECT query, calls, mean_ms, share_of_total_pct FROM perfmon.top_queries "
        "WHERE database = current_database() ORDER BY rank").fetchall()
    by_query = {q: (calls, mean) for q, calls, mean, _ in top}
    assert by_query["SELECT pg_sleep($1)"][0] == 3
    assert by_query["SELECT pg_sleep($1)"][1] >= 50
    assert by_query["SELECT count(*) FROM probe WHERE v = $1"][0] == 5
    slow = [r[0] for r in probe.execute(
        "SELECT query FROM perfmon.slow_queries WHERE database = current_database()")]
    assert "SELECT pg_sleep($1)" in slow
    assert "SELECT count(*) FROM probe WHERE v = $1" not in slow


def test_blocking_locks_and_lock_history(probe: psycopg.Connection, installed: str) -> None:
    collect(probe)
    holder = psycopg.connect(installed)
    holder.execute("LOCK TABLE probe IN ACCESS EXCLUSIVE MODE")
    holder_pid = holder.info.backend_pid
    waiter_pid: list[int] = []

    def wait_for_lock() -> None:
        with psycopg.connect(installed, autocommit=True) as w:
            waiter_pid.append(w.info.backend_pid)
            w.execute("SELECT count(*) FROM probe")

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        rows = []
        while time.monotonic() < deadline and not rows:
            rows = probe.execute(
                "SELECT blocked_pid, blocking_pid, blocking_is_root, relation, wanted_mode "
                "FROM perfmon.blocking_locks").fetchall()
            time.sleep(0.1)
        assert rows == [(waiter_pid[0], holder_pid, True, "public.probe", "AccessShareLock")]
        collect(probe)
        history = probe.execute(
            "SELECT blocked_pid, blocking_pid, relation FROM perfmon.lock_history").fetchall()
        assert history == [(waiter_pid[0], holder_pid, "public.probe")]
        usage = probe.execute(
            "SELECT waiting FROM perfmon.connection_usage WHERE live").fetchone()
        assert usage == (1,)
        series = probe.execute(
            "SELECT blocked_sessions FROM perfmon.database_series ORDER BY ts DESC LIMIT 1"
        ).fetchone()
        assert series == (1,)
    finally:
        holder.rollback()
        holder.close()
        thread.join()


def test_connection_usage_history(probe: psycopg.Connection) -> None:
    collect(probe)
    collect(probe)
    rows = probe.execute(
        "SELECT live, total, max_connections, total_pct FROM perfmon.connection_usage").fetchall()
    assert rows[0][0] is True
    assert [r[0] for r in rows[1:]] == [False, False]
    for _live, total, max_connections, pct in rows:
        assert float(pct) == pytest.approx(100 * total / max_connections, abs=0.05)


def test_database_series_has_rates(probe: psycopg.Connection) -> None:
    collect(probe)
    run_probe(probe, 20)
    flush(probe)
    collect(probe)
    tps, hit = probe.execute(
        "SELECT tps, cache_hit_pct FROM perfmon.database_series ORDER BY ts DESC LIMIT 1").fetchone()
    assert tps > 0
    assert 0 < hit <= 100


def test_replication_status_shows_a_slot(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_create_physical_replication_slot('perfmon_test_slot', true)")
    try:
        conn.execute("CREATE TABLE filler AS SELECT g FROM generate_series(1, 20000) g")
        row = conn.execute("SELECT kind, active, retained_wal_bytes > 0 FROM "
                           "perfmon.replication_status WHERE name = 'perfmon_test_slot'").fetchone()
        assert row == ("slot", False, True)
        collect(conn)
        assert conn.execute("SELECT count(*) FROM perfmon.replication_history "
                            "WHERE name = 'perfmon_test_slot'").fetchone() == (1,)
    finally:
        conn.execute("SELECT pg_drop_replication_slot('perfmon_test_slot')")


def _cluster_or_fail(server):
    if server.cluster is None:
        pytest.fail("restart tests need the embedded test cluster (PGPERFMON_TEST_DSN is set)")
    return server.cluster


def test_clean_restart_between_samples_keeps_counting(server, paused_cron: str) -> None:
    installed = paused_cron
    cluster = _cluster_or_fail(server)
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("CREATE TABLE probe (id int PRIMARY KEY, v text)")
        collect(c)
        run_probe(c, 3)
    cluster.restart("fast")  # statistics survive a clean shutdown
    with psycopg.connect(installed, autocommit=True) as c:
        run_probe(c, 2)
        collect(c)
        assert probe_calls(c) == [5]


def test_crash_between_samples_gives_a_baseline_not_a_spike(server, paused_cron: str) -> None:
    installed = paused_cron
    cluster = _cluster_or_fail(server)
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("CREATE TABLE probe (id int PRIMARY KEY, v text)")
        collect(c)
        run_probe(c, 30)
    cluster.restart("immediate")  # a crash: statistics and UNLOGGED state are gone
    with psycopg.connect(installed, autocommit=True) as c:
        run_probe(c, 2)
        after = collect(c)
        assert after["stages"]["statements"]["baseline"] is True
        assert probe_calls(c) == []
        run_probe(c, 4)
        collect(c)
        assert probe_calls(c) == [4]


@pytest.mark.cron
def test_pg_cron_runs_the_collector_every_10_seconds(installed: str, tmp_path) -> None:
    """The one test that waits for pg_cron's minute tick: sub-minute sampling, unattended."""
    fast = tmp_path / "fast.yml"
    fast.write_text("collection:\n  interval_seconds: 10\n")
    deploy.install(installed, config.load(fast, env={}))
    with psycopg.connect(installed, autocommit=True) as c:
        c.execute("CREATE TABLE probe (id int PRIMARY KEY, v text)")
        deadline = time.monotonic() + 100
        stamps: list = []
        while time.monotonic() < deadline and len(stamps) < 4:
            run_probe(c, 1)
            stamps = [r[0].timestamp() for r in c.execute(
                "SELECT ts FROM perfmon.samples WHERE kind = 'sample' ORDER BY ts")]
            time.sleep(1)
        assert len(stamps) >= 4, f"pg_cron took {len(stamps)} samples in 100 s"
        # One sample in each 10-second slot, on time. The first slot of a minute runs when
        # pg_cron has started the job, which a loaded machine can delay by seconds (so the
        # gap after it can fall under 8 s, which the old check of 8-12 s gaps took for a
        # fault); every later slot runs at its time.
        slots = [int(ts // 10) for ts in stamps]
        late = [ts - slot * 10 for ts, slot in zip(stamps, slots, strict=True) if slot % 6 != 0]
        assert all(s < 2 for s in late), late
        steps = [b - a for a, b in itertools.pairwise(slots)]
        assert all(step == 1 for step in steps), steps
        errors = c.execute("SELECT stage, error FROM perfmon.collect_timings "
                           "WHERE error IS NOT NULL").fetchall()
        assert errors == []
        assert sum(probe_calls(c)) >= 1
    result = CliRunner().invoke(cli.main, ["status", "--dsn", installed])
    assert result.exit_code == 0, result.output
    assert "newest sample:" in result.output


def test_rollups_are_utc_hours_whatever_the_session_time_zone(probe: psycopg.Connection) -> None:
    """pg_cron runs with the server's TimeZone: a half-hour zone must not shift the hours."""
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '4 days')")
    probe.execute("SELECT perfmon.maintain_partitions(now())")
    probe.execute("""
        CREATE TEMP TABLE b AS
        SELECT date_trunc('day', now(), 'UTC') - interval '3 days' AS base;
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, g, 'sample', 600, 1, '{}'
        FROM b, generate_series(b.base + interval '5 min', b.base + interval '2 days 5 min',
                                interval '10 min') g;
        INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
        SELECT 1, g, 0, 1, 1
        FROM b, generate_series(b.base + interval '5 min', b.base + interval '2 days', interval '10 min') g;
    """)
    probe.execute("SET TimeZone = 'Asia/Kolkata'")
    for h in range(1, 60):
        probe.execute("SELECT perfmon.rollup((SELECT base FROM b) + make_interval(hours => %s, mins => 7))",
                      (h,))
    probe.execute("RESET TimeZone")
    hours = probe.execute("SELECT DISTINCT extract(minute FROM ts AT TIME ZONE 'UTC') "
                          "FROM perfmon.statement_hourly").fetchall()
    assert hours == [(0,)]
    raw = probe.execute("SELECT (ts AT TIME ZONE 'UTC')::date, sum(calls) FROM perfmon.statement_history "
                        "GROUP BY 1 ORDER BY 1").fetchall()
    daily = probe.execute("SELECT (ts AT TIME ZONE 'UTC')::date, sum(calls) FROM perfmon.statement_daily "
                          "GROUP BY 1 ORDER BY 1").fetchall()
    assert daily == raw[:2] and daily[0][1] == 144


def _beside(dsn: str, held: str, beside: list[str], hold_s: float) -> list[str]:
    """Runs `held` in a transaction kept open hold_s seconds while another session runs `beside`."""
    errors: list[str] = []

    def other() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as second:
                for statement in beside:
                    cur = second.execute(statement)
                    rows = cur.fetchall() if cur.description else []
                    if "error" in str(rows):
                        errors.append(str(rows))
        except psycopg.Error as exc:
            errors.append(repr(exc))

    with psycopg.connect(dsn) as first:
        first.execute(held)
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(hold_s)
        first.commit()
        thread.join()
    return errors


def test_two_runs_creating_the_same_partitions_at_once(probe: psycopg.Connection, installed: str) -> None:
    """collect() and collect_sizes() both create the new UTC day's partitions at midnight."""
    today = probe.execute("SELECT 'samples_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')").fetchone()[0]
    probe.execute(f"DROP TABLE perfmon.{today}")
    assert _beside(installed, "SELECT perfmon.collect()", ["SELECT perfmon.collect_sizes()"], 0.3) == []
    assert today in partitions(probe, "samples")
    ahead = "SELECT perfmon.maintain_partitions(now() + interval '40 days')"
    assert _beside(installed, ahead, ["SET lock_timeout = '20s'", ahead], 1.5) == []


def test_two_rollups_at_once_add_each_hour_once(probe: psycopg.Connection, installed: str) -> None:
    """A DBA's rollup() beside the hourly job's: the second waits and finds nothing left to do."""
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '1 day')")
    probe.execute("""
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, g, 'sample', 600, 1, '{}'
        FROM generate_series(date_trunc('hour', now()) - interval '5 hours', now(), interval '10 min') g;
        INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
        SELECT 1, g, 0, 1, 1
        FROM generate_series(date_trunc('hour', now()) - interval '5 hours', now(), interval '10 min') g;
    """)
    assert _beside(installed, "SELECT perfmon.rollup()", ["SELECT perfmon.rollup()"], 1.5) == []
    assert probe.execute("SELECT count(*), sum(calls) FROM perfmon.statement_hourly").fetchone() == (5, 30)


def test_a_sample_at_the_rollup_boundary_is_counted_once(probe: psycopg.Connection) -> None:
    """Hours are rolled half-open, [hour, hour + 1h): a sample exactly at rollup_hourly_until
    is the first of the raw ones, in statement_totals, top_queries and workload_trend alike."""
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '1 day')")
    probe.execute("""
        CREATE TEMP TABLE b AS SELECT date_trunc('hour', now()) - interval '2 hours' AS t;
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, b.t + g * interval '10 min', 'sample', 600, 1, '{}' FROM b, generate_series(-1, 1) g;
        INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
        SELECT 1, b.t + g * interval '10 min', 0, 1, 1 FROM b, generate_series(-1, 1) g;
    """)
    queries = ("SELECT calls FROM perfmon.statement_totals(now() - interval '6 hours', now())",
               "SELECT calls FROM perfmon.top_queries WHERE stmt_id = 0",
               "SELECT sum(calls) FROM perfmon.workload_trend((SELECT t FROM b) - interval '1 hour', "
               "(SELECT t FROM b) + interval '1 hour')")
    before = [probe.execute(q).fetchall() for q in queries]
    probe.execute("SELECT perfmon.rollup((SELECT t FROM b) + interval '7 min')")
    assert probe.execute("SELECT value::timestamptz = (SELECT t FROM b) FROM perfmon.meta "
                         "WHERE key = 'rollup_hourly_until'").fetchone() == (True,)
    after = [probe.execute(q).fetchall() for q in queries]
    assert before == after == [[(3,)]] * 3


def test_a_clock_ahead_at_the_rollup_hides_no_later_sample(probe: psycopg.Connection) -> None:
    """The hourly job fired while the clock ran 3 hours ahead; the clock was corrected."""
    collect(probe)
    probe.execute("SELECT perfmon.rollup(now() + interval '3 hours')")
    collect(probe)
    run_probe(probe, 5)
    collect(probe)
    assert probe_calls(probe) == [5]
    top = probe.execute("SELECT calls FROM perfmon.top_queries "
                        "WHERE query = 'SELECT count(*) FROM probe WHERE v = $1'").fetchall()
    assert top == [(5,)]
    assert probe.execute("SELECT coalesce(bool_and(m.value::timestamptz <= date_trunc('hour', s.ts, 'UTC')), "
                         "true) FROM perfmon.meta AS m, (SELECT max(ts) AS ts FROM perfmon.samples) AS s "
                         "WHERE m.key = 'rollup_hourly_until'").fetchone() == (True,)


def test_a_rolled_up_hour_counts_the_seconds_its_samples_covered(probe: psycopg.Connection) -> None:
    """The collector was down 10 hours (1 transaction a second went on): one sample covers them."""
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '1 day')")
    probe.execute("""
        CREATE TEMP TABLE b AS SELECT date_trunc('hour', now()) - interval '3 hours' AS t;
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, b.t + interval '5 min', 'sample', 36000, 1, '{}'::jsonb FROM b
        UNION ALL SELECT 1, now(), 'sample', 10500, 1, '{}';
        INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total, sessions_active,
            sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions, interval_s, xact_commit,
            database_interval_s)
        SELECT 1, b.t + interval '5 min', 100, 1, 1, 0, 0, 0, 0, 36000, 36000, 36000 FROM b;
        INSERT INTO perfmon.database_history (server_id, ts, datid, numbackends, xact_commit)
        SELECT 1, b.t + interval '5 min', 1, 1, 36000 FROM b;
    """)
    trend = ("SELECT covered_s, transactions, tps FROM perfmon.workload_trend("
             "(SELECT t FROM b), (SELECT t FROM b) + interval '1 hour')")
    before = probe.execute(trend).fetchall()
    assert probe.execute("SELECT perfmon.rollup()").fetchone()[0]["hours"] >= 3
    assert probe.execute(trend).fetchall() == before == [(36000, 36000, 1)]
    # the BI view of the rollups divides by the same seconds
    assert probe.execute("SELECT covered_s, tps FROM perfmon.database_rollup WHERE bucket = 'hour' "
                         "AND ts = (SELECT t FROM b)").fetchall() == [(36000, 1)]


def test_trend_tps_divides_by_the_seconds_the_database_sums_cover(probe: psycopg.Connection) -> None:
    """The databases stage failed at t (nothing stored); at t + 1 min its deltas cover 2 minutes.

    At 1 transaction a second, the bucket of t + 1 min holds 120 transactions over 120 s: tps 1,
    not 2; the bucket of t has no database sums, so no tps."""
    probe.execute("""
        CREATE TEMP TABLE f AS SELECT date_trunc('minute', now()) - interval '5 min' AS t;
        INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total, sessions_active,
            sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions, interval_s,
            xact_commit, database_interval_s)
        SELECT 1, f.t, 100, 1, 1, 0, 0, 0, 0, 60, NULL, NULL FROM f
        UNION ALL SELECT 1, f.t + interval '1 min', 100, 1, 1, 0, 0, 0, 0, 60, 120, 120 FROM f;
    """)
    assert probe.execute(
        "SELECT covered_s, transactions, tps FROM perfmon.workload_trend("
        "(SELECT t FROM f), (SELECT t FROM f) + interval '2 min', 60)").fetchall() == [
            (60, 0, None), (60, 120, 1)]


def test_raw_days_are_rolled_up_before_retention_drops_them(probe: psycopg.Connection) -> None:
    """pg_cron was off for five days (nothing rolled up) and retention is 2 days: the first
    partition maintenance after it (a new day's collect(), the nightly job, rollup() itself)
    dropped the raw days before they were rolled up, and they were lost from the rollups too."""
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '5 days')")
    probe.execute("""
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, g, 'sample', 600, 1, '{}'
        FROM generate_series(date_trunc('hour', now()) - interval '5 days', now(), interval '10 min') g;
        INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
        SELECT 1, g, 0, 2, 1.5
        FROM generate_series(date_trunc('hour', now()) - interval '5 days',
                             date_trunc('hour', now()) - interval '1 hour', interval '10 min') g;
    """)
    probe.execute("DELETE FROM perfmon.meta WHERE key IN ('rollup_hourly_until', 'rollup_daily_until')")
    probe.execute("UPDATE perfmon.config SET value = '2' WHERE key = 'collection.retention_days'")
    sent = probe.execute("SELECT sum(calls) FROM perfmon.statement_history WHERE stmt_id = 0").fetchone()[0]
    dropped = probe.execute("SELECT count(*) FROM perfmon.maintain_partitions() "
                            "WHERE action = 'dropped'").fetchone()[0]
    assert dropped >= 3 * 9  # three days of the nine raw tables at least
    rolled = probe.execute("SELECT coalesce(sum(calls), 0) FROM perfmon.statement_hourly WHERE stmt_id = 0"
                           ).fetchone()[0]
    raw = probe.execute(
        "SELECT coalesce(sum(calls), 0) FROM perfmon.statement_history WHERE stmt_id = 0 "
        "AND ts >= (SELECT value::timestamptz FROM perfmon.meta WHERE key = 'rollup_hourly_until')"
    ).fetchone()[0]
    assert rolled + raw == sent, (rolled, raw, sent)


def test_server_totals_and_workload_trend_agree_hour_by_hour(probe: psycopg.Connection) -> None:
    """A report's totals (perfmon.server_totals) and a dashboard's points (perfmon.workload_trend)
    for the same hours: an hour whose raw samples retention dropped, a rolled-up hour whose raw
    samples remain, raw hours, and windows straddling rollup_hourly_until. Samples fall on the
    hour, each with another count, so a window edge taken the other way shows."""
    probe.execute("SELECT perfmon.maintain_partitions(now() - interval '1 day')")
    probe.execute("""
        CREATE TEMP TABLE b AS SELECT date_trunc('hour', now()) - interval '4 hours' AS h0;
        CREATE TEMP TABLE s AS
        SELECT b.h0 + g * interval '10 min' AS ts, g FROM b, generate_series(0, 24) AS g;
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, ts, 'sample', 600, 1, '{}' FROM s;
        INSERT INTO perfmon.databases VALUES (1, 1, 'appdb') ON CONFLICT DO NOTHING;
        -- the databases stage failed at g = 15: g = 16 holds both samples' deltas (1200 s)
        INSERT INTO perfmon.database_history (server_id, ts, datid, xact_commit, xact_rollback,
                                              blks_hit, blks_read)
        SELECT 1, ts, 1, 100 + g * (CASE WHEN g = 16 THEN 2 ELSE 1 END), g % 3 + 1, 90 + g, 10
        FROM s WHERE g <> 15;
        INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
            sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions,
            interval_s, xact_commit, xact_rollback, blks_hit, blks_read, database_interval_s)
        SELECT 1, s.ts, 100, 1, 1, 0, 0, 0, 0, 600, d.xact_commit, d.xact_rollback, d.blks_hit,
               d.blks_read, CASE WHEN s.g = 15 THEN NULL WHEN s.g = 16 THEN 1200 ELSE 600 END
        FROM s LEFT JOIN perfmon.database_history AS d ON d.ts = s.ts;
    """)
    h0 = probe.execute("SELECT h0 FROM b").fetchone()[0]
    probe.execute("SELECT perfmon.rollup(%s)", (h0 + timedelta(hours=2, minutes=5),))
    assert probe.execute("SELECT value::timestamptz FROM perfmon.meta WHERE key = 'rollup_hourly_until'"
                         ).fetchone()[0] == h0 + timedelta(hours=2)
    # retention dropped the raw samples of the first hour
    probe.execute("DELETE FROM perfmon.server_history WHERE ts < %s", (h0 + timedelta(hours=1),))
    probe.execute("DELETE FROM perfmon.database_history WHERE ts < %s", (h0 + timedelta(hours=1),))

    def totals(start, end) -> tuple:
        row = probe.execute(
            "SELECT covered_s, commits + rollbacks, round((commits + rollbacks) / "
            "nullif(xact_covered_s, 0)::numeric, 2)::float8, round(100 * blks_hit / "
            "nullif(blks_hit + blks_read, 0), 2)::float8 FROM perfmon.server_totals(%s, %s)",
            (start, end)).fetchone()
        return row[0], int(row[1]), row[2], row[3]

    def trend(start, end, bucket_s: int) -> dict:
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in probe.execute(
            "SELECT ts, covered_s, transactions, tps, cache_hit_pct FROM perfmon.workload_trend(%s, %s, %s)",
            (start, end, bucket_s))}

    hours = [h0 + timedelta(hours=i) for i in range(5)]
    points = trend(hours[0], hours[-1], 3600)
    assert sorted(points) == hours[:4]
    for start in hours[:4]:
        assert totals(start, start + timedelta(hours=1)) == points[start], start
    # hour 2 (raw) holds the failed databases stage: 6 samples, 3600 s, transactions over 3600 s too
    assert points[hours[2]][0] == 3600 and points[hours[2]][2] == round(
        sum(100 + g * (2 if g == 16 else 1) + g % 3 + 1 for g in range(12, 18) if g != 15) / 3600, 2)
    # windows straddling rollup_hourly_until (hours[2]): one bucket each
    for start, width in ((hours[1], 7200), (hours[1] + timedelta(minutes=30), 3600),
                         (hours[0], 4 * 3600)):
        end = start + timedelta(seconds=width)
        assert list(trend(start, end, width).values()) == [totals(start, end)], (start, width)


def test_workload_trend_refuses_a_bucket_that_is_not_positive(conn: psycopg.Connection) -> None:
    """A BI tool's wrong parameter: 0 or -5 s became 1-second buckets, NULL one bucket without
    a start, silently."""
    conn.execute("SELECT perfmon.collect()")
    for bucket in (0, -5, None):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="bucket_s must be a positive"):
            conn.execute("SELECT * FROM perfmon.workload_trend(now() - interval '1 hour', now(), %s)",
                         (bucket,))
    for start in ("NULL", "'-infinity'"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="needs finite from_ts and to_ts"):
            conn.execute(f"SELECT * FROM perfmon.workload_trend({start}, now())")


def _waiting_on_a_lock(conn: psycopg.Connection, pid: int) -> bool:
    return conn.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted)",
                        (pid,)).fetchone()[0]


def _until(condition, what: str) -> None:
    """Waits for a state of the server (a session waiting on a lock), not for a time."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_maintain_partitions_by_hand_beside_collect_loses_no_sample(probe: psycopg.Connection,
                                                                     installed: str) -> None:
    """A DBA's maintain_partitions() while pg_cron's collect() is between two stages.

    collect() holds the history table of each stage it ran until it commits; maintain_partitions()
    locks each table it creates a partition of until it commits, in the order of their names. With
    no lock taken first by both, the DBA's run waited on database_history (written by collect's
    first stage) while holding activity_history, which a later stage of collect() wanted: a
    deadlock (or collect's lock timeout), and the sample lost that stage's rows.
    """
    collect(probe)  # the baseline: the next sample writes deltas
    # A stage between databases (ordinal 10) and the rest, waiting on a lock this test holds.
    probe.execute("""
        CREATE FUNCTION public.wait_for_the_test(ts timestamptz) RETURNS perfmon.collect_result
        LANGUAGE sql SET lock_timeout = 0
        AS $$ SELECT pg_advisory_xact_lock(4242); SELECT (0, 0, NULL)::perfmon.collect_result $$;
        INSERT INTO perfmon.collectors (name, function_name, schedule, ordinal, description)
        VALUES ('wait_for_the_test', 'public.wait_for_the_test', 'sample', 15, 'a pause the test controls');
    """)
    probe.execute("SELECT pg_advisory_lock(4242)")
    sampled: list[dict] = []
    maintained: list[object] = []

    def sample(session: psycopg.Connection) -> None:
        sampled.append(collect(session))

    def maintain(session: psycopg.Connection) -> None:
        # The DBA's run is not the deadlock's victim: the sample would be.
        session.execute("SET deadlock_timeout = '10min'")
        try:
            maintained.extend(session.execute(
                "SELECT * FROM perfmon.maintain_partitions(now() + interval '5 days')").fetchall())
        except psycopg.Error as exc:
            maintained.append(exc)

    with psycopg.connect(installed, autocommit=True) as cron, \
            psycopg.connect(installed, autocommit=True) as dba:
        collector = threading.Thread(target=sample, args=(cron,))
        collector.start()
        _until(lambda: _waiting_on_a_lock(probe, cron.info.backend_pid), "collect() at the pause")
        maintainer = threading.Thread(target=maintain, args=(dba,))
        maintainer.start()
        _until(lambda: _waiting_on_a_lock(probe, dba.info.backend_pid), "maintain_partitions() waiting")
        probe.execute("SELECT pg_advisory_unlock(4242)")
        collector.join(timeout=60)
        maintainer.join(timeout=60)
    assert not collector.is_alive() and not maintainer.is_alive()
    errors = {k: v["error"] for k, v in sampled[0]["stages"].items() if "error" in v}
    assert errors == {}
    assert not [m for m in maintained if isinstance(m, Exception)], maintained
    assert ("created", "activity_history_p" + time.strftime(
        "%Y%m%d", time.gmtime(time.time() + 5 * 86400))) in maintained


def test_collect_waits_for_a_maintain_partitions_left_open(probe: psycopg.Connection, installed: str) -> None:
    """A DBA's maintain_partitions() in a transaction still open: the sample waits for it whole,
    where each stage writing a table it had locked gave up after collection.lock_timeout_ms (1 s)."""
    collect(probe)
    sampled: list[dict] = []
    with psycopg.connect(installed) as dba, psycopg.connect(installed, autocommit=True) as cron:
        dba.execute("SELECT * FROM perfmon.maintain_partitions(now() + interval '5 days')").fetchall()
        def sample() -> None:
            try:
                sampled.append(collect(cron))
            except psycopg.Error as exc:
                sampled.append({"stages": {"collect()": {"error": str(exc)}}})

        collector = threading.Thread(target=sample)
        collector.start()
        # Until the sample has waited past its lock timeout (or, giving up, has finished).
        _until(lambda: not collector.is_alive() or probe.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted "
            "AND waitstart < clock_timestamp() - interval '3 seconds')",
            (cron.info.backend_pid,)).fetchone()[0], "collect() waiting past its lock timeout")
        dba.commit()
        collector.join(timeout=60)
    assert not collector.is_alive()
    assert {k: v["error"] for k, v in sampled[0]["stages"].items() if "error" in v} == {}


def test_a_rollup_added_as_a_row_is_rolled_up_and_kept_from_retention(probe: psycopg.Connection) -> None:
    """A new rollup is one row of perfmon.rollups: rollup() fills it, and maintain_partitions()
    rolls its source up before retention drops it (it kept a list of its own of the tables the
    rollups read, where a new rollup was forgotten and its raw days dropped unrolled)."""
    probe.execute("""
        CREATE TABLE perfmon.table_hourly (server_id integer NOT NULL, ts timestamptz NOT NULL,
            rel_id integer NOT NULL, samples integer NOT NULL, seq_scan bigint) PARTITION BY RANGE (ts);
        INSERT INTO perfmon.partitioned_tables (table_name, granularity, retention_key)
        VALUES ('table_hourly', 'month', 'collection.rollup_hourly_retention_days');
        INSERT INTO perfmon.rollups (target_table, source_table, bucket, key_columns, columns, aggregates)
        VALUES ('table_hourly', 'table_history', 'hour', '{rel_id}', '{samples, seq_scan}',
                '{count(*), sum(seq_scan)}');
    """)
    # Old partitions of table_history only (and of the sample log): none of a table the old
    # list named, whose drop would have rolled up every rollup along with it.
    probe.execute("SELECT perfmon.ensure_day_partitions(t, now() - interval '5 days', now()) "
                  "FROM unnest(ARRAY['table_history', 'samples']) AS t")
    probe.execute("""
        DO $$ DECLARE m date; BEGIN
            FOR m IN SELECT DISTINCT date_trunc('month', d)::date
                     FROM generate_series((now() AT TIME ZONE 'UTC')::date - 5,
                                          (now() AT TIME ZONE 'UTC')::date + 5, '1 day') d LOOP
                EXECUTE format('CREATE TABLE perfmon.%I PARTITION OF perfmon.table_hourly '
                               'FOR VALUES FROM (%L) TO (%L)', 'table_hourly_p' || to_char(m, 'YYYYMM'),
                               m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month') AT TIME ZONE 'UTC');
            END LOOP;
        END $$""")
    probe.execute("""
        INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
        SELECT 1, g, 'sample', 600, 1, '{}'
        FROM generate_series(date_trunc('hour', now()) - interval '5 days', now(), interval '10 min') g;
        INSERT INTO perfmon.table_history (server_id, ts, rel_id, seq_scan)
        SELECT 1, g, 7, 3
        FROM generate_series(date_trunc('hour', now()) - interval '5 days',
                             date_trunc('hour', now()) - interval '1 hour', interval '10 min') g;
    """)
    probe.execute("INSERT INTO perfmon.meta (key, value) VALUES "
                  "('rollup_hourly_until', date_trunc('hour', now()) - interval '5 days'), "
                  "('rollup_daily_until', date_trunc('day', now(), 'UTC') - interval '5 days') "
                  "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
    probe.execute("UPDATE perfmon.config SET value = '2' WHERE key = 'collection.retention_days'")
    sent = probe.execute("SELECT sum(seq_scan) FROM perfmon.table_history").fetchone()[0]
    dropped = probe.execute("SELECT count(*) FROM perfmon.maintain_partitions() "
                            "WHERE action = 'dropped' AND partition_name LIKE 'table_history%'").fetchone()[0]
    assert dropped >= 3
    rolled = probe.execute("SELECT sum(samples), sum(seq_scan), count(DISTINCT ts) FROM perfmon.table_hourly "
                           "WHERE rel_id = 7").fetchone()
    assert rolled == (sent // 3, sent, 5 * 24)  # every hour before the current one, once


def _errors_of_parts(result: dict) -> dict:
    """The errors of analyze()'s parts, and of each alert rule (a rule's error costs its alerts)."""
    rules = result.get("alerts", {}).get("rules", {})
    return {name: v["error"] for name, v in [*result.items(), *rules.items()]
            if isinstance(v, dict) and "error" in v}


def test_maintain_partitions_by_hand_beside_analyze_costs_no_part(probe: psycopg.Connection,
                                                                  installed: str) -> None:
    """A DBA's maintain_partitions() while pg_cron's analyze() is between two parts.

    analyze() holds the history tables its parts read until it commits (the anomalies part:
    metric_samples, server_history, statement_history); maintain_partitions() locks the tables
    it creates partitions of in the order of their names. The DBA's run waited on metric_samples
    holding activity_history and analyze_runs, which analyze() wanted next: a deadlock that cost
    the alerts part, and the whole run at its insert into analyze_runs.
    """
    collect(probe)
    collect(probe)
    # The first alert rule waits on a lock this test holds: analyze() has scored the anomalies
    # (and holds the history tables it read) and has yet to evaluate the alerts.
    probe.execute("""
        CREATE FUNCTION public.wait_for_the_test() RETURNS TABLE (t text, v float8, l text, d jsonb)
        LANGUAGE sql SET lock_timeout = 0
        AS $$ SELECT pg_advisory_xact_lock(4242); SELECT NULL::text, NULL::float8, NULL::text, NULL::jsonb
              WHERE false $$;
        INSERT INTO perfmon.alert_rules (name, metric, unit, query, warning_threshold,
                                         business_impact, affected_systems, recommended_actions, description)
        VALUES ('a_pause', 'x', 'none', 'SELECT * FROM public.wait_for_the_test()', 0, 'x', '{}', 'x',
                'a pause the test controls');
    """)
    probe.execute("SELECT pg_advisory_lock(4242)")
    analyzed: list[object] = []
    maintained: list[object] = []

    def analyze(session: psycopg.Connection) -> None:
        try:
            analyzed.append(session.execute("SELECT perfmon.analyze()").fetchone()[0])
        except psycopg.Error as exc:
            analyzed.append(exc)

    def maintain(session: psycopg.Connection) -> None:
        session.execute("SET deadlock_timeout = '10min'")  # the victim would be analyze()
        try:
            maintained.extend(session.execute(
                "SELECT * FROM perfmon.maintain_partitions(now() + interval '5 days')").fetchall())
        except psycopg.Error as exc:
            maintained.append(exc)

    with psycopg.connect(installed, autocommit=True) as cron, \
            psycopg.connect(installed, autocommit=True) as dba:
        analyzer = threading.Thread(target=analyze, args=(cron,))
        analyzer.start()
        _until(lambda: _waiting_on_a_lock(probe, cron.info.backend_pid), "analyze() at the pause")
        maintainer = threading.Thread(target=maintain, args=(dba,))
        maintainer.start()
        _until(lambda: _waiting_on_a_lock(probe, dba.info.backend_pid), "maintain_partitions() waiting")
        probe.execute("SELECT pg_advisory_unlock(4242)")
        analyzer.join(timeout=60)
        maintainer.join(timeout=60)
    assert not analyzer.is_alive() and not maintainer.is_alive()
    assert not isinstance(analyzed[0], Exception), analyzed
    assert _errors_of_parts(analyzed[0]) == {}
    assert not [m for m in maintained if isinstance(m, Exception)], maintained


def test_analyze_waits_for_a_maintain_partitions_left_open(probe: psycopg.Connection, installed: str) -> None:
    """A DBA's maintain_partitions() in a transaction still open: analyze() waits for it whole,
    where the alerts part gave up at its lock timeout (2 s) on a history table it had locked.
    (With anomaly detection on, the anomalies part waited first, without a timeout.)"""
    collect(probe)
    collect(probe)
    probe.execute("UPDATE perfmon.config SET value = 'false' WHERE key = 'anomaly_detection.enabled'")
    analyzed: list[object] = []
    with psycopg.connect(installed) as dba, psycopg.connect(installed, autocommit=True) as cron:
        dba.execute("SELECT * FROM perfmon.maintain_partitions(now() + interval '5 days')").fetchall()

        def analyze() -> None:
            try:
                analyzed.append(cron.execute("SELECT perfmon.analyze()").fetchone()[0])
            except psycopg.Error as exc:
                analyzed.append(exc)

        analyzer = threading.Thread(target=analyze)
        analyzer.start()
        # Until analyze() has waited past the alerts part's lock timeout (or, giving up, has finished).
        _until(lambda: not analyzer.is_alive() or probe.execute(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted "
            "AND waitstart < clock_timestamp() - interval '3 seconds')",
            (cron.info.backend_pid,)).fetchone()[0], "analyze() waiting past the alerts' lock timeout")
        dba.commit()
        analyzer.join(timeout=60)
    assert not analyzer.is_alive()
    assert not isinstance(analyzed[0], Exception), analyzed
    assert _errors_of_parts(analyzed[0]) == {}
