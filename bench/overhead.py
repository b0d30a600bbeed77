"""Overhead on the monitored workload: pgbench TPS with collect() every 10 s against none.

Runs alternate (off, on / on, off, ...) so that drift of a noisy machine hits both
sides alike, each after a VACUUM and a CHECKPOINT; prints each run, the mean
change and the paired changes (their spread is the noise floor). Target
(issue 3): <= 2% lower.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import threading

import psycopg
from psycopg.conninfo import conninfo_to_dict

from common import bench_cluster, fresh_database

PAIRS = 6
SECONDS = 20
CLIENTS = 4
INTERVAL_S = 10


def pgbench(bindir: str, dsn: str, *args: str) -> str:
    parts = conninfo_to_dict(dsn)
    env = dict(os.environ, PGPASSFILE=parts["passfile"])
    cmd = [f"{bindir}/pgbench", "-h", parts["host"], "-p", str(parts["port"]),
           "-U", parts["user"], *args, parts["dbname"]]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout


def collector(dsn: str, stop: threading.Event, durations: list[float]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(INTERVAL_S):
            result = conn.execute("SELECT perfmon.collect()").fetchone()[0]
            durations.append(result["duration_ms"])


def run(bindir: str, dsn: str, monitored: bool, durations: list[float]) -> float:
    # Every run starts from the same state: pgbench's updates bloat its tables, which
    # would otherwise make later runs slower whatever the monitoring does.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, "
                     "pgbench_history")
        conn.execute("CHECKPOINT")
    stop = threading.Event()
    thread = threading.Thread(target=collector, args=(dsn, stop, durations))
    if monitored:
        thread.start()
    out = pgbench(bindir, dsn, "-c", str(CLIENTS), "-j", "2", "-T", str(SECONDS), "-n")
    stop.set()
    if monitored:
        thread.join()
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "bench")
        bindir = str(cluster.binaries.bindir)
        pgbench(bindir, dsn, "-i", "-s", "10", "-q")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT perfmon.collect()")
        off, on, durations = [], [], []
        for i in range(PAIRS):
            # Alternate which side goes first, so a trend cannot favour one.
            order = (False, True) if i % 2 == 0 else (True, False)
            for monitored in order:
                tps = run(bindir, dsn, monitored, durations)
                (on if monitored else off).append(tps)
                print(f"run {i + 1} {'monitored' if monitored else 'plain    '}: {tps:,.0f} tps")
        change = 100 * (statistics.mean(on) / statistics.mean(off) - 1)
        print(f"pgbench -c {CLIENTS} -T {SECONDS} scale 10, {PAIRS} pairs: plain "
              f"{statistics.mean(off):,.0f} tps, monitored (collect every {INTERVAL_S} s) "
              f"{statistics.mean(on):,.0f} tps: {change:+.2f}%  (target >= -2%)")
        print("paired changes: " + ", ".join(
            f"{100 * (b / a - 1):+.1f}%" for a, b in zip(off, on, strict=True)))
        print(f"collect() during the load: median {statistics.median(durations):.0f} ms "
              f"over {len(durations)} samples")


if __name__ == "__main__":
    main()
