CREATE OR REPLACE VIEW perfmon.replication_status AS
WITH here AS (
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                ELSE pg_current_wal_lsn() END AS lsn
),
live AS (
    -- The same name perfmon.collect_replication() stores in replication_history.
    SELECT coalesce(nullif(r.application_name, ''), host(r.client_addr), r.pid::text) AS name, r.*
    FROM pg_stat_replication AS r
),
gone AS (
    -- Replicas sampled in the advice window that are not connected now. A standby without
    -- a slot leaves no other trace on the primary once it disconnects.
    SELECT h.name, max(h.ts) AS last_seen_at
    FROM perfmon.replication_history AS h
    WHERE h.server_id = 1 AND h.kind = 'replica'
      AND h.ts > now() - make_interval(days => perfmon.setting('optimization.advice_window_days')::int)
      AND NOT EXISTS (SELECT FROM live WHERE live.name = h.name)
    GROUP BY h.name
)
SELECT 'replica'::text                                           AS kind,
       r.name,
       r.state,
       true                                                      AS active,
       r.sync_state,
       pg_wal_lsn_diff(here.lsn, r.sent_lsn)::bigint             AS send_lag_bytes,
       pg_wal_lsn_diff(here.lsn, r.replay_lsn)::bigint           AS replay_lag_bytes,
       round(extract(epoch FROM r.write_lag)::numeric, 3)        AS write_lag_s,
       round(extract(epoch FROM r.flush_lag)::numeric, 3)        AS flush_lag_s,
       round(extract(epoch FROM r.replay_lag)::numeric, 3)       AS replay_lag_s,
       NULL::bigint                                              AS retained_wal_bytes,
       NULL::text                                                AS wal_status,
       now()                                                     AS last_seen_at
FROM live AS r, here
UNION ALL
SELECT 'replica', g.name, 'disconnected', false, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       g.last_seen_at
FROM gone AS g
UNION ALL
SELECT 'slot', s.slot_name, s.slot_type, s.active, NULL,
       NULL, pg_wal_lsn_diff(here.lsn, s.confirmed_flush_lsn)::bigint,
       NULL, NULL, NULL,
       pg_wal_lsn_diff(here.lsn, s.restart_lsn)::bigint,
       s.wal_status, NULL
FROM pg_replication_slots AS s, here;
COMMENT ON VIEW perfmon.replication_status IS
    'Replicas (lag in bytes and seconds) and replication slots (WAL retained in bytes, whether '
    'active, wal_status) now, and replicas seen in perfmon.replication_history over '
    'optimization.advice_window_days that are no longer connected (state disconnected, active '
    'false, last_seen_at = the last sample that saw them). History: perfmon.replication_history.';
