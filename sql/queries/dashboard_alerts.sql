-- Real-time Operations: open alerts, worst first (perfmon.alerts).
SELECT alert_id, ts, state, level, metric, target, current_value, threshold, unit, comparison,
       summary, business_impact, recommended_actions, acknowledged, silenced, escalation_required,
       duration_s, count(*) OVER () AS open_total
FROM perfmon.alerts
WHERE state <> 'resolved'
ORDER BY array_position(ARRAY['firing', 'pending'], state),
         array_position(ARRAY['info', 'warning', 'critical', 'emergency'], level) DESC, ts DESC
LIMIT 25
