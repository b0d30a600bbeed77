-- Alerts for the two silences a monitor must not keep to itself.
--
-- An application agent that stops sending heartbeats turned 'stale' and then 'down'
-- in perfmon.agent_health, and nobody was told: no rule read it. And when
-- perfmon.collect() stops writing samples (its job failing or unscheduled) while
-- perfmon.analyze() still runs, every sample-based rule and the anomaly detector go
-- quiet with it, which looks like health. Both are now rules like any other
-- (perfmon.alert_rules): a DBA may change their thresholds or disable them. A rule
-- of the same name that a DBA added before this upgrade is kept as it is.
INSERT INTO perfmon.alert_rules (name, metric, unit, query, hold_seconds, business_impact,
        affected_systems, recommended_actions, description) VALUES
    ('agent_down', 'agent.silent_s', 's',
     $q$SELECT h.agent, h.silent_s, CASE h.health WHEN 'down' THEN 'critical' ELSE 'warning' END,
               jsonb_build_object('health', h.health, 'last_status', h.last_status,
                                  'last_seen', h.last_seen, 'expected_interval_s', h.expected_interval_s)
          FROM perfmon.agent_health AS h WHERE h.health <> 'up'$q$, 0,
     'An application that uses the database stopped reporting, or reported itself down: its users may be cut off.',
     ARRAY['the application behind the agent'],
     'Check the application''s process and logs; perfmon.agent_health and perfmon.agent_outages show since '
     'when. An agent retired for good: DELETE FROM perfmon.agents WHERE name = ''...''.',
     'application agents stale (warning) or down (critical) in perfmon.agent_health')
ON CONFLICT (name) DO NOTHING;

INSERT INTO perfmon.alert_rules (name, metric, unit, query, comparison, warning_threshold, critical_threshold,
        hold_seconds, business_impact, affected_systems, recommended_actions, description) VALUES
    ('sampling_stopped', 'perfmon.server_history age', 'intervals',
     $q$SELECT 'server'::text,
               greatest(extract(epoch FROM now() - max(h.ts)) - 60, 0)
                 / perfmon.setting('collection.interval_seconds')::float8,
               NULL::text, jsonb_build_object('last_sample', max(h.ts))
          FROM perfmon.server_history AS h WHERE h.server_id = 1 HAVING max(h.ts) IS NOT NULL$q$,
     '>', 3, 10, 0,
     'pgperfmon has stopped sampling the server: the other rules and the anomaly detector no longer see '
     'what happens.',
     ARRAY['pgperfmon'],
     'Run pgperfmon status: it names a failing or unscheduled job; cron.job_run_details holds its errors.',
     'collection intervals since perfmon.collect() last wrote a sample, beyond the minute pg_cron may take '
     'to start a job (as pgperfmon status allows)')
ON CONFLICT (name) DO NOTHING;
