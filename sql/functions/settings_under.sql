CREATE OR REPLACE FUNCTION perfmon.settings_under(prefix text)
RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(substr(c.key, length(prefix) + 2), c.value), '{}'::jsonb)
    FROM perfmon.config AS c
    WHERE starts_with(c.key, prefix || '.')
$$;
COMMENT ON FUNCTION perfmon.settings_under(text) IS
    'The configuration keys under a section as one jsonb object, the section''s prefix removed: '
    'perfmon.settings_under(''alerting.channels.email'') -> {"enabled": false, "smtp_port": 587, ...} '
    '(nested keys keep their dots).';
