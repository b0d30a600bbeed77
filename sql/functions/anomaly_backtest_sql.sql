CREATE OR REPLACE FUNCTION perfmon.anomaly_backtest_sql(series_id integer, margin double precision,
                                                        mean_margin double precision, mean_window integer,
                                                        season_min_periods double precision,
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
-- Its CTEs' estimates are far below the rows they hold (a fit's window holds thousands
-- of points): equality joins must hash, not loop; the range joins still loop.
-- NYC taxi's 10,320 points took 140 s with two joins looped, 22 s hashed.
SET enable_nestloop = off
AS $$
    -- Walk-forward backtest of the SQL envelope on one stored series: refits on a
    -- clock, every refit_s seconds from the first point with enough earlier points
    -- (perfmon.enough_to_train), each on the window_s seconds before it; a point is
    -- scored by the latest fit before it. The schedule of perfmon_py.anomaly.walk_forward.
    -- margin, mean_margin, mean_window and the profiles' conditions (season_*):
    -- perfmon.anomaly_settings(); zone: the time zone of the profiles' hours. Samples
    -- with the same timestamp are taken in the order of their values, as the PL/Python
    -- twin does.
    WITH s AS (
        SELECT m.ts, m.value, row_number() OVER (ORDER BY m.ts, m.value) AS rn,
               perfmon.hour_of_day(m.ts, zone) AS hour, perfmon.hour_of_week(m.ts, zone) AS week_hour,
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
        SELECT f.fit_ts, s.ts, s.value, s.rn, s.hour, s.week_hour,
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
               count(DISTINCT t.week_hour) AS week_hours, extract(epoch FROM max(t.ts) - min(t.ts)) AS span_s
          FROM training AS t
         GROUP BY t.fit_ts
        HAVING perfmon.enough_to_train(count(*), extract(epoch FROM max(t.ts) - min(t.ts)), window_s)
    ), candidate AS (
        -- The profiles each fit can have (perfmon_py.anomaly.fit_season): the daily one
        -- (24 hours) over season_min_periods days, the weekly one (168 hours) over as
        -- many weeks, each holding every hour.
        SELECT st.fit_ts, b.bins
          FROM stats AS st CROSS JOIN (VALUES (24, 86400), (168, 604800)) AS b (bins, period_s)
         WHERE st.variance > 0 AND st.span_s >= season_min_periods * b.period_s
           AND CASE b.bins WHEN 24 THEN st.hours ELSE st.week_hours END = b.bins
    ), profile AS MATERIALIZED (
        -- Each profile's medians per hour (of the day, bins 24, or of the week, bins 168)
        -- on the clocks of zone; one query per profile, on its own bin, so that joins hash.
        SELECT t.fit_ts, c.bins, t.hour AS bin, percentile_cont(0.5) WITHIN GROUP (ORDER BY t.value) AS median
          FROM training AS t JOIN candidate AS c ON c.fit_ts = t.fit_ts AND c.bins = 24
         GROUP BY t.fit_ts, c.bins, t.hour
        UNION ALL
        SELECT t.fit_ts, c.bins, t.week_hour, percentile_cont(0.5) WITHIN GROUP (ORDER BY t.value)
          FROM training AS t JOIN candidate AS c ON c.fit_ts = t.fit_ts AND c.bins = 168
         GROUP BY t.fit_ts, c.bins, t.week_hour
    ), departures AS MATERIALIZED (
        -- The range of the moving mean of the departures from each profile, within the
        -- window: both profiles in one pass (a fit has a weekly one only if also a daily
        -- one), then a row per profile.
        SELECT a.fit_ts, x.bins, x.variance, x.smin, x.smax, x.sq
          FROM (SELECT d.fit_ts, var_pop(d.day) AS day_var, min(d.day_mean) AS day_min,
                       max(d.day_mean) AS day_max,
                       percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY d.day_mean) AS day_q,
                       var_pop(d.week) AS week_var, min(d.week_mean) AS week_min, max(d.week_mean) AS week_max,
                       percentile_cont(ARRAY[0.05, 0.95]) WITHIN GROUP (ORDER BY d.week_mean) AS week_q
                  FROM (SELECT t.fit_ts, t.value - pd.median AS day, t.value - pw.median AS week,
                               avg(t.value - pd.median) OVER m AS day_mean, avg(t.value - pw.median) OVER m AS week_mean
                          FROM training AS t
                          JOIN profile AS pd ON pd.fit_ts = t.fit_ts AND pd.bins = 24 AND pd.bin = t.hour
                          LEFT JOIN profile AS pw ON pw.fit_ts = t.fit_ts AND pw.bins = 168 AND pw.bin = t.week_hour
                        WINDOW m AS (PARTITION BY t.fit_ts ORDER BY t.rn
                                     ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW)) AS d
                 GROUP BY d.fit_ts) AS a
         CROSS JOIN LATERAL (VALUES (24, a.day_var, a.day_min, a.day_max, a.day_q),
                                    (168, a.week_var, a.week_min, a.week_max, a.week_q))
                         AS x (bins, variance, smin, smax, sq)
         WHERE x.variance IS NOT NULL
    ), season AS MATERIALIZED (
        -- A fit's profile: one that explains enough of the variance; the weekly one only
        -- when it also explains that share of what a daily one that does leaves.
        SELECT DISTINCT ON (d.fit_ts) d.*
          FROM departures AS d
          JOIN stats AS st USING (fit_ts)
          LEFT JOIN departures AS daily ON daily.fit_ts = d.fit_ts AND daily.bins = 24
                                       AND 1 - daily.variance / nullif(st.variance, 0) >= season_min_explained
         WHERE 1 - d.variance / nullif(st.variance, 0) >= season_min_explained
           AND (d.bins = 24 OR daily.fit_ts IS NULL OR d.variance <= (1 - season_min_explained) * daily.variance)
         ORDER BY d.fit_ts, d.bins DESC
    ), fit_of AS (
        -- The fit that scores each point: the latest before it.
        SELECT s.*, st.*
          FROM s
          LEFT JOIN LATERAL (SELECT * FROM stats WHERE stats.fit_ts <= s.ts ORDER BY stats.fit_ts DESC LIMIT 1) AS st ON true
    ), segment AS (
        SELECT f.fit_ts, season.bins, min(f.rn) AS first_rn, max(f.rn) AS last_rn
          FROM fit_of AS f JOIN season USING (fit_ts) GROUP BY f.fit_ts, season.bins
    ), season_mean AS (
        -- The moving mean of the departures from the profile of the fit that scores a
        -- point, over the point and the mean_window - 1 points before it.
        SELECT d.fit_ts, d.rn, d.mean
          FROM (SELECT x.fit_ts, x.first_rn, x.rn,
                       avg(x.value - p.median) OVER (PARTITION BY x.fit_ts ORDER BY x.rn
                                                     ROWS BETWEEN mean_window - 1 PRECEDING AND CURRENT ROW) AS mean
                  -- Each point's bin first, so that the profile joins on equalities (hashed).
                  FROM (SELECT g.fit_ts, g.bins, g.first_rn, s.rn, s.value,
                               CASE g.bins WHEN 24 THEN s.hour ELSE s.week_hour END AS bin
                          FROM segment AS g
                          JOIN s ON s.rn BETWEEN g.first_rn - mean_window + 1 AND g.last_rn
                        OFFSET 0) AS x
                  JOIN profile AS p ON p.fit_ts = x.fit_ts AND p.bins = x.bins AND p.bin = x.bin) AS d
         WHERE d.rn >= d.first_rn
    ), scored AS (
        -- The moving means score a point once mean_window points end at it.
        SELECT f.ts, f.value, f.rn,
               coalesce(greatest(
                   greatest(f.value - f.vmax, f.vmin - f.value, 0)
                     / greatest(f.vq[3] - f.vq[1], abs(f.vq[2]) * 0.01, 1e-9) / margin,
                   CASE WHEN f.rn >= mean_window THEN greatest(f.mean - f.mmax, f.mmin - f.mean, 0)
                     / greatest(f.mq[3] - f.mq[1], abs(f.mq[2]) * 0.01, 1e-9) / mean_margin END,
                   CASE WHEN f.rn >= mean_window THEN greatest(sm.mean - se.smax, se.smin - sm.mean, 0)
                     / greatest(se.sq[2] - se.sq[1], abs(f.vq[2]) * 0.01, 1e-9) / mean_margin END), 0) AS score
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
