CREATE OR REPLACE VIEW perfmon.alert_rule_thresholds AS
SELECT r.name AS rule, r.metric, r.unit, r.comparison,
       coalesce(r.info_threshold, CASE WHEN r.info_key IS NOT NULL THEN perfmon.setting(r.info_key)::double precision END)           AS info_threshold,
       coalesce(r.warning_threshold, CASE WHEN r.warning_key IS NOT NULL THEN perfmon.setting(r.warning_key)::double precision END)     AS warning_threshold,
       coalesce(r.critical_threshold, CASE WHEN r.critical_key IS NOT NULL THEN perfmon.setting(r.critical_key)::double precision END)   AS critical_threshold,
       coalesce(r.emergency_threshold, CASE WHEN r.emergency_key IS NOT NULL THEN perfmon.setting(r.emergency_key)::double precision END) AS emergency_threshold,
       r.hold_seconds AS hold_s,
       coalesce(r.cooldown_minutes, perfmon.setting('alerting.cooldown_minutes')::int)     AS cooldown_min,
       coalesce(r.escalation_minutes, perfmon.setting('alerting.escalation_minutes')::int) AS escalation_min,
       r.enabled, r.recovery_action, r.description
FROM perfmon.alert_rules AS r;
COMMENT ON VIEW perfmon.alert_rule_thresholds IS
    'Each alert rule with the thresholds in force per level (in the rule''s unit: a literal of the '
    'rule, else its configuration key), hold time (s), cooldown and escalation (minutes).';
