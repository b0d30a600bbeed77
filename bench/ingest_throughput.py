"""Ingest throughput through the agent's own write path (pgperfmon.ingest.Writer, logged in
as a perfmon_agent login: COPY into the session's staging table + perfmon.ingest_batch()).

1,000,000 points (100 series x 10,000 timestamps) in batches of 50,000, against a raw
COPY of the same rows (server_id, series_id, ts, value) into an unindexed plain copy of
perfmon.metric_samples, formatted by the same code, in the same run; rounds alternate.
Targets (issue 4): >= 100,000 points/s and >= 50% of the raw COPY.
"""

from __future__ import annotations

import statistics
import time
import uuid

import psycopg
from agent_common import agent_login_dsn

from common import bench_cluster, fresh_database
from pgperfmon.ingest import Writer, _float_text, iso, series_key

SERIES = 100
STEPS = 10_000
BATCH = 50_000
ROUNDS = 3


def points() -> list[tuple]:
    keys = [series_key("host.diskio.read_bytes_per_s", {"host": f"h{i // 10}", "device": f"sd{i}"})
            for i in range(SERIES)]
    start = time.time() - STEPS * 10
    rows = []
    for step in range(STEPS):
        ts = iso(start + step * 10)
        for i, key in enumerate(keys):
            rows.append((step * SERIES + i + 1, key, ts, float((step * 7919 + i * 104729) % 10**6)))
    return rows


def main() -> None:
    rows = points()
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "ingest_bench")
        agent_dsn = agent_login_dsn(dsn)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE TABLE public.raw_samples (LIKE perfmon.metric_samples)")
        ours, raw = [], []
        with psycopg.connect(agent_dsn) as aconn, psycopg.connect(dsn) as rconn:
            writer = Writer(aconn, "bench")
            ids = writer.resolve(r[1] for r in rows[:SERIES])
            rconn.execute("SET TimeZone = 'UTC'")
            for _round in range(ROUNDS):
                with psycopg.connect(dsn, autocommit=True) as admin:
                    admin.execute("TRUNCATE perfmon.metric_samples, public.raw_samples")
                    admin.execute("CHECKPOINT")
                started = time.perf_counter()
                stored = 0
                for i in range(0, len(rows), BATCH):
                    stored += writer.send(uuid.uuid4(), rows[i:i + BATCH]).stored
                ours.append(len(rows) / (time.perf_counter() - started))
                assert stored == len(rows), stored

                started = time.perf_counter()
                for i in range(0, len(rows), BATCH):
                    text = "".join(f"1\t{ids[key]}\t{ts}\t{_float_text(value)}\n"
                                   for _seq, key, ts, value in rows[i:i + BATCH])
                    with rconn.cursor().copy("COPY public.raw_samples FROM STDIN") as copy:
                        copy.write(text)
                    rconn.commit()
                raw.append(len(rows) / (time.perf_counter() - started))
        print(f"points: {len(rows):,} ({SERIES} series x {STEPS:,} timestamps), batches of {BATCH:,}, "
              f"{ROUNDS} rounds")
        for i, (a, b) in enumerate(zip(ours, raw, strict=True), start=1):
            print(f"  round {i}: write path {a:,.0f} points/s, raw COPY {b:,.0f} rows/s, ratio {a / b:.0%}")
        med_ours, med_raw = statistics.median(ours), statistics.median(raw)
        print(f"write path (agent login, COPY -> staging -> perfmon.ingest_batch): "
              f"{med_ours:,.0f} points/s (median)")
        print(f"raw COPY into an unindexed copy of the table: {med_raw:,.0f} rows/s (median)")
        print(f"ratio: {med_ours / med_raw:.0%} (target >= 50%); target >= 100,000 points/s: "
              f"{'met' if med_ours >= 100_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
