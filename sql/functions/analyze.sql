CREATE OR REPLACE FUNCTION perfmon.analyze()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The per-interval analysis: anomaly scoring (when the anomaly detector is installed),
-- alert rules, the enabled in-database recovery actions, then the health score is
-- recorded (perfmon.record_health()). Each part runs in its own
-- subtransaction so that one failing does not stop the others.
DECLARE
    result jsonb := '{}';
    part jsonb;
    t0 timestamptz := clock_timestamp();
BEGIN
    IF to_regprocedure('perfmon.score_anomalies()') IS NOT NULL THEN
        BEGIN
            EXECUTE 'SELECT to_jsonb(perfmon.score_anomalies())' INTO part;
            result := result || jsonb_build_object('anomalies', part);
        EXCEPTION WHEN OTHERS THEN
            result := result || jsonb_build_object('anomalies', jsonb_build_object('error', SQLERRM));
        END;
    END IF;
    BEGIN
        result := result || jsonb_build_object('alerts', perfmon.evaluate_alerts());
    EXCEPTION WHEN OTHERS THEN
        result := result || jsonb_build_object('alerts', jsonb_build_object('error', SQLERRM));
    END;
    BEGIN
        result := result || jsonb_build_object('recovery',
            perfmon.recover('analyze', NULL, fast_only => false, in_database_only => true));
    EXCEPTION WHEN OTHERS THEN
        result := result || jsonb_build_object('recovery', jsonb_build_object('error', SQLERRM));
    END;
    BEGIN
        PERFORM perfmon.record_health();
        result := result || jsonb_build_object('health', 'recorded');
    EXCEPTION WHEN OTHERS THEN
        result := result || jsonb_build_object('health', jsonb_build_object('error', SQLERRM));
    END;
    RETURN result || jsonb_build_object('ms', round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000, 2));
END
$$;
COMMENT ON FUNCTION perfmon.analyze() IS
    'The per-interval analysis pg_cron runs: scores anomalies (perfmon.score_anomalies(), when '
    'installed), evaluates the alert rules (perfmon.evaluate_alerts()), runs the enabled in-database '
    'recovery actions (perfmon.recover()), records the health score (perfmon.record_health()). Returns '
    'what each part did, and the total ms.';
