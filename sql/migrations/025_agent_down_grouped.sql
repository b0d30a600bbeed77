-- The agent_down rule reads perfmon.agent_down_breaches(): more silent agents at once
-- than alerting.agent_down_max_alerts share one alert that names them. Every application
-- beats as perfmon_agent under a name of its own choosing, so made-up names fallen silent
-- raised one alert each, a message each on every channel. The function is re-created on
-- every install, so the rule's logic can change without another migration. A rule a DBA
-- rewrote keeps its query, and one whose description a DBA wrote keeps that.
UPDATE perfmon.alert_rules
   SET query = 'SELECT b.target, b.value, b.level, b.details FROM perfmon.agent_down_breaches() AS b'
 WHERE name = 'agent_down'
   AND query = $q$SELECT h.agent, h.silent_s, CASE h.health WHEN 'down' THEN 'critical' ELSE 'warning' END,
               jsonb_build_object('health', h.health, 'last_status', h.last_status,
                                  'last_seen', h.last_seen, 'expected_interval_s', h.expected_interval_s)
          FROM perfmon.agent_health AS h WHERE h.health <> 'up'$q$;

UPDATE perfmon.alert_rules
   SET description = 'application agents stale (warning) or down (critical) in perfmon.agent_health; more '
                     'at once than alerting.agent_down_max_alerts share one alert, target (many agents)'
 WHERE name = 'agent_down'
   AND description = 'application agents stale (warning) or down (critical) in perfmon.agent_health';
