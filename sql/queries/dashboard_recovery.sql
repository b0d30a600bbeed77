-- Real-time Operations: the latest automated recovery steps (perfmon.recovery_actions).
SELECT ts, trigger, dry_run, action, target_name, decision, reason, verified, recovery_ms
FROM perfmon.recovery_actions
LIMIT 10
