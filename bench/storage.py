"""Storage a sample costs: when nothing changed, and per changed statement.

Measured as the growth of everything in schema perfmon (tables, partitions,
indexes, TOAST, the state tables), over many samples, so that page rounding
averages out. Targets (issue 3): <= 4 KB per idle sample, <= 200 bytes per
changed statement. For scale (issue 3): pg_profile adds about 100 KB per idle
sample, PoWA about 2.4 MB before it coalesces.
"""

from __future__ import annotations

import psycopg

from common import bench_cluster, fresh_database

TABLES = 1000          # two statement shapes each: 2,000 distinct statements
IDLE_SAMPLES = 200
BUSY_SAMPLES = 20

SCHEMA_BYTES = """
SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
WHERE c.relnamespace = 'perfmon'::regnamespace AND c.relkind IN ('r', 'm')
"""
HISTORY_BYTES = """
SELECT sum(pg_total_relation_size(i.inhrelid))::bigint FROM pg_inherits i
WHERE i.inhparent = 'perfmon.statement_history'::regclass
"""


def run_statements(conn: psycopg.Connection) -> None:
    for i in range(1, TABLES + 1):
        conn.execute(f"SELECT b FROM t{i} WHERE id = 1")
        conn.execute(f"SELECT count(*) FROM t{i} WHERE a > 5")


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"""DO $$ BEGIN FOR i IN 1..{TABLES} LOOP
                EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, a int, b text)', i);
                END LOOP; END $$""")
            run_statements(conn)
            conn.execute("VACUUM ANALYZE")  # nothing left for autovacuum to change meanwhile
            for _ in range(3):  # baseline, dictionaries filled, partitions made
                conn.execute("SELECT perfmon.collect()")
                conn.execute("SELECT perfmon.collect_sizes()")
            conn.execute("CHECKPOINT")

            before = conn.execute(SCHEMA_BYTES).fetchone()[0]
            for _ in range(IDLE_SAMPLES):
                conn.execute("SELECT perfmon.collect()")
            idle = (conn.execute(SCHEMA_BYTES).fetchone()[0] - before) / IDLE_SAMPLES
            idle_rows = conn.execute(
                "SELECT sum(rows_stored)::numeric / %s FROM perfmon.collect_timings "
                "WHERE ts IN (SELECT ts FROM perfmon.samples ORDER BY ts DESC LIMIT %s)",
                (IDLE_SAMPLES, IDLE_SAMPLES)).fetchone()[0]

            before_all = conn.execute(SCHEMA_BYTES).fetchone()[0]
            before_hist = conn.execute(HISTORY_BYTES).fetchone()[0]
            stored = 0
            for _ in range(BUSY_SAMPLES):
                run_statements(conn)
                result = conn.execute("SELECT perfmon.collect()").fetchone()[0]
                stored += result["stages"]["statements"].get("stored", 0)
            grown_all = conn.execute(SCHEMA_BYTES).fetchone()[0] - before_all
            grown_hist = conn.execute(HISTORY_BYTES).fetchone()[0] - before_hist
            row_bytes = conn.execute(
                "SELECT avg(pg_column_size(h.*)) FROM perfmon.statement_history h").fetchone()[0]

        print(f"idle sample (nothing changed but pgperfmon's own statement and database row): "
              f"{idle:,.0f} bytes per sample over {IDLE_SAMPLES} samples, "
              f"{float(idle_rows):.1f} history rows each  (target <= 4,096)")
        per_stmt_hist = grown_hist / stored
        per_stmt_all = (grown_all - BUSY_SAMPLES * idle) / stored
        print(f"changed statements: {stored:,} statement rows over {BUSY_SAMPLES} samples")
        print(f"  statement_history (heap + BRIN): {per_stmt_hist:,.0f} bytes per changed statement"
              f"  (target <= 200)")
        print(f"  whole schema, less the idle cost: {per_stmt_all:,.0f} bytes per changed statement "
              f"(includes the updated state rows)")
        print(f"  average statement_history row: {float(row_bytes):.0f} bytes before the 4-byte "
              f"line pointer")


if __name__ == "__main__":
    main()
