"""Ingest throughput through the agent's own write path (pgperfmon.ingest.Writer, logged in
as a perfmon_agent login: binary COPY into the session's staging table + perfmon.ingest_batch()).

1,000,000 points (100 series x 10,000 timestamps) in batches of 50,000, against raw COPYs of
the same rows (server_id, series_id, ts, value) into an unindexed plain copy of
perfmon.metric_samples, in the same run; rounds alternate. Two raw baselines:
  * text COPY, timestamps as ISO 8601 text: the issue's baseline ("a raw CSV COPY");
  * binary COPY, encoded by the write path's own encoder: the fastest raw COPY we know,
    printed so that the ratio against it is seen too.
Each path gets the rows as it takes them: the write path as the agent has them (seconds
since 1970), the text COPY with its timestamps already ISO text (their formatting untimed).
Targets (issue 4): >= 100,000 points/s and >= 50% of the raw COPY.
"""

from __future__ import annotations

import statistics
import time
import uuid

import psycopg
from agent_common import agent_login_dsn

from common import bench_cluster, fresh_database
from pgperfmon.ingest import Writer, encode_rows, iso, series_key

SERIES = 100
STEPS = 10_000
BATCH = 50_000
ROUNDS = 3


def points() -> list[tuple]:
    """(seq, series key, seconds since 1970, value), as the agent sends them."""
    keys = [series_key("host.diskio.read_bytes_per_s", {"host": f"h{i // 10}", "device": f"sd{i}"})
            for i in range(SERIES)]
    start = round(time.time()) - STEPS * 10 + 0.25
    rows = []
    for step in range(STEPS):
        ts = start + step * 10
        for i, key in enumerate(keys):
            rows.append((step * SERIES + i + 1, key, ts, float((step * 7919 + i * 104729) % 10**6)))
    return rows


def main() -> None:
    rows = points()
    iso_ts = {ts: iso(ts) for _seq, _key, ts, _value in rows}
    with bench_cluster() as cluster:
        dsn = fresh_database(cluster, "ingest_bench")
        agent_dsn = agent_login_dsn(dsn)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE TABLE public.raw_text (LIKE perfmon.metric_samples)")
            admin.execute("CREATE TABLE public.raw_binary (LIKE perfmon.metric_samples)")
        ours, raw_text, raw_binary = [], [], []
        with psycopg.connect(agent_dsn) as aconn, psycopg.connect(dsn) as rconn:
            writer = Writer(aconn, "bench")
            ids = writer.resolve(r[1] for r in rows[:SERIES])
            rconn.execute("SET TimeZone = 'UTC'")
            text_rows = [(ids[key], iso_ts[ts], value) for _seq, key, ts, value in rows]
            for _round in range(ROUNDS):
                with psycopg.connect(dsn, autocommit=True) as admin:
                    admin.execute("TRUNCATE perfmon.metric_samples, public.raw_text, public.raw_binary")
                    admin.execute("CHECKPOINT")
                started = time.perf_counter()
                stored = 0
                for i in range(0, len(rows), BATCH):
                    stored += writer.send(uuid.uuid4(), rows[i:i + BATCH]).stored
                ours.append(len(rows) / (time.perf_counter() - started))
                assert stored == len(rows), stored

                started = time.perf_counter()
                for i in range(0, len(rows), BATCH):
                    text = "".join(f"1\t{sid}\t{ts}\t{value!r}\n"
                                   for sid, ts, value in text_rows[i:i + BATCH])
                    with rconn.cursor().copy("COPY public.raw_text FROM STDIN") as copy:
                        copy.write(text)
                    rconn.commit()
                raw_text.append(len(rows) / (time.perf_counter() - started))

                started = time.perf_counter()
                for i in range(0, len(rows), BATCH):
                    data = encode_rows(((1, key, ts, value) for _seq, key, ts, value in rows[i:i + BATCH]),
                                       ids, [])
                    with rconn.cursor().copy("COPY public.raw_binary FROM STDIN (FORMAT binary)") as copy:
                        copy.write(data)
                    rconn.commit()
                raw_binary.append(len(rows) / (time.perf_counter() - started))
            with psycopg.connect(dsn) as admin:
                # The same rows as PostgreSQL read them from text, to the microsecond (the
                # bench's series only: the in-database host sampler runs meanwhile).
                differ = admin.execute(
                    "WITH ours AS (SELECT series_id, ts, value FROM perfmon.metric_samples "
                    "              WHERE series_id = ANY(%s)), "
                    "     raw AS (SELECT series_id, ts, value FROM public.raw_text) "
                    "SELECT count(*) FROM ((TABLE ours EXCEPT ALL TABLE raw) "
                    "                      UNION ALL (TABLE raw EXCEPT ALL TABLE ours)) AS d",
                    (list(ids.values()),)).fetchone()[0]
        print(f"points: {len(rows):,} ({SERIES} series x {STEPS:,} timestamps), batches of {BATCH:,}, "
              f"{ROUNDS} rounds")
        for i, (a, b, c) in enumerate(zip(ours, raw_text, raw_binary, strict=True), start=1):
            print(f"  round {i}: write path {a:,.0f} points/s; raw text COPY {b:,.0f} rows/s "
                  f"(ratio {a / b:.0%}); raw binary COPY {c:,.0f} rows/s (ratio {a / c:.0%})")
        med_ours, med_text, med_bin = (statistics.median(v) for v in (ours, raw_text, raw_binary))
        print(f"rows of the last round stored differently by the write path and the raw text COPY: {differ}")
        print(f"write path (agent login, binary COPY -> staging -> perfmon.ingest_batch): "
              f"{med_ours:,.0f} points/s (median)")
        print(f"raw text COPY into an unindexed copy of the table: {med_text:,.0f} rows/s (median)")
        print(f"raw binary COPY into the same: {med_bin:,.0f} rows/s (median)")
        print(f"ratio to the raw text COPY: {med_ours / med_text:.0%} (target >= 50%); "
              f"to the raw binary COPY: {med_ours / med_bin:.0%}; "
              f"target >= 100,000 points/s: {'met' if med_ours >= 100_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
