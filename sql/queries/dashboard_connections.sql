-- Real-time Operations: connections at each sample of the window (perfmon.connection_usage),
-- oldest first: the chart's points are the collector's samples, so its live row is left out.
SELECT ts, total, active, idle, idle_in_transaction, waiting, max_connections, total_pct
FROM perfmon.connection_usage
WHERE NOT live AND ts > now() - make_interval(secs => %(window_s)s)
ORDER BY ts
