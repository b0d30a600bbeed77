CREATE OR REPLACE FUNCTION perfmon.alert_anomalies()
RETURNS TABLE (target text, value double precision, level text, details jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Ongoing anomaly episodes at or above alerting.anomaly_min_level, as alert breaches:
    -- one target per metric (and series), so each gets its own alert fingerprint.
    SELECT array_to_string(a.metrics, ', ') || coalesce(' ' || a.series, ''),
           a.score::double precision,
           a.severity,
           to_jsonb(a) || jsonb_build_object(
               'recommended_actions', array_to_string(a.recommended_actions, '; '))
    FROM perfmon.anomalies AS a
    WHERE a.ongoing
      AND perfmon.alert_level_rank(a.severity)
          >= perfmon.alert_level_rank(perfmon.setting('alerting.anomaly_min_level') #>> '{}')
$$;
COMMENT ON FUNCTION perfmon.alert_anomalies() IS
    'Ongoing anomalies of perfmon.anomalies at or above alerting.anomaly_min_level, as alert '
    'breaches: target (metrics and series), score, level, the anomaly as jsonb.';
