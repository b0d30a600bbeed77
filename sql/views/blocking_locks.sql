CREATE OR REPLACE VIEW perfmon.blocking_locks AS
-- Query texts are live: a session running ALTER ROLE ... PASSWORD '...' that waits or
-- blocks would show its password. They go through the same masking as stored statement
-- texts (perfmon.redact_secrets()).
SELECT w.pid                                        AS blocked_pid,
       w.usename                                    AS blocked_user,
       w.application_name                           AS blocked_application,
       w.datname                                    AS database,
       round(extract(epoch FROM now() - w.state_change)::numeric, 1) AS waiting_s,
       l.locktype,
       l.mode                                       AS wanted_mode,
       l.relation_name                              AS relation,
       w.query_id                                   AS blocked_query_id,
       perfmon.redact_secrets(w.query)              AS blocked_query,
       b.pid                                        AS blocking_pid,
       b.usename                                    AS blocking_user,
       b.application_name                           AS blocking_application,
       b.state                                      AS blocking_state,
       round(extract(epoch FROM now() - b.xact_start)::numeric, 1) AS blocking_xact_age_s,
       b.query_id                                   AS blocking_query_id,
       perfmon.redact_secrets(b.query)              AS blocking_query,
       cardinality(pg_blocking_pids(b.pid)) = 0     AS blocking_is_root
FROM pg_stat_activity AS w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
JOIN pg_stat_activity AS b ON b.pid = bp.pid
LEFT JOIN LATERAL (
    SELECT lk.locktype, lk.mode,
           (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class AS c
              JOIN pg_namespace AS n ON n.oid = c.relnamespace
             WHERE c.oid = lk.relation) AS relation_name
    FROM pg_locks AS lk
    WHERE lk.pid = w.pid AND NOT lk.granted LIMIT 1
) AS l ON true
WHERE w.wait_event_type = 'Lock';
COMMENT ON VIEW perfmon.blocking_locks IS
    'Sessions waiting on a lock now, each with the session blocking it: wait in seconds, lock '
    'type and mode, relation (schema.name), both queries (their texts only where the reader may see them, '
    'passwords masked as ***; the query ids always), the blocker''s transaction age in seconds, and whether the blocker is the '
    'root of its chain. History: perfmon.lock_history.';
