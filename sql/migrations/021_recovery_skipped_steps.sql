-- A deferred recovery step that nothing will run is closed as 'skipped'.
--
-- perfmon.recover() called from SQL defers VACUUM, ANALYZE and CREATE INDEX CONCURRENTLY
-- to pgperfmon recover, which ran only the steps of its own run: those of a SQL call
-- stayed 'deferred' for ever. The next run that plans the action closes them, superseded
-- by its own plan or no longer needed, with the reason in result.
ALTER TABLE perfmon.recovery_steps DROP CONSTRAINT recovery_steps_decision_check;
ALTER TABLE perfmon.recovery_steps ADD CONSTRAINT recovery_steps_decision_check
    CHECK (decision IN ('done', 'failed', 'dry_run', 'deferred', 'skipped', 'refused', 'rate_limited',
                        'disabled'));
COMMENT ON TABLE perfmon.recovery_steps IS
    'Each candidate of a recovery run: the action, its target, the statement, the decision '
    '(done, failed, dry_run, deferred to pgperfmon recover, skipped: deferred but planned again or no '
    'longer needed before it ran, refused by a safety rail, rate_limited, disabled), the result, and '
    'the re-check of the condition.';
