CREATE OR REPLACE FUNCTION perfmon.ingest_staging_is_ours(rel oid)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- A plain temporary table of this session, created by perfmon.ingest_open() as
    -- perfmon_admin, with nothing the caller could have hung code on.
    SELECT EXISTS (
        SELECT FROM pg_class AS c
        WHERE c.oid = rel
          AND c.relnamespace = pg_my_temp_schema()
          AND c.relkind = 'r'
          AND c.relowner = 'perfmon_admin'::regrole
          AND NOT c.relhasrules AND NOT c.relhastriggers AND NOT c.relrowsecurity
          AND NOT c.relhassubclass)
$$;
COMMENT ON FUNCTION perfmon.ingest_staging_is_ours(oid) IS
    'Whether a relation is the staging table perfmon.ingest_open() made in this session.';
