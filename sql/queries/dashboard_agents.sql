-- Real-time Operations: application agents (perfmon.agent_health).
SELECT agent, health, last_status, last_seen, silent_s, heartbeats_1h, p95_response_ms,
       error_rate_pct, outages_7d, mttr_s
FROM perfmon.agent_health
ORDER BY health <> 'down', health <> 'stale', agent
LIMIT 50
