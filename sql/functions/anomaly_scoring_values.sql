CREATE OR REPLACE FUNCTION perfmon.anomaly_scoring_values(detector text, lookback_s integer)
RETURNS TABLE (feature text, series text, ts timestamptz, value double precision, scorable boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- What perfmon.score_anomalies() reads, for the features the detector has current
    -- models of: the samples to score (scorable) - those of the last lookback_s seconds
    -- after the last it scored, or only the newest of a series never scored - and 40 of
    -- the feature's sampling steps before them, so that the oldest has its 36-sample
    -- moving mean too. A feature's step is its models' training samples' span over their
    -- number: for a host metric sent every 15 minutes 10 hours are read before, for one
    -- sampled every minute 40 minutes. Both scorers score exactly the scorable rows.
    WITH ms AS (
        -- Each series of a current model, its sampling step and the last sample scored.
        SELECT m.feature, m.series, st.last_ts,
               extract(epoch FROM m.trained_to - m.trained_from) / greatest(m.samples - 1, 1) AS step_s
          FROM perfmon.anomaly_models AS m
          LEFT JOIN perfmon.state_anomaly_scoring AS st
                 ON st.detector = m.detector AND st.feature = m.feature AND st.series = m.series
         WHERE m.current AND m.detector = anomaly_scoring_values.detector
    ), f AS (
        SELECT ms.feature, max(ms.step_s) AS step_s,
               -- A series never scored yet has no last_ts: the whole lookback then.
               greatest(now() - make_interval(secs => lookback_s),
                        min(coalesce(ms.last_ts, '-infinity'))) AS scored_after
          FROM ms
         GROUP BY ms.feature
    ), v AS (
        SELECT v.*, row_number() OVER (PARTITION BY v.feature, v.series ORDER BY v.ts DESC) AS newest
          FROM f
         CROSS JOIN LATERAL perfmon.anomaly_feature_values(
                   f.scored_after - make_interval(secs => 40 * f.step_s), 'infinity', ARRAY[f.feature]) AS v
    )
    SELECT v.feature, v.series, v.ts, v.value,
           v.ts > now() - make_interval(secs => lookback_s)
           AND CASE WHEN ms.last_ts IS NULL THEN v.newest = 1 ELSE v.ts > ms.last_ts END
      FROM v
      LEFT JOIN ms USING (feature, series)
$$;
COMMENT ON FUNCTION perfmon.anomaly_scoring_values(text, integer) IS
    'Samples (feature, series, ts, value, scorable) the scorer reads for a detector''s models: those '
    'to score (scorable: after its last, within lookback_s seconds; the newest of a series never '
    'scored) and 40 sampling steps of each feature before them, for the moving means.';
