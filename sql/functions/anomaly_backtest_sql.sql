CREATE OR REPLACE FUNCTION perfmon.anomaly_backtest_sql(series_id integer, margin double precision,
                                                        mean_margin double precision, mean_window integer,
                                                        season_min_days double precision,
                                                        season_min_explained double precision, zone text,
                                                        window_s double precision, refit_s double precision,
                                                        quiet integer)
RETURNS TABLE (ts timestamptz, value double precision, score double precision, anomalous boolean,
               is_anomaly boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
-- Its estimates (window functions over CTEs) can cross the JIT thresholds, whose
-- compilation then costs seconds: 4.8 s of a 5 s backtest (0.3 s without).
SET jit = off
AS $$
    -- Walk-forward backtest of the SQL envelope on one stored series: refits on a
    -- clock, every refit_s seconds from the first point with enough earlier points
    -- (perfmon.enough_to_train), each on the window_s seconds before it; a point is
    -- scored by the latest fit before it. The schedule of perfmon_py.anomaly.walk_forward.
    -- margin, mean_margin, mean_window and the daily profile's conditions (season_*):
    -- perfmon.anomaly_settings(); zone: the time zone of the profile's hours. Samples with the same timestamp are taken in the order
    -- of their values, as the PL/Python twin does.
    WITH s AS (
        SELECT m.ts, m.value, row_number() OVER (ORDER BY m.ts, m.value) AS rn,
               perfmon.hour_of_day(m.ts, zone) AS hour,
               avg(m.value) OVER (ORDER BY m.ts, m.value ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean,
               sum(m.value) OVER (ORDER BY m.ts, m.value ROWS UNBOUNDED PRECEDING) AS running_sum,
               count(*) OVER w - 1 AS earlier, min(m.ts) OVER w AS window_start,
               lag(m.ts) OVER (ORDER BY m.ts) AS prev_ts
          FROM perfmon.metric_samples AS m WHERE m.series_id = anomaly_backtest_sql.series_id
        WINDOW w AS (ORDER BY m.ts RANGE BETWEEN make_interval(secs => window_s) PRECEDING AND CURRENT ROW)
    ), first_fit AS (
        SELECT min(s.ts) AS t0 FROM s
         WHERE perfmon.enough_to_train(s.earlier, extract(epoch FROM s.prev_ts - s.window_start), window_s)
    ), fits AS (
        SELECT first_fit.t0 + make_interval(secs => g * refit_s) AS fit_ts
          FROM first_fit, generate_series(0, floor(extract(epoch FROM (SELECT max(ts) FROM s) - first_fit.t0) / refit_s)::int) AS g
    ), training AS (
        -- Each fit's points, with their moving means taken within its window only, as
        -- a model trained on that window sees them (perfmon.train_anomaly_models_sql).
        -- The first mean_window - 1 points of the window average fewer points.
        SELECT f.fit_ts, s.ts, s.value, s.rn, s.hour,
               CASE WHEN s.rn - mean_window + 1 >= w.rn THEN s.mean
                    ELSE (s.running_sum - w.sum_before) / (s.rn - w.rn + 1) END AS mean
          FROM fits AS f
          CROSS JOIN LATERAL (
                SELECT s0.rn, s0.running_sum - s0.value AS sum_before FROM s AS s0
                 WHERE s0.ts >= f.fit_ts - make_interval(secs => window_s) ORDER BY s0.rn LIMIT 1) AS w
          JOIN s ON s.ts < f.fit_ts AND s.ts >= f.fit_ts - make_interval(secs => window_s)
    ), stats AS MATERIALIZED (
        SELECT t.fit_ts, min(t.value) AS vmin, max(t.value) AS vmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY t.value) AS vq,
               min(t.mean) AS mmin, max(t.mean) AS mmax,
               percentile_cont(ARRAY[0.05, 0.5, 0.95]) WITHIN GROUP (ORDER BY t.mean) AS mq,
               var_pop(t.value) AS variance, count(DISTINCT t.hour) AS hours,
               extract(epoch FROM max(t.ts) - min(t.ts)) AS span_s
          FROM training AS t
         GROUP BY t.fit_ts
        HAVING perfmon.enough_to_train(count(*), extract(epoch FROM max(t.ts) - min(t.ts)), window_s)
    ), profile AS MATERIALIZED (
        -- Each fit's daily profile (the median of each hour of the day in zone), for the fits
        -- whose window is long enough and holds every hour (perfmon_py.anomaly.fit_season).
        SELECT t.fit_ts, t.hour, percentile_cont(0.5) WITHIN GROUP (ORDER BY t.value) AS median
          FROM training AS t JOIN stats AS st USING (fit_ts)
         WHERE st.hours = 24 AND st.variance > 0
           AND st.span_s >= season_min_days * 86400
         GROUP BY t.fit_ts, t.hour
    ), season AS MATERIALIZED (
        -- The range of the moving mean of the departures from the profile, within the
        -- window, where the profile explains enough of the variance.
        SELECT d.fit_ts, min(d.mean) AS smin, max(d.mean) AS smax,
               percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY d.mean) AS sq
          FROM (SELECT t.fit_ts, t.value - p.median AS d,
                       avg(t.value - p.median) OVER (PARTITION BY t.fit_ts ORDER BY t.rn
                                                     ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
                  FROM training AS t JOIN profile AS p USING (fit_ts, hour)) AS d
          JOIN stats AS st USING (fit_ts)
         GROUP BY d.fit_ts, st.variance
        HAVING 1 - var_pop(d.d) / st.variance >= season_min_explained
    ), fit_of AS (
        -- The fit that scores each point: the latest before it.
        SELECT s.*, st.*
          FROM s
          LEFT JOIN LATERAL (SELECT * FROM stats WHERE stats.fit_ts <= s.ts ORDER BY stats.fit_ts DESC LIMIT 1) AS st ON true
    ), segment AS (
        SELECT f.fit_ts, min(f.rn) AS first_rn, max(f.rn) AS last_rn
          FROM fit_of AS f JOIN season USING (fit_ts) GROUP BY f.fit_ts
    ), season_mean AS (
        -- The moving mean of the departures from the profile of the fit that scores a
        -- point, over the point and the mean_window - 1 points before it.
        SELECT d.fit_ts, d.rn, d.mean
          FROM (SELECT g.fit_ts, g.first_rn, s.rn,
                       avg(s.value - p.median) OVER (PARTITION BY g.fit_ts ORDER BY s.rn
                                                     ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
                  FROM segment AS g
                  JOIN s ON s.rn BETWEEN g.first_rn - mean_window + 1 AND g.last_rn
                  JOIN profile AS p ON p.fit_ts = g.fit_ts AND p.hour = s.hour) AS d
         WHERE d.rn >= d.first_rn
    ), scored AS (
        SELECT f.ts, f.value, f.rn,
               coalesce(greatest(
                   greatest(f.value - f.vmax, f.vmin - f.value, 0)
                     / greatest(f.vq[3] - f.vq[1], abs(f.vq[2]) * 0.01, 1e-9) / margin,
                   greatest(f.mean - f.mmax, f.mmin - f.mean, 0)
                     / greatest(f.mq[3] - f.mq[1], abs(f.mq[2]) * 0.01, 1e-9) / mean_margin,
                   greatest(sm.mean - se.smax, se.smin - sm.mean, 0)
                     / greatest(se.sq[2] - se.sq[1], abs(f.vq[2]) * 0.01, 1e-9) / mean_margin), 0) AS score
          FROM fit_of AS f
          LEFT JOIN season AS se ON se.fit_ts = f.fit_ts
          LEFT JOIN season_mean AS sm ON sm.fit_ts = f.fit_ts AND sm.rn = f.rn
    ), flagged AS (
        SELECT sc.*, sc.score >= 1 AS anomalous,
               lag(sc.rn) OVER (PARTITION BY sc.score >= 1 ORDER BY sc.rn) AS prev_rn
          FROM scored AS sc
    ), episodes AS (
        -- An episode starts at an anomalous sample with more than quiet samples since the
        -- last one; numbered by the starts so far.
        SELECT f.*, count(*) FILTER (WHERE f.anomalous AND (f.prev_rn IS NULL OR f.rn - f.prev_rn > quiet))
                        OVER (ORDER BY f.rn) AS episode
          FROM flagged AS f
    ), levels AS (
        SELECT e.*, CASE WHEN e.anomalous THEN perfmon.alert_level_rank(perfmon.anomaly_severity(
                        max(e.score) FILTER (WHERE e.anomalous) OVER running,
                        count(*) FILTER (WHERE e.anomalous) OVER running)) END AS level
          FROM episodes AS e
        WINDOW running AS (PARTITION BY e.episode ORDER BY e.rn)
    )
    -- Reported: an episode's first sample, and each sample at which its severity rises
    -- (it never falls within an episode: the previous anomalous sample's is the highest).
    SELECT l.ts, l.value, l.score, l.anomalous,
           l.anomalous AND l.level > coalesce(lag(l.level) OVER (PARTITION BY l.episode, l.anomalous
                                                                 ORDER BY l.rn), -1)
      FROM levels AS l ORDER BY l.rn
$$;
COMMENT ON FUNCTION perfmon.anomaly_backtest_sql(integer, double precision, double precision, integer, double precision,
                                      double precision, text, double precision, double precision, integer) IS
    'Walk-forward backtest of the SQL envelope (envelope_sql) on one stored series.';
