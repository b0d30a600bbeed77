CREATE OR REPLACE FUNCTION perfmon.server_totals(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (commits numeric, rollbacks numeric, covered_s double precision, blks_hit numeric,
               blks_read numeric, samples bigint, rolled_up_hours bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The pg_stat_database sums of all databases over (from_ts, to_ts]: the raw samples of
    -- perfmon.server_history, and for the hours before the first raw sample of the period,
    -- whose raw days retention (collection.retention_days) may already have dropped, the
    -- hourly rollups (perfmon.database_hourly, seconds from perfmon.server_hourly.covered_s,
    -- else 3600). Where raw samples cover the whole period, the rollups are not read.
    WITH raw AS (
        SELECT sum(coalesce(h.xact_commit, 0)) AS commits, sum(coalesce(h.xact_rollback, 0)) AS rollbacks,
               sum(h.interval_s)::float8 AS covered_s, sum(coalesce(h.blks_hit, 0)) AS hit,
               sum(coalesce(h.blks_read, 0)) AS read, count(*) AS samples, min(h.ts) AS first_ts
        FROM perfmon.server_history AS h
        WHERE h.server_id = 1 AND h.ts > from_ts AND h.ts <= to_ts AND h.interval_s > 0
    ),
    hours AS (
        SELECT d.ts, sum(coalesce(d.xact_commit, 0)) AS commits, sum(coalesce(d.xact_rollback, 0)) AS rollbacks,
               coalesce(sh.covered_s, 3600.0)::float8 AS covered_s, sum(coalesce(d.blks_hit, 0)) AS hit,
               sum(coalesce(d.blks_read, 0)) AS read, coalesce(sh.samples, max(d.samples)) AS samples
        FROM perfmon.database_hourly AS d
        CROSS JOIN raw
        LEFT JOIN perfmon.server_hourly AS sh ON sh.server_id = 1 AND sh.ts = d.ts
        WHERE d.server_id = 1 AND d.ts >= from_ts AND d.ts < to_ts
          AND d.ts < coalesce(date_trunc('hour', raw.first_ts, 'UTC'), 'infinity')
        GROUP BY d.ts, sh.covered_s, sh.samples
    )
    SELECT coalesce(raw.commits, 0) + coalesce((SELECT sum(commits) FROM hours), 0),
           coalesce(raw.rollbacks, 0) + coalesce((SELECT sum(rollbacks) FROM hours), 0),
           coalesce(raw.covered_s, 0) + coalesce((SELECT sum(covered_s) FROM hours), 0),
           coalesce(raw.hit, 0) + coalesce((SELECT sum(hit) FROM hours), 0),
           coalesce(raw.read, 0) + coalesce((SELECT sum(read) FROM hours), 0),
           raw.samples + coalesce((SELECT sum(samples) FROM hours), 0)::bigint,
           (SELECT count(*) FROM hours)
    FROM raw
$$;
COMMENT ON FUNCTION perfmon.server_totals(timestamptz, timestamptz) IS
    'Committed and rolled-back transactions, seconds covered by samples, shared blocks hit and read '
    'of all databases between two times (from excluded, to included), with the samples counted: raw '
    'samples, and hourly rollups for the hours before the first raw sample of the period (raw days '
    'already dropped by collection.retention_days); rolled_up_hours says how many hours came from '
    'rollups.';
