CREATE OR REPLACE VIEW perfmon.database_series AS
-- Rates of the pg_stat_database sums divide by the time they cover (database_interval_s):
-- after a sample whose databases stage failed, that is longer than interval_s; the failed
-- sample itself has none, and its database figures are NULL (unknown), not 0.
SELECT h.ts,
       h.interval_s,
       round((coalesce(h.xact_commit, 0) + coalesce(h.xact_rollback, 0))::numeric
             / nullif(h.database_interval_s, 0)::numeric, 2)                      AS tps,
       round(coalesce(h.xact_commit, 0)::numeric
             / nullif(h.database_interval_s, 0)::numeric, 2)                      AS commits_per_s,
       round(coalesce(h.xact_rollback, 0)::numeric
             / nullif(h.database_interval_s, 0)::numeric, 2)                      AS rollbacks_per_s,
       round(100 * h.blks_hit::numeric
             / nullif(coalesce(h.blks_hit, 0) + coalesce(h.blks_read, 0), 0), 2)   AS cache_hit_pct,
       round((coalesce(h.tup_returned, 0) + coalesce(h.tup_fetched, 0))::numeric
             / nullif(h.database_interval_s, 0)::numeric, 1)                      AS rows_read_per_s,
       round((coalesce(h.tup_inserted, 0) + coalesce(h.tup_updated, 0)
              + coalesce(h.tup_deleted, 0))::numeric
             / nullif(h.database_interval_s, 0)::numeric, 1)                      AS rows_written_per_s,
       CASE WHEN h.database_interval_s > 0 THEN coalesce(h.temp_bytes, 0) END     AS temp_bytes,
       CASE WHEN h.database_interval_s > 0 THEN coalesce(h.deadlocks, 0) END      AS deadlocks,
       round(coalesce(h.wal_bytes, 0)::numeric / h.interval_s::numeric, 1)        AS wal_bytes_per_s,
       h.sessions_active,
       h.blocked_sessions
FROM perfmon.server_history AS h
WHERE h.server_id = 1 AND h.interval_s > 0;
COMMENT ON VIEW perfmon.database_series IS
    'One row per sample, all databases together: transactions, commits and rollbacks per '
    'second, cache hit %, rows read and written per second, temp bytes, deadlocks, WAL bytes '
    'per second, active and blocked sessions. Filter on ts. The database figures are NULL for a '
    'sample whose databases stage stored nothing (it failed: see perfmon.collect_timings).';
