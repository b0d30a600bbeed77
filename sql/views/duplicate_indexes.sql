CREATE OR REPLACE VIEW perfmon.duplicate_indexes AS
WITH idx AS (
    SELECT x.indexrelid, x.indrelid, n.nspname AS schema_name, t.relname AS table_name,
           i.relname AS index_name, i.relam, i.relkind, x.indisunique, x.indisprimary,
           x.indnullsnotdistinct AS nulls_not_distinct,
           -- an index a constraint or the replica identity uses is never the one to drop
           x.indisreplident
           OR EXISTS (SELECT FROM pg_constraint AS k WHERE k.conindid = x.indexrelid) AS backs_constraint,
           (string_to_array(x.indkey::text, ' ')::int[])[1:x.indnkeyatts] AS keys,
           (string_to_array(x.indclass::text, ' ')::oid[])[1:x.indnkeyatts] AS classes,
           -- collations (name COLLATE "C" serves LIKE 'x%') and sort orders (b DESC) too
           (string_to_array(x.indcollation::text, ' ')::oid[])[1:x.indnkeyatts] AS collations,
           (string_to_array(x.indoption::text, ' ')::int[])[1:x.indnkeyatts] AS options,
           x.indnatts = x.indnkeyatts AS no_include,
           pg_get_expr(x.indexprs, x.indrelid) AS exprs,
           pg_get_expr(x.indpred, x.indrelid) AS pred,
           pg_relation_size(i.oid) AS index_size_bytes,
           regexp_replace(pg_get_indexdef(x.indexrelid), '^.* USING ', '') AS definition
    FROM pg_index AS x
    JOIN pg_class AS i ON i.oid = x.indexrelid
    JOIN pg_class AS t ON t.oid = x.indrelid
    JOIN pg_namespace AS n ON n.oid = t.relnamespace
    WHERE x.indisvalid
      AND NOT i.relispartition  -- a partition's index goes with its parent's: that one is reported
      AND n.nspname <> ALL (ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                            || ARRAY['perfmon'])
      AND n.nspname !~ '^pg_(toast|temp_)'
),
pairs AS (
    SELECT a.*, b.index_name AS covered_by, b.definition AS covered_by_definition,
           b.index_size_bytes AS covered_by_size_bytes,
           CASE WHEN a.keys = b.keys THEN 'duplicate' ELSE 'overlapping' END AS kind,
           row_number() OVER (PARTITION BY a.indexrelid
                              ORDER BY (a.keys = b.keys) DESC, b.index_size_bytes) AS pick
    FROM idx AS a
    JOIN idx AS b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid AND b.relam = a.relam
    WHERE a.exprs IS NOT DISTINCT FROM b.exprs
      AND a.pred IS NOT DISTINCT FROM b.pred
      AND a.no_include
      AND a.classes = b.classes[1:cardinality(a.classes)]
      AND a.collations = b.collations[1:cardinality(a.collations)]
      AND a.options = b.options[1:cardinality(a.options)]
      -- a unique index with NULLS NOT DISTINCT holds a rule a plain one does not
      AND NOT (a.indisunique AND a.nulls_not_distinct AND NOT b.nulls_not_distinct)
      AND a.keys = b.keys[1:cardinality(a.keys)]
      AND (   -- the same index twice: keep the one backing a constraint, else the older
              (a.keys = b.keys AND NOT a.backs_constraint
               AND (b.backs_constraint OR (a.indisunique = b.indisunique AND a.indexrelid > b.indexrelid)
                    OR (b.indisunique AND NOT a.indisunique)))
              -- a non-unique index whose columns lead a wider B-tree index
           OR (cardinality(a.keys) < cardinality(b.keys) AND NOT a.indisunique
               AND NOT a.backs_constraint
               AND a.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')))
)
SELECT schema_name, table_name, index_name, definition, index_size_bytes, kind,
       covered_by, covered_by_definition, covered_by_size_bytes,
       format('%I.%I', schema_name, index_name) AS target,
       CASE WHEN kind = 'duplicate' THEN 'warning' ELSE 'info' END AS severity,
       format('index %s.%s (%s) is %s by %s (%s): it costs %s and slows every write for nothing',
              schema_name, index_name, definition,
              CASE WHEN kind = 'duplicate' THEN 'an exact duplicate of' ELSE 'covered' END,
              covered_by, covered_by_definition, pg_size_pretty(index_size_bytes)) AS finding,
       jsonb_build_object('index_size_bytes', index_size_bytes, 'definition', definition,
                          'covered_by', covered_by, 'covered_by_definition', covered_by_definition,
                          'covered_by_size_bytes', covered_by_size_bytes) AS evidence,
       -- an index of a partitioned table cannot be dropped CONCURRENTLY
       format(CASE WHEN relkind = 'I' THEN 'DROP INDEX %I.%I;' ELSE 'DROP INDEX CONCURRENTLY %I.%I;' END,
              schema_name, index_name) AS apply_sql,
       index_size_bytes::numeric AS benefit,
       'bytes reclaimable'::text AS benefit_unit,
       CASE WHEN kind = 'duplicate' THEN 'high' ELSE 'medium' END AS confidence
FROM pairs
WHERE pick = 1
ORDER BY index_size_bytes DESC;
COMMENT ON VIEW perfmon.duplicate_indexes IS
    'Indexes another index of the same table already covers: kind duplicate (same columns, '
    'operator classes, expressions and predicate) or overlapping (a non-unique index whose '
    'columns lead a wider B-tree index), with both definitions and sizes in bytes.';
