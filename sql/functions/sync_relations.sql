CREATE OR REPLACE FUNCTION perfmon.sync_relations(kinds "char"[], with_renames boolean DEFAULT true)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Keeps perfmon.relations in step with this database's catalog for the given
-- relkinds: adds new relations and (with_renames) renames renamed ones and links
-- indexes to their tables. Read-only when nothing changed (no upsert, which would
-- lock and dirty every row it meets). Each sample adds; the sizes schedule renames.
DECLARE
    dbid oid := (SELECT oid FROM pg_database WHERE datname = current_database());
    excluded text[] := ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                       || ARRAY['perfmon'];
    added int;
BEGIN
    INSERT INTO perfmon.relations (server_id, datid, relid, kind, schema_name, rel_name)
    SELECT 1, dbid, c.oid, c.relkind, n.nspname, c.relname
      FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind = ANY (kinds)
       AND n.nspname <> ALL (excluded)
       AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
       AND NOT EXISTS (SELECT FROM perfmon.relations AS r
                       WHERE r.server_id = 1 AND r.datid = dbid AND r.relid = c.oid)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    -- Fresh statistics after a large change, or the planner sees a tiny table
    -- and joins the catalog against it in quadratic time.
    IF added > 100 THEN
        ANALYZE perfmon.relations;
    END IF;

    IF NOT with_renames THEN
        RETURN added;
    END IF;
    UPDATE perfmon.relations AS r
       SET schema_name = n.nspname, rel_name = c.relname
      FROM pg_class AS c
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE r.server_id = 1 AND r.datid = dbid AND r.relid = c.oid AND r.kind = ANY (kinds)
       AND (r.schema_name, r.rel_name) IS DISTINCT FROM (n.nspname, c.relname);

    -- Link indexes to their tables once both are known.
    IF 'i' = ANY (kinds) THEN
        UPDATE perfmon.relations AS r
           SET table_rel_id = t.rel_id
          FROM pg_index AS x
          JOIN perfmon.relations AS t ON t.server_id = 1 AND t.datid = dbid AND t.relid = x.indrelid
         WHERE r.server_id = 1 AND r.datid = dbid AND r.kind = 'i' AND r.relid = x.indexrelid
           AND r.table_rel_id IS DISTINCT FROM t.rel_id;
    END IF;
    RETURN added;
END
$$;
COMMENT ON FUNCTION perfmon.sync_relations("char"[], boolean) IS
    'Adds new and renames renamed relations of the given kinds in perfmon.relations; '
    'returns how many were added.';
