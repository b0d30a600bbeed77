CREATE OR REPLACE FUNCTION perfmon.collect_replication(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Replicas and replication slots at the sample. Nothing is stored on a server
-- that has neither. On a standby the slots' retained WAL is measured against
-- the last replayed location.
DECLARE
    here pg_lsn := CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                        ELSE pg_current_wal_lsn() END;
    n int;
BEGIN
    WITH replicas AS (
        INSERT INTO perfmon.replication_history (server_id, ts, kind, name, state, active,
            lag_bytes, write_lag_s, flush_lag_s, replay_lag_s)
        SELECT 1, sample_ts, 'replica',
               coalesce(nullif(r.application_name, ''), host(r.client_addr), r.pid::text),
               r.state, true,
               pg_wal_lsn_diff(here, r.replay_lsn)::bigint,
               extract(epoch FROM r.write_lag), extract(epoch FROM r.flush_lag),
               extract(epoch FROM r.replay_lag)
        FROM pg_stat_replication AS r
        RETURNING 1
    ),
    slots AS (
        INSERT INTO perfmon.replication_history (server_id, ts, kind, name, state, active,
            lag_bytes, retained_bytes)
        SELECT 1, sample_ts, 'slot', s.slot_name, s.wal_status, s.active,
               pg_wal_lsn_diff(here, s.confirmed_flush_lsn)::bigint,
               pg_wal_lsn_diff(here, s.restart_lsn)::bigint
        FROM pg_replication_slots AS s
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM replicas) + (SELECT count(*) FROM slots) INTO n;
    RETURN ROW(n, 0, NULL)::perfmon.collect_result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_replication(timestamptz) IS
    'Collection stage: replicas and replication slots into perfmon.replication_history.';
