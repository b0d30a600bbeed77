"""Health score and executive report on 90 days of 1-minute history.

Loads the synthetic history of bench/history_views.py (server, database and 25
statements per minute), plus host metrics, one application agent's heartbeats and a
recorded health score per minute; rolls it up; then times, 10 runs each (median and
p95): perfmon.health_score() (what record_health() costs every interval inside
perfmon.analyze()), record_health(), and executive_report() for each period, with
and without agent heartbeats (without them Apdex reads the raw statement history).
Baseline in the same run: perfmon.top_queries, the dashboard's usual view. The size
of the rows record_health() stores is printed too.

    .venv/bin/python bench/health_report.py [DAYS]
"""

from __future__ import annotations

import sys
import time

import psycopg
from history_views import LOAD

from common import bench_cluster, fresh_database, ms, summary

RUNS = 10

EXTRA = """
INSERT INTO perfmon.metric_series (metric_id, labels)
SELECT metric_id, '{"host": "db1"}' FROM perfmon.metrics
WHERE name IN ('host.cpu.total_pct', 'host.memory.used_pct');
INSERT INTO perfmon.metric_series (metric_id, labels)
SELECT metric_id, '{"host": "db1", "mount": "/"}' FROM perfmon.metrics WHERE name = 'host.disk.used_pct';
INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value)
SELECT 1, s.series_id, t.ts, 20 + random() * 60 FROM ticks AS t, perfmon.metric_series AS s;
INSERT INTO perfmon.agents (name, first_seen, last_seen, last_status, expected_interval_s)
VALUES ('web', now() - interval '%(days)s days', now(), 'ok', 60);
INSERT INTO perfmon.health_history (server_id, ts, period_s, overall, technical, business, database,
    system, availability, user_satisfaction, coverage_pct, risk_level, missing, inputs)
SELECT 1, ts, 3600, 70 + random() * 30, 80, 75, 90, 70, 100, 60, 80, 'low',
       '{agents,cost_efficiency}', '{"cache_hit_pct": 99.1, "uptime_pct": 100, "apdex": 0.93}' FROM ticks;
"""
HEARTBEATS = """
INSERT INTO perfmon.agent_heartbeats (server_id, ts, agent_id, status, response_ms, errors)
SELECT 1, t.ts, (SELECT agent_id FROM perfmon.agents WHERE name = 'web'), 'ok', random() * 800, 0
FROM ticks AS t
"""


def measure(conn: psycopg.Connection, query: str) -> dict[str, float]:
    conn.execute(query).fetchall()  # warm
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        conn.execute(query).fetchall()
        times.append(time.perf_counter() - start)
    return summary(times)


def main() -> None:
    days = int(sys.argv[1]) if len(sys.argv) > 1 else 90
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "bench")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE perfmon.config SET value = '120' "
                         "WHERE key IN ('collection.retention_days', 'business.health_retention_days')")
            conn.execute("SELECT perfmon.maintain_partitions(now() - make_interval(days => d)) "
                         "FROM generate_series(0, %s) AS d", (days,))
            started = time.perf_counter()
            with conn.transaction():
                conn.execute(LOAD.replace("interval '90 days'", f"interval '{days} days'"))
                conn.execute(EXTRA % {"days": days})
            print(f"loaded {days} days of 1-minute history in {time.perf_counter() - started:.0f} s; "
                  f"rollup {conn.execute('SELECT perfmon.rollup()').fetchone()[0]}")
            conn.execute("VACUUM ANALYZE")

            queries = {
                "baseline: top_queries": "SELECT * FROM perfmon.top_queries ORDER BY rank LIMIT 50",
                "health_score('1 hour')": "SELECT perfmon.health_score()",
                "executive_report('daily')": "SELECT perfmon.executive_report('daily')",
                "executive_report('weekly')": "SELECT perfmon.executive_report('weekly')",
                "executive_report('monthly')": "SELECT perfmon.executive_report('monthly')",
                "  its availability (30 d)":
                    "SELECT perfmon.health_availability(now() - interval '30 days', now())",
                "  its Apdex (30 d)":
                    "SELECT perfmon.health_user_satisfaction(now() - interval '30 days', now())",
                "  its statement totals (30 d)":
                    "SELECT count(*) FROM perfmon.statement_totals(now() - interval '30 days', now())",
            }
            for label in ("without agent heartbeats", "with one agent's heartbeats"):
                if label.startswith("with one"):
                    with conn.transaction():
                        conn.execute(HEARTBEATS)
                    conn.execute("VACUUM ANALYZE perfmon.agent_heartbeats")
                print(f"-- {label}")
                base = None
                for name, query in queries.items():
                    s = measure(conn, query)
                    base = base or s["median"]
                    print(f"{name:<30} median {ms(s['median']):>10}  p95 {ms(s['p95']):>10}  "
                          f"({s['median'] / base:.1f} x baseline)")
            s = measure(conn, "SELECT perfmon.record_health()")
            print(f"{'record_health()':<30} median {ms(s['median']):>10}  p95 {ms(s['p95']):>10}")
            row = conn.execute("SELECT avg(pg_column_size(h.*))::float8 FROM (SELECT * "
                               "FROM perfmon.health_history ORDER BY ts DESC LIMIT %s) AS h",
                               (RUNS,)).fetchone()[0]
            print(f"a row record_health() stored: {row:.0f} bytes = {row * 1440 / 1e6:.2f} MB per day "
                  f"at one row a minute (table data, before indexes)")


if __name__ == "__main__":
    main()
