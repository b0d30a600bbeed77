"""perfmon.agent_heartbeat() latency: 8 concurrent callers, 200 calls/s in all.

Callers log in as a perfmon_agent login, each on its own connection, paced at 25 calls/s;
latency is the wall time of each call as the caller sees it. Four ways of calling, in
alternating runs of 15 s (twice each), so that a change in the machine's load shows:
  * helper: the Python helper, pgperfmon.heartbeat.Heartbeat (beat());
  * plain: `SELECT perfmon.agent_heartbeat(...)` on an autocommit connection with the
    server's defaults (synchronous_commit on);
  * flushed: the plain call with the trigger heartbeat_commit_async disabled, so that
    every commit waits for its WAL flush: what the two above would cost without it;
  * session-off: the plain call on a session that sets synchronous_commit = off itself,
    trigger disabled (what the helper did before): the cost of the trigger's check.
The order is reversed every other round, after a first run that is not counted.
A transaction that writes only heartbeats commits without waiting for the WAL flush
(perfmon.heartbeat_commit_async(); docs/host-and-agents.md, "Durability of heartbeats").
Target (issue 4): p95 <= 2 ms for helper and plain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
from agent_common import agent_login_dsn

from common import bench_cluster, fresh_database, summary
from pgperfmon.heartbeat import Heartbeat, heartbeat

CALLERS = 8
RATE = 200
SECONDS = 15
ROUNDS = 2


def run(call_factory: Callable[[int], tuple[Callable[[], object], Callable[[], object]]]) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.monotonic() + 1.0

    def caller(n: int) -> None:
        call, close = call_factory(n)
        mine = []
        period = CALLERS / RATE
        next_at = start + n * period / CALLERS
        while next_at < start + SECONDS:
            time.sleep(max(0.0, next_at - time.monotonic()))
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
            next_at += period
        close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(CALLERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def describe(latencies: list[float]) -> str:
    s = summary(latencies)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"{len(latencies)} calls ({len(latencies) / SECONDS:.0f}/s); "
            f"p50 {s['median'] * 1000:.2f} ms, p95 {s['p95'] * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
            f"max {s['max'] * 1000:.2f} ms")


def main() -> None:
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "heartbeat_bench")
        agent_dsn = agent_login_dsn(dsn)

        def helper(n: int):
            hb = Heartbeat(agent_dsn, f"worker-{n}", expected_interval_s=CALLERS / RATE)
            hb.beat()  # connect outside the timing
            return (lambda: hb.beat("ok", 3.5, 0)), hb.close

        def plain(n: int, session_off: bool = False):
            conn = psycopg.connect(agent_dsn, autocommit=True)
            if session_off:
                conn.execute("SET synchronous_commit = off")
            heartbeat(conn, f"plain-{n}", "ok", 3.5, 0)  # registered outside the timing
            return (lambda: heartbeat(conn, f"plain-{n}", "ok", 3.5, 0)), conn.close

        def trigger(enabled: bool) -> None:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f"ALTER TABLE perfmon.agent_heartbeats "
                              f"{'ENABLE' if enabled else 'DISABLE'} TRIGGER heartbeat_commit_async")

        ways = {
            "helper": (True, helper),
            "plain": (True, plain),
            "flushed": (False, plain),
            "session-off": (False, lambda n: plain(n, session_off=True)),
        }
        runs: dict[str, list[float]] = {name: [] for name in ways}
        print(f"{CALLERS} callers, {RATE} calls/s in all, runs of {SECONDS} s, {ROUNDS} rounds "
              f"(the order reversed every other round), after a run to warm up")
        run(plain)  # not counted: the new cluster's first minutes are slower
        for round_ in range(1, ROUNDS + 1):
            order = list(ways.items()) if round_ % 2 else list(reversed(ways.items()))
            for name, (with_trigger, factory) in order:
                trigger(with_trigger)
                latencies = run(factory)
                runs[name].extend(latencies)
                print(f"  round {round_} {name:12s} {describe(latencies)}")
        trigger(True)
        print("all rounds:")
        labels = {
            "helper": "Heartbeat helper",
            "plain": "plain SQL call (autocommit, synchronous_commit on)",
            "flushed": "plain SQL call, every commit waiting for its WAL flush (trigger disabled)",
            "session-off": "plain SQL call, synchronous_commit off set by the session (trigger disabled)",
        }
        for name, latencies in runs.items():
            print(f"  {labels[name]}: p95 {summary(latencies)['p95'] * 1000:.2f} ms "
                  f"(p50 {summary(latencies)['median'] * 1000:.2f} ms, {len(latencies)} calls)")
        with psycopg.connect(dsn) as conn:
            n = conn.execute("SELECT count(*) FROM perfmon.agent_heartbeats").fetchone()[0]
        print(f"heartbeats stored: {n}; target p95 <= 2 ms for the helper and the plain SQL call")


if __name__ == "__main__":
    main()
