"""collect() on a large catalog: 10,000 statements, 5,000 tables, 10,000 indexes.

Prints the median time of perfmon.collect() and its ratio to a plain read of the
same sources (pg_stat_statements, table/index statistics and I/O, activity,
databases, bgwriter/WAL/archiver, settings) measured in the same run.
Targets (issue 3): median <= 250 ms, ratio <= 3.
"""

from __future__ import annotations

import random
import time

import psycopg

from common import bench_cluster, fresh_database, ms, summary, timed

TABLES = 5000
STATEMENTS = 10_000
ROUNDS = 15
CHANGED_PER_ROUND = 500

PLAIN_READ = """
SELECT
  (SELECT count(*) FROM (SELECT * FROM pg_stat_statements(false)) s),
  (SELECT count(*) FROM (SELECT * FROM pg_stat_user_tables t
                         JOIN pg_statio_user_tables io USING (relid)) x),
  (SELECT count(*) FROM (SELECT * FROM pg_stat_user_indexes i
                         JOIN pg_statio_user_indexes io USING (indexrelid)) y),
  (SELECT count(*) FROM (SELECT * FROM pg_stat_activity) a),
  (SELECT count(*) FROM (SELECT * FROM pg_stat_database) d),
  (SELECT count(*) FROM (SELECT * FROM pg_stat_bgwriter, pg_stat_wal, pg_stat_archiver) b),
  (SELECT count(*) FROM (SELECT * FROM pg_settings) g)
"""


def build_catalog(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(1, TABLES + 1, 500):  # 500 tables a transaction: lock table size
            conn.execute(f"""
                DO $$ BEGIN
                  FOR i IN {start}..{min(start + 499, TABLES)} LOOP
                    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, a int, b text)', i);
                    EXECUTE format('CREATE INDEX ON t%s (a)', i);
                  END LOOP;
                END $$""")
        # Two statement shapes per table: 10,000 distinct statements.
        for i in range(1, TABLES + 1):
            conn.execute(f"SELECT b FROM t{i} WHERE id = 1")
            conn.execute(f"SELECT count(*) FROM t{i} WHERE a > 5")


def touch(conn: psycopg.Connection, rng: random.Random) -> None:
    for i in rng.sample(range(1, TABLES + 1), CHANGED_PER_ROUND // 2):
        conn.execute(f"SELECT b FROM t{i} WHERE id = 1")
        conn.execute(f"SELECT count(*) FROM t{i} WHERE a > 5")
    conn.execute("SELECT pg_stat_force_next_flush()")


def main() -> None:
    with bench_cluster({"pg_stat_statements.max": "20000"}) as cluster:
        dsn = fresh_database(cluster, "bench")
        build_catalog(dsn)
        rng = random.Random(7)
        with psycopg.connect(dsn, autocommit=True) as conn:
            n_stmts = conn.execute("SELECT count(*) FROM pg_stat_statements(false)").fetchone()[0]
            n_tables = conn.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()[0]
            n_indexes = conn.execute("SELECT count(*) FROM pg_stat_user_indexes").fetchone()[0]
            conn.execute("SELECT perfmon.collect()")  # baseline: reads every query text once
            collect_s, plain_s, stage_ms = [], [], []
            for _ in range(ROUNDS):
                touch(conn, rng)
                plain_s.append(timed(lambda: conn.execute(PLAIN_READ).fetchall()))
                touch(conn, rng)
                start = time.perf_counter()
                result = conn.execute("SELECT perfmon.collect()").fetchone()[0]
                collect_s.append(time.perf_counter() - start)
                stage_ms.append({k: v["ms"] for k, v in result["stages"].items()})
        c, p = summary(collect_s), summary(plain_s)
        print(f"catalog: {n_stmts} statements in pg_stat_statements, {n_tables} tables, "
              f"{n_indexes} indexes; {CHANGED_PER_ROUND} statements and "
              f"{CHANGED_PER_ROUND // 2} tables changed between samples")
        print(f"collect():  median {ms(c['median'])}  p95 {ms(c['p95'])}  (target median <= 250 ms)")
        print(f"plain read: median {ms(p['median'])}  p95 {ms(p['p95'])}")
        print(f"ratio collect/plain read (medians): {c['median'] / p['median']:.2f}  (target <= 3)")
        stages = {k: sorted(s[k] for s in stage_ms)[len(stage_ms) // 2] for k in stage_ms[0]}
        print("median stage ms: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                              sorted(stages.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
