CREATE OR REPLACE VIEW perfmon.database_rollup AS
-- tps divides by the seconds the bucket's samples covered (server_hourly/server_daily.covered_s,
-- as perfmon.workload_trend does), not by the bucket's length: the first sample after a
-- 10-hour pause holds 10 hours of transactions, and a day sampled from noon holds half one.
-- The length stands in only where the seconds are not known (rolled up before they were kept).
WITH r AS (
    SELECT 'hour'::text AS bucket, coalesce(s.covered_s, 3600) AS covered_s, h.*
    FROM perfmon.database_hourly AS h
    LEFT JOIN perfmon.server_hourly AS s ON s.server_id = h.server_id AND s.ts = h.ts
    WHERE h.server_id = 1
    UNION ALL
    SELECT 'day'::text, coalesce(s.covered_s, 86400), d.*
    FROM perfmon.database_daily AS d
    LEFT JOIN perfmon.server_daily AS s ON s.server_id = d.server_id AND s.ts = d.ts
    WHERE d.server_id = 1
)
SELECT r.bucket, r.ts, coalesce(db.datname, r.datid::text) AS database, r.samples,
       r.xact_commit, r.xact_rollback,
       round((coalesce(r.xact_commit, 0) + coalesce(r.xact_rollback, 0))::numeric
             / nullif(r.covered_s, 0)::numeric, 3) AS tps,
       round(100 * r.blks_hit::numeric / nullif(coalesce(r.blks_hit, 0) + coalesce(r.blks_read, 0), 0), 2)
                                                                                   AS cache_hit_pct,
       r.blks_read, r.blks_hit, r.tup_returned, r.tup_fetched, r.tup_inserted, r.tup_updated,
       r.tup_deleted, r.temp_files, r.temp_bytes, r.deadlocks, r.max_backends,
       r.covered_s::float8 AS covered_s
FROM r
LEFT JOIN perfmon.databases AS db ON db.server_id = r.server_id AND db.datid = r.datid;
COMMENT ON VIEW perfmon.database_rollup IS
    'Per database, pg_stat_database rolled up per hour (bucket = ''hour'') and per UTC day (bucket = '
    '''day''), ts = start of the bucket: commits, rollbacks, tps (transactions per second over the '
    'seconds the bucket''s samples covered, covered_s), cache_hit_pct (%), blocks read/hit, rows '
    'returned/fetched/inserted/updated/deleted, temp files and bytes, deadlocks, peak backends, '
    'covered_s (s; the bucket''s length where not known). For BI tools.';
