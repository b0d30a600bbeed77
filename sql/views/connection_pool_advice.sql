CREATE OR REPLACE VIEW perfmon.connection_pool_advice AS
WITH cfg AS (
    SELECT perfmon.setting('database.performance_thresholds.connection_usage_pct')::numeric AS warn_pct,
           perfmon.setting('optimization.advice_window_days')::int AS window_days,
           current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int AS reserved
),
live AS (
    SELECT count(*) AS total, count(*) FILTER (WHERE state = 'active') AS active
    FROM pg_stat_activity WHERE backend_type = 'client backend'
),
h AS (
    SELECT count(*) AS samples,
           max(h.sessions_total) AS peak_total,
           max(h.sessions_active) AS peak_active,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY h.sessions_active) AS p95_active,
           max(h.sessions_idle_in_xact) AS peak_idle_in_xact,
           avg(h.sessions_idle) AS avg_idle
    FROM perfmon.server_history AS h, cfg
    WHERE h.server_id = 1 AND h.ts > now() - make_interval(days => cfg.window_days)
),
a AS (
    SELECT cfg.*, h.samples, greatest(h.peak_total, live.total) AS peak_total,
           greatest(h.peak_active, live.active) AS peak_active,
           round(h.p95_active::numeric, 1) AS p95_active, h.peak_idle_in_xact,
           round(h.avg_idle::numeric, 1) AS avg_idle, live.total AS connections_now,
           -- enough server connections for the peak of concurrently active sessions, + 25%
           greatest(2, ceil(greatest(h.peak_active, live.active) * 1.25))::int AS suggested_pool_size
    FROM cfg, h, live
)
SELECT a.max_connections, a.reserved AS superuser_reserved_connections, a.connections_now,
       a.peak_total AS peak_connections, a.peak_active AS peak_active_sessions, a.p95_active AS p95_active_sessions,
       a.peak_idle_in_xact AS peak_idle_in_transaction, a.avg_idle AS avg_idle_sessions,
       round(100.0 * a.peak_total / a.max_connections, 1) AS peak_connections_pct,
       a.suggested_pool_size, a.samples,
       'connections'::text AS target,
       CASE WHEN 100.0 * a.peak_total / a.max_connections >= greatest(a.warn_pct, 95) THEN 'critical'
            WHEN 100.0 * a.peak_total / a.max_connections >= a.warn_pct THEN 'warning'
            WHEN a.peak_total >= 20 AND a.peak_total > 4 * a.suggested_pool_size THEN 'info'
            ELSE 'ok' END AS severity,
       format('connections peaked at %s of max_connections %s (%s%%) while at most %s sessions were '
              'active at once: a pooler (PgBouncer, transaction mode) with a pool of %s server '
              'connections would serve this load', a.peak_total, a.max_connections,
              round(100.0 * a.peak_total / a.max_connections, 1), a.peak_active,
              a.suggested_pool_size) AS finding,
       jsonb_build_object('peak_connections', a.peak_total, 'peak_active_sessions', a.peak_active,
                          'p95_active_sessions', a.p95_active, 'max_connections', a.max_connections,
                          'avg_idle_sessions', a.avg_idle, 'samples', a.samples) AS evidence,
       format('-- pgbouncer.ini: pool_mode = transaction, default_pool_size = %s', a.suggested_pool_size)
           AS apply_sql,
       (a.peak_total - a.suggested_pool_size)::numeric AS benefit,
       'connections saved'::text AS benefit_unit,
       CASE WHEN a.samples >= 60 THEN 'high' ELSE 'medium' END AS confidence
FROM a;
COMMENT ON VIEW perfmon.connection_pool_advice IS
    'Client connections against max_connections over optimization.advice_window_days (peak and '
    'now, peak_connections_pct in %), the peak and 95th percentile of concurrently active '
    'sessions, and a pool size (server connections) that serves that peak with 25% headroom. '
    'Findings: peak at database.performance_thresholds.connection_usage_pct of max_connections, '
    'or mostly idle connections (peak > 4x the pool size). Live counts: perfmon.connection_usage.';
