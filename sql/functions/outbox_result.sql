CREATE OR REPLACE FUNCTION perfmon.outbox_result(message_id bigint, ok boolean, status_code integer,
                                                 error text, duration_ms real, worker text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o perfmon.alert_outbox;
    max_attempts integer := perfmon.setting('alerting.max_delivery_attempts')::int;
    base_s double precision := perfmon.setting('alerting.retry_base_seconds')::double precision;
    max_s double precision := perfmon.setting('alerting.retry_max_seconds')::double precision;
BEGIN
    UPDATE perfmon.alert_outbox AS x
    SET attempts = x.attempts + 1,
        status = CASE WHEN ok THEN 'delivered' WHEN x.attempts + 1 >= max_attempts THEN 'dead'
                      ELSE 'pending' END,
        delivered_at = CASE WHEN ok THEN clock_timestamp() END,
        -- Delivered with an error: some recipients refused it (kept, not retried).
        last_error = left(error, 1000),
        next_attempt_at = CASE WHEN ok THEN x.next_attempt_at
                               ELSE clock_timestamp() + make_interval(secs => least(max_s, base_s * 2 ^ x.attempts)) END
    WHERE x.message_id = outbox_result.message_id AND x.status = 'pending'
    RETURNING * INTO o;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: message % is not pending', message_id;
    END IF;
    INSERT INTO perfmon.delivery_log (message_id, channel, attempt, ok, status_code, duration_ms, error, worker)
    VALUES (o.message_id, o.channel, o.attempts, ok, status_code, duration_ms, left(error, 1000), worker);
    RETURN o.status;
END
$$;
COMMENT ON FUNCTION perfmon.outbox_result(bigint, boolean, integer, text, real, text) IS
    'Records one delivery attempt of a claimed message: delivered, or retried after '
    'alerting.retry_base_seconds * 2^(attempt-1) s (at most alerting.retry_max_seconds), or dead after '
    'alerting.max_delivery_attempts. The error must already be redacted; with ok, it notes the '
    'recipients that refused a message others accepted. Returns the new status.';
