"""Hourly rollups of pgperfmon 0.1.0 run in a half-hour zone, then the upgrade: migration 027
moves them to UTC hours, rolling up again from the raw samples kept and merging those whose raw
samples retention dropped, and the rollups go on from there with nothing lost or counted twice."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from conftest import Server
from test_upgrade import old_python, old_release

from pgperfmon import cli, resources

# Four UTC days D0..D3 of raw samples every 10 minutes, each statement delta a different value
# (the index of the sample), so that a window shifted by half an hour sums to something else.
HISTORY = """
    CREATE TEMP TABLE b AS SELECT date_trunc('day', now(), 'UTC') - interval '4 days' AS d0;
    SELECT perfmon.maintain_partitions((SELECT d0 FROM b) - interval '1 day');
    SELECT perfmon.maintain_partitions(now());
    CREATE TEMP TABLE raw AS
    SELECT n, (SELECT d0 FROM b) + interval '5 min' + n * interval '10 min' AS ts
      FROM generate_series(0, 4 * 144 - 2) AS n;
    INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
    SELECT 1, ts, 'sample', 600, 1, '{}'::jsonb FROM raw
    UNION ALL SELECT 1, d0 + interval '4 days 5 min', 'sample', 600, 1, '{}' FROM b;  -- D3 is complete
    INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms)
    SELECT 1, ts, 0, n, 1 FROM raw;
    INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total, sessions_active,
                                        sessions_idle, sessions_idle_in_xact, sessions_waiting,
                                        blocked_sessions, interval_s)
    SELECT 1, ts, 100, 10, n % 7, 3, 0, 0, 0, 600 FROM raw;
"""


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return old_release(tmp_path_factory.mktemp("release"))


def _one(conn: psycopg.Connection, query: str) -> object:
    return conn.execute(query).fetchone()[0]


def _by_hour(conn: psycopg.Connection, query: str) -> dict:
    return {ts: v for ts, v in conn.execute(query).fetchall()}


def test_half_hour_rollups_of_0_1_0_are_moved_to_utc_hours(server: Server, dbname: str, dsn: str,
                                                         release: Path) -> None:
    done = old_python(release, "-m", "pgperfmon", "install", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    server.pause_jobs(dbname)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(HISTORY)
        sent = conn.execute("SELECT sum(n) FROM raw").fetchone()[0]
        # 0.1.0's rollup, hour by hour for two days, in the zone pg_cron ran it with: its hours up
        # to D1 23:30, its days up to D2 (D1 rolled up without its last half hour).
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        for h in range(1, 49):
            conn.execute("SELECT perfmon.rollup((SELECT d0 FROM b) + make_interval(hours => %s, mins => 7))",
                         (h,))
        conn.execute("RESET TimeZone")
        assert conn.execute("SELECT DISTINCT extract(minute FROM ts AT TIME ZONE 'UTC') "
                            "FROM perfmon.statement_hourly").fetchall() == [(30,)]
        # Retention has since dropped D0's raw samples (their hours were rolled up).
        day0 = conn.execute("SELECT to_char(d0 AT TIME ZONE 'UTC', 'YYYYMMDD') FROM b").fetchone()[0]
        for table in ("samples", "statement_history", "server_history"):
            conn.execute(f"DROP TABLE perfmon.{table}_p{day0}")
        d0 = conn.execute("SELECT d0 FROM b").fetchone()[0]
        before = _one(conn, "SELECT sum(calls) FROM perfmon.statement_hourly WHERE stmt_id = 0")
        before_samples = conn.execute("SELECT sum(samples) FROM perfmon.server_hourly").fetchone()[0]

    upgraded = CliRunner().invoke(cli.main, ["upgrade", "--dsn", dsn])
    server.pause_jobs(dbname)
    assert upgraded.exit_code == 0, upgraded.output

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE b AS SELECT %s::timestamptz AS d0", (d0,))
        for table in ("statement_hourly", "server_hourly"):
            assert conn.execute(f"SELECT count(*) FROM perfmon.{table} "
                                "WHERE ts <> date_trunc('hour', ts, 'UTC')").fetchone() == (0,), table
        until = conn.execute("SELECT value::timestamptz - d0 FROM perfmon.meta, b "
                             "WHERE key = 'rollup_hourly_until'").fetchone()[0]
        assert until.total_seconds() == 47 * 3600  # back to the start of its UTC hour (D1 23:00)
        assert conn.execute("SELECT value::timestamptz - d0 FROM perfmon.meta, b "
                            "WHERE key = 'rollup_daily_until'").fetchone()[0].days == 1  # D1 again
        # Nothing lost and nothing twice: what the rollups hold plus the raw samples of the hour
        # to be rolled up again are what they held before.
        again = conn.execute("SELECT sum(calls) FROM perfmon.statement_history, b WHERE stmt_id = 0 "
                             "AND ts >= d0 + interval '47 hours' AND ts < d0 + interval '47.5 hours'"
                             ).fetchone()[0]
        rolled, samples = conn.execute(
            "SELECT (SELECT sum(calls) FROM perfmon.statement_hourly WHERE stmt_id = 0), "
            "(SELECT sum(samples) FROM perfmon.server_hourly)").fetchone()
        assert (rolled + again, samples + 3) == (before, before_samples)

        # The fixed rollup goes on (in the same zone) to the end of D3.
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        for h in range(48, 97):
            conn.execute("SELECT perfmon.rollup((SELECT d0 FROM b) + make_interval(hours => %s, mins => 7))",
                         (h,))
        conn.execute("RESET TimeZone")
        assert _one(conn, "SELECT sum(calls) FROM perfmon.statement_hourly WHERE stmt_id = 0") == sent
        # Hours whose raw samples are kept are their raw samples' UTC hours, from D1 00:30 (the
        # hour D0 23:30-D1 00:30 whose first half is gone was merged into D0 23:00).
        hourly = _by_hour(conn, "SELECT ts, calls FROM perfmon.statement_hourly, b "
                                "WHERE stmt_id = 0 AND ts >= d0 + interval '1 day'")
        raw = _by_hour(conn, "SELECT date_trunc('hour', ts, 'UTC'), sum(calls) "
                             "FROM perfmon.statement_history, b "
                             "WHERE stmt_id = 0 AND ts >= d0 + interval '1 day 30 min' "
                             "AND ts < d0 + interval '4 days' GROUP BY 1")
        assert hourly == raw
        merged = conn.execute("SELECT calls FROM perfmon.statement_hourly, b "
                              "WHERE ts = d0 + interval '23 hours'").fetchone()[0]
        assert merged == sum(range(141, 147))  # the samples from D0 23:30 to D1 00:30
        # And the days from those hours: D1 and D2 are their raw samples' UTC days.
        daily = _by_hour(conn, "SELECT ts, calls FROM perfmon.statement_daily, b "
                               "WHERE stmt_id = 0 AND ts >= d0 + interval '2 days'")
        raw_days = _by_hour(conn, "SELECT date_trunc('day', ts, 'UTC'), sum(calls) "
                                  "FROM perfmon.statement_history, b "
                                  "WHERE stmt_id = 0 AND ts >= d0 + interval '2 days' "
                                  "AND ts < d0 + interval '4 days' GROUP BY 1")
        assert daily == raw_days
        d1 = conn.execute("SELECT calls FROM perfmon.statement_daily, b WHERE ts = d0 + interval '1 day'"
                          ).fetchone()[0]
        assert d1 == sum(range(147, 288))  # D1 from 00:30 (its first half hour went to D0 23:00)
        assert _one(conn, "SELECT sum(calls) FROM perfmon.statement_daily WHERE stmt_id = 0") == sent
        assert conn.execute("SELECT sum(samples) FROM perfmon.server_daily").fetchone()[0] == 4 * 144 - 1


def test_hours_the_fixed_rollup_added_beside_half_hour_ones_are_rolled_up_again(
        conn: psycopg.Connection, release: Path) -> None:
    """A server that ran 0.1.0's rollup, then the fixed one (126d52b) before migration 027: the
    fixed rollup went on from 0.1.0's rollup_hourly_until (:30) and wrote that hour's second half
    as a UTC hour of its own. With every raw sample kept, the hours are their samples' UTC hours."""
    conn.execute(HISTORY)
    sent = _one(conn, "SELECT sum(n) FROM raw")
    kolkata = "SELECT perfmon.rollup((SELECT d0 FROM b) + make_interval(hours => %s, mins => 7))"
    conn.execute("SET TimeZone = 'Asia/Kolkata'")
    conn.execute((release / "pgperfmon" / "_resources" / "sql" / "functions" / "rollup.sql").read_text())
    for h in range(1, 31):
        conn.execute(kolkata, (h,))
    conn.execute(resources.path("sql", "functions", "rollup.sql").read_text())
    for h in range(31, 41):
        conn.execute(kolkata, (h,))
    conn.execute("RESET TimeZone")
    # 0.1.0's last hour D1 04:30-05:30, then the fixed rollup's 05:00 (from 05:30) and on.
    assert _one(conn, "SELECT count(*) FROM perfmon.statement_hourly, b "
                      "WHERE ts IN (d0 + interval '28.5 hours', d0 + interval '29 hours')") == 2

    conn.execute(resources.path("sql", "migrations", "027_rollup_utc_hours.sql").read_text())
    assert _one(conn, "SELECT count(*) FROM perfmon.statement_hourly "
                      "WHERE ts <> date_trunc('hour', ts, 'UTC')") == 0
    # The first hour, from 23:30 the day before (a day whose partition holds no row), is summed
    # into that UTC hour; every later one is its raw samples' UTC hour.
    hourly = _by_hour(conn, "SELECT ts, calls FROM perfmon.statement_hourly, b "
                            "WHERE stmt_id = 0 AND ts >= d0 + interval '1 hour'")
    raw = _by_hour(conn, "SELECT date_trunc('hour', ts, 'UTC'), sum(calls) FROM perfmon.statement_history, b "
                         "WHERE stmt_id = 0 AND ts >= d0 + interval '1 hour' "
                         "AND ts < d0 + interval '40 hours' GROUP BY 1")
    assert hourly == raw
    conn.execute("SET TimeZone = 'Asia/Kolkata'")
    for h in range(41, 97):
        conn.execute(kolkata, (h,))
    conn.execute("RESET TimeZone")
    assert _one(conn, "SELECT sum(calls) FROM perfmon.statement_hourly WHERE stmt_id = 0") == sent
    assert _one(conn, "SELECT sum(calls) FROM perfmon.statement_daily WHERE stmt_id = 0") == sent
    daily = _by_hour(conn, "SELECT ts, calls FROM perfmon.statement_daily, b "
                           "WHERE stmt_id = 0 AND ts >= d0 + interval '1 day'")
    raw_days = _by_hour(conn, "SELECT date_trunc('day', ts, 'UTC'), sum(calls) "
                              "FROM perfmon.statement_history, b "
                              "WHERE stmt_id = 0 AND ts >= d0 + interval '1 day' "
                              "AND ts < d0 + interval '4 days' GROUP BY 1")
    assert daily == raw_days
