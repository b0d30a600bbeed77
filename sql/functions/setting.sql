CREATE OR REPLACE FUNCTION perfmon.setting(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v jsonb;
BEGIN
    SELECT c.value INTO v FROM perfmon.config AS c WHERE c.key = setting.key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgperfmon: unknown configuration key %', quote_literal(key)
            USING HINT = 'SELECT key FROM perfmon.config lists the keys; pgperfmon install writes them.';
    END IF;
    RETURN v;
END
$$;
COMMENT ON FUNCTION perfmon.setting(text) IS
    'Value of one configuration key as jsonb; cast it: perfmon.setting(''collection.interval_seconds'')::int. '
    'Raises for an unknown key.';
