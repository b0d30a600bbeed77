CREATE OR REPLACE VIEW perfmon.forecasts AS
-- Linear trends over anomaly_detection.forecast_window_days (perfmon.linear_trend): eta
-- is when the fitted line reaches the limit (growing trends only), eta_earliest and
-- eta_latest its 95% interval (eta_latest NULL = unbounded).
WITH cfg AS MATERIALIZED (
    SELECT now() - make_interval(days => perfmon.setting('anomaly_detection.forecast_window_days')::int) AS since
), xid_reset AS MATERIALIZED (
    -- when the XID age last dropped (a freeze resets it); computed once, not per row
    SELECT coalesce(max(d.ts), '-infinity') AS ts
      FROM (SELECT x.ts, x.max_xid_age < lag(x.max_xid_age) OVER (ORDER BY x.ts) AS dropped
              FROM perfmon.server_history AS x, cfg
             WHERE x.server_id = 1 AND x.ts > cfg.since) AS d
     WHERE d.dropped
), disk_total AS (
    -- the latest size of each mount
    SELECT DISTINCT ON (s.labels) s.labels, t.value AS lim
      FROM perfmon.metric_samples AS t
      JOIN perfmon.metric_series AS s ON s.series_id = t.series_id
      JOIN perfmon.metrics AS mt ON mt.metric_id = s.metric_id, cfg
     WHERE mt.name = 'host.disk.total_bytes' AND t.ts > cfg.since
     ORDER BY s.labels, t.ts DESC
), pts AS (
    -- disk used per mount of each host (host metrics), limit = the mount's size; the host
    -- names the target, or the / of every host sending samples would be one series
    SELECT 'disk_full'::text AS forecast,
           coalesce(s.labels ->> 'mount', s.labels::text) || coalesce(' on ' || (s.labels ->> 'host'), '')
               AS target,
           'bytes'::text AS unit,
           m.ts, m.value AS y, dt.lim
      FROM perfmon.metric_samples AS m
      JOIN perfmon.metric_series AS s USING (series_id)
      JOIN perfmon.metrics AS mt USING (metric_id)
      LEFT JOIN disk_total AS dt ON dt.labels = s.labels, cfg
     WHERE mt.name = 'host.disk.used_bytes' AND m.ts > cfg.since
    UNION ALL
    -- XID age since its last drop (a freeze resets it), limit = where the server stops
    -- assigning XIDs (2^31 - 3 million)
    SELECT 'xid_wraparound', 'oldest database XID age', 'xids', h.ts, h.max_xid_age, 2147483648 - 3000000
      FROM perfmon.server_history AS h, cfg, xid_reset
     WHERE h.server_id = 1 AND h.ts > cfg.since AND h.max_xid_age IS NOT NULL
       AND h.ts >= xid_reset.ts
    UNION ALL
    -- hourly (UTC hours, whatever the reader's time zone) peak connections, limit =
    -- max_connections less the reserved slots
    SELECT 'connection_exhaustion', 'client connections', 'count', date_trunc('hour', h.ts, 'UTC'),
           max(h.sessions_total),
           max(h.max_connections) - current_setting('superuser_reserved_connections')::int
      FROM perfmon.server_history AS h, cfg
     WHERE h.server_id = 1 AND h.ts > cfg.since
     GROUP BY date_trunc('hour', h.ts, 'UTC')
), moments AS (
    SELECT p.forecast, p.target, p.unit, count(p.y)::float8 AS n, min(p.ts) AS first_ts, max(p.ts) AS last_ts,
           max(p.lim) AS limit_value, (array_agg(p.y ORDER BY p.ts DESC))[1] AS current_value,
           regr_avgx(p.y, date_part('epoch', p.ts)) - date_part('epoch', max(p.ts)) AS t_mean,
           regr_avgy(p.y, date_part('epoch', p.ts)) AS y_mean,
           regr_sxx(p.y, date_part('epoch', p.ts)) AS sxx,
           regr_sxy(p.y, date_part('epoch', p.ts)) AS sxy,
           regr_syy(p.y, date_part('epoch', p.ts)) AS syy
      FROM pts AS p GROUP BY p.forecast, p.target, p.unit
    UNION ALL
    -- table (with indexes and TOAST) size from its sizes runs, limit = twice its size now;
    -- an empty table has no such limit (twice nothing), so no forecast until it holds data
    SELECT 'table_growth', format('%I.%I', r.schema_name, r.rel_name), 'bytes', z.observations, z.first_ts, z.last_ts,
           2 * z.size_bytes, z.size_bytes, z.t_mean, z.y_mean, z.sxx, z.sxy, z.syy
      FROM cfg, perfmon.size_trends('r', cfg.since) AS z
      JOIN perfmon.relations AS r ON r.rel_id = z.object_id
     -- a table of this database that was dropped grows no more (its history stays for retention)
     WHERE z.size_bytes > 0
       AND (r.datid IS DISTINCT FROM (SELECT oid FROM pg_database WHERE datname = current_database())
            OR EXISTS (SELECT FROM pg_class AS c WHERE c.oid = r.relid))
), fit AS (
    SELECT m.*, lt.*
      FROM moments AS m
     CROSS JOIN LATERAL perfmon.linear_trend(m.n, m.t_mean, m.y_mean, m.sxx, m.sxy, m.syy, m.limit_value,
                                             extract(epoch FROM m.last_ts - m.first_ts)) AS lt
)
SELECT f.forecast, f.target, f.unit, f.current_value, f.limit_value,
       round((f.slope * 86400)::numeric, 3) AS growth_per_day,
       round((extract(epoch FROM f.last_ts - now()) + f.eta_s)::numeric / 86400, 2) AS days_left,
       f.last_ts + make_interval(secs => f.eta_s) AS eta,
       f.last_ts + make_interval(secs => f.earliest_s) AS eta_earliest,
       f.last_ts + make_interval(secs => f.latest_s) AS eta_latest,
       f.n::bigint AS based_on_points,
       CASE WHEN f.current_value >= f.limit_value THEN 'critical'
            WHEN f.trend = 'growing' AND f.last_ts + make_interval(secs => f.earliest_s) < now() + interval '7 days'
                THEN 'critical'
            WHEN f.trend = 'growing' AND f.last_ts + make_interval(secs => f.earliest_s) < now() + interval '30 days'
                THEN 'warning'
            ELSE 'ok' END AS severity,
       f.trend,
       CASE f.trend
           WHEN 'not enough history' THEN format(
               'not enough history for a trend: %s observations over %s (it needs 3 over 10 minutes)',
               f.n, justify_interval(date_trunc('second', f.last_ts - f.first_ts)))
           WHEN 'flat' THEN 'no significant growth (its 95% interval holds zero): no ETA'
           WHEN 'shrinking' THEN 'shrinking: the limit is not in sight'
           ELSE format('growing by %s %s a day over %s', round((f.slope * 86400)::numeric, 1), f.unit,
                       justify_interval(date_trunc('second', f.last_ts - f.first_ts)))
       END AS note
FROM fit AS f;
COMMENT ON VIEW perfmon.forecasts IS
    'Predictive maintenance: for disk_full (per mount, bytes), xid_wraparound (XID age against the '
    '2^31 - 3M stop), connection_exhaustion (hourly peak against max_connections less reserved) and '
    'table_growth (bytes from the sizes runs, limit = twice the current size; tables that still exist), '
    'the linear trend over '
    'anomaly_detection.forecast_window_days: growth_per_day (unit per day), trend (growing, flat, '
    'shrinking, not enough history), eta and days_left (days from now) where the trend is growing, and eta_earliest/eta_latest '
    'its 95% interval (NULL eta_latest = unbounded). severity: critical at the limit or under 7 days at '
    'the earliest of a growing trend, warning under 30; note says why there is no ETA.';
