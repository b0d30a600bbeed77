CREATE OR REPLACE FUNCTION perfmon.recovery_plan_long_queries(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT perfmon.recovery_session_target(a.pid)
               || jsonb_build_object('running_s', round(extract(epoch FROM clock_timestamp() - a.query_start)::numeric, 3)),
           format('SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity AS a WHERE a.pid = %s '
                  'AND a.backend_start = %L AND a.state = ''active'' AND a.query_start = %L',
                  a.pid, a.backend_start, a.query_start),
           perfmon.recovery_session_refusal(a.pid, params),
           a.query_start
    FROM pg_stat_activity AS a
    WHERE a.state = 'active' AND a.pid <> pg_backend_pid()
      AND clock_timestamp() - a.query_start > make_interval(secs => (params ->> 'after_seconds')::double precision)
    ORDER BY a.query_start
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_long_queries(jsonb) IS
    'Queries running longer than params.after_seconds (s), oldest first, with the guarded '
    'pg_cancel_backend that cancels each.';
