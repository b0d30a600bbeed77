CREATE OR REPLACE FUNCTION perfmon.anomaly_non_finite_warning(skipped jsonb, task text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Training and scoring skip the anomaly features' values that are not finite numbers:
-- said, not silent. pg_cron drops what the jobs return, so a WARNING names them too
-- (it reaches the server log).
BEGIN
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
COMMENT ON FUNCTION perfmon.anomaly_non_finite_warning(jsonb, text) IS
    'Raises the WARNING that names the anomaly feature values that are not finite numbers which task '
    '(training, scoring) skipped, given as perfmon.anomaly_non_finite_skipped() returns them; returns them.';
