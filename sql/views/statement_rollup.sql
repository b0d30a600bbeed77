CREATE OR REPLACE VIEW perfmon.statement_rollup AS
WITH r AS (
    SELECT 'hour'::text AS bucket, h.* FROM perfmon.statement_hourly AS h WHERE h.server_id = 1
    UNION ALL
    SELECT 'day'::text, d.* FROM perfmon.statement_daily AS d WHERE d.server_id = 1
)
SELECT r.bucket, r.ts, r.stmt_id, s.queryid, db.datname AS database,
       CASE WHEN s.stmt_id = 0 THEN NULL ELSE pg_get_userbyid(s.userid) END AS username,
       s.query, r.calls,
       round(r.exec_ms::numeric, 2)                                   AS total_ms,
       round((r.exec_ms / nullif(r.calls, 0))::numeric, 3)            AS mean_ms,
       round(r.plan_ms::numeric, 2)                                   AS plan_ms,
       r.rows,
       round(100 * r.shared_hit::numeric / nullif(coalesce(r.shared_hit, 0) + coalesce(r.shared_read, 0), 0), 2)
                                                                      AS cache_hit_pct,
       r.temp_written * current_setting('block_size')::bigint         AS temp_written_bytes,
       r.wal_bytes
FROM r
JOIN perfmon.statements AS s ON s.stmt_id = r.stmt_id
LEFT JOIN perfmon.databases AS db ON db.server_id = s.server_id AND db.datid = s.dbid;
COMMENT ON VIEW perfmon.statement_rollup IS
    'Per statement, pg_stat_statements rolled up per hour (bucket = ''hour'') and per UTC day (bucket = '
    '''day''), ts = start of the bucket: calls, total/mean/planning ms, rows, cache_hit_pct (%), temp '
    'bytes written, WAL bytes. stmt_id 0 sums the statements beyond collection.statement_top_n. For BI '
    'tools.';
