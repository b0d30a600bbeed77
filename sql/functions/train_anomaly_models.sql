CREATE OR REPLACE FUNCTION perfmon.train_anomaly_models(force boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Fits the detector in force (perfmon.anomaly_detector()) on the last
-- anomaly_detection.training_window_days of every feature and stores the models; those
-- of the series with no value in the window are deleted (perfmon.retire_anomaly_models()).
-- Runs hourly from pg_cron; does nothing until the current models are older than
-- anomaly_detection.retrain_interval_hours, or were fitted with other settings (or force).
DECLARE
    det text := perfmon.anomaly_detector();
    sens text := perfmon.setting('anomaly_detection.sensitivity') #>> '{}';
    zone text;
    until timestamptz := now();
    since timestamptz := now() - make_interval(days => perfmon.setting('anomaly_detection.training_window_days')::int);
    newest timestamptz;
    refitted boolean;
    started timestamptz := clock_timestamp();
    result jsonb;
    probe_error text;
    non_finite jsonb;
BEGIN
    IF NOT perfmon.setting('anomaly_detection.enabled')::boolean THEN
        RETURN jsonb_build_object('detector', det, 'skipped', 'anomaly_detection.enabled is false');
    END IF;
    -- A second training at once (a manual one beside the job's) would store the same
    -- models again, then fail on the index that allows one current model per series.
    IF NOT pg_try_advisory_xact_lock(hashtext('perfmon.train_anomaly_models')) THEN
        RETURN jsonb_build_object('detector', det, 'skipped', 'another training is running');
    END IF;
    -- anomaly_detector() only looks scikit-learn up: one that is found but fails to import
    -- (built for another numpy) kept the forest chosen and failed every training. It is
    -- imported here, where it would be anyway, and what was found decides in every session.
    IF perfmon.setting('anomaly_detection.algorithm') #>> '{}' = 'isolation_forest'
       AND to_regprocedure('perfmon.anomaly_python_probe()') IS NOT NULL THEN
        EXECUTE 'SELECT perfmon.anomaly_python_probe()' INTO probe_error;
        det := perfmon.anomaly_detector();
        IF probe_error IS NOT NULL THEN
            RAISE WARNING 'pgperfmon: anomaly_detection.algorithm isolation_forest needs scikit-learn, which '
                          'the server''s Python cannot import (%): % is trained instead', probe_error, det
                USING HINT = 'pgperfmon status says which detector runs; on Debian: '
                             'apt-get install python3-sklearn';
        END IF;
    END IF;
    -- A model keeps the margins of the sensitivity it was fitted with, and the envelope's
    -- profile the hours of its time zone: fitted with other settings than those in force,
    -- it is due now, or a changed setting waited up to retrain_interval_hours (while a
    -- DBA who had lowered the sensitivity still got the alerts it was lowered for).
    SELECT max(m.trained_at),
           bool_or(m.params ->> 'sensitivity' IS DISTINCT FROM sens
                   OR (det IN ('envelope', 'envelope_sql') AND coalesce(m.params ->> 'zone', 'UTC')
                       IS DISTINCT FROM perfmon.setting('anomaly_detection.timezone') #>> '{}'))
      INTO newest, refitted
      FROM perfmon.anomaly_models AS m WHERE m.current AND m.detector = det;
    IF NOT force AND NOT refitted
       AND newest > now() - make_interval(hours => perfmon.setting('anomaly_detection.retrain_interval_hours')::int) THEN
        RETURN jsonb_build_object('detector', det, 'skipped', format('models trained at %s are not due', newest));
    END IF;
    zone := perfmon.anomaly_timezone();  -- checked when used: it reads pg_timezone_names
    IF det = 'envelope_sql' THEN
        result := perfmon.train_anomaly_models_sql(since, until, sens, zone);
        -- The SQL envelope's read keeps the finite values only: the others are read apart.
        non_finite := perfmon.anomaly_non_finite_skipped(since, until, 'training');
    ELSE
        -- The PL/Python training reads the values that are not finite with the others.
        EXECUTE 'SELECT perfmon.train_anomaly_models_py($1, $2, $3, $4, $5)' INTO result
            USING det, since, until, sens, zone;
        non_finite := perfmon.anomaly_non_finite_warning(result -> 'non_finite', 'training');
        result := result - 'non_finite';
    END IF;
    -- Retention of anomalous samples and closed episodes.
    DELETE FROM perfmon.anomaly_samples AS a
     WHERE a.ts < now() - make_interval(days => perfmon.setting('collection.retention_days')::int);
    DELETE FROM perfmon.anomaly_episodes AS e
     WHERE e.ended_at < now() - make_interval(days => perfmon.setting('collection.retention_days')::int);
    -- Keep the current model and the one before it.
    DELETE FROM perfmon.anomaly_models AS m
     WHERE NOT m.current AND EXISTS (
        SELECT FROM perfmon.anomaly_models AS n
         WHERE n.detector = m.detector AND n.feature = m.feature AND n.series = m.series
           AND NOT n.current AND n.model_id > m.model_id);
    RETURN result || jsonb_build_object('detector', det, 'ms',
        round(extract(epoch FROM clock_timestamp() - started)::numeric * 1000, 1))
        || jsonb_strip_nulls(jsonb_build_object(
               'non_finite', non_finite,
               'settings_changed', CASE WHEN refitted AND NOT force THEN
                   'the models were fitted with another sensitivity or time zone' END));
END
$$;
COMMENT ON FUNCTION perfmon.train_anomaly_models(boolean) IS
    'Retrains the anomaly models of the detector in force on the training window when they are '
    'older than anomaly_detection.retrain_interval_hours, were fitted with another '
    'anomaly_detection.sensitivity or (envelopes) timezone, or force; where isolation_forest is '
    'configured, first tries importing scikit-learn (perfmon.anomaly_python_probe()), the envelope '
    'trained instead when it cannot; deletes the models of the series with no value in the window '
    '(perfmon.retire_anomaly_models()); returns {detector, models, ms}, '
    'settings_changed when that was why, retired: the current models deleted, '
    'and non_finite: the feature values skipped for not being finite numbers (NaN, infinities), also '
    'raised as a WARNING.';
