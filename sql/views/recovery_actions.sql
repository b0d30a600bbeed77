CREATE OR REPLACE VIEW perfmon.recovery_actions AS
SELECT s.step_id,
       s.run_id,
       s.detected_at AS ts,
       r.trigger,
       r.dry_run,
       s.action,
       coalesce(s.target ->> 'pid', format('%I.%I', s.target ->> 'schema', s.target ->> 'table')) AS target_name,
       s.target,
       s.statement,
       s.decision,
       s.reason,
       s.result,
       s.verified,
       s.verify_detail,
       s.condition_since,
       s.acted_at,
       s.verified_at,
       round(extract(epoch FROM s.verified_at - s.condition_since)::numeric * 1000, 1) AS recovery_ms,
       round(extract(epoch FROM s.verified_at - s.detected_at)::numeric * 1000, 1)     AS action_ms,
       r.plan
FROM perfmon.recovery_steps AS s
JOIN perfmon.recovery_runs AS r USING (run_id)
ORDER BY s.step_id DESC;
COMMENT ON VIEW perfmon.recovery_actions IS
    'Audit of automated recovery, newest first, one row per candidate of a run: trigger (watch, '
    'analyze, manual...), dry run, action, target, statement, decision (done, failed, dry_run, '
    'deferred, skipped, refused, rate_limited, disabled) and why, result, the re-check (verified, detail), '
    'condition onset, action and verification times, recovery_ms (onset to verified resolution, ms), '
    'action_ms (detection to verified resolution, ms), and the run''s whole plan.';
