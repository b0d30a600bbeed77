CREATE OR REPLACE FUNCTION perfmon.anomaly_feature_values(since timestamptz, until timestamptz DEFAULT now(),
                                                          feature_names text[] DEFAULT NULL)
RETURNS TABLE (feature text, series text, ts timestamptz, value double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The samples of every enabled feature of perfmon.anomaly_features (or of those
-- named) between two times, in the feature's unit. Each feature's query comes from
-- the registry, which only perfmon_admin can write.
DECLARE
    f record;
BEGIN
    FOR f IN SELECT a.name, a.query FROM perfmon.anomaly_features AS a
              WHERE a.enabled AND (feature_names IS NULL OR a.name = ANY (feature_names))
              ORDER BY a.name LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, coalesce(q.series, %L), q.ts, q.value FROM (%s) AS q(series, ts, value) '
            'WHERE q.value IS NOT NULL AND q.value = q.value ORDER BY 2, 3', f.name, '', f.query)
            USING since, until;
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_feature_values(timestamptz, timestamptz, text[]) IS
    'Samples (feature, series, ts, value) of the anomaly features between two times, each in its '
    'unit (perfmon.anomaly_features.unit); series is '''' for a feature with one series.';
