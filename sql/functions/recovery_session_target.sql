CREATE OR REPLACE FUNCTION perfmon.recovery_session_target(pid integer)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'key', format('pid:%s:%s', a.pid, extract(epoch FROM a.backend_start)),
        'pid', a.pid, 'backend_start', a.backend_start, 'role', a.usename, 'database', a.datname,
        'application', a.application_name, 'client_addr', a.client_addr, 'state', a.state,
        'xact_start', a.xact_start, 'query_start', a.query_start, 'state_change', a.state_change,
        'query', left(perfmon.redact_secrets(a.query), 200))
    FROM pg_stat_activity AS a WHERE a.pid = recovery_session_target.pid
$$;
COMMENT ON FUNCTION perfmon.recovery_session_target(integer) IS
    'A session as a recovery target: pid and backend_start (its identity), role, database, '
    'application, state and its times, the first 200 characters of its query (secrets masked).';
