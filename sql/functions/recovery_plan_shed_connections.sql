CREATE OR REPLACE FUNCTION perfmon.recovery_plan_shed_connections(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH usage AS (
        SELECT count(*) AS total, current_setting('max_connections')::int AS max_conn
        FROM pg_stat_activity WHERE backend_type = 'client backend'
    ),
    need AS (
        -- Sessions to end to get back under usage_pct.
        SELECT u.total, u.max_conn,
               greatest(0, u.total - floor(u.max_conn * (params ->> 'usage_pct')::numeric / 100)::int + 1) AS n
        FROM usage AS u
        WHERE 100.0 * u.total / u.max_conn >= (params ->> 'usage_pct')::numeric
    ),
    c AS (
        SELECT a.pid, a.backend_start, a.state_change,
               perfmon.recovery_session_refusal(a.pid, params) AS refusal
        FROM pg_stat_activity AS a
        WHERE a.state = 'idle' AND a.backend_type = 'client backend'
          AND clock_timestamp() - a.state_change > make_interval(secs => (params ->> 'after_seconds')::double precision)
    ),
    ranked AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.refusal IS NULL ORDER BY c.state_change) AS rn FROM c
    )
    SELECT perfmon.recovery_session_target(r.pid)
               || jsonb_build_object('connections', need.total, 'max_connections', need.max_conn),
           format('SELECT pg_terminate_backend(a.pid, %s) FROM pg_stat_activity AS a WHERE a.pid = %s '
                  'AND a.backend_start = %L AND a.state = ''idle'' AND a.state_change = %L',
                  coalesce(params ->> 'verify_timeout_ms', '3000'), r.pid, r.backend_start, r.state_change),
           r.refusal,
           r.state_change
    FROM ranked AS r CROSS JOIN need
    WHERE r.refusal IS NOT NULL OR r.rn <= need.n
    ORDER BY r.state_change
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_shed_connections(jsonb) IS
    'When client connections reach params.usage_pct % of max_connections: the sessions idle longer '
    'than params.after_seconds (s), oldest first, as many as it takes to get back under it.';
