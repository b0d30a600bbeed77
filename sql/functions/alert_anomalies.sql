CREATE OR REPLACE FUNCTION perfmon.alert_anomalies()
RETURNS TABLE (target text, value double precision, level text, details jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Ongoing anomaly episodes at or above alerting.anomaly_min_level, as alert breaches:
    -- one target per episode's metric (and series), so each gets its own alert fingerprint.
    -- The target is what the episode is of, fixed for its life: the multi-metric forest's
    -- episode is 'multi-metric', not the features contributing at its peak, which change
    -- when the peak moves (the alert resolved and another fired within one episode). The
    -- contributors are in the details (metrics, contributing_features), kept current.
    SELECT CASE WHEN e.feature = 'multi' THEN 'multi-metric' ELSE e.feature END
               || coalesce(' ' || a.series, ''),
           a.score::double precision,
           a.severity,
           to_jsonb(a) || jsonb_build_object(
               'recommended_actions', array_to_string(a.recommended_actions, '; '))
    FROM perfmon.anomalies AS a
    JOIN perfmon.anomaly_episodes AS e ON e.episode_id = a.episode_id
    WHERE a.ongoing
      AND perfmon.alert_level_rank(a.severity)
          >= perfmon.alert_level_rank(perfmon.setting('alerting.anomaly_min_level') #>> '{}')
$$;
COMMENT ON FUNCTION perfmon.alert_anomalies() IS
    'Ongoing anomalies of perfmon.anomalies at or above alerting.anomaly_min_level, as alert '
    'breaches: target (the metric and series, ''multi-metric'' for the multi-metric forest: the '
    'same for the episode''s life), score, level, the anomaly as jsonb (with the metrics and '
    'contributing_features at its peak).';
