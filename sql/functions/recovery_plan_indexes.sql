CREATE OR REPLACE FUNCTION perfmon.recovery_plan_indexes(params jsonb)
RETURNS TABLE (target jsonb, statement text, refusal text, condition_since timestamptz)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH named AS (
        -- The name is unique per approval (schema, table and columns are): a readable part cut
        -- to 50 bytes, then 8 hex digits of a hash of the approval - 63 bytes at most, so
        -- PostgreSQL does not cut it further. Cut alone, long names of one table collided,
        -- and a build failing on "already exists" dropped the other approval's index.
        SELECT ap.*, format('perfmon_%s_%s', ap.table_name, array_to_string(ap.columns, '_')) AS readable,
               left(encode(sha256(convert_to(jsonb_build_array(ap.schema_name, ap.table_name,
                                                               ap.columns)::text, 'UTF8')), 'hex'), 8) AS tag
        FROM perfmon.index_approvals AS ap
    ), a AS (
        SELECT n.*, to_regclass(format('%I.%I', n.schema_name, n.table_name)) AS rel,
               (SELECT left(n.readable, max(k)) FROM generate_series(0, 50) AS k
                WHERE octet_length(left(n.readable, k)) <= 50) || '_' || n.tag || '_idx' AS index_name
        FROM named AS n
    ), t AS (
        SELECT a.*, perfmon.recovery_index_name_taken(a.schema_name, a.index_name) AS taken
        FROM a
    )
    SELECT jsonb_build_object('key', format('index:%I.%I(%s)', a.schema_name, a.table_name,
                                            (SELECT string_agg(format('%I', col), ',' ORDER BY o)
                                             FROM unnest(a.columns) WITH ORDINALITY AS u(col, o))),
                              'approval_id', a.approval_id, 'schema', a.schema_name, 'table', a.table_name,
                              'columns', to_jsonb(a.columns), 'index_name', a.index_name,
                              'approved_by', a.approved_by),
           format('CREATE INDEX CONCURRENTLY %I ON %I.%I (%s)', a.index_name, a.schema_name, a.table_name,
                  (SELECT string_agg(format('%I', col), ', ' ORDER BY o) FROM unnest(a.columns)
                   WITH ORDINALITY AS u(col, o))),
           CASE WHEN a.rel IS NULL THEN format('table %I.%I does not exist', a.schema_name, a.table_name)
                WHEN a.taken IS NOT NULL THEN format('the index name is taken by %s: not built, nothing '
                                                     'dropped', a.taken) END,
           a.approved_at
    FROM t AS a
    WHERE NOT EXISTS (
        -- Already there: a valid index whose leading columns are the approved ones.
        SELECT FROM pg_index AS i
        WHERE i.indrelid = a.rel AND i.indisvalid
          AND (SELECT array_agg(att.attname::text ORDER BY k.o)
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, o)
               JOIN pg_attribute AS att ON att.attrelid = i.indrelid AND att.attnum = k.attnum
               WHERE k.o <= cardinality(a.columns)) = a.columns)
$$;
COMMENT ON FUNCTION perfmon.recovery_plan_indexes(jsonb) IS
    'Indexes approved with perfmon.approve_index() that do not exist yet (valid), with the '
    'CREATE INDEX CONCURRENTLY that builds each under a name unique to the approval; refused while '
    'another relation holds that name.';
