-- Developer: anomaly episodes of the window with their explanation (perfmon.anomalies),
-- ongoing and newest first.
SELECT episode_id, started_at, last_seen_at, ongoing, duration_s, metrics, series, unit,
       observed_value, expected_low, expected_high, score, severity, contributing_features,
       business_impact, recommended_actions, detector
FROM perfmon.anomalies
WHERE last_seen_at > now() - make_interval(secs => %(window_s)s)
ORDER BY ongoing DESC, started_at DESC
LIMIT 20
