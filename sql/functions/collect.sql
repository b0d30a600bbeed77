CREATE OR REPLACE FUNCTION perfmon.collect()
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT perfmon.run_collectors('sample') $$;
COMMENT ON FUNCTION perfmon.collect() IS
    'Takes one sample of the server''s statistics (the stages of perfmon.collectors with '
    'schedule sample) and returns what each stage did: ms, rows stored, gaps, errors.';
