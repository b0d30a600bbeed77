CREATE OR REPLACE FUNCTION perfmon.recovery_plan_idle_in_transaction(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT perfmon.recovery_session_target(a.pid)
               || jsonb_build_object('idle_s', round(extract(epoch FROM clock_timestamp() - a.state_change)::numeric, 3)),
           format('SELECT pg_terminate_backend(a.pid, %s) FROM pg_stat_activity AS a WHERE a.pid = %s '
                  'AND a.backend_start = %L AND a.state LIKE ''idle in transaction%%'' AND a.state_change = %L',
                  coalesce(params ->> 'verify_timeout_ms', '3000'), a.pid, a.backend_start, a.state_change),
           perfmon.recovery_session_refusal(a.pid, params),
           a.state_change
    FROM pg_stat_activity AS a
    WHERE a.state LIKE 'idle in transaction%'
      AND clock_timestamp() - a.state_change > make_interval(secs => (params ->> 'after_seconds')::double precision)
    ORDER BY a.state_change
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_idle_in_transaction(jsonb) IS
    'Sessions idle in a transaction for longer than params.after_seconds (s), oldest first, with the '
    'guarded pg_terminate_backend that ends each.';
