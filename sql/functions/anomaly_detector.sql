CREATE OR REPLACE FUNCTION perfmon.anomaly_detector()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- The detector in force: the configured one (auto = envelope) where what it needs is
-- there, else the nearest one that can run. A PL/Python detector was chosen whenever
-- PL/Python was, and without numpy every scoring failed instead of falling back.
DECLARE
    algo text := perfmon.setting('anomaly_detection.algorithm') #>> '{}';
    missing jsonb;
BEGIN
    IF to_regprocedure('perfmon.score_anomalies_py(text,text,integer)') IS NULL THEN
        RETURN 'envelope_sql';
    END IF;
    algo := CASE WHEN algo = 'auto' THEN 'envelope' ELSE algo END;
    IF algo = 'envelope_sql' THEN
        RETURN algo;
    END IF;
    -- Created with the PL/Python functions: called by name only where they exist.
    EXECUTE 'SELECT perfmon.anomaly_python_missing()' INTO missing;
    IF missing ? 'numpy' THEN
        RETURN 'envelope_sql';
    ELSIF algo = 'isolation_forest' AND missing ? 'scikit-learn' THEN
        RETURN 'envelope';
    END IF;
    RETURN algo;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_detector() IS
    'Name of the anomaly detector that runs (perfmon.anomaly_detectors): anomaly_detection.algorithm, '
    'with auto = envelope; envelope_sql wherever PL/Python or the server''s numpy is not available, '
    'envelope for isolation_forest without scikit-learn, or with one the last training could not '
    'import (perfmon.anomaly_python_missing(); '
    'pgperfmon status says why).';
