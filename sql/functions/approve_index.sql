CREATE OR REPLACE FUNCTION perfmon.approve_index(schema_name text, table_name text, columns text[],
                                                 recommendation_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel regclass := to_regclass(format('%I.%I', schema_name, table_name));
    missing text;
    id bigint;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: no table %.%', quote_ident(schema_name), quote_ident(table_name);
    END IF;
    SELECT string_agg(c, ', ') INTO missing FROM unnest(columns) AS c
    WHERE NOT EXISTS (SELECT FROM pg_attribute AS a WHERE a.attrelid = rel AND a.attname = c
                      AND a.attnum > 0 AND NOT a.attisdropped);
    IF missing IS NOT NULL OR cardinality(columns) IS NULL THEN
        RAISE EXCEPTION 'pgperfmon: table %.% has no column(s) %', schema_name, table_name,
            coalesce(missing, '(none given)');
    END IF;
    INSERT INTO perfmon.index_approvals AS ap (schema_name, table_name, columns, recommendation_id, approved_by)
    VALUES (schema_name, table_name, columns, recommendation_id, session_user)
    ON CONFLICT ON CONSTRAINT index_approvals_schema_name_table_name_columns_key
        DO UPDATE SET approved_at = now(), approved_by = EXCLUDED.approved_by
    RETURNING ap.approval_id INTO id;
    RETURN id;
END
$$;
COMMENT ON FUNCTION perfmon.approve_index(text, text, text[], bigint) IS
    'Approves an index (e.g. one of perfmon.index_recommendations) for the opt-in recovery action '
    'create_approved_indexes, which builds it CONCURRENTLY. Returns the approval_id.';
