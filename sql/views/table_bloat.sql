CREATE OR REPLACE VIEW perfmon.table_bloat AS
WITH cfg AS (
    SELECT perfmon.setting('optimization.bloat_min_pct')::numeric AS min_pct,
           perfmon.setting('optimization.bloat_min_bytes')::bigint AS min_bytes,
           current_setting('block_size')::int AS bs
),
t AS (
    SELECT c.oid, n.nspname AS schema_name, c.relname AS table_name, c.reltuples, c.relpages,
           coalesce((SELECT substring(o FROM 'fillfactor=([0-9]+)')::int
                     FROM unnest(c.reloptions) AS o WHERE o LIKE 'fillfactor=%'), 100) AS fillfactor
    FROM pg_class AS c
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND c.relpages > 0 AND c.reltuples >= 0
      AND n.nspname <> ALL (ARRAY(SELECT jsonb_array_elements_text(perfmon.setting('collection.exclude_schemas')))
                            || ARRAY['perfmon'])
      AND n.nspname !~ '^pg_(toast|temp_)'
),
w AS (
    -- Average bytes of a row's data, from the planner's column statistics.
    SELECT s.schemaname, s.tablename,
           sum((1 - s.null_frac) * s.avg_width)::numeric AS data_bytes,
           max(s.null_frac) > 0 AS has_nulls, count(*) AS columns
    FROM pg_stats AS s
    WHERE NOT s.inherited
    GROUP BY s.schemaname, s.tablename
),
est AS (
    SELECT t.*, w.data_bytes,
           -- tuple header (23, aligned to 24) + null bitmap + data, aligned to 8, + line pointer
           ceil((24 + CASE WHEN w.has_nulls THEN ceil(w.columns / 8.0) ELSE 0 END + w.data_bytes) / 8) * 8 + 4
               AS row_bytes,
           cfg.bs
    FROM t JOIN w ON w.schemaname = t.schema_name AND w.tablename = t.table_name, cfg
),
b AS (
    SELECT est.*,
           ceil(est.reltuples * est.row_bytes / ((est.bs - 24) * est.fillfactor / 100.0))::numeric AS expected_pages
    FROM est
)
SELECT b.schema_name, b.table_name,
       b.relpages::bigint * b.bs AS table_bytes,
       (b.expected_pages * b.bs)::bigint AS expected_bytes,
       greatest(b.relpages - b.expected_pages, 0)::bigint * b.bs AS bloat_bytes,
       round(100 * greatest(b.relpages - b.expected_pages, 0) / b.relpages, 1) AS bloat_pct,
       b.reltuples::bigint AS live_rows_estimate, round(b.row_bytes) AS row_bytes, b.fillfactor,
       format('%I.%I', b.schema_name, b.table_name) AS target,
       CASE WHEN greatest(b.relpages - b.expected_pages, 0) * b.bs < cfg.min_bytes
                 OR 100 * greatest(b.relpages - b.expected_pages, 0) / b.relpages < cfg.min_pct THEN 'ok'
            WHEN 100 * (b.relpages - b.expected_pages) / b.relpages >= 70 THEN 'warning'
            ELSE 'info' END AS severity,
       format('table %s.%s takes %s but its %s live rows need about %s: %s (%s%%) is bloat',
              b.schema_name, b.table_name, pg_size_pretty(b.relpages::bigint * b.bs),
              b.reltuples::bigint, pg_size_pretty((b.expected_pages * b.bs)::bigint),
              pg_size_pretty(greatest(b.relpages - b.expected_pages, 0)::bigint * b.bs),
              round(100 * greatest(b.relpages - b.expected_pages, 0) / b.relpages)) AS finding,
       jsonb_build_object('table_bytes', b.relpages::bigint * b.bs,
                          'expected_bytes', (b.expected_pages * b.bs)::bigint,
                          'live_rows_estimate', b.reltuples::bigint,
                          'row_bytes', round(b.row_bytes), 'fillfactor', b.fillfactor) AS evidence,
       format('VACUUM (FULL, ANALYZE) %I.%I;  -- takes an ACCESS EXCLUSIVE lock; pg_repack '
              'rebuilds without it', b.schema_name, b.table_name) AS apply_sql,
       (greatest(b.relpages - b.expected_pages, 0)::bigint * b.bs)::numeric AS benefit,
       'bytes reclaimable'::text AS benefit_unit,
       'medium'::text AS confidence
FROM b, cfg
ORDER BY bloat_bytes DESC;
COMMENT ON VIEW perfmon.table_bloat IS
    'Estimated bloat of each table: its size (table_bytes), what its live rows need given their '
    'average width in pg_stats and the fillfactor (expected_bytes), the difference (bloat_bytes, '
    'bloat_pct). An estimate: it needs ANALYZE statistics, and the role reading it sees only '
    'the statistics of tables it may read. Findings: at least optimization.bloat_min_pct and '
    'optimization.bloat_min_bytes.';
