-- TPS, statement calls, mean statement time and cache hit in buckets (perfmon.workload_trend:
-- hourly rollups for rolled-up hours, raw samples after).
SELECT ts, covered_s, transactions, tps, calls, calls_per_s, mean_query_ms, cache_hit_pct
FROM perfmon.workload_trend(%(from_ts)s, %(to_ts)s, %(bucket_s)s)
