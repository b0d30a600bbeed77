CREATE OR REPLACE FUNCTION perfmon.anomaly_feature_values(since timestamptz, until timestamptz DEFAULT now(),
                                                          feature_names text[] DEFAULT NULL)
RETURNS TABLE (feature text, series text, ts timestamptz, value double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The samples of every enabled feature of perfmon.anomaly_features (or of those
-- named) between two times, in the feature's unit. Each feature's query comes from
-- the registry, which only perfmon_admin can write. Only finite values: NULL, NaN
-- (which PostgreSQL sorts above Infinity, and finds equal to itself) and infinities
-- are no measurement (perfmon.anomaly_non_finite_values() counts them).
DECLARE
    f record;
BEGIN
    FOR f IN SELECT a.name, a.query FROM perfmon.anomaly_features AS a
              WHERE a.enabled AND (feature_names IS NULL OR a.name = ANY (feature_names))
              ORDER BY a.name LOOP
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, coalesce(q.series, %L), q.ts, q.value FROM (%s) AS q(series, ts, value) '
            'WHERE q.value > ''-Infinity'' AND q.value < ''Infinity'' ORDER BY 2, 3', f.name, '', f.query)
            USING since, until;
    END LOOP;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_feature_values(timestamptz, timestamptz, text[]) IS
    'Samples (feature, series, ts, value) of the anomaly features between two times, each in its '
    'unit (perfmon.anomaly_features.unit); series is '''' for a feature with one series. Values that '
    'are not finite numbers (NaN, infinities) are left out: see perfmon.anomaly_non_finite_values().';
