"""perfmon.agent_heartbeat() latency: 8 concurrent callers, 200 calls/s in all, 30 s.

Each caller is a pgperfmon.heartbeat.Heartbeat (its own connection, logged in as a
perfmon_agent login, synchronous_commit off as the helper sets it) paced at 25 calls/s;
latency is the wall time of each beat() as the caller sees it. For comparison the same
load through a plain connection with synchronous_commit on.
Target (issue 4): p95 <= 2 ms.
"""

from __future__ import annotations

import threading
import time

import psycopg
from agent_common import agent_login_dsn

from common import bench_cluster, fresh_database, summary
from pgperfmon.heartbeat import Heartbeat, heartbeat

CALLERS = 8
RATE = 200
SECONDS = 30


def run(call_factory) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.5

    def caller(n: int) -> None:
        call = call_factory(n)
        mine = []
        period = CALLERS / RATE
        next_at = start + n * period / CALLERS
        while next_at < start + SECONDS:
            time.sleep(max(0.0, next_at - time.monotonic()))
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
            next_at += period
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def report(label: str, latencies: list[float]) -> None:
    s = summary(latencies)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(f"{label}: {len(latencies)} calls in {SECONDS} s ({len(latencies) / SECONDS:.0f}/s); "
          f"p50 {s['median'] * 1000:.2f} ms, p95 {s['p95'] * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
          f"max {s['max'] * 1000:.2f} ms")


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "heartbeat_bench")
        agent_dsn = agent_login_dsn(dsn)

        def helper(n: int):
            hb = Heartbeat(agent_dsn, f"worker-{n}", expected_interval_s=CALLERS / RATE)
            hb.beat()  # connect outside the timing
            return lambda: hb.beat("ok", 3.5, 0)

        def plain(n: int):
            conn = psycopg.connect(agent_dsn, autocommit=True)
            return lambda: heartbeat(conn, f"plain-{n}", "ok", 3.5, 0)

        report("Heartbeat helper (synchronous_commit off)", run(helper))
        report("plain call (synchronous_commit on)", run(plain))
        with psycopg.connect(dsn) as conn:
            n = conn.execute("SELECT count(*) FROM perfmon.agent_heartbeats").fetchone()[0]
        print(f"heartbeats stored: {n}")


if __name__ == "__main__":
    main()
