CREATE OR REPLACE VIEW perfmon.anomalies AS
SELECT e.episode_id,
       e.started_at,
       coalesce(e.ended_at, e.last_seen_at) AS last_seen_at,
       e.ended_at IS NULL AS ongoing,
       round(extract(epoch FROM e.last_seen_at - e.started_at)::numeric, 0) AS duration_s,
       e.samples AS anomalous_samples,
       CASE WHEN e.feature = 'multi'
            THEN (SELECT array_agg(c ->> 'feature') FROM jsonb_array_elements(e.contributors) AS c)
            ELSE ARRAY[e.feature] END AS metrics,
       nullif(e.series, '') AS series,
       coalesce(f.unit, 'z') AS unit,
       e.observed_value,
       e.expected_low,
       e.expected_high,
       round(e.peak_score::numeric, 2) AS score,
       e.peak_at,
       perfmon.anomaly_severity(e.peak_score, e.samples) AS severity,
       e.contributors AS contributing_features,
       coalesce(f.impact, 'several metrics moved together away from their usual combination: '
                || 'see the contributing features') AS business_impact,
       coalesce(f.actions, ARRAY['look at the contributing features in perfmon.anomaly_features '
                                 || 'and the views they point to']) AS recommended_actions,
       e.detector
FROM perfmon.anomaly_episodes AS e
LEFT JOIN perfmon.anomaly_features AS f
       ON f.name = CASE WHEN e.feature = 'multi' THEN e.contributors -> 0 ->> 'feature' ELSE e.feature END;
COMMENT ON VIEW perfmon.anomalies IS
    'Anomalies, one row per episode (consecutive anomalous samples of a metric, or of the multi-metric '
    'vector): when (started_at, last_seen_at, ongoing, duration_s), which metric(s), the observed value '
    'and the expected range at the peak (in unit), score (1 = at the threshold), severity (critical '
    'from score 4, warning from 2 or 10 samples, else info), contributing_features, business_impact '
    'and recommended_actions, detector.';
