CREATE OR REPLACE FUNCTION perfmon.ingest_open()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
-- The staging table a feeder COPYs a batch into before perfmon.ingest_batch()
-- validates and stores it: a temporary table of this session, owned by
-- perfmon_admin so that the caller cannot attach code to it (triggers, rules,
-- policies need ownership) that perfmon.ingest_batch() would run with its rights.
-- The caller may only INSERT (COPY) into it. Rows vanish at commit.
DECLARE
    rel oid := to_regclass('pg_temp.perfmon_ingest');
BEGIN
    IF rel IS NULL THEN
        CREATE TEMPORARY TABLE perfmon_ingest (
            seq       integer,
            series_id integer,
            ts        timestamptz,
            value     double precision
        ) ON COMMIT DELETE ROWS;
        GRANT INSERT ON pg_temp.perfmon_ingest TO perfmon_agent;
    ELSIF NOT perfmon.ingest_staging_is_ours(rel) THEN
        RAISE EXCEPTION 'pgperfmon: pg_temp.perfmon_ingest exists and is not pgperfmon''s staging table'
            USING HINT = 'DROP TABLE pg_temp.perfmon_ingest, then call perfmon.ingest_open() again';
    END IF;
END
$$;
COMMENT ON FUNCTION perfmon.ingest_open() IS
    'Creates this session''s staging table pg_temp.perfmon_ingest (seq, series_id, ts, value) '
    'that a feeder COPYs a batch into before calling perfmon.ingest_batch() in the same transaction.';
