CREATE OR REPLACE FUNCTION perfmon.enough_to_train(n bigint, span_s double precision,
                                                   window_s double precision)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- perfmon_py.anomaly.enough_to_train: 288 samples (a day at 5 minutes), or for a
    -- series too sparse for its window to hold that many, half of what the window
    -- holds at the series' mean interval, never fewer than 30.
    SELECT n >= 288 OR (n >= 30 AND span_s > 0 AND n >= 0.5 * window_s * (n - 1) / span_s)
$$;
COMMENT ON FUNCTION perfmon.enough_to_train(bigint, double precision, double precision) IS
    'Whether n samples over span_s seconds are enough to fit an anomaly model on a window_s window.';
