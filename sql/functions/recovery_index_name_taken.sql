CREATE OR REPLACE FUNCTION perfmon.recovery_index_name_taken(schema_name text, index_name text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- pgperfmon recover builds an approved index only under a free name: a failed
    -- CONCURRENTLY build leaves an invalid index that it drops, and that must be its own.
    SELECT format('%s (%s)', c.oid::regclass,
                  CASE WHEN i.indexrelid IS NULL THEN 'not an index'
                       WHEN i.indisvalid THEN format('a valid index on %s', i.indrelid::regclass)
                       ELSE format('an invalid index on %s: being built, or left by a failed build',
                                   i.indrelid::regclass) END)
    FROM pg_class AS c
    LEFT JOIN pg_index AS i ON i.indexrelid = c.oid
    WHERE c.oid = to_regclass(format('%I.%I', schema_name, index_name))
$$;
COMMENT ON FUNCTION perfmon.recovery_index_name_taken(text, text) IS
    'What already holds the name of an index that create_approved_indexes would build (NULL when '
    'the name is free): such an index is neither built over nor dropped by recovery.';
