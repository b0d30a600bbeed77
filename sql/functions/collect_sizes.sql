CREATE OR REPLACE FUNCTION perfmon.collect_sizes()
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT perfmon.run_collectors('sizes') $$;
COMMENT ON FUNCTION perfmon.collect_sizes() IS
    'Samples database and relation sizes (the stages of perfmon.collectors with schedule sizes).';
