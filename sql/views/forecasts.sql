CREATE OR REPLACE VIEW perfmon.forecasts AS
-- Linear trends over anomaly_detection.training_window_days with a ~95% interval on the
-- slope (2 standard errors): eta is when the trend reaches the limit, eta_earliest and
-- eta_latest bound it (eta_latest NULL = not within the interval's reach).
WITH cfg AS (
    SELECT now() - make_interval(days => perfmon.setting('anomaly_detection.training_window_days')::int) AS since
), pts AS (
    -- disk used per mount (host metrics), limit = the mount's size
    SELECT 'disk_full'::text AS forecast, coalesce(s.labels ->> 'mount', s.labels::text) AS target, 'bytes'::text AS unit,
           m.ts, m.value AS y,
           (SELECT t.value FROM perfmon.metric_samples AS t
              JOIN perfmon.metric_series AS ts2 ON ts2.series_id = t.series_id
              JOIN perfmon.metrics AS mt2 ON mt2.metric_id = ts2.metric_id
             WHERE mt2.name = 'host.disk.total_bytes' AND ts2.labels = s.labels
             ORDER BY t.ts DESC LIMIT 1) AS lim
      FROM perfmon.metric_samples AS m
      JOIN perfmon.metric_series AS s USING (series_id)
      JOIN perfmon.metrics AS mt USING (metric_id), cfg
     WHERE mt.name = 'host.disk.used_bytes' AND m.ts > cfg.since
    UNION ALL
    -- XID age since its last drop (a freeze resets it), limit = where the server stops
    -- assigning XIDs (2^31 - 3 million)
    SELECT 'xid_wraparound', 'oldest database XID age', 'xids', h.ts, h.max_xid_age, 2147483648 - 3000000
      FROM perfmon.server_history AS h, cfg
     WHERE h.server_id = 1 AND h.ts > cfg.since AND h.max_xid_age IS NOT NULL
       AND h.ts >= coalesce((SELECT max(d.ts) FROM (
                SELECT x.ts, x.max_xid_age < lag(x.max_xid_age) OVER (ORDER BY x.ts) AS dropped
                  FROM perfmon.server_history AS x WHERE x.server_id = 1 AND x.ts > cfg.since) AS d
             WHERE d.dropped), '-infinity')
    UNION ALL
    -- hourly peak connections, limit = max_connections less the reserved slots
    SELECT 'connection_exhaustion', 'client connections', 'count', date_trunc('hour', h.ts),
           max(h.sessions_total),
           max(h.max_connections) - current_setting('superuser_reserved_connections')::int
      FROM perfmon.server_history AS h, cfg
     WHERE h.server_id = 1 AND h.ts > cfg.since
     GROUP BY date_trunc('hour', h.ts)
    UNION ALL
    -- table (with indexes and TOAST) size, limit = twice its current size
    SELECT 'table_growth', r.schema_name || '.' || r.rel_name, 'bytes', z.ts, z.size_bytes,
           2 * (SELECT z2.size_bytes FROM perfmon.size_history AS z2
                 WHERE z2.kind = 'r' AND z2.object_id = z.object_id ORDER BY z2.ts DESC LIMIT 1)
      FROM perfmon.size_history AS z
      JOIN perfmon.relations AS r ON r.rel_id = z.object_id, cfg
     WHERE z.server_id = 1 AND z.kind = 'r' AND z.ts > cfg.since
), fit AS (
    SELECT p.forecast, p.target, p.unit, count(*) AS points, max(p.ts) AS last_ts, max(p.lim) AS limit_value,
           regr_slope(p.y, extract(epoch FROM p.ts)) AS slope,
           regr_intercept(p.y, extract(epoch FROM p.ts)) AS intercept,
           sqrt(greatest(regr_syy(p.y, extract(epoch FROM p.ts))
                         - regr_slope(p.y, extract(epoch FROM p.ts)) * regr_sxy(p.y, extract(epoch FROM p.ts)), 0)
                / nullif(count(*) - 2, 0) / nullif(regr_sxx(p.y, extract(epoch FROM p.ts)), 0)) AS slope_se,
           (array_agg(p.y ORDER BY p.ts DESC))[1] AS current_value
      FROM pts AS p GROUP BY p.forecast, p.target, p.unit
    HAVING count(*) >= 3 AND max(p.ts) - min(p.ts) >= interval '10 minutes'
), eta AS (
    SELECT f.*, f.limit_value - f.current_value AS headroom,
           f.slope * 86400 AS growth_per_day,
           CASE WHEN f.slope > 0 THEN (f.limit_value - f.current_value) / f.slope END AS s_mid,
           CASE WHEN f.slope + 2 * coalesce(f.slope_se, 0) > 0
                THEN (f.limit_value - f.current_value) / (f.slope + 2 * coalesce(f.slope_se, 0)) END AS s_early,
           CASE WHEN f.slope - 2 * coalesce(f.slope_se, 0) > 0
                THEN (f.limit_value - f.current_value) / (f.slope - 2 * coalesce(f.slope_se, 0)) END AS s_late
      FROM fit AS f
)
SELECT e.forecast, e.target, e.unit, e.current_value, e.limit_value,
       round(e.growth_per_day::numeric, 3) AS growth_per_day,
       round((e.s_mid / 86400)::numeric, 2) AS days_left,
       e.last_ts + make_interval(secs => e.s_mid) AS eta,
       e.last_ts + make_interval(secs => e.s_early) AS eta_earliest,
       e.last_ts + make_interval(secs => e.s_late) AS eta_latest,
       e.points AS based_on_points,
       CASE WHEN e.s_early < 7 * 86400 OR e.headroom <= 0 THEN 'critical'
            WHEN e.s_early < 30 * 86400 THEN 'warning' ELSE 'ok' END AS severity
FROM eta AS e;
COMMENT ON VIEW perfmon.forecasts IS
    'Predictive maintenance: for disk_full (per mount, bytes), xid_wraparound (XID age against the '
    '2^31 - 3M stop), connection_exhaustion (hourly peak against max_connections less reserved) and '
    'table_growth (bytes, limit = twice the current size), the linear trend over the training window '
    '(growth_per_day in unit), days_left and eta at that trend, and eta_earliest/eta_latest from a '
    '~95% interval on the slope (NULL eta = not growing). severity: critical under 7 days at the '
    'earliest, warning under 30.';
