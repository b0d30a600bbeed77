CREATE OR REPLACE FUNCTION perfmon.hour_of_day(ts timestamptz, zone text)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
-- No SET search_path: that would keep the planner from inlining it into the per-sample
-- queries of the envelope, which call it for every sample; it names only built-ins,
-- runs with its callers' rights, and every caller fixes its own search_path.
AS $$
    -- perfmon_py.anomaly.hour_of_day: the hour of the day (0-23) of a time on the clocks
    -- of a time zone (perfmon.anomaly_timezone()), the bin of the envelope's daily profile.
    SELECT extract(hour FROM ts AT TIME ZONE zone)::int
$$;
COMMENT ON FUNCTION perfmon.hour_of_day(timestamptz, text) IS
    'The hour of the day (0-23) of a time on the clocks of a time zone: the bin of the anomaly '
    'envelope''s daily profile.';
