CREATE OR REPLACE FUNCTION perfmon.anomaly_feature_readings(since timestamptz, until timestamptz DEFAULT now(),
                                                            feature_names text[] DEFAULT NULL)
RETURNS TABLE (feature text, series text, ts timestamptz, value double precision, finite boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Every sample of the features with a value, finite or not (NaN, infinities): the one
-- place that runs each feature's query from the registry, which only perfmon_admin can
-- write. perfmon.anomaly_feature_values() and perfmon.anomaly_non_finite_values() are its
-- finite and non-finite rows; the PL/Python training fits the finite ones and counts the
-- others from this one read (reading both ran every query over the window twice, +12%).
DECLARE
    f record;
BEGIN
    FOR f IN SELECT a.name, a.query FROM perfmon.anomaly_features AS a
              WHERE a.enabled AND (feature_names IS NULL OR a.name = ANY (feature_names))
              ORDER BY a.name LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, coalesce(q.series, %L), q.ts, q.value, '
            'q.value > ''-Infinity'' AND q.value < ''Infinity'' FROM (%s) AS q(series, ts, value) '
            'WHERE q.value IS NOT NULL ORDER BY 2, 3', f.name, '', f.query)
            USING since, until;
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_feature_readings(timestamptz, timestamptz, text[]) IS
    'Samples (feature, series, ts, value, finite) of the anomaly features between two times, finite '
    'or not (NaN, infinities): perfmon.anomaly_feature_values() and perfmon.anomaly_non_finite_values() '
    'in one read.';
