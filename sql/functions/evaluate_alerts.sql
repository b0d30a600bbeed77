CREATE OR REPLACE FUNCTION perfmon.evaluate_alerts()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '2s'
AS $$
DECLARE
    r record;
    b record;
    a record;
    lvl text;
    thr double precision;
    outcome text;
    t0 timestamptz := clock_timestamp();
    t1 timestamptz;
    n integer;
    non_finite integer;
    example text;
    seen text[] := '{}';
    evaluated text[] := '{}';
    runs jsonb := '{}';
    counts jsonb := '{}';
BEGIN
    IF NOT perfmon.setting('alerting.enabled')::boolean THEN
        RETURN jsonb_build_object('enabled', false);
    END IF;
    -- Two evaluations at once would race on the same alerts.
    IF NOT pg_try_advisory_xact_lock(hashtext('perfmon.evaluate_alerts')) THEN
        RETURN jsonb_build_object('skipped', 'another evaluation is running');
    END IF;
    FOR r IN SELECT t.* FROM perfmon.alert_rule_thresholds AS t JOIN perfmon.alert_rules AS rl
                 ON rl.name = t.rule WHERE t.enabled ORDER BY t.rule
    LOOP
        t1 := clock_timestamp();
        n := 0;
        non_finite := 0;
        example := NULL;
        BEGIN
            -- Cast to fixed types: b is reused by every rule, and plans are cached by type.
            FOR b IN EXECUTE format('SELECT q.target::text AS target, q.value::double precision AS value, '
                                    'q.level::text AS level, q.details::jsonb AS details '
                                    'FROM (%s) AS q(target, value, level, details)',
                                    (SELECT rl.query FROM perfmon.alert_rules AS rl WHERE rl.name = r.rule))
            LOOP
                -- NaN compares greater than every number and an infinity is no measurement: a
                -- broken value, reported like a broken query, its target's open alert kept as it is.
                IF b.value IN ('NaN', 'Infinity', '-Infinity') THEN
                    IF b.target IS NOT NULL THEN
                        seen := seen || (r.rule || ':' || b.target::text);
                    END IF;
                    non_finite := non_finite + 1;
                    example := coalesce(example, format('%s = %s', coalesce(b.target::text, 'NULL'), b.value));
                    CONTINUE;
                END IF;
                IF b.level IS NOT NULL THEN
                    lvl := b.level;
                    thr := NULL;
                ELSE
                    SELECT f.level, f.threshold INTO lvl, thr
                    FROM perfmon.alert_level_for(r.comparison, b.value::double precision, r.info_threshold,
                                                 r.warning_threshold, r.critical_threshold,
                                                 r.emergency_threshold) AS f;
                END IF;
                CONTINUE WHEN lvl IS NULL OR b.target IS NULL;
                outcome := perfmon.alert_breach(r.rule, b.target::text, lvl, b.value::double precision, thr,
                                                coalesce(b.details::jsonb, '{}'), r.hold_s, r.cooldown_min);
                counts := jsonb_set(counts, ARRAY[outcome], to_jsonb(coalesce((counts ->> outcome)::int, 0) + 1));
                seen := seen || (r.rule || ':' || b.target::text);
                n := n + 1;
            END LOOP;
            evaluated := evaluated || r.rule;
            runs := runs || jsonb_build_object(r.rule, jsonb_build_object(
                'ms', round(extract(epoch FROM clock_timestamp() - t1)::numeric * 1000, 2), 'breaches', n)
                || CASE WHEN non_finite > 0 THEN jsonb_build_object(
                       'skipped', non_finite,
                       'error', format('%s value(s) not a finite number, skipped (%s)', non_finite, example))
                   ELSE '{}' END);
        EXCEPTION WHEN OTHERS THEN
            -- A broken rule keeps its open alerts as they are and does not stop the others.
            runs := runs || jsonb_build_object(r.rule, jsonb_build_object(
                'ms', round(extract(epoch FROM clock_timestamp() - t1)::numeric * 1000, 2), 'error', SQLERRM));
        END;
    END LOOP;

    -- Conditions gone: resolve (a pending alert that never fired is closed quietly). A rule
    -- disabled or deleted measures nothing any more: its open alerts end too, or they
    -- would stay firing, and escalate, for ever.
    FOR a IN SELECT l.alert_id, l.state, l.level, l.value, l.notified_at, rl.enabled AS rule_enabled
             FROM perfmon.alert_log AS l
             LEFT JOIN perfmon.alert_rules AS rl ON rl.name = l.rule
             WHERE l.server_id = 1 AND l.state <> 'resolved'
               AND ((l.rule = ANY (evaluated) AND NOT l.fingerprint = ANY (seen))
                    OR rl.enabled IS NOT TRUE)
             FOR UPDATE OF l
    LOOP
        UPDATE perfmon.alert_log AS l SET state = 'resolved', resolved_at = now()
        WHERE l.alert_id = a.alert_id;
        INSERT INTO perfmon.alert_events (alert_id, event, level, value, details)
        VALUES (a.alert_id, 'resolved', a.level, a.value,
                CASE WHEN a.rule_enabled IS NULL THEN '{"reason": "rule deleted"}'::jsonb
                     WHEN NOT a.rule_enabled THEN '{"reason": "rule disabled"}'::jsonb END);
        -- Only who heard of it hears of its end (not after a silenced firing).
        IF a.state = 'firing' AND a.notified_at IS NOT NULL THEN
            PERFORM perfmon.alert_notify(a.alert_id, 'resolved');
        END IF;
        counts := jsonb_set(counts, '{resolved}', to_jsonb(coalesce((counts ->> 'resolved')::int, 0) + 1));
    END LOOP;

    -- Fired while a silence covered it, and nobody heard of it: notified now that the silence
    -- is over (and so, later, is its resolution). Pending ones wait until they fire.
    FOR a IN SELECT l.alert_id FROM perfmon.alert_log AS l
             WHERE l.server_id = 1 AND l.state = 'firing' AND l.notified_level IS NULL
               AND NOT (SELECT v.silenced FROM perfmon.alerts AS v WHERE v.alert_id = l.alert_id)
             FOR UPDATE OF l
    LOOP
        PERFORM perfmon.alert_notify(a.alert_id, 'firing');
        counts := jsonb_set(counts, '{firing_after_silence}',
                            to_jsonb(coalesce((counts ->> 'firing_after_silence')::int, 0) + 1));
    END LOOP;

    -- Unacknowledged past the escalation time: one level up, and to the escalation channels.
    -- Not while silenced: nobody would hear of it, and it would come out of the silence at
    -- the top level.
    FOR a IN SELECT l.alert_id, l.level FROM perfmon.alert_log AS l
             JOIN perfmon.alert_rule_thresholds AS t ON t.rule = l.rule
             WHERE l.server_id = 1 AND l.state = 'firing' AND l.acked_at IS NULL AND t.enabled
               AND NOT (SELECT v.silenced FROM perfmon.alerts AS v WHERE v.alert_id = l.alert_id)
               AND now() >= coalesce(l.escalated_at, l.fired_at) + make_interval(mins => t.escalation_min)
             FOR UPDATE OF l
    LOOP
        UPDATE perfmon.alert_log AS l
        SET escalation_level = l.escalation_level + 1, escalated_at = now(),
            level = coalesce((SELECT v.level FROM perfmon.alert_levels AS v
                              WHERE v.rank = perfmon.alert_level_rank(l.level) + 1), l.level)
        WHERE l.alert_id = a.alert_id;
        INSERT INTO perfmon.alert_events (alert_id, event, level, details)
        SELECT l.alert_id, 'escalated', l.level, jsonb_build_object('escalation_level', l.escalation_level)
        FROM perfmon.alert_log AS l WHERE l.alert_id = a.alert_id;
        PERFORM perfmon.alert_notify(a.alert_id, 'escalated');
        counts := jsonb_set(counts, '{escalated}', to_jsonb(coalesce((counts ->> 'escalated')::int, 0) + 1));
    END LOOP;

    INSERT INTO perfmon.alert_rule_runs (ts, duration_ms, rules)
    VALUES (clock_timestamp(), extract(epoch FROM clock_timestamp() - t0) * 1000, runs)
    ON CONFLICT (ts) DO NOTHING;
    RETURN jsonb_build_object('ms', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 2),
                              'outcomes', counts, 'rules', runs);
END
$$;
COMMENT ON FUNCTION perfmon.evaluate_alerts() IS
    'Evaluates every enabled alert rule once (each in its own subtransaction), opens/fires/raises '
    'alerts, resolves those whose condition is gone, notifies those that fired during a silence now '
    'over, escalates unacknowledged ones past their escalation time, and queues their notifications. A value that is not a finite number (NaN, '
    'infinity) is skipped and reported. Returns ms, outcomes and per-rule {ms, breaches, skipped?, error?}.';
