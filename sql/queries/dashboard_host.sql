-- Real-time Operations: CPU, memory and fullest disk of each host over the last hour
-- (perfmon.host_metrics), oldest first.
SELECT ts, host, cpu_total_pct, memory_used_pct, disk_max_used_pct, load_1m
FROM perfmon.host_metrics
WHERE ts > now() - make_interval(secs => %(window_s)s)
ORDER BY ts
