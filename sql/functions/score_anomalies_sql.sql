CREATE OR REPLACE FUNCTION perfmon.score_anomalies_sql(lookback_s integer)
RETURNS SETOF perfmon.anomaly_score
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
-- Window functions over CTEs: estimates that can cross the JIT thresholds, as in
-- perfmon.anomaly_backtest_sql, where compiling took 4.8 s of a 5 s run.
SET jit = off
AS $$
    -- The envelope scored in SQL with the current envelope_sql models: how far the
    -- value, or its moving mean over 36 samples, is beyond the training range, in
    -- margins of the robust spread (1 = at the threshold); for a model with a daily or
    -- weekly profile, also how far the moving mean of the departures from its hourly medians is
    -- beyond their training range. The samples perfmon.anomaly_scoring_values() calls
    -- scorable; those it reads before them give the oldest of a catch-up their 36 samples of
    -- moving mean like the newest. A sample with fewer (the first after a gap in sampling)
    -- is scored on its value alone.
    WITH m AS (
        -- A model stored before models kept their zone has none: its hours are UTC.
        SELECT a.model_id, a.feature, a.series, mj.j, coalesce(mj.j #>> '{season,zone}', 'UTC') AS zone,
               (SELECT array_agg(p.median::float8 ORDER BY p.hour)
                  FROM jsonb_array_elements_text(mj.j #> '{season,profile}') WITH ORDINALITY AS p (median, hour))
                   AS profile
          FROM perfmon.anomaly_models AS a
          CROSS JOIN LATERAL (SELECT convert_from(a.model, 'UTF8')::jsonb AS j) AS mj
         WHERE a.current AND a.detector = 'envelope_sql'
    ), f AS (
        -- Each sample with its hour's median in the model's daily or weekly profile (NULL without one).
        SELECT f.feature, f.series, f.ts, f.value, f.scorable, m.model_id,
               m.profile[CASE WHEN cardinality(m.profile) = 168 THEN perfmon.hour_of_week(f.ts, m.zone)
                          ELSE perfmon.hour_of_day(f.ts, m.zone) END + 1] AS usual
          FROM perfmon.anomaly_scoring_values('envelope_sql', lookback_s) AS f
          JOIN m USING (feature, series)
    ), v AS (
        SELECT f.*, avg(f.value) OVER w AS mean, avg(f.value - f.usual) OVER w AS season_mean,
               count(*) OVER w AS in_mean
          FROM f
        WINDOW w AS (PARTITION BY f.feature, f.series ORDER BY f.ts ROWS BETWEEN 35 PRECEDING AND CURRENT ROW)
    ), s AS (
        SELECT v.*, m.j AS j,
               greatest(v.value - (m.j #>> '{value,max}')::float8, (m.j #>> '{value,min}')::float8 - v.value, 0)
                 / (m.j #>> '{value,spread}')::float8 / (m.j ->> 'margin')::float8 AS s_value,
               CASE WHEN v.in_mean = 36 THEN
                   greatest(v.mean - (m.j #>> '{mean,max}')::float8, (m.j #>> '{mean,min}')::float8 - v.mean, 0)
                     / (m.j #>> '{mean,spread}')::float8 / (m.j ->> 'mean_margin')::float8 END AS s_mean,
               CASE WHEN v.in_mean = 36 THEN
                   greatest(v.season_mean - (m.j #>> '{season,mean,max}')::float8,
                            (m.j #>> '{season,mean,min}')::float8 - v.season_mean, 0)
                     / (m.j #>> '{season,mean,spread}')::float8 / (m.j ->> 'mean_margin')::float8 END AS s_season
          FROM v JOIN m USING (model_id)
         WHERE v.scorable
    ), c AS (
        SELECT s.*, greatest(s.s_value, s.s_mean, s.s_season) AS score,
               CASE WHEN s.s_value >= coalesce(greatest(s.s_mean, s.s_season), 0) THEN 'value'
                    WHEN s.s_mean >= s.s_season OR s.s_season IS NULL THEN 'moving mean'
                    ELSE 'time of day' END AS channel
          FROM s
    )
    -- greatest() passes over the NULL of a model without a profile, and of a moving
    -- mean over fewer than 36 samples. The expected range is the value's, or for the
    -- time-of-day channel the hour's: its median, moved as far as the departures'
    -- moving mean may go.
    SELECT 'envelope_sql', c.feature, c.series, c.ts, c.score, c.value,
           CASE WHEN c.channel = 'time of day'
                THEN c.usual + (c.j #>> '{season,mean,min}')::float8
                     - (c.j ->> 'mean_margin')::float8 * (c.j #>> '{season,mean,spread}')::float8
                ELSE (c.j #>> '{value,min}')::float8 - (c.j ->> 'margin')::float8 * (c.j #>> '{value,spread}')::float8
           END,
           CASE WHEN c.channel = 'time of day'
                THEN c.usual + (c.j #>> '{season,mean,max}')::float8
                     + (c.j ->> 'mean_margin')::float8 * (c.j #>> '{season,mean,spread}')::float8
                ELSE (c.j #>> '{value,max}')::float8 + (c.j ->> 'margin')::float8 * (c.j #>> '{value,spread}')::float8
           END,
           jsonb_build_array(jsonb_build_object('feature', c.channel, 'score', round(c.score::numeric, 3))),
           c.model_id
      FROM c
$$;
COMMENT ON FUNCTION perfmon.score_anomalies_sql(integer) IS
    'Scores of the feature samples of the last lookback_s seconds not scored yet, with the SQL '
    'envelope models (the detector without PL/Python).';
