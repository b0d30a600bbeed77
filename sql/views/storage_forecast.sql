CREATE OR REPLACE VIEW perfmon.storage_forecast AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.storage_warning_days')::int AS warn_days,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           perfmon.setting('system.thresholds.disk_pct.warning')::numeric AS disk_warn_pct,
           perfmon.setting('system.thresholds.disk_pct.critical')::numeric AS disk_crit_pct
),
growth AS (
    -- Bytes per day: the least-squares slope of each database's size over the window
    -- (sizes are stored when they change), summed over the databases.
    SELECT sum(g.slope) * 86400 AS bytes_per_day, min(g.first_ts) AS since, sum(g.points) AS points
    FROM (
        SELECT h.object_id, regr_slope(h.size_bytes, extract(epoch FROM h.ts)) AS slope,
               min(h.ts) AS first_ts, count(*) AS points
        FROM perfmon.size_history AS h, cfg
        WHERE h.server_id = 1 AND h.kind = 'd' AND h.ts > now() - make_interval(days => cfg.window_days)
        GROUP BY h.object_id
        HAVING count(*) >= 2 AND max(h.ts) - min(h.ts) >= interval '1 minute'
    ) AS g
),
now_size AS (
    SELECT sum(pg_database_size(d.oid)) AS bytes
    FROM pg_database AS d WHERE d.datallowconn AND has_database_privilege(d.oid, 'CONNECT')
),
f AS (
    SELECT hc.data_directory, hc.disk_total_bytes, hc.disk_free_bytes, hc.ts AS disk_read_at,
           now_size.bytes AS databases_bytes, growth.bytes_per_day, growth.since, growth.points,
           round(100.0 * (hc.disk_total_bytes - hc.disk_free_bytes) / nullif(hc.disk_total_bytes, 0), 1)
               AS disk_used_pct,
           CASE WHEN growth.bytes_per_day > 0 AND hc.disk_free_bytes IS NOT NULL
                THEN round((hc.disk_free_bytes / growth.bytes_per_day)::numeric, 1) END AS days_until_full
    FROM now_size
    CROSS JOIN growth
    LEFT JOIN perfmon.host_capacity AS hc ON hc.server_id = 1
)
SELECT coalesce(f.data_directory, '(data directory)') AS data_directory,
       f.disk_total_bytes, f.disk_free_bytes, f.disk_used_pct, f.databases_bytes,
       round(f.bytes_per_day::numeric) AS growth_bytes_per_day, f.days_until_full,
       f.disk_free_bytes IS NOT NULL AS free_space_known, f.disk_read_at,
       'disk of the data directory'::text AS target,
       CASE WHEN f.days_until_full < 7 OR f.disk_used_pct >= cfg.disk_crit_pct THEN 'critical'
            WHEN f.days_until_full < cfg.warn_days OR f.disk_used_pct >= cfg.disk_warn_pct THEN 'warning'
            ELSE 'ok' END AS severity,
       format('the disk holding %s is %s%% full (%s free); the databases grow by %s a day, so it is '
              'full in %s days', f.data_directory, f.disk_used_pct, pg_size_pretty(f.disk_free_bytes),
              pg_size_pretty(f.bytes_per_day::bigint), coalesce(f.days_until_full::text, 'no foreseeable number of'))
           AS finding,
       jsonb_build_object('disk_total_bytes', f.disk_total_bytes, 'disk_free_bytes', f.disk_free_bytes,
                          'databases_bytes', f.databases_bytes,
                          'growth_bytes_per_day', round(f.bytes_per_day::numeric),
                          'growth_measured_since', f.since, 'size_samples', f.points) AS evidence,
       '-- add disk space, or reclaim it: see perfmon.table_bloat, perfmon.unused_indexes, '
       'perfmon.replication_advice (slots holding WAL)'::text AS apply_sql,
       f.days_until_full AS benefit,
       'days of headroom'::text AS benefit_unit,
       CASE WHEN f.points >= 10 THEN 'high' ELSE 'medium' END AS confidence
FROM f, cfg;
COMMENT ON VIEW perfmon.storage_forecast IS
    'Days until the data directory''s disk is full (days_until_full): its free bytes (read by '
    'perfmon.sample_host_capacity(), PL/Python; free_space_known = false without it) divided by '
    'the growth in bytes per day of all databases, fitted to perfmon.size_history over '
    'optimization.advice_window_days. Also disk_used_pct (%). Findings: full within '
    'optimization.storage_warning_days (critical within 7) or above system.thresholds.disk_pct.';
