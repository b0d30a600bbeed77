CREATE OR REPLACE FUNCTION perfmon.outbox_result(message_id bigint, ok boolean, status_code integer,
                                                 error text, duration_ms real, worker text,
                                                 retry_after_s double precision DEFAULT NULL,
                                                 recipients_left text[] DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o perfmon.alert_outbox;
    max_attempts integer := perfmon.setting('alerting.max_delivery_attempts')::int;
    base_s double precision := perfmon.setting('alerting.retry_base_seconds')::double precision;
    max_s double precision := perfmon.setting('alerting.retry_max_seconds')::double precision;
    -- A Retry-After is honoured up to the longest backoff: a hostile or mistaken header
    -- (a year) does not park the message, and the error says it was cut short.
    noted text := left(error || CASE WHEN NOT ok AND retry_after_s > max_s
                                     THEN format(', waiting at most alerting.retry_max_seconds (%s s)', max_s)
                                     ELSE '' END, 1000);
BEGIN
    UPDATE perfmon.alert_outbox AS x
    SET attempts = x.attempts + 1,
        status = CASE WHEN ok THEN 'delivered' WHEN x.attempts + 1 >= max_attempts THEN 'dead'
                      ELSE 'pending' END,
        delivered_at = CASE WHEN ok THEN clock_timestamp() END,
        -- Delivered with an error: some recipients refused it for good (noted, not retried).
        last_error = noted,
        -- Not ok with recipients left: the others have it; only those are sent the retries.
        recipients_left = CASE WHEN NOT ok THEN coalesce(outbox_result.recipients_left, x.recipients_left) END,
        -- The backoff, or the receiver's Retry-After if that is later.
        next_attempt_at = CASE WHEN ok THEN x.next_attempt_at
                               ELSE clock_timestamp() + make_interval(secs => least(max_s, greatest(
                                   base_s * 2 ^ x.attempts, coalesce(retry_after_s, 0)))) END
    WHERE x.message_id = outbox_result.message_id AND x.status = 'pending'
    RETURNING * INTO o;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: message % is not pending', message_id;
    END IF;
    IF NOT ok AND retry_after_s > 0 THEN
        -- The receiver asked to be left alone (429, 503): the channel's other pending messages
        -- wait too, rather than each be refused in turn by a receiver that is rate-limiting.
        UPDATE perfmon.alert_outbox AS x
        SET next_attempt_at = clock_timestamp() + make_interval(secs => least(max_s, retry_after_s))
        WHERE x.channel = o.channel AND x.status = 'pending' AND x.message_id <> o.message_id
          AND x.next_attempt_at < clock_timestamp() + make_interval(secs => least(max_s, retry_after_s));
    END IF;
    INSERT INTO perfmon.delivery_log (message_id, channel, attempt, ok, status_code, duration_ms, error, worker)
    VALUES (o.message_id, o.channel, o.attempts, ok, status_code, duration_ms, noted, worker);
    RETURN o.status;
END
$$;
COMMENT ON FUNCTION perfmon.outbox_result(bigint, boolean, integer, text, real, text, double precision, text[]) IS
    'Records one delivery attempt of a claimed message: delivered, or retried after '
    'alerting.retry_base_seconds * 2^(attempt-1) s (at most alerting.retry_max_seconds) or after the '
    'receiver''s Retry-After (retry_after_s) if later, or dead after alerting.max_delivery_attempts. '
    'A Retry-After holds back the channel''s other pending messages too, and is honoured up to '
    'alerting.retry_max_seconds. recipients_left: after an attempt some recipients accepted, those '
    'that refused it for now, to whom alone it is retried. The error must already be redacted; '
    'it notes the recipients that refused a message others accepted. Returns the new status.';
