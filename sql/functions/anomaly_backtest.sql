CREATE OR REPLACE FUNCTION perfmon.anomaly_backtest(series_id integer, detector text DEFAULT NULL,
                                                    sensitivity text DEFAULT NULL, params jsonb DEFAULT NULL)
RETURNS TABLE (ts timestamptz, value double precision, score double precision, anomalous boolean,
               is_anomaly boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Walk-forward backtest of a detector (default: the one in force) on one series of
-- perfmon.metric_samples: each point is scored only with the model refitted, every
-- anomaly_detection.retrain_interval_hours, on the training window before it - the
-- models' schedule in production, and the profiles' hours are those of
-- anomaly_detection.timezone, as in production. is_anomaly marks the first sample of
-- an episode and each sample at which its severity rises (perfmon.anomaly_severity),
-- i.e. where perfmon.anomalies shows an anomaly new or worse and alerting notifies a
-- raised level; anomalous marks every sample at or over score 1.
-- params replaces settings of the sensitivity (perfmon.anomaly_settings), so that
-- other values are evaluated on this same path (bench/anomaly_nab.py).
DECLARE
    det text := coalesce(detector, perfmon.anomaly_detector());
    sens text := coalesce(sensitivity, perfmon.setting('anomaly_detection.sensitivity') #>> '{}');
    window_s float8 := perfmon.setting('anomaly_detection.training_window_days')::float8 * 86400;
    refit_s float8 := perfmon.setting('anomaly_detection.retrain_interval_hours')::float8 * 3600;
    quiet int := perfmon.setting('anomaly_detection.episode_quiet_samples')::int;
    zone text := perfmon.anomaly_timezone();
    settings jsonb;
    missing jsonb;
    package text;
BEGIN
    IF det = 'auto' THEN
        det := CASE WHEN perfmon.anomaly_detector() = 'envelope_sql' THEN 'envelope_sql' ELSE 'envelope' END;
    END IF;
    IF NOT EXISTS (SELECT FROM perfmon.anomaly_detectors AS d WHERE d.name = det AND d.scope = 'metric') THEN
        RAISE EXCEPTION 'pgperfmon: detector % cannot be backtested on one series', quote_literal(det)
            USING HINT = 'expected one of ' || (SELECT string_agg(d.name, ', ' ORDER BY d.name)
                                                  FROM perfmon.anomaly_detectors AS d WHERE d.scope = 'metric');
    END IF;
    settings := perfmon.anomaly_settings(sens, det, params);
    IF det = 'envelope_sql' THEN
        RETURN QUERY SELECT * FROM perfmon.anomaly_backtest_sql(series_id, (settings ->> 'margin')::float8,
            (settings ->> 'mean_margin')::float8, (settings ->> 'mean_window')::int,
            (settings ->> 'season_min_periods')::float8, (settings ->> 'season_min_explained')::float8, zone,
            window_s, refit_s, quiet);
        RETURN;
    END IF;
    IF to_regprocedure('perfmon.anomaly_backtest_py(integer,text,text,jsonb,double precision,double precision,integer,text)') IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: detector % needs PL/Python, which is not available here', det
            USING HINT = 'backtest envelope_sql instead';
    END IF;
    -- Without numpy (or, for the forest, scikit-learn) the PL/Python backtest failed on its
    -- first import, a Python traceback naming neither the detector nor what runs instead.
    EXECUTE 'SELECT perfmon.anomaly_python_missing()' INTO missing;
    package := CASE WHEN missing ? 'numpy' THEN 'numpy'
                    WHEN det = 'isolation_forest' AND missing ? 'scikit-learn' THEN 'scikit-learn' END;
    IF package IS NOT NULL THEN
        RAISE EXCEPTION 'pgperfmon: detector % needs %, which the server''s Python cannot import: %',
                        det, package, missing ->> package
            USING HINT = CASE WHEN package = 'numpy'
                THEN 'backtest envelope_sql instead (the envelope in SQL; pgperfmon anomalies backtest '
                     '--detector envelope_sql), or install numpy (on Debian: apt-get install python3-numpy)'
                ELSE 'backtest envelope instead (pgperfmon anomalies backtest --detector envelope), or '
                     'install scikit-learn (on Debian: apt-get install python3-sklearn)' END;
    END IF;
    RETURN QUERY EXECUTE 'SELECT * FROM perfmon.anomaly_backtest_py($1, $2, $3, $4, $5, $6, $7, $8)'
        USING series_id, det, sens, params, window_s, refit_s, quiet, zone;
END
$$;
COMMENT ON FUNCTION perfmon.anomaly_backtest(integer, text, text, jsonb) IS
    'Walk-forward backtest of an anomaly detector on one stored metric series: per sample the score '
    '(1 = threshold), anomalous (score >= 1) and is_anomaly (first sample of an episode, or its '
    'severity rising). params '
    '(JSON object, optional) replaces settings of the sensitivity: see perfmon.anomaly_settings.';
