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
    locked oid[];
    rels jsonb := '[]';
    skipped int := 0;
    n int;
BEGIN
    -- Renames are caught up here, on the slower schedule.
    PERFORM perfmon.sync_relations(ARRAY['r', 'p', 'm', 'i']::"char"[]);
    -- Sizing a table takes ACCESS SHARE on it, its indexes and its TOAST: one of them
    -- under (or queued for) ACCESS EXCLUSIVE (VACUUM FULL, CLUSTER, REINDEX, a long
    -- ALTER TABLE) made the stage wait into lock_timeout and lose every size, the
    -- databases' too, run after run. Such a table is skipped and keeps its last size;
    -- a lock taken between this look and the sizing costs this run's table sizes only.
    locked := ARRAY(SELECT l.relation FROM pg_locks AS l
                    WHERE l.locktype = 'relation' AND l.database = dbid AND l.mode = 'AccessExclusiveLock');
    BEGIN
        SELECT coalesce(jsonb_agg(to_jsonb(z)) FILTER (WHERE z.size_bytes IS NOT NULL), '[]'),
               count(*) FILTER (WHERE z.size_bytes IS NULL)
          INTO rels, skipped
          FROM (
            SELECT t.rel_id AS object_id,
                   CASE WHEN NOT t.locked THEN pg_total_relation_size(t.oid) END AS size_bytes,
                   CASE WHEN NOT t.locked THEN pg_relation_size(t.oid) END AS table_bytes,
                   CASE WHEN NOT t.locked THEN pg_indexes_size(t.oid) END AS index_bytes,
                   CASE WHEN NOT t.locked
                        THEN coalesce(pg_total_relation_size(nullif(t.reltoastrelid, 0)), 0) END AS toast_bytes
            FROM (
                SELECT r.rel_id, c.oid, c.reltoastrelid,
                       c.oid = ANY (locked) OR c.reltoastrelid = ANY (locked)
                       OR EXISTS (SELECT FROM pg_index AS i
                                  WHERE i.indrelid IN (c.oid, c.reltoastrelid) AND i.indexrelid = ANY (locked))
                           AS locked
                FROM perfmon.relations AS r
                JOIN pg_class AS c ON c.oid = r.relid
                WHERE r.server_id = 1 AND r.datid = dbid AND r.kind IN ('r', 'p', 'm')
                ORDER BY c.relpages DESC
                LIMIT top_n
            ) AS t
          ) AS z;
    EXCEPTION WHEN lock_not_available THEN
        rels := '[]';  -- every table keeps its last size until the next run
        skipped := NULL;
    END;
    WITH cur AS (
        SELECT 'd'::"char" AS kind, d.oid::bigint AS object_id, pg_database_size(d.oid) AS size_bytes,
               NULL::bigint AS table_bytes, NULL::bigint AS index_bytes, NULL::bigint AS toast_bytes
        FROM pg_database AS d
        WHERE d.datallowconn AND has_database_privilege(d.oid, 'CONNECT')
        UNION ALL
        SELECT 'r'::"char", x.object_id, x.size_bytes, x.table_bytes, x.index_bytes, x.toast_bytes
        FROM jsonb_to_recordset(rels) AS x(object_id bigint, size_bytes bigint, table_bytes bigint,
                                           index_bytes bigint, toast_bytes bigint)
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
    RETURN ROW(n, 0, CASE WHEN skipped IS NULL
                          THEN jsonb_build_object('tables_not_sized', 'a table was locked while being sized')
                          WHEN skipped > 0 THEN jsonb_build_object('tables_locked', skipped)
                     END)::perfmon.collect_result;
END
$$;
COMMENT ON FUNCTION perfmon.collect_relation_sizes(timestamptz) IS
    'Collection stage (sizes schedule): database and relation sizes in bytes into '
    'perfmon.size_history when they changed. A table under an ACCESS EXCLUSIVE lock is skipped '
    '(details: tables_locked) and keeps its last size.';
