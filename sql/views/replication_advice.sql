CREATE OR REPLACE VIEW perfmon.replication_advice AS
WITH cfg AS (
    SELECT perfmon.setting('database.performance_thresholds.replication_lag_seconds')::numeric AS max_lag_s
)
SELECT s.kind, s.name, s.state, s.active, s.replay_lag_bytes, s.replay_lag_s, s.retained_wal_bytes,
       s.wal_status,
       format('%s %s', s.kind, s.name) AS target,
       CASE WHEN s.kind = 'replica' AND s.state = 'disconnected' THEN 'warning'
            WHEN s.kind = 'replica' AND s.replay_lag_s >= cfg.max_lag_s * 5 THEN 'critical'
            WHEN s.kind = 'replica' AND s.replay_lag_s >= cfg.max_lag_s THEN 'warning'
            WHEN s.kind = 'slot' AND NOT s.active AND s.wal_status IN ('unreserved', 'lost') THEN 'critical'
            WHEN s.kind = 'slot' AND NOT s.active AND s.retained_wal_bytes > 0 THEN 'warning'
            ELSE 'ok' END AS severity,
       CASE WHEN s.kind = 'replica' AND s.state = 'disconnected'
            THEN format('replica %s is no longer connected: it was last seen streaming at %s (%s ago); '
                        'unless it uses a replication slot, the primary keeps no WAL for it beyond '
                        'wal_keep_size (%s), so the longer it stays away the likelier it needs a new '
                        'base backup', s.name, date_trunc('second', s.last_seen_at),
                        justify_interval(date_trunc('second', now() - s.last_seen_at)),
                        current_setting('wal_keep_size'))
            WHEN s.kind = 'replica'
            THEN format('replica %s replays %s s (%s) behind, above the %s s threshold',
                        s.name, s.replay_lag_s, pg_size_pretty(s.replay_lag_bytes), cfg.max_lag_s)
            -- A lost slot holds nothing any more (restart_lsn is gone): say what it means.
            WHEN s.wal_status = 'lost'
            THEN format('replication slot %s is inactive and lost (wal_status lost): the WAL its '
                        'consumer needs was removed, so that consumer cannot resume; rebuild it (a new '
                        'base backup, or a new logical slot) and drop the slot', s.name)
            WHEN s.wal_status = 'unreserved'
            THEN format('replication slot %s is inactive and holds %s of WAL, more than '
                        'max_slot_wal_keep_size (wal_status unreserved): the next checkpoint removes '
                        'WAL its consumer still needs', s.name, pg_size_pretty(s.retained_wal_bytes))
            ELSE format('replication slot %s is inactive and holds %s of WAL (wal_status %s): pg_wal '
                        'grows until its consumer returns or the slot is dropped',
                        s.name, pg_size_pretty(s.retained_wal_bytes), s.wal_status) END AS finding,
       jsonb_build_object('replay_lag_s', s.replay_lag_s, 'replay_lag_bytes', s.replay_lag_bytes,
                          'retained_wal_bytes', s.retained_wal_bytes, 'wal_status', s.wal_status,
                          'active', s.active, 'state', s.state,
                          'last_seen_at', CASE WHEN s.kind = 'replica' AND NOT s.active THEN s.last_seen_at END,
                          'wal_keep_size', CASE WHEN s.kind = 'replica' AND NOT s.active
                                                THEN current_setting('wal_keep_size') END) AS evidence,
       CASE WHEN s.kind = 'slot' THEN format('SELECT pg_drop_replication_slot(%L);', s.name)
            WHEN NOT s.active
            THEN '-- check the standby''s server log and its primary_conninfo; if it was removed on '
                 'purpose, dismiss this finding (it drops out after optimization.advice_window_days)'
            ELSE '-- check the replica''s I/O and network, and hot_standby_feedback conflicts' END AS apply_sql,
       CASE WHEN s.kind = 'slot' THEN s.retained_wal_bytes
            WHEN NOT s.active THEN round(extract(epoch FROM now() - s.last_seen_at)::numeric)
            ELSE s.replay_lag_s END::numeric AS benefit,
       CASE WHEN s.kind = 'slot' THEN 'bytes reclaimable'
            WHEN NOT s.active THEN 'seconds disconnected'
            ELSE 'seconds of lag' END AS benefit_unit,
       'high'::text AS confidence
FROM perfmon.replication_status AS s, cfg;
COMMENT ON VIEW perfmon.replication_advice IS
    'Replicas replaying more than database.performance_thresholds.replication_lag_seconds behind '
    '(seconds and bytes) and inactive replication slots that hold WAL (retained_wal_bytes; '
    'critical when wal_status is unreserved or lost), and replicas seen in the sampled history that '
    'are no longer connected (warning, benefit = seconds since last seen), from '
    'perfmon.replication_status.';
