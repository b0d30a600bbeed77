CREATE OR REPLACE FUNCTION perfmon.anomaly_detector()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The detector in force: the configured one where PL/Python and its functions are
    -- there (auto = envelope), else the SQL envelope.
    SELECT CASE
        WHEN to_regprocedure('perfmon.score_anomalies_py(text,text,integer)') IS NULL THEN 'envelope_sql'
        WHEN perfmon.setting('anomaly_detection.algorithm') #>> '{}' = 'auto' THEN 'envelope'
        ELSE perfmon.setting('anomaly_detection.algorithm') #>> '{}'
    END
$$;
COMMENT ON FUNCTION perfmon.anomaly_detector() IS
    'Name of the anomaly detector that runs (perfmon.anomaly_detectors): anomaly_detection.algorithm, '
    'with auto = envelope, and envelope_sql wherever PL/Python is not available.';
