-- Developer: statements by total execution time, last 24 h vs the 24 h before (perfmon.top_queries).
SELECT rank, stmt_id, database, username, calls, total_ms, mean_ms, max_ms, rows_per_call,
       cache_hit_pct, share_of_total_pct, prev_mean_ms, mean_change_pct, query
FROM perfmon.top_queries
WHERE stmt_id <> 0
ORDER BY rank
LIMIT %(limit)s
