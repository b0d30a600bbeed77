CREATE OR REPLACE PROCEDURE perfmon.deliver_alerts(max_seconds double precision DEFAULT 0,
                                                   max_messages integer DEFAULT 100000)
LANGUAGE plpgsql
-- No SET clause: a procedure with one may not COMMIT. Names are schema-qualified.
AS $$
-- Commits after each message: once a receiver has it, its delivery is on record.
-- max_seconds = 0: send what is due and return; above 0: keep polling the outbox every
-- alerting.delivery_poll_seconds until then (the pg_cron job runs 55 s of each minute).
DECLARE
    deadline timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => max_seconds);
    poll double precision := perfmon.setting('alerting.delivery_poll_seconds')::double precision;
    outcome jsonb;
    sent integer := 0;
BEGIN
    IF pg_catalog.to_regprocedure('perfmon.deliver_next(text)') IS NULL THEN
        RAISE NOTICE 'pgperfmon: in-database delivery needs plpython3u; run pgperfmon deliver instead';
        RETURN;
    END IF;
    -- No channel on: nothing will ever be due, so do not hold a pg_cron worker for it.
    IF NOT EXISTS (SELECT FROM perfmon.config AS c
                   WHERE c.key LIKE 'alerting.channels.%.enabled' AND c.value = 'true') THEN
        RETURN;
    END IF;
    LOOP
        outcome := perfmon.deliver_next('database');
        COMMIT;
        IF outcome IS NOT NULL THEN
            sent := sent + 1;
            EXIT WHEN sent >= max_messages;
            CONTINUE;
        END IF;
        EXIT WHEN pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => poll) >= deadline;
        PERFORM pg_catalog.pg_sleep(poll);
        COMMIT;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE perfmon.deliver_alerts(double precision, integer) IS
    'The in-database delivery worker: sends due messages one by one, committing each; with '
    'max_seconds > 0 it keeps polling the outbox (every alerting.delivery_poll_seconds) for that '
    'many seconds. Secrets come from the server''s environment (see docs/alerting.md).';
