CREATE OR REPLACE FUNCTION perfmon.workload_trend(from_ts timestamptz, to_ts timestamptz,
                                                  bucket_s integer DEFAULT 3600)
RETURNS TABLE (ts timestamptz, covered_s double precision, transactions bigint, tps double precision,
               calls bigint, calls_per_s double precision, mean_query_ms double precision,
               cache_hit_pct double precision)
LANGUAGE plpgsql STABLE
-- Owner's rights: readers (reports, dashboards) may not read the history tables.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    -- A bucket of 0 s or less (or NULL) used to become 1 s, or one bucket without a start,
    -- silently: a BI tool's wrong parameter read as a chart.
    IF bucket_s IS NULL OR bucket_s < 1 THEN
        RAISE EXCEPTION 'pgperfmon: workload_trend bucket_s must be a positive number of seconds, got %',
            coalesce(bucket_s::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value', HINT = 'e.g. 3600 for hourly points';
    ELSIF from_ts IS NULL OR to_ts IS NULL OR NOT (isfinite(from_ts) AND isfinite(to_ts)) THEN
        RAISE EXCEPTION 'pgperfmon: workload_trend needs finite from_ts and to_ts, got % and %',
            coalesce(from_ts::text, 'NULL'), coalesce(to_ts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    -- The transactions, seconds and blocks are perfmon.server_workload's rows (the source of
    -- perfmon.server_totals too: a report's totals are the sums of these buckets); the
    -- statements are read as perfmon.statement_totals reads them. Hours already rolled up
    -- come from the hourly tables, the rest from raw samples; a raw sample's transactions
    -- cover its database_interval_s (since the databases stage last succeeded), so tps
    -- divides by those seconds. A bucket narrower than an hour therefore holds one point
    -- per hour where only rollups remain.
    -- Ranges are half-open, [from, to): a sample at exactly rollup_hourly_until is raw.
    WITH rolled AS (
        SELECT coalesce((SELECT value::timestamptz FROM perfmon.meta
                         WHERE key = 'rollup_hourly_until'), '-infinity') AS until,
               make_interval(secs => bucket_s) AS width
    ),
    db AS (
        SELECT date_bin(r.width, w.ts, from_ts) AS bucket, sum(w.covered_s) AS seconds,
               sum(w.xact_covered_s) AS xact_seconds, sum(w.commits + w.rollbacks) AS xacts,
               sum(w.blks_hit) AS hit, sum(w.blks_read) AS read
        FROM perfmon.server_workload(from_ts, to_ts) AS w, rolled AS r
        GROUP BY 1
    ),
    st AS (
        SELECT date_bin(r.width, u.ts, from_ts) AS bucket, sum(u.calls) AS calls,
               sum(u.exec_ms) AS exec_ms
        FROM (
            SELECT h.ts, h.calls, h.exec_ms
            FROM perfmon.statement_hourly AS h, rolled AS r
            WHERE h.server_id = 1 AND h.ts >= from_ts AND h.ts < least(to_ts, r.until)
            UNION ALL
            SELECT s.ts, s.calls, s.exec_ms
            FROM perfmon.statement_history AS s, rolled AS r
            WHERE s.server_id = 1 AND s.ts >= greatest(from_ts, r.until) AND s.ts < to_ts
        ) AS u, rolled AS r
        GROUP BY 1
    )
    SELECT coalesce(db.bucket, st.bucket),
           db.seconds,
           db.xacts::bigint,
           round((db.xacts / nullif(db.xact_seconds, 0))::numeric, 2)::float8,
           st.calls::bigint,
           round((st.calls / nullif(db.seconds, 0))::numeric, 2)::float8,
           round((st.exec_ms / nullif(st.calls, 0))::numeric, 3)::float8,
           round((100 * db.hit / nullif(db.hit + db.read, 0))::numeric, 2)::float8
    FROM db FULL JOIN st ON st.bucket = db.bucket
    ORDER BY 1;
END
$$;
COMMENT ON FUNCTION perfmon.workload_trend(timestamptz, timestamptz, integer) IS
    'The workload between two times in buckets of bucket_s seconds (start of each bucket): seconds '
    'covered by samples, transactions (commits + rollbacks, all databases) and per second (tps), '
    'statement calls and per second, mean statement execution time in ms (execution ms / calls, '
    'all statements), buffer cache hit %. From from_ts (included) to to_ts (excluded); bucket_s must be '
    'positive; hourly rollups '
    'for rolled-up hours, raw samples after.';
