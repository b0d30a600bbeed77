"""What anomaly scoring costs: perfmon.score_anomalies() with 50 metrics, and a backtest.

* 50 metric series with 28 days (the default training window) of one-minute history
  in the metric store, models trained once; then, per interval, a new sample of each
  series and perfmon.score_anomalies() in a NEW session (so the models are loaded from
  the table every time, as a pg_cron job's fresh backend does).
* `pgperfmon anomalies backtest` of one 4,000-point series (load + walk-forward).

    python3 bench/anomaly_cost.py [--detector envelope|envelope_sql|isolation_forest]
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "installer"))
sys.path.insert(0, str(REPO / "bench"))

from common import bench_cluster, fresh_database, summary  # noqa: E402

METRICS = 50
DAYS = 28  # anomaly_detection.training_window_days by default


def setup(dsn: str, detector: str) -> datetime:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE perfmon.anomaly_features SET enabled = false")
        conn.execute(
            "INSERT INTO perfmon.anomaly_features (name, query, unit, multi, impact, actions, description) "
            "VALUES ('bench.metric', $q$SELECT s.labels ->> 'i', m.ts, m.value FROM perfmon.metric_samples m "
            "JOIN perfmon.metric_series s USING (series_id) JOIN perfmon.metrics mt USING (metric_id) "
            "WHERE mt.name = 'bench.metric' AND m.ts BETWEEN $1 AND $2$q$, 'none', true, 'bench', "
            "ARRAY['none'], 'bench')")
        conn.execute("UPDATE perfmon.config SET value = to_jsonb(%s::text) "
                     "WHERE key = 'anomaly_detection.algorithm'", (detector,))
        ids = [r[1] for r in conn.execute(
            "SELECT * FROM perfmon.ingest_series(array_fill('bench.metric'::text, ARRAY[%s]), "
            "(SELECT array_agg(jsonb_build_object('i', i::text)) FROM generate_series(1, %s) i), "
            "array_fill('none'::text, ARRAY[%s]))", (METRICS, METRICS, METRICS))]
        start = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(days=DAYS)
        conn.execute("SELECT perfmon.ensure_day_partitions('metric_samples', %s, now() + interval '1 day')",
                     (start,))
        conn.execute(
            "INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
            "SELECT 1, sid, %s + make_interval(mins => k), "
            "50 + 10 * sin(k / 1440.0 * 2 * pi()) + random() * 5 "
            "FROM unnest(%s::int[]) AS sid, generate_series(0, %s) AS k",
            (start, ids, DAYS * 1440 - 1))
        t = time.perf_counter()
        trained = conn.execute("SELECT perfmon.train_anomaly_models(true)").fetchone()[0]
        print(f"trained {trained['models']} models ({detector}) in {time.perf_counter() - t:.1f} s")
        conn.execute("CREATE TABLE public.bench_ids AS SELECT unnest(%s::int[]) AS sid", (ids,))
        return start + timedelta(days=DAYS)


def score_intervals(dsn: str, at: datetime, intervals: int) -> list[float]:
    times = []
    for k in range(intervals):
        ts = at + timedelta(minutes=k)
        with psycopg.connect(dsn, autocommit=True) as conn:  # a fresh backend, as pg_cron's
            conn.execute("INSERT INTO perfmon.metric_samples (server_id, series_id, ts, value) "
                         "SELECT 1, sid, %s, 50 + random() * 5 FROM public.bench_ids", (ts,))
            t = time.perf_counter()
            result = conn.execute("SELECT perfmon.score_anomalies()").fetchone()[0]
            times.append(time.perf_counter() - t)
            assert result["scored"] >= METRICS, result
    return times


def backtest_4000(dsn: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series_4000.csv"
        rng = random.Random(1)
        t0 = datetime(2021, 3, 1)
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["timestamp", "value"])
            for i in range(4000):
                out.writerow([(t0 + timedelta(minutes=5 * i)).isoformat(sep=" "),
                              f"{40 + 10 * math.sin(i / 288 * 2 * math.pi) + rng.gauss(0, 2):.3f}"])
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pgperfmon", "anomalies", "backtest", "--dsn", dsn,
                        "--input", str(path), "--output", str(Path(tmp) / "flags.csv")],
                       check=True, capture_output=True,
                       env={"PYTHONPATH": str(REPO / "installer"), "PATH": "/usr/bin:/bin"})
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="envelope",
                        choices=("envelope", "envelope_sql", "robust_zscore", "isolation_forest"))
    parser.add_argument("--intervals", type=int, default=20)
    args = parser.parse_args()
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "cost")
        at = setup(dsn, args.detector)
        s = summary(score_intervals(dsn, at, args.intervals))
        print(f"score_anomalies(), {METRICS} metrics, {args.detector}, new session each time "
              f"(models loaded), {args.intervals} intervals: median {s['median']:.3f} s, "
              f"p95 {s['p95']:.3f} s, max {s['max']:.3f} s  (target <= 1 s)")
        print(f"backtest of a 4,000-point series with the detector in force ({args.detector}), "
              f"load + walk-forward: {backtest_4000(dsn):.1f} s  (target <= 30 s)")


if __name__ == "__main__":
    main()
