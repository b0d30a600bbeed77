CREATE OR REPLACE FUNCTION perfmon.health_agents(from_ts timestamptz, to_ts timestamptz)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The agents component: of the application agents the period expected to hear from,
-- the share up at its end, the share of heartbeats reporting errors, and the p95 of the
-- reported response times against Apdex T. Every agent is judged by its own heartbeats up
-- to the end of the period, never by its state now (perfmon.agents.last_status, last_seen):
-- a score of last week must not change because an agent went down, or came back, since.
-- Up and down follow the rule of perfmon.agent_health applied at the period's end: down
-- when its last heartbeat by then reported down or is over system.agent_down_after_intervals
-- expected intervals old; up when neither down nor stale. The agents judged are those that
-- sent a heartbeat in the period, and those whose last heartbeat before it was recent
-- enough that they were not down yet when it began (they went silent during it).
DECLARE
    t double precision := (perfmon.settings_under('business') ->> 'apdex_target_ms')::float8;
    stale_after double precision := perfmon.setting('system.agent_stale_after_intervals')::float8;
    down_after double precision := perfmon.setting('system.agent_down_after_intervals')::float8;
    a record;
    h record;
    inputs jsonb;
    checks jsonb := '{}';
    missing jsonb := '[]';
BEGIN
    WITH judged AS (
        SELECT l.status AS last_status,
               extract(epoch FROM to_ts - l.ts) AS silent_s,
               perfmon.agent_interval_s(g.expected_interval_s) AS every_s
          FROM perfmon.agents AS g
         -- its last heartbeat by the end, if recent enough to be judged (the lower bound
         -- also keeps the older day partitions unread)
         CROSS JOIN LATERAL (SELECT b.ts, b.status FROM perfmon.agent_heartbeats AS b
                              WHERE b.agent_id = g.agent_id AND b.ts < to_ts
                                AND b.ts >= from_ts - make_interval(
                                        secs => perfmon.agent_interval_s(g.expected_interval_s) * down_after)
                              ORDER BY b.ts DESC LIMIT 1) AS l
    )
    SELECT count(*) AS agents,
           count(*) FILTER (WHERE j.last_status <> 'down' AND NOT j.silent_s > j.every_s * stale_after) AS up,
           count(*) FILTER (WHERE j.last_status = 'down' OR j.silent_s > j.every_s * down_after) AS down
      INTO a
      FROM judged AS j;
    IF a.agents = 0 THEN
        missing := jsonb_build_array(jsonb_build_object('check', 'agents', 'why',
            'no application agent sent a heartbeat in the period (or its heartbeats are past '
            'collection.retention_days): call perfmon.agent_heartbeat() from the applications '
            '(docs/host-and-agents.md)'));
        RETURN perfmon.health_component(jsonb_build_object('agents', 0), '{}', missing,
            'no agents to judge');
    END IF;

    SELECT count(*) AS heartbeats,
           count(*) FILTER (WHERE b.errors > 0 OR b.status IN ('error', 'down')) AS failed,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY b.response_ms) AS p95
      INTO h
      FROM perfmon.agent_heartbeats AS b
     WHERE b.ts >= from_ts AND b.ts < to_ts;
    inputs := jsonb_build_object(
        'agents', a.agents, 'agents_up', a.up, 'agents_down', a.down,
        'up_pct', round(100.0 * a.up / a.agents, 2), 'heartbeats', h.heartbeats,
        'error_rate_pct', round(100.0 * h.failed / nullif(h.heartbeats, 0), 2),
        'p95_response_ms', round(h.p95::numeric, 3), 'apdex_target_ms', t);
    checks := jsonb_build_object('up', perfmon.health_points(100.0 * a.up / a.agents, 100, 50, 0));
    IF h.heartbeats > 0 THEN
        checks := checks || jsonb_build_object('errors',
            perfmon.health_points(100.0 * h.failed / h.heartbeats, 1, 5, 25));
    ELSE
        missing := missing || jsonb_build_object('check', 'errors', 'why',
            'no heartbeat stored in the period (partition dropped?)');
    END IF;
    IF h.p95 IS NOT NULL THEN
        checks := checks || jsonb_build_object('response', perfmon.health_points(h.p95, t, 4 * t, 10 * t));
    ELSE
        missing := missing || jsonb_build_object('check', 'response', 'why',
            'the agents report no response_ms: pass it to perfmon.agent_heartbeat()');
    END IF;
    RETURN perfmon.health_component(jsonb_strip_nulls(inputs), checks, missing,
        'mean of the checks up (% of the agents judged that were up at the end of the period, by '
        'their heartbeats), errors '
        '(% of heartbeats reporting errors: 1 -> 5 -> 25) and response (p95 of response_ms: '
        'T -> 4T -> 10T, T = business.apdex_target_ms)',
        jsonb_build_object(
            'up', 'application agents are down or silent: see perfmon.agent_health and perfmon.agent_outages',
            'errors', 'agents report errors: see perfmon.agent_health',
            'response', 'applications respond slowly: see perfmon.agent_health and perfmon.slow_queries'));
END
$$;
COMMENT ON FUNCTION perfmon.health_agents(timestamptz, timestamptz) IS
    'Health component agents between two times: checks up (% of agents up), errors (% of heartbeats '
    'with errors), response (p95 response ms against business.apdex_target_ms), each scored 0-100.';
