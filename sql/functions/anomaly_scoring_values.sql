CREATE OR REPLACE FUNCTION perfmon.anomaly_scoring_values(detector text, lookback_s integer)
RETURNS TABLE (feature text, series text, ts timestamptz, value double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- What perfmon.score_anomalies() reads, for the features the detector has current
    -- models of: the samples of the last lookback_s seconds, which it may score, and
    -- before them 40 of the feature's sampling steps, so that the oldest of them has its
    -- 36-sample moving mean too. A feature's step is its models' training samples' span
    -- over their number: a host metric sent every 15 minutes reads 10 hours back, one
    -- sampled every minute 40 minutes.
    SELECT v.*
      FROM (SELECT m.feature,
                   max(extract(epoch FROM m.trained_to - m.trained_from) / greatest(m.samples - 1, 1)) AS step_s
              FROM perfmon.anomaly_models AS m
             WHERE m.current AND m.detector = anomaly_scoring_values.detector
             GROUP BY m.feature) AS f
     CROSS JOIN LATERAL perfmon.anomaly_feature_values(
               now() - make_interval(secs => lookback_s + 40 * f.step_s), 'infinity', ARRAY[f.feature]) AS v
$$;
COMMENT ON FUNCTION perfmon.anomaly_scoring_values(text, integer) IS
    'Samples (feature, series, ts, value) the scorer reads for a detector''s models: the last lookback_s '
    'seconds and 40 sampling steps of each feature before them, for the moving means.';
