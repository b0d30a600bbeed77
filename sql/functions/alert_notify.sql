CREATE OR REPLACE FUNCTION perfmon.alert_notify(alert_id bigint, event text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Queue one notification per channel that wants it, in the caller's transaction: the
-- alert and its messages commit (or roll back) together.
DECLARE
    a record;
    payload jsonb;
    queued integer := 0;
    esc jsonb := perfmon.setting('alerting.escalation_channels');
BEGIN
    SELECT * INTO a FROM perfmon.alerts AS v WHERE v.alert_id = alert_notify.alert_id;
    IF a.silenced THEN
        INSERT INTO perfmon.alert_events (alert_id, event, level, value, details)
        VALUES (a.alert_id, 'suppressed', a.level, a.current_value,
                jsonb_build_object('notification', event, 'silence_id', a.silence_id));
        RETURN 0;
    END IF;
    payload := jsonb_build_object('event', event, 'database', current_database(),
                                  'sent_for', clock_timestamp())
               || (SELECT to_jsonb(v) - 'silenced' - 'silence_id' FROM perfmon.alerts AS v
                   WHERE v.alert_id = alert_notify.alert_id);
    INSERT INTO perfmon.alert_outbox (alert_id, event, channel, level, payload)
    SELECT a.alert_id, event, c.name, a.level, payload
    FROM perfmon.alert_channels AS c
    CROSS JOIN LATERAL (SELECT perfmon.settings_under(c.config_key) AS s) AS cfg
    WHERE (cfg.s ->> 'enabled')::boolean
      AND (perfmon.alert_level_rank(cfg.s ->> 'min_level') <= perfmon.alert_level_rank(a.level)
           OR (event = 'escalated' AND esc ? c.name)
           -- Whoever heard of the alert (since its last resolution) hears of its end, whatever
           -- its level now: it may have been lowered, or reached the channel by escalation.
           OR (event = 'resolved' AND EXISTS (
                   SELECT FROM perfmon.alert_outbox AS o
                   WHERE o.alert_id = a.alert_id AND o.channel = c.name AND o.event <> 'resolved'
                     AND o.status IN ('pending', 'delivered')
                     AND NOT EXISTS (SELECT FROM perfmon.alert_outbox AS r
                                     WHERE r.alert_id = o.alert_id AND r.channel = o.channel
                                       AND r.event = 'resolved' AND r.message_id > o.message_id))));
    GET DIAGNOSTICS queued = ROW_COUNT;
    UPDATE perfmon.alert_log AS l
    SET notified_at = now(),
        notified_level = CASE WHEN perfmon.alert_level_rank(a.level)
                                   > coalesce(perfmon.alert_level_rank(l.notified_level), -1)
                              THEN a.level ELSE l.notified_level END
    WHERE l.alert_id = a.alert_id;
    IF queued > 0 THEN
        PERFORM pg_notify('perfmon_alerts', queued::text);
    END IF;
    RETURN queued;
END
$$;
COMMENT ON FUNCTION perfmon.alert_notify(bigint, text) IS
    'Queues an alert event (firing, level_raised, escalated, resolved) in perfmon.alert_outbox for '
    'every enabled channel whose min_level it reaches (escalations also to alerting.escalation_channels, '
    'resolutions also to every channel queued a message of the alert since its last resolution), '
    'unless a silence covers it, and keeps the highest level notified (alert_log.notified_level); '
    'NOTIFY perfmon_alerts wakes listening workers. Returns messages queued.';
