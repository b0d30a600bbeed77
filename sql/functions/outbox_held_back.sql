CREATE OR REPLACE FUNCTION perfmon.outbox_held_back(alert_id bigint, channel text, message_id bigint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Messages of one alert reach a channel in order: a message waits while an earlier one
    -- of its alert to that channel is pending (a retried "firing" is not overtaken by its
    -- "resolved"). A dead one holds nothing back, nor does one that some recipients already
    -- have and that is retried to the others alone (recipients_left): those who were told of
    -- the firing hear of the resolution on time, not after the others' retries run out.
    SELECT EXISTS (SELECT FROM perfmon.alert_outbox AS e
                   WHERE e.alert_id = outbox_held_back.alert_id AND e.channel = outbox_held_back.channel
                     AND e.status = 'pending' AND e.recipients_left IS NULL
                     AND e.message_id < outbox_held_back.message_id)
$$;
COMMENT ON FUNCTION perfmon.outbox_held_back(bigint, text, bigint) IS
    'Whether an outbox message waits for an earlier pending message of its alert to the same channel '
    '(one that no recipient has yet): '
    'perfmon.outbox_claim() does not take it, perfmon.outbox_next_due() does not wait for it.';
