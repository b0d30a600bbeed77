CREATE OR REPLACE FUNCTION perfmon.anomaly_severity(peak_score double precision, samples bigint)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- perfmon_py.anomaly.severity: an episode's severity from its peak score (1 = the
    -- threshold) and its anomalous samples so far.
    SELECT CASE WHEN peak_score >= 4 THEN 'critical'
                WHEN peak_score >= 2 OR samples >= 10 THEN 'warning'
                ELSE 'info' END
$$;
COMMENT ON FUNCTION perfmon.anomaly_severity(double precision, bigint) IS
    'Severity of an anomaly episode: critical from peak score 4, warning from 2 or 10 anomalous '
    'samples, else info (perfmon.anomalies, and where a backtest reports an episode again).';
