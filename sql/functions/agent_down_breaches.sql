CREATE OR REPLACE FUNCTION perfmon.agent_down_breaches()
RETURNS TABLE (target text, value double precision, level text, details jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The breaches of the agent_down rule: the agents of perfmon.agent_health that are not
-- up, warning when stale, critical when down. Up to alerting.agent_down_max_alerts of
-- them at once, one breach each. More at once share one breach, target '(many agents)',
-- that counts and names them: every application beats as perfmon_agent under a name of
-- its own choosing, and a thousand made-up names fallen silent must not be a thousand
-- messages on every channel (nor can a thousand real ones that one cause silenced be
-- read one by one). An agent whose own alert is open then keeps it: resolving it would
-- say it is back when it is not.
DECLARE
    max_alerts integer := perfmon.setting('alerting.agent_down_max_alerts')::int;
    grouped constant text := '(many agents)';
BEGIN
    RETURN QUERY
    WITH silent AS MATERIALIZED (
        SELECT h.agent, h.silent_s, h.health, h.last_status, h.last_seen, h.expected_interval_s,
               count(*) OVER () AS total,
               h.agent <> grouped AND EXISTS (
                   SELECT FROM perfmon.alert_log AS l
                    WHERE l.server_id = 1 AND l.fingerprint = 'agent_down:' || h.agent
                      AND l.state <> 'resolved') AS own
          FROM perfmon.agent_health AS h WHERE h.health <> 'up'
    )
    SELECT s.agent, s.silent_s, CASE s.health WHEN 'down' THEN 'critical' ELSE 'warning' END,
           jsonb_build_object('health', s.health, 'last_status', s.last_status,
                              'last_seen', s.last_seen, 'expected_interval_s', s.expected_interval_s)
      FROM silent AS s
     WHERE s.total <= max_alerts OR s.own
    UNION ALL
    SELECT grouped, max(s.silent_s),
           CASE WHEN bool_or(s.health = 'down') THEN 'critical' ELSE 'warning' END,
           jsonb_build_object(
               'agents_silent', count(*),
               'down', count(*) FILTER (WHERE s.health = 'down'),
               'stale', count(*) FILTER (WHERE s.health = 'stale'),
               -- The first 100 by name: the alert stays a few kB however many there are.
               'agents', to_jsonb((array_agg(s.agent ORDER BY s.agent))[1:100]),
               'business_impact', format(
                   '%s application agents silent: %s%s. Their users may be cut off; so many at once '
                   'point to one cause (a network, a deploy, the database itself), or to made-up '
                   'names (see perfmon.agent_health).',
                   count(*), array_to_string((array_agg(s.agent ORDER BY s.agent))[1:10], ', '),
                   CASE WHEN count(*) > 10 THEN format(', ... and %s more', count(*) - 10) ELSE '' END))
      FROM silent AS s
     WHERE s.total > max_alerts AND NOT s.own
    HAVING count(*) > 0;
END
$$;
COMMENT ON FUNCTION perfmon.agent_down_breaches() IS
    'What the agent_down alert rule reads: agents of perfmon.agent_health not up (warning when stale, '
    'critical when down), one row each while at most alerting.agent_down_max_alerts are; beyond, one row '
    'with target ''(many agents)'' counting and naming them (details: agents_silent, down, stale, agents), '
    'and the agents whose own alert is open keep their row.';
