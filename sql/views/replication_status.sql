CREATE OR REPLACE VIEW perfmon.replication_status AS
WITH here AS (
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                ELSE pg_current_wal_lsn() END AS lsn
)
SELECT 'replica'::text                                           AS kind,
       coalesce(nullif(r.application_name, ''), host(r.client_addr)) AS name,
       r.state,
       true                                                      AS active,
       r.sync_state,
       pg_wal_lsn_diff(here.lsn, r.sent_lsn)::bigint             AS send_lag_bytes,
       pg_wal_lsn_diff(here.lsn, r.replay_lsn)::bigint           AS replay_lag_bytes,
       round(extract(epoch FROM r.write_lag)::numeric, 3)        AS write_lag_s,
       round(extract(epoch FROM r.flush_lag)::numeric, 3)        AS flush_lag_s,
       round(extract(epoch FROM r.replay_lag)::numeric, 3)       AS replay_lag_s,
       NULL::bigint                                              AS retained_wal_bytes,
       NULL::text                                                AS wal_status
FROM pg_stat_replication AS r, here
UNION ALL
SELECT 'slot', s.slot_name, s.slot_type, s.active, NULL,
       NULL, pg_wal_lsn_diff(here.lsn, s.confirmed_flush_lsn)::bigint,
       NULL, NULL, NULL,
       pg_wal_lsn_diff(here.lsn, s.restart_lsn)::bigint,
       s.wal_status
FROM pg_replication_slots AS s, here;
COMMENT ON VIEW perfmon.replication_status IS
    'Replicas (lag in bytes and seconds) and replication slots (WAL retained in bytes, whether '
    'active, wal_status) now. History: perfmon.replication_history.';
