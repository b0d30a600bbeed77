-- Real-time Operations: statements slower on average than the threshold, last 24 h
-- (perfmon.slow_queries), most total time first.
SELECT stmt_id, database, username, calls, mean_ms, max_ms, total_ms, share_of_total_pct, query,
       perfmon.setting('database.performance_thresholds.slow_query_ms')::float8 AS threshold_ms
FROM perfmon.slow_queries
ORDER BY total_ms DESC NULLS LAST
LIMIT 10
