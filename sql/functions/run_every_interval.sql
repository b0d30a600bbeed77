CREATE OR REPLACE PROCEDURE perfmon.run_every_interval(command text, interval_s integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- pg_cron 1.4 ticks once a minute. For an interval below a minute the per-minute
-- job calls this, which runs the command at each interval slot of the current
-- minute and commits after each run, so every sample has its own transaction
-- and time and is visible at once.
DECLARE
    minute_start timestamptz := date_trunc('minute', clock_timestamp());
    slot timestamptz;
BEGIN
    IF interval_s < 1 OR 60 % interval_s <> 0 THEN
        RAISE EXCEPTION 'pgperfmon: interval % s does not divide a minute', interval_s;
    END IF;
    FOR i IN 0 .. (60 / interval_s) - 1 LOOP
        slot := minute_start + make_interval(secs => i * interval_s);
        IF clock_timestamp() < slot THEN
            PERFORM pg_sleep(extract(epoch FROM slot - clock_timestamp()));
        END IF;
        -- A run that overran its slot skips the slots it missed instead of bunching up.
        CONTINUE WHEN clock_timestamp() >= slot + make_interval(secs => interval_s);
        EXECUTE command;
        COMMIT;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE perfmon.run_every_interval(text, integer) IS
    'Runs a command at every interval_s slot of the current minute (the sub-minute fallback '
    'for pg_cron 1.4, which schedules whole minutes).';
