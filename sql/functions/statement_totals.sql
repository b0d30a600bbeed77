CREATE OR REPLACE FUNCTION perfmon.statement_totals(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (stmt_id integer, calls bigint, exec_ms double precision, plan_ms double precision,
               rows bigint, shared_hit bigint, shared_read bigint, temp_written bigint,
               wal_bytes bigint)
LANGUAGE sql STABLE
-- Owner's rights: readers of perfmon.top_queries may not read the history tables.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- This server's (server_id 1) statements, as every reader of the history.
    -- Hours already rolled up come from perfmon.statement_hourly (a period start
    -- inside such an hour is rounded up to the next hour); the rest from raw samples.
    -- Every range is half-open, [from, to), as perfmon.rollup() rolls [hour, hour + 1h):
    -- a sample at exactly rollup_hourly_until is the first raw one.
    WITH rolled AS (
        SELECT coalesce((SELECT value::timestamptz FROM perfmon.meta
                         WHERE key = 'rollup_hourly_until'), '-infinity') AS until
    )
    SELECT u.stmt_id, sum(u.calls)::bigint, sum(u.exec_ms), sum(u.plan_ms), sum(u.rows)::bigint,
           sum(u.shared_hit)::bigint, sum(u.shared_read)::bigint, sum(u.temp_written)::bigint,
           sum(u.wal_bytes)::bigint
    FROM (
        SELECT h.stmt_id, h.calls, h.exec_ms, h.plan_ms, h.rows, h.shared_hit, h.shared_read,
               h.temp_written, h.wal_bytes
        FROM perfmon.statement_hourly AS h, rolled
        WHERE h.server_id = 1 AND h.ts >= from_ts AND h.ts < least(to_ts, rolled.until)
        UNION ALL
        SELECT s.stmt_id, s.calls, s.exec_ms, s.plan_ms, s.rows, s.shared_hit, s.shared_read,
               s.temp_written, s.wal_bytes
        FROM perfmon.statement_history AS s, rolled
        WHERE s.server_id = 1 AND s.ts >= greatest(from_ts, rolled.until) AND s.ts < to_ts
    ) AS u
    GROUP BY u.stmt_id
$$;
COMMENT ON FUNCTION perfmon.statement_totals(timestamptz, timestamptz) IS
    'Per statement: calls, execution and planning ms, rows, shared blocks hit/read, temp blocks '
    'written and WAL bytes from from_ts (included) to to_ts (excluded): hourly rollups for rolled-up '
    'hours, raw samples after.';
