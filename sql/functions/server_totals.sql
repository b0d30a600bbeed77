CREATE OR REPLACE FUNCTION perfmon.server_totals(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (commits numeric, rollbacks numeric, covered_s double precision, blks_hit numeric,
               blks_read numeric, samples bigint, rolled_up_hours bigint,
               xact_covered_s double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The sums of perfmon.server_workload, whose rows perfmon.workload_trend buckets: a
    -- period's totals are the sums of its buckets' figures. Hours already rolled up come
    -- from the hourly rollups (which also hold the hours whose raw days retention dropped).
    SELECT coalesce(sum(w.commits), 0), coalesce(sum(w.rollbacks), 0), coalesce(sum(w.covered_s), 0),
           coalesce(sum(w.blks_hit), 0), coalesce(sum(w.blks_read), 0), coalesce(sum(w.samples), 0)::bigint,
           count(*) FILTER (WHERE w.rolled_up), coalesce(sum(w.xact_covered_s), 0)
    FROM perfmon.server_workload(from_ts, to_ts) AS w
$$;
COMMENT ON FUNCTION perfmon.server_totals(timestamptz, timestamptz) IS
    'Committed and rolled-back transactions, seconds covered by samples, shared blocks hit and read '
    'of all databases from from_ts (included) to to_ts (excluded), the samples counted, how many '
    'hours came from the hourly rollups (rolled_up_hours) and the seconds the transaction counts '
    'cover (xact_covered_s: tps = (commits + rollbacks) / xact_covered_s). The sums of '
    'perfmon.server_workload, as perfmon.workload_trend buckets it.';
