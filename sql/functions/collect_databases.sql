CREATE OR REPLACE FUNCTION perfmon.collect_databases(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- pg_stat_database of every database: deltas since the previous sample. A database
-- whose stats_reset moved (pg_stat_reset() in it), or any of whose counters went
-- backwards (a crash), gives no row: a gap. Its state is refreshed, so the next sample
-- has its delta again. The deltas cover the time since this stage's previous successful
-- sample (state_sources), recorded for perfmon.collect_server(): after a failed run
-- (a lock timeout) that is longer than the server stage's interval.
DECLARE
    result perfmon.collect_result;
    src perfmon.state_sources;
    -- No state although an earlier sample exists: a crash emptied it, the deltas since
    -- that sample are lost (a gap), and this sample is a baseline.
    lost int := CASE WHEN NOT EXISTS (SELECT FROM perfmon.state_databases WHERE server_id = 1)
                          AND perfmon.sampled_before(sample_ts) THEN 1 ELSE 0 END;
BEGIN
    INSERT INTO perfmon.databases AS d (server_id, datid, datname)
    SELECT 1, oid, datname FROM pg_database
    ON CONFLICT (server_id, datid) DO UPDATE SET datname = EXCLUDED.datname
        WHERE d.datname IS DISTINCT FROM EXCLUDED.datname;

    WITH cur AS (
        SELECT datid, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned,
               tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files,
               temp_bytes, deadlocks, coalesce(checksum_failures, 0) AS checksum_failures,
               blk_read_time, blk_write_time, session_time, active_time,
               idle_in_transaction_time, sessions, sessions_abandoned, sessions_fatal,
               sessions_killed, numbackends, stats_reset
        FROM pg_stat_database
        WHERE datid <> 0
    ),
    cmp AS (
        SELECT c.*, p.datid IS NOT NULL AS known,
               p.datid IS NOT NULL
               AND (c.stats_reset IS DISTINCT FROM p.stats_reset
                    OR least(c.xact_commit - p.xact_commit, c.xact_rollback - p.xact_rollback,
                             c.blks_read - p.blks_read, c.blks_hit - p.blks_hit,
                             c.tup_returned - p.tup_returned, c.tup_fetched - p.tup_fetched,
                             c.tup_inserted - p.tup_inserted, c.tup_updated - p.tup_updated,
                             c.tup_deleted - p.tup_deleted, c.conflicts - p.conflicts,
                             c.temp_files - p.temp_files, c.temp_bytes - p.temp_bytes,
                             c.deadlocks - p.deadlocks,
                             c.checksum_failures - p.checksum_failures,
                             c.blk_read_time - p.blk_read_time,
                             c.blk_write_time - p.blk_write_time,
                             c.session_time - p.session_time, c.active_time - p.active_time,
                             c.idle_in_transaction_time - p.idle_in_transaction_time,
                             c.sessions - p.sessions,
                             c.sessions_abandoned - p.sessions_abandoned,
                             c.sessions_fatal - p.sessions_fatal,
                             c.sessions_killed - p.sessions_killed) < 0) AS went_back,
               (c.*) IS DISTINCT FROM (p.datid, p.xact_commit, p.xact_rollback, p.blks_read,
                     p.blks_hit, p.tup_returned, p.tup_fetched, p.tup_inserted, p.tup_updated,
                     p.tup_deleted, p.conflicts, p.temp_files, p.temp_bytes, p.deadlocks,
                     p.checksum_failures, p.blk_read_time, p.blk_write_time, p.session_time,
                     p.active_time, p.idle_in_transaction_time, p.sessions,
                     p.sessions_abandoned, p.sessions_fatal, p.sessions_killed,
                     p.numbackends, p.stats_reset) AS changed,
               c.xact_commit - p.xact_commit AS d_xact_commit,
               c.xact_rollback - p.xact_rollback AS d_xact_rollback,
               c.blks_read - p.blks_read AS d_blks_read,
               c.blks_hit - p.blks_hit AS d_blks_hit,
               c.tup_returned - p.tup_returned AS d_tup_returned,
               c.tup_fetched - p.tup_fetched AS d_tup_fetched,
               c.tup_inserted - p.tup_inserted AS d_tup_inserted,
               c.tup_updated - p.tup_updated AS d_tup_updated,
               c.tup_deleted - p.tup_deleted AS d_tup_deleted,
               c.conflicts - p.conflicts AS d_conflicts,
               c.temp_files - p.temp_files AS d_temp_files,
               c.temp_bytes - p.temp_bytes AS d_temp_bytes,
               c.deadlocks - p.deadlocks AS d_deadlocks,
               c.checksum_failures - p.checksum_failures AS d_checksum_failures,
               c.blk_read_time - p.blk_read_time AS d_blk_read_time,
               c.blk_write_time - p.blk_write_time AS d_blk_write_time,
               c.session_time - p.session_time AS d_session_time,
               c.active_time - p.active_time AS d_active_time,
               c.idle_in_transaction_time - p.idle_in_transaction_time AS d_idle_in_xact,
               c.sessions - p.sessions AS d_sessions,
               c.sessions_abandoned - p.sessions_abandoned AS d_sessions_abandoned,
               c.sessions_fatal - p.sessions_fatal AS d_sessions_fatal,
               c.sessions_killed - p.sessions_killed AS d_sessions_killed
        FROM cur AS c
        LEFT JOIN perfmon.state_databases AS p ON p.server_id = 1 AND p.datid = c.datid
    ),
    saved AS (
        INSERT INTO perfmon.state_databases AS s
        SELECT 1, datid, xact_commit, xact_rollback, blks_read, blks_hit, tup_returned,
               tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, temp_files,
               temp_bytes, deadlocks, checksum_failures, blk_read_time, blk_write_time,
               session_time, active_time, idle_in_transaction_time, sessions,
               sessions_abandoned, sessions_fatal, sessions_killed, numbackends, stats_reset
        FROM cmp WHERE changed
        ON CONFLICT (server_id, datid) DO UPDATE SET
            (xact_commit, xact_rollback, blks_read, blks_hit, tup_returned, tup_fetched,
             tup_inserted, tup_updated, tup_deleted, conflicts, temp_files, temp_bytes,
             deadlocks, checksum_failures, blk_read_time, blk_write_time, session_time,
             active_time, idle_in_transaction_time, sessions, sessions_abandoned,
             sessions_fatal, sessions_killed, numbackends, stats_reset)
          = (EXCLUDED.xact_commit, EXCLUDED.xact_rollback, EXCLUDED.blks_read,
             EXCLUDED.blks_hit, EXCLUDED.tup_returned, EXCLUDED.tup_fetched,
             EXCLUDED.tup_inserted, EXCLUDED.tup_updated, EXCLUDED.tup_deleted,
             EXCLUDED.conflicts, EXCLUDED.temp_files, EXCLUDED.temp_bytes, EXCLUDED.deadlocks,
             EXCLUDED.checksum_failures, EXCLUDED.blk_read_time, EXCLUDED.blk_write_time,
             EXCLUDED.session_time, EXCLUDED.active_time, EXCLUDED.idle_in_transaction_time,
             EXCLUDED.sessions, EXCLUDED.sessions_abandoned, EXCLUDED.sessions_fatal,
             EXCLUDED.sessions_killed, EXCLUDED.numbackends, EXCLUDED.stats_reset)
    ),
    stored AS (
        INSERT INTO perfmon.database_history
        SELECT 1, sample_ts, datid, numbackends,
               nullif(d_xact_commit, 0), nullif(d_xact_rollback, 0), nullif(d_blks_read, 0),
               nullif(d_blks_hit, 0), nullif(d_tup_returned, 0), nullif(d_tup_fetched, 0),
               nullif(d_tup_inserted, 0), nullif(d_tup_updated, 0), nullif(d_tup_deleted, 0),
               nullif(d_conflicts, 0), nullif(d_temp_files, 0), nullif(d_temp_bytes, 0),
               nullif(d_deadlocks, 0), nullif(d_checksum_failures, 0),
               nullif(d_blk_read_time, 0), nullif(d_blk_write_time, 0),
               nullif(d_session_time, 0), nullif(d_active_time, 0), nullif(d_idle_in_xact, 0),
               nullif(d_sessions, 0), nullif(d_sessions_abandoned, 0),
               nullif(d_sessions_fatal, 0), nullif(d_sessions_killed, 0)
        FROM cmp
        WHERE known AND changed AND NOT went_back
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM cmp WHERE went_back) + lost
      INTO result.stored, result.gaps;

    SELECT * INTO src FROM perfmon.state_sources WHERE server_id = 1 AND source = 'databases';
    INSERT INTO perfmon.state_sources AS s (server_id, source, last_ts, extra)
    VALUES (1, 'databases', sample_ts,
            jsonb_build_object('interval_s', extract(epoch FROM sample_ts - src.last_ts)))
    ON CONFLICT (server_id, source) DO UPDATE SET last_ts = EXCLUDED.last_ts, extra = EXCLUDED.extra;
    RETURN result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_databases(timestamptz) IS
    'Collection stage: pg_stat_database deltas into perfmon.database_history.';
