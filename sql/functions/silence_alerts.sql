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
    IF duration <= interval '0' THEN
        RAISE EXCEPTION 'pgperfmon: a silence needs a positive duration, got %', duration;
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
