CREATE OR REPLACE FUNCTION perfmon.watch()
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT perfmon.recover('watch', NULL, fast_only => true, in_database_only => true) $$;
COMMENT ON FUNCTION perfmon.watch() IS
    'One tick of the fast path (every second from pgperfmon watch or the recovery_watch job): the '
    'enabled fast recovery actions (lock chains, idle-in-transaction sessions, connection exhaustion).';
