CREATE OR REPLACE VIEW perfmon.database_rollup AS
WITH r AS (
    SELECT 'hour'::text AS bucket, 3600 AS bucket_s, h.* FROM perfmon.database_hourly AS h
    WHERE h.server_id = 1
    UNION ALL
    SELECT 'day'::text, 86400, d.* FROM perfmon.database_daily AS d
    WHERE d.server_id = 1
)
SELECT r.bucket, r.ts, coalesce(db.datname, r.datid::text) AS database, r.samples,
       r.xact_commit, r.xact_rollback,
       round((coalesce(r.xact_commit, 0) + coalesce(r.xact_rollback, 0))::numeric / r.bucket_s, 3) AS tps,
       round(100 * r.blks_hit::numeric / nullif(coalesce(r.blks_hit, 0) + coalesce(r.blks_read, 0), 0), 2)
                                                                                   AS cache_hit_pct,
       r.blks_read, r.blks_hit, r.tup_returned, r.tup_fetched, r.tup_inserted, r.tup_updated,
       r.tup_deleted, r.temp_files, r.temp_bytes, r.deadlocks, r.max_backends
FROM r
LEFT JOIN perfmon.databases AS db ON db.server_id = r.server_id AND db.datid = r.datid;
COMMENT ON VIEW perfmon.database_rollup IS
    'Per database, pg_stat_database rolled up per hour (bucket = ''hour'') and per UTC day (bucket = '
    '''day''), ts = start of the bucket: commits, rollbacks, tps (transactions per second averaged over '
    'the whole bucket), cache_hit_pct (%), blocks read/hit, rows returned/fetched/inserted/updated/'
    'deleted, temp files and bytes, deadlocks, peak backends. For BI tools.';
