CREATE OR REPLACE FUNCTION perfmon.anomaly_non_finite_values(since timestamptz, until timestamptz DEFAULT now(),
                                                             feature_names text[] DEFAULT NULL)
RETURNS TABLE (feature text, series text, samples bigint, last_ts timestamptz, last_value text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- What perfmon.anomaly_feature_values() leaves out of the same features and times:
-- NaN and infinities, which no model can fit or score (an infinity made the SQL
-- envelope's range infinite, and NaN its maximum NaN). NULL is no sample, not counted.
SELECT r.feature, r.series, count(*), max(r.ts), (array_agg(r.value::text ORDER BY r.ts DESC))[1]
  FROM perfmon.anomaly_feature_readings(since, until, feature_names) AS r
 WHERE NOT r.finite
 GROUP BY r.feature, r.series
 ORDER BY r.feature, r.series
$$;
COMMENT ON FUNCTION perfmon.anomaly_non_finite_values(timestamptz, timestamptz, text[]) IS
    'Per anomaly feature and series, the samples between two times whose value is not a finite '
    'number (NaN, Infinity, -Infinity), which training and scoring skip: how many, the newest''s '
    'time and value.';
