CREATE OR REPLACE FUNCTION perfmon.anomaly_non_finite_skipped(since timestamptz, until timestamptz, task text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Training and scoring skip the anomaly features' values that are not finite numbers:
-- said, not silent. pg_cron drops what the jobs return, so a WARNING names them too
-- (it reaches the server log).
DECLARE
    skipped jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('feature', n.feature, 'series', n.series, 'samples', n.samples,
                                        'last_ts', n.last_ts, 'last_value', n.last_value)
                     ORDER BY n.feature, n.series)
      INTO skipped
      FROM perfmon.anomaly_non_finite_values(since, until) AS n;
    IF skipped IS NOT NULL THEN
        RAISE WARNING 'pgperfmon: % skipped anomaly feature values that are not finite numbers: %', task,
            (SELECT string_agg(format('%s%s: %s value(s), the last %s at %s', e ->> 'feature',
                                      CASE WHEN e ->> 'series' <> '' THEN ' ' || (e ->> 'series') ELSE '' END,
                                      e ->> 'samples', e ->> 'last_value', e ->> 'last_ts'), '; ')
               FROM jsonb_array_elements(skipped) AS e)
            USING HINT = 'Check the feature''s query in perfmon.anomaly_features: a division by zero '
                         'of floats gives Infinity or NaN.';
    END IF;
    RETURN skipped;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_non_finite_skipped(timestamptz, timestamptz, text) IS
    'The anomaly feature values between two times that are not finite numbers, which task (training, '
    'scoring) skips, as a JSON array of {feature, series, samples, last_ts, last_value} (NULL when '
    'none), and a WARNING naming them.';
