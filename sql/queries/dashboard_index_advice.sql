-- Real-time Operations: recommended indexes (perfmon.index_recommendations), most ms saved first.
SELECT target, improvement_pct, saved_ms, est_size_bytes, statements_served, calls,
       write_overhead_pct, confidence, apply_sql, finding
FROM perfmon.index_recommendations
WHERE recommended
LIMIT 10
