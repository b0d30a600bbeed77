CREATE OR REPLACE FUNCTION perfmon.train_anomaly_models_sql(since timestamptz, until timestamptz,
                                                            sensitivity text DEFAULT 'medium',
                                                            zone text DEFAULT 'UTC')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The planner takes perfmon.anomaly_feature_values() for 1,000 rows where a 28-day window
-- holds millions, and joined every sample to the profiles in a nested loop (10 minutes
-- and more for 50 metrics, against 34 s hashed).
SET enable_nestloop = off
AS $$
-- The envelope fitted in SQL (no PL/Python): per feature and series, the range of
-- the values and of their moving mean over mean_window (36) samples, and the
-- 5th-95th percentile spread of each; for a metric that follows a daily or weekly
-- profile, its hourly medians (hours on the clocks of zone) and the range of the
-- moving mean of the departures from them. The same model as
-- perfmon_py.anomaly.fit_envelope; the settings per sensitivity are
-- perfmon.anomaly_settings().
DECLARE
    settings jsonb := perfmon.anomaly_settings(sensitivity, 'envelope_sql');
    margin float8 := (settings ->> 'margin')::float8;
    mean_margin float8 := (settings ->> 'mean_margin')::float8;
    mean_window int := (settings ->> 'mean_window')::int;
    season_min_periods float8 := (settings ->> 'season_min_periods')::float8;
    season_min_explained float8 := (settings ->> 'season_min_explained')::float8;
    n int;
    retired jsonb;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS perfmon_new_models (LIKE perfmon.anomaly_models) ON COMMIT DROP;
    TRUNCATE perfmon_new_models;
    CREATE TEMP TABLE IF NOT EXISTS perfmon_seen_values (feature text, series text) ON COMMIT DROP;
    TRUNCATE perfmon_seen_values;
    WITH v AS MATERIALIZED (
        SELECT f.feature, f.series, f.ts, f.value,
               perfmon.hour_of_day(f.ts, zone) AS hour, perfmon.hour_of_week(f.ts, zone) AS week_hour,
               avg(f.value) OVER (PARTITION BY f.feature, f.series ORDER BY f.ts
                                  ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
        FROM perfmon.anomaly_feature_values(since, until) AS f
    ), grouped AS (
        SELECT v.feature, v.series, count(*) AS n, min(v.ts) AS t0, max(v.ts) AS t1,
               min(v.value) AS vmin, max(v.value) AS vmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY v.value) AS vq,
               min(v.mean) AS mmin, max(v.mean) AS mmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY v.mean) AS mq,
               var_pop(v.value) AS variance, count(DISTINCT v.hour) AS hours,
               count(DISTINCT v.week_hour) AS week_hours
        FROM v GROUP BY v.feature, v.series
    ), seen AS (
        -- Every series with a value in the window, enough to train on or not: the others'
        -- models are retired below.
        INSERT INTO perfmon_seen_values SELECT grouped.feature, grouped.series FROM grouped
    ), g AS (
        SELECT * FROM grouped
         WHERE perfmon.enough_to_train(grouped.n, extract(epoch FROM grouped.t1 - grouped.t0),
                                       extract(epoch FROM until - since))
    ), profile AS (
        -- The daily and the weekly profile: the median of each hour of the day (bins 24),
        -- and of the week (bins 168), on the clocks of zone.
        SELECT v.feature, v.series, 24 AS bins, v.hour AS bin,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY v.value) AS median
        FROM v GROUP BY v.feature, v.series, v.hour
        UNION ALL
        SELECT v.feature, v.series, 168, v.week_hour, percentile_cont(0.5) WITHIN GROUP (ORDER BY v.value)
        FROM v GROUP BY v.feature, v.series, v.week_hour
    ), departure AS (
        -- Each sample's departures from both profiles and their moving means, in one pass.
        SELECT v.feature, v.series, v.value - d.median AS day, v.value - w.median AS week,
               avg(v.value - d.median) OVER m AS day_mean, avg(v.value - w.median) OVER m AS week_mean
        FROM v JOIN profile AS d ON d.feature = v.feature AND d.series = v.series AND d.bins = 24 AND d.bin = v.hour
               JOIN profile AS w ON w.feature = v.feature AND w.series = v.series AND w.bins = 168
                                AND w.bin = v.week_hour
        WINDOW m AS (PARTITION BY v.feature, v.series ORDER BY v.ts
                     ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW)
    ), season AS (
        -- Aggregated per series before meeting g (a join of every sample with g is slow),
        -- both profiles in one pass, then a row per profile.
        SELECT a.feature, a.series, x.bins, x.variance, x.smin, x.smax, x.sq
        FROM (SELECT d.feature, d.series, var_pop(d.day) AS day_var, min(d.day_mean) AS day_min,
                     max(d.day_mean) AS day_max,
                     percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY d.day_mean) AS day_q,
                     var_pop(d.week) AS week_var, min(d.week_mean) AS week_min, max(d.week_mean) AS week_max,
                     percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY d.week_mean) AS week_q
              FROM departure AS d GROUP BY d.feature, d.series) AS a
        CROSS JOIN LATERAL (VALUES (24, a.day_var, a.day_min, a.day_max, a.day_q),
                                   (168, a.week_var, a.week_min, a.week_max, a.week_q))
                        AS x (bins, variance, smin, smax, sq)
    ), follows AS (
        -- A profile exists where the window spans season_min_periods of its periods
        -- (days or weeks) and holds each of its hours; it follows when it explains enough
        -- of the variance, the weekly one only when it also explains that share of what a
        -- daily one that follows leaves (perfmon_py.anomaly.fit_season).
        SELECT DISTINCT ON (g.feature, g.series)
               g.feature, g.series, 1 - s.variance / nullif(g.variance, 0) AS explained, s.smin, s.smax, s.sq,
               (SELECT jsonb_agg(p.median ORDER BY p.bin) FROM profile AS p
                 WHERE p.feature = s.feature AND p.series = s.series AND p.bins = s.bins) AS profile
        FROM g JOIN season AS s USING (feature, series)
        LEFT JOIN season AS daily ON daily.feature = s.feature AND daily.series = s.series AND daily.bins = 24
                                 AND g.hours = 24 AND 1 - daily.variance / nullif(g.variance, 0) >= season_min_explained
        WHERE g.variance > 0 AND CASE s.bins WHEN 24 THEN g.hours ELSE g.week_hours END = s.bins
          AND extract(epoch FROM g.t1 - g.t0) >= season_min_periods * s.bins * 3600
          AND 1 - s.variance / nullif(g.variance, 0) >= season_min_explained
          AND (s.bins = 24 OR daily.feature IS NULL OR s.variance <= (1 - season_min_explained) * daily.variance)
        ORDER BY g.feature, g.series, s.bins DESC
    )
    INSERT INTO perfmon_new_models (model_id, detector, feature, series, trained_at, trained_from,
                                    trained_to, samples, params, model, current)
    SELECT 0, 'envelope_sql', g.feature, g.series, now(), g.t0, g.t1, g.n,
           jsonb_build_object('sensitivity', sensitivity, 'margin', margin, 'mean_margin', mean_margin,
                              'zone', zone),
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
    -- The models of the series with no value in the window (a host removed, a feature
    -- disabled) would stay current for ever.
    SELECT perfmon.retire_anomaly_models(ARRAY['envelope_sql'], array_agg(s.feature), array_agg(s.series))
      INTO retired FROM perfmon_seen_values AS s;
    DROP TABLE perfmon_seen_values;
    RETURN jsonb_build_object('models', n)
        || CASE WHEN retired <> '[]' THEN jsonb_build_object('retired', retired) ELSE '{}' END;
END
$$;
COMMENT ON FUNCTION perfmon.train_anomaly_models_sql(timestamptz, timestamptz, text, text) IS
    'Fits the SQL envelope (detector envelope_sql) of every anomaly feature with enough samples '
    '(perfmon.enough_to_train) between two times and makes those models current; zone: the time '
    'zone of the daily profile; deletes the models of the series with no value between them '
    '(perfmon.retire_anomaly_models()); returns {models}, and retired: the current models deleted.';
