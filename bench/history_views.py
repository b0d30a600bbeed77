"""History views with 90 days of 1-minute samples, and dropping a day's partition.

Loads synthetic history shaped like a busy server's: 129,600 samples, 25
statements and 10 tables that changed in each, two databases; rolls it up, then
times every history view as a DBA or a dashboard queries it (20 runs each, p95),
and the drop of one day's partitions. Target (issue 3): p95 <= 100 ms per view,
a day's drop <= 100 ms.
"""

from __future__ import annotations

import time

import psycopg

from common import bench_cluster, fresh_database, ms, summary

DAYS = 90
RUNS = 20
VIEWS = {
    "top_queries": "SELECT * FROM perfmon.top_queries ORDER BY rank LIMIT 50",
    "slow_queries": "SELECT * FROM perfmon.slow_queries",
    "connection_usage": "SELECT * FROM perfmon.connection_usage",
    "blocking_locks": "SELECT * FROM perfmon.blocking_locks",
    "replication_status": "SELECT * FROM perfmon.replication_status",
    "database_series (last 24 h)":
        "SELECT * FROM perfmon.database_series WHERE ts > now() - interval '24 hours'",
    "database_series (last 1 h)":
        "SELECT * FROM perfmon.database_series WHERE ts > now() - interval '1 hour'",
    "collect_timings (last 1 h)":
        "SELECT * FROM perfmon.collect_timings WHERE ts > now() - interval '1 hour'",
}

LOAD = f"""
INSERT INTO perfmon.statements (server_id, userid, dbid, queryid, toplevel, query)
SELECT 1, 10, 5, q, true, 'SELECT /* shape ' || q || ' */ ...' FROM generate_series(1, 25) q;
INSERT INTO perfmon.relations (server_id, datid, relid, kind, schema_name, rel_name)
SELECT 1, 5, 900000 + r, 'r', 'public', 'table_' || r FROM generate_series(1, 10) r;

CREATE TEMP TABLE ticks AS
SELECT g AS ts FROM generate_series(date_trunc('minute', now()) - interval '{DAYS} days',
                                    date_trunc('minute', now()), interval '1 minute') g;
INSERT INTO perfmon.samples (server_id, ts, kind, interval_s, duration_ms, stages)
SELECT 1, ts, 'sample', 60, 150, '{{"statements": {{"ms": 70, "stored": 25}}}}' FROM ticks;
INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
    sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions,
    max_xid_age, wal_bytes, interval_s, database_interval_s, xact_commit, xact_rollback,
    blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted)
SELECT 1, ts, 100, 40 + (random() * 20)::int, (random() * 10)::int, 30, 1, 0, 0,
       1000000, (random() * 1e7)::bigint, 60, 60, (random() * 60000)::int, (random() * 20)::int,
       (random() * 2000)::int, (random() * 200000)::int, (random() * 2e6)::int,
       (random() * 2e5)::int, (random() * 2000)::int
FROM ticks;
INSERT INTO perfmon.database_history (server_id, ts, datid, numbackends, xact_commit,
    xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched, tup_inserted)
SELECT 1, ts, d, 20, (random() * 30000)::int, (random() * 10)::int, (random() * 1000)::int,
       (random() * 100000)::int, (random() * 1e6)::int, (random() * 1e5)::int,
       (random() * 1000)::int
FROM ticks, (VALUES (5), (6)) AS dbs(d);
INSERT INTO perfmon.statement_history (server_id, ts, stmt_id, calls, exec_ms, rows, shared_hit)
SELECT 1, ts, s.stmt_id, (random() * 1000)::int + 1, random() * 2000 * s.stmt_id,
       (random() * 1000)::int, (random() * 10000)::int
FROM ticks, (SELECT stmt_id FROM perfmon.statements WHERE stmt_id > 0) s;
INSERT INTO perfmon.table_history (server_id, ts, rel_id, seq_scan, n_tup_ins, n_live_tup)
SELECT 1, ts, r.rel_id, (random() * 10)::int, (random() * 100)::int, 1000000
FROM ticks, (SELECT rel_id FROM perfmon.relations) r;
"""


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE perfmon.config SET value = '120' "
                         "WHERE key = 'collection.retention_days'")
            conn.execute("SELECT perfmon.maintain_partitions(now() - make_interval(days => d)) "
                         "FROM generate_series(0, %s) AS d", (DAYS,))
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(LOAD)
            loaded = time.perf_counter() - started
            rolled = conn.execute("SELECT perfmon.rollup()").fetchone()[0]
            conn.execute("VACUUM ANALYZE")
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM perfmon.samples), "
                "(SELECT count(*) FROM perfmon.statement_history), "
                "(SELECT count(*) FROM perfmon.table_history)").fetchone()
            print(f"loaded {counts[0]:,} samples, {counts[1]:,} statement rows, "
                  f"{counts[2]:,} table rows in {loaded:.0f} s; rollup {rolled}")
            for name, query in VIEWS.items():
                conn.execute(query).fetchall()  # warm
                times = []
                for _ in range(RUNS):
                    start = time.perf_counter()
                    rows = conn.execute(query).fetchall()
                    times.append(time.perf_counter() - start)
                s = summary(times)
                print(f"{name:<30} p95 {ms(s['p95']):>9}  median {ms(s['median']):>9}  "
                      f"({len(rows)} rows)  (target p95 <= 100 ms)")
            oldest = conn.execute(
                "SELECT min(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'perfmon.statement_history'::regclass").fetchone()[0]
            day = oldest.rsplit("_p", 1)[1]
            tables = [r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'perfmon'::regnamespace "
                "AND c.relname LIKE %s AND c.relispartition", (f"%\\_p{day}",))]
            start = time.perf_counter()
            with conn.transaction():
                for table in tables:
                    conn.execute(f"DROP TABLE perfmon.{table}")
            dropped = time.perf_counter() - start
            print(f"dropping one day ({day}): {len(tables)} partitions in {ms(dropped)}  "
                  f"(target <= 100 ms)")


if __name__ == "__main__":
    main()
