CREATE OR REPLACE FUNCTION perfmon.alert_breach(
    rule text, target text, level text, value double precision, threshold double precision,
    details jsonb, hold_s integer, cooldown_min integer)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- One breach of a rule for a target: create, promote, raise or refresh its one open alert.
DECLARE
    fp text := rule || ':' || target;
    a perfmon.alert_log;
BEGIN
    SELECT * INTO a FROM perfmon.alert_log AS l
    WHERE l.server_id = 1 AND l.fingerprint = fp AND l.state <> 'resolved' FOR UPDATE;
    IF NOT FOUND THEN
        -- Back within the cooldown: the same incident again, not a new one.
        SELECT * INTO a FROM perfmon.alert_log AS l
        WHERE l.server_id = 1 AND l.fingerprint = fp AND l.state = 'resolved'
          AND l.fired_at IS NOT NULL
          AND l.resolved_at > now() - make_interval(mins => cooldown_min)
        ORDER BY l.resolved_at DESC LIMIT 1 FOR UPDATE;
        IF FOUND THEN
            -- A new episode of the incident: its own firing time, level, escalation and
            -- acknowledgement (the last episode's would leave it acknowledged, so never
            -- escalated, or escalated from the start). Not notified (cooldown), and so
            -- neither is its next resolution; the levels already notified stay notified.
            UPDATE perfmon.alert_log AS l
            SET state = 'firing', fired_at = now(), resolved_at = NULL, notified_at = NULL,
                last_seen = now(), value = alert_breach.value,
                threshold = alert_breach.threshold, details = alert_breach.details,
                level = alert_breach.level, escalation_level = 0, escalated_at = NULL,
                acked_at = NULL, acked_by = NULL, ack_note = NULL
            WHERE l.alert_id = a.alert_id;
            -- The episode before, as it ended: its acknowledgement and escalation stay auditable.
            INSERT INTO perfmon.alert_events (alert_id, event, level, value, details)
            VALUES (a.alert_id, 'reopened', level, value, jsonb_build_object('previous', jsonb_build_object(
                        'fired_at', a.fired_at, 'resolved_at', a.resolved_at, 'level', a.level,
                        'escalation_level', a.escalation_level, 'escalated_at', a.escalated_at,
                        'acked_at', a.acked_at, 'acked_by', a.acked_by, 'ack_note', a.ack_note)));
            IF perfmon.alert_level_rank(level) > perfmon.alert_level_rank(a.level) THEN
                PERFORM perfmon.alert_level_raised(a.alert_id, level, value, a.notified_level);
            END IF;
            RETURN 'reopened';
        END IF;
        INSERT INTO perfmon.alert_log (fingerprint, rule, target, state, level, value, threshold, details,
                                       first_seen, fired_at, last_seen)
        VALUES (fp, rule, target, CASE WHEN hold_s = 0 THEN 'firing' ELSE 'pending' END, level, value,
                threshold, details, now(), CASE WHEN hold_s = 0 THEN now() END, now())
        RETURNING * INTO a;
        INSERT INTO perfmon.alert_events (alert_id, event, level, value)
        VALUES (a.alert_id, a.state, level, value);
        IF a.state = 'firing' THEN
            PERFORM perfmon.alert_notify(a.alert_id, 'firing');
        END IF;
        RETURN a.state;
    END IF;

    UPDATE perfmon.alert_log AS l
    SET last_seen = now(), value = alert_breach.value, threshold = alert_breach.threshold,
        details = alert_breach.details
    WHERE l.alert_id = a.alert_id;
    IF a.state = 'pending' THEN
        IF now() - a.first_seen >= make_interval(secs => hold_s) THEN
            UPDATE perfmon.alert_log AS l SET state = 'firing', fired_at = now(),
                   level = alert_breach.level
            WHERE l.alert_id = a.alert_id;
            INSERT INTO perfmon.alert_events (alert_id, event, level, value)
            VALUES (a.alert_id, 'firing', level, value);
            PERFORM perfmon.alert_notify(a.alert_id, 'firing');
            RETURN 'firing';
        END IF;
        UPDATE perfmon.alert_log AS l SET level = alert_breach.level WHERE l.alert_id = a.alert_id;
        RETURN 'pending';
    END IF;
    IF perfmon.alert_level_rank(level) > perfmon.alert_level_rank(a.level) THEN
        UPDATE perfmon.alert_log AS l SET level = alert_breach.level WHERE l.alert_id = a.alert_id;
        PERFORM perfmon.alert_level_raised(a.alert_id, level, value, a.notified_level);
        RETURN 'level_raised';
    ELSIF perfmon.alert_level_rank(level) < perfmon.alert_level_rank(a.level) AND a.escalation_level = 0 THEN
        -- Lower again: shown, not notified (the resolution is). An escalated level stays.
        UPDATE perfmon.alert_log AS l SET level = alert_breach.level WHERE l.alert_id = a.alert_id;
        INSERT INTO perfmon.alert_events (alert_id, event, level, value)
        VALUES (a.alert_id, 'level_lowered', level, value);
        RETURN 'level_lowered';
    END IF;
    RETURN 'firing';
END
$$;
COMMENT ON FUNCTION perfmon.alert_breach(text, text, text, double precision, double precision, jsonb,
                                         integer, integer) IS
    'Records one breach of a rule for a target: opens its alert (pending, or firing when hold_s = 0), '
    'fires it once the breach has held hold_s seconds, raises its level (notified when above every '
    'level already notified) or lowers it (not notified), reopens an alert resolved less than '
    'cooldown_min minutes ago as a new episode (unacknowledged, not escalated, its own firing time; '
    'the episode before in the reopened event''s details). Returns the outcome.';
