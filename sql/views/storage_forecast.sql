CREATE OR REPLACE VIEW perfmon.storage_forecast AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.storage_warning_days')::int AS warn_days,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           perfmon.setting('system.thresholds.disk_pct.warning')::numeric AS disk_warn_pct,
           perfmon.setting('system.thresholds.disk_pct.critical')::numeric AS disk_crit_pct
),
growth AS (
    -- Bytes per day: the least-squares slope of each database's size over the window,
    -- from its sizes runs (perfmon.size_trends: a size is stored when it changed and
    -- holds until the next), summed over the databases; its standard error adds up
    -- as independent errors do.
    SELECT sum(t.slope) * 86400 AS bytes_per_day, sqrt(sum(t.slope_se ^ 2)) * 86400 AS se_per_day,
           perfmon.student_t_975(sum(z.observations - 2)) AS k,
           min(z.first_ts) AS since, sum(z.observations)::bigint AS points
    FROM cfg, perfmon.size_trends('d', now() - make_interval(days => cfg.window_days)) AS z
    CROSS JOIN LATERAL perfmon.linear_trend(z.observations, z.t_mean, z.y_mean, z.sxx, z.sxy, z.syy, NULL,
                                            extract(epoch FROM z.last_ts - z.first_ts)) AS t
    WHERE t.trend <> 'not enough history'
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
           CASE WHEN growth.points IS NULL THEN 'not enough history'
                WHEN growth.bytes_per_day - growth.k * growth.se_per_day > 0 THEN 'growing'
                WHEN growth.bytes_per_day + growth.k * growth.se_per_day < 0 THEN 'shrinking'
                ELSE 'flat' END AS trend,
           growth.bytes_per_day + growth.k * growth.se_per_day AS fastest,
           growth.bytes_per_day - growth.k * growth.se_per_day AS slowest
    FROM now_size
    CROSS JOIN growth
    LEFT JOIN perfmon.host_capacity AS hc ON hc.server_id = 1
),
d AS (
    -- The free space is read, not fitted: only the growth is uncertain.
    SELECT f.*,
           CASE WHEN f.trend = 'growing' AND f.disk_free_bytes IS NOT NULL
                THEN round((f.disk_free_bytes / f.bytes_per_day)::numeric, 1) END AS days_until_full,
           CASE WHEN f.trend IN ('growing', 'flat') AND f.fastest > 0
                THEN round((f.disk_free_bytes / f.fastest)::numeric, 1) END AS days_until_full_earliest,
           CASE WHEN f.trend = 'growing'
                THEN round((f.disk_free_bytes / f.slowest)::numeric, 1) END AS days_until_full_latest
    FROM f
)
SELECT coalesce(f.data_directory, '(data directory)') AS data_directory,
       f.disk_total_bytes, f.disk_free_bytes, f.disk_used_pct, f.databases_bytes,
       round(f.bytes_per_day::numeric) AS growth_bytes_per_day, f.days_until_full,
       f.disk_free_bytes IS NOT NULL AS free_space_known, f.disk_read_at,
       'disk of the data directory'::text AS target,
       CASE WHEN f.days_until_full_earliest < 7 AND f.trend = 'growing' OR f.disk_used_pct >= cfg.disk_crit_pct
                THEN 'critical'
            WHEN f.days_until_full_earliest < cfg.warn_days AND f.trend = 'growing'
                 OR f.disk_used_pct >= cfg.disk_warn_pct THEN 'warning'
            ELSE 'ok' END AS severity,
       format('%s; %s', CASE WHEN f.disk_free_bytes IS NULL
                             THEN 'the free space of the data directory''s disk is unknown '
                                  '(perfmon.sample_host_capacity() needs PL/Python)'
                             ELSE format('the disk holding %s is %s%% full (%s free)', f.data_directory,
                                         f.disk_used_pct, pg_size_pretty(f.disk_free_bytes)) END,
              CASE f.trend
                  WHEN 'growing' THEN format('the databases grow by %s a day, so it is full in %s days '
                                             '(95%%: %s to %s)', pg_size_pretty(f.bytes_per_day::bigint),
                                             f.days_until_full, f.days_until_full_earliest,
                                             coalesce(f.days_until_full_latest::text, 'never'))
                  WHEN 'not enough history' THEN 'there is not enough size history for a trend yet '
                                                 '(3 sizes runs over 10 minutes)'
                  ELSE format('the databases do not grow significantly (%s a day), so no date is foreseen',
                              pg_size_pretty(f.bytes_per_day::bigint)) END)
           AS finding,
       jsonb_build_object('disk_total_bytes', f.disk_total_bytes, 'disk_free_bytes', f.disk_free_bytes,
                          'databases_bytes', f.databases_bytes,
                          'growth_bytes_per_day', round(f.bytes_per_day::numeric),
                          'growth_measured_since', f.since, 'size_samples', f.points,
                          'trend', f.trend, 'days_until_full_earliest', f.days_until_full_earliest,
                          'days_until_full_latest', f.days_until_full_latest) AS evidence,
       '-- add disk space, or reclaim it: see perfmon.table_bloat, perfmon.unused_indexes, '
       'perfmon.replication_advice (slots holding WAL)'::text AS apply_sql,
       f.days_until_full AS benefit,
       'days of headroom'::text AS benefit_unit,
       CASE WHEN f.points >= 10 THEN 'high' ELSE 'medium' END AS confidence,
       f.trend, f.days_until_full_earliest, f.days_until_full_latest
FROM d AS f, cfg;
COMMENT ON VIEW perfmon.storage_forecast IS
    'Days until the data directory''s disk is full (days_until_full): its free bytes (read by '
    'perfmon.sample_host_capacity(), PL/Python; free_space_known = false without it) divided by '
    'the growth in bytes per day of all databases, fitted to their sizes runs (perfmon.size_trends) '
    'over optimization.advice_window_days; days_until_full_earliest/_latest: its 95% interval '
    '(NULL latest = unbounded); trend: growing, flat, shrinking or not enough history (no days then). '
    'Also disk_used_pct (%). Findings: full within optimization.storage_warning_days at the earliest '
    '(critical within 7) or above system.thresholds.disk_pct.';
