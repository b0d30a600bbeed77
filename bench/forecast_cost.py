"""What the forecasts cost: perfmon.forecasts with many growing tables.

TABLES tables whose size changed at every sizes run (every 15 minutes) for 7 days -
the worst case of perfmon.size_history, which keeps a size only when it changed - then
perfmon.forecasts (table_growth fits every table's sizes runs, perfmon.size_trends) and
perfmon.forecast_advice (what the advisor's hourly refresh reads), timed against a
baseline in the same run: one least-squares slope per table over the same rows
(regr_slope), the cost of the plainest fit of that history.

    python3 bench/forecast_cost.py [--tables 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "installer"))
sys.path.insert(0, str(REPO / "bench"))

from common import bench_cluster, fresh_database, summary, timed  # noqa: E402

BASELINE = """SELECT count(*) FROM (
    SELECT object_id, regr_slope(size_bytes, extract(epoch FROM ts)) FROM perfmon.size_history
     WHERE kind = 'r' AND ts > now() - interval '7 days' GROUP BY object_id) AS s"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "forecasts")
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:  # pg_cron keeps its jobs there
            admin.execute("UPDATE cron.job SET active = false WHERE database = 'forecasts'")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM perfmon.maintain_partitions(now() - interval '8 days')")
            conn.execute(
                "INSERT INTO perfmon.relations (server_id, datid, relid, kind, schema_name, rel_name) "
                "SELECT 1, 0, 4000000000 + g, 'r', 'bench', 't' || g FROM generate_series(1, %s) g",
                (args.tables,))
            conn.execute(
                "INSERT INTO perfmon.size_history (server_id, ts, kind, object_id, size_bytes) "
                "SELECT 1, now() - interval '7 days' + i * interval '15 minutes', 'r', r.rel_id, "
                "1e8 + i * (1000 + r.rel_id) + (random() * 5000)::int "
                "FROM perfmon.relations AS r, generate_series(0, 671) AS i WHERE r.schema_name = 'bench'")
            conn.execute("ANALYZE perfmon.size_history")
            rows = conn.execute("SELECT count(*) FROM perfmon.size_history").fetchone()[0]
            print(f"{args.tables} tables, {rows} stored sizes over 7 days")
            cases = {"baseline: regr_slope per table": BASELINE,
                     "perfmon.forecasts": "SELECT count(*) FROM perfmon.forecasts",
                     "perfmon.forecast_advice": "SELECT count(*) FROM perfmon.forecast_advice"}
            times = {name: [timed(lambda q=q: conn.execute(q).fetchone()) for _ in range(args.repeat)]
                     for name, q in cases.items()}
            base = summary(times["baseline: regr_slope per table"])["median"]
            for name, values in times.items():
                s = summary(values)
                print(f"{name}: median {s['median']:.2f} s, max {s['max']:.2f} s "
                      f"({s['median'] / base:.1f}x the baseline)")


if __name__ == "__main__":
    main()
