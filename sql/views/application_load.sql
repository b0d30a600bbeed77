CREATE OR REPLACE VIEW perfmon.application_load AS
-- Database load by application_name over the last hour, as average active
-- sessions (AAS): the sessions an application had running at each sample,
-- averaged over the samples. On CPU = active and not waiting on anything.
WITH win AS (
    SELECT count(*) AS samples FROM perfmon.samples AS s
    WHERE s.server_id = 1 AND s.kind = 'sample' AND s.ts > now() - interval '1 hour'
),
per_sample AS (
    SELECT h.app_id, h.ts,
           sum(h.sessions) FILTER (WHERE h.state = 'active') AS active,
           sum(h.sessions) FILTER (WHERE h.state = 'active' AND h.wait_event_type IS NULL) AS on_cpu,
           sum(h.sessions) FILTER (WHERE h.wait_event_type = 'Lock') AS lock_waiting,
           sum(h.sessions) FILTER (WHERE h.wait_event_type = 'IO') AS io_waiting,
           sum(h.sessions) FILTER (WHERE h.state LIKE 'idle in transaction%') AS idle_in_xact
    FROM perfmon.activity_history AS h
    WHERE h.server_id = 1 AND h.ts > now() - interval '1 hour'
    GROUP BY h.app_id, h.ts
),
per_app AS (
    SELECT p.app_id,
           coalesce(sum(p.active), 0) AS active, coalesce(sum(p.on_cpu), 0) AS on_cpu,
           coalesce(sum(p.lock_waiting), 0) AS lock_waiting, coalesce(sum(p.io_waiting), 0) AS io_waiting,
           coalesce(sum(p.idle_in_xact), 0) AS idle_in_xact, max(p.active) AS peak_active
    FROM per_sample AS p
    GROUP BY p.app_id
),
blocking AS (
    SELECT l.blocking_app_id AS app_id, count(*) AS blocked
    FROM perfmon.lock_history AS l
    WHERE l.server_id = 1 AND l.ts > now() - interval '1 hour'
    GROUP BY l.blocking_app_id
)
SELECT coalesce(ap.name, '(no application_name)') AS application,
       round(a.active::numeric / nullif(w.samples, 0), 2)::float8 AS avg_active_sessions,
       round(a.on_cpu::numeric / nullif(w.samples, 0), 2)::float8 AS avg_on_cpu_sessions,
       round(a.lock_waiting::numeric / nullif(w.samples, 0), 2)::float8 AS avg_lock_waiting_sessions,
       round(a.io_waiting::numeric / nullif(w.samples, 0), 2)::float8 AS avg_io_waiting_sessions,
       round(a.idle_in_xact::numeric / nullif(w.samples, 0), 2)::float8 AS avg_idle_in_transaction_sessions,
       coalesce(a.peak_active, 0) AS peak_active_sessions,
       round(100.0 * a.active / nullif(sum(a.active) OVER (), 0), 1)::float8 AS share_of_load_pct,
       coalesce(b.blocked, 0) AS sessions_blocked_by_it,
       w.samples
FROM per_app AS a
CROSS JOIN win AS w
LEFT JOIN perfmon.applications AS ap ON ap.app_id = a.app_id
LEFT JOIN blocking AS b ON b.app_id IS NOT DISTINCT FROM a.app_id
ORDER BY a.active DESC, application;
COMMENT ON VIEW perfmon.application_load IS
    'Database load per application_name over the last hour, from the samples of '
    'pg_stat_activity: average active sessions (AAS) and how many of them were on CPU, waiting '
    'on locks or on I/O, idle in transaction, the peak, the share of all active sessions in '
    'percent, and how many sampled sessions it blocked (lock_history) - which agent is hurting '
    'performance. Name agents'' connections with application_name to see them here.';
