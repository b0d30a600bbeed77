CREATE OR REPLACE VIEW perfmon.server_rollup AS
-- bucket 'hour' reads perfmon.server_hourly, 'day' perfmon.server_daily: a filter on
-- bucket leaves the other table unread.
SELECT 'hour'::text AS bucket, h.ts, h.samples, h.max_sessions, round(h.avg_sessions_active::numeric, 2) AS avg_sessions_active,
       h.max_sessions_active, h.max_blocked_sessions, h.checkpoints_timed, h.checkpoints_req,
       h.wal_bytes, h.max_xid_age
FROM perfmon.server_hourly AS h
WHERE h.server_id = 1
UNION ALL
SELECT 'day'::text, d.ts, d.samples, d.max_sessions, round(d.avg_sessions_active::numeric, 2),
       d.max_sessions_active, d.max_blocked_sessions, d.checkpoints_timed, d.checkpoints_req,
       d.wal_bytes, d.max_xid_age
FROM perfmon.server_daily AS d
WHERE d.server_id = 1;
COMMENT ON VIEW perfmon.server_rollup IS
    'Server-wide history rolled up per hour (bucket = ''hour'') and per UTC day (bucket = ''day''), '
    'ts = start of the bucket: samples taken, peak client sessions, mean and peak active sessions, '
    'peak blocked sessions, checkpoints (timed, requested), WAL bytes written, peak XID age. Kept '
    'collection.rollup_hourly_retention_days / rollup_daily_retention_days. For BI tools.';
