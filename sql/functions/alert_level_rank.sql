CREATE OR REPLACE FUNCTION perfmon.alert_level_rank(level text)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT l.rank FROM perfmon.alert_levels AS l WHERE l.level = alert_level_rank.level $$;
COMMENT ON FUNCTION perfmon.alert_level_rank(text) IS
    'Rank of an alert level: info 0, warning 1, critical 2, emergency 3 (NULL for anything else).';
