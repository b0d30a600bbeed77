CREATE OR REPLACE FUNCTION perfmon.anomaly_feature_values(since timestamptz, until timestamptz DEFAULT now(),
                                                          feature_names text[] DEFAULT NULL)
RETURNS TABLE (feature text, series text, ts timestamptz, value double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The samples of every enabled feature of perfmon.anomaly_features (or of those
-- named) between two times, in the feature's unit: the finite ones of
-- perfmon.anomaly_feature_readings(), which runs each feature's query. NULL, NaN
-- (which PostgreSQL sorts above Infinity, and finds equal to itself) and infinities
-- are no measurement (perfmon.anomaly_non_finite_values() counts them).
SELECT r.feature, r.series, r.ts, r.value
  FROM perfmon.anomaly_feature_readings(since, until, feature_names) AS r
 WHERE r.finite
$$;
COMMENT ON FUNCTION perfmon.anomaly_feature_values(timestamptz, timestamptz, text[]) IS
    'Samples (feature, series, ts, value) of the anomaly features between two times, each in its '
    'unit (perfmon.anomaly_features.unit); series is '''' for a feature with one series. Values that '
    'are not finite numbers (NaN, infinities) are left out: see perfmon.anomaly_non_finite_values().';
