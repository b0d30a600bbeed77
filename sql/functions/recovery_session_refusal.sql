CREATE OR REPLACE FUNCTION perfmon.recovery_session_refusal(pid integer, params jsonb)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- The safety rails every session action passes: NULL = may be touched.
    SELECT CASE
        WHEN a.pid IS NULL THEN 'the session is gone'
        WHEN a.pid = pg_backend_pid() THEN 'the session running the recovery'
        WHEN a.backend_type IS DISTINCT FROM 'client backend'
            THEN format('not a client backend (%s)', a.backend_type)
        WHEN r.rolsuper AND NOT coalesce((params ->> 'include_superusers')::boolean, false)
            THEN format('role %s is a superuser (include_superusers is off)', a.usename)
        WHEN r.rolreplication AND NOT coalesce((params ->> 'include_replication')::boolean, false)
            THEN format('role %s is a replication role (include_replication is off)', a.usename)
        WHEN (a.application_name LIKE 'pgperfmon%' OR a.application_name LIKE 'pg_cron%'
              OR a.usename = 'perfmon_admin')
             AND NOT coalesce((params ->> 'include_pgperfmon')::boolean, false)
            THEN 'a session of pgperfmon itself (include_pgperfmon is off)'
        WHEN NOT perfmon.glob_match(a.usename, params -> 'allow_roles')
            THEN format('role %s is not in allow_roles', a.usename)
        WHEN NOT perfmon.glob_match(coalesce(a.datname, ''), params -> 'allow_databases')
            THEN format('database %s is not in allow_databases', a.datname)
    END
    FROM (SELECT 1) AS one
    LEFT JOIN pg_stat_activity AS a ON a.pid = recovery_session_refusal.pid
    LEFT JOIN pg_roles AS r ON r.oid = a.usesysid
$$;
COMMENT ON FUNCTION perfmon.recovery_session_refusal(integer, jsonb) IS
    'Why a recovery action must not touch a session (NULL = it may): gone, our own, not a client '
    'backend, superuser, replication role or pgperfmon (unless included), not in the allowlists.';
