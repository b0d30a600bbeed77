CREATE OR REPLACE FUNCTION perfmon.train_anomaly_models_sql(since timestamptz, until timestamptz,
                                                            sensitivity text DEFAULT 'medium',
                                                            zone text DEFAULT 'UTC')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- The envelope fitted in SQL (no PL/Python): per feature and series, the range of
-- the values and of their moving mean over mean_window (36) samples, and the
-- 5th-95th percentile spread of each; for a metric that follows a daily profile, its
-- hourly medians (hours on the clocks of zone) and the range of the moving mean of the departures from them. The same
-- model as perfmon_py.anomaly.fit_envelope; the settings per sensitivity are
-- perfmon.anomaly_settings().
DECLARE
    settings jsonb := perfmon.anomaly_settings(sensitivity, 'envelope_sql');
    margin float8 := (settings ->> 'margin')::float8;
    mean_margin float8 := (settings ->> 'mean_margin')::float8;
    mean_window int := (settings ->> 'mean_window')::int;
    season_min_days float8 := (settings ->> 'season_min_days')::float8;
    season_min_explained float8 := (settings ->> 'season_min_explained')::float8;
    n int;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS perfmon_new_models (LIKE perfmon.anomaly_models) ON COMMIT DROP;
    TRUNCATE perfmon_new_models;
    WITH v AS MATERIALIZED (
        SELECT f.feature, f.series, f.ts, f.value,
               perfmon.hour_of_day(f.ts, zone) AS hour,
               avg(f.value) OVER (PARTITION BY f.feature, f.series ORDER BY f.ts
                                  ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
        FROM perfmon.anomaly_feature_values(since, until) AS f
    ), g AS (
        SELECT v.feature, v.series, count(*) AS n, min(v.ts) AS t0, max(v.ts) AS t1,
               min(v.value) AS vmin, max(v.value) AS vmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY v.value) AS vq,
               min(v.mean) AS mmin, max(v.mean) AS mmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY v.mean) AS mq,
               var_pop(v.value) AS variance, count(DISTINCT v.hour) AS hours
        FROM v GROUP BY v.feature, v.series
        HAVING perfmon.enough_to_train(count(*), extract(epoch FROM max(v.ts) - min(v.ts)),
                                       extract(epoch FROM until - since))
    ), profile AS (
        -- The daily profile: the median of each hour of the day (on the clocks of zone).
        SELECT v.feature, v.series, v.hour, percentile_cont(0.5) WITHIN GROUP (ORDER BY v.value) AS median
        FROM v GROUP BY v.feature, v.series, v.hour
    ), departure AS (
        SELECT v.feature, v.series, v.value - p.median AS d,
               avg(v.value - p.median) OVER (PARTITION BY v.feature, v.series ORDER BY v.ts
                                             ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
        FROM v JOIN profile AS p USING (feature, series, hour)
    ), season AS (
        -- Aggregated per series before meeting g: a join of every sample with g is slow.
        SELECT d.feature, d.series, var_pop(d.d) AS variance, min(d.mean) AS smin, max(d.mean) AS smax,
               percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY d.mean) AS sq,
               (SELECT jsonb_agg(p.median ORDER BY p.hour) FROM profile AS p
                 WHERE p.feature = d.feature AND p.series = d.series) AS profile
        FROM departure AS d GROUP BY d.feature, d.series
    ), follows AS (
        -- Only a metric whose profile explains enough of its variance, over enough days
        -- that hold every hour, has one (perfmon_py.anomaly.fit_season).
        SELECT g.feature, g.series, 1 - s.variance / g.variance AS explained, s.smin, s.smax, s.sq, s.profile
        FROM g JOIN season AS s USING (feature, series)
        WHERE g.hours = 24 AND g.variance > 0
          AND extract(epoch FROM g.t1 - g.t0) >= season_min_days * 86400
          AND 1 - s.variance / g.variance >= season_min_explained
    )
    INSERT INTO perfmon_new_models (model_id, detector, feature, series, trained_at, trained_from,
                                    trained_to, samples, params, model, current)
    SELECT 0, 'envelope_sql', g.feature, g.series, now(), g.t0, g.t1, g.n,
           jsonb_build_object('sensitivity', sensitivity, 'margin', margin, 'mean_margin', mean_margin),
           convert_to((jsonb_build_object(
               'algorithm', 'envelope', 'n', g.n, 'margin', margin, 'mean_margin', mean_margin,
               'mean_window', mean_window,
               'value', jsonb_build_object('min', g.vmin, 'max', g.vmax,
                        'spread', greatest(g.vq[3] - g.vq[1], abs(g.vq[2]) * 0.01, 1e-9)),
               'mean', jsonb_build_object('min', g.mmin, 'max', g.mmax,
                        'spread', greatest(g.mq[3] - g.mq[1], abs(g.mq[2]) * 0.01, 1e-9)))
               || CASE WHEN s.feature IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('season',
                      jsonb_build_object('profile', s.profile, 'explained', s.explained, 'zone', zone,
                          'mean', jsonb_build_object('min', s.smin, 'max', s.smax,
                              'spread', greatest(s.sq[2] - s.sq[1], abs(g.vq[2]) * 0.01, 1e-9)))) END)::text,
               'UTF8'),
           true
    FROM g LEFT JOIN follows AS s USING (feature, series);
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
COMMENT ON FUNCTION perfmon.train_anomaly_models_sql(timestamptz, timestamptz, text, text) IS
    'Fits the SQL envelope (detector envelope_sql) of every anomaly feature with enough samples '
    '(perfmon.enough_to_train) between two times and makes those models current; zone: the time '
    'zone of the daily profile; returns {models}.';
