CREATE OR REPLACE FUNCTION perfmon.size_trends(kind text, since timestamptz)
RETURNS TABLE (object_id bigint, observations double precision, t_mean double precision,
               y_mean double precision, sxx double precision, sxy double precision, syy double precision,
               first_ts timestamptz, last_ts timestamptz, size_bytes bigint)
LANGUAGE sql STABLE
-- perfmon.forecasts and perfmon.storage_forecast call it for their readers, who may not
-- read the history tables themselves.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Compiling this plan costs more than running it (measured: bench/forecast_cost.py).
SET jit = off
AS $$
    -- The moments of each object's size (kind d = database, r = table) since a time, for
    -- perfmon.linear_trend(). perfmon.size_history keeps a size only when it changed, so
    -- a size holds until the next one - and the last one until the latest sizes run
    -- (perfmon.samples): every run in between observed it unchanged. The runs are
    -- counted at collection.size_interval_seconds apart and summed in closed form, so
    -- a table that grew on Monday and stayed flat since is flat, not growing; a fit on
    -- the stored changes alone would see only Monday. Times in seconds before last_ts;
    -- objects without a change since `since` are flat and not listed.
    WITH cfg AS MATERIALIZED (
        SELECT perfmon.setting('collection.size_interval_seconds')::float8 AS step,
               coalesce((SELECT max(s.ts) FROM perfmon.samples AS s
                          WHERE s.server_id = 1 AND s.kind = 'sizes' AND s.ts > since),
                        (SELECT max(h.ts) FROM perfmon.size_history AS h
                          WHERE h.server_id = 1 AND h.kind = size_trends.kind::"char" AND h.ts > since)) AS last_run
    ), pts AS (
        SELECT h.object_id, h.ts, h.size_bytes FROM perfmon.size_history AS h
         WHERE h.server_id = 1 AND h.kind = size_trends.kind::"char" AND h.ts > since
    ), seg AS (
        -- Per stored size: t, seconds before the latest run; y, bytes above the object's
        -- first size (precision); k, the runs that saw it: at t, t + step, ... until the
        -- next change, or the latest run. Computed here once per row (the sums below
        -- use each several times).
        SELECT p.object_id, p.ts, p.size_bytes, lead(p.ts) OVER w IS NULL AS last,
               first_value(p.size_bytes) OVER w AS y0,
               date_part('epoch', p.ts - cfg.last_run) AS t,
               (p.size_bytes - first_value(p.size_bytes) OVER w)::float8 AS y,
               CASE WHEN lead(p.ts) OVER w IS NULL
                    THEN 1 + greatest(round(date_part('epoch', cfg.last_run - p.ts) / cfg.step), 0)
                    ELSE greatest(1, round(date_part('epoch', lead(p.ts) OVER w - p.ts) / cfg.step))
               END AS k,
               cfg.step, cfg.last_run
          FROM pts AS p, cfg
        WINDOW w AS (PARTITION BY p.object_id ORDER BY p.ts)
    ), obs AS (
        SELECT s.*, s.k * s.t + s.step * s.k * (s.k - 1) / 2 AS kt,
               s.k * s.t * s.t + s.t * s.step * s.k * (s.k - 1)
                 + s.step * s.step * (s.k - 1) * s.k * (2 * s.k - 1) / 6 AS ktt
          FROM seg AS s
    ), sums AS (
        SELECT o.object_id, min(o.y0) AS y0, min(o.ts) AS first_change, max(o.ts) AS last_change,
               min(o.last_run) AS last_run, min(o.step) AS step,
               max(o.size_bytes) FILTER (WHERE o.last) AS last_size,
               sum(o.k) AS s0, sum(o.kt) AS s1, sum(o.ktt) AS s2,
               sum(o.k * o.y) AS y1, sum(o.k * o.y * o.y) AS y2, sum(o.y * o.kt) AS ty
          FROM obs AS o GROUP BY o.object_id
    ), carried AS (
        -- The size the object had when the window opened, seen by the runs from then
        -- until its first change in the window: c runs at tc, tc + step, ...
        SELECT s.*, b.size_bytes - s.y0 AS yc, extract(epoch FROM since - s.last_run)::float8 AS tc,
               coalesce(greatest(round(extract(epoch FROM s.first_change - since)::float8 / s.step), 0), 0) AS c
          FROM sums AS s
          LEFT JOIN LATERAL (SELECT h.size_bytes FROM perfmon.size_history AS h
                              WHERE h.server_id = 1 AND h.kind = size_trends.kind::"char"
                                AND h.object_id = s.object_id AND h.ts <= since
                              ORDER BY h.ts DESC LIMIT 1) AS b ON true
    ), total AS (
        SELECT c.object_id, c.y0, c.last_size, c.last_run,
               CASE WHEN c.yc IS NOT NULL AND c.c > 0 THEN since ELSE c.first_change END AS first_ts,
               greatest(c.last_change, c.last_run) AS end_ts,
               c.s0 + w.c AS s0, c.s1 + w.ct AS s1,
               c.s2 + w.c * c.tc * c.tc + c.tc * c.step * w.c * (w.c - 1)
                    + c.step * c.step * (w.c - 1) * w.c * (2 * w.c - 1) / 6 AS s2,
               c.y1 + w.c * w.yc AS y1, c.y2 + w.c * w.yc * w.yc AS y2, c.ty + w.yc * w.ct AS ty
          FROM carried AS c
         CROSS JOIN LATERAL (SELECT CASE WHEN c.yc IS NULL THEN 0 ELSE c.c END AS c,
                                    coalesce(c.yc, 0)::float8 AS yc,
                                    CASE WHEN c.yc IS NULL THEN 0
                                         ELSE c.c * c.tc + c.step * c.c * (c.c - 1) / 2 END AS ct) AS w
    )
    -- times re-based on the object's own end: its last change, or the latest run after it
    SELECT t.object_id, t.s0, t.s1 / t.s0 - extract(epoch FROM t.end_ts - t.last_run)::float8,
           t.y0 + t.y1 / t.s0,
           greatest(t.s2 - t.s1 ^ 2 / t.s0, 0), t.ty - t.s1 * t.y1 / t.s0, greatest(t.y2 - t.y1 ^ 2 / t.s0, 0),
           t.first_ts, t.end_ts, t.last_size
      FROM total AS t
$$;
COMMENT ON FUNCTION perfmon.size_trends(text, timestamptz) IS
    'Per object of perfmon.size_history (kind d = database, r = table) that changed since a time: '
    'the sizes runs that observed it (observations), and the moments of size (bytes) over time '
    '(seconds before last_ts, the latest run) that perfmon.linear_trend() fits; each stored size '
    'counts once per run until the next change.';
