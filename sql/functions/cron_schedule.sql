CREATE OR REPLACE FUNCTION perfmon.cron_schedule(seconds integer)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    -- pg_cron 1.4 schedules whole minutes; below a minute the job runs every
    -- minute and perfmon.run_every_interval() takes the sub-minute slots.
    SELECT CASE
        WHEN seconds <= 60 THEN '* * * * *'
        WHEN seconds < 3600 THEN format('*/%s * * * *', seconds / 60)
        WHEN seconds < 86400 THEN format('0 */%s * * *', seconds / 3600)
        ELSE '0 0 * * *'
    END
$$;
COMMENT ON FUNCTION perfmon.cron_schedule(integer) IS
    'The cron expression pgperfmon uses for an interval in seconds.';
