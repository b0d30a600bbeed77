CREATE OR REPLACE FUNCTION perfmon.recovery_step_withdrawn(step_id bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- pgperfmon recover runs the deferred steps of its plan one after the other, a VACUUM
-- taking minutes: a DBA who turns recovery or the action off, or takes the table out of
-- allow_tables, meanwhile must not see the rest of the plan run. Checked just before each
-- step; a step withdrawn is closed as 'skipped', saying why. NULL = it may run.
DECLARE
    s perfmon.recovery_steps;
    g jsonb := perfmon.settings_under('optimization.auto_recovery');
    why text;
BEGIN
    SELECT * INTO s FROM perfmon.recovery_steps AS x
    WHERE x.step_id = recovery_step_withdrawn.step_id AND x.decision = 'deferred' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: recovery step % is not waiting to run', step_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    why := CASE
        WHEN NOT coalesce((g ->> 'enabled')::boolean, false)
            THEN 'optimization.auto_recovery.enabled was turned off'
        WHEN NOT coalesce((g ->> (s.action || '.enabled'))::boolean, false)
            THEN format('optimization.auto_recovery.%s.enabled was turned off', s.action)
        WHEN EXISTS (SELECT FROM perfmon.recovery_playbook AS b WHERE b.name = s.action AND b.kind = 'table')
             AND NOT perfmon.table_pattern_match(s.target ->> 'schema', s.target ->> 'table',
                                                 g -> (s.action || '.allow_tables'))
            THEN format('table %I.%I was taken out of optimization.auto_recovery.%s.allow_tables',
                        s.target ->> 'schema', s.target ->> 'table', s.action)
    END;
    IF why IS NOT NULL THEN
        why := format('not run: %s after it was planned', why);
        UPDATE perfmon.recovery_steps AS x SET decision = 'skipped', result = why WHERE x.step_id = s.step_id;
    END IF;
    RETURN why;
END
$$;
COMMENT ON FUNCTION perfmon.recovery_step_withdrawn(bigint) IS
    'Whether a deferred recovery step must no longer run (NULL = it may): recovery or its action '
    'turned off, or its table taken out of allow_tables, since it was planned. A step withdrawn is '
    'closed as skipped; returns its result (not run: ... after it was planned). pgperfmon recover '
    'asks just before it runs each step.';
