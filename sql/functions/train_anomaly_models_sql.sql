CREATE OR REPLACE FUNCTION perfmon.train_anomaly_models_sql(since timestamptz, until timestamptz,
                                                            sensitivity text DEFAULT 'medium')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The envelope fitted in SQL (no PL/Python): per feature and series, the range of
-- the values and of their moving mean over mean_window (36) samples, and the
-- 5th-95th percentile spread of each. The same model as perfmon_py.anomaly.fit_envelope;
-- the settings per sensitivity are perfmon.anomaly_settings().
DECLARE
    settings jsonb := perfmon.anomaly_settings(sensitivity, 'envelope_sql');
    margin float8 := (settings ->> 'margin')::float8;
    mean_margin float8 := (settings ->> 'mean_margin')::float8;
    mean_window int := (settings ->> 'mean_window')::int;
    n int;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS perfmon_new_models (LIKE perfmon.anomaly_models) ON COMMIT DROP;
    TRUNCATE perfmon_new_models;
    WITH v AS (
        SELECT f.feature, f.series, f.ts, f.value,
               avg(f.value) OVER (PARTITION BY f.feature, f.series ORDER BY f.ts
                                  ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
        FROM perfmon.anomaly_feature_values(since, until) AS f
    ), g AS (
        SELECT v.feature, v.series, count(*) AS n, min(v.ts) AS t0, max(v.ts) AS t1,
               min(v.value) AS vmin, max(v.value) AS vmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY v.value) AS vq,
               min(v.mean) AS mmin, max(v.mean) AS mmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY v.mean) AS mq
        FROM v GROUP BY v.feature, v.series
        HAVING perfmon.enough_to_train(count(*), extract(epoch FROM max(v.ts) - min(v.ts)),
                                       extract(epoch FROM until - since))
    )
    INSERT INTO perfmon_new_models (model_id, detector, feature, series, trained_at, trained_from,
                                    trained_to, samples, params, model, current)
    SELECT 0, 'envelope_sql', g.feature, g.series, now(), g.t0, g.t1, g.n,
           jsonb_build_object('sensitivity', sensitivity, 'margin', margin, 'mean_margin', mean_margin),
           convert_to(jsonb_build_object(
               'algorithm', 'envelope', 'n', g.n, 'margin', margin, 'mean_margin', mean_margin,
               'mean_window', mean_window,
               'value', jsonb_build_object('min', g.vmin, 'max', g.vmax,
                        'spread', greatest(g.vq[3] - g.vq[1], abs(g.vq[2]) * 0.01, 1e-9)),
               'mean', jsonb_build_object('min', g.mmin, 'max', g.mmax,
                        'spread', greatest(g.mq[3] - g.mq[1], abs(g.mq[2]) * 0.01, 1e-9)))::text, 'UTF8'),
           true
    FROM g;
    UPDATE perfmon.anomaly_models AS m SET current = false
      FROM perfmon_new_models AS n
     WHERE m.current AND m.detector = n.detector AND m.feature = n.feature AND m.series = n.series;
    INSERT INTO perfmon.anomaly_models (detector, feature, series, trained_at, trained_from, trained_to,
                                        samples, params, model, current)
    SELECT detector, feature, series, trained_at, trained_from, trained_to, samples, params, model, true
      FROM perfmon_new_models;
    GET DIAGNOSTICS n = ROW_COUNT;
    DROP TABLE perfmon_new_models;
    RETURN jsonb_build_object('models', n);
END
$$;
COMMENT ON FUNCTION perfmon.train_anomaly_models_sql(timestamptz, timestamptz, text) IS
    'Fits the SQL envelope (detector envelope_sql) of every anomaly feature with enough samples '
    '(perfmon.enough_to_train) between two times and makes those models current; returns {models}.';
