CREATE OR REPLACE FUNCTION perfmon.collect_relation_sizes(sample_ts timestamptz)
RETURNS perfmon.collect_result
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
-- Sizes, on their own slower schedule: every database, and the largest
-- collection.relation_top_n tables of this database with their indexes and
-- TOAST. A size is stored only when it changed since it was last stored.
DECLARE
    dbid oid := (SELECT oid FROM pg_database WHERE datname = current_database());
    top_n int := perfmon.setting('collection.relation_top_n')::int;
    n int;
BEGIN
    -- Renames are caught up here, on the slower schedule.
    PERFORM perfmon.sync_relations(ARRAY['r', 'p', 'm', 'i']::"char"[]);
    WITH cur AS (
        SELECT 'd'::"char" AS kind, d.oid::bigint AS object_id, pg_database_size(d.oid) AS size_bytes,
               NULL::bigint AS table_bytes, NULL::bigint AS index_bytes, NULL::bigint AS toast_bytes
        FROM pg_database AS d
        WHERE d.datallowconn AND has_database_privilege(d.oid, 'CONNECT')
        UNION ALL
        SELECT * FROM (
            SELECT 'r'::"char", r.rel_id::bigint, pg_total_relation_size(c.oid),
                   pg_relation_size(c.oid), pg_indexes_size(c.oid),
                   coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
            FROM perfmon.relations AS r
            JOIN pg_class AS c ON c.oid = r.relid
            WHERE r.server_id = 1 AND r.datid = dbid AND r.kind IN ('r', 'p', 'm')
            ORDER BY c.relpages DESC
            LIMIT top_n
        ) AS largest
    ),
    changed AS (
        SELECT c.* FROM cur AS c
        LEFT JOIN perfmon.state_sizes AS p
          ON p.server_id = 1 AND p.kind = c.kind AND p.object_id = c.object_id
        WHERE p.size_bytes IS DISTINCT FROM c.size_bytes
    ),
    saved AS (
        INSERT INTO perfmon.state_sizes AS s (server_id, kind, object_id, size_bytes)
        SELECT 1, kind, object_id, size_bytes FROM changed
        ON CONFLICT (server_id, kind, object_id) DO UPDATE SET size_bytes = EXCLUDED.size_bytes
    ),
    stored AS (
        INSERT INTO perfmon.size_history
        SELECT 1, sample_ts, kind, object_id, size_bytes, table_bytes, index_bytes, toast_bytes
        FROM changed
        RETURNING 1
    )
    SELECT count(*) INTO n FROM stored;
    RETURN ROW(n, 0, NULL)::perfmon.collect_result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_relation_sizes(timestamptz) IS
    'Collection stage (sizes schedule): database and relation sizes in bytes into '
    'perfmon.size_history when they changed.';
