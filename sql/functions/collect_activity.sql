CREATE OR REPLACE FUNCTION perfmon.collect_activity(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Sessions and locks, as they are at the sample (gauges, not deltas):
--  * perfmon.activity_history gets the client sessions that were not idle,
--    counted by database, application, state and wait event type;
--  * perfmon.lock_history gets each blocking pair.
-- pgperfmon's own backend is left out of every count.
DECLARE
    n int;
BEGIN
    INSERT INTO perfmon.applications (name)
    SELECT DISTINCT a.application_name FROM pg_stat_activity AS a
     WHERE a.backend_type = 'client backend' AND a.application_name <> ''
       AND NOT EXISTS (SELECT FROM perfmon.applications AS p WHERE p.name = a.application_name)
    ON CONFLICT DO NOTHING;

    WITH a AS MATERIALIZED (
        SELECT a.*,
               -- pg_blocking_pids() takes the lock manager's locks: ask only the waiters.
               a.wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(a.pid)) > 0 AS blocked
        FROM pg_stat_activity AS a
        WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
    ),
    groups AS (
        INSERT INTO perfmon.activity_history (server_id, ts, datid, app_id, state, wait_event_type, sessions)
        SELECT 1, sample_ts, a.datid, p.app_id, a.state, a.wait_event_type, count(*)
        FROM a
        LEFT JOIN perfmon.applications AS p ON p.name = a.application_name
        WHERE a.state IS DISTINCT FROM 'idle'
        GROUP BY a.datid, p.app_id, a.state, a.wait_event_type
        RETURNING 1
    ),
    pairs AS (
        INSERT INTO perfmon.lock_history (server_id, ts, blocked_pid, blocking_pid, datid,
            blocked_app_id, blocking_app_id, wait_s, blocked_query_id, blocking_state,
            locktype, relation)
        SELECT 1, sample_ts, w.pid, b.pid, w.datid, wa.app_id, ba.app_id,
               extract(epoch FROM sample_ts - w.state_change), w.query_id, b.state,
               l.locktype, l.relation_name
        FROM a AS w
        CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
        JOIN pg_stat_activity AS b ON b.pid = bp.pid
        LEFT JOIN LATERAL (
            SELECT lk.locktype,
                   (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class AS c
                      JOIN pg_namespace AS n ON n.oid = c.relnamespace
                     WHERE c.oid = lk.relation) AS relation_name
            FROM pg_locks AS lk
            WHERE lk.pid = w.pid AND NOT lk.granted LIMIT 1
        ) AS l ON true
        LEFT JOIN perfmon.applications AS wa ON wa.name = w.application_name
        LEFT JOIN perfmon.applications AS ba ON ba.name = b.application_name
        WHERE w.blocked
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM groups) + (SELECT count(*) FROM pairs)
      INTO n;
    RETURN ROW(n, 0, NULL)::perfmon.collect_result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_activity(timestamptz) IS
    'Collection stage: non-idle sessions and blocking pairs into perfmon.activity_history '
    'and perfmon.lock_history.';
