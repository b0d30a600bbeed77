CREATE OR REPLACE VIEW perfmon.connection_usage AS
WITH live AS (
    SELECT * FROM perfmon.live_sessions()
),
rows AS (
    SELECT now() AS ts, true AS live, total::int, active::int, idle::int,
           idle_in_transaction::int, waiting::int,
           current_setting('max_connections')::int AS max_connections
    FROM live
    UNION ALL
    SELECT h.ts, false, h.sessions_total, h.sessions_active, h.sessions_idle,
           h.sessions_idle_in_xact, h.sessions_waiting, h.max_connections
    FROM perfmon.server_history AS h
    WHERE h.ts > now() - interval '24 hours'
)
SELECT ts, live, total, active, idle, idle_in_transaction, waiting, max_connections,
       round(100.0 * total / max_connections, 1)               AS total_pct,
       round(100.0 * active / max_connections, 1)              AS active_pct,
       round(100.0 * idle_in_transaction / max_connections, 1) AS idle_in_transaction_pct,
       round(100.0 * waiting / max_connections, 1)             AS waiting_pct
FROM rows
ORDER BY ts DESC;
COMMENT ON VIEW perfmon.connection_usage IS
    'Client connections now (live = true, read from pg_stat_activity) and at each sample of the '
    'last 24 hours: total, active, idle, idle in transaction, waiting on a lock, as counts and as '
    '% of max_connections.';
