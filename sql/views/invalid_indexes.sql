CREATE OR REPLACE VIEW perfmon.invalid_indexes AS
SELECT n.nspname AS schema_name, t.relname AS table_name, i.relname AS index_name,
       pg_get_indexdef(x.indexrelid) AS definition,
       pg_relation_size(i.oid) AS index_size_bytes,
       format('%I.%I', n.nspname, i.relname) AS target,
       'warning'::text AS severity,
       format('index %s.%s is invalid (a CREATE INDEX CONCURRENTLY or REINDEX failed): queries '
              'cannot use it, yet every write still maintains it', n.nspname, i.relname) AS finding,
       jsonb_build_object('definition', pg_get_indexdef(x.indexrelid),
                          'index_size_bytes', pg_relation_size(i.oid),
                          'is_ready', x.indisready) AS evidence,
       format('REINDEX INDEX CONCURRENTLY %I.%I;  -- or DROP INDEX CONCURRENTLY %I.%I;',
              n.nspname, i.relname, n.nspname, i.relname) AS apply_sql,
       pg_relation_size(i.oid)::numeric AS benefit,
       'bytes reclaimable'::text AS benefit_unit,
       'high'::text AS confidence
FROM pg_index AS x
JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_class AS t ON t.oid = x.indrelid
JOIN pg_namespace AS n ON n.oid = t.relnamespace
WHERE NOT x.indisvalid
  AND n.nspname <> ALL (ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                        || ARRAY['perfmon'])
  AND n.nspname !~ '^pg_(toast|temp_)';
COMMENT ON VIEW perfmon.invalid_indexes IS
    'Invalid indexes of this database (left by a failed CREATE INDEX CONCURRENTLY or REINDEX '
    'CONCURRENTLY): their definition and size in bytes; rebuild or drop them.';
