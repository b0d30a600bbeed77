CREATE OR REPLACE FUNCTION perfmon.outbox_claim(channels text[])
RETURNS TABLE (message_id bigint, alert_id bigint, channel text, event text, attempt integer, payload jsonb,
               recipients_left text[])
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- SKIP LOCKED: a message another worker is sending is not seen; the lock lasts until the
    -- caller commits the outcome (perfmon.outbox_result), so no two workers send one message.
    -- Messages of one alert reach a channel in order (perfmon.outbox_held_back).
    WITH m AS (
        SELECT o.message_id FROM perfmon.alert_outbox AS o
        WHERE o.status = 'pending' AND o.next_attempt_at <= clock_timestamp()
          AND o.channel = ANY (channels)
          AND NOT perfmon.outbox_held_back(o.alert_id, o.channel, o.message_id)
        ORDER BY o.next_attempt_at, o.message_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    SELECT o.message_id, o.alert_id, o.channel, o.event, o.attempts + 1, o.payload, o.recipients_left
    FROM m JOIN perfmon.alert_outbox AS o USING (message_id)
$$;
COMMENT ON FUNCTION perfmon.outbox_claim(text[]) IS
    'Locks and returns the next due pending message of the given channels (none: no row), skipping '
    'messages other workers hold and messages of an alert whose earlier message to the channel is '
    'still pending. recipients_left: the only recipients to send it to (NULL: all of the channel''s). '
    'Send it, record perfmon.outbox_result(), then commit.';
