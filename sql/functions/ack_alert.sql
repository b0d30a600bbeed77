CREATE OR REPLACE FUNCTION perfmon.ack_alert(alert_id bigint, note text DEFAULT NULL,
                                             acked_by text DEFAULT NULL)
RETURNS perfmon.alert_log
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a perfmon.alert_log;
BEGIN
    UPDATE perfmon.alert_log AS l
    SET acked_at = coalesce(l.acked_at, now()), acked_by = coalesce(ack_alert.acked_by, session_user::text),
        ack_note = note
    WHERE l.alert_id = ack_alert.alert_id
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: no alert %', alert_id
            USING HINT = 'SELECT alert_id, summary FROM perfmon.alerts lists them.';
    END IF;
    INSERT INTO perfmon.alert_events (alert_id, event, level, details)
    VALUES (a.alert_id, 'acknowledged', a.level, jsonb_build_object('by', a.acked_by, 'note', note));
    RETURN a;
END
$$;
COMMENT ON FUNCTION perfmon.ack_alert(bigint, text, text) IS
    'Acknowledges an alert (by default as the session user): it is no longer escalated. '
    'Returns the alert''s row.';
