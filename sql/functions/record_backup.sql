CREATE OR REPLACE FUNCTION perfmon.record_backup(
    tool text, ok boolean, started_at timestamptz, finished_at timestamptz DEFAULT now(),
    size_bytes bigint DEFAULT NULL, detail text DEFAULT NULL,
    verified boolean DEFAULT false, restored boolean DEFAULT false)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO perfmon.backup_log (tool, started_at, finished_at, ok, verified, restored,
                                    size_bytes, detail)
    VALUES (tool, started_at, finished_at, ok, verified, restored, size_bytes, detail)
    RETURNING id
$$;
COMMENT ON FUNCTION perfmon.record_backup(text, boolean, timestamptz, timestamptz, bigint, text, boolean, boolean) IS
    'Registers a backup (any tool: pgBackRest, Barman, pg_basebackup) in perfmon.backup_log: '
    'whether it succeeded, its size in bytes, whether it was verified and restored; returns its id.';
