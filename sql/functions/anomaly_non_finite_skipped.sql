CREATE OR REPLACE FUNCTION perfmon.anomaly_non_finite_skipped(since timestamptz, until timestamptz, task text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The values that are not finite numbers, as training and scoring skip them, said
-- (perfmon.anomaly_non_finite_warning()). The PL/Python training reads them with the
-- values it fits, and does not call this.
DECLARE
    skipped jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('feature', n.feature, 'series', n.series, 'samples', n.samples,
                                        'last_ts', n.last_ts, 'last_value', n.last_value)
                     ORDER BY n.feature, n.series)
      INTO skipped
      FROM perfmon.anomaly_non_finite_values(since, until) AS n;
    RETURN perfmon.anomaly_non_finite_warning(skipped, task);
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_non_finite_skipped(timestamptz, timestamptz, text) IS
    'The anomaly feature values between two times that are not finite numbers, which task (training, '
    'scoring) skips, as a JSON array of {feature, series, samples, last_ts, last_value} (NULL when '
    'none), and a WARNING naming them.';
