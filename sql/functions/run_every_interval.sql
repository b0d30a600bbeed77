CREATE OR REPLACE PROCEDURE perfmon.run_every_interval(command text, interval_s integer)
LANGUAGE plpgsql
-- No SET search_path here: a procedure with SET clauses may not COMMIT. Every
-- name below is schema-qualified instead.
AS $$
-- pg_cron 1.4 ticks once a minute. For an interval below a minute the per-minute
-- job calls this, which runs the command at each interval slot of the current
-- minute and commits after each run, so every sample has its own transaction
-- and time and is visible at once. While it sleeps between slots it holds a
-- snapshot (PL/pgSQL cannot wait without one), so it holds vacuum's cleanup horizon
-- back by up to one interval, all the time. Where plpython3u is installed the jobs use
-- perfmon.run_every_interval_py() instead, which waits without one (perfmon.job_plan).
DECLARE
    minute_start timestamptz := pg_catalog.date_trunc('minute', pg_catalog.clock_timestamp());
    slot timestamptz;
    runs integer := 0;
    failures integer := 0;
    last_error text;
BEGIN
    IF interval_s < 1 OR 60 % interval_s <> 0 THEN
        RAISE EXCEPTION 'pgperfmon: interval % s does not divide a minute', interval_s;
    END IF;
    FOR i IN 0 .. (60 / interval_s) - 1 LOOP
        slot := minute_start + pg_catalog.make_interval(secs => i * interval_s);
        IF pg_catalog.clock_timestamp() < slot THEN
            PERFORM pg_catalog.pg_sleep(extract(epoch FROM slot - pg_catalog.clock_timestamp()));
        END IF;
        -- A run that overran its slot skips the slots it missed instead of bunching up.
        CONTINUE WHEN pg_catalog.clock_timestamp() >= slot + pg_catalog.make_interval(secs => interval_s);
        COMMIT;  -- end the transaction that slept: the run gets a fresh one
        -- One slot's failure (a lock timeout, say) costs that slot, not the rest of the
        -- minute: it is logged, and the run fails at the end (below).
        runs := runs + 1;
        BEGIN
            EXECUTE command;
        EXCEPTION WHEN OTHERS THEN
            failures := failures + 1;
            last_error := SQLERRM;
            RAISE WARNING 'pgperfmon: % failed in its % s slot: %', command, interval_s, SQLERRM;
        END;
        COMMIT;
    END LOOP;
    -- What the other slots did is committed; the run still ends in error, so that pg_cron
    -- records the job as failed (cron.job_run_details) and pgperfmon status names it.
    IF failures > 0 THEN
        RAISE EXCEPTION 'pgperfmon: % failed in % of its % slots this minute (every % s): %',
            command, failures, runs, interval_s, last_error;
    END IF;
END
$$;
COMMENT ON PROCEDURE perfmon.run_every_interval(text, integer) IS
    'Runs a command at every interval_s slot of the current minute (the sub-minute fallback '
    'for pg_cron 1.4, which schedules whole minutes).';
