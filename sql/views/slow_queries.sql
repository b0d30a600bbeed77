CREATE OR REPLACE VIEW perfmon.slow_queries AS
SELECT q.*
FROM perfmon.top_queries AS q
WHERE q.stmt_id <> 0
  AND q.mean_ms > perfmon.setting('database.performance_thresholds.slow_query_ms')::numeric;
COMMENT ON VIEW perfmon.slow_queries IS
    'The statements of perfmon.top_queries whose mean execution time over the last 24 hours is '
    'above database.performance_thresholds.slow_query_ms (ms), slowest total first.';
