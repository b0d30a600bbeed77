-- Each perfmon.analyze() run and its parts (issue 9).
--
-- perfmon.analyze() runs its parts (anomalies, alerts, recovery, health) each in its
-- own subtransaction and reported a failing one only in the jsonb it returns, which
-- pg_cron drops: the failure was visible nowhere. Like the collection stages
-- (perfmon.samples.stages) and the advisor rules (perfmon.advisor_runs), each run is
-- now logged with every part's ms and error; perfmon.analyze_timings reads it and
-- pgperfmon status reports the parts that fail. One row per analysis interval, so
-- partitioned by day and dropped whole with the collection history.
CREATE TABLE perfmon.analyze_runs (
    server_id   integer NOT NULL,
    ts          timestamptz NOT NULL,
    duration_ms real NOT NULL,
    parts       jsonb NOT NULL,
    PRIMARY KEY (server_id, ts)
) PARTITION BY RANGE (ts);
COMMENT ON TABLE perfmon.analyze_runs IS
    'One row per perfmon.analyze() run: total duration (ms) and per part {ms, error?, sqlstate?} '
    'or {skipped: why}. Read it through perfmon.analyze_timings.';

INSERT INTO perfmon.partitioned_tables (table_name, granularity, retention_key) VALUES
    ('analyze_runs', 'day', 'collection.retention_days');
