CREATE OR REPLACE FUNCTION perfmon.live_sessions(
    OUT total int, OUT active int, OUT idle int, OUT idle_in_transaction int, OUT waiting int)
LANGUAGE sql STABLE
-- Owner's rights (perfmon_admin is in pg_monitor): a reader sees the state of its own
-- sessions only in pg_stat_activity. This returns counts, never query texts or users.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*)::int,
           (count(*) FILTER (WHERE state = 'active'))::int,
           (count(*) FILTER (WHERE state = 'idle'))::int,
           (count(*) FILTER (WHERE state LIKE 'idle in transaction%'))::int,
           (count(*) FILTER (WHERE wait_event_type = 'Lock'))::int
    FROM pg_stat_activity
    WHERE backend_type = 'client backend'
$$;
COMMENT ON FUNCTION perfmon.live_sessions() IS
    'Client sessions now, as counts (total, active, idle, idle in transaction, waiting on a lock), '
    'from pg_stat_activity as the monitor sees it: readers get the whole server''s counts without '
    'seeing anyone''s queries.';
