CREATE OR REPLACE FUNCTION perfmon.collect_server(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- One perfmon.server_history row per sample: client sessions by state with the
-- oldest query/transaction ages, the oldest XID and MXID ages, deltas of
-- pg_stat_bgwriter, pg_stat_wal and pg_stat_archiver, and this sample's
-- pg_stat_database deltas of all databases summed. A source whose stats_reset
-- moved, or whose counters went backwards, contributes no deltas (a gap). interval_s is
-- the time the bgwriter, WAL and archiver deltas cover; database_interval_s the time the
-- database sums cover (since the databases stage's previous success), NULL when that
-- stage stored nothing in this sample.
DECLARE
    cur perfmon.state_server;
    prev perfmon.state_server;
    ok_bgwriter boolean;
    ok_wal boolean;
    ok_archiver boolean;
    gaps int := 0;
    db_interval_s double precision;
BEGIN
    SELECT 1, b.checkpoints_timed, b.checkpoints_req, b.checkpoint_write_time,
           b.checkpoint_sync_time, b.buffers_checkpoint, b.buffers_clean, b.maxwritten_clean,
           b.buffers_backend, b.buffers_backend_fsync, b.buffers_alloc,
           w.wal_records, w.wal_fpi, w.wal_bytes, w.wal_buffers_full, w.wal_write, w.wal_sync,
           w.wal_write_time, w.wal_sync_time,
           ar.archived_count, ar.failed_count,
           b.stats_reset, w.stats_reset, ar.stats_reset, sample_ts
      INTO cur
      FROM pg_stat_bgwriter AS b, pg_stat_wal AS w, pg_stat_archiver AS ar;
    SELECT * INTO prev FROM perfmon.state_server WHERE server_id = 1;
    SELECT (s.extra ->> 'interval_s')::float8 INTO db_interval_s
      FROM perfmon.state_sources AS s
     WHERE s.server_id = 1 AND s.source = 'databases' AND s.last_ts = sample_ts;

    ok_bgwriter := prev.server_id IS NOT NULL
        AND prev.bgwriter_reset IS NOT DISTINCT FROM cur.bgwriter_reset
        AND cur.checkpoints_timed >= prev.checkpoints_timed
        AND cur.buffers_alloc >= prev.buffers_alloc;
    ok_wal := prev.server_id IS NOT NULL
        AND prev.wal_reset IS NOT DISTINCT FROM cur.wal_reset
        AND cur.wal_records >= prev.wal_records AND cur.wal_bytes >= prev.wal_bytes;
    ok_archiver := prev.server_id IS NOT NULL
        AND prev.archiver_reset IS NOT DISTINCT FROM cur.archiver_reset
        AND cur.archived_count >= prev.archived_count AND cur.failed_count >= prev.failed_count;
    IF prev.server_id IS NOT NULL THEN
        gaps := (NOT ok_bgwriter)::int + (NOT ok_wal)::int + (NOT ok_archiver)::int;
    ELSIF perfmon.sampled_before(sample_ts) THEN
        gaps := 3;  -- the state was lost in a crash: no bgwriter, WAL or archiver deltas
    END IF;

    INSERT INTO perfmon.server_history (server_id, ts, max_connections, sessions_total,
        sessions_active, sessions_idle, sessions_idle_in_xact, sessions_waiting, blocked_sessions,
        oldest_query_s, oldest_xact_s, oldest_idle_in_xact_s, max_xid_age, max_mxid_age,
        checkpoints_timed, checkpoints_req, checkpoint_write_ms, checkpoint_sync_ms,
        buffers_checkpoint, buffers_clean, maxwritten_clean, buffers_backend,
        buffers_backend_fsync, buffers_alloc, wal_records, wal_fpi, wal_bytes, wal_buffers_full,
        wal_write, wal_sync, wal_write_ms, wal_sync_ms, archived_count, archive_failed_count,
        last_archived_time, last_failed_time, interval_s, xact_commit, xact_rollback, blks_read,
        blks_hit, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, temp_files,
        temp_bytes, deadlocks, database_interval_s)
    SELECT 1, sample_ts, current_setting('max_connections')::int,
           act.total, act.active, act.idle, act.idle_in_xact, act.waiting, act.blocked,
           act.oldest_query_s, act.oldest_xact_s, act.oldest_idle_in_xact_s,
           (SELECT max(age(datfrozenxid)) FROM pg_database),
           (SELECT max(mxid_age(datminmxid)) FROM pg_database),
           CASE WHEN ok_bgwriter THEN nullif(cur.checkpoints_timed - prev.checkpoints_timed, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.checkpoints_req - prev.checkpoints_req, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.checkpoint_write_time - prev.checkpoint_write_time, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.checkpoint_sync_time - prev.checkpoint_sync_time, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.buffers_checkpoint - prev.buffers_checkpoint, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.buffers_clean - prev.buffers_clean, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.maxwritten_clean - prev.maxwritten_clean, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.buffers_backend - prev.buffers_backend, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.buffers_backend_fsync - prev.buffers_backend_fsync, 0) END,
           CASE WHEN ok_bgwriter THEN nullif(cur.buffers_alloc - prev.buffers_alloc, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_records - prev.wal_records, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_fpi - prev.wal_fpi, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_bytes - prev.wal_bytes, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_buffers_full - prev.wal_buffers_full, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_write - prev.wal_write, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_sync - prev.wal_sync, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_write_time - prev.wal_write_time, 0) END,
           CASE WHEN ok_wal THEN nullif(cur.wal_sync_time - prev.wal_sync_time, 0) END,
           CASE WHEN ok_archiver THEN nullif(cur.archived_count - prev.archived_count, 0) END,
           CASE WHEN ok_archiver THEN nullif(cur.failed_count - prev.failed_count, 0) END,
           (SELECT last_archived_time FROM pg_stat_archiver),
           (SELECT last_failed_time FROM pg_stat_archiver),
           extract(epoch FROM sample_ts - prev.last_ts),
           d.xact_commit, d.xact_rollback, d.blks_read, d.blks_hit, d.tup_returned,
           d.tup_fetched, d.tup_inserted, d.tup_updated, d.tup_deleted, d.temp_files,
           d.temp_bytes, d.deadlocks, db_interval_s
    FROM (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE a.state = 'active') AS active,
               count(*) FILTER (WHERE a.state = 'idle') AS idle,
               count(*) FILTER (WHERE a.state IN ('idle in transaction',
                                                  'idle in transaction (aborted)')) AS idle_in_xact,
               count(*) FILTER (WHERE a.wait_event_type = 'Lock') AS waiting,
               count(*) FILTER (WHERE a.wait_event_type = 'Lock'
                                  AND cardinality(pg_blocking_pids(a.pid)) > 0) AS blocked,
               extract(epoch FROM sample_ts - min(a.query_start)
                   FILTER (WHERE a.state = 'active')) AS oldest_query_s,
               extract(epoch FROM sample_ts - min(a.xact_start)) AS oldest_xact_s,
               extract(epoch FROM sample_ts - min(a.state_change)
                   FILTER (WHERE a.state IN ('idle in transaction',
                                             'idle in transaction (aborted)'))) AS oldest_idle_in_xact_s
        FROM pg_stat_activity AS a
        WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
    ) AS act
    -- The database stage (which runs before this one) stored this sample's deltas.
    CROSS JOIN (
        SELECT sum(h.xact_commit) AS xact_commit, sum(h.xact_rollback) AS xact_rollback,
               sum(h.blks_read) AS blks_read, sum(h.blks_hit) AS blks_hit,
               sum(h.tup_returned) AS tup_returned, sum(h.tup_fetched) AS tup_fetched,
               sum(h.tup_inserted) AS tup_inserted, sum(h.tup_updated) AS tup_updated,
               sum(h.tup_deleted) AS tup_deleted, sum(h.temp_files) AS temp_files,
               sum(h.temp_bytes) AS temp_bytes, sum(h.deadlocks) AS deadlocks
        FROM perfmon.database_history AS h
        WHERE h.server_id = 1 AND h.ts = sample_ts
    ) AS d;

    INSERT INTO perfmon.state_server VALUES (cur.*)
    ON CONFLICT (server_id) DO UPDATE SET
        (checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time,
         buffers_checkpoint, buffers_clean, maxwritten_clean, buffers_backend,
         buffers_backend_fsync, buffers_alloc, wal_records, wal_fpi, wal_bytes, wal_buffers_full,
         wal_write, wal_sync, wal_write_time, wal_sync_time, archived_count, failed_count,
         bgwriter_reset, wal_reset, archiver_reset, last_ts)
      = (EXCLUDED.checkpoints_timed, EXCLUDED.checkpoints_req, EXCLUDED.checkpoint_write_time,
         EXCLUDED.checkpoint_sync_time, EXCLUDED.buffers_checkpoint, EXCLUDED.buffers_clean,
         EXCLUDED.maxwritten_clean, EXCLUDED.buffers_backend, EXCLUDED.buffers_backend_fsync,
         EXCLUDED.buffers_alloc, EXCLUDED.wal_records, EXCLUDED.wal_fpi, EXCLUDED.wal_bytes,
         EXCLUDED.wal_buffers_full, EXCLUDED.wal_write, EXCLUDED.wal_sync,
         EXCLUDED.wal_write_time, EXCLUDED.wal_sync_time, EXCLUDED.archived_count,
         EXCLUDED.failed_count, EXCLUDED.bgwriter_reset, EXCLUDED.wal_reset,
         EXCLUDED.archiver_reset, EXCLUDED.last_ts);
    RETURN ROW(1, gaps, NULL)::perfmon.collect_result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_server(timestamptz) IS
    'Collection stage: one perfmon.server_history row per sample (sessions, XID ages, '
    'bgwriter, WAL and archiver deltas).';
