CREATE OR REPLACE FUNCTION perfmon.silence_alerts(rule text, target_pattern text DEFAULT '%',
                                                  duration interval DEFAULT '1 hour',
                                                  reason text DEFAULT 'maintenance')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    IF rule IS NOT NULL AND NOT EXISTS (SELECT FROM perfmon.alert_rules AS r WHERE r.name = silence_alerts.rule) THEN
        RAISE EXCEPTION 'pgperfmon: no alert rule %', quote_literal(rule)
            USING HINT = 'SELECT name FROM perfmon.alert_rules lists them; NULL silences every rule.';
    END IF;
    IF duration IS NULL OR duration <= interval '0' THEN
        RAISE EXCEPTION 'pgperfmon: a silence needs a positive duration, got %', coalesce(duration::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Stored patterns are matched by every evaluation and by perfmon.alerts: one that LIKE
    -- refuses (a trailing escape) would break both, so it is refused here.
    IF target_pattern IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: target_pattern is missing (''%%'' matches every target)'
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF target_pattern ~ '(^|[^\\])(\\\\)*\\$' THEN
        RAISE EXCEPTION 'pgperfmon: target_pattern % is not a LIKE pattern: it ends with an escape character',
            quote_literal(left(target_pattern, 60))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A backslash escapes the next character: write \\ for a backslash, % for any target.';
    END IF;
    IF coalesce(btrim(reason), '') = '' THEN
        RAISE EXCEPTION 'pgperfmon: say why the alerts are silenced (reason)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO perfmon.silences (rule, target_pattern, ends_at, reason, created_by)
    VALUES (rule, target_pattern, now() + duration, reason, session_user)
    RETURNING silence_id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION perfmon.silence_alerts(text, text, interval, text) IS
    'Silences the alerts of a rule (NULL = all rules) whose target is LIKE target_pattern from now '
    'for duration: they change state as usual but notify nobody until it expires. Returns silence_id.';
