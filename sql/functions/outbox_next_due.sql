CREATE OR REPLACE FUNCTION perfmon.outbox_next_due(channels text[])
RETURNS double precision
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- What perfmon.outbox_claim() would take, and when: only the given channels, and not a
    -- message held back by an earlier pending one of its alert (the claim's own test), so
    -- a worker does not wake, again and again, for messages it will not claim.
    SELECT extract(epoch FROM min(o.next_attempt_at) - clock_timestamp())::double precision
    FROM perfmon.alert_outbox AS o
    WHERE o.status = 'pending' AND o.channel = ANY (channels)
      AND NOT perfmon.outbox_held_back(o.alert_id, o.channel, o.message_id)
$$;
COMMENT ON FUNCTION perfmon.outbox_next_due(text[]) IS
    'Seconds until perfmon.outbox_claim() has a message of the given channels to return (0 or less: '
    'now; NULL: none pending). Workers wait that long, or for NOTIFY perfmon_alerts.';
