CREATE OR REPLACE FUNCTION perfmon.retry_dead_letters(channel text DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        UPDATE perfmon.alert_outbox AS o
        SET status = 'pending', attempts = 0, next_attempt_at = clock_timestamp()
        WHERE o.status = 'dead' AND (retry_dead_letters.channel IS NULL OR o.channel = retry_dead_letters.channel)
        RETURNING 1
    )
    SELECT count(*)::int FROM r
$$;
COMMENT ON FUNCTION perfmon.retry_dead_letters(text) IS
    'Puts dead-lettered messages (of one channel, or all) back in the queue with a fresh count of '
    'attempts; returns how many.';
