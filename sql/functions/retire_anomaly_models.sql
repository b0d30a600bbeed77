CREATE OR REPLACE FUNCTION perfmon.retire_anomaly_models(detectors text[], seen_features text[],
                                                         seen_series text[])
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Called by the training with the series that had a value in its window. A series that
-- stopped sending (a host removed, a feature disabled, a custom metric no longer
-- ingested) kept its model current for ever: nothing retrained or replaced it. Its
-- models (the current one and the one kept before it: there is nothing to compare with)
-- are deleted; should the series come back, the next training fits it a new one. Its
-- open episode, which no scoring will reach and which the scoring ends through the
-- series' current model only, ends at its last anomalous sample.
DECLARE
    retired jsonb;
BEGIN
    IF cardinality(seen_features) IS DISTINCT FROM cardinality(seen_series) THEN
        RAISE EXCEPTION 'pgperfmon: retire_anomaly_models: % seen features but % seen series; expected one '
                        'series per feature', cardinality(seen_features), cardinality(seen_series)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS perfmon_seen_series (feature text, series text,
                                                        PRIMARY KEY (feature, series)) ON COMMIT DROP;
    TRUNCATE perfmon_seen_series;
    INSERT INTO perfmon_seen_series
    SELECT DISTINCT s.feature, s.series FROM unnest(seen_features, seen_series) AS s(feature, series);
    UPDATE perfmon.anomaly_episodes AS e SET ended_at = e.last_seen_at
     WHERE e.server_id = 1 AND e.ended_at IS NULL AND e.detector = ANY (detectors)
       AND NOT EXISTS (SELECT FROM perfmon_seen_series AS s WHERE s.feature = e.feature AND s.series = e.series);
    WITH gone AS (
        DELETE FROM perfmon.anomaly_models AS m
         WHERE m.detector = ANY (detectors)
           AND NOT EXISTS (SELECT FROM perfmon_seen_series AS s
                            WHERE s.feature = m.feature AND s.series = m.series)
        RETURNING m.detector, m.feature, m.series, m.trained_to, m.current)
    SELECT jsonb_agg(jsonb_build_object('detector', g.detector, 'feature', g.feature, 'series', g.series,
                                        'trained_to', g.trained_to)
                     ORDER BY g.detector, g.feature, g.series) FILTER (WHERE g.current)
      INTO retired
      FROM gone AS g;
    DROP TABLE perfmon_seen_series;
    RETURN coalesce(retired, '[]');
END
$$;
COMMENT ON FUNCTION perfmon.retire_anomaly_models(text[], text[], text[]) IS
    'Deletes the models of the detectors whose series is not among the (feature, series) pairs seen '
    '(the training''s: those with a value in its window), and ends their open episodes; returns the '
    'current models deleted as [{detector, feature, series, trained_to}]. Called by '
    'perfmon.train_anomaly_models().';
