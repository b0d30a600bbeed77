-- Real-time Operations: the database per sample over the last hour (perfmon.database_series),
-- oldest first.
SELECT ts, tps, cache_hit_pct, sessions_active, blocked_sessions, rows_read_per_s, rows_written_per_s
FROM perfmon.database_series
WHERE ts > now() - make_interval(secs => %(window_s)s)
ORDER BY ts
