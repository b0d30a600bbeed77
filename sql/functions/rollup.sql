CREATE OR REPLACE FUNCTION perfmon.rollup(upto timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Rolls every complete UTC hour before `upto` (and before the hour of the newest
-- sample) that is not rolled up yet into the hourly rollups of perfmon.rollups, and
-- every complete UTC day into the daily ones (from the hourly ones). Where it got to
-- is kept in perfmon.meta, so a run that missed hours catches up, and a rerun adds
-- nothing twice. Every truncation names UTC (perfmon.rollup_query()): pg_cron runs
-- with the server's TimeZone, and in a half-hour zone (Asia/Kolkata) local hours
-- would straddle UTC days.
DECLARE
    hour_done timestamptz;
    day_done timestamptz;
    hour_to timestamptz := date_trunc('hour', upto, 'UTC');
    day_to timestamptz := date_trunc('day', upto, 'UTC');
    hours int := 0;
    days int := 0;
    r perfmon.rollups;
BEGIN
    -- The hourly job and a DBA's call may overlap: the second waits for the first to
    -- commit, then reads where it got to (so it adds nothing twice).
    PERFORM pg_advisory_xact_lock(hashtext('perfmon.rollup'));
    hour_done := coalesce(
        (SELECT value::timestamptz FROM perfmon.meta WHERE key = 'rollup_hourly_until'),
        (SELECT date_trunc('hour', min(ts), 'UTC') FROM perfmon.samples WHERE kind = 'sample'));
    day_done := coalesce(
        (SELECT value::timestamptz FROM perfmon.meta WHERE key = 'rollup_daily_until'), hour_done);
    -- Never past the hour of the newest sample: the samples of that hour and after are
    -- still to come, and a sample stored before rollup_hourly_until once it moved on
    -- would be read from neither the rollups nor the raw history. A clock that ran
    -- ahead when the job fired (upto in the future) thus rolls up nothing too early.
    hour_to := least(hour_to, coalesce(date_trunc('hour',
        (SELECT max(s.ts) FROM perfmon.samples AS s
          WHERE s.server_id = 1 AND s.kind = 'sample' AND s.ts >= hour_done), 'UTC'), hour_done));
    IF hour_done IS NULL THEN
        RETURN jsonb_build_object('hours', 0, 'days', 0);
    END IF;
    IF hour_done < hour_to THEN
        FOR r IN SELECT * FROM perfmon.rollups AS ro WHERE ro.bucket = 'hour' ORDER BY ro.target_table LOOP
            EXECUTE perfmon.rollup_query(r) USING hour_done, hour_to;
        END LOOP;
        hours := extract(epoch FROM hour_to - hour_done) / 3600;
        INSERT INTO perfmon.meta (key, value) VALUES ('rollup_hourly_until', hour_to::text)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;

    -- Days only as far as their hours are rolled up.
    day_to := least(day_to, date_trunc('day', greatest(hour_done, hour_to), 'UTC'));
    day_done := date_trunc('day', day_done, 'UTC');
    IF day_done < day_to THEN
        FOR r IN SELECT * FROM perfmon.rollups AS ro WHERE ro.bucket = 'day' ORDER BY ro.target_table LOOP
            EXECUTE perfmon.rollup_query(r) USING day_done, day_to;
        END LOOP;
        days := extract(epoch FROM day_to - day_done) / 86400;
        INSERT INTO perfmon.meta (key, value) VALUES ('rollup_daily_until', day_to::text)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();
    END IF;
    RETURN jsonb_build_object('hours', hours, 'days', days);
END
$$;
COMMENT ON FUNCTION perfmon.rollup(timestamptz) IS
    'Rolls complete UTC hours (before upto and before the hour of the newest sample) into the hourly '
    'rollups of perfmon.rollups (perfmon.*_hourly) and complete UTC days into the daily ones '
    '(perfmon.*_daily); '
    'returns how many hours and days it added.';
