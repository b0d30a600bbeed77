CREATE OR REPLACE VIEW perfmon.alerts AS
SELECT a.alert_id,
       coalesce(a.fired_at, a.first_seen)                                AS ts,
       a.state,
       a.level,
       a.rule,
       coalesce(r.metric, a.rule)                                        AS metric,
       a.target,
       round(a.value::numeric, 2)                                        AS current_value,
       a.threshold,
       r.unit,
       r.comparison,
       coalesce(a.details ->> 'business_impact', r.business_impact)      AS business_impact,
       r.affected_systems,
       coalesce(a.details ->> 'recommended_actions', r.recommended_actions) AS recommended_actions,
       (a.state = 'firing' AND a.acked_at IS NULL
        AND (a.level IN ('critical', 'emergency') OR a.escalation_level > 0)) AS escalation_required,
       a.escalation_level,
       CASE WHEN a.state = 'firing' AND a.acked_at IS NULL
            THEN coalesce(a.escalated_at, a.fired_at)
                 + make_interval(mins => coalesce(r.escalation_minutes,
                                                  perfmon.setting('alerting.escalation_minutes')::int))
       END                                                               AS escalation_due_at,
       a.acked_at IS NOT NULL                                            AS acknowledged,
       a.acked_at,
       a.acked_by,
       a.ack_note,
       s.silence_id IS NOT NULL                                          AS silenced,
       s.silence_id,
       a.first_seen,
       a.fired_at,
       a.last_seen,
       a.resolved_at,
       round(extract(epoch FROM coalesce(a.resolved_at, now()) - a.first_seen)::numeric, 1) AS duration_s,
       r.recovery_action,
       format('%s %s on %s: %s %s%s', upper(a.level), coalesce(r.metric, a.rule), a.target,
              round(a.value::numeric, 2), coalesce(r.unit, ''),
              CASE WHEN a.threshold IS NOT NULL
                   THEN format(' (threshold %s %s)', r.comparison, a.threshold) ELSE '' END) AS summary,
       a.fingerprint,
       a.details
FROM perfmon.alert_log AS a
LEFT JOIN perfmon.alert_rules AS r ON r.name = a.rule
LEFT JOIN LATERAL (
    SELECT si.silence_id FROM perfmon.silences AS si
    WHERE (si.rule IS NULL OR si.rule = a.rule) AND a.target LIKE si.target_pattern
      AND now() >= si.starts_at AND now() < si.ends_at
    ORDER BY si.ends_at DESC LIMIT 1
) AS s ON true
WHERE a.server_id = 1
ORDER BY array_position(ARRAY['firing', 'pending', 'resolved'], a.state),
         array_position(ARRAY['info', 'warning', 'critical', 'emergency'], a.level) DESC,
         coalesce(a.fired_at, a.first_seen) DESC;
COMMENT ON VIEW perfmon.alerts IS
    'Every alert, open ones first, worst first: ts (fired, else first seen), state (pending, firing, '
    'resolved), level (info, warning, critical, emergency), rule and metric, target, current_value and '
    'threshold in unit, business impact, affected systems, recommended actions, whether escalation is '
    'required (firing, unacknowledged, critical or escalated), escalation level and when the next is '
    'due, acknowledgement, silence, first/last seen, resolved_at, duration_s (seconds).';
