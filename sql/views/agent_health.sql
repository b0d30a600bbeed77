CREATE OR REPLACE VIEW perfmon.agent_health AS
WITH recent AS (
    SELECT h.agent_id,
           count(*) AS heartbeats,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY h.response_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY h.response_ms) AS p95,
           sum(h.errors) AS errors,
           count(*) FILTER (WHERE h.errors > 0 OR h.status IN ('error', 'down')) AS failed
    FROM perfmon.agent_heartbeats AS h
    WHERE h.ts > now() - interval '1 hour'
    GROUP BY h.agent_id
),
outages AS (
    SELECT o.agent, count(*) AS outages, avg(o.recovery_s) AS mttr_s
    FROM perfmon.agent_outages AS o
    GROUP BY o.agent
),
limits AS (
    SELECT perfmon.setting('system.agent_stale_after_intervals')::float8 AS stale_after,
           perfmon.setting('system.agent_down_after_intervals')::float8 AS down_after
)
SELECT a.name AS agent,
       CASE
           WHEN a.last_status = 'down' THEN 'down'
           WHEN extract(epoch FROM now() - a.last_seen)
                > perfmon.agent_interval_s(a.expected_interval_s) * l.down_after THEN 'down'
           WHEN extract(epoch FROM now() - a.last_seen)
                > perfmon.agent_interval_s(a.expected_interval_s) * l.stale_after THEN 'stale'
           ELSE 'up'
       END AS health,
       a.last_status,
       a.last_seen,
       extract(epoch FROM now() - a.last_seen)::float8 AS silent_s,
       a.expected_interval_s::float8 AS expected_interval_s,
       a.first_seen,
       coalesce(r.heartbeats, 0) AS heartbeats_1h,
       round(r.p50::numeric, 3)::float8 AS p50_response_ms,
       round(r.p95::numeric, 3)::float8 AS p95_response_ms,
       coalesce(r.errors, 0) AS errors_1h,
       round(100.0 * r.failed / nullif(r.heartbeats, 0), 1)::float8 AS error_rate_pct,
       coalesce(o.outages, 0) AS outages_7d,
       round(o.mttr_s::numeric, 1)::float8 AS mttr_s
FROM perfmon.agents AS a
CROSS JOIN limits AS l
LEFT JOIN recent AS r USING (agent_id)
LEFT JOIN outages AS o ON o.agent = a.name
ORDER BY a.name;
COMMENT ON VIEW perfmon.agent_health IS
    'Application agents: health (up; stale after system.agent_stale_after_intervals expected '
    'intervals without a heartbeat; down when it reported down or after '
    'system.agent_down_after_intervals intervals), seconds since its last heartbeat, the last '
    'hour''s heartbeats, p50/p95 response time in ms, errors and error rate in percent of '
    'heartbeats that reported errors, and over 7 days the outages and their mean time to '
    'recovery (MTTR) in seconds, from perfmon.agent_outages.';
