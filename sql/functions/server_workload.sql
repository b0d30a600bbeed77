CREATE OR REPLACE FUNCTION perfmon.server_workload(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (ts timestamptz, rolled_up boolean, covered_s double precision,
               xact_covered_s double precision, commits numeric, rollbacks numeric,
               blks_hit numeric, blks_read numeric, samples bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The one definition of the server's workload between two times, which
    -- perfmon.server_totals (health score, executive report) sums and perfmon.workload_trend
    -- (dashboards, report charts) buckets, so that a report's figure and a dashboard's
    -- points agree for the same hours. As perfmon.statement_totals: hours already rolled up
    -- (before rollup_hourly_until) come from the hourly rollups, one row per hour, the rest
    -- from the raw samples, one row each. Every range is half-open, [from, to), as
    -- perfmon.rollup() rolls [hour, hour + 1h): a rolled-up hour belongs to the period that
    -- holds its start, and a sample at exactly rollup_hourly_until is the first raw one.
    -- covered_s: the seconds the row covers (a raw sample's interval_s; an hour's
    -- perfmon.server_hourly.covered_s, else 3600). xact_covered_s: the seconds its
    -- transaction and block counts cover (a raw sample's database_interval_s, since the
    -- databases stage last succeeded; an hour's covered_s).
    WITH rolled AS (
        SELECT coalesce((SELECT m.value::timestamptz FROM perfmon.meta AS m
                         WHERE m.key = 'rollup_hourly_until'), '-infinity') AS until
    )
    -- An hour is in server_hourly, database_hourly or both: an idle hour has no database
    -- sums but its seconds still count, as its raw samples' did.
    SELECT coalesce(sh.ts, d.ts), true, coalesce(sh.covered_s, 3600.0)::float8,
           coalesce(sh.covered_s, 3600.0)::float8, coalesce(d.commits, 0), coalesce(d.rollbacks, 0),
           coalesce(d.hit, 0), coalesce(d.read, 0), coalesce(sh.samples, d.samples)::bigint
    FROM (SELECT h.ts, h.covered_s, h.samples
          FROM perfmon.server_hourly AS h, rolled AS r
          WHERE h.server_id = 1 AND h.ts >= from_ts AND h.ts < least(to_ts, r.until)) AS sh
    FULL JOIN (
          SELECT h.ts, sum(coalesce(h.xact_commit, 0)) AS commits,
                 sum(coalesce(h.xact_rollback, 0)) AS rollbacks, sum(coalesce(h.blks_hit, 0)) AS hit,
                 sum(coalesce(h.blks_read, 0)) AS read, max(h.samples) AS samples
          FROM perfmon.database_hourly AS h, rolled AS r
          WHERE h.server_id = 1 AND h.ts >= from_ts AND h.ts < least(to_ts, r.until)
          GROUP BY h.ts) AS d ON d.ts = sh.ts
    UNION ALL
    SELECT s.ts, false, s.interval_s::float8, coalesce(s.database_interval_s, 0)::float8,
           coalesce(s.xact_commit, 0), coalesce(s.xact_rollback, 0),
           coalesce(s.blks_hit, 0), coalesce(s.blks_read, 0), 1
    FROM perfmon.server_history AS s
    CROSS JOIN rolled AS r
    WHERE s.server_id = 1 AND s.interval_s > 0
      AND s.ts >= greatest(from_ts, r.until) AND s.ts < to_ts
$$;
COMMENT ON FUNCTION perfmon.server_workload(timestamptz, timestamptz) IS
    'The server''s workload from from_ts (included) to to_ts (excluded), one row per rolled-up hour '
    '(rolled_up) or raw sample: seconds covered, seconds the transaction counts cover, commits, '
    'rollbacks, shared blocks hit and read of all databases, samples. The source of '
    'perfmon.server_totals and perfmon.workload_trend.';
