CREATE OR REPLACE FUNCTION perfmon.recovery_plan_lock_blockers(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE w AS (
        SELECT l.pid, min(l.waitstart) AS since
        FROM pg_locks AS l WHERE NOT l.granted AND l.waitstart IS NOT NULL GROUP BY l.pid
    ),
    edges AS (
        SELECT w.pid AS waiter, b.pid AS blocker
        FROM w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)
    ),
    -- Roots: blockers that wait for nobody; their chain is everyone waiting behind them.
    chain(root, pid) AS (
        SELECT e.blocker, e.waiter FROM edges AS e WHERE NOT EXISTS (SELECT FROM w WHERE w.pid = e.blocker)
        UNION
        SELECT c.root, e.waiter FROM chain AS c JOIN edges AS e ON e.blocker = c.pid
    ),
    roots AS (
        SELECT c.root, min(w.since) AS since, array_agg(DISTINCT c.pid) AS waiters
        FROM chain AS c JOIN w ON w.pid = c.pid GROUP BY c.root
    )
    SELECT perfmon.recovery_session_target(r.root)
               || jsonb_build_object('waiters', cardinality(r.waiters), 'chain', to_jsonb(r.waiters),
                                     'longest_wait_s', round(extract(epoch FROM clock_timestamp() - r.since)::numeric, 3)),
           format('SELECT pg_terminate_backend(a.pid, %s) FROM pg_stat_activity AS a WHERE a.pid = %s '
                  'AND a.backend_start = %L AND EXISTS (SELECT FROM pg_locks AS l WHERE NOT l.granted '
                  'AND %s = ANY (pg_blocking_pids(l.pid)))',
                  coalesce(params ->> 'verify_timeout_ms', '3000'), r.root, a.backend_start, r.root),
           perfmon.recovery_session_refusal(r.root, params),
           r.since
    FROM roots AS r JOIN pg_stat_activity AS a ON a.pid = r.root
    WHERE clock_timestamp() - r.since > make_interval(secs => (params ->> 'after_seconds')::double precision)
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_lock_blockers(jsonb) IS
    'Root blockers of lock chains whose waiters have waited longer than params.after_seconds (s): the '
    'session, its chain, and the guarded pg_terminate_backend that ends it.';
