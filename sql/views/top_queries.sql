CREATE OR REPLACE VIEW perfmon.top_queries AS
WITH cur AS (
    SELECT * FROM perfmon.statement_totals(now() - interval '24 hours', now())
),
prev AS (
    SELECT * FROM perfmon.statement_totals(now() - interval '48 hours', now() - interval '24 hours')
),
grand AS (
    SELECT nullif(sum(exec_ms), 0) AS exec_ms FROM cur
)
SELECT rank() OVER (ORDER BY c.exec_ms DESC NULLS LAST)     AS rank,
       c.stmt_id,
       d.queryid,
       db.datname                                            AS database,
       CASE WHEN d.stmt_id = 0 THEN NULL ELSE pg_get_userbyid(d.userid) END AS username,
       d.query,
       c.calls,
       round(c.exec_ms::numeric, 2)                          AS total_ms,
       round((c.exec_ms / nullif(c.calls, 0))::numeric, 3)   AS mean_ms,
       round(st.min_exec_time::numeric, 3)                   AS min_ms,
       round(st.max_exec_time::numeric, 3)                   AS max_ms,
       round(c.plan_ms::numeric, 2)                          AS plan_ms,
       c.rows,
       round((c.rows::numeric / nullif(c.calls, 0)), 1)      AS rows_per_call,
       round(100 * c.shared_hit::numeric / nullif(c.shared_hit + c.shared_read, 0), 2) AS cache_hit_pct,
       c.temp_written * current_setting('block_size')::bigint AS temp_written_bytes,
       c.wal_bytes,
       round((100 * c.exec_ms / grand.exec_ms)::numeric, 2)  AS share_of_total_pct,
       p.calls                                               AS prev_calls,
       round(p.exec_ms::numeric, 2)                          AS prev_total_ms,
       round((p.exec_ms / nullif(p.calls, 0))::numeric, 3)   AS prev_mean_ms,
       round((100 * ((c.exec_ms / nullif(c.calls, 0)) / nullif(p.exec_ms / nullif(p.calls, 0), 0) - 1))::numeric, 1)
                                                             AS mean_change_pct,
       round((100 * (c.exec_ms / nullif(p.exec_ms, 0) - 1))::numeric, 1) AS total_change_pct
FROM cur AS c
CROSS JOIN grand
JOIN perfmon.statements AS d ON d.stmt_id = c.stmt_id
LEFT JOIN perfmon.databases AS db ON db.server_id = d.server_id AND db.datid = d.dbid
LEFT JOIN perfmon.state_statements AS st ON st.stmt_id = c.stmt_id
LEFT JOIN prev AS p ON p.stmt_id = c.stmt_id;
COMMENT ON VIEW perfmon.top_queries IS
    'Statements by total execution time over the last 24 hours (ms), with calls, mean ms, rows, '
    'cache hit %, temp and WAL bytes, share of all execution time (%), and the same figures for '
    'the 24 hours before with the change in %. min_ms/max_ms are since pg_stat_statements was '
    'last reset. stmt_id 0 sums the statements beyond collection.statement_top_n.';
