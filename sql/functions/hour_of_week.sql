CREATE OR REPLACE FUNCTION perfmon.hour_of_week(ts timestamptz, zone text)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
-- No SET search_path, as perfmon.hour_of_day: it is inlined into per-sample queries.
AS $$
    -- perfmon_py.anomaly.hour_of_week: the hour of the week (0-167, from Monday 00:00) of
    -- a time on the clocks of a time zone, the bin of the envelope's weekly profile.
    SELECT (extract(isodow FROM ts AT TIME ZONE zone)::int - 1) * 24 + extract(hour FROM ts AT TIME ZONE zone)::int
$$;
COMMENT ON FUNCTION perfmon.hour_of_week(timestamptz, text) IS
    'The hour of the week (0-167, from Monday 00:00) of a time on the clocks of a time zone: the '
    'bin of the anomaly envelope''s weekly profile.';
