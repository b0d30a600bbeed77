CREATE OR REPLACE VIEW perfmon.index_bloat AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.bloat_min_pct')::numeric AS min_pct,
           perfmon.setting('optimization.bloat_min_bytes')::bigint AS min_bytes,
           current_setting('block_size')::int AS bs
),
i AS (
    SELECT x.indexrelid, n.nspname AS schema_name, t.relname AS table_name, c.relname AS index_name,
           c.reltuples, c.relpages,
           coalesce((SELECT substring(o FROM 'fillfactor=([0-9]+)')::int
                     FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%'), 90) AS fillfactor,
           (SELECT sum((1 - s.null_frac) * s.avg_width)::numeric
            FROM unnest(x.indkey) AS k(attnum)
            JOIN pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
            JOIN pg_stats AS s ON s.schemaname = n.nspname AND s.tablename = t.relname
                              AND s.attname = a.attname AND NOT s.inherited) AS data_bytes,
           (SELECT count(*) FROM unnest(x.indkey) AS k(attnum)) AS columns
    FROM pg_index AS x
    JOIN pg_class AS c ON c.oid = x.indexrelid
    JOIN pg_am AS am ON am.oid = c.relam AND am.amname = 'btree'
    JOIN pg_class AS t ON t.oid = x.indrelid
    JOIN pg_namespace AS n ON n.oid = t.relnamespace
    WHERE x.indisvalid AND x.indexprs IS NULL AND c.relpages > 1
      AND n.nspname <> ALL (ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                            || ARRAY['perfmon'])
      AND n.nspname !~ '^pg_(toast|temp_)'
),
b AS (
    -- index tuple: 8 bytes of header + data aligned to 8, + a 4-byte line pointer; pages
    -- hold bs - 24 (page header) - 16 (B-tree special space) bytes, filled to fillfactor.
    SELECT i.*, cfg.bs,
           1 + ceil(i.reltuples * (8 + ceil(i.data_bytes / 8) * 8 + 4)
                    / ((cfg.bs - 40) * i.fillfactor / 100.0))::numeric AS expected_pages
    FROM i, cfg
    WHERE i.data_bytes IS NOT NULL
)
SELECT b.schema_name, b.table_name, b.index_name,
       b.relpages::bigint * b.bs AS index_bytes,
       (b.expected_pages * b.bs)::bigint AS expected_bytes,
       greatest(b.relpages - b.expected_pages, 0)::bigint * b.bs AS bloat_bytes,
       round(100 * greatest(b.relpages - b.expected_pages, 0) / b.relpages, 1) AS bloat_pct,
       format('%I.%I', b.schema_name, b.index_name) AS target,
       CASE WHEN greatest(b.relpages - b.expected_pages, 0) * b.bs < cfg.min_bytes
                 OR 100 * greatest(b.relpages - b.expected_pages, 0) / b.relpages < cfg.min_pct THEN 'ok'
            WHEN 100 * (b.relpages - b.expected_pages) / b.relpages >= 70 THEN 'warning'
            ELSE 'info' END AS severity,
       format('index %s.%s takes %s but its entries need about %s: %s (%s%%) is bloat',
              b.schema_name, b.index_name, pg_size_pretty(b.relpages::bigint * b.bs),
              pg_size_pretty((b.expected_pages * b.bs)::bigint),
              pg_size_pretty(greatest(b.relpages - b.expected_pages, 0)::bigint * b.bs),
              round(100 * greatest(b.relpages - b.expected_pages, 0) / b.relpages)) AS finding,
       jsonb_build_object('index_bytes', b.relpages::bigint * b.bs,
                          'expected_bytes', (b.expected_pages * b.bs)::bigint,
                          'entries_estimate', b.reltuples::bigint, 'fillfactor', b.fillfactor) AS evidence,
       format('REINDEX INDEX CONCURRENTLY %I.%I;', b.schema_name, b.index_name) AS apply_sql,
       (greatest(b.relpages - b.expected_pages, 0)::bigint * b.bs)::numeric AS benefit,
       'bytes reclaimable'::text AS benefit_unit,
       'medium'::text AS confidence
FROM b, cfg
ORDER BY bloat_bytes DESC;
COMMENT ON VIEW perfmon.index_bloat IS
    'Estimated bloat of each B-tree index (no expressions): size (index_bytes), what its entries '
    'need from the column widths in pg_stats and the fillfactor (expected_bytes), the difference '
    '(bloat_bytes, bloat_pct). Findings: at least optimization.bloat_min_pct and '
    'optimization.bloat_min_bytes; REINDEX CONCURRENTLY rebuilds without blocking writes.';
