CREATE OR REPLACE FUNCTION perfmon.recover(trigger text DEFAULT 'manual', dry_run boolean DEFAULT NULL,
                                           fast_only boolean DEFAULT false,
                                           in_database_only boolean DEFAULT false,
                                           actions text[] DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Replaced at once by optimization.auto_recovery.lock_timeout_ms (below); the clause makes
-- that change end with this function, not last the rest of the caller's transaction.
SET lock_timeout = '5s'
AS $$
-- Automatic runs (dry_run NULL) do nothing unless optimization.auto_recovery.enabled and
-- run only the enabled actions. An explicit dry run plans every action and changes
-- nothing. Table and index actions are 'deferred': pgperfmon recover executes them
-- outside any transaction and records the outcome with perfmon.recovery_step_result().
-- Called from SQL, nothing runs them: a NOTICE says so, and the next run that plans the
-- action (pgperfmon recover's) closes each deferred step nobody is running as 'skipped',
-- superseded by its new plan or no longer needed, so that none is left waiting for ever.
DECLARE
    g jsonb := perfmon.settings_under('optimization.auto_recovery');
    -- A switch missing from perfmon.config (or null) is off, and a run a dry run: unknown,
    -- every run failed on its NULL dry_run instead (and no max_actions_per_hour, no action).
    enabled boolean := coalesce((g ->> 'enabled')::boolean, false);
    dry boolean;
    p record;
    c record;
    params jsonb;
    plan jsonb;
    act_enabled boolean;
    verdict text;
    reason text;
    run bigint;
    step bigint;
    steps jsonb := '[]';
    res text;
    acted timestamptz;
    ver boolean;
    ver_detail text;
    ver_at timestamptz;
    cancelled boolean := false;
    stopped text;
    had_run boolean;
    waiting bigint[];
    deferred bigint[] := '{}';
BEGIN
    SELECT string_agg(quote_literal(a), ', ') INTO res
      FROM unnest(actions) AS a
     WHERE NOT EXISTS (SELECT FROM perfmon.recovery_playbook AS b WHERE b.name = a);
    IF res IS NOT NULL THEN
        RAISE EXCEPTION 'pgperfmon: unknown recovery action %; expected one of %', res,
                        (SELECT string_agg(b.name, ', ' ORDER BY b.ordinal) FROM perfmon.recovery_playbook AS b)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF dry_run IS NULL AND NOT enabled THEN
        RETURN jsonb_build_object('enabled', false);
    END IF;
    dry := coalesce(dry_run, (g ->> 'dry_run')::boolean, true) OR NOT enabled;
    IF NOT pg_try_advisory_xact_lock(hashtext('perfmon.recover')) THEN
        RETURN jsonb_build_object('skipped', 'another recovery run is in progress');
    END IF;
    -- Its own lock_timeout, the one its deferred steps' VACUUM/ANALYZE wait at most: a
    -- table the plan reads or the audit is written to, held by another transaction (a
    -- DBA's LOCK or ALTER TABLE, a VACUUM FULL), kept the run waiting until
    -- statement_timeout (for ever under pg_cron, which does not enforce it), holding
    -- perfmon.recover's lock, so that every watch tick meanwhile was skipped.
    PERFORM set_config('lock_timeout', coalesce(g ->> 'lock_timeout_ms', '5000') || 'ms', true);
    PERFORM pg_stat_clear_snapshot();
    <<playbook>>
    FOR p IN SELECT * FROM perfmon.recovery_playbook AS b
             WHERE (NOT fast_only OR b.fast) AND (NOT in_database_only OR b.in_database)
               AND (actions IS NULL OR b.name = ANY (actions))
             ORDER BY b.ordinal
    LOOP
        params := perfmon.settings_under('optimization.auto_recovery.' || p.name)
                  || jsonb_build_object('include_superusers', g -> 'include_superusers',
                                        'include_replication', g -> 'include_replication',
                                        'include_pgperfmon', g -> 'include_pgperfmon',
                                        'verify_timeout_ms', g -> 'verify_timeout_ms');
        act_enabled := coalesce((params ->> 'enabled')::boolean, false);
        CONTINUE WHEN NOT act_enabled AND dry_run IS NULL;
        -- A cancel while planning a later action rolled back the rows of sessions the run had
        -- already signalled, as one while acting did (below): the run stops here the same way.
        -- So does a lock held past lock_timeout.
        BEGIN
            -- Deferred steps of earlier runs that no pgperfmon recover is running (it holds
            -- their lock while it does): this plan replaces them.
            waiting := NULL;
            IF NOT p.in_database AND act_enabled AND NOT dry THEN
                SELECT array_agg(s.step_id) INTO waiting FROM perfmon.recovery_steps AS s
                 WHERE s.action = p.name AND s.decision = 'deferred'
                   AND pg_try_advisory_xact_lock(hashtext('perfmon.recovery_step'), (s.step_id % 2147483647)::int);
            END IF;
            EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(x)), ''[]'') FROM %s($1) AS x',
                           p.plan_function::regproc) USING params INTO plan;
        EXCEPTION
            WHEN query_canceled THEN
                IF run IS NULL THEN
                    RAISE;  -- nothing recorded, nothing done: an error as usual
                END IF;
                cancelled := true;
                EXIT playbook;
            WHEN lock_not_available THEN
                stopped := format('pgperfmon: recovery gave up planning %s: a table it reads stayed locked '
                                  'longer than optimization.auto_recovery.lock_timeout_ms (%s)',
                                  p.name, current_setting('lock_timeout'));
                IF run IS NULL THEN
                    RAISE EXCEPTION '%', stopped USING ERRCODE = 'lock_not_available';
                END IF;
                EXIT playbook;
        END;
        FOR c IN SELECT * FROM jsonb_to_recordset(plan)
                     AS x(target jsonb, statement text, refusal text, condition_since timestamptz) LOOP
            -- The audit reads its tables and writes its rows before the action: a lock on them
            -- held past lock_timeout stops the run before it acts, keeping the rows of the steps
            -- before.
            had_run := run IS NOT NULL;
            BEGIN
                verdict := CASE
                    WHEN c.refusal IS NOT NULL THEN 'refused'
                    WHEN NOT act_enabled THEN 'disabled'
                    WHEN dry THEN 'dry_run'
                    WHEN (SELECT count(*) FROM perfmon.recovery_steps AS s
                          WHERE s.action = p.name AND s.decision IN ('done', 'failed', 'deferred')
                            AND s.detected_at > clock_timestamp() - interval '1 hour'
                            AND NOT s.step_id = ANY (coalesce(waiting, '{}')))
                         >= coalesce((g ->> 'max_actions_per_hour')::int, 0) THEN 'rate_limited'
                    WHEN NOT p.in_database THEN 'deferred'
                    ELSE 'done' END;
                reason := CASE verdict
                    WHEN 'refused' THEN c.refusal
                    WHEN 'disabled' THEN format('optimization.auto_recovery.%s.enabled is off', p.name)
                    WHEN 'dry_run' THEN 'dry run: nothing was changed'
                    WHEN 'rate_limited' THEN CASE WHEN g ->> 'max_actions_per_hour' IS NULL
                                                  THEN 'max_actions_per_hour is not set: no action is allowed'
                                                  ELSE format('%s actions in the last hour (max_actions_per_hour)',
                                                              g ->> 'max_actions_per_hour') END
                    WHEN 'deferred' THEN 'runs outside a transaction: waits for pgperfmon recover' END;
                -- Unattended runs repeat every second or minute: record a candidate that is not
                -- acted on once per 5 minutes, not every time.
                CONTINUE WHEN verdict IN ('refused', 'disabled', 'dry_run', 'rate_limited')
                    AND trigger IN ('watch', 'analyze')
                    AND EXISTS (SELECT FROM perfmon.recovery_steps AS s
                                WHERE s.action = p.name AND s.target ->> 'key' = c.target ->> 'key'
                                  AND s.decision = verdict AND s.detected_at > clock_timestamp() - interval '5 minutes');
                IF run IS NULL THEN
                    INSERT INTO perfmon.recovery_runs (trigger, dry_run) VALUES (trigger, dry) RETURNING run_id INTO run;
                END IF;
                INSERT INTO perfmon.recovery_steps (run_id, action, target, statement, decision, reason,
                                                    condition_since)
                VALUES (run, p.name, c.target, c.statement, verdict, reason, c.condition_since)
                RETURNING step_id INTO step;
            EXCEPTION
                WHEN lock_not_available THEN
                    stopped := format('pgperfmon: recovery gave up recording a step of %s before acting: '
                                      'perfmon.recovery_runs or perfmon.recovery_steps stayed locked longer '
                                      'than optimization.auto_recovery.lock_timeout_ms (%s)',
                                      p.name, current_setting('lock_timeout'));
                    IF NOT had_run THEN
                        RAISE EXCEPTION '%', stopped USING ERRCODE = 'lock_not_available';
                    END IF;
                    EXIT playbook;
                -- A cancel here (its insert waiting for a lock, say) rolled back the rows of the
                -- sessions signalled before: the run stops as a cancel while planning does.
                WHEN query_canceled THEN
                    IF NOT had_run THEN
                        RAISE;
                    END IF;
                    cancelled := true;
                    EXIT playbook;
            END;
            ver := NULL;
            IF verdict = 'deferred' THEN
                deferred := deferred || step;
            END IF;
            IF verdict = 'done' THEN
                acted := clock_timestamp();
                BEGIN
                    EXECUTE c.statement INTO res;
                    IF res IS NULL THEN
                        verdict := 'failed';
                        res := 'the target changed before the action: nothing was done';
                    ELSIF NOT res::boolean THEN
                        verdict := 'failed';
                        res := 'the signal was not delivered in time';
                    ELSE
                        res := 'signal delivered';
                    END IF;
                -- A cancel (statement_timeout, Ctrl-C) while acting or verifying would roll
                -- back the step's row but not a session already signalled: the run stops
                -- here instead, with the step recorded, and returns.
                EXCEPTION
                    WHEN query_canceled THEN
                        verdict := 'failed';
                        res := 'cancelled while acting: the signal may have been sent';
                        cancelled := true;
                    WHEN OTHERS THEN
                        verdict := 'failed';
                        res := SQLERRM;
                END;
                IF cancelled THEN
                    ver := NULL;
                    ver_detail := 'not verified: the run was cancelled';
                ELSE
                    BEGIN
                        SELECT v.verified, v.detail, v.at INTO ver, ver_detail, ver_at
                          FROM perfmon.recovery_verify(p.name, c.target, acted,
                                                       (g ->> 'verify_timeout_ms')::int) AS v;
                    EXCEPTION WHEN query_canceled THEN
                        ver := NULL;
                        ver_detail := 'not verified: the run was cancelled';
                        cancelled := true;
                    END;
                END IF;
                UPDATE perfmon.recovery_steps AS s
                SET decision = verdict, result = res, acted_at = acted, verified = ver,
                    verify_detail = ver_detail, verified_at = CASE WHEN ver THEN ver_at END
                WHERE s.step_id = step;
            END IF;
            steps := steps || jsonb_build_object('step_id', step, 'action', p.name, 'decision', verdict,
                                                 'reason', reason, 'target', c.target, 'statement', c.statement,
                                                 'result', res, 'verified', ver);
            res := NULL;
            EXIT playbook WHEN cancelled;
        END LOOP;
        UPDATE perfmon.recovery_steps AS s
           SET decision = 'skipped',
               result = coalesce(
                   (SELECT format('not run: planned again as step %s of run %s (%s)', n.step_id, n.run_id,
                                  n.decision)
                      FROM perfmon.recovery_steps AS n
                     WHERE n.run_id = run AND n.action = s.action AND n.target ->> 'key' = s.target ->> 'key'
                     ORDER BY n.step_id LIMIT 1),
                   format('not run: no longer planned at %s (its condition is gone)', clock_timestamp()))
         WHERE s.step_id = ANY (waiting);
    END LOOP;
    IF run IS NOT NULL THEN
        UPDATE perfmon.recovery_runs AS r SET finished_at = clock_timestamp(), plan = steps WHERE r.run_id = run;
    END IF;
    IF stopped IS NOT NULL THEN
        -- Returned, not raised: an error would roll back the steps already recorded.
        RAISE WARNING '%', stopped USING DETAIL = format('The %s step(s) recorded before are kept (run %s).',
                                                         jsonb_array_length(steps), run);
    END IF;
    IF cardinality(deferred) > 0 AND trigger <> 'cli' THEN
        RAISE NOTICE 'pgperfmon: % recovery step(s) wait for pgperfmon recover (step_id %)', cardinality(deferred),
                     array_to_string(deferred, ', ')
            USING DETAIL = 'VACUUM, ANALYZE and CREATE INDEX CONCURRENTLY cannot run in a function: '
                           'run pgperfmon recover --dsn ..., which plans them again and runs them.';
    END IF;
    RETURN jsonb_build_object('run_id', run, 'dry_run', dry, 'steps', steps)
           || CASE WHEN cancelled THEN '{"cancelled": true}'::jsonb ELSE '{}' END
           || CASE WHEN stopped IS NOT NULL THEN jsonb_build_object('stopped', stopped) ELSE '{}' END;
END
$$;
COMMENT ON FUNCTION perfmon.recover(text, boolean, boolean, boolean, text[]) IS
    'Runs the recovery playbook once: plans each action, applies the safety rails (allowlists, no '
    'superuser/replication/pgperfmon sessions unless told, rate limit), acts on session actions and '
    're-checks the condition, defers table/index actions to pgperfmon recover (a NOTICE says so; its '
    'next run closes the deferred steps of earlier runs as skipped, superseded). dry_run true = plan '
    'only; NULL = configuration (and nothing at all while auto_recovery is off). Audited in '
    'perfmon.recovery_actions; returns the run and its steps.';
