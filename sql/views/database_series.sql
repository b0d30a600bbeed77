CREATE OR REPLACE VIEW perfmon.database_series AS
SELECT s.ts,
       s.interval_s,
       round((coalesce(sum(d.xact_commit), 0) + coalesce(sum(d.xact_rollback), 0))::numeric
             / s.interval_s::numeric, 2)                                      AS tps,
       round(coalesce(sum(d.xact_commit), 0)::numeric / s.interval_s::numeric, 2) AS commits_per_s,
       round(coalesce(sum(d.xact_rollback), 0)::numeric / s.interval_s::numeric, 2) AS rollbacks_per_s,
       round(100 * sum(d.blks_hit)::numeric
             / nullif(coalesce(sum(d.blks_hit), 0) + coalesce(sum(d.blks_read), 0), 0), 2) AS cache_hit_pct,
       round((coalesce(sum(d.tup_returned), 0) + coalesce(sum(d.tup_fetched), 0))::numeric
             / s.interval_s::numeric, 1)                                     AS rows_read_per_s,
       round((coalesce(sum(d.tup_inserted), 0) + coalesce(sum(d.tup_updated), 0)
              + coalesce(sum(d.tup_deleted), 0))::numeric / s.interval_s::numeric, 1) AS rows_written_per_s,
       coalesce(sum(d.temp_bytes), 0)::bigint                               AS temp_bytes,
       coalesce(sum(d.deadlocks), 0)::bigint                                AS deadlocks,
       round(coalesce(max(h.wal_bytes), 0)::numeric / s.interval_s::numeric, 1) AS wal_bytes_per_s,
       max(h.sessions_active)                                               AS sessions_active,
       max(h.blocked_sessions)                                              AS blocked_sessions
FROM perfmon.samples AS s
LEFT JOIN perfmon.database_history AS d ON d.server_id = s.server_id AND d.ts = s.ts
LEFT JOIN perfmon.server_history AS h ON h.server_id = s.server_id AND h.ts = s.ts
WHERE s.kind = 'sample' AND s.interval_s > 0
GROUP BY s.ts, s.interval_s;
COMMENT ON VIEW perfmon.database_series IS
    'One row per sample, all databases together: transactions, commits and rollbacks per '
    'second, cache hit %, rows read and written per second, temp bytes, deadlocks, WAL bytes '
    'per second, active and blocked sessions. Filter on ts.';
