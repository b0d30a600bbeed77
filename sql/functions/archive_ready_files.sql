CREATE OR REPLACE FUNCTION perfmon.archive_ready_files()
RETURNS TABLE (ready_files bigint, oldest_ready timestamptz)
LANGUAGE sql STABLE
-- Owner's rights (perfmon_admin is in pg_monitor): readers of perfmon.backup_status
-- may not list pg_wal/archive_status themselves.
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*), min(modification)
    FROM pg_ls_archive_statusdir()
    WHERE name LIKE '%.ready'
$$;
COMMENT ON FUNCTION perfmon.archive_ready_files() IS
    'WAL segments waiting to be archived (.ready files in pg_wal/archive_status) and the time '
    'the oldest was marked ready.';
