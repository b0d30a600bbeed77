CREATE OR REPLACE VIEW perfmon.agent_outages AS
-- Down periods of the last 7 days. An agent is down from the heartbeat where it
-- reported status down, or from its last heartbeat before a silence longer than
-- system.agent_down_after_intervals expected intervals, until its next heartbeat
-- that is not down. Islands: each heartbeat that starts an outage opens a
-- group; the group's first recovering heartbeat closes it.
WITH hb AS (
    SELECT h.agent_id, h.ts, h.status = 'down' AS is_down,
           lag(h.ts) OVER w AS prev_ts,
           coalesce(lag(h.status = 'down') OVER w, false) AS prev_down
    FROM perfmon.agent_heartbeats AS h
    WHERE h.ts > now() - interval '7 days'
    WINDOW w AS (PARTITION BY h.agent_id ORDER BY h.ts)
),
cfg AS MATERIALIZED (
    -- read once, not once per heartbeat
    SELECT perfmon.setting('system.agent_down_after_intervals')::float8 AS down_after
),
marked AS (
    SELECT hb.*,
           coalesce(hb.ts - hb.prev_ts > make_interval(secs => a.expected_interval_s * cfg.down_after),
                    false) AS silent_gap
    FROM hb JOIN perfmon.agents AS a USING (agent_id) CROSS JOIN cfg
),
events AS (
    SELECT m.agent_id, m.ts,
           CASE WHEN NOT m.prev_down AND m.silent_gap THEN m.prev_ts
                WHEN m.is_down AND NOT m.prev_down THEN m.ts END AS starts_at,
           CASE WHEN NOT m.prev_down AND m.silent_gap THEN 'no heartbeat'
                WHEN m.is_down AND NOT m.prev_down THEN 'reported down' END AS cause,
           NOT m.is_down AND (m.prev_down OR m.silent_gap) AS recovers
    FROM marked AS m
),
grouped AS (
    SELECT e.*, count(e.starts_at) OVER (PARTITION BY e.agent_id ORDER BY e.ts) AS grp
    FROM events AS e
),
closed AS (
    SELECT g.agent_id, max(g.starts_at) AS down_since, max(g.cause) AS cause,
           min(g.ts) FILTER (WHERE g.recovers) AS recovered_at
    FROM grouped AS g
    WHERE g.grp > 0
    GROUP BY g.agent_id, g.grp
),
silent_now AS (
    -- Gone quiet without saying so, and not back yet.
    SELECT a.agent_id, a.last_seen AS down_since, 'no heartbeat' AS cause, NULL::timestamptz AS recovered_at
    FROM perfmon.agents AS a
    WHERE a.last_status <> 'down'
      AND now() - a.last_seen > make_interval(secs => perfmon.agent_interval_s(a.expected_interval_s)
                                * perfmon.setting('system.agent_down_after_intervals')::float8)
)
SELECT a.name AS agent, o.down_since, o.recovered_at,
       extract(epoch FROM o.recovered_at - o.down_since)::float8 AS recovery_s,
       o.cause
FROM (SELECT * FROM closed WHERE down_since IS NOT NULL UNION ALL SELECT * FROM silent_now) AS o
JOIN perfmon.agents AS a USING (agent_id)
ORDER BY o.down_since DESC;
COMMENT ON VIEW perfmon.agent_outages IS
    'Down periods of application agents over the last 7 days: since when, when it recovered '
    '(NULL = still down), recovery time in seconds, and the cause (reported down, or no heartbeat '
    'for system.agent_down_after_intervals expected intervals).';
