CREATE OR REPLACE VIEW perfmon.events AS
-- One timeline of what happened, for the developer dashboard and psql: alert state
-- changes, anomaly episodes starting and ending, server settings that changed, the
-- advisor's recommendations applied, dismissed or resolved, recovery actions taken,
-- agent outages, and scheduled reports sent. Filter on ts.
SELECT e.ts, 'alert'::text AS kind, e.level AS severity,
       format('alert %s: %s on %s', e.event, l.rule, l.target) AS title,
       coalesce(round(e.value::numeric, 2)::text, '') AS detail,
       'perfmon.alerts'::text AS source, jsonb_build_object('alert_id', l.alert_id) AS ref
FROM perfmon.alert_events AS e
JOIN perfmon.alert_log AS l USING (alert_id)
WHERE l.server_id = 1
UNION ALL
SELECT a.started_at, 'anomaly', a.severity,
       format('anomaly started: %s%s', array_to_string(a.metrics, ', '),
              coalesce(' (' || a.series || ')', '')),
       format('score %s, observed %s, expected %s to %s', a.score, round(a.observed_value::numeric, 2),
              round(a.expected_low::numeric, 2), round(a.expected_high::numeric, 2)),
       'perfmon.anomalies', jsonb_build_object('episode_id', a.episode_id)
FROM perfmon.anomalies AS a
UNION ALL
SELECT a.last_seen_at, 'anomaly', 'info',
       format('anomaly ended: %s%s', array_to_string(a.metrics, ', '),
              coalesce(' (' || a.series || ')', '')),
       format('lasted %s s', a.duration_s),
       'perfmon.anomalies', jsonb_build_object('episode_id', a.episode_id)
FROM perfmon.anomalies AS a
WHERE NOT a.ongoing
UNION ALL
SELECT s.ts, 'setting', 'info', format('setting %s changed', s.name),
       format('%s -> %s', coalesce(s.old_value, '(unset)'), coalesce(s.new_value, '(unset)')),
       'perfmon.settings_history', jsonb_build_object('name', s.name)
FROM perfmon.settings_history AS s
WHERE s.server_id = 1
UNION ALL
SELECT r.status_changed, 'recommendation', r.severity,
       format('recommendation %s: %s', r.status, r.target),
       concat_ws(' — ', r.finding, r.status_reason),
       'perfmon.recommendations', jsonb_build_object('id', r.id)
FROM perfmon.recommendation_log AS r
WHERE r.server_id = 1 AND r.status <> 'open'
UNION ALL
SELECT coalesce(a.acted_at, a.ts), 'recovery',
       CASE WHEN a.decision = 'failed' THEN 'warning' ELSE 'info' END,
       format('recovery %s %s: %s', a.action, a.decision, a.target_name),
       concat_ws(' — ', a.reason, a.result, a.verify_detail),
       'perfmon.recovery_actions', jsonb_build_object('step_id', a.step_id)
FROM perfmon.recovery_actions AS a
WHERE a.decision IN ('done', 'failed', 'dry_run')
UNION ALL
SELECT o.down_since, 'agent', 'warning', format('agent %s down', o.agent),
       concat_ws(' — ', o.cause, CASE WHEN o.recovered_at IS NOT NULL
                                      THEN format('recovered after %s s', o.recovery_s) END),
       'perfmon.agent_outages', jsonb_build_object('agent', o.agent)
FROM perfmon.agent_outages AS o
UNION ALL
SELECT r.queued_at, 'report', 'info', format('%s report queued', r.period),
       format('%s: %s', r.trigger, coalesce(array_to_string(r.channels, ', '), '')),
       'perfmon.report_runs', jsonb_build_object('report_id', r.report_id)
FROM perfmon.report_runs AS r;
COMMENT ON VIEW perfmon.events IS
    'One timeline of events: ts, kind (alert, anomaly, setting, recommendation, recovery, agent, '
    'report), severity (info, warning, critical, emergency), title, detail, the view to look at '
    '(source) and the key of the row there (ref, jsonb). Filter on ts.';
