-- Real-time Operations: open alerts, worst first (perfmon.alerts).
SELECT alert_id, ts, state, level, metric, target, current_value, threshold, unit, comparison,
       summary, business_impact, recommended_actions, acknowledged, silenced, escalation_required,
       duration_s
FROM perfmon.alerts
WHERE state <> 'resolved'
LIMIT 25
