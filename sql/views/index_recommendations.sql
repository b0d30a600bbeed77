CREATE OR REPLACE VIEW perfmon.index_recommendations AS
SELECT a.schema_name, a.table_name, a.columns, a.index_sql, a.method,
       round(a.improvement_pct::numeric, 1)        AS improvement_pct,
       round(a.cost_before::numeric, 2)            AS cost_before,
       round(a.cost_after::numeric, 2)             AS cost_after,
       a.est_size_bytes,
       jsonb_array_length(a.queries)               AS statements_served,
       a.calls,
       round(a.saved_ms::numeric, 1)               AS saved_ms,
       a.write_rows,
       round(a.write_overhead_ms::numeric, 1)      AS write_overhead_ms,
       round(a.write_overhead_pct::numeric, 1)     AS write_overhead_pct,
       a.recommended, a.reason, a.queries, a.advised_at,
       format('%I.%I(%s)', a.schema_name, a.table_name,
              array_to_string(ARRAY(SELECT quote_ident(c) FROM unnest(a.columns) AS c), ', ')) AS target,
       CASE WHEN NOT a.recommended THEN 'ok'
            WHEN a.improvement_pct >= 50 THEN 'warning' ELSE 'info' END AS severity,
       format('an index on %s.%s (%s) would cut the cost of %s statement(s), %s calls, by %s%% '
              '(estimated size %s)%s',
              a.schema_name, a.table_name, array_to_string(a.columns, ', '),
              jsonb_array_length(a.queries), a.calls, round(a.improvement_pct::numeric),
              pg_size_pretty(a.est_size_bytes),
              CASE WHEN a.write_overhead_pct IS NOT NULL
                   THEN format('; it adds about %s%% to the table''s write time',
                               round(a.write_overhead_pct::numeric)) ELSE '' END) AS finding,
       jsonb_build_object('improvement_pct', round(a.improvement_pct::numeric, 1),
                          'cost_before', round(a.cost_before::numeric, 2),
                          'cost_after', round(a.cost_after::numeric, 2),
                          'calls', a.calls, 'saved_ms', round(a.saved_ms::numeric, 1),
                          'est_size_bytes', a.est_size_bytes, 'write_rows', a.write_rows,
                          'write_overhead_ms', round(a.write_overhead_ms::numeric, 1),
                          'method', a.method,
                          'statements', (SELECT jsonb_agg(q - 'query') FROM jsonb_array_elements(a.queries) AS q))
                                                    AS evidence,
       a.index_sql || ';'                           AS apply_sql,
       round(a.improvement_pct::numeric, 1)         AS benefit,
       '% cost reduction'::text                     AS benefit_unit,
       CASE a.method WHEN 'hypopg' THEN 'high' ELSE 'low' END AS confidence
FROM perfmon.index_advice AS a
ORDER BY a.recommended DESC, a.saved_ms DESC NULLS LAST;
COMMENT ON VIEW perfmon.index_recommendations IS
    'B-tree indexes that would cut the calls-weighted planner cost of the statements they serve '
    '(improvement_pct, %; cost_before/cost_after in planner cost units per call) by at least '
    'optimization.index_min_improvement_pct, from the latest perfmon.advise_indexes(): '
    'statements served with their calls, ms saved over the window (saved_ms), estimated size '
    '(est_size_bytes), rows written to the table (write_rows) and the time the index would add '
    'to them (write_overhead_ms, write_overhead_pct). recommended = false when the writes '
    'outweigh the gain (reason says). method hypopg = checked with hypothetical indexes, '
    'statistics = pg_stats estimate (lower confidence).';
